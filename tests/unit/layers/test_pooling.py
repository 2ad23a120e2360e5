"""MaxPooling1D and AveragePooling1D without an oracle: hand-computed windows, float64 central
differences, shapes with unknown dimensions, errors and config. Parity with Keras:
parity/keras/test_conv_pooling_parity.py."""

import json

import numpy as np
import pytest

from pylstm import layers
from pylstm.layers import AveragePooling1D, MaxPooling1D

X = np.array([[[1.0, -1.0], [3.0, 0.0], [2.0, 4.0], [0.0, 2.0], [5.0, -3.0]]])  # (1, 5, 2)


def test_max_pooling_by_hand():
    np.testing.assert_array_equal(MaxPooling1D(2)(X)[0], [[3, 0], [2, 4]])
    np.testing.assert_array_equal(MaxPooling1D(2, strides=1)(X)[0, :, 0], [3, 3, 2, 5])
    # "same", P=2, T=5: one step of -inf padding on the right
    np.testing.assert_array_equal(MaxPooling1D(2, padding="same")(X)[0, :, 1], [0, 4, -3])


def test_average_pooling_same_counts_only_real_entries():
    np.testing.assert_array_equal(AveragePooling1D(2)(X)[0, :, 0], [2, 1])
    # "same", P=3, strides=1, T=5: windows at both edges hold two real entries
    y = AveragePooling1D(3, strides=1, padding="same")(X)[0, :, 0]
    np.testing.assert_allclose(y, [2, 2, 5 / 3, 7 / 3, 2.5])
    # "same", P=4, T=5: pads 1 left and 2 right (odd step on the right), strides 4
    y = AveragePooling1D(4, padding="same")(X)[0, :, 0]
    np.testing.assert_allclose(y, [2, 2.5])


@pytest.mark.parametrize("cls", [MaxPooling1D, AveragePooling1D])
def test_shapes_with_unknown_dimensions(cls):
    assert cls(3).compute_output_shape((None, None, 4)) == (None, None, 4)
    assert cls(3).compute_output_shape((2, 10, 4)) == (2, 3, 4)
    assert cls(3, strides=2, padding="same").compute_output_shape((None, 10, 4)) == (None, 5, 4)
    layer = cls(2)
    layer.build((None, None, 4))
    assert layer(np.ones((1, 7, 4))).shape == (1, 3, 4)


@pytest.mark.parametrize("cls", [MaxPooling1D, AveragePooling1D])
@pytest.mark.parametrize("pool_size, strides, padding", [
    (2, None, "valid"), (3, 1, "same"), (3, 2, "valid"), (4, None, "same"), (2, 3, "same")])
def test_gradients_by_central_differences_float64(cls, pool_size, strides, padding,
                                                  numeric_grad):
    rng = np.random.default_rng(0)
    layer = cls(pool_size, strides=strides, padding=padding, dtype="float64")
    x = rng.normal(size=(2, 7, 3))
    g = rng.normal(size=layer.compute_output_shape(x.shape))

    def objective():
        return float(np.sum(g * layer.call(x)))

    layer.call(x, training=True)
    np.testing.assert_allclose(layer.backward(g), numeric_grad(objective, x), rtol=1e-6,
                               atol=1e-8)


@pytest.mark.parametrize("cls", [MaxPooling1D, AveragePooling1D])
def test_no_weights_no_mask_and_backward_needs_training(cls):
    layer = cls(2)
    assert layer(X).dtype == np.float32 and layer.weights == []
    assert layer.compute_mask(X, np.ones((1, 5), bool)) is None
    with pytest.raises(RuntimeError, match="training=True"):
        layer.backward(np.ones((1, 2, 2)))


@pytest.mark.parametrize("cls", [MaxPooling1D, AveragePooling1D])
def test_argument_errors(cls):
    with pytest.raises(ValueError, match="`pool_size`"):
        cls(0)
    with pytest.raises(ValueError, match="`strides`"):
        cls(2, strides=-1)
    with pytest.raises(ValueError, match="`padding`.*'causal'"):
        cls(2, padding="causal")
    with pytest.raises(ValueError, match="`data_format`"):
        cls(2, data_format="channels_first")
    with pytest.raises(ValueError, match="shorter than its window"):
        cls(6)(X)
    with pytest.raises(ValueError, match=r"\(batch, steps, channels\)"):
        cls(2)(np.ones((2, 4)))


@pytest.mark.parametrize("cls", [MaxPooling1D, AveragePooling1D])
def test_config_round_trip_with_keras_keys(cls):
    layer = cls(3, strides=[2], padding="Same")
    config = layer.get_config()
    assert {k: config[k] for k in ("pool_size", "strides", "padding", "data_format")} == {
        "pool_size": (3,), "strides": (2,), "padding": "same", "data_format": "channels_last"}
    clone = layers.deserialize(json.loads(json.dumps(layers.serialize(layer))))
    assert clone.get_config() == config
    np.testing.assert_array_equal(clone(X), layer(X))
    assert cls(2).get_config()["strides"] == (2,)


def test_docstring_examples():
    import doctest

    from pylstm.layers import pooling

    result = doctest.testmod(pooling)
    assert result.attempted and not result.failed
