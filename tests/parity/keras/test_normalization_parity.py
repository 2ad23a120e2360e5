"""BatchNormalization, LayerNormalization and SpatialDropout1D against Keras 3 on the same
weights: outputs rtol 1e-5, input and weight gradients rtol 1e-4 against tf.GradientTape, the
moving statistics after training steps (masked too), SGD training of a Conv1D + BatchNormalization
+ LSTM model, and configs both ways. Oracle-free checks: unit/layers/test_normalization.py,
test_spatial_dropout.py."""

import json

import numpy as np
import pytest

from pylstm import layers, models
from pylstm.models import keras_io

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

keras = ku.keras

B, T, C = 4, 6, 5
RTOL_OUT, ATOL_OUT = 1e-5, 1e-5
RTOL_GRAD, ATOL_GRAD = 1e-4, 1e-5


def twins(name, shape, rng, **kwargs):
    """The pylstm and Keras layer, built, with the same random weights (variances > 0)."""
    ours, theirs = getattr(layers, name)(**kwargs), getattr(keras.layers, name)(**kwargs)
    ours.build(shape)
    theirs.build(shape)
    weights = [rng.normal(scale=0.5, size=w.shape).astype("float32")
               for w in ours.get_weights()]
    if name == "BatchNormalization":
        weights[-1] = np.abs(weights[-1]) + 0.5  # moving_variance
    ours.set_weights(weights)
    ku.copy_weights(ours, theirs)
    assert [v.name.split("/")[-1] for v in ours.weights] == [w.name for w in theirs.weights]
    return ours, theirs


def check_step(ours, theirs, x, rng, mask=None):
    """One call of each with the same upstream gradient: outputs, gradients, weights after."""
    y = ours(x, training=True, mask=mask)
    upstream = rng.normal(size=y.shape).astype("float32")
    (k_y,), k_grads = ku.keras_call(theirs, x, [upstream], mask=mask, training=True)
    np.testing.assert_allclose(y, k_y, rtol=RTOL_OUT, atol=ATOL_OUT)
    ours.zero_grads()
    np.testing.assert_allclose(ours.backward(upstream), k_grads["inputs"], rtol=RTOL_GRAD,
                               atol=ATOL_GRAD)
    for var, keras_g in zip(ours.trainable_variables, k_grads["weights"], strict=True):
        np.testing.assert_allclose(var.grad, keras_g, rtol=RTOL_GRAD, atol=ATOL_GRAD,
                                   err_msg=var.name)
    for ours_w, keras_w in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(ours_w, keras_w, rtol=1e-6, atol=1e-7)


def padding_mask(rng):
    mask = rng.random((B, T)) > 0.3
    mask[:, 0] = True
    mask[1, 3:] = False
    return mask


@pytest.mark.parametrize("kwargs, masked", [
    ({}, False), ({}, True), ({"center": False, "momentum": 0.5}, True),
    ({"scale": False, "epsilon": 1e-5}, False), ({"axis": 1}, False)])
def test_batch_normalization_training_matches_keras(rng, kwargs, masked):
    ours, theirs = twins("BatchNormalization", (B, T, C), rng, **kwargs)
    mask = padding_mask(rng) if masked else None
    for _ in range(2):  # the second step starts from the updated moving statistics
        x = rng.normal(loc=1.0, scale=2.0, size=(B, T, C)).astype("float32")
        check_step(ours, theirs, x, rng, mask=mask)


def test_batch_normalization_inference_and_frozen_match_keras(rng):
    ours, theirs = twins("BatchNormalization", (B, T, C), rng)
    x = rng.normal(size=(B, T, C)).astype("float32")
    np.testing.assert_allclose(ours(x), np.asarray(theirs(x, training=False)), rtol=RTOL_OUT,
                               atol=ATOL_OUT)
    ours.trainable = theirs.trainable = False  # Keras: inference mode, even in training
    check_step(ours, theirs, x, rng)


@pytest.mark.parametrize("kwargs", [{}, {"axis": [1, 2]}, {"center": False, "epsilon": 1e-6},
                                    {"scale": False, "axis": -2}])
def test_layer_normalization_matches_keras(rng, kwargs):
    ours, theirs = twins("LayerNormalization", (B, T, C), rng, **kwargs)
    x = rng.normal(loc=1.0, scale=2.0, size=(B, T, C)).astype("float32")
    check_step(ours, theirs, x, rng)


def test_rms_scaling_is_off_by_default_in_keras():
    assert keras.layers.LayerNormalization().get_config()["rms_scaling"] is False


def test_spatial_dropout_matches_keras_at_inference_and_in_kind(rng):
    x = rng.normal(size=(8, T, 32)).astype("float32")
    ours, theirs = layers.SpatialDropout1D(0.5, seed=1), keras.layers.SpatialDropout1D(0.5, seed=1)
    np.testing.assert_array_equal(ours(x), np.asarray(theirs(x)))
    for y in (ours(x, training=True), np.asarray(theirs(x, training=True))):
        dropped = y == 0
        assert np.array_equal(dropped, np.broadcast_to(dropped[:, :1], x.shape))
        np.testing.assert_allclose(y[~dropped], 2 * x[~dropped], rtol=1e-6)


@pytest.mark.parametrize("name, kwargs", [
    ("BatchNormalization", {"momentum": 0.9, "center": False, "gamma_regularizer": "l2"}),
    ("LayerNormalization", {"axis": [1, 2], "epsilon": 1e-5, "scale": False}),
    ("SpatialDropout1D", {"rate": 0.3, "seed": 2})])
def test_keras_configs_load_and_save_back(name, kwargs):
    """Keras's config (as JSON) becomes the same pylstm layer through the Keras loader's
    translation, and what pylstm writes builds the Keras layer."""
    ours = getattr(layers, name)(name="x", **kwargs)
    theirs = getattr(keras.layers, name)(name="x", **kwargs)
    keras_config = json.loads(json.dumps(theirs.get_config()))
    loaded = layers.deserialize(keras_io._layer_from_keras(
        {"module": "keras.layers", "class_name": name, "config": keras_config}, legacy=False))
    assert json.loads(json.dumps(loaded.get_config())) == json.loads(json.dumps(
        ours.get_config()))
    written = keras_io._layer_to_keras(layers.serialize(ours))["config"]
    assert set(written) <= set(keras_config)
    assert getattr(keras.layers, name).from_config(written).get_config() == theirs.get_config()


def test_sgd_training_with_batch_normalization_matches_keras():
    """fit() runs BatchNormalization in training mode: Keras's losses and, after two epochs,
    its weights, moving statistics included."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(8, 7, 3)).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")

    def build(lib):
        return [lib.Input((7, 3)), lib.Conv1D(4, 3, padding="causal", activation="relu"),
                lib.BatchNormalization(momentum=0.8), lib.MaxPooling1D(2),
                lib.LSTM(3), lib.LayerNormalization(), lib.Dense(2)]

    theirs = keras.Sequential(build(keras.layers))
    ours = models.Sequential(build(layers))
    ours.set_weights(theirs.get_weights())
    ours.compile(optimizer={"class_name": "SGD", "config": {"learning_rate": 0.1}}, loss="mse")
    h_ours = ours.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    k_losses = ku.keras_fit(theirs, x, y, keras.optimizers.SGD(0.1), "mse", epochs=2,
                            batch_size=4)
    np.testing.assert_allclose(h_ours.history["loss"], k_losses, rtol=1e-4)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours.predict(x), theirs.predict(x, verbose=0), rtol=1e-4,
                               atol=1e-5)


def test_masked_functional_training_matches_keras():
    """Embedding(mask_zero) -> BatchNormalization -> LayerNormalization -> LSTM as functional
    models: the mask reaches BatchNormalization's statistics and the LSTM as in Keras."""
    ids = np.array([[1, 2, 3, 0, 0], [4, 5, 0, 0, 0], [1, 1, 1, 1, 1]])
    y = np.random.default_rng(1).normal(size=(3, 3)).astype("float32")

    def build(lib, model):
        inputs = lib.Input((None,), dtype="int32")
        h = lib.Embedding(10, 4, mask_zero=True)(inputs)
        h = lib.LayerNormalization()(lib.BatchNormalization(momentum=0.7)(h))
        return model(inputs, lib.LSTM(3)(h))

    theirs = build(keras.layers, keras.Model)
    ours = build(layers, models.Model)
    ours.set_weights(theirs.get_weights())
    ours.compile(optimizer={"class_name": "SGD", "config": {"learning_rate": 0.1}}, loss="mse")
    h_ours = ours.fit(ids, y, batch_size=3, epochs=3, shuffle=False, verbose=0)
    k_losses = ku.keras_fit(theirs, ids, y, keras.optimizers.SGD(0.1), "mse", epochs=3,
                            batch_size=3)
    np.testing.assert_allclose(h_ours.history["loss"], k_losses, rtol=1e-4)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
