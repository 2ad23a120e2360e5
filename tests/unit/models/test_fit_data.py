"""`fit`, `evaluate` and `predict` as Keras 3 drives them: the callback hooks in Keras's order
(a recording callback), data from generators, iterables and `PyDataset`s with
`steps_per_epoch`, sample and class weights (against the loss computed by hand), validation
(`validation_data` with weights, `validation_freq`, `validation_steps`), the one-batch methods,
`to_json` / `model_from_json`, and the errors that name what is wrong.

Legend: N samples, T timesteps, D features, B batch size.
"""

import json
import warnings

import numpy as np
import pytest

from pylstm import optimizers, utils
from pylstm.callbacks import Callback, History
from pylstm.layers import LSTM, Dense, Input, Masking
from pylstm.models import Model, Sequential, model_from_json

N, T, D, B = 10, 4, 3, 4
HOOKS = ["on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
         "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
         "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
         "on_predict_batch_begin", "on_predict_batch_end"]


class Recorder(Callback):
    """Records `(hook, epoch or batch index)` and every hook's logs."""

    def __init__(self):
        super().__init__()
        self.calls, self.logs = [], []


def _recording(hook):
    def record(self, *args, **kwargs):
        self.calls.append((hook,) + tuple(a for a in args if isinstance(a, int)))
        logs = kwargs.get("logs", args[-1] if args and not isinstance(args[-1], int) else None)
        self.logs.append(logs)
    return record


for _hook in HOOKS:
    setattr(Recorder, _hook, _recording(_hook))


def data(seed=0, n=N):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, D)).astype("float32")
    return x, (x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32") + 0.3)


def model(seed=0, metrics=None, lr=0.1):
    utils.set_random_seed(seed)
    m = Sequential([Input((D,)), Dense(1)])
    m.compile(optimizer=optimizers.SGD(lr), loss="mse", metrics=metrics)
    return m


def epoch_calls(epoch, steps, test_steps=0):
    calls = [("on_epoch_begin", epoch)]
    for s in range(steps):
        calls += [("on_train_batch_begin", s), ("on_train_batch_end", s)]
    if test_steps:
        calls += [("on_test_begin",)] + [c for s in range(test_steps) for c in (
            ("on_test_batch_begin", s), ("on_test_batch_end", s))] + [("on_test_end",)]
    return calls + [("on_epoch_end", epoch)]


# Hooks -----------------------------------------------------------------------------------


def test_fit_calls_every_hook_in_keras_order_with_running_means():
    x, y = data()
    rec = Recorder()
    m = model(metrics=["mae"])
    history = m.fit(x, y, batch_size=B, epochs=3, validation_data=(x, y), validation_freq=2,
                    shuffle=False, verbose=0, callbacks=[rec])
    expected = ([("on_train_begin",)] + epoch_calls(0, 3) + epoch_calls(1, 3, test_steps=3)
                + epoch_calls(2, 3) + [("on_train_end",)])
    assert rec.calls == expected
    assert rec.params == {"verbose": 0, "epochs": 3, "steps": 3}
    assert rec.model is m and m.history is history
    assert history.history["loss"] == [logs["loss"] for (hook, *_), logs in zip(
        rec.calls, rec.logs) if hook == "on_epoch_end"]
    assert len(history.history["val_loss"]) == 1  # validated after epoch 2 only
    # A batch's end gets the epoch's running means: the last one is the epoch's.
    ends = [logs for (hook, *_), logs in zip(rec.calls, rec.logs) if hook == "on_train_batch_end"]
    assert ends[2] == {k: history.history[k][0] for k in ("loss", "mae")}
    assert rec.logs[-1] == rec.logs[-2] == {k: v[-1] for k, v in history.history.items()
                                            if k in ("loss", "mae")}  # the last epoch's


def test_evaluate_and_predict_hooks():
    x, y = data()
    m = model()
    rec = Recorder()
    loss = m.evaluate(x, y, batch_size=B, verbose=0, callbacks=[rec])
    assert rec.calls == [("on_test_begin",)] + [c for s in range(3) for c in (
        ("on_test_batch_begin", s), ("on_test_batch_end", s))] + [("on_test_end",)]
    assert rec.params == {"verbose": 0, "epochs": 1, "steps": 3}
    assert rec.logs[-1] == {"loss": loss}
    rec = Recorder()
    out = m.predict(x, batch_size=B, verbose=0, callbacks=[rec])
    assert rec.calls == [("on_predict_begin",)] + [c for s in range(3) for c in (
        ("on_predict_batch_begin", s), ("on_predict_batch_end", s))] + [("on_predict_end",)]
    outputs = [logs["outputs"] for (hook, *_), logs in zip(rec.calls, rec.logs)
               if hook == "on_predict_batch_end"]
    np.testing.assert_array_equal(np.concatenate(outputs), out)


def test_stop_training_is_read_after_each_batch():
    class StopAtBatch1(Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True

    x, y = data()
    rec = Recorder()
    history = model().fit(x, y, batch_size=2, epochs=3, verbose=0,
                          callbacks=[StopAtBatch1(), rec])
    assert rec.calls == [("on_train_begin",)] + epoch_calls(0, 2) + [("on_train_end",)]
    assert history.epoch == [0]


def test_history_and_progress_bar_come_last_and_a_given_history_is_used(capsys):
    x, y = data()
    mine = History()
    m = model()
    assert m.fit(x, y, epochs=2, verbose=0, callbacks=[mine]) is mine
    assert len(mine.history["loss"]) == 2 and m.history is mine
    m.fit(x, y, epochs=1, verbose=2)
    assert capsys.readouterr().err.startswith("1/1 - ")


# Data sources ----------------------------------------------------------------------------


class Batches(utils.PyDataset):
    """Batch `i` is samples `[i B, (i + 1) B)`; records the indices drawn and the epochs."""

    def __init__(self, x, y, w=None):
        super().__init__()
        self.x, self.y, self.w = x, y, w
        self.drawn, self.begun, self.ended = [], 0, 0

    def __len__(self):
        return -(-len(self.x) // B)

    def __getitem__(self, index):
        self.drawn.append(index)
        part = slice(index * B, (index + 1) * B)
        return (self.x[part], self.y[part]) + (() if self.w is None else (self.w[part],))

    def on_epoch_begin(self):
        self.begun += 1

    def on_epoch_end(self):
        self.ended += 1


def test_a_py_dataset_trains_as_its_arrays():
    x, y = data()
    w = np.linspace(0.5, 2.0, N)
    by_arrays = model()
    expected = by_arrays.fit(x, y, batch_size=B, epochs=2, shuffle=False, verbose=0,
                             sample_weight=w).history
    dataset = Batches(x, y, w)
    by_dataset = model()
    got = by_dataset.fit(dataset, epochs=2, shuffle=False, verbose=0).history
    assert got.keys() == expected.keys()
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-12)
    assert dataset.drawn == [0, 1, 2, 0, 1, 2] and (dataset.begun, dataset.ended) == (2, 2)
    np.testing.assert_allclose(by_dataset.predict(Batches(x, y), verbose=0),
                               by_arrays.predict(x, batch_size=B, verbose=0), rtol=1e-6)
    assert by_dataset.evaluate(Batches(x, y), verbose=0) == pytest.approx(
        by_arrays.evaluate(x, y, batch_size=B, verbose=0), rel=1e-12)
    shuffled = Batches(x, y)
    model().fit(shuffled, epochs=3, verbose=0)  # shuffle=True: a permutation per epoch
    assert all(sorted(shuffled.drawn[i:i + 3]) == [0, 1, 2] for i in (0, 3, 6))


def test_a_generator_is_drawn_on_across_epochs_with_steps_per_epoch():
    x, y = data()
    drawn = []

    def forever():
        i = 0
        while True:
            drawn.append(i % 3)
            yield x[(i % 3) * B:(i % 3 + 1) * B], y[(i % 3) * B:(i % 3 + 1) * B]
            i += 1

    rec = Recorder()
    got = model().fit(forever(), steps_per_epoch=2, epochs=3, verbose=0, callbacks=[rec])
    assert drawn == [0, 1, 2, 0, 1, 2]
    assert rec.params["steps"] == 2
    # The same steps one batch at a time: each epoch's loss is its batches' mean by size.
    m, expected = model(), []
    for batches in ([0, 1], [2, 0], [1, 2]):
        parts = [slice(i * B, (i + 1) * B) for i in batches]
        losses = [m.train_on_batch(x[p], y[p]) for p in parts]
        sizes = [len(x[p]) for p in parts]
        expected.append(np.dot(losses, sizes) / sum(sizes))
    assert got.history["loss"] == pytest.approx(expected, rel=1e-12)


def test_a_finite_generator_is_one_epoch_and_running_out_warns():
    x, y = data()

    def three():
        for i in range(3):
            yield x[i * B:(i + 1) * B], y[i * B:(i + 1) * B]

    rec = Recorder()
    with pytest.warns(UserWarning, match="ran out"):
        history = model().fit(three(), epochs=2, verbose=0, callbacks=[rec])
    # Keras's order: the begin hook of the batch that was not there, then the epoch's end.
    assert rec.calls[:9] == [("on_train_begin",)] + epoch_calls(0, 3)[:-1] + [
        ("on_train_batch_begin", 3)]
    assert history.epoch == [0] and rec.calls[-1] == ("on_train_end",)
    assert model().fit(three(), epochs=1, verbose=0).history["loss"] == pytest.approx(
        model().fit(x, y, batch_size=B, shuffle=False, verbose=0).history["loss"], rel=1e-12)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model().fit(three(), steps_per_epoch=5, verbose=0)
    assert any("ran out" in str(w.message) for w in caught)


def test_an_iterable_is_a_new_pass_each_epoch():
    series = np.sin(np.arange(40, dtype="float32") / 3.0)[:, None]
    windows = utils.timeseries_dataset_from_array(series[:-T], series[T:, 0], T, batch_size=B)
    utils.set_random_seed(0)
    m = Sequential([Input((T, 1)), LSTM(3, seed=1), Dense(1)])
    m.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    start = m.get_weights()
    got = m.fit(windows, epochs=2, verbose=0).history["loss"]
    xs, ys = zip(*windows)
    m.set_weights(start)
    m.compile(optimizer=optimizers.SGD(0.1), loss="mse")
    expected = m.fit(np.concatenate(xs), np.concatenate(ys), batch_size=B, epochs=2,
                     shuffle=False, verbose=0).history["loss"]
    assert got == pytest.approx(expected, rel=1e-6)


# Weights ---------------------------------------------------------------------------------


def test_sample_weight_scales_each_loss_over_the_batch_size():
    x, y = data()
    w = np.arange(N, dtype="float64")
    m = model()
    err = np.square(m.predict(x, verbose=0) - y)[:, 0]
    assert m.evaluate(x, y, sample_weight=w, batch_size=N, verbose=0) == pytest.approx(
        np.sum(err * w) / N, rel=1e-6)
    assert m.test_on_batch(x, y, sample_weight=w[:, None]) == pytest.approx(
        np.sum(err * w) / N, rel=1e-6)
    # Zero weights drop samples but keep the count: half the gradient of the first half.
    half, full = model(lr=0.05), model(lr=0.1)
    half.train_on_batch(x[:N // 2], y[:N // 2])
    full.train_on_batch(x, y, sample_weight=(np.arange(N) < N // 2).astype("float64"))
    for a, b in zip(half.get_weights(), full.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_timestep_weights_combine_with_the_mask_as_keras():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((N, T, D)).astype("float32")
    x[::2, -1] = 0.0  # masked last timestep in even rows
    y = rng.standard_normal((N, T, 1)).astype("float32")
    w = rng.random((N, T))
    utils.set_random_seed(0)
    m = Sequential([Input((T, D)), Masking(0.0), LSTM(2, return_sequences=True), Dense(1)])
    m.compile(optimizer="sgd", loss="mse")
    err = np.square(m.predict(x, verbose=0) - y)[..., 0]
    mask = np.any(x != 0, axis=-1)
    expected = np.sum(err * w * mask * (mask.size / mask.sum())) / mask.size
    assert m.evaluate(x, y, sample_weight=w, batch_size=N, verbose=0) == pytest.approx(
        expected, rel=1e-6)
    per_sample = rng.random(N)  # (N,) weights: the same at every timestep
    expected = np.sum(err * per_sample[:, None] * mask * (mask.size / mask.sum())) / mask.size
    assert m.evaluate(x, y, sample_weight=per_sample, batch_size=N, verbose=0) == \
        pytest.approx(expected, rel=1e-6)


def test_class_weight_is_the_sample_weight_of_each_class():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((N, D)).astype("float32")
    labels = rng.integers(0, 3, N)
    class_weight = {0: 0.5, 2: 3.0}
    as_weights = np.array([class_weight.get(c, 1.0) for c in labels])

    def classifier():
        utils.set_random_seed(0)
        m = Sequential([Input((D,)), Dense(3, activation="softmax")])
        m.compile(optimizer=optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
        return m

    def run(**kwargs):
        return classifier().fit(x, kwargs.pop("y", labels), batch_size=B, epochs=2,
                                shuffle=False, verbose=0, **kwargs).history["loss"]

    expected = run(sample_weight=as_weights)
    assert run(class_weight=class_weight) == pytest.approx(expected, rel=1e-12)
    onehot = np.eye(3, dtype="float32")[labels]
    m = classifier()
    m.compile(optimizer=optimizers.SGD(0.1), loss="categorical_crossentropy")
    assert m.fit(x, onehot, batch_size=B, epochs=2, shuffle=False, verbose=0,
                 class_weight=class_weight).history["loss"] == pytest.approx(expected, rel=1e-6)
    assert run(class_weight={1: 1.0}) == pytest.approx(run(), rel=1e-12)


# Validation ------------------------------------------------------------------------------


def test_validation_data_with_weights_steps_and_batch_size():
    x, y = data()
    w = np.linspace(0.0, 1.0, N)
    rec = Recorder()
    m = model()
    history = m.fit(x, y, batch_size=B, epochs=2, verbose=0, validation_data=(x, y, w),
                    validation_batch_size=3, validation_steps=2, callbacks=[rec])
    tests = [c for c in rec.calls if c[0] == "on_test_batch_end"]
    assert tests == [("on_test_batch_end", 0), ("on_test_batch_end", 1)] * 2
    assert history.history["val_loss"][-1] == pytest.approx(
        m.evaluate(x[:6], y[:6], sample_weight=w[:6], batch_size=3, verbose=0), rel=1e-12)
    history = model().fit(x, y, epochs=5, verbose=0, validation_split=0.3,
                          validation_freq=[1, 4])
    assert len(history.history["val_loss"]) == 2


def test_validation_data_may_be_a_source_of_batches():
    x, y = data()
    w = np.linspace(0.0, 1.0, N)
    m = model()
    history = m.fit(x, y, epochs=2, verbose=0, validation_data=Batches(x, y, w))
    assert history.history["val_loss"][-1] == pytest.approx(
        m.evaluate(x, y, sample_weight=w, batch_size=B, verbose=0), rel=1e-12)


def test_sample_weights_of_several_outputs():
    """One array per output (a list or a dict), or one `(N,)` array for every output: each
    output's logged loss is its own weighted loss."""
    x, y = data()
    a, b = Input((D,), name="a"), Input((D,), name="b")
    two = Model([a, b], [Dense(1, name="p")(a), Dense(1, name="q")(b)])
    two.compile(optimizer="sgd", loss=["mse", "mae"])
    w1, w2 = np.linspace(0.0, 1.0, N), np.linspace(2.0, 1.0, N)
    p, q = two.predict([x, 2 * x], verbose=0)
    mse, mae = np.square(p - y)[:, 0], np.abs(q - y)[:, 0]
    for weights, (v1, v2) in (([w1, w2], (w1, w2)), ({"q": w2, "p": w1}, (w1, w2)),
                              (w1, (w1, w1)), ([None, w2], (np.ones(N), w2))):
        logs = two.evaluate([x, 2 * x], [y, y], sample_weight=weights, batch_size=N, verbose=0,
                            return_dict=True)
        assert logs["p_loss"] == pytest.approx(np.sum(mse * v1) / N, rel=1e-6)
        assert logs["q_loss"] == pytest.approx(np.sum(mae * v2) / N, rel=1e-6)


def test_progress_goes_to_stderr(capsys):
    x, y = data()
    m = model()
    # a tqdm bar where tqdm is installed, else Keras's line: on stderr either way
    m.evaluate(x, y, batch_size=B)
    out, err = capsys.readouterr()
    assert out == "" and "loss: " in err
    m.predict(x, batch_size=B)
    out, err = capsys.readouterr()
    assert out == "" and err.strip()
    rec = Recorder()
    m.fit(x, y, epochs=1, callbacks=[rec])
    assert rec.params["verbose"] == "auto"  # passed on as given, as Keras


def test_one_batch_methods_return_what_keras_returns():
    x, y = data()
    m = model(metrics=["mae"])
    before = m.evaluate(x, y, batch_size=N, verbose=0, return_dict=True)
    assert m.test_on_batch(x, y, return_dict=True) == pytest.approx(before, rel=1e-12)
    loss, mae = m.train_on_batch(x, y)
    assert [loss, mae] == pytest.approx([before["loss"], before["mae"]], rel=1e-6)
    np.testing.assert_array_equal(m.predict_on_batch(x), m.predict(x, batch_size=N, verbose=0))
    assert isinstance(model().train_on_batch(x, y), float)


# JSON ------------------------------------------------------------------------------------


def test_to_json_round_trips_sequential_and_functional_models():
    m = Sequential([Input((T, D)), LSTM(3), Dense(1)])
    m.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    text = m.to_json(indent=1)
    config = json.loads(text)
    assert config["class_name"] == "Sequential" and "compile_config" in config
    clone = model_from_json(text)
    assert json.loads(clone.to_json()) == config
    assert [w.shape for w in clone.get_weights()] == [w.shape for w in m.get_weights()]
    assert np.any(clone.get_weights()[0] != 0)  # initialized as a new model
    assert type(clone.optimizer).__name__ == "SGD"
    a, b = Input((T, D), name="a"), Input((2,), name="b")
    graph = Model([a, b], Dense(2, name="head")(LSTM(2)(a)))
    clone = model_from_json(graph.to_json())
    assert isinstance(clone, Model) and clone.input_names == ["a", "b"]


@pytest.mark.parametrize("text, error, match", [
    (b"\xff", ValueError, "not UTF-8"), ("{", ValueError, "not valid JSON"),
    ("[1, 2]", ValueError, "not a serialized model"),
    ('{"class_name": "Sequential", "config": {"layers": 3}}', ValueError, "model_from_json"),
    ('{"class_name": "Nope", "config": {}}', ValueError, "model_from_json"),
    (3, TypeError, "json_string"),
])
def test_model_from_json_names_what_is_wrong(text, error, match):
    with pytest.raises(error, match=match):
        model_from_json(text)


# Errors ----------------------------------------------------------------------------------


def test_argument_errors_name_the_argument():
    x, y = data()
    m = model()
    gen = (b for b in [(x, y)])
    cases = [
        (dict(x=gen, y=y), ValueError, "`y` should not be passed"),
        (dict(x=x, y=y, sample_weight=np.ones(N), class_weight={0: 1.0}), ValueError,
         "at the same time"),
        (dict(x=x, y=y, class_weight=[1.0]), TypeError, "class_weight"),
        (dict(x=Batches(x, y), validation_split=0.2), ValueError, "validation_split"),
        (dict(x=x, y=y, validation_data=(x, y), validation_freq=0), ValueError,
         "validation_freq"),
        (dict(x=x, y=y, validation_data=(x,)), ValueError, "validation_data"),
        (dict(x=x, y=y, callbacks=[object()]), TypeError, "callbacks"),
        (dict(x=x, y=y, steps_per_epoch=0), ValueError, "steps_per_epoch"),
        (dict(x=x, y=y, sample_weight=np.ones(N + 1)), ValueError, "same number of samples"),
        (dict(x=x, y=y, sample_weight=np.full(N, np.nan)), ValueError, "sample_weight"),
        (dict(x=iter([x]), epochs=1), ValueError, "must hold targets"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            m.fit(verbose=0, **kwargs)
    a, b = Input((D,), name="a"), Input((D,), name="b")
    two = Model([a, b], [Dense(1, name="p")(a), Dense(1, name="q")(b)])
    two.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="single output"):
        two.fit([x, x], [y, y], class_weight={0: 2.0}, verbose=0)
    with pytest.raises(ValueError, match="one weight per sample"):
        two.fit([x, x], [y, y], sample_weight=np.ones((N, 2)), verbose=0)
    with pytest.raises(ValueError, match="no batch"):
        m.predict(iter([]), verbose=0)
