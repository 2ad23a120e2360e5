"""BLAS threads (`pylstm._threads`, `ops.set_num_threads`): the setting, the policy (time loop on
one thread, whole-call GEMMs on `get_num_threads()`), the caller's BLAS setting restored, results
bitwise identical on 1 and 2 threads, and everything working without threadpoolctl."""

import os
import sys

import numpy as np
import pytest
import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's BLAS before threadpoolctl looks)
from threadpoolctl import threadpool_info, threadpool_limits

from pylstm import _plan, _threads, ops
from pylstm.layers import LSTM
from pylstm._kernels import core as _core


@pytest.fixture(autouse=True)
def default_threads():
    """Every test starts and ends with pylstm's default (the BLAS library's setting)."""
    ops.set_num_threads(None)
    yield
    ops.set_num_threads(None)


def blas_counts():
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


def problem(B, T, D, H, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    scale = 1 / np.sqrt(H)
    return dict(x=rng.standard_normal((B, T, D)).astype(dtype),
                kernel=rng.uniform(-scale, scale, (D, 4 * H)).astype(dtype),
                recurrent_kernel=rng.uniform(-scale, scale, (H, 4 * H)).astype(dtype),
                bias=rng.uniform(-scale, scale, 4 * H).astype(dtype))


def train_step(args, **kwargs):
    y, h_n, c_n, cache = ops.lstm_forward(**args, training=True, **kwargs)
    grads = ops.lstm_backward(cache, np.ones_like(y), np.ones_like(h_n), np.ones_like(c_n))
    return dict(y=y, h_n=h_n, c_n=c_n, **{f"d{k}": v for k, v in grads.items() if v is not None})


def test_default_and_set_get():
    assert ops.get_num_threads() is None
    ops.set_num_threads(1)
    assert ops.get_num_threads() == 1
    ops.set_num_threads(2)
    assert ops.get_num_threads() == 2
    ops.set_num_threads(np.int64(3))
    assert ops.get_num_threads() == 3 and type(ops.get_num_threads()) is int
    ops.set_num_threads(None)
    assert ops.get_num_threads() is None


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_count_raises_value_error(bad):
    with pytest.raises(ValueError, match=r"Argument `n` must be an integer >= 1 or None, "
                                         rf"received {bad}\."):
        ops.set_num_threads(bad)
    assert ops.get_num_threads() is None


@pytest.mark.parametrize("bad", [1.5, "2", True, [2]])
def test_bad_type_raises_type_error(bad):
    with pytest.raises(TypeError, match=r"Argument `n` must be an integer >= 1 or None"):
        ops.set_num_threads(bad)
    assert ops.get_num_threads() is None


@pytest.mark.parametrize("caller, ours", [(2, 1), (1, 2), (2, None)])
def test_restores_callers_blas_setting(caller, ours):
    args = problem(4, 6, 5, 8)
    ops.set_num_threads(ours)
    with threadpool_limits(limits=caller, user_api="blas"):
        train_step(args)
        ops.lstm_forward(**args, lengths=[6, 3, 2, 5], training=False)
        ops.lstm_forward(**args, activation=lambda z: np.tanh(z))
        assert blas_counts() == [caller] * len(blas_counts())


class Recorder:
    """Wraps `pylstm._core`'s kernels (`patch`), recording SciPy's BLAS thread count at each
    kernel call."""

    NAMES = ("forward", "backward", "matmul_acc")

    def __init__(self, lib):
        self.lib = lib
        self.calls = []
        self.teams = []     # forward's thread team on the packed path, None on BLAS
        self.kernels = {name: getattr(_core, name) for name in self.NAMES}

    def patch(self, monkeypatch):
        for name in self.NAMES:
            monkeypatch.setattr(_core, name, getattr(self, name))

    def _wrap(self, name, *args, **kwargs):
        self.calls.append((name, self.lib.get()))
        return self.kernels[name](*args, **kwargs)

    def forward(self, arrays, weights, steps, team, *args, **kwargs):
        self.teams.append(team if weights.packed is not None else None)
        return self._wrap("forward", arrays, weights, steps, team, *args, **kwargs)

    def backward(self, arrays, weights, steps, team, *args, **kwargs):
        self.teams.append(team if weights.packed is not None else None)
        return self._wrap("backward", arrays, weights, steps, team, *args, **kwargs)

    def matmul_acc(self, *args):
        return self._wrap("matmul_acc", *args)


@pytest.mark.parametrize("B, H", [(3, 6), (16, 128)], ids=["small step", "large step"])
@pytest.mark.parametrize("ours", [1, 2, None])
def test_time_loop_and_gemm_threads(monkeypatch, ours, B, H):
    """Whole-call GEMMs on get_num_threads() (None: the caller's 2); the packed time loops
    (float32 forward and backward) on a team of get_num_threads() threads from
    _TEAM_MIN_STEP_FLOP a step and _TEAM_MIN_FLOP a call, else alone; with recurrent dropout
    (the BLAS time loop) BLAS runs get_num_threads() threads from _LOOP_MIN_FLOP a step, else
    one."""
    libs = _threads._discover()
    scipy_blas = [lib for lib in libs if "scipy" in lib.controller.filepath]
    assert scipy_blas, "SciPy's BLAS not found by threadpoolctl"
    recorder = Recorder(scipy_blas[0])
    recorder.patch(monkeypatch)
    ops.set_num_threads(ours)
    bulk = 2 if ours is None else ours
    large = 2 * B * H * 4 * H >= _plan._LOOP_MIN_FLOP
    assert large == (H == 128)
    T = 40
    step_flop = 2 * B * H * 4 * H
    team = (step_flop >= _plan._TEAM_MIN_STEP_FLOP
            and T * step_flop >= _plan._TEAM_MIN_FLOP)
    assert team == (H == 128)
    with threadpool_limits(limits=2, user_api="blas"):
        train_step(problem(B, T, 5, H))
    names = [name for name, _ in recorder.calls]
    # The packed forward does its input product itself, the packed backward its weight
    # gradients: BLAS computes only the input gradient.
    assert names == ["forward", "backward", "matmul_acc"]
    assert recorder.teams == [bulk if team else 1] * 2
    assert [count for name, count in recorder.calls if name == "matmul_acc"] == [bulk]

    # Recurrent dropout keeps the BLAS time loop.
    recorder.calls.clear()
    recorder.teams.clear()
    rdrop = np.full((B, H), 1.25, dtype=np.float32)
    with threadpool_limits(limits=2, user_api="blas"):
        train_step(problem(B, T, 5, H), recurrent_dropout_mask=rdrop)
    assert recorder.teams == [None, None]
    for name, count in recorder.calls:
        loop = name in ("forward", "backward")
        assert count == (bulk if (large or not loop) else 1), name


CASES = [
    ("dense", (32, 20, 64, 128), {}),
    ("batch 1", (1, 30, 128, 256), {}),
    ("lengths, reverse", (16, 12, 48, 64), dict(lengths=np.arange(16) % 12 + 1, reverse=True)),
    ("four dropout masks", (8, 10, 32, 64), "masks"),
]


@pytest.mark.parametrize("label, shape, kwargs", CASES, ids=[c[0] for c in CASES])
def test_bitwise_identical_on_one_and_two_threads(label, shape, kwargs):
    B, T, D, H = shape
    args = problem(B, T, D, H, seed=1)
    if kwargs == "masks":
        rng = np.random.default_rng(2)
        kwargs = dict(dropout_mask=(rng.random((4, B, D)) > 0.3).astype(np.float32) / 0.7,
                      recurrent_dropout_mask=(rng.random((4, B, H)) > 0.3).astype(np.float32)
                      / 0.7)
    results = {}
    for n in (1, 2):
        ops.set_num_threads(n)
        results[n] = train_step(args, **kwargs)
        results[n]["inference"] = ops.lstm_forward(**args, **kwargs)[0]
    assert results[1].keys() == results[2].keys()
    for name in results[1]:
        np.testing.assert_array_equal(results[1][name], results[2][name], err_msg=name)


def test_bitwise_identical_whatever_the_callers_blas_setting():
    args = problem(32, 10, 64, 128, seed=3)
    ops.set_num_threads(None)
    with threadpool_limits(limits=1, user_api="blas"):
        one = train_step(args)
    with threadpool_limits(limits=2, user_api="blas"):
        two = train_step(args)
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)


def test_works_without_threadpoolctl(monkeypatch):
    args = problem(5, 7, 6, 8, seed=4)
    expected = train_step(args)
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)   # import raises ImportError
    monkeypatch.setattr(_threads, "_libs", None)
    assert _threads._discover() == []
    ops.set_num_threads(2)
    assert ops.get_num_threads() == 2
    got = train_step(args)
    for name in expected:
        np.testing.assert_array_equal(expected[name], got[name], err_msg=name)


@pytest.mark.parametrize("how", ["set_num_threads", "first multi-threaded call",
                                 "first call that plans a team"])
def test_multithreading_shortens_openblas_spinning(monkeypatch, how):
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    monkeypatch.setattr(_threads, "_timeout_set", False)
    openblas = [lib for lib in _threads._discover() if lib.dynlib is not None]
    assert openblas, "no OpenBLAS found by threadpoolctl"
    if how == "set_num_threads":
        ops.set_num_threads(2)
    elif how == "first multi-threaded call":
        monkeypatch.setattr(_threads, "_num_threads", 2)
        train_step(problem(2, 3, 4, 5))
    else:
        # The default thread count (None: the BLAS library's, here 2), a float32 forward at
        # batch 1 whose loop is packed on the core's team: no BLAS product runs on two
        # threads, yet OpenBLAS workers left spinning by other code would take the team's core.
        monkeypatch.setattr(_threads, "_num_threads", None)
        monkeypatch.setattr(_threads, "available", lambda: 2)
        assert ops.explain((1, 100, 32), 64).team == 2
        assert not _threads._timeout_set   # explaining a call makes no change
        LSTM(64)(np.ones((1, 100, 32), np.float32))
    assert _threads._timeout_set
    for lib in openblas:
        assert lib.dynlib.openblas_thread_timeout() == _threads._SPIN_TIMEOUT_LOG2
    # The variable is read at once: it is not left in the environment of child processes.
    assert "OPENBLAS_THREAD_TIMEOUT" not in os.environ
    result = train_step(problem(32, 10, 64, 128, seed=5))
    assert all(np.isfinite(v).all() for v in result.values())


def test_callers_openblas_thread_timeout_is_respected(monkeypatch):
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "7")
    monkeypatch.setattr(_threads, "_timeout_set", False)
    openblas = [lib for lib in _threads._discover() if lib.dynlib is not None]
    before = [lib.dynlib.openblas_thread_timeout() for lib in openblas]
    ops.set_num_threads(2)
    assert [lib.dynlib.openblas_thread_timeout() for lib in openblas] == before
