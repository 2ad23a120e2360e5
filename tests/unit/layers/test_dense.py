import json

import numpy as np
import pytest

from pylstm import layers
from pylstm.layers import Activation, Dense, Dropout, Flatten, Input, InputLayer


def test_forward_matches_numpy():
    rng = np.random.default_rng(0)
    layer = Dense(4, activation="tanh")
    x = rng.standard_normal((5, 3)).astype("float32")
    y = layer(x)
    kernel, bias = layer.get_weights()
    assert kernel.shape == (3, 4) and bias.shape == (4,)
    assert y.shape == (5, 4) and y.dtype == np.float32
    np.testing.assert_allclose(y, np.tanh(x @ kernel + bias), rtol=1e-6)


def test_3d_input_applies_on_last_axis():
    layer = Dense(2, dtype="float64")
    x = np.random.default_rng(1).standard_normal((4, 7, 3))
    y = layer(x)
    assert y.shape == (4, 7, 2)
    assert layer.compute_output_shape((None, 7, 3)) == (None, 7, 2)
    np.testing.assert_allclose(y[:, 3], layer(x[:, 3]))


@pytest.mark.parametrize("shape", [(4, 3), (2, 5, 3)])
@pytest.mark.parametrize("activation", [None, "tanh", "softmax", "relu"])
def test_gradients_by_central_differences_float64(shape, activation, numeric_grad):
    rng = np.random.default_rng(2)
    layer = Dense(4, activation=activation, dtype="float64", bias_initializer="random_normal")
    x = rng.standard_normal(shape)
    g = rng.standard_normal(shape[:-1] + (4,))
    layer.build(x.shape)

    def objective():
        return float(np.sum(g * layer.call(x)))

    layer.zero_grads()
    layer.call(x, training=True)
    grad_x = layer.backward(g)
    np.testing.assert_allclose(grad_x, numeric_grad(objective, x), rtol=1e-6, atol=1e-8)
    for var in layer.weights:
        np.testing.assert_allclose(var.grad, numeric_grad(objective, var.value), rtol=1e-6,
                                   atol=1e-8, err_msg=var.name)


def test_backward_accumulates_weight_gradients():
    layer = Dense(2, dtype="float64")
    x = np.ones((3, 2))
    layer(x, training=True)
    layer.backward(np.ones((3, 2)))
    first = layer.kernel.grad.copy()
    layer(x, training=True)
    layer.backward(np.ones((3, 2)))
    np.testing.assert_allclose(layer.kernel.grad, 2 * first)


def test_no_bias():
    layer = Dense(3, use_bias=False, kernel_initializer="ones")
    np.testing.assert_array_equal(layer(np.ones((1, 2))), [[2.0, 2.0, 2.0]])
    assert len(layer.weights) == 1 and layer.count_params() == 6


def test_validation_errors():
    with pytest.raises(ValueError, match="units"):
        Dense(0)
    layer = Dense(2)
    layer.build((None, 3))
    with pytest.raises(ValueError, match=r"`inputs`.*\(batch, \.\.\., 3\).*\(4, 5\)"):
        layer(np.ones((4, 5)))
    with pytest.raises(ValueError, match="last dimension"):
        Dense(2).build((None,))
    with pytest.raises(RuntimeError, match="training=True"):
        layer.backward(np.ones((4, 2)))


def test_config_round_trip_through_json():
    layer = Dense(5, activation="relu", use_bias=False, kernel_initializer="orthogonal",
                  name="d", dtype="float64", input_shape=(3,))
    config = json.loads(json.dumps(layers.serialize(layer)))
    clone = layers.deserialize(config)
    assert type(clone) is Dense and clone.get_config() == layer.get_config()
    assert clone.activation.__name__ == "relu" and clone.dtype == "float64"
    with pytest.raises(ValueError, match="NoSuchLayer"):
        layers.deserialize({"class_name": "NoSuchLayer", "config": {}})


def test_dropout_inverted_scaling_and_inference_identity():
    layer = Dropout(0.25, seed=0, dtype="float64")
    x = np.ones((200, 50))
    np.testing.assert_array_equal(layer(x, training=False), x)
    y = layer(x, training=True)
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), y)
    assert not np.array_equal(layer(x, training=True), y)  # a new mask each call
    with pytest.raises(ValueError, match="rate"):
        Dropout(1.0)


def test_activation_and_flatten_gradients(numeric_grad):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4))
    flat = Flatten(dtype="float64")
    assert flat(x).shape == (2, 12)
    assert flat.compute_output_shape((None, 3, 4)) == (None, 12)
    np.testing.assert_array_equal(flat.backward(flat(x).copy()), x)
    act = Activation("sigmoid", dtype="float64")
    g = rng.standard_normal(x.shape)
    act(x, training=True)
    analytic = act.backward(g)
    numeric = numeric_grad(lambda: float(np.sum(g * act.call(x))), x)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_input_layer():
    tensor = Input((7, 3), name="inp")
    inp = tensor._keras_history.layer
    assert isinstance(inp, InputLayer) and inp.batch_shape == (None, 7, 3)
    assert tensor.shape == (None, 7, 3) and tensor.name == "inp" and inp.output is tensor
    clone = layers.deserialize(json.loads(json.dumps(layers.serialize(inp))))
    assert clone.batch_shape == (None, 7, 3) and clone.name == "inp"
