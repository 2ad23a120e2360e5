"""Variable-length sequences in pylstm.ops: `lengths` and the packed core against the masked
dense core, the NumPy reference and central differences; bad lengths and packed input.
PyTorch's packed nn.LSTM: parity/torch/test_lengths.py."""

import numpy as np
import pytest

from pylstm import _reference, ops
from pylstm.nn.utils.rnn import pack_padded_sequence


def _weights(rng, D, H, P=None, dtype=np.float64):
    P = P or H
    w = dict(kernel=rng.normal(size=(D, 4 * H)) * 0.5, recurrent_kernel=rng.normal(size=(P, 4 * H)) * 0.5,
             bias=rng.normal(size=4 * H) * 0.5)
    if P != H:
        w["projection"] = rng.normal(size=(H, P)) * 0.5
    return {k: v.astype(dtype) for k, v in w.items()}


@pytest.mark.parametrize("proj", [None, 3])
def test_right_padding_matches_masked_core(proj):
    rng = np.random.default_rng(0)
    B, T, D, H = 5, 6, 3, 4
    w = _weights(rng, D, H, proj)
    P = proj or H
    x = rng.normal(size=(B, T, D))
    h0, c0 = rng.normal(size=(B, P)), rng.normal(size=(B, H))
    lengths = np.array([3, 6, 1, 6, 2])
    mask = np.arange(T)[None] < lengths[:, None]
    got = ops.lstm_forward(x, h0=h0, c0=c0, lengths=lengths, training=True, **w)
    want = ops.lstm_forward(x, h0=h0, c0=c0, mask=mask, zero_output_for_mask=True, training=True,
                            **w)
    for a, b in zip(got[:3], want[:3]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    dy, dh, dc = rng.normal(size=(B, T, P)), rng.normal(size=(B, P)), rng.normal(size=(B, H))
    g1 = ops.lstm_backward(got[3], dy, dh, dc)
    g2 = ops.lstm_backward(want[3], dy, dh, dc)
    for name in g2:
        if g2[name] is not None:
            np.testing.assert_allclose(g1[name], g2[name], rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_each_sample_matches_reference_on_its_real_steps(reverse, side, return_sequences):
    rng = np.random.default_rng(1)
    B, T, D, H = 4, 7, 3, 5
    w = _weights(rng, D, H)
    x = rng.normal(size=(B, T, D))
    h0, c0 = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    lengths = np.array([2, 7, 4, 4])
    y, h_n, c_n, cache = ops.lstm_forward(x, h0=h0, c0=c0, lengths=lengths, reverse=reverse,
                                          padding_side=side, training=True,
                                          return_sequences=return_sequences, **w)
    dy = rng.normal(size=y.shape)
    dh, dc = rng.normal(size=(B, H)), rng.normal(size=(B, H))
    grads = ops.lstm_backward(cache, dy, dh, dc)
    dkernel = np.zeros_like(w["kernel"])
    for b, n in enumerate(lengths):
        real = slice(0, n) if side == "right" else slice(T - n, T)
        ry, rh, rc, rcache = _reference.lstm_forward(
            x[b:b + 1, real], w["kernel"], w["recurrent_kernel"], w["bias"], h0[b:b + 1],
            c0[b:b + 1], reverse=reverse, training=True, return_sequences=return_sequences)
        np.testing.assert_allclose(h_n[b], rh[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(c_n[b], rc[0], rtol=1e-12, atol=1e-12)
        if return_sequences:
            np.testing.assert_allclose(y[b, real], ry[0], rtol=1e-12, atol=1e-12)
            assert not np.any(np.delete(y[b], np.arange(T)[real], axis=0))
            rdy = dy[b:b + 1, real]
        else:
            np.testing.assert_allclose(y[b], ry[0], rtol=1e-12, atol=1e-12)
            rdy = dy[b:b + 1]
        rg = _reference.lstm_backward(rcache, rdy, dh[b:b + 1], dc[b:b + 1])
        np.testing.assert_allclose(grads["x"][b, real], rg["x"][0], rtol=1e-10, atol=1e-12)
        assert not np.any(np.delete(grads["x"][b], np.arange(T)[real], axis=0))
        np.testing.assert_allclose(grads["h0"][b], rg["h0"][0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(grads["c0"][b], rg["c0"][0], rtol=1e-10, atol=1e-12)
        dkernel += rg["kernel"]
    np.testing.assert_allclose(grads["kernel"], dkernel, rtol=1e-10, atol=1e-12)


def test_full_lengths_equal_dense():
    rng = np.random.default_rng(2)
    w = _weights(rng, 3, 4, dtype=np.float32)
    x = rng.normal(size=(3, 5, 3)).astype(np.float32)
    a = ops.lstm_forward(x, lengths=[5, 5, 5], **w)
    b = ops.lstm_forward(x, **w)
    for u, v in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("reverse", [False, True])
def test_packed_backward_central_differences(reverse):
    rng = np.random.default_rng(4)
    D, H, P = 2, 3, 2
    w = _weights(rng, D, H, P)
    lengths = np.array([4, 3, 1])
    x = rng.normal(size=(lengths.max(), 3, D))
    packed = pack_padded_sequence(x, lengths)
    data, bs = packed.data, packed.batch_sizes
    h0, c0 = rng.normal(size=(3, P)), rng.normal(size=(3, H))
    dy, dh, dc = rng.normal(size=(len(data), P)), rng.normal(size=(3, P)), rng.normal(size=(3, H))
    args = dict(data=data, h0=h0, c0=c0, **w)

    def loss(a):
        y, h_n, c_n, _ = ops.lstm_forward_packed(a["data"], bs, a["kernel"], a["recurrent_kernel"],
                                                 a["bias"], a["h0"], a["c0"],
                                                 projection=a["projection"], reverse=reverse)
        return (y * dy).sum() + (h_n * dh).sum() + (c_n * dc).sum()

    *_, cache = ops.lstm_forward_packed(data, bs, w["kernel"], w["recurrent_kernel"], w["bias"],
                                        h0, c0, projection=w["projection"], reverse=reverse,
                                        training=True)
    grads = ops.lstm_backward(cache, dy, dh, dc)
    grads["data"] = grads.pop("x")
    eps = 1e-6
    for name, value in args.items():
        num = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            up, down = value.copy(), value.copy()
            up[idx] += eps
            down[idx] -= eps
            num[idx] = (loss({**args, name: up}) - loss({**args, name: down})) / (2 * eps)
        np.testing.assert_allclose(grads[name], num, rtol=1e-6, atol=1e-8, err_msg=name)


def test_bad_lengths():
    rng = np.random.default_rng(5)
    w = _weights(rng, 3, 4, dtype=np.float32)
    x = rng.normal(size=(2, 5, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"`lengths` must be <= 5.*received 6"):
        ops.lstm_forward(x, lengths=[6, 2], **w)
    with pytest.raises(ValueError, match=r"`lengths` must be >= 1.*received 0"):
        ops.lstm_forward(x, lengths=[0, 2], **w)
    with pytest.raises(ValueError, match=r"`lengths` must be >= 1.*received -1"):
        ops.lstm_forward(x, lengths=[3, -1], **w)
    with pytest.raises(ValueError, match=r"`lengths` must have shape \(2,\)"):
        ops.lstm_forward(x, lengths=[3, 2, 1], **w)
    with pytest.raises(TypeError, match=r"`lengths` must be an integer array.*float64"):
        ops.lstm_forward(x, lengths=[3.0, 2.0], **w)
    with pytest.raises(ValueError, match=r"`lengths` and `mask` cannot be used together"):
        ops.lstm_forward(x, lengths=[3, 2], mask=np.ones((2, 5), bool), **w)
    with pytest.raises(ValueError, match=r"`padding_side` must be 'right' or 'left'"):
        ops.lstm_forward(x, lengths=[3, 2], padding_side="middle", **w)
    with pytest.raises(ValueError, match=r"Python callable"):
        ops.lstm_forward(x, lengths=[3, 2], activation=lambda z: np.tanh(z), **w)


def test_bad_packed_input():
    rng = np.random.default_rng(6)
    w = _weights(rng, 3, 4, dtype=np.float32)
    data = rng.normal(size=(5, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"`batch_sizes` must be non-increasing.*\[1, 2, 2\]"):
        ops.lstm_forward_packed(data, [1, 2, 2], **w)
    with pytest.raises(ValueError, match=r"`batch_sizes` must be >= 1"):
        ops.lstm_forward_packed(data, [5, 0], **w)
    with pytest.raises(TypeError, match=r"`batch_sizes` must be an integer array"):
        ops.lstm_forward_packed(data, [2.0, 2.0, 1.0], **w)
    with pytest.raises(ValueError, match=r"`data` must have shape \(4, 3\)"):
        ops.lstm_forward_packed(data, [2, 2], **w)
    with pytest.raises(ValueError, match=r"`h0` must have shape \(2, 4\)|`h0`.*\(2, 4\)"):
        ops.lstm_forward_packed(data, [2, 2, 1], h0=np.zeros((3, 4), np.float32), **w)
    *_, cache = ops.lstm_forward_packed(data, [2, 2, 1], training=True, **w)
    with pytest.raises(ValueError, match=r"`dy`"):
        ops.lstm_backward(cache, np.zeros((4, 4), np.float32))
