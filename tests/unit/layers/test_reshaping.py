"""RepeatVector, Reshape and Permute without an oracle: shapes (None dims), errors, masks,
config round trips, and backward against central differences in float64. Keras parity:
parity/keras/test_reshaping_parity.py."""

import doctest

import numpy as np
import pytest

from pylstm import layers
from pylstm.layers import Permute, RepeatVector, Reshape, reshaping


def test_doctests():
    assert doctest.testmod(reshaping).failed == 0


def _check_gradients(layer, x, numeric_grad):
    g = np.random.default_rng(9).standard_normal(layer(x, training=True).shape)
    grad = layer.backward(g)
    assert grad.shape == x.shape and grad.dtype == np.float64

    def objective():
        return float(np.sum(g * layer.call(x)))

    np.testing.assert_allclose(grad, numeric_grad(objective, x), rtol=1e-6, atol=1e-8)


def test_repeat_vector(numeric_grad):
    x = np.random.default_rng(0).standard_normal((2, 3))
    layer = RepeatVector(4, dtype="float64")
    y = layer(x)
    assert y.shape == (2, 4, 3) and layer.compute_output_shape((None, 3)) == (None, 4, 3)
    for t in range(4):
        np.testing.assert_array_equal(y[:, t], x)
    _check_gradients(layer, x, numeric_grad)
    np.testing.assert_array_equal(layer.backward(np.ones((2, 4, 3))), np.full((2, 3), 4.0))
    assert layer(x.astype("float32")).dtype == np.float64
    assert RepeatVector(2)(x).dtype == np.float32


def test_repeat_vector_errors():
    with pytest.raises(TypeError, match="`n`"):
        RepeatVector(2.0)
    with pytest.raises(TypeError, match="`n`"):
        RepeatVector(True)
    with pytest.raises(ValueError, match="`n`"):
        RepeatVector(0)
    with pytest.raises(ValueError, match=r"rv.*2-D.*\(2, 3, 4\)"):
        RepeatVector(2, name="rv")(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="2-D"):
        RepeatVector(2).compute_output_shape((None, 3, 4))


@pytest.mark.parametrize("target,in_shape,out_shape", [
    ((6, 2), (3, 4), (6, 2)), ((-1, 2), (3, 4), (6, 2)), ((12,), (3, 4), (12,)),
    ((2, -1, 3), (3, 4), (2, 2, 3)), ((3, 4), (12,), (3, 4)), ((-1,), (2, 3, 2), (12,))])
def test_reshape(target, in_shape, out_shape, numeric_grad):
    x = np.random.default_rng(1).standard_normal((2,) + in_shape)
    layer = Reshape(target, dtype="float64")
    y = layer(x)
    assert y.shape == (2,) + out_shape
    np.testing.assert_array_equal(y, x.reshape((2,) + out_shape))
    assert layer.compute_output_shape((None,) + in_shape) == (None,) + out_shape
    _check_gradients(layer, x, numeric_grad)


def test_reshape_unknown_dims():
    assert Reshape((-1, 2)).compute_output_shape((None, None, 4)) == (None, None, 2)
    assert Reshape((3, 4)).compute_output_shape((None, None, 4)) == (None, 3, 4)
    # a call with the actual shape resolves the -1
    assert Reshape((-1, 2))(np.zeros((1, 5, 4))).shape == (1, 10, 2)


def test_reshape_errors():
    with pytest.raises(ValueError, match="at most one -1"):
        Reshape((-1, -1))
    with pytest.raises(ValueError, match="target_shape"):
        Reshape((2, -3))
    with pytest.raises(TypeError, match="target_shape"):
        Reshape(5)
    with pytest.raises(TypeError, match="target_shape"):
        Reshape((2, 1.5))
    with pytest.raises(ValueError, match=r"rs.*\(3, 4\).*12 entries.*\(5, -1\)"):
        Reshape((5, -1), name="rs")(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        Reshape((5, 2)).compute_output_shape((None, 3, 4))
    with pytest.raises(RuntimeError, match="training=True"):
        layer = Reshape((12,))
        layer(np.zeros((2, 3, 4)))
        layer.backward(np.zeros((2, 12)))


@pytest.mark.parametrize("dims,in_shape", [((2, 1), (3, 4)), ((1, 2), (3, 4)),
                                           ((3, 1, 2), (2, 3, 4)), ((2, 3, 1), (2, 3, 4))])
def test_permute(dims, in_shape, numeric_grad):
    x = np.random.default_rng(2).standard_normal((2,) + in_shape)
    layer = Permute(dims, dtype="float64")
    y = layer(x)
    np.testing.assert_array_equal(y, np.transpose(x, (0,) + dims))
    assert layer.compute_output_shape((None,) + in_shape) == y.shape[:0] + (None,) + y.shape[1:]
    assert Permute(dims).compute_output_shape((None, None) + in_shape[1:])[0] is None
    _check_gradients(layer, x, numeric_grad)


def test_permute_errors():
    with pytest.raises(ValueError, match="permutation"):
        Permute((0, 1))
    with pytest.raises(ValueError, match="permutation"):
        Permute((1, 1))
    with pytest.raises(TypeError, match="dims"):
        Permute(2)
    with pytest.raises(ValueError, match=r"pm.*rank 3.*\(2, 3\)"):
        Permute((2, 1), name="pm")(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="rank 3"):
        Permute((2, 1)).compute_output_shape((None, 3, 4, 5))


@pytest.mark.parametrize("layer", [RepeatVector(3), Reshape((-1, 2)), Permute((2, 1))])
def test_masks_are_dropped(layer):
    """Keras 3's RepeatVector, Reshape and Permute do not support masking."""
    assert not layer.supports_masking
    assert layer.compute_mask(np.zeros((2, 3, 4)), np.ones((2, 3), bool)) is None


@pytest.mark.parametrize("layer", [RepeatVector(3, name="r"), Reshape([-1, 2], trainable=False),
                                   Permute([3, 1, 2], dtype="float64")])
def test_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    again = layers.deserialize(layers.serialize(layer))
    assert type(again) is type(layer) and again.get_config() == config
    key = {"RepeatVector": "n", "Reshape": "target_shape", "Permute": "dims"}[type(layer).__name__]
    assert key in config
