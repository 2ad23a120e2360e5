"""`pylstm.nn.LSTM(input, hx, lengths=...)` against torch on `pack_padded_sequence` input."""

import numpy as np
import pytest
from pylstm_tests import require

from pylstm.nn import LSTM

torch = require("torch")

L, N, D, H = 6, 3, 4, 5
LENGTHS = np.array([3, 6, 1])


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_lengths_match_torch_packed(batch_first, bidirectional):
    rng = np.random.default_rng(0)
    ours = LSTM(D, H, num_layers=2, bidirectional=bidirectional, batch_first=batch_first,
                seed=0)
    theirs = torch.nn.LSTM(D, H, num_layers=2, bidirectional=bidirectional,
                           batch_first=batch_first)
    theirs.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in ours.state_dict().items()})
    x = rng.normal(size=(N, L, D) if batch_first else (L, N, D)).astype("float32")
    n = 2 * (2 if bidirectional else 1)
    h0 = rng.normal(size=(n, N, H)).astype("float32")
    c0 = rng.normal(size=(n, N, H)).astype("float32")
    y, (h_n, c_n) = ours(x, (h0, c0), lengths=LENGTHS)

    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        xt, torch.from_numpy(LENGTHS), batch_first=batch_first, enforce_sorted=False)
    yt, (ht, ct) = theirs(packed, (h0t, torch.from_numpy(c0)))
    yt, _ = torch.nn.utils.rnn.pad_packed_sequence(yt, batch_first=batch_first, total_length=L)
    for a, b in ((y, yt), (h_n, ht), (c_n, ct)):
        np.testing.assert_allclose(a, b.detach().numpy(), rtol=1e-5, atol=1e-6)

    g = rng.normal(size=y.shape).astype("float32")
    gh = rng.normal(size=h_n.shape).astype("float32")
    dx, (dh0, _) = ours.backward(g, gh, return_hx_grad=True)
    ((yt * torch.from_numpy(g)).sum() + (ht * torch.from_numpy(gh)).sum()).backward()
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dh0, h0t.grad.numpy(), rtol=1e-4, atol=1e-6)
    for (name, ours_p), (_, theirs_p) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(ours_p.grad, theirs_p.grad.numpy(), rtol=1e-4, atol=1e-6,
                                   err_msg=name)
