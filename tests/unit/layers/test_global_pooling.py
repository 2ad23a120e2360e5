"""GlobalAveragePooling1D and GlobalMaxPooling1D without an oracle: shapes, keepdims and
channels_first, the masked mean, ties, errors, config round trips, and backward against central
differences in float64. Keras parity: parity/keras/test_global_pooling_parity.py."""

import doctest

import numpy as np
import pytest

from pylstm import layers
from pylstm.layers import GlobalAveragePooling1D, GlobalMaxPooling1D, global_pooling

B, T, D = 3, 5, 4
MASK = np.array([[True, True, False, True, False], [False, False, False, False, True],
                 [True, True, True, True, True]])


def test_doctests():
    assert doctest.testmod(global_pooling).failed == 0


def _check_gradients(layer, x, numeric_grad, mask=None):
    g = np.random.default_rng(9).standard_normal(layer(x, training=True, mask=mask).shape)
    grad = layer.backward(g)
    assert grad.shape == x.shape and grad.dtype == np.float64

    def objective():
        return float(np.sum(g * layer(x, mask=mask)))

    np.testing.assert_allclose(grad, numeric_grad(objective, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("cls,reduce", [(GlobalAveragePooling1D, np.mean),
                                        (GlobalMaxPooling1D, np.max)])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_values_shapes_and_gradients(cls, reduce, data_format, keepdims, numeric_grad):
    shape = (B, T, D) if data_format == "channels_last" else (B, D, T)
    x = np.random.default_rng(0).standard_normal(shape)
    layer = cls(data_format=data_format, keepdims=keepdims, dtype="float64")
    y = layer(x)
    axis = 1 if data_format == "channels_last" else 2
    np.testing.assert_allclose(y, reduce(x, axis=axis, keepdims=keepdims), rtol=1e-12)
    assert layer.compute_output_shape((None,) + shape[1:]) == (None,) + y.shape[1:]
    assert layer.compute_output_shape((None, None, None)) == \
        ((None, 1, None) if keepdims and axis == 1 else
         (None, None, 1) if keepdims else (None, None))
    _check_gradients(layer, x, numeric_grad)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_masked_mean_leaves_masked_steps_out(data_format, keepdims, numeric_grad):
    x = np.random.default_rng(1).standard_normal((B, T, D))
    layer = GlobalAveragePooling1D(data_format=data_format, keepdims=keepdims, dtype="float64")
    if data_format == "channels_first":
        x = x.transpose(0, 2, 1).copy()
    y = layer(x, mask=MASK)
    steps = x if data_format == "channels_last" else x.transpose(0, 2, 1)
    want = np.stack([steps[b][MASK[b]].mean(axis=0) for b in range(B)])
    np.testing.assert_allclose(y.reshape(B, D), want, rtol=1e-12)
    _check_gradients(layer, x, numeric_grad, mask=MASK)
    layer(x, training=True, mask=MASK)
    grad = layer.backward(np.ones(y.shape))
    grad_steps = grad if data_format == "channels_last" else grad.transpose(0, 2, 1)
    np.testing.assert_array_equal(grad_steps[~MASK], 0.0)


def test_fully_masked_sample_gives_nan_as_keras_and_no_gradient():
    layer = GlobalAveragePooling1D(dtype="float64")
    mask = MASK.copy()
    mask[0] = False
    with np.errstate(all="raise"):  # no warning escapes
        y = layer(np.ones((B, T, D)), training=True, mask=mask)
        grad = layer.backward(np.ones((B, D)))
    assert np.isnan(y[0]).all() and np.isfinite(y[1:]).all()
    np.testing.assert_array_equal(grad[0], 0.0)


def test_max_ties_share_the_gradient():
    """tf.reduce_max splits the gradient equally among the steps that tie."""
    x = np.array([[[1.0, 2.0], [3.0, 2.0], [3.0, 0.0], [3.0, 2.0]]])
    layer = GlobalMaxPooling1D(dtype="float64")
    layer(x, training=True)
    grad = layer.backward(np.array([[6.0, 3.0]]))
    np.testing.assert_allclose(grad[0], [[0, 1], [2, 1], [2, 0], [2, 1]])


def test_masks():
    """The mean pools the mask away; the max, like Keras's, does not support masking."""
    x = np.random.default_rng(2).standard_normal((B, T, D))
    assert GlobalAveragePooling1D().supports_masking
    assert GlobalAveragePooling1D().compute_mask(x, MASK) is None
    assert not GlobalMaxPooling1D().supports_masking
    assert GlobalMaxPooling1D().compute_mask(x, MASK) is None
    np.testing.assert_array_equal(GlobalMaxPooling1D()(x, mask=MASK), GlobalMaxPooling1D()(x))


@pytest.mark.parametrize("cls", [GlobalAveragePooling1D, GlobalMaxPooling1D])
def test_errors(cls):
    with pytest.raises(ValueError, match="data_format"):
        cls(data_format="channels_middle")
    with pytest.raises(ValueError, match=r"gp.*3-D.*\(3, 4\)"):
        cls(name="gp")(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="3-D"):
        cls().compute_output_shape((None, 3, 4, 5))
    layer = cls()
    layer(np.zeros((B, T, D)))
    with pytest.raises(RuntimeError, match="training=True"):
        layer.backward(np.zeros((B, D)))


@pytest.mark.parametrize("layer", [GlobalAveragePooling1D(keepdims=True, name="g"),
                                   GlobalMaxPooling1D(data_format="channels_first")])
def test_config_round_trip(layer):
    config = layer.get_config()
    assert {"data_format", "keepdims"} <= set(config)
    assert type(layer).from_config(config).get_config() == config
    again = layers.deserialize(layers.serialize(layer))
    assert type(again) is type(layer) and again.get_config() == config
    assert GlobalAveragePooling1D().get_config()["data_format"] == "channels_last"
