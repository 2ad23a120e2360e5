"""`pylstm.activations` against Keras 3's (and Keras 2's legacy hard sigmoid) and PyTorch's
on the same inputs. Oracle-free checks: unit/test_activations.py."""

import os

import numpy as np
import pytest
from pylstm_tests import require

from pylstm import activations

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
keras = require("keras")
tf = require("tensorflow")

NAMES = ["linear", "relu", "sigmoid", "tanh", "softmax", "hard_sigmoid", "elu", "selu",
         "softplus", "softsign", "swish", "silu", "exponential", "legacy_hard_sigmoid"]
# Kinks and far-out values, where the conventions of a derivative show.
EDGES = [-800.0, -3.0, -2.5, -1e-9, 0.0, 1e-9, 2.5, 3.0, 80.0]


@pytest.mark.parametrize("name", [n for n in NAMES if n != "legacy_hard_sigmoid"])
def test_against_keras(name):
    """Values and TensorFlow's gradients of Keras 3's activation of the same name, float64,
    including kinks (relu'(0) = 0, selu'(0) = scale, ...) and far-out values."""
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.uniform(-6, 6, 40), EDGES]).reshape(7, 7)
    g = rng.standard_normal(x.shape)
    t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(t)
        y_keras = keras.activations.get(name)(t)
    grad_keras = tape.gradient(y_keras, t, output_gradients=tf.constant(g)).numpy()
    f = activations.get(name)
    with np.errstate(over="ignore"):
        y = f(x)
        grad = f.backward(x, y, g)
    # atol: TensorFlow's elu is exp(x) - 1, 3e-17 off expm1 near 0
    np.testing.assert_allclose(y, y_keras.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grad, grad_keras, rtol=1e-12, atol=1e-15)


def test_legacy_hard_sigmoid_against_keras_2_definition():
    """Keras 2's hard_sigmoid was `clip(0.2 * x + 0.5, 0, 1)` on TensorFlow ops; compared off
    its kinks at +-2.5, where TensorFlow's clip passes the gradient on both sides."""
    x = np.linspace(-5, 5, 101)
    x = x[np.abs(np.abs(x) - 2.5) > 1e-6]
    t = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(t)
        y_tf = tf.clip_by_value(0.2 * t + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(activations.legacy_hard_sigmoid(x), y_tf.numpy(), rtol=1e-15)
    grad = activations.legacy_hard_sigmoid.backward(x, None, np.ones_like(x))
    np.testing.assert_allclose(grad, tape.gradient(y_tf, t).numpy(), rtol=1e-15)


def test_against_torch():
    torch = require("torch")
    x = np.random.default_rng(1).standard_normal((4, 6))
    t = torch.tensor(x)
    pairs = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
             "elu": torch.nn.functional.elu, "selu": torch.selu,
             "softplus": torch.nn.functional.softplus, "softsign": torch.nn.functional.softsign,
             "swish": torch.nn.functional.silu, "softmax": lambda a: torch.softmax(a, -1),
             "hard_sigmoid": torch.nn.functional.hardsigmoid}
    for name, fn in pairs.items():
        np.testing.assert_allclose(activations.get(name)(x), fn(t).numpy(), rtol=1e-12,
                                   atol=1e-12, err_msg=name)
