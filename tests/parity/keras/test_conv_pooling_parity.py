"""Conv1D, MaxPooling1D and AveragePooling1D against Keras 3 on the same weights (outputs rtol
1e-5, input and weight gradients rtol 1e-4 against tf.GradientTape), their shapes and configs
as Keras writes them, and Keras files holding them (a CNN-LSTM with BatchNormalization; a
convolution stack with SpatialDropout1D and LayerNormalization) loaded by `load_keras` and
written back.
Oracle-free checks: unit/layers/test_convolutional.py, test_pooling.py."""

import json

import numpy as np
import pytest

from pylstm import layers
from pylstm.models import keras_io, load_keras

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

keras = ku.keras

pytestmark = pytest.mark.filterwarnings(  # Keras's saving, under NumPy 2
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

B, T, C = 3, 9, 4
RTOL_OUT, ATOL_OUT = 1e-5, 1e-6
RTOL_GRAD, ATOL_GRAD = 1e-4, 1e-6


def _json(value):
    return json.loads(json.dumps(value))


def check_against_keras(ours, theirs, x, rng):
    """Same outputs, input gradients and weight gradients for one upstream gradient."""
    y = ours(x, training=True)
    upstream = rng.normal(size=y.shape).astype("float32")
    (k_y,), k_grads = ku.keras_call(theirs, x, [upstream])
    assert y.shape == k_y.shape == ours.compute_output_shape(x.shape)
    assert ours.compute_output_shape((None, None, C)) == tuple(
        theirs.compute_output_shape((None, None, C)))
    assert ours.compute_output_shape((None,) + x.shape[1:]) == tuple(
        theirs.compute_output_shape((None,) + x.shape[1:]))
    np.testing.assert_allclose(y, k_y, rtol=RTOL_OUT, atol=ATOL_OUT)
    ours.zero_grads()
    np.testing.assert_allclose(ours.backward(upstream), k_grads["inputs"], rtol=RTOL_GRAD,
                               atol=ATOL_GRAD)
    for var, keras_g in zip(ours.trainable_variables, k_grads["weights"], strict=True):
        np.testing.assert_allclose(var.grad, keras_g, rtol=RTOL_GRAD, atol=ATOL_GRAD,
                                   err_msg=var.name)


@pytest.mark.parametrize("kwargs", [
    {"padding": "valid"}, {"padding": "valid", "strides": 2, "activation": "relu"},
    {"padding": "same", "strides": 2}, {"padding": "same", "dilation_rate": 2},
    {"padding": "causal", "dilation_rate": 3, "activation": "tanh"},
    {"padding": "causal", "strides": 3, "use_bias": False}])
def test_conv1d_matches_keras(rng, kwargs):
    ours, theirs = layers.Conv1D(5, 3, **kwargs), keras.layers.Conv1D(5, 3, **kwargs)
    theirs.build((None, T, C))
    ours.build((None, T, C))
    ours.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32")
                      for w in ours.get_weights()])
    ku.copy_weights(ours, theirs)
    assert [v.name.split("/")[-1] for v in ours.weights] == [w.name for w in theirs.weights]
    check_against_keras(ours, theirs, rng.normal(size=(B, T, C)).astype("float32"), rng)


@pytest.mark.parametrize("name", ["MaxPooling1D", "AveragePooling1D"])
@pytest.mark.parametrize("kwargs", [
    {"pool_size": 2}, {"pool_size": 3, "strides": 1, "padding": "same"}, {"pool_size": 4, "padding": "same"},
    {"pool_size": 3, "strides": 2}])
def test_pooling_matches_keras(rng, name, kwargs):
    ours, theirs = getattr(layers, name)(**kwargs), getattr(keras.layers, name)(**kwargs)
    check_against_keras(ours, theirs, rng.normal(size=(B, T, C)).astype("float32"), rng)


@pytest.mark.parametrize("name, args, kwargs", [
    ("Conv1D", (2, 3), {"padding": "causal", "dilation_rate": 2, "activation": "relu",
                        "kernel_regularizer": "l2", "bias_constraint": "non_neg"}),
    ("MaxPooling1D", (3,), {"padding": "same"}),
    ("AveragePooling1D", (2,), {"strides": 1})])
def test_keras_configs_load_and_save_back(name, args, kwargs):
    """Keras's config (as JSON) becomes the same pylstm layer through the Keras loader's
    translation, and pylstm writes back Keras's keys."""
    ours = getattr(layers, name)(*args, name="x", **kwargs)
    theirs = getattr(keras.layers, name)(*args, name="x", **kwargs)
    keras_config = json.loads(json.dumps(theirs.get_config()))
    loaded = layers.deserialize(keras_io._layer_from_keras(
        {"module": "keras.layers", "class_name": type(theirs).__name__, "config": keras_config},
        legacy=False))
    assert _json(loaded.get_config()) == _json(ours.get_config())
    written = keras_io._layer_to_keras(layers.serialize(ours))["config"]
    assert set(written) <= set(keras_config)
    type(theirs).from_config(written)


# Keras files holding these layers ---------------------------------------------------------------


def _cnn_lstm(lib):
    return [lib.Input((T, C)), lib.Conv1D(6, 3, padding="same", activation="relu"),
            lib.MaxPooling1D(2), lib.LSTM(5), lib.BatchNormalization(), lib.Dense(2)]


def _conv_stack(lib):
    return [lib.Input((T, C)), lib.Conv1D(4, 2, padding="causal", dilation_rate=2),
            lib.SpatialDropout1D(0.3), lib.AveragePooling1D(3, strides=2, padding="same"),
            lib.LayerNormalization(center=False), lib.BatchNormalization(scale=False),
            lib.LSTM(3, return_sequences=True), lib.Conv1D(2, 1, use_bias=False)]


@pytest.mark.parametrize("build", [_cnn_lstm, _conv_stack])
def test_keras_files_load_and_save_back(build, tmp_path):
    """Keras writes `.keras` and legacy `.h5`; pylstm loads both and predicts Keras's numbers;
    pylstm's `.keras` loads in Keras with the same numbers."""
    rng = np.random.default_rng(11)
    theirs = keras.Sequential(build(keras.layers))
    weights = [rng.normal(scale=0.4, size=w.shape).astype("float32")
               for w in theirs.get_weights()]
    for i, w in enumerate(theirs.weights):
        if w.name == "moving_variance":
            weights[i] = np.abs(weights[i]) + 0.5
    theirs.set_weights(weights)
    x = rng.normal(size=(B, T, C)).astype("float32")
    expected = np.asarray(theirs(x, training=False))
    theirs.save(tmp_path / "k.keras")
    theirs.save(tmp_path / "k.h5")
    for path in ("k.keras", "k.h5"):
        ours = load_keras(tmp_path / path)
        assert [type(layer).__name__ for layer in ours.layers] == [
            type(layer).__name__ for layer in theirs.layers]
        np.testing.assert_allclose(ours.predict(x), expected, rtol=RTOL_OUT, atol=ATOL_OUT)
    ours.save(tmp_path / "ours.keras")
    back = keras.models.load_model(tmp_path / "ours.keras")
    np.testing.assert_allclose(np.asarray(back(x, training=False)), expected, rtol=RTOL_OUT,
                               atol=ATOL_OUT)
