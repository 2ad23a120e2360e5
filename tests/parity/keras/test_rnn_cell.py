"""`pylstm.layers.LSTMCell`, `StackedRNNCells` and `RNN`: parity with Keras 3's `RNN(LSTMCell)`
and `RNN([LSTMCell, ...])` on the same weights (outputs rtol 1e-5, gradients rtol 1e-4 against
tf.GradientTape) over return_sequences, return_state, go_backwards, masks, zero_output_for_mask
and initial_state; stacked cells' weights, penalties, training, stateful use and a cell's
config keys. Oracle-free checks: unit/layers/test_rnn_cell.py."""

import itertools

import numpy as np
import pytest

from pylstm.layers import Dense, Input
from pylstm.layers.rnn import RNN, LSTMCell, StackedRNNCells
from pylstm.models import Sequential

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

keras = ku.keras
tf = ku.tf

B, T, D, H, H2 = 3, 5, 4, 6, 5
RTOL_OUT, ATOL_OUT = 1e-5, 1e-6
RTOL_GRAD, ATOL_GRAD = 1e-4, 1e-6
MASKS = ku.MASKS


def random_weights(rng, layer, dtype="float32"):
    return [(rng.normal(size=w.shape) * 0.4).astype(dtype) for w in layer.get_weights()]


def flatten(nested):
    if isinstance(nested, (list, tuple)):
        return [leaf for item in nested for leaf in flatten(item)]
    return [nested]


def keras_grads(layer, x, upstream, **call_kwargs):
    """Keras outputs (flattened) and the gradients of `sum(output_k * upstream_k)` with respect
    to `x`, the (flattened) `initial_state` and `layer.trainable_weights`."""
    x = tf.constant(x)
    states = [tf.constant(s) for s in flatten(call_kwargs.get("initial_state", []))]
    if "initial_state" in call_kwargs:
        it = iter(states)
        call_kwargs["initial_state"] = tf.nest.map_structure(
            lambda _: next(it), call_kwargs["initial_state"])
    with tf.GradientTape() as tape:
        tape.watch(x)
        for s in states:
            tape.watch(s)
        outputs = flatten(layer(x, **call_kwargs))
        loss = tf.add_n([tf.reduce_sum(o * g) for o, g in zip(outputs, upstream, strict=True)])
    grads = tape.gradient(loss, [x, states, list(layer.trainable_weights)],
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [np.asarray(o) for o in outputs], grads


def assert_rnn_parity(rng, ours, theirs, x, mask=None, initial_state=None):
    kwargs = {} if mask is None else {"mask": mask}
    if initial_state is not None:
        kwargs["initial_state"] = initial_state
    result = ours(x, training=True, **kwargs)
    outputs = flatten(result)
    upstream = [rng.normal(size=o.shape).astype(x.dtype) for o in outputs]
    k_outputs, (k_dx, k_dstates, k_dweights) = keras_grads(theirs, x, upstream, **kwargs)
    assert [o.shape for o in outputs] == [o.shape for o in k_outputs]
    for ours_out, keras_out in zip(outputs, k_outputs):
        np.testing.assert_allclose(ours_out, keras_out, rtol=RTOL_OUT, atol=ATOL_OUT)
    # Give backward the upstream gradient in the structure of the result.
    it = iter(upstream)
    grad_outputs = [[next(it) for _ in r] if isinstance(r, list) else next(it)
                    for r in result] if isinstance(result, list) else next(it)
    ours.zero_grads()
    grads = ours.backward(grad_outputs)
    if initial_state is not None:
        grads, d_states = grads
        for ours_g, keras_g in zip(flatten(d_states), k_dstates, strict=True):
            np.testing.assert_allclose(ours_g, keras_g, rtol=RTOL_GRAD, atol=ATOL_GRAD)
    np.testing.assert_allclose(grads, k_dx, rtol=RTOL_GRAD, atol=ATOL_GRAD)
    for var, keras_g in zip(ours.trainable_variables, k_dweights, strict=True):
        np.testing.assert_allclose(var.grad, keras_g, rtol=RTOL_GRAD, atol=ATOL_GRAD,
                                   err_msg=var.name)


def rnn_twins(rng, units=(H,), **kwargs):
    """pylstm's and Keras's RNN over one LSTMCell (or a stack), same random weights."""
    if len(units) == 1:
        ours, theirs = RNN(LSTMCell(units[0]), **kwargs), \
            keras.layers.RNN(keras.layers.LSTMCell(units[0]), **kwargs)
    else:
        ours = RNN([LSTMCell(u) for u in units], **kwargs)
        theirs = keras.layers.RNN([keras.layers.LSTMCell(u) for u in units], **kwargs)
    ours.build((B, T, D))
    theirs.build((B, T, D))
    ours.set_weights(random_weights(rng, ours))
    ku.copy_weights(ours, theirs)
    return ours, theirs


def inputs(rng, dtype="float32"):
    return (rng.normal(size=(B, T, D)) * 0.5).astype(dtype)


def states(rng, units=H, dtype="float32"):
    return [(rng.normal(size=(B, units)) * 0.5).astype(dtype) for _ in range(2)]


# RNN(LSTMCell) against Keras ------------------------------------------------------------------


@pytest.mark.parametrize("return_sequences,return_state,go_backwards",
                         list(itertools.product([False, True], repeat=3)))
def test_rnn_parity(rng, return_sequences, return_state, go_backwards):
    ours, theirs = rnn_twins(rng, return_sequences=return_sequences, return_state=return_state,
                             go_backwards=go_backwards)
    assert_rnn_parity(rng, ours, theirs, inputs(rng))


@pytest.mark.parametrize("mask_name,zero_output_for_mask,go_backwards",
                         [(m, z, g) for m in MASKS for z in (False, True) for g in (False, True)])
def test_rnn_parity_masks(rng, mask_name, zero_output_for_mask, go_backwards):
    ours, theirs = rnn_twins(rng, return_sequences=True, return_state=True,
                             zero_output_for_mask=zero_output_for_mask, go_backwards=go_backwards)
    assert_rnn_parity(rng, ours, theirs, inputs(rng), mask=MASKS[mask_name])


@pytest.mark.parametrize("return_sequences", [False, True])
def test_rnn_parity_initial_state(rng, return_sequences):
    ours, theirs = rnn_twins(rng, return_sequences=return_sequences, return_state=True)
    assert_rnn_parity(rng, ours, theirs, inputs(rng), mask=MASKS["holes"],
                      initial_state=states(rng))


@pytest.mark.parametrize("go_backwards,mask_name", [(False, None), (True, "left_padding"),
                                                    (False, "holes")])
def test_stacked_cells_parity(rng, go_backwards, mask_name):
    ours, theirs = rnn_twins(rng, units=(H, H2), return_sequences=True, return_state=True,
                             go_backwards=go_backwards)
    assert isinstance(ours.cell, StackedRNNCells)
    mask = None if mask_name is None else MASKS[mask_name]
    assert_rnn_parity(rng, ours, theirs, inputs(rng), mask=mask,
                      initial_state=[states(rng, H), states(rng, H2)])


def test_stacked_cells_shapes_and_weights(rng):
    ours, theirs = rnn_twins(rng, units=(H, H2), return_state=True)
    assert [w.shape for w in ours.get_weights()] == [
        (D, 4 * H), (H, 4 * H), (4 * H,), (H, 4 * H2), (H2, 4 * H2), (4 * H2,)]
    result = ours(inputs(rng))
    shapes = [(B, H2), [(B, H), (B, H)], [(B, H2), (B, H2)]]
    assert ours.compute_output_shape((B, T, D)) == shapes
    assert [result[0].shape, [s.shape for s in result[1]], [s.shape for s in result[2]]] == shapes


def test_rnn_weights_and_penalties_match_keras(rng):
    ours = RNN(LSTMCell(H, kernel_regularizer="l2", bias_regularizer="l1", name="c"))
    theirs = keras.layers.RNN(keras.layers.LSTMCell(H, kernel_regularizer="l2",
                                                    bias_regularizer="l1", name="c"))
    ours.build((B, T, D))
    theirs.build((B, T, D))
    ours.set_weights(random_weights(rng, ours))
    ku.copy_weights(ours, theirs)
    assert [v.name for v in ours.weights] == ["c/kernel", "c/recurrent_kernel", "c/bias"]
    assert [w.path.split("/", 1)[1] for w in theirs.weights] == [v.name for v in ours.weights]
    np.testing.assert_allclose(sorted(ours.losses), sorted(float(p) for p in theirs.losses),
                               rtol=1e-6)


def test_rnn_trains_in_a_sequential_model_like_keras(rng):
    ours = Sequential([Input((T, D)), RNN(LSTMCell(H)), Dense(1)])
    theirs = keras.Sequential([keras.Input((T, D)), keras.layers.RNN(keras.layers.LSTMCell(H)),
                               keras.layers.Dense(1)])
    ours.set_weights(random_weights(rng, ours))
    theirs.set_weights(ours.get_weights())
    x = rng.normal(size=(8, T, D)).astype("float32")
    y = np.tanh(x.sum(axis=(1, 2)))[:, None]
    ours.compile(optimizer="sgd", loss="mse")
    history = ours.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    keras_losses = ku.keras_fit(theirs, x, y, keras.optimizers.SGD(0.01), "mse", epochs=2,
                                batch_size=4)
    np.testing.assert_allclose(history.history["loss"], keras_losses, rtol=1e-4)
    for ours_w, keras_w in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(ours_w, keras_w, rtol=1e-3, atol=1e-6)


# The cell stepped by hand ------------------------------------------------------------------------


def test_cell_step_matches_keras(rng):
    ours = LSTMCell(H)
    theirs = keras.layers.LSTMCell(H)
    ours.build((B, D))
    theirs.build((B, D))
    ours.set_weights(random_weights(rng, ours))
    ku.copy_weights(ours, theirs)
    x = inputs(rng)[:, 0]
    h0, c0 = states(rng)
    h, (h_state, c) = ours(x, [h0, c0], training=True)
    assert h is h_state
    upstream = [rng.normal(size=(B, H)).astype("float32") for _ in range(3)]
    tx, th, tc = (tf.constant(a) for a in (x, h0, c0))
    with tf.GradientTape() as tape:
        tape.watch([tx, th, tc])
        k_h, (k_hs, k_c) = theirs(tx, [th, tc])
        loss = tf.add_n([tf.reduce_sum(o * g) for o, g in zip((k_h, k_hs, k_c), upstream)])
    k_grads = tape.gradient(loss, [tx, th, tc] + list(theirs.trainable_weights))
    np.testing.assert_allclose(h, k_h, rtol=RTOL_OUT, atol=ATOL_OUT)
    np.testing.assert_allclose(c, k_c, rtol=RTOL_OUT, atol=ATOL_OUT)
    ours.zero_grads()
    dx, (dh0, dc0) = ours.backward((upstream[0], [upstream[1], upstream[2]]))
    for ours_g, keras_g in zip([dx, dh0, dc0] + [v.grad for v in ours.weights], k_grads,
                               strict=True):
        np.testing.assert_allclose(ours_g, keras_g, rtol=RTOL_GRAD, atol=ATOL_GRAD)


# Stateful -------------------------------------------------------------------------------------


@pytest.mark.parametrize("units", [(H,), (H, H2)])
def test_stateful_matches_keras(rng, units):
    ours, theirs = rnn_twins(rng, units=units, return_sequences=True, stateful=True)
    for _ in range(3):
        x = inputs(rng)
        np.testing.assert_allclose(ours(x), np.asarray(theirs(x)), rtol=RTOL_OUT, atol=ATOL_OUT)
    if len(units) == 1:  # Keras 3.15's reset_state fails on a stack's nested states
        ours.reset_state()
        theirs.reset_state()
        x = inputs(rng)
        np.testing.assert_allclose(ours(x), np.asarray(theirs(x)), rtol=RTOL_OUT, atol=ATOL_OUT)


# Config and doctests ---------------------------------------------------------------------------


def test_cell_config_matches_keras_keys():
    ours = LSTMCell(H).get_config()
    theirs = keras.layers.LSTMCell(H).get_config()
    assert set(theirs) - set(ours) == set()
    assert LSTMCell.from_config(ours).get_config() == ours
