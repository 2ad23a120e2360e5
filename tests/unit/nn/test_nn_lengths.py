"""`pylstm.nn.LSTM(input, hx, lengths=...)`: bad lengths. Against torch on
`pack_padded_sequence` input: parity/torch/test_nn_lengths.py."""

import numpy as np
import pytest

from pylstm.nn import LSTM

L, N, D, H = 6, 3, 4, 5


def test_lengths_errors():
    lstm = LSTM(D, H, seed=0)
    x = np.zeros((L, N, D), dtype="float32")
    with pytest.raises(ValueError):
        lstm(x, lengths=np.array([7, 1, 1]))
    with pytest.raises(ValueError):
        lstm(x, lengths=np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="3-D"):
        lstm(x[:, 0], lengths=np.array([2]))
