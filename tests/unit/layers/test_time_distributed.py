"""`pylstm.layers.TimeDistributed` without an oracle: the wrapped layer applied at each
timestep, Dropout per timestep, an activation inside, float64 central differences, the config
protocol, the doctests and bad arguments. Parity with Keras 3:
parity/keras/test_time_distributed.py."""

import doctest
import json

import numpy as np
import pytest

import pylstm.layers.time_distributed as time_distributed_module
from pylstm.layers import LSTM, Activation, Dense, Dropout, deserialize, serialize
from pylstm.layers.time_distributed import TimeDistributed


B, T, D, U = 3, 5, 4, 6


def random_weights(rng, layer_or_model):
    return [(rng.normal(size=w.shape) * 0.4).astype(w.dtype)
            for w in layer_or_model.get_weights()]


def test_equals_the_layer_applied_at_each_timestep(rng):
    dense = Dense(U, activation="relu")
    td = TimeDistributed(dense)
    x = rng.normal(size=(B, T, D)).astype("float32")
    y = td(x)
    for t in range(T):
        np.testing.assert_allclose(y[:, t], dense(x[:, t]), rtol=1e-6, atol=1e-7)
    assert td.weights == dense.weights and td.count_params() == (D + 1) * U


def test_dropout_draws_independent_masks_per_timestep(rng):
    td = TimeDistributed(Dropout(0.5, seed=1))
    x = np.ones((B, T, 200), "float32")
    np.testing.assert_array_equal(td(x), x)  # identity at inference
    y = td(x, training=True)
    assert set(np.unique(y)) == {0.0, 2.0}
    assert not np.array_equal(y[:, 0], y[:, 1])
    grad = rng.normal(size=x.shape).astype("float32")
    np.testing.assert_array_equal(td.backward(grad), grad * y)


def test_activation_inside(rng):
    td = TimeDistributed(Activation("tanh"))
    x = rng.normal(size=(B, T, D)).astype("float32")
    np.testing.assert_allclose(td(x, training=True), np.tanh(x), rtol=1e-6)
    np.testing.assert_allclose(td.backward(np.ones_like(x)), 1 - np.tanh(x) ** 2, rtol=1e-5)


def test_backward_central_differences(numeric_grad):
    rng = np.random.default_rng(5)
    td = TimeDistributed(Dense(3, activation="tanh", dtype="float64"))
    assert td.dtype == "float64"
    x = rng.normal(size=(2, 4, 3))
    td.build(x.shape)
    upstream = rng.normal(size=(2, 4, 3))

    def loss():
        return float(np.sum(td(x) * upstream))

    td(x, training=True)
    td.zero_grads()
    dx = td.backward(upstream)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-9)
    for var in td.weights:
        np.testing.assert_allclose(var.grad, numeric_grad(loss, var.value), rtol=1e-6,
                                   atol=1e-9, err_msg=var.name)


# Config and doctests ---------------------------------------------------------------------------


def test_config_round_trip(rng):
    td = TimeDistributed(Dense(U, activation="relu", name="proj"), name="td")
    x = rng.normal(size=(B, T, D)).astype("float32")
    td.build(x.shape)
    td.set_weights(random_weights(rng, td))
    config = json.loads(json.dumps(serialize(td)))
    assert config["config"]["layer"]["class_name"] == "Dense"
    clone = deserialize(config)
    assert isinstance(clone, TimeDistributed) and isinstance(clone.layer, Dense)
    assert clone.get_config() == td.get_config()
    clone.build(x.shape)
    clone.set_weights(td.get_weights())
    np.testing.assert_array_equal(clone(x), td(x))


def test_doctests():
    assert doctest.testmod(time_distributed_module).failed == 0


# Bad input ------------------------------------------------------------------------------------


def test_rejects_non_layer():
    with pytest.raises(TypeError, match="`layer` must be a pylstm Layer, received str"):
        TimeDistributed("dense")


def test_rejects_inputs_without_time_axis():
    with pytest.raises(ValueError, match=r"at least 3 dimensions .* received shape \(3, 4\)"):
        TimeDistributed(Dense(2))(np.zeros((B, D), "float32"))
    with pytest.raises(ValueError, match="at least 3 dimensions"):
        TimeDistributed(Dense(2)).compute_output_shape((None, D))


def test_rejects_bad_mask_and_multi_output_layer():
    x = np.zeros((B, T, D), "float32")
    with pytest.raises(ValueError, match=r"`mask` .* must have shape \(3, 5\).*\(3, 4\)"):
        TimeDistributed(Dense(2))(x, mask=np.ones((B, T - 1), bool))
    with pytest.raises(ValueError, match="wraps a layer with one output.*returned 3"):
        TimeDistributed(LSTM(2, return_state=True))(np.zeros((B, T, 2, D), "float32"))


def test_backward_errors():
    td = TimeDistributed(Dense(2))
    with pytest.raises(RuntimeError, match="training=True before backward"):
        td.backward(np.zeros((B, T, 2), "float32"))
    td(np.zeros((B, T, D), "float32"), training=True)
    with pytest.raises(ValueError, match=r"start with the axes \(3, 5\).*\(5, 3, 2\)"):
        td.backward(np.zeros((T, B, 2), "float32"))
