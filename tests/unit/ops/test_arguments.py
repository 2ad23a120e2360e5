"""Argument checks of `pylstm.ops` (`pylstm.ops._arguments`): each input array is scanned for
NaN and inf once per call, by whoever names it to the user."""

import collections

import numpy as np
import pytest

from pylstm import _validation, layers, nn, ops
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


@pytest.fixture
def scanned(monkeypatch):
    """How many times each array is scanned for NaN and inf by anyone, layers or ops (every
    `check_finite` runs `pylstm._validation.all_finite`), by data address and shape."""
    seen = collections.Counter()
    scan = _validation.all_finite

    def counting(arr):
        seen[_key(arr)] += 1
        return scan(arr)

    monkeypatch.setattr(_validation, "all_finite", counting)
    return seen


def _key(arr):
    return arr.__array_interface__["data"][0], arr.shape


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


@pytest.mark.parametrize("cells", [1, 2, 3])
@pytest.mark.parametrize("training", [False, True])
def test_an_rnn_input_is_scanned_once(scans, scanned, cells, training):
    """`RNN` scans its `inputs` and `initial_state`; ops scans only each later cell's input,
    the output of the cell below."""
    stack = [layers.LSTMCell(3, seed=k) for k in range(cells)]
    rnn = layers.RNN(stack[0] if cells == 1 else stack)
    x = np.ones((2, 4, 5), np.float32)
    states = [[np.ones((2, 3), np.float32), np.ones((2, 3), np.float32)] for _ in stack]
    rnn(x, training=training, initial_state=states[0] if cells == 1 else states)
    assert scanned[_key(x)] == 1
    assert [scanned[_key(s)] for pair in states for s in pair] == [1, 1] * cells
    assert scans == ["x"] * (cells - 1)


def test_an_rnn_still_rejects_what_it_no_longer_scans_twice():
    rnn = layers.RNN([layers.LSTMCell(3, seed=0), layers.LSTMCell(3, seed=1)])
    x = np.ones((2, 4, 5), np.float32)
    x[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="`inputs` contains 1 NaN"):
        rnn(x)
    states = [[np.ones((2, 3), np.float32)] * 2,
              [np.ones((2, 3), np.float32), np.full((2, 3), np.inf)]]
    with pytest.raises(ValueError, match=r"`initial_state\[1\]\[1\]` contains 6 NaN or inf"):
        rnn(np.ones((2, 4, 5), np.float32), initial_state=states)
    linear = dict(activation="linear", recurrent_activation="linear")
    rnn = layers.RNN([layers.LSTMCell(3, seed=0, **linear), layers.LSTMCell(3, seed=1)])
    with pytest.raises(ValueError, match="`x` contains"):     # the first cell overflowed
        rnn(np.full((1, 2, 5), 1e30, np.float32))
    rnn = layers.RNN(layers.LSTMCell(3, seed=0, **linear), stateful=True)
    rnn(np.full((1, 2, 5), 1e30, np.float32))
    with pytest.raises(ValueError, match="`h0` contains"):    # carried states: ops scans them
        rnn(np.ones((1, 2, 5), np.float32))


def test_nn_lstm_scans_each_layer_input_once(scanned):
    """`nn.LSTM` leaves the scans to ops: the input, each layer's initial states and each
    later layer's input, once each."""
    lstm = nn.LSTM(5, 3, num_layers=2)
    x = np.ones((4, 2, 5), np.float32)
    h0, c0 = np.zeros((2, 2, 3), np.float32), np.zeros((2, 2, 3), np.float32)
    lstm(x, (h0, c0))
    assert scanned[_key(x)] == 1
    assert [scanned[_key(s[k])] for k in range(2) for s in (h0, c0)] == [1] * 4
    assert sum(n for (_, shape), n in scanned.items() if shape == (4, 2, 3)) == 1
