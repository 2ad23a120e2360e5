"""The pool of released buffers (pylstm._memory): reuse, alignment, the limit, and that reused
(dirty) memory never changes a result."""

import numpy as np
import pytest

import pylstm
from pylstm import _memory, ops
from pylstm.ops._buffers import empty


@pytest.fixture
def limit():
    before = pylstm.get_memory_pool_limit()
    yield
    pylstm.set_memory_pool_limit(before)


def _address(a):
    return a.__array_interface__["data"][0]


def test_buffers_are_aligned_writable_and_shaped():
    for shape, dtype in [((3, 5), np.float32), ((1000, 33), np.float64), ((0, 4), np.float32),
                         ((7,), np.float32)]:
        a = empty(shape, dtype)
        assert a.shape == shape and a.dtype == dtype
        assert a.flags.writeable and a.flags.c_contiguous
        assert _address(a) % 64 == 0
        a[...] = 1
        assert np.all(a == 1)


def test_a_released_buffer_is_reused(limit):
    pylstm.set_memory_pool_limit(0)     # no idle buffer of the same size from earlier tests
    pylstm.set_memory_pool_limit(64 << 20)
    a = empty((1 << 18,), np.float32)            # 1 MiB
    address = _address(a)
    idle_before = pylstm.memory_pool_idle()
    del a
    idle_bytes, idle_count = pylstm.memory_pool_idle()
    assert idle_count == idle_before[1] + 1 and idle_bytes >= idle_before[0] + (1 << 20)
    b = empty((1 << 18,), np.float32)
    assert _address(b) == address
    assert pylstm.memory_pool_idle() == idle_before


def test_views_keep_their_buffer(limit):
    pylstm.set_memory_pool_limit(64 << 20)
    a = empty((1 << 16, 4), np.float32)
    a[...] = np.arange(4, dtype=np.float32)
    view = a[5:10, 2]
    del a
    empty((1 << 16, 4), np.float32)[...] = -1    # would overwrite a reused buffer
    np.testing.assert_array_equal(view, 2)


def test_limit_zero_keeps_nothing(limit):
    pylstm.set_memory_pool_limit(64 << 20)
    a = empty((1 << 18,), np.float32)
    del a
    assert pylstm.memory_pool_idle()[1] >= 1
    pylstm.set_memory_pool_limit(0)
    assert pylstm.memory_pool_idle() == (0, 0)
    a = empty((1 << 18,), np.float32)
    del a
    assert pylstm.memory_pool_idle() == (0, 0)
    assert pylstm.get_memory_pool_limit() == 0


def test_small_buffers_are_not_kept(limit):
    pylstm.set_memory_pool_limit(64 << 20)
    before = pylstm.memory_pool_idle()
    a = empty((100,), np.float32)
    del a
    assert pylstm.memory_pool_idle() == before


def test_idle_memory_stays_under_the_limit(limit):
    pylstm.set_memory_pool_limit(3 << 20)
    buffers = [empty((1 << 18,), np.float32) for _ in range(6)]    # 6 x 1 MiB
    del buffers
    idle_bytes, idle_count = pylstm.memory_pool_idle()
    assert idle_bytes <= 3 << 20 and idle_count == 3


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (1.5, TypeError), (True, TypeError),
                                        ("3", TypeError), (None, TypeError)])
def test_bad_limit(limit, bad, error):
    with pytest.raises(error, match="nbytes"):
        pylstm.set_memory_pool_limit(bad)


def _training_step(rng_seed, B=8, T=30, D=16, H=64):
    rng = np.random.default_rng(rng_seed)
    x = rng.standard_normal((B, T, D), dtype=np.float32)
    kernel = rng.standard_normal((D, 4 * H), dtype=np.float32) * 0.2
    recurrent_kernel = rng.standard_normal((H, 4 * H), dtype=np.float32) * 0.2
    bias = rng.standard_normal(4 * H, dtype=np.float32) * 0.1
    dy = rng.standard_normal((B, T, H), dtype=np.float32)
    y, h_n, c_n, cache = ops.lstm_forward(x, kernel, recurrent_kernel, bias, training=True)
    grads = ops.lstm_backward(cache, dy)
    y_inf = ops.lstm_forward(x, kernel, recurrent_kernel, bias)[0]
    return [y, h_n, c_n, y_inf] + [grads[k] for k in ("x", "kernel", "recurrent_kernel",
                                                      "bias", "h0", "c0")]


def test_dirty_reused_memory_gives_the_same_bits(limit):
    pylstm.set_memory_pool_limit(0)
    fresh = _training_step(0)
    pylstm.set_memory_pool_limit(256 << 20)
    # fill the pool with NaN buffers of every size the step asks for (and others)
    for size in sorted({a.nbytes for a in fresh} | {1 << k for k in range(16, 24)}):
        garbage = [empty((max(1, size // 4) + extra,), np.float32) for extra in (0, 16)]
        for g in garbage:
            g[...] = np.nan
        del garbage
    for _ in range(2):
        again = _training_step(0)
        for a, b in zip(fresh, again):
            np.testing.assert_array_equal(a, b)


def test_an_impossible_size_raises_memory_error(limit):
    """A request the C library cannot meet frees the idle blocks, then raises MemoryError."""
    pylstm.set_memory_pool_limit(64 << 20)
    a = empty((1 << 18,), np.float32)
    del a
    assert pylstm.memory_pool_idle()[1] >= 1
    for nbytes in (1 << 62, (1 << 63) - 1):
        with pytest.raises(MemoryError):
            _memory.Block(nbytes)
    assert pylstm.memory_pool_idle() == (0, 0)
    with pytest.raises(ValueError, match="nbytes"):
        _memory.Block(-1)
