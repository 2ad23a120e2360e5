"""`pylstm.nn.LSTMCell` against `torch.nn.LSTMCell` on the same weights (loaded from torch's
own `state_dict`): outputs (float32, rtol 1e-5) in training and eval mode, gradients of the
input, of `hx` and of every parameter against torch autograd (rtol 1e-4), batched and
unbatched, with and without bias; in-place optimizer updates reach the compiled stepper;
bad input."""

import numpy as np
import pytest
from pylstm_tests import require

from pylstm import optimizers
from pylstm.nn import LSTMCell

torch = require("torch")

RTOL_Y, ATOL_Y = 1e-5, 1e-6
RTOL_G, ATOL_G = 1e-4, 1e-6


def make_pair(D, H, bias=True, seed=0):
    """A torch LSTMCell with non-default random weights (distinct biases, so a wrong bias sum
    cannot pass) and a pylstm LSTMCell loaded from its state_dict (tensors)."""
    torch.manual_seed(seed)
    tcell = torch.nn.LSTMCell(D, H, bias=bias)
    with torch.no_grad():
        for p in tcell.parameters():
            p.uniform_(-0.6, 0.6)
    cell = LSTMCell(D, H, bias=bias)
    assert cell.load_state_dict(tcell.state_dict()) == ([], [])
    return cell, tcell


def data(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("unbatched", [False, True])
@pytest.mark.parametrize("with_hx", [False, True])
def test_forward_and_gradients_match_torch(bias, unbatched, with_hx):
    D, H, N = 5, 7, 3
    cell, tcell = make_pair(D, H, bias)
    lead = () if unbatched else (N,)
    x = data(lead + (D,), 1)
    hx = (data(lead + (H,), 2), data(lead + (H,), 3)) if with_hx else None
    gh, gc = data(lead + (H,), 4), data(lead + (H,), 5)

    tx = torch.tensor(x, requires_grad=True)
    thx = None
    if with_hx:
        thx = tuple(torch.tensor(a, requires_grad=True) for a in hx)
    th, tc = tcell(tx, thx)
    ((th * torch.tensor(gh)).sum() + (tc * torch.tensor(gc)).sum()).backward()

    for mode in ("train", "eval"):
        getattr(cell, mode)()
        h1, c1 = cell(x, hx)
        assert h1.shape == c1.shape == lead + (H,) and h1.dtype == np.float32
        np.testing.assert_allclose(h1, th.detach().numpy(), rtol=RTOL_Y, atol=ATOL_Y)
        np.testing.assert_allclose(c1, tc.detach().numpy(), rtol=RTOL_Y, atol=ATOL_Y)

    cell.train()
    cell(x, hx)
    dx, (dh0, dc0) = cell.backward(gh, gc)
    assert dx.shape == x.shape and dh0.shape == dc0.shape == lead + (H,)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=RTOL_G, atol=ATOL_G)
    if with_hx:
        np.testing.assert_allclose(dh0, thx[0].grad.numpy(), rtol=RTOL_G, atol=ATOL_G)
        np.testing.assert_allclose(dc0, thx[1].grad.numpy(), rtol=RTOL_G, atol=ATOL_G)
    tparams = dict(tcell.named_parameters())
    assert [name for name, _ in cell.named_parameters()] == list(tparams)
    for name, var in cell.named_parameters():
        np.testing.assert_allclose(var.grad, tparams[name].grad.numpy(), rtol=RTOL_G,
                                   atol=ATOL_G, err_msg=name)


def test_parameters_and_init_follow_torch():
    cell = LSTMCell(3, 4, seed=0)
    tcell = torch.nn.LSTMCell(3, 4)
    ours = {k: v.shape for k, v in cell.state_dict().items()}
    assert ours == {k: tuple(v.shape) for k, v in tcell.state_dict().items()}
    bound = 1 / np.sqrt(4)
    for value in cell.state_dict().values():
        assert value.dtype == np.float32 and np.abs(value).max() <= bound
    tcell.load_state_dict({k: torch.from_numpy(v) for k, v in cell.state_dict().items()})
    assert repr(LSTMCell(3, 4, bias=False)) == "LSTMCell(3, 4, bias=False)"
    assert list(LSTMCell(3, 4, bias=False).state_dict()) == ["weight_ih", "weight_hh"]
    twin = LSTMCell(**cell.get_config())
    for k, v in cell.state_dict().items():
        np.testing.assert_array_equal(twin.state_dict()[k], v)


def test_steps_over_a_sequence_match_torch_in_float64():
    D, H, N, T = 3, 6, 2, 5
    cell = LSTMCell(D, H, dtype="float64", seed=3).eval()
    tcell = torch.nn.LSTMCell(D, H, dtype=torch.float64)
    tcell.load_state_dict({k: torch.from_numpy(v) for k, v in cell.state_dict().items()})
    x = np.random.default_rng(0).normal(size=(T, N, D))
    hx, thx = None, None
    for t in range(T):
        hx = cell(x[t], hx)
        thx = tcell(torch.from_numpy(x[t]), thx)
    np.testing.assert_allclose(hx[0], thx[0].detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(hx[1], thx[1].detach().numpy(), rtol=1e-12, atol=1e-13)


def test_eval_stepper_reads_the_parameters_updated_in_place():
    D, H, N = 4, 5, 2
    cell, tcell = make_pair(D, H)
    x, gh = data((N, D), 1), data((N, H), 2)
    cell.eval()
    cell(x)  # builds the stepper
    stepper = cell._stepper()  # this thread's
    assert np.shares_memory(stepper._kernel, cell.weight_ih.value)
    assert np.shares_memory(stepper._recurrent_kernel, cell.weight_hh.value)

    opt = optimizers.SGD(learning_rate=0.5)
    tsgd = torch.optim.SGD(tcell.parameters(), lr=0.5)
    for _ in range(3):
        cell.train()
        cell(x)
        cell.backward(gh)
        opt.apply(list(cell.parameters()))
        cell.zero_grad()
        tsgd.zero_grad()
        (tcell(torch.tensor(x))[0] * torch.tensor(gh)).sum().backward()
        tsgd.step()
        cell.eval()
        h1, c1 = cell(x)
        assert cell._stepper() is stepper  # same stepper, new values seen through it
        th, tc = tcell(torch.tensor(x))
        np.testing.assert_allclose(h1, th.detach().numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(c1, tc.detach().numpy(), rtol=1e-4, atol=1e-6)

    # A rebound parameter value rebuilds the stepper.
    cell.weight_hh.value = np.zeros((4 * H, H), dtype="float32")
    with torch.no_grad():
        tcell.weight_hh.zero_()
    h1, _ = cell(x)
    assert cell._stepper() is not stepper
    np.testing.assert_allclose(h1, tcell(torch.tensor(x))[0].detach().numpy(), rtol=1e-5,
                               atol=1e-6)


def test_state_dict_round_trip_and_file(tmp_path):
    cell, tcell = make_pair(3, 4)
    path = tmp_path / "cell.pt"
    torch.save(tcell.state_dict(), path)
    other = LSTMCell(3, 4, seed=9).eval()
    other(data((2, 3), 0))  # a stepper on the old weights
    other.load_state_dict(path)
    x = data((2, 3), 1)
    np.testing.assert_allclose(other(x)[0], tcell(torch.tensor(x))[0].detach().numpy(),
                               rtol=RTOL_Y, atol=ATOL_Y)
    for k, v in cell.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v)
