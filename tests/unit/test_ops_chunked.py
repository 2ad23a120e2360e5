"""Inference in chunks of steps (`pylstm.ops._routes.chunked_inference`, issue 5's memory
target).

`lstm_forward(training=False)` runs the time loop in chunks whose gate block is about
`_plan._CHUNK_BYTES` (here set by `_plan.forced(chunk_bytes=...)`); the results must be
bitwise those of one chunk and of the training forward (which hoists the input product over
all rows at once), at every chunk boundary. float32 without projection or dropout runs
unchunked, the input product fused into each step (`_routes.fused_inference`): it too must
give the training forward's bits, which these tests check on the same cases.
"""

import tracemalloc

import numpy as np
import pytest

from pylstm import _plan, ops
from pylstm._kernels import core as _core
from pylstm.ops import _routes

TC = 4  # steps per chunk in these tests


def _weights(rng, D, H, P=None, dtype=np.float32):
    P = H if P is None else P
    w = dict(kernel=rng.normal(scale=0.5, size=(D, 4 * H)),
             recurrent_kernel=rng.normal(scale=0.5, size=(P, 4 * H)),
             bias=rng.normal(scale=0.5, size=4 * H))
    if P != H:
        w["projection"] = rng.normal(scale=0.5, size=(H, P))
    return {k: v.astype(dtype) for k, v in w.items()}


def _chunk_bytes(B, H, dtype, steps=TC):
    return steps * B * 4 * H * np.dtype(dtype).itemsize


def _run(chunk_bytes, *args, **kwargs):
    with _plan.forced(chunk_bytes=chunk_bytes):
        return ops.lstm_forward(*args, **kwargs)


def _assert_identical(got, want):
    for g, w in zip(got[:3], want[:3]):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


def _mask(rng, B, T, time_major):
    """Random mask with a fully masked sample, one masked across every chunk boundary, and
    (for T > 1) one masked at both ends."""
    mask = rng.random((B, T)) > 0.35
    mask[0] = False
    mask[1, :] = True
    mask[1, max(0, TC - 2):TC + 2] = False
    if T > 1:
        mask[2, [0, -1]] = False
    return mask.T.copy() if time_major else mask


@pytest.mark.parametrize("T", [TC - 1, TC, TC + 1, 3 * TC + 2])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("masking", [None, "repeat", "zero"])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_chunks_bitwise_equal_one_chunk_and_training(T, reverse, masking,
                                                      return_sequences):
    rng = np.random.default_rng(T)
    B, D, H = 5, 3, 6
    w = _weights(rng, D, H)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    kw = dict(reverse=reverse, return_sequences=return_sequences)
    if masking is not None:
        kw.update(mask=_mask(rng, B, T, False), zero_output_for_mask=masking == "zero")
    chunked = _run(_chunk_bytes(B, H, np.float32), x, **w, **kw)
    whole = _run(1 << 40, x, **w, **kw)
    trained = ops.lstm_forward(x, **w, training=True, **kw)
    _assert_identical(chunked, whole)
    _assert_identical(chunked, trained)
    assert chunked[3] is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_projection_states_layouts_dtypes(dtype, time_major, layout):
    rng = np.random.default_rng(1)
    B, T, D, H, P = 4, 3 * TC + 2, 5, 7, 3
    w = _weights(rng, D, H, P, dtype)
    shape = (T, B, D) if time_major else (B, T, D)
    x = rng.normal(size=shape).astype(dtype)
    if layout == "strided":
        x = np.asfortranarray(rng.normal(size=shape + (2,)).astype(dtype))[..., 1]
    x_before = x.copy()
    kw = dict(h0=rng.normal(size=(B, P)).astype(dtype), c0=rng.normal(size=(B, H)).astype(dtype),
              mask=_mask(rng, B, T, time_major), time_major=time_major)
    for reverse in (False, True):
        chunked = _run(_chunk_bytes(B, H, dtype), x, **w, reverse=reverse, **kw)
        whole = _run(1 << 40, x, **w, reverse=reverse, **kw)
        trained = ops.lstm_forward(x, **w, reverse=reverse, training=True, **kw)
        _assert_identical(chunked, whole)
        _assert_identical(chunked, trained)
        assert chunked[0].flags.c_contiguous
    np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize("n_masks", [1, 4])
def test_dropout_masks_given_at_inference(n_masks):
    rng = np.random.default_rng(2)
    B, T, D, H = 3, 2 * TC + 1, 4, 5
    w = _weights(rng, D, H)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    shape_in = (B, D) if n_masks == 1 else (4, B, D)
    shape_rec = (B, H) if n_masks == 1 else (4, B, H)
    kw = dict(dropout_mask=(rng.random(shape_in) > 0.3).astype(np.float32) / 0.7,
              recurrent_dropout_mask=(rng.random(shape_rec) > 0.3).astype(np.float32) / 0.7)
    chunked = _run(_chunk_bytes(B, H, np.float32), x, **w, **kw)
    whole = _run(1 << 40, x, **w, **kw)
    trained = ops.lstm_forward(x, **w, training=True, **kw)
    _assert_identical(chunked, whole)
    _assert_identical(chunked, trained)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_lengths_and_packed_paths_chunked(reverse, padding_side):
    rng = np.random.default_rng(3)
    B, T, D, H = 5, 3 * TC + 2, 3, 4
    w = _weights(rng, D, H)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    lengths = np.array([T, 1, TC, TC + 1, 2 * TC + 3])
    kw = dict(lengths=lengths, padding_side=padding_side, reverse=reverse,
              h0=rng.normal(size=(B, H)).astype(np.float32))
    # chunks of 2 * TC rows: a chunk ends mid-step count as the packed batch shrinks
    chunked = _run(2 * TC * 4 * H * 4, x, **w, **kw)
    trained = ops.lstm_forward(x, **w, training=True, **kw)
    _assert_identical(chunked, trained)

    sizes = [3, 3, 2, 2, 2, 1, 1]
    data = rng.normal(size=(sum(sizes), D)).astype(np.float32)
    with _plan.forced(chunk_bytes=5 * 4 * H * 4):
        chunked = ops.lstm_forward_packed(data, sizes, **w, reverse=reverse)
    trained = ops.lstm_forward_packed(data, sizes, **w, reverse=reverse, training=True)
    _assert_identical(chunked, trained)


def test_chunk_count_and_bounds(monkeypatch):
    calls = []
    forward = _core.forward

    def counting(arrays, *args, **kwargs):
        calls.append(arrays.gates.shape[0])
        return forward(arrays, *args, **kwargs)

    monkeypatch.setattr(_core, "forward", counting)
    rng = np.random.default_rng(4)
    B, T, D, H = 3, 3 * TC + 2, 2, 4
    # float64: float32 without projection or dropout runs unchunked (ops._fused_inference).
    w = _weights(rng, D, H, dtype=np.float64)
    x = rng.normal(size=(B, T, D))
    _run(_chunk_bytes(B, H, np.float64), x, **w)
    assert calls == [TC * B] * 3 + [2 * B]
    calls.clear()
    _run(_chunk_bytes(B, H, np.float64), x, **w, reverse=True)
    assert calls == [2 * B] + [TC * B] * 3
    calls.clear()
    _run(1, x, **w)   # at least one step a chunk
    assert calls == [B] * T

    offsets = np.concatenate([[0], np.cumsum([3, 3, 2, 2, 1])])
    assert _routes.chunks(offsets, 5) == [(0, 1, 0, 3), (1, 3, 3, 8), (3, 5, 8, 11)]
    assert _routes.dense_chunks(10, 2, 9) == [(0, 4, 0, 8), (4, 8, 8, 16), (8, 10, 16, 20)]
    with _plan.forced(chunk_bytes=5 * 16):
        assert ops.explain((8, 10, 3), 1).chunk_rows is None   # fused: no chunks
        assert ops.explain((8, 10, 3), 1, dtype="float64").chunk_rows == 2


@pytest.mark.parametrize("return_sequences", [False, True])
def test_inference_memory_does_not_grow_with_steps(return_sequences):
    """Traced peak of an inference call: output plus chunk buffers, nothing per step."""
    rng = np.random.default_rng(6)
    B, D, H = 8, 4, 64
    w = _weights(rng, D, H)
    chunk = 64 * 1024
    with _plan.forced(chunk_bytes=chunk):
        ops.lstm_forward(rng.normal(size=(B, 2, D)).astype(np.float32), **w)  # warm-up
        peaks = {}
        for T in (100, 1000):
            x = rng.normal(size=(B, T, D)).astype(np.float32)
            tracemalloc.start()
            out = ops.lstm_forward(x, **w, return_sequences=return_sequences)
            peaks[T] = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            del out
    out_bytes = B * 1000 * H * 4 if return_sequences else 0
    gates_bytes = B * 1000 * 4 * H * 4   # the (T*B, 4H) block an unchunked run would hold
    # chunk buffers (gates, gathered x, outputs), `np.isfinite(x)` (B*T*D bytes), and
    # O(T) int step tables
    bound = out_bytes + 3 * chunk + B * 1000 * D + 1000 * 16 + 64 * 1024
    assert peaks[1000] < bound < out_bytes + gates_bytes / 2
