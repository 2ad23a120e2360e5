"""Training parity with Keras 3 (TensorFlow backend, float32) for models with several inputs and
outputs: the same functional model built in pylstm and in Keras, Keras's initial weights copied,
trained by SGD for 3 epochs (no shuffling, batches of 4, the last quarter held out) gives the
same per-epoch logs, every one of them (rtol 1e-4): the weighted total loss, each output's
loss, each output's metrics, and their `val_` versions, under the same names.

Models:
- "two_inputs": sequences `a` through an `LSTM`, concatenated with features `b`, into a regression
  head `out1` (MSE) and a softmax head `out2` (sparse categorical crossentropy).
- "masked_sequences": `Masking(0.0)` on zero-padded sequences, an `LSTM(return_sequences=True)`
  with a per-timestep head `out1` (its loss and metric leave the padded steps out) and a second
  `LSTM` into a softmax head `out2`.

Legend: N samples, T timesteps, D sequence features, D2 side features, H units, K classes.
"""

import numpy as np
import pytest

from pylstm import layers, optimizers
from pylstm.models import Model, Sequential

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

keras = ku.keras

N, T, D, D2, H, K = 16, 6, 3, 2, 4, 3
BATCH_SIZE, EPOCHS, LEARNING_RATE = 4, 3, 0.3


def graph(lib, kind):
    """`(inputs, outputs)` of a model kind, built from `lib` (`pylstm.layers` or
    `keras.layers`), layer for layer the same."""
    a = lib.Input((T, D), name="a")
    if kind == "two_inputs":
        b = lib.Input((D2,), name="b")
        h = lib.Concatenate()([lib.LSTM(H)(a), b])
        return [a, b], [lib.Dense(1, name="out1")(h),
                        lib.Dense(K, activation="softmax", name="out2")(h)]
    seq = lib.LSTM(H, return_sequences=True)(lib.Masking(0.0)(a))
    return [a], [lib.Dense(1, name="out1")(seq),
                 lib.Dense(K, activation="softmax", name="out2")(lib.LSTM(H)(seq))]


def data(kind):
    """Inputs by name and targets by output name, float32 (labels int32)."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(N, T, D)).astype("float32")
    x = {"a": a}
    if kind == "two_inputs":
        x["b"] = rng.normal(size=(N, D2)).astype("float32")
        y1 = np.sin(a.sum(axis=(1, 2)))[:, None] + x["b"][:, :1]
    else:
        a[0::3, T - 2:] = 0  # right padding
        a[1::3, :2] = 0  # left padding
        y1 = np.tanh(np.cumsum(a[..., :1], axis=1))
    y2 = (a[:, :, 0].sum(axis=1) > 0).astype("int32") + (a[:, 0, 1] > 0.5)
    return x, {"out1": y1.astype("float32"), "out2": y2.astype("int32")}


COMPILE = {
    # lists in output order, loss weights, metrics by output name
    "lists": dict(loss=["mse", "sparse_categorical_crossentropy"], loss_weights=[0.5, 2.0],
                  metrics={"out1": ["mae"], "out2": ["accuracy"]}),
    # dicts by output name, metrics as a list of lists
    "dicts": dict(loss={"out1": "mae", "out2": "sparse_categorical_crossentropy"},
                  loss_weights={"out1": 1.5, "out2": 0.25}, metrics=[["mse"], ["accuracy"]]),
}


@pytest.mark.parametrize("config", list(COMPILE))
@pytest.mark.parametrize("kind", ["two_inputs", "masked_sequences"])
def test_training_logs_match_keras(kind, config):
    keras.utils.set_random_seed(0)
    theirs = keras.Model(*graph(keras.layers, kind))
    ours = Model(*graph(layers, kind))
    ku.copy_weights(theirs, ours)
    x, y = data(kind)
    fit = dict(batch_size=BATCH_SIZE, epochs=EPOCHS, shuffle=False, verbose=0,
               validation_split=0.25)

    theirs.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), **COMPILE[config])
    want = theirs.fit(x, y, **fit).history
    ours.compile(optimizer=optimizers.SGD(LEARNING_RATE), **COMPILE[config])
    # Inputs and targets as lists in order here, by name for Keras.
    got = ours.fit([x[name] for name in ours.input_names],
                   [y[name] for name in ours.output_names], **fit).history

    assert sorted(got) == sorted(want)
    assert "out1_loss" in got and "val_out2_accuracy" in got
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, err_msg=name)
    assert want["loss"][-1] < want["loss"][0], "training should lower the loss"
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * float(np.abs(b).max()))

    got_eval = ours.evaluate(x, y, verbose=0)
    want_eval = theirs.evaluate(x, y, verbose=0)
    np.testing.assert_allclose(got_eval, want_eval, rtol=1e-4)  # Keras 3's order of the values


def test_masked_sequence_metric_matches_keras():
    """A `Sequential` model's metric on a masked per-timestep output averages over the real
    timesteps only, as Keras's `Mean` with the output mask does."""
    keras.utils.set_random_seed(0)
    x, y = data("masked_sequences")
    theirs = keras.Sequential([keras.Input((T, D)), keras.layers.Masking(0.0),
                               keras.layers.LSTM(H, return_sequences=True),
                               keras.layers.Dense(1)])
    ours = Sequential([layers.Input((T, D)), layers.Masking(0.0),
                       layers.LSTM(H, return_sequences=True), layers.Dense(1)])
    ku.copy_weights(theirs, ours)
    for model, sgd in ((theirs, keras.optimizers.SGD), (ours, optimizers.SGD)):
        model.compile(optimizer=sgd(LEARNING_RATE), loss="mse", metrics=["mae"])
    fit = dict(batch_size=BATCH_SIZE, epochs=2, shuffle=False, verbose=0)
    want = theirs.fit(x["a"], y["out1"], **fit).history
    got = ours.fit(x["a"], y["out1"], **fit).history
    assert list(got) == ["loss", "mae"]
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, err_msg=name)
