"""Inference in chunks of steps against PyTorch's LSTM across chunk boundaries. The chunks'
bits against one chunk and the training forward: unit/test_ops_chunked.py."""

import numpy as np
from pylstm_tests import require

from pylstm import _plan, ops

torch = require("torch")

TC = 4  # steps per chunk in these tests


def _chunk_bytes(B, H, dtype, steps=TC):
    return steps * B * 4 * H * np.dtype(dtype).itemsize


def _run(chunk_bytes, *args, **kwargs):
    with _plan.forced(chunk_bytes=chunk_bytes):
        return ops.lstm_forward(*args, **kwargs)


def test_torch_parity_across_chunks():
    rng = np.random.default_rng(5)
    B, T, D, H = 3, 3 * TC + 2, 4, 5
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(D, H, batch_first=True)
    x = rng.normal(size=(B, T, D)).astype(np.float32)
    h0 = rng.normal(size=(1, B, H)).astype(np.float32)
    c0 = rng.normal(size=(1, B, H)).astype(np.float32)
    with torch.no_grad():
        want, (h_n, c_n) = lstm(torch.from_numpy(x), (torch.from_numpy(h0), torch.from_numpy(c0)))
    kernel = lstm.weight_ih_l0.detach().numpy().T.copy()
    recurrent_kernel = lstm.weight_hh_l0.detach().numpy().T.copy()
    bias = (lstm.bias_ih_l0 + lstm.bias_hh_l0).detach().numpy()
    y, h, c, _ = _run(_chunk_bytes(B, H, np.float32), x, kernel, recurrent_kernel,
                      bias, h0[0], c0[0])
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, h_n[0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c, c_n[0].numpy(), rtol=1e-5, atol=1e-6)
