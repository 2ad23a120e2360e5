"""The plan of a call (`pylstm._plan`, `pylstm.ops.explain`): which route each kind of call
takes, what it says, what a forced route refuses, and that the plan `explain` shows is the
one the call runs."""

import numpy as np
import pytest

import pylstm
from pylstm import _plan, ops
from pylstm._kernels import core as _core


@pytest.fixture(autouse=True)
def default_threads():
    pylstm.set_num_threads(None)
    yield
    pylstm.set_num_threads(None)


@pytest.mark.parametrize("kwargs, route, recurrent", [
    (dict(x_shape=(1, 1, 8), units=16), _plan.SMALL, "BLAS"),
    (dict(x_shape=(1, 20, 8), units=16), _plan.SMALL, "BLAS"),
    (dict(x_shape=(4, 10, 8), units=16), _plan.CHUNKED_INFERENCE, "BLAS"),
    (dict(x_shape=(8, 10, 8), units=16), _plan.FUSED_INFERENCE, "fused"),
    (dict(x_shape=(8, 10, 8), units=16, training=True), _plan.FUSED_TRAINING, "fused"),
    (dict(x_shape=(8, 10, 8), units=16, dtype="float64"), _plan.CHUNKED_INFERENCE, "BLAS"),
    (dict(x_shape=(8, 10, 8), units=16, dropout=True), _plan.CHUNKED_INFERENCE, "packed"),
    (dict(x_shape=(8, 10, 8), units=16, dropout=True, training=True), _plan.GEMM_TRAINING,
     "packed"),
    (dict(x_shape=(8, 10, 8), units=16, projection_size=4), _plan.CHUNKED_INFERENCE, "BLAS"),
    (dict(x_shape=(8, 10, 8), units=16, recurrent_dropout=True), _plan.CHUNKED_INFERENCE,
     "BLAS"),
    (dict(x_shape=(1, 1, 8), units=16, mask=True), _plan.CHUNKED_INFERENCE, "BLAS"),
    (dict(x_shape=(1, 1, 8), units=16, activation=np.tanh), _plan.REFERENCE, "NumPy"),
    (dict(x_shape=(8, 10, 8), units=16, lengths=[10, 9, 9, 8, 8, 7, 7, 6]),
     _plan.FUSED_INFERENCE, "fused"),
    (dict(x_shape=(4, 8), units=16, batch_sizes=[2, 1, 1]), _plan.CHUNKED_INFERENCE, "BLAS"),
])
def test_routes_by_sizes_and_options(kwargs, route, recurrent):
    plan = ops.explain(**kwargs)
    assert (plan.route, plan.recurrent) == (route, recurrent), plan
    assert str(plan).startswith(f"route: {route} (")
    assert (plan.chunk_rows is not None) == (route == _plan.CHUNKED_INFERENCE)


def test_the_call_runs_the_plan_explain_shows(monkeypatch):
    """A fused plan reaches `_core.forward` with the plan's team and packed kernels; a small
    call plan reaches `_core.forward_small`."""
    rng = np.random.default_rng(0)
    seen = []
    forward, small = _core.forward, _core.forward_small
    monkeypatch.setattr(_core, "forward",
                        lambda arrays, weights, steps, team, *a, **k:
                        seen.append(("forward", team, weights.packed is not None)) or
                        forward(arrays, weights, steps, team, *a, **k))
    monkeypatch.setattr(_core, "forward_small",
                        lambda *a: seen.append(("forward_small",)) or small(*a))
    pylstm.set_num_threads(2)
    for shape in [(8, 10, 8), (1, 1, 8)]:
        plan = ops.explain(shape, 16)
        x = rng.normal(size=shape).astype(np.float32)
        ops.lstm_forward(x, rng.normal(size=(8, 64)).astype(np.float32),
                         rng.normal(size=(16, 64)).astype(np.float32))
        if plan.route == _plan.FUSED_INFERENCE:
            assert seen.pop() == ("forward", plan.team, True)
        else:
            assert plan.route == _plan.SMALL and seen.pop() == ("forward_small",)


def test_team_follows_the_thread_setting():
    """A plan with a thread team is sized at each call, never reused from a call made with
    another thread count."""
    shape, units = (32, 100, 64), 128
    pylstm.set_num_threads(1)
    assert ops.explain(shape, units).team == 1
    pylstm.set_num_threads(2)
    assert ops.explain(shape, units).team == 2
    assert ops.explain(shape, units, training=True).backward.team == 2


def test_str_says_route_team_and_backward():
    pylstm.set_num_threads(2)
    text = str(ops.explain((32, 100, 64), 128, training=True))
    first, second = text.splitlines()
    assert first.startswith("route: fused training (float32, packed kernels, 2-thread team): ")
    assert "dense input, B=32, T=100, 3200 rows" in first
    assert second.startswith("route: backward (float32, packed recurrent kernel, 2-thread "
                             "team, weight gradients in the team): ")
    chunked = str(ops.explain((4, 10, 8), 16, dtype="float64"))
    assert "one BLAS thread a step, chunks of up to" in chunked
    with _plan.forced(team_scale=1.0):      # the thresholds as measured on the reference
        small = ops.explain((2, 40, 8), 48)
    assert (small.team, small.team_if_awake) == (2, True)
    assert "(float32, packed kernels, 2-thread team if awake, else one thread)" in str(small)


def test_forced_route_that_cannot_run_raises():
    with _plan.forced(route=_plan.FUSED_INFERENCE):
        with pytest.raises(ValueError, match="forced route 'fused inference' cannot run"):
            ops.explain((8, 10, 8), 16, dtype="float64")
        with pytest.raises(ValueError, match="cannot run"):
            ops.lstm_forward(np.zeros((1, 2, 3)), np.zeros((3, 8)), np.zeros((2, 8)))
    with pytest.raises(ValueError, match="unknown choices"):
        with _plan.forced(colour="red"):
            pass
    with pytest.raises(ValueError, match="must be one of"):
        with _plan.forced(route="fast"):
            pass
    assert ops.explain((8, 10, 8), 16, dtype="float64").route == _plan.CHUNKED_INFERENCE


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(x_shape=(1, 2), units=4), ValueError, r"`x_shape` must be \(B, T, D\)"),
    (dict(x_shape=(1, 0, 2), units=4), ValueError, "`x_shape`"),
    (dict(x_shape=(1, 2, 3), units=0), ValueError, "`units` must be an integer >= 1"),
    (dict(x_shape=(1, 2, 3), units=4, dtype="float16"), ValueError, "`dtype`"),
    (dict(x_shape=(1, 2, 3), units=4, projection_size=0), ValueError, "`projection_size`"),
    (dict(x_shape=(2, 2, 3), units=4, lengths=[3, 1]), ValueError, "`lengths` must be <= 2"),
    (dict(x_shape=(2, 2, 3), units=4, lengths=[1.0, 2.0]), TypeError, "`lengths`"),
    (dict(x_shape=(3, 2), units=4, batch_sizes=[2, 2]), ValueError, "sum\\(batch_sizes\\)"),
    (dict(x_shape=(2, 2, 3), units=4, lengths=[2, 1], activation=np.tanh), ValueError,
     "must be names"),
    (dict(x_shape=(2, 2, 3), units=4, activation="nope"), ValueError, "`activation`"),
])
def test_explain_refuses_what_the_call_would(kwargs, error, match):
    with pytest.raises(error, match=match):
        ops.explain(**kwargs)
