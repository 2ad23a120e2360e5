"""The Keras-style LSTM layer's `proj_size` (LSTMP) against torch.nn.LSTM(proj_size=...)."""

import numpy as np
import pytest
from pylstm_tests import require

from pylstm.layers import LSTM

torch = require("torch")

B, T, D, H, P = 3, 5, 4, 6, 2


def torch_twin(layer):
    kernel, recurrent_kernel, bias, projection = layer.get_weights()
    twin = torch.nn.LSTM(D, H, proj_size=P, batch_first=True)
    with torch.no_grad():
        twin.weight_ih_l0.copy_(torch.from_numpy(kernel.T.copy()))
        twin.weight_hh_l0.copy_(torch.from_numpy(recurrent_kernel.T.copy()))
        twin.bias_ih_l0.copy_(torch.from_numpy(bias))
        twin.bias_hh_l0.zero_()
        twin.weight_hr_l0.copy_(torch.from_numpy(projection.T.copy()))
    return twin


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_projection_matches_torch_outputs_states_and_gradients():
    rng = np.random.default_rng(0)
    layer = LSTM(H, proj_size=P, return_sequences=True, return_state=True, seed=1)
    x = rng.normal(size=(B, T, D)).astype("float32")
    h0 = rng.normal(size=(B, P)).astype("float32")
    c0 = rng.normal(size=(B, H)).astype("float32")
    y, h, c = layer(x, training=True, initial_state=[h0, c0])
    assert [w.shape for w in layer.get_weights()] == [(D, 4 * H), (P, 4 * H), (4 * H,), (H, P)]
    twin = torch_twin(layer)
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0[None], requires_grad=True)
    c0t = torch.tensor(c0[None], requires_grad=True)
    yt, (ht, ct) = twin(xt, (h0t, c0t))
    for ours, theirs in ((y, yt), (h, ht[0]), (c, ct[0])):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-5, atol=1e-6)
    g = rng.normal(size=y.shape).astype("float32")
    gh = rng.normal(size=h.shape).astype("float32")
    dx, (dh0, dc0) = layer.backward([g, gh, None])
    ((yt * torch.from_numpy(g)).sum() + (ht[0] * torch.from_numpy(gh)).sum()).backward()
    pairs = [(dx, xt.grad), (dh0, h0t.grad[0]), (dc0, c0t.grad[0]),
             (layer.kernel.grad, twin.weight_ih_l0.grad.T),
             (layer.recurrent_kernel.grad, twin.weight_hh_l0.grad.T),
             (layer.bias.grad, twin.bias_ih_l0.grad),
             (layer.projection.grad, twin.weight_hr_l0.grad.T)]
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-4, atol=1e-6)
