"""Argument checks of `pylstm.ops` (`pylstm.ops._arguments`): each input array is scanned for
NaN and inf once per call, by whoever names it to the user."""

import numpy as np
import pytest

from pylstm import layers, ops
from pylstm.ops import _arguments


@pytest.fixture
def scans(monkeypatch):
    """The names `pylstm.ops` scans for NaN and inf, in order."""
    seen = []
    check = _arguments.check_finite

    def counting(arr, name):
        seen.append(name)
        return check(arr, name)

    monkeypatch.setattr(_arguments, "check_finite", counting)
    return seen


def test_ops_scans_x_itself(scans):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4)).astype(np.float32)
    ops.lstm_forward(x, np.zeros((4, 8), np.float32), np.zeros((2, 8), np.float32))
    assert scans == ["x"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_layer_input_is_scanned_once(scans, dtype):
    """The layer scans its `inputs` (and names them so); ops does not scan them again, but
    for an input cast to the weights' dtype (float64 values can overflow float32)."""
    layer = layers.LSTM(3, seed=0)
    x = np.ones((2, 4, 5), dtype)
    layer(x)
    assert scans == ([] if dtype == "float32" else ["x"])
    x[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="`inputs` contains 1 NaN"):
        layer(x)
    big = np.full((1, 2, 5), 1e300)
    with pytest.raises(ValueError, match="`x` contains 10 NaN or inf"):
        layer(big)
    del scans[:]
    for state_dtype in ("float32", "float64"):     # the layer casts, then scans
        layer(np.ones((2, 4, 5), "float32"), initial_state=[np.ones((2, 3), state_dtype)] * 2)
    assert scans == []


def test_carried_states_are_scanned():
    """A stateful layer's carried state was never scanned: ops scans it."""
    layer = layers.LSTM(3, seed=0, stateful=True, activation="linear",
                        recurrent_activation="linear")
    layer(np.full((1, 2, 5), 1e30, "float32"))
    with pytest.raises(ValueError, match="`h0` contains"):
        layer(np.ones((1, 2, 5), "float32"))


def test_a_cell_input_is_scanned_once(scans):
    cell = layers.LSTMCell(3, seed=0)
    cell(np.ones((2, 5), np.float32))
    assert scans == []
