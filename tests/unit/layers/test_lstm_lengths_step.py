"""The Keras-style LSTM layer's `lengths` (only real steps computed) and `step` (streaming)."""

import numpy as np
import pytest

from pylstm.layers import LSTM

B, T, D, H = 3, 6, 5, 4
LENGTHS = np.array([6, 2, 4])


def inputs(seed=0):
    return np.random.default_rng(seed).normal(size=(B, T, D)).astype("float32")


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_lengths_equal_a_right_padding_mask(go_backwards, return_sequences):
    """Lengths are a right-padding mask that skips the work: zero outputs on padding, and the
    last output is each sample's last real one."""
    x = inputs()
    mask = np.arange(T)[None] < LENGTHS[:, None]
    layer = LSTM(H, return_sequences=return_sequences, return_state=True,
                 go_backwards=go_backwards, zero_output_for_mask=return_sequences, seed=0)
    by_lengths = layer(x, training=True, lengths=LENGTHS)
    upstream = [np.random.default_rng(1).normal(size=o.shape).astype("float32")
                for o in by_lengths]
    dx_lengths = layer.backward(upstream)
    grads_lengths = [v.grad.copy() for v in layer.weights]
    layer.zero_grads()
    by_mask = layer(x, training=True, mask=mask)
    dx_mask = layer.backward(upstream)
    for a, b in zip(by_lengths, by_mask):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dx_lengths, dx_mask, rtol=1e-5, atol=1e-6)
    for a, v in zip(grads_lengths, layer.weights):
        np.testing.assert_allclose(a, v.grad, rtol=1e-5, atol=1e-6)


def test_lengths_errors():
    layer = LSTM(H)
    with pytest.raises(ValueError, match="lengths"):
        layer(inputs(), lengths=np.array([7, 1, 1]))
    with pytest.raises(ValueError, match="lengths"):
        layer(inputs(), lengths=np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="lengths"):
        layer(inputs(), lengths=LENGTHS, mask=np.ones((B, T), bool))


@pytest.mark.parametrize("proj_size", [None, 2])
def test_steps_equal_the_whole_sequence(proj_size):
    x = inputs(2)
    layer = LSTM(H, proj_size=proj_size, return_sequences=True, return_state=True, seed=3)
    y, h, c = layer(x)
    state = layer.initial_state(B)
    out = np.empty((B, proj_size or H), dtype="float32")
    steps = []
    for t in range(T):
        y_t, state = layer.step(x[:, t], state, out=out)
        assert y_t is out
        steps.append(y_t.copy())
    np.testing.assert_allclose(np.stack(steps, axis=1), y, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(state.h, h, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(state.c, c, rtol=1e-6, atol=1e-7)


def test_step_sees_weight_updates_and_rejects_go_backwards():
    layer = LSTM(H, seed=0)
    x_t = np.ones((1, D), dtype="float32")
    before, _ = layer.step(x_t)
    layer.set_weights([w * 2 for w in layer.get_weights()])
    after, _ = layer.step(x_t)
    assert not np.allclose(before, after)
    with pytest.raises(ValueError, match="go_backwards"):
        LSTM(H, go_backwards=True).step(x_t)
    with pytest.raises(ValueError):
        layer.step(np.ones((1, D + 1), dtype="float32"))
