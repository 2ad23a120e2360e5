"""pylstm._stack: layers in sequence, directions side by side, forward and backward (the loop of
`pylstm.nn.LSTM` and `pylstm.layers.RNN`; their results are pinned by test_golden.py)."""

import types

import numpy as np
import pytest

from pylstm import _stack, _threads


@pytest.fixture(params=["one after the other", "side by side"])
def side(request, monkeypatch):
    if request.param == "side by side":
        monkeypatch.setattr(_threads, "concurrently",
                            lambda calls, flop: _threads_in_reverse(calls))
    return request.param


def _threads_in_reverse(calls):
    """Runs the calls last first, as threads may: the stack must not depend on the order."""
    results = [call() for call in reversed(calls)]
    return results[::-1]


def test_forward_concatenates_directions_and_applies_between(side):
    P, calls, seen = 2, [], []

    def run(layer, d, x):
        calls.append((layer, d))
        y = np.full(x.shape[:-1] + (P,), 10.0 * layer + d) + x.sum(-1, keepdims=True)
        return y, types.SimpleNamespace(x=x, k=(layer, d))

    def between(layer, x):
        seen.append(layer)
        return 2 * x

    x = np.ones((4, 3, 5))
    y, caches = _stack.forward(x, 3, run, num_directions=2, output_size=P,
                               flop=lambda x: 0, between=between)
    assert seen == [1, 2] and sorted(calls) == [(k, d) for k in range(3) for d in range(2)]
    assert [c.k for c in caches] == [(k, d) for k in range(3) for d in range(2)]
    layer0 = np.concatenate([np.full((4, 3, P), 5.0), np.full((4, 3, P), 6.0)], axis=-1)
    np.testing.assert_array_equal(caches[2].x, 2 * layer0)
    assert y.shape == (4, 3, 2 * P)
    top_input = caches[4].x.sum(-1, keepdims=True)
    np.testing.assert_array_equal(y[..., :P], np.broadcast_to(20 + top_input, (4, 3, P)))
    np.testing.assert_array_equal(y[..., P:], np.broadcast_to(21 + top_input, (4, 3, P)))


def test_one_direction_returns_its_output_as_is():
    out = np.arange(6.0).reshape(2, 3)
    y, caches = _stack.forward(np.zeros((2, 4)), 1, lambda layer, d, x: (out, "cache"))
    assert y is out and caches == ["cache"]


def test_backward_runs_top_first_splits_dy_and_sums_dx(side):
    P, taken = 2, []
    caches = [types.SimpleNamespace(x=np.zeros((3, 5))) for _ in range(4)]

    def run_backward(layer, d, dy_d):
        assert dy_d.shape == (3, P)
        return {"x": np.full((3, 2 * P), 100.0 * layer + d) + dy_d.sum(), "k": (layer, d)}

    def take(k, grads):
        taken.append((k, grads["k"]))

    dy = np.ones((3, 2 * P))
    dx = _stack.backward(dy, caches, 2, run_backward, take, num_directions=2, output_size=P,
                         flop=lambda x: 0, between=lambda layer, dx: dx / 2)
    assert taken == [(2, (1, 0)), (3, (1, 1)), (0, (0, 0)), (1, (0, 1))]
    # layer 1: each half of dy sums to 6, dx = (100 + 6) + (101 + 6), halved by `between`
    dy0 = ((100 + 6) + (101 + 6)) / 2
    half = dy0 * 3 * P
    np.testing.assert_array_equal(dx, np.full((3, 2 * P), ((0 + half) + (1 + half)) / 2))


def test_recurrent_flop_counts_rows_times_the_recurrent_product():
    assert _stack.recurrent_flop(np.zeros((7, 3, 5)), units=4, output_size=2) == 2 * 21 * 2 * 16
    assert _stack.recurrent_flop(np.zeros((2, 3, 0)), units=4, output_size=4) == 2 * 6 * 4 * 16
