"""`pylstm.nn.LSTMCell`: the doctests and bad input. Against torch.nn.LSTMCell:
parity/torch/test_nn_cell.py."""

import doctest

import numpy as np
import pytest

from pylstm.nn import LSTMCell
from pylstm.nn import cell as cell_module


def test_bad_input_is_named():
    cell = LSTMCell(3, 4, seed=0)
    with pytest.raises(ValueError, match=r"`input` must have shape \(batch, 3\).*\(2, 5\)"):
        cell(np.zeros((2, 5), "float32"))
    with pytest.raises(ValueError, match=r"`input`.*\(1, 2, 3\)"):
        cell(np.zeros((1, 2, 3), "float32"))
    with pytest.raises(TypeError, match="`input` must be a real floating"):
        cell(np.zeros((2, 3), "int64"))
    with pytest.raises(ValueError, match=r"`hx\[0\]` \(h_0\) must have shape \(2, 4\).*\(3, 4\)"):
        cell(np.zeros((2, 3), "float32"), (np.zeros((3, 4)), np.zeros((2, 4))))
    with pytest.raises(ValueError, match=r"`hx\[1\]` \(c_0\) must have shape \(4,\)"):
        cell(np.zeros(3, "float32"), (np.zeros(4), np.zeros((1, 4))))
    with pytest.raises(TypeError, match="`hx` must be a pair"):
        cell(np.zeros((2, 3), "float32"), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="`hidden_size` must be an int >= 1"):
        LSTMCell(3, 0)
    with pytest.raises(ValueError, match="`dtype`"):
        LSTMCell(3, 4, dtype="int32")
    cell.eval()
    cell(np.zeros((2, 3), "float32"))
    with pytest.raises(RuntimeError, match="training mode"):
        cell.backward(np.zeros((2, 4)))
    cell.train()
    cell(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match=r"`grad_c` must have shape \(2, 4\)"):
        cell.backward(None, np.zeros((4,)))
    with pytest.raises(ValueError, match=r"missing keys \['bias_hh'\]"):
        cell.load_state_dict({k: v for k, v in cell.state_dict().items() if k != "bias_hh"})
    with pytest.raises(ValueError, match=r"'weight_ih': expected shape \(16, 3\)"):
        cell.load_state_dict({**cell.state_dict(), "weight_ih": np.zeros((16, 4))})


def test_doctests():
    result = doctest.testmod(cell_module)
    assert result.attempted > 0 and result.failed == 0
