"""Streaming inference (pylstm.streaming) against PyTorch's LSTMCell, and its LSTM with a
projection, stepped on the same weights."""

import numpy as np
import pytest
from pylstm_tests import require, run_steps, streaming_case

from pylstm.streaming import LSTMState, LSTMStepper


@pytest.mark.parametrize("B", [1, 4])
def test_matches_torch_lstm_cell(B):
    torch = require("torch")
    D, H = 5, 8
    w, x, h0, c0 = streaming_case(B, D, H, seed=3)
    cell = torch.nn.LSTMCell(D, H)
    rng = np.random.default_rng(4)
    b_hh = rng.uniform(-0.5, 0.5, 4 * H).astype("float32")
    with torch.no_grad():
        # PyTorch's W_ih is kernel^T (gate order i, f, g, o = Keras's i, f, c, o); its two
        # biases sum to the Keras bias.
        cell.weight_ih.copy_(torch.from_numpy(w["kernel"].T.copy()))
        cell.weight_hh.copy_(torch.from_numpy(w["recurrent_kernel"].T.copy()))
        cell.bias_ih.copy_(torch.from_numpy(w["bias"] - b_hh))
        cell.bias_hh.copy_(torch.from_numpy(b_hh))
    stepper = LSTMStepper(w["kernel"], w["recurrent_kernel"], w["bias"])
    state = LSTMState(h0.copy(), c0.copy())  # stepped in place: keep h0, c0 for torch
    h_t, c_t = torch.from_numpy(h0), torch.from_numpy(c0)
    out = np.empty((B, H), "float32")
    for t in range(x.shape[1]):
        y, state = stepper.step(np.ascontiguousarray(x[:, t]), state, out=out,
                                new_state=state)
        with torch.no_grad():
            h_t, c_t = cell(torch.from_numpy(x[:, t]), (h_t, c_t))
        np.testing.assert_allclose(y, h_t.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(state.c, c_t.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_matches_torch_lstm_with_projection():
    torch = require("torch")
    B, D, H, P = 2, 5, 8, 3
    w, x, h0, c0 = streaming_case(B, D, H, P, seed=5)
    module = torch.nn.LSTM(D, H, proj_size=P, batch_first=True)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(w["kernel"].T.copy()))
        module.weight_hh_l0.copy_(torch.from_numpy(w["recurrent_kernel"].T.copy()))
        module.weight_hr_l0.copy_(torch.from_numpy(w["projection"].T.copy()))
        module.bias_ih_l0.copy_(torch.from_numpy(w["bias"]))
        module.bias_hh_l0.zero_()
        y_t, (h_t, c_t) = module(torch.from_numpy(x), (torch.from_numpy(h0[None]),
                                                       torch.from_numpy(c0[None])))
    y, state = run_steps(LSTMStepper(**w), x, h0, c0)
    np.testing.assert_allclose(y, y_t.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.h, h_t[0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.c, c_t[0].numpy(), rtol=1e-5, atol=1e-6)
