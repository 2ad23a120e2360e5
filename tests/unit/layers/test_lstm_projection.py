"""The Keras-style LSTM layer's `proj_size` (LSTMP) in a model and its config, and bad values.
Against torch.nn.LSTM(proj_size=...): parity/torch/test_lstm_projection.py."""

import numpy as np
import pytest

from pylstm.layers import LSTM
from pylstm.models import Sequential

B, T, D, H, P = 3, 5, 4, 6, 2


def test_projection_in_a_model_and_config():
    model = Sequential([LSTM(H, proj_size=P, input_shape=(T, D))])
    assert model.predict(np.zeros((2, T, D), dtype="float32")).shape == (2, P)
    config = model.layers[0].get_config()
    assert config["proj_size"] == P
    assert LSTM.from_config(config).proj_size == P


@pytest.mark.parametrize("proj_size", [H, 7, -1, 2.0, True])
def test_bad_proj_size(proj_size):
    with pytest.raises(ValueError, match=r"`proj_size` must be None or an int in \[0, units=6\)"):
        LSTM(H, proj_size=proj_size)
