"""Every activation of the core against Keras 3's LSTM with the same activation: outputs in
float32 (1e-5 relative) and outputs and gradients in float64 (TensorFlow's autodiff)."""

import os

import numpy as np
import pytest
from pylstm_tests import require

from pylstm import ops
from pylstm._kernels import core as _core

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
keras = require("keras")
tf = require("tensorflow")

B, T, D, H = 4, 6, 3, 5
MASK = np.ones((B, T), bool)
MASK[1, 4:] = False
MASK[2, :2] = False
MASK[3, 2] = False


def keras_activation(name):
    if name == "legacy_hard_sigmoid":   # Keras 2's hard_sigmoid; Keras 3 has another
        return lambda x: keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)
    return keras.activations.get(name)


@pytest.fixture(scope="module")
def keras_lstms():
    rng = np.random.default_rng(0)
    weights = [rng.normal(size=(D, 4 * H)) * 0.5, rng.normal(size=(H, 4 * H)) * 0.5,
               rng.normal(size=4 * H) * 0.5]
    layers = {}
    for dtype in ("float32", "float64"):
        layer = keras.layers.LSTM(H, return_sequences=True, return_state=True, dtype=dtype)
        layer.build((B, T, D))
        layers[dtype] = layer
    return layers, weights, rng.normal(size=(B, T, D))


def configure(keras_lstms, dtype, role, name):
    layers, weights, x = keras_lstms
    layer = layers[dtype]
    # exp as an LSTM activation overflows within a few steps unless the weights are small
    scale = 0.3 if name == "exponential" else 1.0
    layer.set_weights([(w * scale).astype(dtype) for w in weights])
    acts = dict(activation="tanh", recurrent_activation="sigmoid")
    acts[role] = name
    layer.cell.activation = keras_activation(acts["activation"])
    layer.cell.recurrent_activation = keras_activation(acts["recurrent_activation"])
    return layer, acts, x


@pytest.mark.parametrize("role", ["activation", "recurrent_activation"])
@pytest.mark.parametrize("name", sorted(_core.ACTIVATION_CODES))
def test_float32_outputs_match_keras(keras_lstms, role, name):
    layer, acts, x = configure(keras_lstms, "float32", role, name)
    x = x.astype(np.float32)
    want = layer(x, mask=MASK)
    kernel, recurrent_kernel, bias = layer.get_weights()
    got = ops.lstm_forward(x, kernel, recurrent_kernel, bias, mask=MASK, **acts)
    for a, b in zip(got[:3], want):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("role", ["activation", "recurrent_activation"])
@pytest.mark.parametrize("name", sorted(_core.ACTIVATION_CODES))
def test_float64_gradients_match_keras(keras_lstms, role, name):
    layer, acts, x = configure(keras_lstms, "float64", role, name)
    rng = np.random.default_rng(1)
    w_y, w_h, w_c = rng.normal(size=(B, T, H)), rng.normal(size=(B, H)), rng.normal(size=(B, H))
    x_t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        y, h, c = layer(x_t, mask=MASK, training=True)
        loss = tf.reduce_sum(y * w_y) + tf.reduce_sum(h * w_h) + tf.reduce_sum(c * w_c)
    cell = layer.cell
    grads_keras = tape.gradient(loss, [x_t, cell.kernel, cell.recurrent_kernel, cell.bias])

    kernel, recurrent_kernel, bias = layer.get_weights()
    out = ops.lstm_forward(x, kernel, recurrent_kernel, bias, mask=MASK, training=True, **acts)
    for a, b in zip(out[:3], (y, h, c)):
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-11, atol=1e-12)
    grads = ops.lstm_backward(out[3], w_y, w_h, w_c)
    for key, want in zip(["x", "kernel", "recurrent_kernel", "bias"], grads_keras):
        np.testing.assert_allclose(grads[key], want.numpy(), rtol=1e-9, atol=1e-10,
                                   err_msg=key)


def test_python_callable_matches_keras(keras_lstms):
    """An activation the core does not have runs on the NumPy path, also like Keras."""
    layer, _, x = configure(keras_lstms, "float64", "activation", "tanh")
    layer.cell.activation = keras.ops.sin
    x_t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x_t)
        y, h, c = layer(x_t, mask=MASK, training=True)
        loss = tf.reduce_sum(y)
    grads_keras = tape.gradient(loss, [x_t, layer.cell.kernel])
    kernel, recurrent_kernel, bias = layer.get_weights()
    out = ops.lstm_forward(x, kernel, recurrent_kernel, bias, mask=MASK, activation=np.sin,
                           training=True)
    np.testing.assert_allclose(out[0], y.numpy(), rtol=1e-11, atol=1e-12)
    grads = ops.lstm_backward(out[3], np.ones_like(out[0]))
    np.testing.assert_allclose(grads["x"], grads_keras[0].numpy(), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(grads["kernel"], grads_keras[1].numpy(), rtol=1e-7, atol=1e-9)
