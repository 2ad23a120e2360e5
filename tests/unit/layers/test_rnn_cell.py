"""`pylstm.layers.LSTMCell`, `StackedRNNCells` and `RNN` without an oracle: a cell stepped by
hand equals the LSTM layer, forwards and (per-step backward) backwards; float64 central
differences; dropout (only in training, one mask per sequence); stateful use; the doctests and
bad arguments. Parity with Keras 3: parity/keras/test_rnn_cell.py."""

import doctest
import json

import numpy as np
import pytest
from pylstm_tests import MASKS

import pylstm.layers.rnn as rnn_module
from pylstm.layers import LSTM, Dense, deserialize, serialize
from pylstm.layers.rnn import RNN, LSTMCell, StackedRNNCells


B, T, D, H, H2 = 3, 5, 4, 6, 5


def random_weights(rng, layer, dtype="float32"):
    return [(rng.normal(size=w.shape) * 0.4).astype(dtype) for w in layer.get_weights()]


def flatten(nested):
    if isinstance(nested, (list, tuple)):
        return [leaf for item in nested for leaf in flatten(item)]
    return [nested]


def inputs(rng, dtype="float32"):
    return (rng.normal(size=(B, T, D)) * 0.5).astype(dtype)


def states(rng, units=H, dtype="float32"):
    return [(rng.normal(size=(B, units)) * 0.5).astype(dtype) for _ in range(2)]


# RNN(LSTMCell) against Keras ------------------------------------------------------------------


def test_rnn_of_seeded_cell_is_the_lstm_layer(rng):
    x = inputs(rng)
    lstm = LSTM(H, seed=7, return_sequences=True, return_state=True)
    rnn = RNN(LSTMCell(H, seed=7), return_sequences=True, return_state=True)
    for ours, want in zip(rnn(x), lstm(x), strict=True):
        np.testing.assert_array_equal(ours, want)
    for ours, want in zip(rnn.get_weights(), lstm.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, want)


# The cell stepped by hand ------------------------------------------------------------------------


def test_stepping_the_cell_is_the_lstm_layer_forwards_and_backwards(rng):
    """T calls of the cell equal the LSTM layer on the same weights; backward on the steps in
    reverse order (accumulating the weight gradients) equals the whole-sequence backward."""
    x, (h0, c0) = inputs(rng, "float64"), states(rng, dtype="float64")
    lstm = LSTM(H, return_sequences=True, return_state=True, dtype="float64")
    lstm.build(x.shape)
    lstm.set_weights(random_weights(rng, lstm, "float64"))
    cell = LSTMCell(H, dtype="float64")
    cell.build((B, D))
    cell.set_weights(lstm.get_weights())

    y, h_n, c_n = lstm(x, training=True, initial_state=[h0, c0])
    cell_states, ys = [h0, c0], []
    for t in range(T):
        out, cell_states = cell(x[:, t], cell_states, training=True)
        ys.append(out)
    np.testing.assert_allclose(np.stack(ys, axis=1), y, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cell_states[0], h_n, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cell_states[1], c_n, rtol=1e-12, atol=1e-14)

    dy, dh_n, dc_n = (rng.normal(size=a.shape) for a in (y, h_n, c_n))
    lstm.zero_grads()
    dx, (dh0, dc0) = lstm.backward([dy, dh_n, dc_n])
    cell.zero_grads()
    d_states, dxs = [dh_n, dc_n], [None] * T
    for t in reversed(range(T)):
        dxs[t], d_states = cell.backward((dy[:, t], d_states))
    np.testing.assert_allclose(np.stack(dxs, axis=1), dx, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(d_states[0], dh0, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(d_states[1], dc0, rtol=1e-10, atol=1e-12)
    for ours, want in zip(cell.weights, lstm.weights, strict=True):
        np.testing.assert_allclose(ours.grad, want.grad, rtol=1e-10, atol=1e-12)
    with pytest.raises(RuntimeError, match="one backward per training step"):
        cell.backward((dy[:, 0], None))


def test_stepping_stacked_cells_is_the_stacked_rnn(rng):
    x = inputs(rng, "float64")
    rnn = RNN([LSTMCell(H, dtype="float64"), LSTMCell(H2, dtype="float64")],
              return_sequences=True, return_state=True)
    rnn.build(x.shape)
    rnn.set_weights(random_weights(rng, rnn, "float64"))
    y, pair_1, pair_2 = rnn(x, training=True)
    stack = rnn.cell
    cell_states, ys = stack.get_initial_state(B), []
    for t in range(T):
        out, cell_states = stack(x[:, t], cell_states, training=True)
        ys.append(out)
    np.testing.assert_allclose(np.stack(ys, axis=1), y, rtol=1e-12, atol=1e-14)
    for ours, want in zip(flatten(cell_states), flatten([pair_1, pair_2]), strict=True):
        np.testing.assert_allclose(ours, want, rtol=1e-12, atol=1e-14)

    dy = rng.normal(size=y.shape)
    rnn.zero_grads()
    dx = rnn.backward([dy, None, None])
    want = [v.grad.copy() for v in rnn.weights]
    rnn.zero_grads()
    d_states, dxs = None, [None] * T
    for t in reversed(range(T)):
        dxs[t], d_states = stack.backward((dy[:, t], d_states))
    np.testing.assert_allclose(np.stack(dxs, axis=1), dx, rtol=1e-10, atol=1e-12)
    for var, grad in zip(rnn.weights, want, strict=True):
        np.testing.assert_allclose(var.grad, grad, rtol=1e-10, atol=1e-12)


def test_rnn_backward_central_differences(numeric_grad):
    rng = np.random.default_rng(2)
    rnn = RNN([LSTMCell(3, dtype="float64"), LSTMCell(2, dtype="float64")], go_backwards=True)
    x = rng.normal(size=(2, 4, 3))
    mask = np.array([[1, 1, 0, 1], [0, 1, 1, 1]], dtype=bool)
    rnn.build(x.shape)
    upstream = rng.normal(size=(2, 2))

    def loss():
        return float(np.sum(rnn(x, mask=mask) * upstream))

    rnn(x, training=True, mask=mask)
    rnn.zero_grads()
    np.testing.assert_allclose(rnn.backward(upstream), numeric_grad(loss, x), rtol=1e-6,
                               atol=1e-9)
    for var in rnn.weights:
        np.testing.assert_allclose(var.grad, numeric_grad(loss, var.value), rtol=1e-6,
                                   atol=1e-9, err_msg=var.name)


# Dropout --------------------------------------------------------------------------------------


def test_dropout_only_in_training_and_one_mask_per_sequence(rng):
    x = inputs(rng)
    plain = RNN(LSTMCell(H, seed=3), return_sequences=True)
    dropped = RNN(LSTMCell(H, seed=3, dropout=0.5, recurrent_dropout=0.3),
                  return_sequences=True)
    np.testing.assert_array_equal(dropped(x), plain(x))  # inference: no dropout
    y = dropped(x, training=True)
    assert np.abs(y - plain(x)).max() > 1e-3
    # One input mask per sequence: a dropped feature of a sample is dropped at every step.
    input_only = RNN(LSTMCell(H, seed=3, dropout=0.5), return_sequences=True)
    input_only(x, training=True)
    dx = input_only.backward(np.ones((B, T, H), "float32"))
    dead = np.all(dx == 0, axis=1)  # (B, D): features whose gradient is zero at every step
    assert dead.any() and not dead.all()
    np.testing.assert_array_equal(np.any(dx == 0, axis=1), dead)


def test_cell_reuses_its_dropout_masks_until_reset():
    cell = LSTMCell(H, dropout=0.5, recurrent_dropout=0.5, seed=1)
    x = np.ones((B, D), "float32")
    cell(x, training=True)
    mask, rec_mask = cell.get_dropout_mask(x), cell.get_recurrent_dropout_mask(x)
    # With recurrent dropout, one mask per gate (Keras's implementation 1).
    assert mask.shape == (4, B, D) and rec_mask.shape == (4, B, H)
    assert set(np.unique(mask)) == {0.0, 2.0}
    cell(x, training=True)
    assert cell.get_dropout_mask(x) is mask
    assert cell.get_recurrent_dropout_mask(x) is rec_mask
    cell.reset_dropout_mask()
    cell.reset_recurrent_dropout_mask()
    assert cell.get_dropout_mask(x) is not mask
    assert LSTMCell(H).get_dropout_mask(x) is None
    assert LSTMCell(H, dropout=0.5).get_dropout_mask(x).shape == (B, D)


def test_cell_steps_with_dropout_central_differences(numeric_grad):
    """Per-step backward through the cell's (reused) dropout masks, in float64."""
    rng = np.random.default_rng(4)
    cell = LSTMCell(3, dropout=0.4, recurrent_dropout=0.3, seed=2, dtype="float64")
    x = rng.normal(size=(2, 4, 3))
    cell.build((2, 3))
    upstream = rng.normal(size=(2, 4, 3))

    def run():
        states, outs = None, []
        for t in range(x.shape[1]):
            out, states = cell(x[:, t], states, training=True)
            outs.append(out)
        return float(np.sum(np.stack(outs, axis=1) * upstream))

    run()
    assert cell.get_dropout_mask(x[:, 0]).min() == 0  # some inputs are dropped
    cell.zero_grads()
    d_states, dx = None, np.empty_like(x)
    for t in reversed(range(x.shape[1])):
        dx[:, t], d_states = cell.backward((upstream[:, t], d_states))
    weight_grads = [v.grad.copy() for v in cell.weights]
    np.testing.assert_allclose(dx, numeric_grad(run, x), rtol=1e-6, atol=1e-9)
    for var, grad in zip(cell.weights, weight_grads, strict=True):
        np.testing.assert_allclose(grad, numeric_grad(run, var.value), rtol=1e-6, atol=1e-9,
                                   err_msg=var.name)


# Stateful -------------------------------------------------------------------------------------


def test_stateful_carries_states_across_batches(rng):
    x = (rng.normal(size=(B, 2 * T, D)) * 0.5).astype("float32")
    whole = RNN(LSTMCell(H, seed=0), return_sequences=True)
    stateful = RNN(LSTMCell(H, seed=0), return_sequences=True, stateful=True)
    y = np.concatenate([stateful(x[:, :T]), stateful(x[:, T:])], axis=1)
    np.testing.assert_allclose(y, whole(x), rtol=1e-6, atol=1e-7)
    stateful.reset_state()
    np.testing.assert_array_equal(stateful(x[:, :T]), whole(x[:, :T]))
    # Per-sample reset: sample 1 starts over, the others continue.
    stateful.reset_state(np.array([False, True, False]))
    y2 = stateful(x[:, T:])
    np.testing.assert_allclose(y2[[0, 2]], whole(x)[[0, 2], T:], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(y2[1], whole(x[:, T:])[1])
    with pytest.raises(ValueError, match="keeps states for batches of 3 samples, received .* 2"):
        stateful(x[:2, :T])
    with pytest.raises(ValueError, match=r"`mask` of reset_state must be a \(3,\) boolean"):
        stateful.reset_state(np.array([1, 0, 1]))


# Config and doctests ---------------------------------------------------------------------------


def test_doctests():
    assert doctest.testmod(rnn_module).failed == 0


# Bad input ------------------------------------------------------------------------------------


def test_rnn_rejects_other_cells():
    with pytest.raises(TypeError, match="`cell` must be an LSTMCell.*received 'lstm'"):
        RNN("lstm")
    with pytest.raises(TypeError, match="`cell` must be an LSTMCell"):
        RNN(Dense(3))
    with pytest.raises(TypeError, match="`cells` must be a non-empty list of LSTMCell"):
        RNN([LSTMCell(3), Dense(3)])
    with pytest.raises(TypeError, match="`cells` must be a non-empty list of LSTMCell"):
        RNN([])


@pytest.mark.parametrize("kwargs,match", [
    ({"units": 0}, "`units` must be a positive int, received 0"),
    ({"units": 2.5}, "`units` must be a positive int"),
    ({"units": 3, "dropout": 1.0}, r"`dropout` must be a float in \[0, 1\), received 1.0"),
    ({"units": 3, "recurrent_dropout": -0.1}, "`recurrent_dropout` must be a float"),
    ({"units": 3, "activation": "gelu_x"}, "`activation` must be one of"),
    ({"units": 3, "seed": "0"}, "`seed` must be an int or None"),
])
def test_cell_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LSTMCell(**kwargs)


def test_cell_rejects_bad_calls():
    cell = LSTMCell(H)
    x = np.zeros((B, D), "float32")
    with pytest.raises(ValueError, match=r"must be 2-D \(batch, features\), received .*\(3, 5, 4"):
        cell(np.zeros((B, T, D), "float32"))
    cell(x)
    with pytest.raises(ValueError, match=r"must have shape \(batch >= 1, 4\), received .*\(3, 2\)"):
        cell(np.zeros((B, 2), "float32"))
    with pytest.raises(ValueError, match=r"`states` must be a list \[h, c\] of two \(3, 6\)"):
        cell(x, [np.zeros((B, H), "float32")])
    with pytest.raises(ValueError, match=r"`states\[1\]` must have shape \(3, 6\)"):
        cell(x, [np.zeros((B, H), "float32"), np.zeros((B, 2), "float32")])
    with pytest.raises(TypeError, match="`inputs` must be a real floating-point array"):
        cell(np.zeros((B, D), "int64"))
    with pytest.raises(RuntimeError, match="training=True before backward"):
        cell.backward((x, None))
    cell(x, training=True)
    with pytest.raises(ValueError, match=r"`grad_outputs` must be a pair \(d_output, d_states\)"):
        cell.backward(np.zeros((B, H), "float32"))


def test_rnn_rejects_bad_calls():
    rnn = RNN(LSTMCell(H), return_state=True)
    x = np.zeros((B, T, D), "float32")
    with pytest.raises(ValueError, match=r"must be 3-D \(batch, timesteps, features\)"):
        rnn(np.zeros((B, D), "float32"))
    rnn(x)
    with pytest.raises(ValueError, match=r"must have 4 features .* received shape \(3, 5, 2\)"):
        rnn(np.zeros((B, T, 2), "float32"))
    bad = x.copy()
    bad[0, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"`inputs` contains 1 NaN"):
        rnn(bad)
    with pytest.raises(ValueError, match=r"`initial_state` must be a list \[h, c\]"):
        rnn(x, initial_state=np.zeros((B, H), "float32"))
    with pytest.raises(ValueError, match=r"`mask` must have shape \(3, 5\)"):
        rnn(x, mask=np.ones((B, T + 1), bool))
    with pytest.raises(RuntimeError, match="training=True before backward"):
        RNN(LSTMCell(H)).backward(np.zeros((B, H), "float32"))
    rnn(x, training=True)
    with pytest.raises(ValueError, match="`grad_outputs` must be a list of 3 gradients"):
        rnn.backward(np.zeros((B, H), "float32"))
    stacked = RNN([LSTMCell(H), LSTMCell(H2)])
    with pytest.raises(ValueError, match=r"`initial_state` must be a list of 2 \[h_0, c_0\] pairs"):
        stacked(x, initial_state=[np.zeros((B, H), "float32")] * 3)
    with pytest.raises(ValueError, match=r"`initial_state\[0\]` must be a list \[h, c\] of two"):
        stacked(x, initial_state=states(np.random.default_rng(0)))


def test_rnn_rejects_a_dtype_other_than_the_cells():
    with pytest.raises(ValueError, match="`dtype` of layer 'r' is 'float64' but its cell 'c' has "
                                         "dtype 'float32'"):
        RNN(LSTMCell(H, name="c"), dtype="float64", name="r")
    with pytest.raises(ValueError, match="has dtype 'float64'"):
        StackedRNNCells([LSTMCell(H), LSTMCell(H, dtype="float64")])
    assert RNN(LSTMCell(H, dtype="float64")).dtype == "float64"


def test_compute_mask():
    mask = MASKS["holes"]
    x = np.zeros((B, T, D), "float32")
    np.testing.assert_array_equal(RNN(LSTMCell(H), return_sequences=True).compute_mask(x, mask),
                                  mask)
    assert RNN(LSTMCell(H)).compute_mask(x, mask) is None
    assert RNN(LSTMCell(H), return_state=True).compute_mask(x, mask) == [None] * 3
    assert RNN([LSTMCell(H), LSTMCell(H)], return_state=True).compute_mask(x, mask) == \
        [None] * 3


@pytest.mark.parametrize("cells", ["one", "stacked"])
def test_rnn_config_round_trip(rng, cells):
    cell_args = dict(activation="relu", unit_forget_bias=False, kernel_regularizer="l2",
                     recurrent_constraint="non_neg", dropout=0.25, seed=4)
    cell = LSTMCell(H, **cell_args) if cells == "one" else \
        [LSTMCell(H, **cell_args), LSTMCell(H2)]
    rnn = RNN(cell, return_sequences=True, go_backwards=True, zero_output_for_mask=True,
              unroll=True, name="rnn_a")
    x = inputs(rng)
    rnn.build(x.shape)
    rnn.set_weights(random_weights(rng, rnn))
    config = json.loads(json.dumps(serialize(rnn)))
    want = "LSTMCell" if cells == "one" else "StackedRNNCells"
    assert config["config"]["cell"]["class_name"] == want
    clone = deserialize(config)
    assert json.loads(json.dumps(clone.get_config())) == config["config"]
    clone.build(x.shape)
    clone.set_weights(rnn.get_weights())
    mask = MASKS["right_padding"]
    np.testing.assert_array_equal(clone(x, mask=mask), rnn(x, mask=mask))
