"""Inference calls of a few rows (`_core.forward_small`): one step, or a short sequence at batch 1.

They take one core call instead of the chunked path's several (issue 5: 37 against 16 us at
B=1 T=1 D=64 H=128), with the same arithmetic: results must be bitwise those of the training
forward (the hoisted input GEMM and the core's time loop), on any BLAS thread count, with the
caller's BLAS thread counts restored after the call.
"""

import numpy as np
import pytest
import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's BLAS before threadpoolctl looks)
from threadpoolctl import threadpool_info, threadpool_limits

from pylstm import _threads, ops
from pylstm._kernels import core as _core


@pytest.fixture
def small_calls(monkeypatch):
    """Counts the calls that take the small path."""
    calls = []
    forward_small = _core.forward_small

    def counting(*args):
        calls.append(args[0].shape)
        return forward_small(*args)

    monkeypatch.setattr(_core, "forward_small", counting)
    return calls


def weights(rng, D, H, dtype, bias=True):
    scale = 1 / np.sqrt(H)
    return dict(kernel=rng.uniform(-scale, scale, (D, 4 * H)).astype(dtype),
                recurrent_kernel=rng.uniform(-scale, scale, (H, 4 * H)).astype(dtype),
                bias=rng.uniform(-scale, scale, 4 * H).astype(dtype) if bias else None)


def assert_identical(got, want):
    for g, w in zip(got[:3], want[:3]):
        assert g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_array_equal(g, w)


SHAPES = [(1, 1), (1, 7), (5, 1), (1, 63), (3, 4)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("B, T", SHAPES, ids=[f"B{b}-T{t}" for b, t in SHAPES])
@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("reverse", [False, True])
def test_bitwise_equal_to_training_forward(small_calls, dtype, B, T, time_major, reverse):
    rng = np.random.default_rng(B * 100 + T)
    D, H = 6, 16
    w = weights(rng, D, H, dtype)
    x = rng.normal(size=(T, B, D) if time_major else (B, T, D)).astype(dtype)
    kw = dict(h0=rng.normal(size=(B, H)).astype(dtype), c0=rng.normal(size=(B, H)).astype(dtype),
              time_major=time_major, reverse=reverse)
    for return_sequences in (True, False):
        got = ops.lstm_forward(x, **w, return_sequences=return_sequences, **kw)
        want = ops.lstm_forward(x, **w, return_sequences=return_sequences, training=True, **kw)
        assert_identical(got, want)
        assert got[3] is None and got[0].flags.c_contiguous
    # batch-major with B > 1 and T > 1 is not time-major in memory: the chunked path
    small = time_major or B == 1 or T == 1
    assert len(small_calls) == (2 if small else 0)


@pytest.mark.parametrize("acts", [dict(), dict(recurrent_activation="hard_sigmoid"),
                                  dict(gate_activations=["sigmoid", "relu", "tanh", "sigmoid",
                                                         "softsign"])],
                         ids=["standard", "hard_sigmoid", "per gate"])
def test_activations_no_bias_zero_state(small_calls, acts):
    rng = np.random.default_rng(1)
    w = weights(rng, 4, 5, np.float32, bias=False)
    x = rng.normal(size=(1, 9, 4)).astype(np.float32)
    got = ops.lstm_forward(x, **w, **acts)
    want = ops.lstm_forward(x, **w, training=True, **acts)
    assert_identical(got, want)
    assert small_calls == [x.shape]


def test_strided_input_and_other_paths(small_calls):
    """A non-contiguous x is copied first; masks, projections and dropout keep the chunked
    path."""
    rng = np.random.default_rng(2)
    D, H = 5, 8
    w = weights(rng, D, H, np.float32)
    x = np.asfortranarray(rng.normal(size=(1, 6, D, 2)).astype(np.float32))[..., 1]
    x_before = x.copy()
    assert_identical(ops.lstm_forward(x, **w), ops.lstm_forward(x, **w, training=True))
    np.testing.assert_array_equal(x, x_before)
    assert len(small_calls) == 1
    small_calls.clear()
    ops.lstm_forward(x, **w, mask=np.ones((1, 6), bool))
    ops.lstm_forward(x, **w, dropout_mask=np.ones((1, D), np.float32))
    ops.lstm_forward(x, w["kernel"], rng.normal(size=(3, 4 * H)).astype(np.float32),
                     projection=rng.normal(size=(H, 3)).astype(np.float32))
    assert small_calls == []


def blas_counts():
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


@pytest.mark.parametrize("limit", [1, 2])
def test_blas_threads_restored_and_results_unchanged(small_calls, limit):
    rng = np.random.default_rng(3)
    w = weights(rng, 64, 128, np.float32)
    x = rng.normal(size=(1, 1, 64)).astype(np.float32)
    with threadpool_limits(limits=1, user_api="blas"):
        want = ops.lstm_forward(x, **w)
    with threadpool_limits(limits=limit, user_api="blas"):
        before = blas_counts()
        got = ops.lstm_forward(x, **w)
        assert blas_counts() == before
    assert_identical(got, want)
    assert len(small_calls) == 2


def test_loop_switch_policy(monkeypatch):
    """Small steps: the C addresses of every BLAS library's thread-count functions; nothing
    to switch inside `concurrently` or without BLAS libraries; larger steps go through
    BlasThreads."""
    libs = _threads._discover()
    switch = _threads.loop_switch()
    assert switch.dtype == np.uintp
    if all(lib.addresses is not None for lib in libs):
        assert switch.tolist() == [a for lib in libs for a in lib.addresses]
    small, large = ops.explain((1, 1, 3), 4), ops.explain((1, 1, 3), 512)
    assert (small.route, small.loop_threads) == ("small call", 1)
    assert (large.route, large.loop_threads) == ("small call", None)   # via BlasThreads
    monkeypatch.setattr(_threads._local, "pinned", 1, raising=False)
    assert _threads.loop_switch().size == 0
    monkeypatch.setattr(_threads._local, "pinned", None)
    monkeypatch.setattr(_threads, "_libs", [])
    assert _threads.loop_switch().size == 0


def test_bad_input_still_raises(small_calls):
    rng = np.random.default_rng(4)
    w = weights(rng, 3, 4, np.float32)
    x = rng.normal(size=(1, 1, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="Argument `x` contains 1 NaN"):
        ops.lstm_forward(np.where(np.arange(3) == 1, np.nan, x).astype(np.float32), **w)
    bad = w["recurrent_kernel"].copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="Argument `recurrent_kernel` contains 1 NaN or inf"):
        ops.lstm_forward(x, w["kernel"], bad, w["bias"])
    with pytest.raises(ValueError, match="Argument `h0` must have shape"):
        ops.lstm_forward(x, **w, h0=np.zeros((2, 4), np.float32))
    assert small_calls == []
