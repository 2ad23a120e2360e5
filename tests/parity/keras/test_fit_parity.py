"""`fit`, `evaluate` and `predict` against Keras 3 (TensorFlow backend, float32) on the same
initial weights and data order (`shuffle=False`): per-epoch losses (rtol 1e-4) with
`sample_weight` (per sample, per timestep with a mask, and per output of a two-output model),
`class_weight`, validation data with weights, `validation_freq`, a generator with
`steps_per_epoch`, a `PyDataset` and the windows of `timeseries_dataset_from_array` (fit's
default `shuffle=True` left as given); the running means each batch's end hook gets; the
exact sequence of hook calls (names and indices) and `params` for fit, evaluate and predict;
the one-batch methods' return values; and `to_json` read by `keras.models.model_from_json`
(and Keras's JSON by pylstm's).

Legend: N samples, T timesteps, D features, H units, K outputs, B batch size.
"""

import warnings

import numpy as np
import pytest

from pylstm import optimizers, utils
from pylstm.callbacks import Callback
from pylstm.layers import LSTM, Dense, Input, Masking
from pylstm.models import Model, Sequential, model_from_json

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

keras = ku.keras

N, T, D, H, K, B = 12, 5, 3, 4, 3, 4
EPOCHS, LR = 3, 0.3
HOOKS = ["on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
         "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
         "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
         "on_predict_batch_begin", "on_predict_batch_end"]


def recorder(base):
    """A callback class on `base` (pylstm's or Keras's `Callback`) recording `(hook, index)`
    and the loss in each hook's logs."""

    class Recorder(base):
        def __init__(self):
            super().__init__()
            self.calls, self.losses = [], []

    def recording(hook):
        def record(self, *args, **kwargs):
            self.calls.append((hook,) + tuple(a for a in args if isinstance(a, int)))
            logs = kwargs.get("logs", args[-1] if args and not isinstance(args[-1], int)
                              else None)
            self.losses.append((logs or {}).get("loss"))
        return record

    for hook in HOOKS:
        setattr(Recorder, hook, recording(hook))
    return Recorder


OursRecorder, TheirsRecorder = recorder(Callback), recorder(keras.callbacks.Callback)


def build(kind):
    """`(pylstm model, Keras model)` with Keras's seeded initial weights in both, compiled
    with SGD; kinds: "regression" (LSTM + Dense, MSE), "sequence" (Masking + LSTM returning
    sequences + Dense, MSE), "classifier" (LSTM + Dense softmax, sparse categorical
    crossentropy)."""
    keras.utils.set_random_seed(0)
    if kind == "sequence":
        ours = Sequential([Input((T, D)), Masking(0.0), LSTM(H, return_sequences=True),
                           Dense(K)])
        theirs = keras.Sequential([keras.Input((T, D)), keras.layers.Masking(0.0),
                                   keras.layers.LSTM(H, return_sequences=True),
                                   keras.layers.Dense(K)])
    else:
        activation = "softmax" if kind == "classifier" else None
        ours = Sequential([Input((T, D)), LSTM(H), Dense(K, activation=activation)])
        theirs = keras.Sequential([keras.Input((T, D)), keras.layers.LSTM(H),
                                   keras.layers.Dense(K, activation=activation)])
    ku.copy_weights(theirs, ours)
    loss = "sparse_categorical_crossentropy" if kind == "classifier" else "mse"
    ours.compile(optimizer=optimizers.SGD(LR), loss=loss, metrics=["mae"] if loss == "mse"
                 else None)
    theirs.compile(optimizer=keras.optimizers.SGD(LR), loss=loss,
                   metrics=["mae"] if loss == "mse" else None)
    return ours, theirs


def dataset(kind, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, T, D)).astype("float32")
    if kind == "sequence":
        x[::3, -2:] = 0.0  # padded timesteps, masked
        return x, np.tanh(np.cumsum(x, axis=1) @ rng.standard_normal((D, K))).astype("float32")
    if kind == "classifier":
        return x, (x[:, :, 0].sum(axis=1) > 0).astype("int32") + (x[:, -1, 1] > 0.5)
    return x, np.stack([np.sin(x[:, :, 0].sum(axis=1)), x[:, -1, 1], np.tanh(x[:, 0, 2])],
                       axis=1).astype("float32")


def both_fit(kind, **kwargs):
    """Fits both models alike; returns `(ours, theirs)` as `(history dict, recorder)`."""
    ours, theirs = build(kind)
    results = []
    for model, rec in ((ours, OursRecorder()), (theirs, TheirsRecorder())):
        history = model.fit(**kwargs, callbacks=[rec], verbose=0)
        results.append((history.history, rec))
    return results


def assert_histories_match(ours, theirs):
    assert ours.keys() == theirs.keys()
    for name in theirs:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-4, err_msg=name)


def test_sample_weight_and_weighted_validation_match_keras():
    x, y = dataset("regression")
    w = np.linspace(0.2, 2.0, N).astype("float32")
    xv, yv = dataset("regression", seed=1)
    wv = np.linspace(1.0, 0.0, N).astype("float32")
    (ours, ours_rec), (theirs, theirs_rec) = both_fit(
        "regression", x=x, y=y, sample_weight=w, batch_size=B, epochs=EPOCHS, shuffle=False,
        validation_data=(xv, yv, wv))
    assert_histories_match(ours, theirs)
    assert theirs["loss"][-1] < theirs["loss"][0]
    assert ours_rec.calls == theirs_rec.calls
    # Every hook's running loss (batch ends, test ends, epoch ends).
    np.testing.assert_allclose(np.array(ours_rec.losses, dtype=float),
                               np.array(theirs_rec.losses, dtype=float), rtol=1e-4)


def test_timestep_weights_with_a_mask_match_keras():
    x, y = dataset("sequence")
    w = np.random.default_rng(2).random((N, T)).astype("float32")
    (ours, _), (theirs, _) = both_fit("sequence", x=x, y=y, sample_weight=w, batch_size=B,
                                      epochs=EPOCHS, shuffle=False, validation_split=0.25)
    assert_histories_match(ours, theirs)


def test_class_weight_matches_keras():
    x, y = dataset("classifier")
    (ours, _), (theirs, _) = both_fit("classifier", x=x, y=y, class_weight={0: 0.3, 2: 2.5},
                                      batch_size=B, epochs=EPOCHS, shuffle=False)
    assert_histories_match(ours, theirs)
    assert theirs["loss"][-1] < theirs["loss"][0]


def test_validation_freq_matches_keras():
    x, y = dataset("regression")
    (ours, ours_rec), (theirs, theirs_rec) = both_fit(
        "regression", x=x, y=y, batch_size=B, epochs=4, shuffle=False,
        validation_data=(x[:6], y[:6]), validation_freq=2, validation_batch_size=5)
    assert_histories_match(ours, theirs)
    assert len(theirs["val_loss"]) == 2
    assert ours_rec.calls == theirs_rec.calls


def test_a_generator_with_steps_per_epoch_matches_keras():
    x, y = dataset("regression")

    def batches():
        for i in range(100):
            part = slice((i % 3) * B, (i % 3 + 1) * B)
            yield x[part], y[part]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras: shuffle=True is ignored for a generator
        (ours, ours_rec), (theirs, theirs_rec) = both_fit(
            "regression", x=batches(), steps_per_epoch=2, epochs=EPOCHS)
    assert_histories_match(ours, theirs)
    assert ours_rec.calls == theirs_rec.calls


def py_dataset(base, x, y):
    """A `base` PyDataset (pylstm's or Keras's) of the batches of `B` samples."""

    class Batches(base):
        def __len__(self):
            return -(-len(x) // B)

        def __getitem__(self, index):
            return x[index * B:(index + 1) * B], y[index * B:(index + 1) * B]

    return Batches()


def test_a_py_dataset_matches_keras():
    x, y = dataset("classifier")
    ours, theirs = build("classifier")
    got = ours.fit(py_dataset(utils.PyDataset, x, y), epochs=EPOCHS, shuffle=False, verbose=0)
    want = theirs.fit(py_dataset(keras.utils.PyDataset, x, y), epochs=EPOCHS, shuffle=False,
                      verbose=0)
    assert_histories_match(got.history, want.history)
    np.testing.assert_allclose(ours.evaluate(py_dataset(utils.PyDataset, x, y), verbose=0),
                               theirs.evaluate(py_dataset(keras.utils.PyDataset, x, y),
                                               verbose=0), rtol=1e-4)


def _stop_at_batch_1(base):
    class Stop(base):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.stop_training = True
    return Stop()


def _short_generator(x, y):
    def five():
        for i in range(5):
            yield x[(i % 3) * B:(i % 3 + 1) * B], y[(i % 3) * B:(i % 3 + 1) * B]
    return five()


# name -> runs a model with the given callbacks (the `Callback` base in `base`).
SCENARIOS = {
    "fit_validation": lambda m, cbs, base, x, y: m.fit(
        x, y, batch_size=5, epochs=3, validation_split=0.25, validation_freq=[1, 3],
        verbose=0, callbacks=cbs),
    "fit_stops_mid_epoch": lambda m, cbs, base, x, y: m.fit(
        x, y, batch_size=2, epochs=3, verbose=0, callbacks=[_stop_at_batch_1(base)] + cbs),
    "fit_generator_runs_out": lambda m, cbs, base, x, y: m.fit(
        _short_generator(x, y), steps_per_epoch=2, epochs=3, verbose=0, callbacks=cbs),
    "evaluate": lambda m, cbs, base, x, y: m.evaluate(x, y, batch_size=5, verbose=0,
                                                      callbacks=cbs),
    "predict": lambda m, cbs, base, x, y: m.predict(x, batch_size=5, verbose=0, callbacks=cbs),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_hook_calls_match_keras(scenario):
    x, y = dataset("regression")
    ours, theirs = build("regression")
    run = SCENARIOS[scenario]
    ours_rec, theirs_rec = OursRecorder(), TheirsRecorder()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras's and ours: the generator ran out
        run(ours, [ours_rec], Callback, x, y)
        run(theirs, [theirs_rec], keras.callbacks.Callback, x, y)
    assert ours_rec.calls == theirs_rec.calls
    assert ours_rec.params == theirs_rec.params


def test_one_batch_methods_match_keras():
    x, y = dataset("regression")
    ours, theirs = build("regression")
    w = np.linspace(0.5, 1.5, N).astype("float32")
    for method, kwargs in (("test_on_batch", {}), ("train_on_batch", {"sample_weight": w}),
                           ("test_on_batch", {"return_dict": True}),
                           ("train_on_batch", {"return_dict": True})):
        got = getattr(ours, method)(x, y, **kwargs)
        want = getattr(theirs, method)(x, y, **kwargs)
        if isinstance(want, dict):
            assert got.keys() == want.keys()
            got, want = list(got.values()), list(want.values())
        np.testing.assert_allclose(got, want, rtol=1e-4, err_msg=method)
    np.testing.assert_allclose(ours.predict_on_batch(x), theirs.predict_on_batch(x),
                               rtol=1e-4, atol=1e-6)


def test_to_json_is_read_by_keras_and_keras_json_by_pylstm():
    x, _ = dataset("sequence")
    ours, theirs = build("sequence")
    keras_model = keras.models.model_from_json(ours.to_json())
    assert [type(layer).__name__ for layer in keras_model.layers] == \
        [type(layer).__name__ for layer in theirs.layers]
    ku.copy_weights(ours, keras_model)
    np.testing.assert_allclose(keras_model.predict(x, verbose=0), ours.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    pylstm_model = model_from_json(theirs.to_json())
    ku.copy_weights(theirs, pylstm_model)
    np.testing.assert_allclose(pylstm_model.predict(x, verbose=0),
                               theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert type(pylstm_model.optimizer).__name__ == "SGD"


@pytest.mark.parametrize("form", ["list", "dict", "shared"])
def test_sample_weights_of_several_outputs_match_keras(form):
    x, y = dataset("regression")
    w1 = np.linspace(0.2, 2.0, N).astype("float32")
    w2 = np.linspace(1.5, 0.5, N).astype("float32")
    weights = {"list": [w1, w2], "dict": {"first": w1, "second": w2}, "shared": w1}[form]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((T, D), name="series")
    features = keras.layers.LSTM(H)(inputs)
    outputs = [keras.layers.Dense(K, name="first")(features),
               keras.layers.Dense(1, name="second")(features)]
    # Keras matches dicts of targets and weights to outputs given as a dict
    structure = (lambda pair: dict(zip(["first", "second"], pair))) if form == "dict" else list
    theirs = keras.Model(inputs, structure(outputs))
    inputs = Input((T, D), name="series")
    features = LSTM(H)(inputs)
    ours = Model(inputs, structure([Dense(K, name="first")(features),
                                    Dense(1, name="second")(features)]))
    ku.copy_weights(theirs, ours)
    loss, loss_weights = ["mse", "mae"], [1.0, 0.5]
    if form == "dict":
        loss, loss_weights = dict(zip(["first", "second"], loss)), {"first": 1.0, "second": 0.5}
    ours.compile(optimizer=optimizers.SGD(LR), loss=loss, loss_weights=loss_weights)
    theirs.compile(optimizer=keras.optimizers.SGD(LR), loss=loss, loss_weights=loss_weights)
    targets = [y, y[:, :1]] if form != "dict" else {"first": y, "second": y[:, :1]}
    got = ours.fit(x, targets, sample_weight=weights, batch_size=B, epochs=EPOCHS,
                   shuffle=False, verbose=0)
    want = theirs.fit(x, targets, sample_weight=weights, batch_size=B, epochs=EPOCHS,
                      shuffle=False, verbose=0)
    assert_histories_match(got.history, want.history)


def test_timeseries_windows_train_as_in_keras():
    series = np.sin(np.arange(60, dtype="float32") / 4.0)[:, None] * np.ones((1, D), "float32")
    targets = np.stack([series[T:, 0]] * K, axis=1)
    ours, theirs = build("regression")
    ours_rec, theirs_rec = OursRecorder(), TheirsRecorder()
    got = ours.fit(utils.timeseries_dataset_from_array(series[:-T], targets, T, batch_size=B * 3),
                   epochs=EPOCHS, verbose=0, callbacks=[ours_rec])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras: shuffle=True is ignored for a dataset
        want = theirs.fit(keras.utils.timeseries_dataset_from_array(
            series[:-T], targets, T, batch_size=B * 3), epochs=EPOCHS, verbose=0,
            callbacks=[theirs_rec])
    assert_histories_match(got.history, want.history)
    assert ours_rec.calls == theirs_rec.calls
