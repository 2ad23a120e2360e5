"""`pylstm.nn.LSTM.step`: bidirectional modules and bad input raise clear errors. Stepping
against the whole sequence and torch.nn.LSTM: parity/torch/test_nn_step.py."""

import numpy as np
import pytest

from pylstm.nn import LSTM, LSTMStepState


def test_bidirectional_raises():
    model = LSTM(3, 4, bidirectional=True, seed=0)
    with pytest.raises(ValueError, match="unidirectional.*reverse direction"):
        model.step(np.zeros((1, 3), "float32"))


def test_bad_input_is_named():
    model = LSTM(3, 4, num_layers=2, seed=0)
    with pytest.raises(ValueError, match=r"`input_t` must have shape \(batch, 3\).*\(2, 5\)"):
        model.step(np.zeros((2, 5), "float32"))
    with pytest.raises(ValueError, match=r"`input_t`.*\(4, 2, 3\)"):
        model.step(np.zeros((4, 2, 3), "float32"))
    with pytest.raises(TypeError, match="`input_t` must be a real floating"):
        model.step(np.zeros((2, 3), "int32"))
    with pytest.raises(ValueError, match=r"`state` must hold 2 layer\(s\).*batch size 2"):
        model.step(np.zeros((2, 3), "float32"), model.initial_state(5))
    with pytest.raises(ValueError, match=r"`state` must hold 2 layer\(s\)"):
        model.step(np.zeros((2, 3), "float32"), LSTM(3, 4, seed=0).initial_state(2))
    with pytest.raises(TypeError, match="`state` must have dtype float32"):
        model.step(np.zeros((2, 3), "float32"),
                   LSTMStepState.zeros(2, 2, 4, dtype="float64"))
    with pytest.raises(TypeError, match="`state` must be an LSTMStepState"):
        model.step(np.zeros((2, 3), "float32"), "state")
    with pytest.raises(ValueError, match=r"`hx\[0\]` \(h_0\) must have shape \(2, 2, 4\)"):
        model.step(np.zeros((2, 3), "float32"), (np.zeros((2, 3, 4)), np.zeros((2, 2, 4))))
    with pytest.raises(ValueError, match=r"`new_state` must hold"):
        model.step(np.zeros((2, 3), "float32"), new_state=model.initial_state(1))
    with pytest.raises(ValueError, match=r"`out` must be a \(4,\) array"):
        model.step(np.zeros(3, "float32"), out=np.zeros((1, 4), "float32"))
    with pytest.raises(ValueError, match="NaN or inf"):
        model.step(np.full((1, 3), np.nan, "float32"))
    with pytest.raises(ValueError, match="exactly the keys"):
        LSTMStepState.from_dict({"h": np.zeros((1, 1, 4))})
