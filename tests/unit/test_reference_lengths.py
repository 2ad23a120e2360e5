"""`lengths` / `padding_side` in the NumPy reference (`pylstm._reference`): the packed core of
`pylstm.ops` against it (outputs, final states and every gradient), and the reference against
its own masked path (right padding is Keras's mask with `zero_output_for_mask`)."""

import numpy as np
import pytest

from pylstm import _reference, ops

B, T, D, H = 5, 6, 3, 4
LENGTHS = np.array([3, 6, 1, 6, 2])


def _problem(seed, P=None, dtype=np.float64):
    """Weights (ops keyword arguments), x `(B, T, D)`, h0 `(B, P)`, c0 `(B, H)`."""
    rng = np.random.default_rng(seed)
    P = P or H
    w = dict(kernel=rng.normal(size=(D, 4 * H)) * 0.5,
             recurrent_kernel=rng.normal(size=(P, 4 * H)) * 0.5,
             bias=rng.normal(size=4 * H) * 0.5)
    if P != H:
        w["projection"] = rng.normal(size=(H, P)) * 0.5
    w = {k: v.astype(dtype) for k, v in w.items()}
    x = rng.normal(size=(B, T, D)).astype(dtype)
    return w, x, rng.normal(size=(B, P)).astype(dtype), rng.normal(size=(B, H)).astype(dtype)


def _assert_same(got, want, rtol, atol, names=("y", "h_n", "c_n")):
    for name, a, b in zip(names, got, want):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=name)


def _assert_same_grads(got, want, rtol, atol):
    assert got.keys() == want.keys()
    for name in want:
        if want[name] is None:
            assert got[name] is None, name
        else:
            np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol,
                                       err_msg=name)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("proj", [None, 3])
def test_ops_matches_reference_with_gradients(side, reverse, proj):
    w, x, h0, c0 = _problem(0, proj)
    P = proj or H
    kw = dict(lengths=LENGTHS, padding_side=side, reverse=reverse, training=True, **w)
    got = ops.lstm_forward(x, h0=h0, c0=c0, **kw)
    want = _reference.lstm_forward(x, h0=h0, c0=c0, **kw)
    _assert_same(got[:3], want[:3], rtol=1e-12, atol=1e-12)
    # padding outputs are exactly zero, and the sample-major layout is kept
    for b in range(B):
        start = 0 if side == "right" else T - LENGTHS[b]
        real = np.zeros(T, bool)
        real[start:start + LENGTHS[b]] = True
        assert np.all(want[0][b, ~real] == 0)
        assert np.all(np.abs(want[0][b, real]).sum(axis=-1) > 0)

    rng = np.random.default_rng(1)
    dy, dh, dc = rng.normal(size=(B, T, P)), rng.normal(size=(B, P)), rng.normal(size=(B, H))
    _assert_same_grads(ops.lstm_backward(got[3], dy, dh, dc),
                       _reference.lstm_backward(want[3], dy, dh, dc), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reverse", [False, True])
def test_float32_ops_matches_reference(reverse):
    w, x, h0, c0 = _problem(2, 3, dtype=np.float32)
    kw = dict(lengths=LENGTHS, padding_side="left", reverse=reverse, training=True, **w)
    got = ops.lstm_forward(x, h0=h0, c0=c0, **kw)
    want = _reference.lstm_forward(x, h0=h0, c0=c0, **kw)
    for a in want[:3]:
        assert a.dtype == np.float32
    _assert_same(got[:3], want[:3], rtol=1e-5, atol=1e-6)
    rng = np.random.default_rng(3)
    dy = rng.normal(size=(B, T, 3)).astype(np.float32)
    _assert_same_grads(ops.lstm_backward(got[3], dy), _reference.lstm_backward(want[3], dy),
                       rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("side", ["right", "left"])
def test_time_major_last_output_and_dropout_masks(side):
    w, x, h0, c0 = _problem(4)
    rng = np.random.default_rng(5)
    # Keras's per-gate masks, already scaled by 1 / (1 - rate)
    din = (rng.random((4, B, D)) > 0.3) / 0.7
    drec = (rng.random((4, B, H)) > 0.3) / 0.7
    x_tm = np.ascontiguousarray(x.transpose(1, 0, 2))
    kw = dict(lengths=LENGTHS, padding_side=side, time_major=True, dropout_mask=din,
              recurrent_dropout_mask=drec, training=True, **w)
    for return_sequences in (True, False):
        got = ops.lstm_forward(x_tm, h0=h0, c0=c0, return_sequences=return_sequences, **kw)
        want = _reference.lstm_forward(x_tm, h0=h0, c0=c0, return_sequences=return_sequences,
                                       **kw)
        assert want[0].shape == ((T, B, H) if return_sequences else (B, H))
        _assert_same(got[:3], want[:3], rtol=1e-12, atol=1e-12)
        if not return_sequences:
            np.testing.assert_array_equal(want[0], want[1])
        dy = rng.normal(size=want[0].shape)
        _assert_same_grads(ops.lstm_backward(got[3], dy),
                           _reference.lstm_backward(want[3], dy), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reverse", [False, True])
def test_right_padding_is_the_references_zero_output_mask(reverse):
    # An independent path: the masked reference carries the state through padding, which for
    # right padding is the same as stopping (forward) or starting late (reverse).
    w, x, h0, c0 = _problem(6, 3)
    mask = np.arange(T)[None] < LENGTHS[:, None]
    got = _reference.lstm_forward(x, h0=h0, c0=c0, lengths=LENGTHS, reverse=reverse,
                                  training=True, **w)
    want = _reference.lstm_forward(x, h0=h0, c0=c0, mask=mask, zero_output_for_mask=True,
                                   reverse=reverse, training=True, **w)
    _assert_same(got[:3], want[:3], rtol=1e-12, atol=1e-12)
    rng = np.random.default_rng(7)
    dy, dh, dc = rng.normal(size=(B, T, 3)), rng.normal(size=(B, 3)), rng.normal(size=(B, H))
    _assert_same_grads(_reference.lstm_backward(got[3], dy, dh, dc),
                       _reference.lstm_backward(want[3], dy, dh, dc), rtol=1e-10, atol=1e-12)


def test_padding_values_do_not_matter_and_full_lengths_are_the_dense_run():
    w, x, h0, c0 = _problem(8)
    noisy = x.copy()
    for b in range(B):
        noisy[b, :T - LENGTHS[b]] = 1e3   # left padding
    clean = _reference.lstm_forward(x, h0=h0, c0=c0, lengths=LENGTHS, padding_side="left", **w)
    dirty = _reference.lstm_forward(noisy, h0=h0, c0=c0, lengths=LENGTHS, padding_side="left",
                                    **w)
    _assert_same(dirty[:3], clean[:3], rtol=0, atol=0)
    full = _reference.lstm_forward(x, h0=h0, c0=c0, lengths=np.full(B, T), **w)
    dense = _reference.lstm_forward(x, h0=h0, c0=c0, **w)
    _assert_same(full[:3], dense[:3], rtol=1e-14, atol=1e-14)


def test_reference_rejects_lengths_with_mask():
    w, x, _, _ = _problem(9)
    with pytest.raises(ValueError, match="`lengths` and `mask`"):
        _reference.lstm_forward(x, lengths=LENGTHS, mask=np.ones((B, T), bool), **w)
