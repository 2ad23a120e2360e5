"""Callback parity with Keras 3 (TensorFlow backend, float32).

Two kinds of test:
- Decisions: Keras's and pylstm's `EarlyStopping`, `ReduceLROnPlateau` and `ModelCheckpoint`
  are fed the same sequences of logs (random, with ties, plateaus and NaN) on a stand-in
  model, for many argument combinations: they stop, restore, reduce the rate and save at
  the same epochs.
- Training: an `LSTM + Dense` regression model with Keras's initial weights, trained by SGD
  without shuffling (batches of 4, a held-out validation set), in Keras and in pylstm with
  the same callback: `EarlyStopping` stops at the same epoch and restores the same weights,
  `ReduceLROnPlateau` and `LearningRateScheduler` change the rate at the same epochs with
  the same per-epoch losses (rtol 1e-4), and `ModelCheckpoint(save_best_only=True)` writes
  at the same epochs.

Legend: N training samples, V validation samples, T timesteps, D features, H units.
"""

import itertools
import math

import numpy as np
import pytest

from pylstm import callbacks, optimizers
from pylstm.layers import LSTM, Dense, Input
from pylstm.models import Sequential

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

keras = ku.keras

N, V, T, D, H = 16, 8, 5, 2, 4
BATCH_SIZE, EPOCHS, LEARNING_RATE = 4, 8, 0.3


# Decisions on the same logs ------------------------------------------------------------------


class StandIn:
    """The model a callback sees: weights (set to the epoch number at each epoch's end),
    `stop_training`, an optimizer, and saving that records the paths."""

    def __init__(self, optimizer=None):
        self.weights = [np.zeros(2, "float32")]
        self.stop_training = False
        self.optimizer = optimizer
        self.saved = []

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w) for w in weights]

    def save(self, path, **kwargs):
        self.saved.append(path)

    save_weights = save


def run_logs(callback, values, monitor, model):
    """Epochs run with `logs = {monitor: value}` and the logged learning rates."""
    callback.set_model(model)
    callback.on_train_begin()
    run, rates = [], []
    for epoch, value in enumerate(values):
        callback.on_epoch_begin(epoch)
        model.weights = [np.full(2, epoch, "float32")]
        logs = {monitor: value}
        callback.on_epoch_end(epoch, logs)
        run.append(epoch)
        if "learning_rate" in logs:
            rates.append(float(logs["learning_rate"]))
        if model.stop_training:
            break
    callback.on_train_end()
    return run, rates


def log_sequences():
    """Monitored values: random with ties (one decimal), a noisy descent with plateaus, one
    with a NaN, and a constant."""
    rng = np.random.default_rng(0)
    sequences = [np.round(rng.uniform(0, 1, 12), 1) for _ in range(4)]
    sequences += [np.round(1 - np.cumsum(rng.uniform(0, 0.06, 12)), 2) for _ in range(4)]
    sequences.append(np.array([0.5, 0.4, math.nan, 0.45, 0.3, 0.35, 0.36, 0.2, 0.2, 0.25]))
    sequences.append(np.full(10, 0.5))
    return [[float(v) for v in s] for s in sequences]


def early_stopping_arguments():
    grid = itertools.product([0, 1, 3], [0, 0.05, -0.03], ["min", "max"], [None, 0.5],
                             [0, 2])
    return [dict(patience=p, min_delta=d, mode=m, baseline=b, start_from_epoch=s,
                 restore_best_weights=True) for p, d, m, b, s in grid]


def test_early_stopping_decides_as_keras():
    for kwargs in early_stopping_arguments():
        for values in log_sequences():
            ours, theirs = callbacks.EarlyStopping(**kwargs), \
                keras.callbacks.EarlyStopping(**kwargs)
            our_model, their_model = StandIn(), StandIn()
            got = run_logs(ours, values, "val_loss", our_model)[0]
            want = run_logs(theirs, values, "val_loss", their_model)[0]
            context = f"{kwargs} on {values}"
            assert got == want, context
            assert (ours.stopped_epoch, ours.best_epoch) == (theirs.stopped_epoch,
                                                             theirs.best_epoch), context
            np.testing.assert_array_equal(our_model.weights[0], their_model.weights[0],
                                          err_msg=context)


def reduce_lr_arguments():
    grid = itertools.product([0.5], [0, 1, 2], [0, 2], [0.0, 0.2], [0, 0.05], ["min", "max"])
    return [dict(factor=f, patience=p, cooldown=c, min_lr=lr, min_delta=d, mode=m)
            for f, p, c, lr, d, m in grid]


def test_reduce_lr_on_plateau_decides_as_keras():
    # Keras's optimizer variable is slow to read and set: every other sequence.
    for kwargs in reduce_lr_arguments():
        for values in log_sequences()[::2]:
            optimizer = keras.optimizers.SGD(learning_rate=1.0)
            want = run_logs(keras.callbacks.ReduceLROnPlateau(**kwargs), values, "val_loss",
                            StandIn(optimizer))[1]
            model = StandIn(optimizers.SGD(learning_rate=1.0))
            got = run_logs(callbacks.ReduceLROnPlateau(**kwargs), values, "val_loss", model)[1]
            np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=f"{kwargs} on {values}")
            np.testing.assert_allclose(model.optimizer.learning_rate,
                                       float(optimizer.learning_rate.numpy()), rtol=1e-6)


def test_model_checkpoint_saves_best_as_keras(tmp_path):
    grid = itertools.product(["min", "max"], [None, 0.5], [False, True])
    for mode, threshold, weights_only in grid:
        path = str(tmp_path / ("m-{epoch}.weights.h5" if weights_only else "m-{epoch}.keras"))
        kwargs = dict(save_best_only=True, mode=mode, initial_value_threshold=threshold,
                      save_weights_only=weights_only)
        for values in log_sequences():
            ours, theirs = StandIn(), StandIn()
            run_logs(callbacks.ModelCheckpoint(path, **kwargs), values, "val_loss", ours)
            run_logs(keras.callbacks.ModelCheckpoint(path, **kwargs), values, "val_loss",
                     theirs)
            assert ours.saved == theirs.saved, f"{kwargs} on {values}"


# Training with callbacks ---------------------------------------------------------------------


def data():
    """Training `(x (N, T, D), y (N, 1))` and validation `(x (V, T, D), y (V, 1))`, float32;
    the noisy target makes the validation loss rise after two epochs at this rate."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N + V, T, D)).astype("float32")
    y = (np.sin(x[:, :, 0].sum(axis=1)) + 0.3 * rng.normal(size=N + V)).astype("float32")
    return (x[:N], y[:N, None]), (x[N:], y[N:, None])


def fit_both(make_callbacks, epochs=EPOCHS):
    """Trains the Keras model and its pylstm copy with the callbacks `make_callbacks(library)`
    (`pylstm.callbacks` or `keras.callbacks`); returns `[(history, model, callbacks)]`, ours
    then Keras's."""
    (x, y), validation = data()
    keras.utils.set_random_seed(0)
    theirs = keras.Sequential([keras.Input((T, D)), keras.layers.LSTM(H),
                               keras.layers.Dense(1)])
    ours = Sequential([Input((T, D)), LSTM(H), Dense(1)])
    ku.copy_weights(theirs, ours)
    results = []
    for model, optimizer, library in ((ours, optimizers.SGD(LEARNING_RATE), callbacks),
                                      (theirs, keras.optimizers.SGD(LEARNING_RATE),
                                       keras.callbacks)):
        model.compile(optimizer=optimizer, loss="mse")
        used = make_callbacks(library)
        history = model.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, shuffle=False,
                            verbose=0, validation_data=validation, callbacks=used)
        results.append((history, model, used))
    return results


def recorder(library, key):
    """A callback that records `logs[key]` at each epoch's end, and its list."""
    seen = []
    return library.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(logs[key])), seen


def weight_recorder(library):
    """A callback that records the model's weights at each epoch's end (in `.weights`)."""
    class Record(library.Callback):
        def __init__(self):
            super().__init__()
            self.weights = []

        def on_epoch_end(self, epoch, logs=None):
            self.weights.append(self.model.get_weights())

    return Record()


def test_early_stopping_stops_and_restores_as_keras():
    (got, ours, (_, our_stopper)), (want, theirs, (record, their_stopper)) = fit_both(
        lambda lib: [weight_recorder(lib), lib.EarlyStopping(patience=2,
                                                             restore_best_weights=True)])
    assert 0 < their_stopper.stopped_epoch < EPOCHS - 1, "Keras should stop early here"
    assert our_stopper.stopped_epoch == their_stopper.stopped_epoch
    assert our_stopper.best_epoch == their_stopper.best_epoch
    np.testing.assert_allclose(got.history["val_loss"], want.history["val_loss"], rtol=1e-4)
    final = theirs.get_weights()
    # Keras restored its best epoch's weights, which differ from the last epoch's.
    best = record.weights[their_stopper.best_epoch]
    assert all(np.array_equal(a, b) for a, b in zip(final, best))
    assert not all(np.allclose(a, b, rtol=1e-3) for a, b in zip(final, record.weights[-1]))
    for a, b in zip(ours.get_weights(), final):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_reduce_lr_on_plateau_changes_the_rate_as_keras():
    rates = {}

    def make(lib):
        record, rates[lib] = recorder(lib, "learning_rate")
        return [lib.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=1), record]

    (got, ours, _), (want, theirs, _) = fit_both(make)
    want_rates = rates[keras.callbacks]
    assert len(set(want_rates)) > 2, "Keras should reduce the rate more than once here"
    np.testing.assert_allclose(rates[callbacks], want_rates, rtol=1e-6)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(got.history[key], want.history[key], rtol=1e-4)
    np.testing.assert_allclose(ours.optimizer.learning_rate,
                               float(theirs.optimizer.learning_rate.numpy()), rtol=1e-6)


def schedule(epoch, lr):
    return lr if epoch < 2 else lr * 0.7


def test_learning_rate_scheduler_gives_keras_losses():
    rates = {}

    def make(lib):
        record, rates[lib] = recorder(lib, "learning_rate")
        return [lib.LearningRateScheduler(schedule), record]

    (got, _, _), (want, _, _) = fit_both(make)
    np.testing.assert_allclose(rates[callbacks], rates[keras.callbacks], rtol=1e-6)
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(got.history[key], want.history[key], rtol=1e-4)


def test_the_learning_rate_reaches_the_history_as_in_keras():
    """Keras's `fit` calls `History` after the user's callbacks, so the rate that
    `LearningRateScheduler` and `ReduceLROnPlateau` log is in `history.history`."""
    (got, _, _), (want, _, _) = fit_both(
        lambda lib: [lib.LearningRateScheduler(schedule)], epochs=3)
    np.testing.assert_allclose(got.history["learning_rate"], want.history["learning_rate"],
                               rtol=1e-6)


def test_model_checkpoint_saves_best_at_keras_epochs(tmp_path):
    folders = {callbacks: tmp_path / "ours", keras.callbacks: tmp_path / "theirs"}
    fit_both(lambda lib: [lib.ModelCheckpoint(str(folders[lib] / "m-{epoch:02d}.keras"),
                                              monitor="loss", save_best_only=True)])
    got = sorted(p.name for p in folders[callbacks].iterdir())
    want = sorted(p.name for p in folders[keras.callbacks].iterdir())
    assert got == want
    assert 1 < len(want) < EPOCHS, "some epochs should not improve here"


def test_model_checkpoint_saves_every_n_batches_as_keras(tmp_path):
    folders = {callbacks: tmp_path / "ours", keras.callbacks: tmp_path / "theirs"}
    fit_both(lambda lib: [lib.ModelCheckpoint(str(folders[lib] / "m-{epoch}-{batch}.keras"),
                                              save_freq=3)], epochs=3)
    got = sorted(p.name for p in folders[callbacks].iterdir())
    want = sorted(p.name for p in folders[keras.callbacks].iterdir())
    assert got == want and len(want) == 4  # 12 batches
