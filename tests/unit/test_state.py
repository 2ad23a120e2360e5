"""pylstm.state: one state type for streaming, `pylstm.nn` and the stateful Keras-style layers.

`LSTMState` (one layer) does the work; `LSTMStepState` (a stack) and the states that stateful
`layers.LSTM` / `RNN` carry between batches are made of it."""

import doctest

import numpy as np
import pytest

from pylstm import layers, nn, state, streaming
from pylstm.state import LSTMState, LSTMStepState


def test_one_state_type_wherever_it_is_public():
    assert streaming.LSTMState is LSTMState
    assert nn.LSTMStepState is LSTMStepState
    lstm = nn.LSTM(2, 3, num_layers=2, seed=0)
    assert all(type(s) is LSTMState for s in lstm.initial_state(4).layers)
    assert type(layers.LSTM(3, seed=0).initial_state(4)) is LSTMState


def test_stack_copy_reset_and_dict_go_through_its_layers():
    stack = LSTMStepState.zeros(3, batch_size=2, hidden_size=4, output_size=2, dtype="float64")
    for k, layer in enumerate(stack.layers):
        layer.h[...] = k + 1
        layer.c[...] = -(k + 1)
    copy = stack.copy()
    assert not any(np.shares_memory(a.h, b.h) for a, b in zip(copy.layers, stack.layers))
    stack.reset(np.array([True, False]))
    assert not stack.h[:, 0].any() and not stack.c[:, 0].any()
    np.testing.assert_array_equal(stack.h[:, 1, 0], [1, 2, 3])
    saved = copy.to_dict()
    assert saved["h"].shape == (3, 2, 2) and saved["c"].shape == (3, 2, 4)
    again = LSTMStepState.from_dict(saved)
    np.testing.assert_array_equal(again.c, copy.c)
    saved["c"][...] = 0  # from_dict copies
    assert again.c[2, 0, 0] == -3
    with pytest.raises(TypeError, match="`mask` must be a boolean array"):
        stack.reset(np.array([1, 0]))
    np.testing.assert_array_equal(stack.h[:, 1, 0], [1, 2, 3])  # a refused mask changes nothing
    with pytest.raises(ValueError, match=r"exactly the keys \['c', 'h'\], received \['h'\]"):
        LSTMStepState.from_dict({"h": np.zeros((1, 1, 2))})
    with pytest.raises(ValueError, match="`num_layers` must be an integer >= 1"):
        LSTMStepState.zeros(0, 2, 4)
    with pytest.raises(ValueError, match="share batch size and sizes"):
        LSTMStepState([LSTMState.zeros(2, 4), LSTMState.zeros(3, 4)])


@pytest.mark.parametrize("kind", ["lstm", "rnn", "stacked_rnn"])
def test_stateful_layers_carry_lstm_states(kind):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 2)).astype("float32")
    if kind == "lstm":
        layer = layers.LSTM(5, stateful=True, seed=0)
    elif kind == "rnn":
        layer = layers.RNN(layers.LSTMCell(5, seed=0), stateful=True)
    else:
        layer = layers.RNN([layers.LSTMCell(5, seed=0), layers.LSTMCell(3, seed=1)],
                           stateful=True)
    assert layer.states is None
    layer(x)
    carried = layer._carried
    assert all(type(s) is LSTMState for s in carried)
    # `states` keeps Keras's structure: [h, c] for LSTM, one [h, c] pair per cell for RNN
    pairs = [layer.states] if kind == "lstm" else layer.states
    assert len(pairs) == len(carried)
    for (h, c), s in zip(pairs, carried):
        assert h is s.h and c is s.c and h.shape[0] == 3
    layer.reset_state(np.array([False, True, False]))
    assert all(not s.h[1].any() and not s.c[1].any() and s.h[0].any() for s in carried)
    with pytest.raises(ValueError, match=r"`mask` of reset_state must be a \(3,\) boolean array, "
                                         r"received dtype int64 and shape \(3,\)"):
        layer.reset_state(np.array([1, 0, 1]))
    with pytest.raises(ValueError, match=r"must be a \(3,\) boolean array, received dtype bool "
                                         r"and shape \(2,\)"):
        layer.reset_state(np.array([True, False]))
    assert all(s.h[0].any() for s in carried)  # refused masks reset nothing
    # the next batch starts from the carried states: resetting all equals a fresh layer
    layer.reset_state()
    assert layer.states is None


def test_carried_state_is_the_next_initial_state():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 6, 3)).astype("float32")
    stateful = layers.LSTM(4, stateful=True, return_sequences=True, seed=3)
    whole = layers.LSTM(4, return_sequences=True, seed=3)
    halves = np.concatenate([stateful(x[:, :3]), stateful(x[:, 3:])], axis=1)
    np.testing.assert_allclose(halves, whole(x), rtol=1e-6, atol=1e-7)


def test_doctests():
    result = doctest.testmod(state)
    assert result.attempted > 0 and result.failed == 0
