"""Conv1D without an oracle: a direct loop as the reference, float64 central differences,
shapes with unknown dimensions, errors and config. Parity with Keras:
parity/keras/test_conv_pooling_parity.py."""

import json

import numpy as np
import pytest

from pylstm import layers
from pylstm.layers import Conv1D


def direct_conv(x, kernel, bias, stride, dilation, left, right):
    """The definition, one output step at a time."""
    padded = np.pad(x, ((0, 0), (left, right), (0, 0)))
    size = kernel.shape[0]
    span = dilation * (size - 1) + 1
    outs = []
    for start in range(0, padded.shape[1] - span + 1, stride):
        taps = padded[:, start:start + span:dilation]  # (B, K, C)
        outs.append(np.einsum("bkc,kcf->bf", taps, kernel) + bias)
    return np.stack(outs, axis=1)


@pytest.mark.parametrize("padding, stride, dilation, pads", [
    ("valid", 1, 1, (0, 0)), ("valid", 2, 1, (0, 0)), ("valid", 1, 2, (0, 0)),
    ("causal", 1, 2, (4, 0)), ("causal", 2, 1, (2, 0)),
    ("same", 1, 1, (1, 1)), ("same", 2, 1, (1, 1)), ("same", 1, 2, (2, 2))])
def test_forward_matches_the_definition(padding, stride, dilation, pads):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 7, 3))
    layer = Conv1D(4, 3, strides=stride, dilation_rate=dilation, padding=padding,
                   dtype="float64", bias_initializer="random_normal")
    y = layer(x)
    kernel, bias = layer.get_weights()
    assert kernel.shape == (3, 3, 4) and bias.shape == (4,)
    np.testing.assert_allclose(y, direct_conv(x, kernel, bias, stride, dilation, *pads),
                               rtol=1e-12, atol=1e-12)
    assert layer.compute_output_shape((None, 7, 3)) == (None,) + y.shape[1:]


def test_same_padding_puts_the_odd_step_on_the_right():
    """TensorFlow's "SAME": T=6, K=4 pads 1 on the left and 2 on the right."""
    x = np.zeros((1, 6, 1))
    x[0, 0, 0] = 1.0
    layer = Conv1D(1, 4, padding="same", use_bias=False, dtype="float64")
    layer.build(x.shape)
    layer.set_weights([np.arange(1.0, 5.0).reshape(4, 1, 1)])
    # out[t] = sum_k x[t + k - 1] w[k]: x[0] reaches out[0] through w[1], out[1] through w[0]
    np.testing.assert_array_equal(layer(x)[0, :, 0], [2, 1, 0, 0, 0, 0])


def test_causal_output_ignores_the_future():
    rng = np.random.default_rng(1)
    layer = Conv1D(2, 3, padding="causal", dilation_rate=2)
    x = rng.normal(size=(1, 8, 2)).astype("float32")
    y = layer(x)
    x2 = x.copy()
    x2[:, 5:] += 1.0
    np.testing.assert_array_equal(layer(x2)[:, :5], y[:, :5])
    assert y.shape == (1, 8, 2)


def test_unknown_dimensions_in_shapes():
    layer = Conv1D(5, 3, strides=2)
    assert layer.compute_output_shape((None, None, 4)) == (None, None, 5)
    assert layer.compute_output_shape((2, 9, 4)) == (2, 4, 5)
    assert Conv1D(5, 3, padding="same", strides=2).compute_output_shape((None, 9, 4)) == (
        None, 5, 5)
    layer.build((None, None, 4))
    assert layer(np.ones((3, 11, 4))).shape == (3, 5, 5)


@pytest.mark.parametrize("padding, stride, dilation, activation", [
    ("valid", 2, 1, "tanh"), ("same", 1, 2, None), ("causal", 1, 1, "relu"),
    ("same", 3, 1, "sigmoid")])
def test_gradients_by_central_differences_float64(padding, stride, dilation, activation,
                                                  numeric_grad):
    rng = np.random.default_rng(2)
    layer = Conv1D(3, 3, strides=stride, dilation_rate=dilation, padding=padding,
                   activation=activation, dtype="float64", bias_initializer="random_normal")
    x = rng.normal(size=(2, 8, 2))
    layer.build(x.shape)
    g = rng.normal(size=layer.compute_output_shape(x.shape))

    def objective():
        return float(np.sum(g * layer.call(x)))

    layer.zero_grads()
    layer.call(x, training=True)
    np.testing.assert_allclose(layer.backward(g), numeric_grad(objective, x), rtol=1e-6,
                               atol=1e-8)
    for var in layer.weights:
        np.testing.assert_allclose(var.grad, numeric_grad(objective, var.value), rtol=1e-6,
                                   atol=1e-8, err_msg=var.name)


def test_backward_accumulates_and_needs_training_call():
    layer = Conv1D(2, 2, dtype="float64")
    x = np.ones((1, 4, 3))
    with pytest.raises(RuntimeError, match="training=True"):
        layer(x)
        layer.backward(np.ones((1, 3, 2)))
    layer(x, training=True)
    layer.backward(np.ones((1, 3, 2)))
    first = layer.kernel.grad.copy()
    layer(x, training=True)
    layer.backward(np.ones((1, 3, 2)))
    np.testing.assert_allclose(layer.kernel.grad, 2 * first)


def test_drops_the_mask_as_keras():
    layer = Conv1D(2, 2, padding="same")
    x = np.ones((2, 4, 3), dtype="float32")
    assert layer.compute_mask(x, np.ones((2, 4), bool)) is None


def test_argument_errors():
    with pytest.raises(ValueError, match="`filters`"):
        Conv1D(0, 3)
    with pytest.raises(ValueError, match="`kernel_size`.*received"):
        Conv1D(2, (3, 3))
    with pytest.raises(ValueError, match="`padding`.*'full'"):
        Conv1D(2, 3, padding="full")
    with pytest.raises(ValueError, match="`data_format`.*channels_first"):
        Conv1D(2, 3, data_format="channels_first")
    with pytest.raises(ValueError, match="`groups`"):
        Conv1D(2, 3, groups=2)
    with pytest.raises(ValueError, match="strides > 1.*dilation_rate > 1"):
        Conv1D(2, 3, strides=2, dilation_rate=2)
    with pytest.raises(ValueError, match="shorter than its window"):
        Conv1D(2, 5).build((None, 4, 3))
    with pytest.raises(ValueError, match=r"\(batch, steps, channels\)"):
        Conv1D(2, 3).build((None, 3))
    layer = Conv1D(2, 3)
    layer.build((None, 6, 3))
    with pytest.raises(ValueError, match=r"\(batch, steps, 3\).*\(1, 6, 4\)"):
        layer(np.ones((1, 6, 4)))
    assert Conv1D(2, 3, padding="SAME").padding == "same"


def test_config_round_trip_with_keras_keys():
    layer = Conv1D(4, [3], strides=(1,), padding="causal", dilation_rate=2, activation="relu",
                   use_bias=False, kernel_regularizer="l2", kernel_constraint="non_neg")
    x = np.random.default_rng(3).normal(size=(2, 6, 3)).astype("float32")
    y = layer(x)
    config = layer.get_config()
    assert {"filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
            "groups", "activation", "use_bias", "kernel_initializer", "bias_initializer",
            "kernel_regularizer", "bias_regularizer", "kernel_constraint",
            "bias_constraint"} <= set(config)
    assert config["kernel_size"] == (3,) and config["dilation_rate"] == (2,)
    clone = layers.deserialize(json.loads(json.dumps(layers.serialize(layer))))
    assert clone.get_config() == config
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x), y)


def test_keras2_configs_load():
    """Keras 2 wrote 1-D sizes as lists and `groups` only from TF 2.3 on."""
    from pylstm.models import keras_io

    def load(class_name, config):
        return layers.deserialize(keras_io._layer_from_keras(
            {"class_name": class_name, "config": config}, legacy=True))

    conv = load("Conv1D", {
        "name": "c", "trainable": True, "dtype": "float32", "filters": 4, "kernel_size": [3],
        "strides": [1], "padding": "causal", "data_format": "channels_last",
        "dilation_rate": [2], "activation": "relu", "use_bias": True,
        "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
        "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
        "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
        "bias_constraint": None})
    assert (conv.kernel_size, conv.dilation_rate, conv.padding) == ((3,), (2,), "causal")
    pool = load("MaxPooling1D", {"name": "p", "trainable": True, "dtype": "float32",
                                 "strides": [2], "pool_size": [2], "padding": "valid",
                                 "data_format": "channels_last"})
    assert pool.compute_output_shape((None, 7, 4)) == (None, 3, 4)


def test_docstring_examples():
    import doctest

    from pylstm.layers import convolutional

    result = doctest.testmod(convolutional)
    assert result.attempted and not result.failed
