"""Parity with PyTorch's `torch.nn.LSTM` (CPU) on the same weights: outputs, final states and
every gradient, for `pylstm.ops` (forward, reverse, projection) and the `pylstm.layers.LSTM`
layer (return_sequences, return_state, initial_state, go_backwards).

Weight mapping (gate order i, f, c/g, o in both): `weight_ih_l0 = kernel.T`,
`weight_hh_l0 = recurrent_kernel.T`, `bias_ih_l0 + bias_hh_l0 = bias`,
`weight_hr_l0 = projection.T` (torch's `proj_size`). Both torch biases are random and non-zero,
so a wrong sum cannot pass.
"""

import numpy as np
import pytest
from pylstm_tests import require

from pylstm import ops
from pylstm.layers import LSTM

torch = require("torch")


pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections:UserWarning")

DTYPES = [
    # (numpy dtype, torch dtype, atol on outputs/states, rtol on gradients)
    pytest.param(np.float32, "float32", 1e-5, 1e-4, id="float32"),
    pytest.param(np.float64, "float64", 1e-12, 1e-10, id="float64"),
]
SHAPES = [  # (B, T, D, H, P); torch needs P < H, P = 0: no projection case
    (1, 1, 1, 1, 0), (1, 1, 1, 2, 1), (1, 6, 3, 5, 2), (4, 1, 2, 3, 1), (4, 6, 1, 1, 0),
    (3, 9, 7, 8, 3), (16, 12, 5, 16, 4),
]


def make_weights(rng, D, H, P=None):
    """Random weights in the pylstm layout plus the two torch biases that sum to `bias`."""
    P = P or H
    w = dict(kernel=rng.normal(size=(D, 4 * H)) * 0.5,
             recurrent_kernel=rng.normal(size=(P, 4 * H)) * 0.5,
             bias_ih=rng.normal(size=4 * H) * 0.5,
             bias_hh=rng.normal(size=4 * H) * 0.5)
    if P != H:
        w["projection"] = rng.normal(size=(H, P)) * 0.5
    w["bias"] = w["bias_ih"] + w["bias_hh"]
    return w


def load_direction(module, w, suffix, tdtype):
    """Copies pylstm-layout weights into one direction (`""` or `"_reverse"`) of `module`."""
    names = {"weight_ih_l0": w["kernel"].T, "weight_hh_l0": w["recurrent_kernel"].T,
             "bias_ih_l0": w["bias_ih"], "bias_hh_l0": w["bias_hh"]}
    if "projection" in w:
        names["weight_hr_l0"] = w["projection"].T
    with torch.no_grad():
        for name, value in names.items():
            getattr(module, name + suffix).copy_(torch.tensor(np.ascontiguousarray(value),
                                                              dtype=tdtype))


def torch_lstm(D, H, P, tdtype, bidirectional=False):
    return torch.nn.LSTM(D, H, batch_first=True, bidirectional=bidirectional,
                         proj_size=P if P != H else 0, dtype=tdtype)


def assert_close(got, want, rtol, atol, msg=""):
    """Elementwise `|got - want| <= atol * max(1, max|want|) + rtol * |want|`."""
    want = np.asarray(want, dtype=np.float64)
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=rtol,
                               atol=atol * scale, err_msg=msg)


def torch_run(module, x, h0, c0, dy, dh, dc, direction, tdtype):
    """Forward + backward of `<out, dy> + <h_n, dh> + <c_n, dc>` for one direction of a
    (possibly bidirectional) torch LSTM. Returns numpy outputs and gradients."""
    num_dirs = 2 if module.bidirectional else 1
    B = x.shape[0]
    P = h0.shape[1]
    H = c0.shape[1]
    t = lambda a: torch.tensor(a, dtype=tdtype, requires_grad=True)  # noqa: E731
    xt = t(x)
    h0_full = np.zeros((num_dirs, B, P))
    c0_full = np.zeros((num_dirs, B, H))
    h0_full[direction], c0_full[direction] = h0, c0
    h0t, c0t = t(h0_full), t(c0_full)
    out, (h_n, c_n) = module(xt, (h0t, c0t))
    out_dir = out[..., direction * P:(direction + 1) * P]
    # The other direction gets a zero upstream gradient, so it adds nothing to dx.
    loss = ((out_dir * torch.tensor(dy, dtype=tdtype)).sum()
            + (h_n[direction] * torch.tensor(dh, dtype=tdtype)).sum()
            + (c_n[direction] * torch.tensor(dc, dtype=tdtype)).sum())
    loss.backward()
    sfx = "_reverse" if direction else ""
    grads = {"x": xt.grad.numpy(), "h0": h0t.grad[direction].numpy(),
             "c0": c0t.grad[direction].numpy(),
             "kernel": getattr(module, "weight_ih_l0" + sfx).grad.numpy().T,
             "recurrent_kernel": getattr(module, "weight_hh_l0" + sfx).grad.numpy().T,
             "bias_ih": getattr(module, "bias_ih_l0" + sfx).grad.numpy(),
             "bias_hh": getattr(module, "bias_hh_l0" + sfx).grad.numpy()}
    if module.proj_size:
        grads["projection"] = getattr(module, "weight_hr_l0" + sfx).grad.numpy().T
    detach = lambda a: a.detach().numpy()  # noqa: E731
    return (detach(out_dir), detach(h_n[direction]), detach(c_n[direction])), grads


@pytest.mark.parametrize("dtype,tname,atol,rtol", DTYPES)
@pytest.mark.parametrize("B,T,D,H,P,mode", [
    (*shape, mode) for shape in SHAPES
    for mode in ("forward", "reverse", "projection", "reverse_projection")
    if shape[-1] or "projection" not in mode])
def test_ops_match_torch(dtype, tname, atol, rtol, B, T, D, H, P, mode):
    rng = np.random.default_rng([B, T, D, H, P, len(mode)])
    tdtype = getattr(torch, tname)
    reverse = mode.startswith("reverse")
    P = P if "projection" in mode else H
    w = make_weights(rng, D, H, P)
    x = rng.normal(size=(B, T, D))
    h0 = rng.normal(size=(B, P))
    c0 = rng.normal(size=(B, H))
    dy, dh, dc = rng.normal(size=(B, T, P)), rng.normal(size=(B, P)), rng.normal(size=(B, H))

    module = torch_lstm(D, H, P, tdtype, bidirectional=reverse)
    if reverse:  # the forward direction gets other weights; only the reverse one is compared
        load_direction(module, make_weights(rng, D, H, P), "", tdtype)
    load_direction(module, w, "_reverse" if reverse else "", tdtype)
    (t_y, t_h, t_c), t_grads = torch_run(module, x, h0, c0, dy, dh, dc, int(reverse), tdtype)

    cast = lambda a: np.asarray(a, dtype=dtype)  # noqa: E731
    y, h_n, c_n, cache = ops.lstm_forward(
        cast(x), cast(w["kernel"]), cast(w["recurrent_kernel"]), cast(w["bias"]), cast(h0),
        cast(c0), projection=cast(w["projection"]) if "projection" in w else None,
        reverse=reverse, training=True)
    assert y.dtype == h_n.dtype == c_n.dtype == dtype
    assert y.shape == (B, T, P) and h_n.shape == (B, P) and c_n.shape == (B, H)
    assert_close(y, t_y, 0, atol, "y")
    assert_close(h_n, t_h, 0, atol, "h_n")
    assert_close(c_n, t_c, 0, atol, "c_n")

    grads = ops.lstm_backward(cache, cast(dy), cast(dh), cast(dc))
    # torch's two bias gradients are each d loss / d bias.
    assert_close(t_grads["bias_ih"], t_grads["bias_hh"], rtol, rtol)
    t_grads["bias"] = t_grads.pop("bias_ih")
    del t_grads["bias_hh"]
    if "projection" not in w:
        assert grads["projection"] is None
    for name, want in t_grads.items():
        assert grads[name].dtype == dtype, name
        assert grads[name].shape == want.shape, name
        assert_close(grads[name], want, rtol, rtol, f"d{name}")


@pytest.mark.parametrize("dtype,tname,atol,rtol", DTYPES)
def test_return_sequences_false_matches_last_torch_output(dtype, tname, atol, rtol):
    rng = np.random.default_rng(7)
    B, T, D, H = 3, 5, 4, 6
    tdtype = getattr(torch, tname)
    w = make_weights(rng, D, H)
    x = rng.normal(size=(B, T, D))
    dy = rng.normal(size=(B, H))
    module = torch_lstm(D, H, H, tdtype)
    load_direction(module, w, "", tdtype)
    xt = torch.tensor(x, dtype=tdtype, requires_grad=True)
    out, _ = module(xt)
    (out[:, -1] * torch.tensor(dy, dtype=tdtype)).sum().backward()

    cast = lambda a: np.asarray(a, dtype=dtype)  # noqa: E731
    y, _, _, cache = ops.lstm_forward(cast(x), cast(w["kernel"]), cast(w["recurrent_kernel"]),
                                      cast(w["bias"]), training=True, return_sequences=False)
    assert y.shape == (B, H)
    assert_close(y, out[:, -1].detach().numpy(), 0, atol)
    grads = ops.lstm_backward(cache, cast(dy))
    assert_close(grads["x"], xt.grad.numpy(), rtol, rtol)
    assert_close(grads["kernel"], module.weight_ih_l0.grad.numpy().T, rtol, rtol)


# The Keras-style layer ------------------------------------------------------------------------


def make_layer(w, dtype, D, **kwargs):
    layer = LSTM(w["recurrent_kernel"].shape[0], dtype=np.dtype(dtype).name, **kwargs)
    layer.build((None, None, D))
    layer.set_weights([w["kernel"].astype(dtype), w["recurrent_kernel"].astype(dtype),
                       w["bias"].astype(dtype)])
    return layer


@pytest.mark.parametrize("dtype,tname,atol,rtol", DTYPES)
@pytest.mark.parametrize("B,T,D,H", [(1, 1, 2, 3), (5, 7, 4, 6), (2, 10, 1, 9)])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("return_state", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("with_initial_state", [False, True])
def test_layer_matches_torch(dtype, tname, atol, rtol, B, T, D, H, return_sequences,
                             return_state, go_backwards, with_initial_state):
    rng = np.random.default_rng([B, T, D, H, return_sequences, return_state, go_backwards,
                                 with_initial_state])
    tdtype = getattr(torch, tname)
    w = make_weights(rng, D, H)
    x = rng.normal(size=(B, T, D))
    h0 = rng.normal(size=(B, H)) if with_initial_state else np.zeros((B, H))
    c0 = rng.normal(size=(B, H)) if with_initial_state else np.zeros((B, H))
    dseq = rng.normal(size=(B, T, H))
    dh = rng.normal(size=(B, H)) if return_state else np.zeros((B, H))
    dc = rng.normal(size=(B, H)) if return_state else np.zeros((B, H))

    # Keras's go_backwards == torch on the time-flipped input, output in processing order.
    x_torch = x[:, ::-1].copy() if go_backwards else x
    d_last = rng.normal(size=(B, H))
    if return_sequences:
        dseq_torch, dh_torch = dseq, dh
    else:  # the layer's output is the last processed step's h, which is h_n
        dseq_torch, dh_torch = np.zeros_like(dseq), dh + d_last
    module = torch_lstm(D, H, H, tdtype)
    load_direction(module, w, "", tdtype)
    (t_y, t_h, t_c), t_grads = torch_run(module, x_torch, h0, c0, dseq_torch, dh_torch, dc, 0,
                                         tdtype)
    if go_backwards:
        t_grads["x"] = t_grads["x"][:, ::-1]

    layer = make_layer(w, dtype, D, return_sequences=return_sequences,
                       return_state=return_state, go_backwards=go_backwards)
    cast = lambda a: np.asarray(a, dtype=dtype)  # noqa: E731
    kwargs = {"initial_state": [cast(h0), cast(c0)]} if with_initial_state else {}
    result = layer(cast(x), training=True, **kwargs)
    if return_state:
        assert isinstance(result, list) and len(result) == 3
        y, h_n, c_n = result
        assert_close(h_n, t_h, 0, atol, "h_n")
        assert_close(c_n, t_c, 0, atol, "c_n")
    else:
        y = result
    assert y.dtype == dtype
    if return_sequences:
        assert y.shape == (B, T, H)
        assert_close(y, t_y, 0, atol, "y")
    else:
        assert y.shape == (B, H)
        assert_close(y, t_y[:, -1], 0, atol, "y")

    d_out = cast(dseq) if return_sequences else cast(d_last)
    grad_outputs = [d_out, cast(dh), cast(dc)] if return_state else d_out
    back = layer.backward(grad_outputs)
    if with_initial_state:
        dx, (dh0, dc0) = back
        assert_close(dh0, t_grads["h0"], rtol, rtol, "dh0")
        assert_close(dc0, t_grads["c0"], rtol, rtol, "dc0")
    else:
        dx = back
    assert dx.shape == (B, T, D)
    assert_close(dx, t_grads["x"], rtol, rtol, "dx")
    assert_close(layer.kernel.grad, t_grads["kernel"], rtol, rtol, "dkernel")
    assert_close(layer.recurrent_kernel.grad, t_grads["recurrent_kernel"], rtol, rtol,
                 "drecurrent_kernel")
    assert_close(layer.bias.grad, t_grads["bias_ih"], rtol, rtol, "dbias")
