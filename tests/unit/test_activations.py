"""`pylstm.activations`: values against their definitions, gradients against central
differences, float32 in and out, the core's activation names against the NumPy reference's,
`get` and `serialize`. Keras's and PyTorch's values: parity/keras/test_activations.py."""

import numpy as np
import pytest

from pylstm import activations
from pylstm._kernels import core as _core
from pylstm import _reference as ref

NAMES = ["linear", "relu", "sigmoid", "tanh", "softmax", "hard_sigmoid", "elu", "selu",
         "softplus", "softsign", "swish", "silu", "exponential", "legacy_hard_sigmoid"]
# Kinks and far-out values, where the conventions of a derivative show.
EDGES = [-800.0, -3.0, -2.5, -1e-9, 0.0, 1e-9, 2.5, 3.0, 80.0]


def _numeric_vjp(f, x, g, h=1e-6):
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        grad[i] = np.sum(g * (f(xp) - f(xm))) / (2 * h)
    return grad


@pytest.mark.parametrize("name", NAMES)
def test_backward_matches_central_differences(name):
    rng = np.random.default_rng(0)
    x = rng.uniform(-4, 4, size=(3, 5))
    # Keep away from kinks (0 for relu/elu/selu, +-3 for hard_sigmoid) where f is not smooth.
    x = np.where(np.abs(x) < 0.05, 0.5, x)
    x = np.where(np.abs(np.abs(x) - 3) < 0.05, 2.0, x)
    x = np.where(np.abs(np.abs(x) - 2.5) < 0.05, 2.0, x)
    g = rng.standard_normal(x.shape)
    f = activations.get(name)
    y = f(x)
    np.testing.assert_allclose(f.backward(x, y, g), _numeric_vjp(f, x, g), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_float32_in_float32_out(name):
    x = np.linspace(-2, 2, 8, dtype=np.float32).reshape(2, 4)
    f = activations.get(name)
    y = f(x)
    assert y.shape == x.shape and y.dtype == np.float32
    assert f.backward(x, y, np.ones_like(x)).dtype == np.float32


def test_values_against_known_definitions():
    x = np.array([-5.0, -1.0, 0.0, 2.0, 4.0])
    np.testing.assert_allclose(activations.hard_sigmoid(x), [0, 2 / 6, 0.5, 5 / 6, 1])
    np.testing.assert_allclose(activations.relu(x), [0, 0, 0, 2, 4])
    np.testing.assert_allclose(activations.elu(x), [np.exp(-5) - 1, np.exp(-1) - 1, 0, 2, 4])
    np.testing.assert_allclose(activations.softsign(x), x / (1 + np.abs(x)))
    np.testing.assert_allclose(activations.selu(np.array([1.0, -1.0])),
                               [1.0507009873554805, 1.0507009873554805 * 1.6732632423543772 *
                                (np.exp(-1) - 1)])
    s = activations.softmax(np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 1000.0]]))
    np.testing.assert_allclose(s.sum(axis=-1), [1, 1])
    np.testing.assert_allclose(s[0], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum())
    assert np.isfinite(activations.softplus(np.array([1000.0, -1000.0]))).all()
    np.testing.assert_allclose(activations.legacy_hard_sigmoid(x), [0, 0.3, 0.5, 0.9, 1])
    assert activations.get("silu") is activations.swish


@pytest.mark.parametrize("name", sorted(_core.ACTIVATION_CODES))
def test_core_names_match_the_reference(name):
    """Every activation compiled into the LSTM core exists here, with the same values and
    derivative as the core's NumPy reference (`pylstm._reference`)."""
    x = np.concatenate([np.linspace(-10, 10, 201), EDGES[1:]])
    g = np.random.default_rng(3).standard_normal(x.shape)
    f = activations.get(name)
    fwd, derivative = ref.ACTIVATIONS[name]
    with np.errstate(over="ignore"):
        y = f(x)
        np.testing.assert_allclose(y, fwd(x), rtol=1e-15, atol=1e-300)
        np.testing.assert_allclose(f.backward(x, y, g), g * derivative(x, fwd(x)), rtol=1e-12,
                                   atol=1e-15)


def test_get_and_serialize():
    assert activations.get(None) is activations.linear
    assert activations.get("relu") is activations.relu
    assert activations.get(activations.tanh) is activations.tanh
    assert activations.serialize(activations.sigmoid) == "sigmoid"
    assert activations.deserialize("sigmoid") is activations.sigmoid

    def cube(x):
        return x ** 3

    custom = activations.get((cube, lambda x, y, g: 3 * x * x * g))
    assert custom(np.array(2.0)) == 8.0 and custom.backward(2.0, 8.0, 1.0) == 12.0
    assert activations.serialize(custom) == "cube"
    with pytest.raises(ValueError, match="relu"):
        activations.get("rellu")
    with pytest.raises(ValueError, match="backward"):
        activations.get(cube)
