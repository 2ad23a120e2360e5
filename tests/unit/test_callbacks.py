"""Unit tests of `pylstm.callbacks`: each callback's logic on a fake model and fake logs, as
Keras 3's `keras/src/callbacks/*_test.py` exercise them."""

import csv
import math

import numpy as np
import pytest

from pylstm import callbacks, optimizers
from pylstm.layers import LSTM, Dense, Input
from pylstm.models import Sequential, load_model


class FakeOptimizer:
    def __init__(self, learning_rate=0.1):
        self.learning_rate = learning_rate
        self.iterations = 0


class ScheduledOptimizer:
    """The rate as pylstm's optimizers give it with a schedule: `learning_rate` reads the
    schedule's value, `_learning_rate` holds the schedule."""

    def __init__(self):
        self._learning_rate = lambda: 0.5
        self.iterations = 0

    @property
    def learning_rate(self):
        return self._learning_rate()


class FakeModel:
    """What the callbacks use of a model: weights, `stop_training`, an optimizer, saving."""

    def __init__(self, optimizer=None, output_names=("output",), metrics=()):
        self.weights = [np.zeros(2, "float32")]
        self.stop_training = False
        self.optimizer = optimizer or FakeOptimizer()
        self.output_names = list(output_names)
        self._metrics = list(metrics)
        self.saved = []

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [w.copy() for w in weights]

    def save(self, path):
        self.saved.append(("save", path))

    def save_weights(self, path):
        self.saved.append(("save_weights", path))


def run_epochs(callback, values, key="val_loss", model=None, logs_extra=None, epoch_step=None):
    """Runs `callback` over epochs whose logs hold `values` under `key` (the model's weights
    set to the epoch number at each epoch's end); returns the model and the epochs run."""
    model = model or FakeModel()
    callback.set_model(model)
    callback.on_train_begin()
    run = []
    for epoch, value in enumerate(values):
        callback.on_epoch_begin(epoch)
        model.weights = [np.full(2, epoch, "float32")]
        logs = {key: value, **(logs_extra or {})}
        callback.on_epoch_end(epoch, logs)
        run.append(epoch)
        if model.stop_training:
            break
    callback.on_train_end()
    return model, run


# Callback ------------------------------------------------------------------------------------


def test_every_hook_is_a_no_op_and_the_model_is_read_only():
    callback = callbacks.Callback()
    assert callback.model is None and callback.params is None
    for name in callbacks._HOOKS:
        args = (0,) if "epoch" in name or "batch" in name else ()
        assert getattr(callback, name)(*args, logs={}) is None
    model = FakeModel()
    callback.set_model(model)
    callback.set_params({"epochs": 3})
    assert callback.model is model and callback.params == {"epochs": 3}
    with pytest.raises(AttributeError):
        callback.model = None


def test_train_batch_hooks_call_the_batch_aliases():
    calls = []

    class Alias(callbacks.Callback):
        def on_batch_begin(self, batch, logs=None):
            calls.append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            calls.append(("end", batch, logs))

    callback = Alias()
    callback.on_train_batch_begin(3)
    callback.on_train_batch_end(3, {"loss": 1.0})
    callback.on_test_batch_end(4, {"loss": 2.0})
    assert calls == [("begin", 3), ("end", 3, {"loss": 1.0})]


def test_history_records_logs_and_sets_model_history():
    history = callbacks.History()
    model, _ = run_epochs(history, [3.0, 2.0], key="loss")
    assert history.history == {"loss": [3.0, 2.0]} and history.epoch == [0, 1]
    assert model.history is history


# EarlyStopping -------------------------------------------------------------------------------


def test_early_stopping_waits_patience_epochs_without_improvement():
    _, run = run_epochs(callbacks.EarlyStopping(patience=2), [1.0, 0.9, 0.95, 0.96, 0.97, 0.8])
    assert run == [0, 1, 2, 3]


def test_early_stopping_patience_zero_stops_at_the_first_worse_epoch_but_never_epoch_zero():
    stopper = callbacks.EarlyStopping(monitor="loss")
    _, run = run_epochs(stopper, [1.0, 0.5, 0.6, 0.4], key="loss")
    assert run == [0, 1, 2] and stopper.stopped_epoch == 2


def test_early_stopping_min_delta_ignores_small_improvements():
    stopper = callbacks.EarlyStopping(min_delta=0.1, patience=1)
    _, run = run_epochs(stopper, [1.0, 0.95, 0.92, 0.5])
    assert run == [0, 1]
    _, run = run_epochs(callbacks.EarlyStopping(min_delta=-0.1, patience=1),
                        [1.0, 0.95, 0.92, 0.5])
    assert run == [0, 1]  # the sign of min_delta is ignored, as in Keras


def test_early_stopping_compares_in_float32_as_keras():
    _, run = run_epochs(callbacks.EarlyStopping(patience=1), [1.0, 1.0 - 1e-10, 1.0 - 1e-11])
    assert run == [0, 1]


@pytest.mark.parametrize("monitor, values, expected", [
    ("val_accuracy", [0.5, 0.6, 0.55], [0, 1, 2]),        # auto: accuracy goes up
    ("val_mae", [0.5, 0.6, 0.4], [0, 1]),                 # auto: mae goes down
    ("output_mae", [0.5, 0.6, 0.4], [0, 1]),              # an output's metric
    ("val_mae_1", [0.5, 0.6, 0.4], [0, 1]),               # a repeated metric
    ("val_output_loss", [0.5, 0.6, 0.4], [0, 1]),         # an output's loss
])
def test_early_stopping_auto_mode_direction(monitor, values, expected):
    _, run = run_epochs(callbacks.EarlyStopping(monitor=monitor), values, key=monitor)
    assert run == expected


def test_early_stopping_explicit_modes():
    _, run = run_epochs(callbacks.EarlyStopping(monitor="score", mode="max"), [1.0, 2.0, 1.5],
                        key="score")
    assert run == [0, 1, 2]
    _, run = run_epochs(callbacks.EarlyStopping(monitor="score", mode="min"), [1.0, 2.0, 0.5],
                        key="score")
    assert run == [0, 1]


def test_early_stopping_auto_mode_uses_a_metric_objects_direction():
    class Score:
        _direction = "up"

    metric = type("Metric", (), {"name": "score", "fn": Score()})()
    model = FakeModel(metrics=[metric])
    _, run = run_epochs(callbacks.EarlyStopping(monitor="score"), [1.0, 2.0, 1.5], key="score",
                        model=model)
    assert run == [0, 1, 2]


def test_early_stopping_auto_mode_refuses_an_unknown_metric():
    with pytest.raises(ValueError, match="monitor=custom.*mode='max'"):
        run_epochs(callbacks.EarlyStopping(monitor="custom"), [1.0], key="custom")


def test_early_stopping_unknown_mode_warns_and_falls_back_to_auto():
    with pytest.warns(UserWarning, match="mode 'lowest' is unknown"):
        stopper = callbacks.EarlyStopping(mode="lowest")
    assert stopper.mode == "auto"


def test_early_stopping_baseline_resets_the_wait_only_when_beaten():
    # Without a baseline the wait restarts at epoch 0; with one the epoch does not beat, it
    # counts, so training stops one epoch sooner.
    _, run = run_epochs(callbacks.EarlyStopping(patience=2), [0.9, 0.95, 0.96, 0.97])
    assert run == [0, 1, 2]
    _, run = run_epochs(callbacks.EarlyStopping(patience=2, baseline=0.5), [0.9, 0.95, 0.96])
    assert run == [0, 1]
    _, run = run_epochs(callbacks.EarlyStopping(patience=2, baseline=0.95), [0.9, 0.95, 0.96,
                                                                             0.97])
    assert run == [0, 1, 2]


def test_early_stopping_start_from_epoch_skips_the_warm_up():
    stopper = callbacks.EarlyStopping(patience=0, start_from_epoch=3)
    _, run = run_epochs(stopper, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert run == [0, 1, 2, 3, 4] and stopper.best_epoch == 3


def test_early_stopping_restores_the_best_weights(capsys):
    stopper = callbacks.EarlyStopping(patience=2, restore_best_weights=True, verbose=1)
    model, run = run_epochs(stopper, [1.0, 0.5, 0.7, 0.8, 0.4])
    assert run == [0, 1, 2, 3]
    assert np.array_equal(model.weights[0], [1.0, 1.0])
    assert capsys.readouterr().out == (
        "Epoch 4: early stopping\nRestoring model weights from the end of the best epoch: 2.\n")


def test_early_stopping_restores_the_best_weights_when_not_stopped():
    model, run = run_epochs(callbacks.EarlyStopping(patience=5, restore_best_weights=True),
                            [1.0, 0.5, 0.7])
    assert run == [0, 1, 2] and np.array_equal(model.weights[0], [1.0, 1.0])


def test_early_stopping_keeps_the_last_weights_by_default():
    model, run = run_epochs(callbacks.EarlyStopping(patience=1), [1.0, 0.5, 0.7, 0.8])
    assert run == [0, 1, 2] and np.array_equal(model.weights[0], [2.0, 2.0])


def test_early_stopping_is_reset_by_each_fit():
    stopper = callbacks.EarlyStopping(patience=0)
    run_epochs(stopper, [0.1, 0.2])
    _, run = run_epochs(stopper, [1.0, 0.9, 1.5])
    assert run == [0, 1, 2]


def test_early_stopping_warns_when_the_monitor_is_missing():
    with pytest.warns(UserWarning, match="`val_loss` which is not available. Available "
                                         "metrics are: loss"):
        _, run = run_epochs(callbacks.EarlyStopping(), [1.0, 2.0, 3.0], key="loss")
    assert run == [0, 1, 2]


def test_early_stopping_stops_a_real_fit_and_restores_its_weights():
    model = Sequential([Input((20,)), Dense(1)])
    model.compile("sgd", loss="mse")
    weights = []
    record = callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: weights.append(model.get_weights()))
    stopper = callbacks.EarlyStopping(monitor="loss", patience=3, restore_best_weights=True)
    history = model.fit(np.zeros((5, 20)), np.zeros((5, 1)), epochs=10, verbose=0,
                        callbacks=[record, stopper])
    assert len(history.history["loss"]) == 4 and stopper.stopped_epoch == 3
    for got, expected in zip(model.get_weights(), weights[0]):
        np.testing.assert_array_equal(got, expected)


# ModelCheckpoint -----------------------------------------------------------------------------


def test_checkpoint_names_files_by_one_based_epoch_and_logs(capsys):
    checkpoint = callbacks.ModelCheckpoint("ckpt-{epoch:02d}-{val_loss:.2f}.keras", verbose=1)
    model, _ = run_epochs(checkpoint, [0.5, 0.25], logs_extra={"loss": 1.0})
    assert model.saved == [("save", "ckpt-01-0.50.keras"), ("save", "ckpt-02-0.25.keras")]
    out = capsys.readouterr().out
    assert "\nEpoch 1: saving model to ckpt-01-0.50.keras\n" in out
    assert "\nEpoch 2: finished saving model to ckpt-02-0.25.keras\n" in out


def test_checkpoint_save_best_only(capsys):
    checkpoint = callbacks.ModelCheckpoint("best-{epoch}.keras", save_best_only=True, verbose=1)
    model, _ = run_epochs(checkpoint, [0.5, 0.6, 0.4, 0.4])
    assert model.saved == [("save", "best-1.keras"), ("save", "best-3.keras")]
    out = capsys.readouterr().out
    assert ("\nEpoch 1: val_loss improved from None to 0.50000, saving model to "
            "best-1.keras\n") in out
    assert "\nEpoch 2: val_loss did not improve from 0.50000\n" in out
    assert checkpoint.best == 0.4


def test_checkpoint_save_best_only_max_mode_and_threshold():
    checkpoint = callbacks.ModelCheckpoint("m.keras", monitor="val_accuracy",
                                           save_best_only=True, initial_value_threshold=0.7)
    model, _ = run_epochs(checkpoint, [0.6, 0.8, 0.75, 0.9], key="val_accuracy")
    assert [path for _, path in model.saved] == ["m.keras", "m.keras"]
    assert checkpoint.best == 0.9
    model, _ = run_epochs(checkpoint, [0.85], key="val_accuracy")
    assert model.saved == []  # the best carries over to the next fit, as in Keras


def test_checkpoint_save_best_only_without_the_monitor_warns_and_saves():
    checkpoint = callbacks.ModelCheckpoint("m.keras", save_best_only=True)
    with pytest.warns(UserWarning, match="only with val_loss available"):
        model, _ = run_epochs(checkpoint, [1.0], key="loss")
    assert model.saved == [("save", "m.keras")]


def test_checkpoint_weights_only_needs_a_weights_h5_path():
    with pytest.raises(ValueError, match=r"must end in `\.weights\.h5`.*filepath=w\.h5"):
        callbacks.ModelCheckpoint("w.h5", save_weights_only=True)
    checkpoint = callbacks.ModelCheckpoint("w-{epoch}.weights.h5", save_weights_only=True)
    model, _ = run_epochs(checkpoint, [1.0])
    assert model.saved == [("save_weights", "w-1.weights.h5")]


def test_checkpoint_every_n_batches():
    checkpoint = callbacks.ModelCheckpoint("m-{epoch}-{batch}.keras", save_freq=3)
    model = FakeModel()
    checkpoint.set_model(model)
    checkpoint.on_train_begin()
    for epoch in range(2):
        checkpoint.on_epoch_begin(epoch)
        for batch in range(4):
            checkpoint.on_train_batch_end(batch, {"loss": 1.0})
        checkpoint.on_epoch_end(epoch, {"loss": 1.0})
    assert [path for _, path in model.saved] == ["m-1-3.keras", "m-2-2.keras"]


@pytest.mark.parametrize("save_freq", ["batch", 0, 1.5, True])
def test_checkpoint_refuses_a_bad_save_freq(save_freq):
    with pytest.raises(ValueError, match="Unrecognized save_freq"):
        callbacks.ModelCheckpoint("m.keras", save_freq=save_freq)


def test_checkpoint_names_a_missing_log_key():
    checkpoint = callbacks.ModelCheckpoint("m-{val_mae}.keras")
    with pytest.raises(KeyError, match='Failed to format this callback filepath: '
                                       '"m-{val_mae}.keras". Reason: .*val_mae'):
        run_epochs(checkpoint, [1.0])


def test_checkpoint_writes_real_files_into_missing_folders(tmp_path):
    # A path without Keras's endings gets pylstm's own format, as `model.save` writes it
    # (`.keras` files are written in tests/parity/keras/test_callbacks_parity.py).
    model = Sequential([Input((3,)), Dense(2)])
    model.compile("sgd", loss="mse")
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 2), "float32")
    pattern = tmp_path / "runs" / "a" / "m-{epoch}.pylstm"
    checkpoint = callbacks.ModelCheckpoint(pattern, monitor="loss", save_best_only=True)
    model.fit(x, y, epochs=2, verbose=0, shuffle=False, callbacks=[checkpoint])
    assert sorted(p.name for p in (tmp_path / "runs" / "a").iterdir()) == ["m-1.pylstm",
                                                                           "m-2.pylstm"]
    for got, expected in zip(load_model(tmp_path / "runs" / "a" / "m-2.pylstm").get_weights(),
                             model.get_weights()):
        np.testing.assert_array_equal(got, expected)


def test_checkpoint_refuses_a_folder_as_the_file(tmp_path):
    model = Sequential([Input((3,)), Dense(2)])
    model.compile("sgd", loss="mse")
    (tmp_path / "m.pylstm").mkdir()
    checkpoint = callbacks.ModelCheckpoint(tmp_path / "m.pylstm", monitor="loss")
    with pytest.raises(OSError, match="non-directory filepath"):
        model.fit(np.ones((4, 3)), np.zeros((4, 2)), epochs=1, verbose=0,
                  callbacks=[checkpoint])


# ReduceLROnPlateau ---------------------------------------------------------------------------


def lr_trace(callback, values, optimizer=None):
    """The learning rate logged at each epoch's end, and the rate after the run."""
    model = FakeModel(optimizer=optimizer or FakeOptimizer(1.0))
    callback.set_model(model)
    callback.on_train_begin()
    logged = []
    for epoch, value in enumerate(values):
        logs = {"val_loss": value}
        callback.on_epoch_end(epoch, logs)
        logged.append(logs["learning_rate"])
    return logged, model.optimizer.learning_rate


def test_reduce_lr_after_patience(capsys):
    callback = callbacks.ReduceLROnPlateau(factor=0.5, patience=2, verbose=1)
    logged, final = lr_trace(callback, [1.0, 1.0, 1.0, 1.0, 1.0, 0.5])
    # each epoch logs the rate it trained with; reductions at epochs 2 and 4
    assert logged == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25] and final == 0.25
    assert capsys.readouterr().out == (
        "\nEpoch 3: ReduceLROnPlateau reducing learning rate to 0.5.\n"
        "\nEpoch 5: ReduceLROnPlateau reducing learning rate to 0.25.\n")


def test_reduce_lr_min_delta_counts_small_changes_as_plateau():
    logged, _ = lr_trace(callbacks.ReduceLROnPlateau(factor=0.5, patience=1, min_delta=0.1),
                         [1.0, 0.95, 0.5, 0.45])
    assert logged == [1.0, 1.0, 0.5, 0.5]


def test_reduce_lr_cooldown_pauses_the_wait():
    logged, _ = lr_trace(callbacks.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2),
                         [1.0] * 7)
    # reductions at epochs 1, 3 and 5: each cooldown epoch counts down (2, then 1) and
    # resets the wait, the epoch that reaches 0 counts towards the patience again
    assert logged == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125]


def test_reduce_lr_stops_at_min_lr():
    logged, final = lr_trace(callbacks.ReduceLROnPlateau(factor=0.1, patience=0, min_lr=0.02,
                                                         min_delta=0), [1.0] * 5)
    assert final == pytest.approx(0.02) and logged[1] == 1.0
    assert logged[2] == pytest.approx(0.1) and logged[3] == pytest.approx(0.02)


def test_reduce_lr_max_mode():
    logged, _ = lr_trace(callbacks.ReduceLROnPlateau(mode="max", factor=0.5, patience=1),
                         [1.0, 2.0, 1.5, 3.0])
    assert logged == [1.0, 1.0, 1.0, 0.5]


def test_reduce_lr_refuses_factor_one():
    with pytest.raises(ValueError, match="factor >= 1.0. Received factor=1.0"):
        callbacks.ReduceLROnPlateau(factor=1.0)


def test_reduce_lr_refuses_to_set_a_scheduled_rate():
    callback = callbacks.ReduceLROnPlateau(patience=0)
    with pytest.raises(TypeError, match="ReduceLROnPlateau cannot set the learning rate.*"
                                        "LearningRateSchedule"):
        lr_trace(callback, [1.0, 1.0], optimizer=ScheduledOptimizer())


def test_reduce_lr_logs_a_schedules_rate_and_refuses_to_set_it():
    schedule = optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.5)
    optimizer = optimizers.SGD(learning_rate=schedule)
    callback = callbacks.ReduceLROnPlateau(patience=1)
    callback.set_model(FakeModel(optimizer))
    logs = {"val_loss": 1.0}
    callback.on_epoch_end(0, logs)
    assert logs["learning_rate"] == float(np.float32(0.1))  # the schedule's rate at step 0
    with pytest.raises(TypeError, match="ReduceLROnPlateau cannot set"):
        callback.on_epoch_end(1, {"val_loss": 1.0})


def test_reduce_lr_warns_when_the_monitor_is_missing():
    callback = callbacks.ReduceLROnPlateau()
    callback.set_model(FakeModel())
    with pytest.warns(UserWarning, match="`val_loss` which is not available"):
        callback.on_epoch_end(0, {"loss": 1.0})


# LearningRateScheduler -----------------------------------------------------------------------


def test_scheduler_sets_the_rate_from_epoch_and_rate(capsys):
    callback = callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5, verbose=1)
    model = FakeModel(FakeOptimizer(1.0))
    callback.set_model(model)
    for epoch in range(3):
        callback.on_epoch_begin(epoch)
        logs = {}
        callback.on_epoch_end(epoch, logs)
        assert logs == {"learning_rate": 0.5 ** (epoch + 1)}
    assert "\nEpoch 2: LearningRateScheduler setting learning rate to 0.25.\n" in \
        capsys.readouterr().out


def test_scheduler_takes_a_one_argument_schedule():
    callback = callbacks.LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))
    model = FakeModel()
    callback.set_model(model)
    callback.on_epoch_begin(3)
    assert model.optimizer.learning_rate == pytest.approx(0.025)


def test_scheduler_passes_keras_float32_rate():
    seen = []
    callback = callbacks.LearningRateScheduler(lambda epoch, lr: seen.append(lr) or lr)
    callback.set_model(FakeModel(FakeOptimizer(0.1)))
    callback.on_epoch_begin(0)
    assert seen == [float(np.float32(0.1))]


@pytest.mark.parametrize("rate", [1, "0.1", None])
def test_scheduler_refuses_a_non_float_rate(rate):
    callback = callbacks.LearningRateScheduler(lambda epoch, lr: rate)
    callback.set_model(FakeModel())
    with pytest.raises(ValueError, match="should be a float"):
        callback.on_epoch_begin(0)


def test_scheduler_refuses_a_scheduled_rate_and_a_non_callable():
    callback = callbacks.LearningRateScheduler(lambda epoch, lr: 0.1)
    callback.set_model(FakeModel(ScheduledOptimizer()))
    with pytest.raises(TypeError, match="LearningRateScheduler cannot set"):
        callback.on_epoch_begin(0)
    with pytest.raises(TypeError, match="`schedule` must be a callable"):
        callbacks.LearningRateScheduler(0.1)


# CSVLogger -----------------------------------------------------------------------------------


def read_rows(path, separator=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=separator))


def test_csv_logger_writes_sorted_keys_by_zero_based_epoch(tmp_path):
    path = tmp_path / "log.csv"
    logger = callbacks.CSVLogger(path)
    logger.set_model(FakeModel())
    logger.on_train_begin()
    logger.on_epoch_end(0, {"val_loss": 0.5, "loss": 1.0, "mae": 0.25})
    logger.on_epoch_end(1, {"val_loss": 0.4, "loss": 0.75, "mae": 0.125})
    assert read_rows(path) == [["epoch", "loss", "mae", "val_loss"],
                               ["0", "1.0", "0.25", "0.5"], ["1", "0.75", "0.125", "0.4"]]
    logger.on_train_end()
    assert logger.csv_file.closed


def test_csv_logger_adds_val_columns_and_a_separator(tmp_path):
    path = tmp_path / "log.tsv"
    logger = callbacks.CSVLogger(path, separator="\t")
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 1.0})
    logger.on_train_end()
    assert read_rows(path, "\t") == [["epoch", "loss", "val_loss"], ["0", "1.0", "NA"]]


def test_csv_logger_append_writes_the_header_once(tmp_path):
    path = tmp_path / "log.csv"
    for start in (0, 2):
        logger = callbacks.CSVLogger(path, append=True)
        logger.on_train_begin()
        for epoch in (start, start + 1):
            logger.on_epoch_end(epoch, {"loss": float(epoch), "val_loss": 0.0})
        logger.on_train_end()
    assert [row[0] for row in read_rows(path)] == ["epoch", "0", "1", "2", "3"]
    logger = callbacks.CSVLogger(path)
    logger.on_train_begin()
    logger.on_epoch_end(0, {"loss": 1.0, "val_loss": 0.0})
    logger.on_train_end()
    assert len(read_rows(path)) == 2  # append=False overwrites


def test_csv_logger_in_a_real_fit(tmp_path):
    model = Sequential([Input((3,)), Dense(1)])
    model.compile("sgd", loss="mse", metrics=["mae"])
    history = model.fit(np.ones((8, 3)), np.zeros((8, 1)), epochs=3, verbose=0,
                        validation_split=0.25, callbacks=[callbacks.CSVLogger(tmp_path / "l")])
    rows = read_rows(tmp_path / "l")
    assert rows[0] == ["epoch", "loss", "mae", "val_loss", "val_mae"]
    assert [float(r[1]) for r in rows[1:]] == history.history["loss"]


# TerminateOnNaN ------------------------------------------------------------------------------


@pytest.mark.parametrize("loss", [math.nan, math.inf, -math.inf])
def test_terminate_on_nan_stops_training(loss, capsys):
    callback = callbacks.TerminateOnNaN()
    model = FakeModel()
    callback.set_model(model)
    callback.on_train_batch_end(0, {"loss": 1.0})
    assert not model.stop_training
    callback.on_train_batch_end(4, {"loss": loss})
    assert model.stop_training
    assert capsys.readouterr().out == "Batch 4: Invalid loss, terminating training\n"


def test_terminate_on_nan_can_raise():
    callback = callbacks.TerminateOnNaN(raise_error=True)
    callback.set_model(FakeModel())
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 2"):
        callback.on_train_batch_end(2, {"loss": math.nan})


# LambdaCallback ------------------------------------------------------------------------------


def test_lambda_callback_calls_every_hook_given():
    calls = []
    hooks = {name: (lambda name: lambda *args, **kwargs: calls.append((name, args, kwargs)))(
        name) for name in callbacks._HOOKS}
    callback = callbacks.LambdaCallback(**hooks)
    for name in callbacks._HOOKS:
        args = (7,) if "epoch" in name or "batch" in name else ()
        getattr(callback, name)(*args, logs={"loss": 1.0})
    assert [c[0] for c in calls] == list(callbacks._HOOKS)
    assert calls[0] == ("on_batch_begin", (7,), {"logs": {"loss": 1.0}})


def test_lambda_callback_leaves_other_hooks_as_no_ops():
    seen = []
    callback = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch))
    callback.on_epoch_begin(0)
    callback.on_epoch_end(5, {})
    assert seen == [5]


def test_lambda_callback_refuses_unknown_and_non_callable_hooks():
    with pytest.raises(TypeError, match="unknown hook `on_step_end`"):
        callbacks.LambdaCallback(on_step_end=print)
    with pytest.raises(TypeError, match="`on_epoch_end` must be a callable"):
        callbacks.LambdaCallback(on_epoch_end=1)


def test_terminate_on_nan_stops_a_real_fit(capsys):
    model = Sequential([Input((2,)), Dense(1)])
    model.compile(optimizers.SGD(learning_rate=1.0), loss="mse")  # diverges
    x = np.linspace(-10, 10, 32).reshape(16, 2)
    with np.errstate(over="ignore", invalid="ignore"):
        history = model.fit(x, np.full((16, 1), 100.0), batch_size=4, epochs=50, verbose=0,
                            shuffle=False, callbacks=[callbacks.TerminateOnNaN()])
    losses = history.history["loss"]
    assert len(losses) < 50 and not np.isfinite(losses[-1]) and np.isfinite(losses[:-1]).all()
    assert capsys.readouterr().out.endswith(": Invalid loss, terminating training\n")


def test_terminate_on_nan_stops_an_lstm_whose_loss_overflows(capsys):
    # The LSTM core refuses NaN gradients: the step that meets a non-finite loss makes no
    # update, and the callback sees the loss at the batch's end.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 5, 2)).astype("float32")
    y = 100 * np.sin(x[:, :, 0].sum(axis=1, keepdims=True))
    model = Sequential([Input((5, 2)), LSTM(4, seed=0), Dense(1)])
    model.compile(optimizers.SGD(learning_rate=5.0), loss="mse")
    with np.errstate(over="ignore", invalid="ignore"):
        history = model.fit(x, y, batch_size=4, epochs=10, verbose=0, shuffle=False,
                            callbacks=[callbacks.TerminateOnNaN()])
    assert not np.isfinite(history.history["loss"][-1]) and len(history.history["loss"]) < 10
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert "Invalid loss, terminating training" in capsys.readouterr().out


def test_doctests():
    import doctest

    result = doctest.testmod(callbacks)
    assert result.attempted > 0 and result.failed == 0
