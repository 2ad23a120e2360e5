import numpy as np
import pytest

from pylstm import activations

NAMES = ["linear", "relu", "sigmoid", "tanh", "softmax", "hard_sigmoid", "elu", "selu",
         "softplus", "softsign", "swish", "exponential"]


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


def test_against_torch():
    torch = pytest.importorskip("torch")
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
