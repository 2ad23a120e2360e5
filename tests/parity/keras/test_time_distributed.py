"""`pylstm.layers.TimeDistributed` against Keras 3's `keras.layers.TimeDistributed` on the same
weights (outputs rtol 1e-5, gradients rtol 1e-4 against tf.GradientTape), in Sequential models
with masks, plus float64 central differences, Dropout per timestep, the config protocol and bad
arguments."""

import doctest
import json

import numpy as np
import pytest

import pylstm.layers.time_distributed as time_distributed_module
from pylstm.layers import (LSTM, Activation, Dense, Dropout, Embedding, Input, Masking,
                           deserialize, serialize)
from pylstm.layers.time_distributed import TimeDistributed
from pylstm.models import Sequential

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

keras = ku.keras

B, T, D, U = 3, 5, 4, 6
RTOL_OUT, ATOL_OUT = 1e-5, 1e-6
RTOL_GRAD, ATOL_GRAD = 1e-4, 1e-6


def random_weights(rng, layer_or_model):
    return [(rng.normal(size=w.shape) * 0.4).astype(w.dtype)
            for w in layer_or_model.get_weights()]


@pytest.mark.parametrize("activation", [None, "tanh", "softmax"])
@pytest.mark.parametrize("shape", [(B, T, D), (B, T, 2, D)])
def test_dense_parity(rng, shape, activation):
    ours = TimeDistributed(Dense(U, activation=activation))
    theirs = keras.layers.TimeDistributed(keras.layers.Dense(U, activation=activation))
    ours.build(shape)
    theirs.build(shape)
    ours.set_weights(random_weights(rng, ours))
    ku.copy_weights(ours, theirs)
    x = rng.normal(size=shape).astype("float32")
    y = ours(x, training=True)
    upstream = rng.normal(size=y.shape).astype("float32")
    (k_y,), k_grads = ku.keras_call(theirs, x, [upstream])
    assert y.shape == k_y.shape == tuple(ours.compute_output_shape(shape)) == \
        tuple(theirs.compute_output_shape(shape))
    np.testing.assert_allclose(y, k_y, rtol=RTOL_OUT, atol=ATOL_OUT)
    ours.zero_grads()
    dx = ours.backward(upstream)
    np.testing.assert_allclose(dx, k_grads["inputs"], rtol=RTOL_GRAD, atol=ATOL_GRAD)
    for var, keras_g in zip(ours.trainable_variables, k_grads["weights"], strict=True):
        np.testing.assert_allclose(var.grad, keras_g, rtol=RTOL_GRAD, atol=ATOL_GRAD,
                                   err_msg=var.name)


def test_equals_the_layer_applied_at_each_timestep(rng):
    dense = Dense(U, activation="relu")
    td = TimeDistributed(dense)
    x = rng.normal(size=(B, T, D)).astype("float32")
    y = td(x)
    for t in range(T):
        np.testing.assert_allclose(y[:, t], dense(x[:, t]), rtol=1e-6, atol=1e-7)
    assert td.weights == dense.weights and td.count_params() == (D + 1) * U


def test_embedding_inside_matches_keras(rng):
    ours = TimeDistributed(Embedding(10, 3))
    theirs = keras.layers.TimeDistributed(keras.layers.Embedding(10, 3))
    ours.build((B, T, 2))
    theirs.build((B, T, 2))
    ours.set_weights(random_weights(rng, ours))
    ku.copy_weights(ours, theirs)
    ids = rng.integers(0, 10, size=(B, T, 2))
    y = ours(ids, training=True)
    np.testing.assert_allclose(y, np.asarray(theirs(ids)), rtol=RTOL_OUT, atol=ATOL_OUT)
    ours.zero_grads()
    assert ours.backward(np.ones_like(y)) is None  # integer inputs have no gradient
    np.testing.assert_array_equal(ours.weights[0].grad.sum(axis=1),
                                  3 * np.bincount(ids.ravel(), minlength=10))


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


# In Sequential models, with masks ----------------------------------------------------------------


@pytest.fixture(scope="module")
def masked_models():
    """Masking -> LSTM(return_sequences) -> TimeDistributed(Dense), pylstm and Keras, same
    weights."""
    rng = np.random.default_rng(1)
    ours = Sequential([Input((T, D)), Masking(0.0), LSTM(U, return_sequences=True),
                       TimeDistributed(Dense(2))])
    theirs = keras.Sequential([keras.Input((T, D)), keras.layers.Masking(0.0),
                               keras.layers.LSTM(U, return_sequences=True),
                               keras.layers.TimeDistributed(keras.layers.Dense(2))])
    ours.set_weights(random_weights(rng, ours))
    theirs.set_weights(ours.get_weights())
    x = rng.normal(size=(8, T, D)).astype("float32")
    x[:4, 3:] = 0.0  # right padding on half the samples
    y = rng.normal(size=(8, T, 2)).astype("float32")
    return ours, theirs, x, y


def test_mask_passes_through(masked_models):
    ours, _, x, _ = masked_models
    mask = x.any(axis=-1)
    td = ours.layers[-1]
    np.testing.assert_array_equal(td.compute_mask(x, mask), mask)
    assert td.compute_mask(x, None) is None


def test_masked_sequential_matches_keras(masked_models):
    ours, theirs, x, y = masked_models
    np.testing.assert_allclose(ours.predict(x), theirs.predict(x, verbose=0), rtol=RTOL_OUT,
                               atol=ATOL_OUT)
    # Masked timesteps are left out of the loss, in both.
    ours.compile(optimizer="sgd", loss="mse")
    keras_losses = ku.keras_fit(theirs, x, y, keras.optimizers.SGD(0.01), "mse", epochs=2,
                                batch_size=4)
    history = ours.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    np.testing.assert_allclose(history.history["loss"], keras_losses, rtol=1e-4)
    for ours_w, keras_w in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(ours_w, keras_w, rtol=1e-3, atol=1e-6)


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
