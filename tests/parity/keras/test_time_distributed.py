"""`pylstm.layers.TimeDistributed` against Keras 3's `keras.layers.TimeDistributed` on the same
weights (outputs rtol 1e-5, gradients rtol 1e-4 against tf.GradientTape), in Sequential models
with masks, plus float64 central differences, Dropout per timestep, the config protocol and bad
arguments."""

import numpy as np
import pytest

from pylstm.layers import LSTM, Dense, Embedding, Input, Masking
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
