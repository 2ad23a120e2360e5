"""Variable-length sequences in pylstm.ops against PyTorch's packed nn.LSTM. Against the
NumPy reference and central differences: unit/test_lengths.py."""

import numpy as np
import pytest
from pylstm_tests import require

from pylstm import ops

torch = require("torch")


@pytest.mark.parametrize("proj", [0, 3])
def test_against_torch_packed_bidirectional(proj):
    rng = np.random.default_rng(3)
    B, T, D, H = 5, 8, 4, 6
    P = proj or H
    lengths = np.array([3, 8, 1, 5, 8])
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(D, H, bidirectional=True, batch_first=True, proj_size=proj)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    h0 = rng.normal(size=(2, B, P)).astype(np.float32)
    c0 = rng.normal(size=(2, B, H)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    h0t, c0t = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=True,
                                                     enforce_sorted=False)
    out, (hn, cn) = lstm(packed, (h0t, c0t))
    yt, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    dy = rng.normal(size=(B, T, 2 * P)).astype(np.float32)
    dh = rng.normal(size=(2, B, P)).astype(np.float32)
    dc = rng.normal(size=(2, B, H)).astype(np.float32)
    ((yt * torch.tensor(dy)).sum() + (hn * torch.tensor(dh)).sum()
     + (cn * torch.tensor(dc)).sum()).backward()

    dx = np.zeros_like(x)
    for d, sfx in enumerate(["", "_reverse"]):
        p = {n: getattr(lstm, n + "_l0" + sfx).detach().numpy() for n in
             ["weight_ih", "weight_hh", "bias_ih", "bias_hh"] + (["weight_hr"] if proj else [])}
        y, h_n, c_n, cache = ops.lstm_forward(
            x, p["weight_ih"].T.copy(), p["weight_hh"].T.copy(), p["bias_ih"] + p["bias_hh"],
            h0[d], c0[d], projection=p["weight_hr"].T.copy() if proj else None,
            reverse=bool(d), lengths=lengths, training=True)
        np.testing.assert_allclose(y, yt.detach().numpy()[..., d * P:(d + 1) * P], rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(h_n, hn.detach().numpy()[d], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c_n, cn.detach().numpy()[d], rtol=1e-5, atol=1e-6)
        g = ops.lstm_backward(cache, dy[..., d * P:(d + 1) * P], dh[d], dc[d])
        tg = lambda n: getattr(lstm, n + "_l0" + sfx).grad.numpy()
        np.testing.assert_allclose(g["kernel"], tg("weight_ih").T, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(g["recurrent_kernel"], tg("weight_hh").T, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(g["bias"], tg("bias_ih"), rtol=1e-4, atol=1e-5)
        if proj:
            np.testing.assert_allclose(g["projection"], tg("weight_hr").T, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(g["h0"], h0t.grad.numpy()[d], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(g["c0"], c0t.grad.numpy()[d], rtol=1e-4, atol=1e-5)
        dx += g["x"]
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
