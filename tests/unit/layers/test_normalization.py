"""BatchNormalization and LayerNormalization without an oracle: the statistics they produce,
the moving averages, masks, float64 central differences, errors and config. Parity with Keras:
parity/keras/test_normalization_parity.py."""

import json

import numpy as np
import pytest

from pylstm import layers
from pylstm.layers import BatchNormalization, LayerNormalization


@pytest.fixture
def x(rng):
    return rng.normal(loc=2.0, scale=3.0, size=(3, 5, 4))


# BatchNormalization -------------------------------------------------------------------------


def test_batch_normalization_weights_in_keras_order():
    layer = BatchNormalization()
    layer.build((None, 5, 4))
    assert [v.name.split("/")[-1] for v in layer.weights] == [
        "gamma", "beta", "moving_mean", "moving_variance"]
    assert [v.name.split("/")[-1] for v in layer.trainable_variables] == ["gamma", "beta"]
    assert [np.asarray(w).tolist() for w in layer.get_weights()] == [[1] * 4, [0] * 4,
                                                                     [0] * 4, [1] * 4]
    only_scale = BatchNormalization(center=False)
    only_scale.build((None, 4))
    assert [v.name.split("/")[-1] for v in only_scale.weights] == [
        "gamma", "moving_mean", "moving_variance"]


def test_batch_statistics_in_training_and_moving_update(x):
    layer = BatchNormalization(momentum=0.9, epsilon=1e-12, dtype="float64")
    y = layer(x, training=True)
    np.testing.assert_allclose(y.mean(axis=(0, 1)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 1)), 1, rtol=1e-9)
    np.testing.assert_allclose(layer.moving_mean.value, 0.1 * x.mean(axis=(0, 1)), rtol=1e-12)
    np.testing.assert_allclose(layer.moving_variance.value, 0.9 + 0.1 * x.var(axis=(0, 1)),
                               rtol=1e-12)
    # inference: the moving statistics, and no update
    moving = [w.copy() for w in layer.get_weights()[2:]]
    expected = (x - moving[0]) / np.sqrt(moving[1] + 1e-12)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-12)
    np.testing.assert_array_equal(layer.get_weights()[2:], moving)


def test_frozen_layer_uses_moving_statistics_in_training(x):
    layer = BatchNormalization(trainable=False, dtype="float64")
    np.testing.assert_allclose(layer(x, training=True), x / np.sqrt(1 + 1e-3), rtol=1e-12)
    np.testing.assert_array_equal(layer.moving_mean.value, 0)


def test_mask_leaves_masked_steps_out_of_the_statistics(x, rng):
    mask = rng.random((3, 5)) > 0.4
    mask[0, 0] = True
    x = x.copy()
    x[~mask] = 1e3  # would dominate the statistics if they were counted
    layer = BatchNormalization(momentum=0.0, epsilon=1e-12, dtype="float64")
    y = layer(x, training=True, mask=mask)
    real = x[mask]  # (N_real, C)
    np.testing.assert_allclose(y[mask], (real - real.mean(0)) / real.std(0), rtol=1e-6)
    np.testing.assert_allclose(layer.moving_mean.value, real.mean(0), rtol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.value, real.var(0), rtol=1e-6)
    assert layer.compute_mask(x, mask) is mask


@pytest.mark.parametrize("frozen, masked, axis, kwargs", [
    (False, False, -1, {}), (False, True, -1, {}), (True, False, -1, {}),
    (False, False, 1, {"center": False}), (False, True, -1, {"scale": False})])
def test_batch_normalization_gradients_float64(frozen, masked, axis, kwargs, x, rng,
                                               numeric_grad):
    """Through the batch statistics (masked or not), or the moving ones of a frozen layer."""
    layer = BatchNormalization(axis=axis, dtype="float64", gamma_initializer="random_normal",
                               beta_initializer="random_normal",
                               moving_mean_initializer="random_normal", trainable=not frozen,
                               **kwargs)
    layer.build(x.shape)
    mask = rng.random((3, 5)) > 0.3 if masked else None
    g = rng.normal(size=x.shape)

    def objective():
        return float(np.sum(g * layer.call(x, training=True, mask=mask)))

    layer.zero_grads()
    objective()
    np.testing.assert_allclose(layer.backward(g), numeric_grad(objective, x), rtol=1e-6,
                               atol=1e-8)
    for var in layer.weights[:-2]:
        np.testing.assert_allclose(var.grad, numeric_grad(objective, var.value), rtol=1e-6,
                                   atol=1e-8, err_msg=var.name)


def test_batch_normalization_errors():
    with pytest.raises(ValueError, match="`renorm`"):
        BatchNormalization(renorm=True)
    with pytest.raises(ValueError, match="`axis`"):
        BatchNormalization(axis=[1, 2])
    with pytest.raises(TypeError, match="`center`"):
        BatchNormalization(center="yes")
    with pytest.raises(ValueError, match="out of bounds"):
        BatchNormalization(axis=3).build((None, 5, 4))
    with pytest.raises(ValueError, match="known dimension"):
        BatchNormalization(axis=1).build((None, None, 4))
    layer = BatchNormalization()
    layer.build((None, 5, 4))
    with pytest.raises(ValueError, match="4 channels.*\\(2, 5, 3\\)"):
        layer(np.ones((2, 5, 3)))
    with pytest.raises(ValueError, match="one dimension less"):
        layer(np.ones((2, 5, 4)), training=True, mask=np.ones((2, 5, 4), bool))
    with pytest.raises(RuntimeError, match="training=True"):
        layer.backward(np.ones((2, 5, 4)))
    assert layer.compute_output_shape((None, None, 4)) == (None, None, 4)


def test_batch_normalization_config_round_trip(x):
    layer = BatchNormalization(axis=[1], momentum=0.8, epsilon=1e-4, center=False,
                               gamma_regularizer="l2", gamma_constraint="non_neg",
                               moving_variance_initializer="random_uniform")
    layer(x.astype("float32"), training=True)
    config = layer.get_config()
    assert config["axis"] == 1 and config["renorm"] is False
    clone = layers.deserialize(json.loads(json.dumps(layers.serialize(layer))))
    assert clone.get_config() == config
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x), layer(x))


# LayerNormalization -------------------------------------------------------------------------


@pytest.mark.parametrize("axis, reduced", [(-1, (2,)), ([1, 2], (1, 2)), (1, (1,))])
def test_layer_normalization_statistics(x, axis, reduced):
    layer = LayerNormalization(axis=axis, epsilon=1e-12, dtype="float64")
    y = layer(x)
    np.testing.assert_allclose(y.mean(axis=reduced), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=reduced), 1, rtol=1e-9)
    assert layer.gamma.shape == tuple(x.shape[a] for a in reduced)
    assert [v.name.split("/")[-1] for v in layer.weights] == ["gamma", "beta"]
    np.testing.assert_array_equal(layer(x, training=True), y)  # no batch dependence
    np.testing.assert_allclose(layer(x[:1]), y[:1], rtol=1e-12)


@pytest.mark.parametrize("axis, kwargs", [(-1, {}), ([1, 2], {}), (-2, {"center": False}),
                                          (-1, {"scale": False})])
def test_layer_normalization_gradients_float64(x, rng, axis, kwargs, numeric_grad):
    layer = LayerNormalization(axis=axis, dtype="float64", gamma_initializer="random_normal",
                               beta_initializer="random_normal", **kwargs)
    layer.build(x.shape)
    g = rng.normal(size=x.shape)

    def objective():
        return float(np.sum(g * layer.call(x)))

    layer.zero_grads()
    layer.call(x, training=True)
    np.testing.assert_allclose(layer.backward(g), numeric_grad(objective, x), rtol=1e-6,
                               atol=1e-8)
    for var in layer.weights:
        np.testing.assert_allclose(var.grad, numeric_grad(objective, var.value), rtol=1e-6,
                                   atol=1e-8, err_msg=var.name)


def test_layer_normalization_mask_passes_through(x):
    mask = np.ones((3, 5), bool)
    layer = LayerNormalization()
    layer(x)
    assert layer.compute_mask(x, mask) is mask


def test_layer_normalization_errors(x):
    with pytest.raises(ValueError, match="`rms_scaling`"):
        LayerNormalization(rms_scaling=True)
    with pytest.raises(TypeError, match="`axis`"):
        LayerNormalization(axis="last")
    with pytest.raises(ValueError, match="out of bounds"):
        LayerNormalization(axis=5).build((None, 5, 4))
    with pytest.raises(ValueError, match="known dimensions"):
        LayerNormalization(axis=1).build((None, None, 4))
    layer = LayerNormalization()
    layer.build((None, 5, 4))
    with pytest.raises(ValueError, match=r"\(4,\).*\(2, 5, 3\)"):
        layer(np.ones((2, 5, 3)))
    with pytest.raises(RuntimeError, match="training=True"):
        layer.backward(np.ones((2, 5, 4)))


def test_layer_normalization_config_round_trip(x):
    layer = LayerNormalization(axis=[1, 2], epsilon=1e-5, center=False, beta_regularizer="l1",
                               gamma_initializer="random_normal")
    y = layer(x)
    config = layer.get_config()
    assert config["axis"] == [1, 2] and config["rms_scaling"] is False
    clone = layers.deserialize(json.loads(json.dumps(layers.serialize(layer))))
    assert clone.get_config() == config
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x), y)


def test_keras2_configs_load():
    """Keras 2 wrote the built axis as a list of non-negative ints; SpatialDropout1D's
    `noise_shape` as null."""
    from pylstm.models import keras_io

    def load(class_name, config):
        return layers.deserialize(keras_io._layer_from_keras(
            {"class_name": class_name, "config": config}, legacy=True))

    bn = load("BatchNormalization", {
        "name": "bn", "trainable": True, "dtype": "float32", "axis": [2], "momentum": 0.9,
        "epsilon": 0.001, "center": True, "scale": False,
        "beta_initializer": {"class_name": "Zeros", "config": {}},
        "moving_mean_initializer": {"class_name": "Zeros", "config": {}},
        "moving_variance_initializer": {"class_name": "Ones", "config": {}},
        "gamma_initializer": {"class_name": "Ones", "config": {}}, "beta_regularizer": None,
        "gamma_regularizer": None, "beta_constraint": None, "gamma_constraint": None})
    assert (bn.axis, bn.momentum, bn.scale) == (2, 0.9, False)
    ln = load("LayerNormalization", {"name": "ln", "axis": [2], "epsilon": 1e-6,
                                     "center": True, "scale": True})
    assert ln.axis == [2] and ln(np.ones((1, 2, 3))).shape == (1, 2, 3)
    drop = load("SpatialDropout1D", {"name": "sd", "trainable": True, "dtype": "float32",
                                     "rate": 0.2, "noise_shape": None, "seed": None})
    assert drop.rate == 0.2


def test_docstring_examples():
    import doctest

    from pylstm.layers import normalization

    result = doctest.testmod(normalization)
    assert result.attempted and not result.failed
