"""Dropout masks in `ops.lstm_forward` against Keras 3's LSTM with the same masks injected
(Keras 3 LSTMCell semantics). Against the NumPy reference and central differences:
unit/test_ops_dropout.py."""

import os

import numpy as np
import pytest
from pylstm_tests import require

from pylstm import ops

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
keras = require("keras")
tf = require("tensorflow")

B, T, D, H = 3, 4, 5, 4


def make_case(rng, dtype, P=0):
    P_ = P or H
    case = dict(x=rng.normal(size=(B, T, D)), kernel=rng.normal(size=(D, 4 * H)) * 0.5,
                recurrent_kernel=rng.normal(size=(P_, 4 * H)) * 0.5,
                bias=rng.normal(size=4 * H) * 0.5, h0=rng.normal(size=(B, P_)),
                c0=rng.normal(size=(B, H)))
    case = {k: v.astype(dtype) for k, v in case.items()}
    projection = (rng.normal(size=(H, P_)) * 0.5).astype(dtype) if P else None
    return case, projection


def draw_mask(rng, shape, rate, dtype):
    """A Keras-style dropout mask: 0 with probability `rate`, else 1 / (1 - rate)."""
    return ((rng.random(shape) >= rate) / (1 - rate)).astype(dtype)


# Keras 3 ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keras_lstms():
    """Keras LSTMs (float64) with dropout: one with recurrent_dropout too (four masks per
    kind, Keras's implementation 1), one with input dropout only (one mask)."""
    layers = {}
    for kind, rates in [("four", (0.3, 0.4)), ("one", (0.3, 0.0))]:
        layer = keras.layers.LSTM(H, dropout=rates[0], recurrent_dropout=rates[1],
                                  return_sequences=True, dtype="float64")
        layer.build((B, T, D))
        layers[kind] = layer
    return layers


@pytest.mark.parametrize("kind", ["four", "one"])
def test_dropout_matches_keras(keras_lstms, kind):
    """Keras 3's LSTM in training with its dropout masks replaced by ours (the cell's
    get_dropout_mask / get_recurrent_dropout_mask): outputs and gradients agree."""
    rng = np.random.default_rng(8)
    layer = keras_lstms[kind]
    case, _ = make_case(rng, np.float64)
    layer.cell.kernel.assign(case["kernel"])
    layer.cell.recurrent_kernel.assign(case["recurrent_kernel"])
    layer.cell.bias.assign(case["bias"])
    if kind == "four":
        din = draw_mask(rng, (4, B, D), 0.3, np.float64)
        drec = draw_mask(rng, (4, B, H), 0.4, np.float64)
        layer.cell.get_dropout_mask = lambda step_input: [tf.constant(m) for m in din]
        layer.cell.get_recurrent_dropout_mask = lambda state: [tf.constant(m) for m in drec]
    else:
        din = draw_mask(rng, (B, D), 0.3, np.float64)
        drec = None
        layer.cell.get_dropout_mask = lambda step_input: tf.constant(din)
    mask = np.ones((B, T), bool)
    mask[1, 3:] = False
    x = tf.constant(case["x"])
    weights = [layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias]
    w_y = rng.normal(size=(B, T, H))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y_keras = layer(x, mask=tf.constant(mask), training=True)
        loss = tf.reduce_sum(y_keras * w_y)
    grads_keras = tape.gradient(loss, [x] + weights)

    y, _, _, cache = ops.lstm_forward(case["x"], case["kernel"], case["recurrent_kernel"],
                                      case["bias"], mask=mask, dropout_mask=din,
                                      recurrent_dropout_mask=drec, training=True)
    np.testing.assert_allclose(y, y_keras.numpy(), rtol=1e-10, atol=1e-12)
    grads = ops.lstm_backward(cache, w_y)
    for key, want in zip(["x", "kernel", "recurrent_kernel", "bias"], grads_keras):
        np.testing.assert_allclose(grads[key], want.numpy(), rtol=1e-9, atol=1e-11,
                                   err_msg=key)
