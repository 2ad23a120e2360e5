"""Embedding, Masking and mask propagation through Sequential, checked against Keras 3 on the
same weights; masked losses. Oracle-free checks: unit/layers/test_masking_layers.py."""

import os

import numpy as np
import pytest
from pylstm_tests import require

from pylstm import layers, models

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = require("keras")

V, E, H, B, T = 7, 4, 5, 3, 6


def padded_tokens(rng):
    """Integer sequences with 0 as padding: right padding, left padding, a hole, all padding."""
    x = rng.integers(1, V, size=(4, T))
    x[0, 4:] = 0
    x[1, :2] = 0
    x[2, 3] = 0
    x[3, :] = 0
    return x


def test_embedding_matches_keras_and_emits_mask():
    rng = np.random.default_rng(0)
    x = padded_tokens(rng)
    ours = layers.Embedding(V, E, mask_zero=True)
    theirs = keras.layers.Embedding(V, E, mask_zero=True)
    theirs.build((None, T))
    ours.build((None, T))
    ours.set_weights(theirs.get_weights())
    np.testing.assert_array_equal(ours(x), np.asarray(theirs(x)))
    np.testing.assert_array_equal(ours.compute_mask(x), np.asarray(theirs.compute_mask(x)))


def test_masking_matches_keras():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(B, T, E)).astype("float32")
    x[0, 2:] = -1.0
    x[1, 0] = -1.0
    x[2] = -1.0
    ours, theirs = layers.Masking(-1.0), keras.layers.Masking(-1.0)
    np.testing.assert_array_equal(ours(x), np.asarray(theirs(x)))
    np.testing.assert_array_equal(ours.compute_mask(x), np.asarray(theirs.compute_mask(x)))
    ours(x, training=True)
    g = rng.normal(size=x.shape).astype("float32")
    np.testing.assert_array_equal(ours.backward(g), g * ours.compute_mask(x)[..., None])


def keras_twin(build_layers):
    """The same architecture in pylstm and Keras, with Keras's initial weights copied over."""
    ours = models.Sequential(build_layers(layers))
    theirs = keras.Sequential(build_layers(keras.layers))
    ours.set_weights(theirs.get_weights())
    return ours, theirs


@pytest.mark.parametrize("return_sequences", [False, True])
def test_mask_propagates_like_keras(return_sequences):
    rng = np.random.default_rng(3)
    x = padded_tokens(rng)

    def build(lib):
        return [lib.Input((T,)), lib.Embedding(V, E, mask_zero=True),
                lib.LSTM(H, return_sequences=True),
                lib.LSTM(H, return_sequences=return_sequences), lib.Dense(2)]

    ours, theirs = keras_twin(build)
    np.testing.assert_allclose(ours.predict(x), theirs.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_masked_loss_and_training_step_like_keras():
    """A sequence-output model on padded data: Keras leaves masked timesteps out of the loss;
    one SGD step from the same weights gives the same loss and weights."""
    rng = np.random.default_rng(4)
    x = padded_tokens(rng)[:3]  # a fully padded row has no valid entry; Keras divides by ~0
    y = rng.integers(0, 3, size=(3, T))

    def build(lib):
        return [lib.Input((T,)), lib.Embedding(V, E, mask_zero=True),
                lib.LSTM(H, return_sequences=True), lib.Dense(3, activation="softmax")]

    ours, theirs = keras_twin(build)
    for model, opt in ((ours, "sgd"), (theirs, keras.optimizers.SGD(0.1))):
        model.compile(optimizer=opt if model is theirs else {"class_name": "SGD",
                                                              "config": {"learning_rate": 0.1}},
                      loss="sparse_categorical_crossentropy")
    np.testing.assert_allclose(ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0),
                               rtol=1e-5)
    h_ours = ours.fit(x, y, batch_size=3, epochs=2, shuffle=False, verbose=0)
    h_theirs = theirs.fit(x, y, batch_size=3, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(h_ours.history["loss"], h_theirs.history["loss"], rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
