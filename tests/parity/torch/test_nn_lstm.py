"""`pylstm.nn.LSTM` against `torch.nn.LSTM` on the same weights (loaded from torch's own
`state_dict`): outputs and final states (float32, rtol 1e-5), gradients of the input, of
`hx` and of every parameter against torch autograd (rtol 1e-4), SGD training, dropout, the
`Sequential` adapter, and the errors of bad input."""

import numpy as np
import pytest
from pylstm_tests import require

from pylstm import layers, optimizers
from pylstm.models import Sequential
from pylstm.nn import LSTM

torch = require("torch")

pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections:UserWarning",
                                        "ignore:dropout=:UserWarning")


RTOL_Y, ATOL_Y = 1e-5, 1e-6
RTOL_G, ATOL_G = 1e-4, 1e-6

CONFIGS = [  # (num_layers, bidirectional, proj_size, batch_first, unbatched, with_hx)
    (1, False, 0, False, False, False),
    (1, True, 0, True, False, True),
    (2, False, 0, True, False, False),
    (2, True, 3, False, False, True),
    (3, False, 2, False, False, True),
    (3, True, 0, True, False, False),
    (1, False, 3, False, True, True),
    (2, True, 2, False, True, False),
    (3, True, 4, True, True, True),
]
IDS = [f"L{n}-{'bi' if b else 'uni'}-p{p}-{'bf' if bf else 'tm'}-{'unb' if u else 'bat'}-"
       f"{'hx' if h else 'nohx'}" for n, b, p, bf, u, h in CONFIGS]


def make_pair(D, H, seed=0, dtype="float32", **kwargs):
    """A torch LSTM with seeded random weights and a pylstm LSTM loaded from its state_dict
    (tensors, not arrays: the tensor conversion path)."""
    torch.manual_seed(seed)
    tmodel = torch.nn.LSTM(D, H, dtype=getattr(torch, dtype), **kwargs)
    with torch.no_grad():  # non-default, different biases: a wrong bias sum cannot pass
        for p in tmodel.parameters():
            p.uniform_(-0.6, 0.6)
    model = LSTM(D, H, dtype=dtype, **kwargs)
    assert model.load_state_dict(tmodel.state_dict()) == ([], [])
    return model, tmodel


def data(shape, seed, dtype="float32"):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


@pytest.mark.parametrize("num_layers,bidirectional,proj_size,batch_first,unbatched,with_hx",
                         CONFIGS, ids=IDS)
def test_forward_and_gradients_match_torch(num_layers, bidirectional, proj_size, batch_first,
                                           unbatched, with_hx):
    D, H, N, L = 4, 5, 3, 6
    model, tmodel = make_pair(D, H, num_layers=num_layers, bidirectional=bidirectional,
                              proj_size=proj_size, batch_first=batch_first)
    nd = 2 if bidirectional else 1
    P = proj_size or H
    x = data((L, D) if unbatched else ((N, L, D) if batch_first else (L, N, D)), 1)
    hx = None
    if with_hx:
        state = (nd * num_layers,) if unbatched else (nd * num_layers, N)
        hx = (data(state + (P,), 2), data(state + (H,), 3))

    y, (h_n, c_n) = model(x, hx)
    xt = torch.tensor(x, requires_grad=True)
    hxt = None if hx is None else tuple(torch.tensor(a, requires_grad=True) for a in hx)
    yt, (ht, ct) = tmodel(xt, hxt)
    for ours, theirs in ((y, yt), (h_n, ht), (c_n, ct)):
        assert ours.shape == tuple(theirs.shape) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=RTOL_Y, atol=ATOL_Y)

    gy, gh, gc = data(y.shape, 4), data(h_n.shape, 5), data(c_n.shape, 6)
    loss = (yt * torch.tensor(gy)).sum() + (ht * torch.tensor(gh)).sum() + \
        (ct * torch.tensor(gc)).sum()
    loss.backward()
    dx, (dh0, dc0) = model.backward(gy, gh, gc, return_hx_grad=True)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=RTOL_G, atol=ATOL_G)
    if hx is not None:
        np.testing.assert_allclose(dh0, hxt[0].grad.numpy(), rtol=RTOL_G, atol=ATOL_G)
        np.testing.assert_allclose(dc0, hxt[1].grad.numpy(), rtol=RTOL_G, atol=ATOL_G)
    tparams = dict(tmodel.named_parameters())
    names = [name for name, _ in model.named_parameters()]
    assert names == list(tparams)
    for name, var in model.named_parameters():
        np.testing.assert_allclose(var.grad, tparams[name].grad.numpy(), rtol=RTOL_G,
                                   atol=ATOL_G, err_msg=name)


def test_float64_matches_torch_tightly():
    model, tmodel = make_pair(3, 4, dtype="float64", num_layers=2, bidirectional=True,
                              proj_size=2)
    x = data((5, 2, 3), 0, "float64")
    y, (h_n, c_n) = model(x)
    xt = torch.tensor(x, requires_grad=True)
    yt, (ht, ct) = tmodel(xt)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-13)
    yt.sum().backward()
    dx = model.backward(np.ones_like(y))
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, var in model.named_parameters():
        np.testing.assert_allclose(var.grad, dict(tmodel.named_parameters())[name].grad,
                                   rtol=1e-10, atol=1e-12, err_msg=name)


def test_parameters_names_shapes_and_default_init():
    model = LSTM(3, 8, num_layers=2, bidirectional=True, proj_size=2, seed=7)
    tmodel = torch.nn.LSTM(3, 8, num_layers=2, bidirectional=True, proj_size=2)
    ours = {name: var.shape for name, var in model.named_parameters()}
    assert ours == {name: tuple(p.shape) for name, p in tmodel.named_parameters()}
    assert list(model.state_dict()) == list(tmodel.state_dict())
    assert model.weight_hr_l1_reverse is dict(model.named_parameters())["weight_hr_l1_reverse"]
    values = np.concatenate([v.value.ravel() for v in model.parameters()])
    bound = 1 / np.sqrt(8)
    assert values.dtype == np.float32 and np.abs(values).max() <= bound
    assert abs(values.mean()) < 0.05 and abs(values.std() - bound / np.sqrt(3)) < 0.02
    again = LSTM(3, 8, num_layers=2, bidirectional=True, proj_size=2, seed=7)
    other = LSTM(3, 8, num_layers=2, bidirectional=True, proj_size=2, seed=8)
    assert all(np.array_equal(a, b) for a, b in zip(model.state_dict().values(),
                                                    again.state_dict().values()))
    assert not np.array_equal(model.weight_ih_l0.value, other.weight_ih_l0.value)
    no_bias = LSTM(3, 4, bias=False)
    assert [n for n, _ in no_bias.named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]
    assert repr(model) == repr(tmodel)


def test_no_bias_matches_torch():
    model, tmodel = make_pair(3, 4, bias=False, num_layers=2)
    x = data((4, 2, 3), 0)
    np.testing.assert_allclose(model(x)[0], tmodel(torch.tensor(x))[0].detach().numpy(),
                               rtol=RTOL_Y, atol=ATOL_Y)


def test_dropout_eval_matches_torch_and_train_is_seeded():
    model, tmodel = make_pair(3, 4, num_layers=3, dropout=0.5, bidirectional=True)
    x = data((5, 2, 3), 0)
    model.eval()
    tmodel.eval()
    y, (h_n, _) = model(x)
    yt, (ht, _) = tmodel(torch.tensor(x))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=RTOL_Y, atol=ATOL_Y)
    np.testing.assert_allclose(h_n, ht.detach().numpy(), rtol=RTOL_Y, atol=ATOL_Y)
    assert not model.training and model.train().training

    a = LSTM(3, 4, num_layers=3, dropout=0.5, seed=3)
    b = LSTM(3, 4, num_layers=3, dropout=0.5, seed=3)
    ya, yb = a(x)[0], b(x)[0]
    np.testing.assert_array_equal(ya, yb)  # same seed, same masks
    assert not np.allclose(ya, a(x)[0])  # fresh masks per call
    assert not np.allclose(ya, a.eval()(x)[0])
    np.testing.assert_array_equal(a(x)[0], a(x)[0])  # eval: deterministic


def test_sgd_steps_match_torch():
    model, tmodel = make_pair(3, 5, num_layers=2, bidirectional=True, proj_size=2)
    opt = optimizers.SGD(learning_rate=0.1, momentum=0.9)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.1, momentum=0.9)
    for step in range(4):
        x, target = data((6, 4, 3), 10 + step), data((6, 4, 4), 20 + step)
        model.zero_grad()
        y, _ = model(x)
        model.backward(2 * (y - target) / y.size)
        opt.apply(list(model.parameters()))
        topt.zero_grad()
        ((tmodel(torch.tensor(x))[0] - torch.tensor(target)) ** 2).mean().backward()
        topt.step()
    for name, p in tmodel.named_parameters():
        np.testing.assert_allclose(getattr(model, name).value, p.detach().numpy(), rtol=1e-5,
                                   atol=1e-6, err_msg=name)


@pytest.mark.parametrize("return_sequences,bidirectional", [(False, False), (True, True)])
def test_sequential_train_step_matches_torch(return_sequences, bidirectional):
    D, H, N, L = 3, 4, 5, 6
    model, tmodel = make_pair(D, H, num_layers=2, bidirectional=bidirectional,
                              batch_first=True)
    nd = 2 if bidirectional else 1
    tdense = torch.nn.Linear(nd * H, 2)
    dense = layers.Dense(2)
    seq = Sequential([model.as_layer(return_sequences=return_sequences), dense])
    seq.build((None, L, D))
    dense.set_weights([tdense.weight.detach().numpy().T, tdense.bias.detach().numpy()])
    seq.compile(optimizer=optimizers.SGD(learning_rate=0.5), loss="mse")
    topt = torch.optim.SGD(list(tmodel.parameters()) + list(tdense.parameters()), lr=0.5)
    x = data((N, L, D), 0)
    y = data((N, L, 2) if return_sequences else (N, 2), 1)
    for _ in range(2):
        seq.train_on_batch(x, y)
        topt.zero_grad()
        out, (h_n, _) = tmodel(torch.tensor(x))
        feats = out if return_sequences else torch.cat(list(h_n[-nd:]), dim=-1)
        ((tdense(feats) - torch.tensor(y)) ** 2).mean().backward()
        topt.step()
    for name, p in tmodel.named_parameters():
        np.testing.assert_allclose(getattr(model, name).value, p.detach().numpy(), rtol=1e-5,
                                   atol=1e-6, err_msg=name)
    np.testing.assert_allclose(dense.kernel.value, tdense.weight.detach().numpy().T,
                               rtol=1e-5, atol=1e-6)
    out, (h_n, _) = tmodel(torch.tensor(x))
    feats = out if return_sequences else torch.cat(list(h_n[-nd:]), dim=-1)
    np.testing.assert_allclose(seq.predict(x), tdense(feats).detach().numpy(), rtol=1e-4,
                               atol=1e-5)


# Packed sequences (pylstm.nn.utils.rnn) ------------------------------------------------------

@pytest.mark.parametrize("enforce_sorted,bidirectional,proj_size,with_hx",
                         [(True, False, 0, False), (False, True, 2, True),
                          (False, False, 3, True)])
def test_packed_sequence_matches_torch(enforce_sorted, bidirectional, proj_size, with_hx):
    from pylstm.nn.utils import rnn

    D, H, N, L = 3, 4, 4, 6
    lengths = np.array([6, 4, 3, 1]) if enforce_sorted else np.array([3, 6, 1, 4])
    model, tmodel = make_pair(D, H, num_layers=2, bidirectional=bidirectional,
                              proj_size=proj_size, batch_first=True)
    nd, P = (2 if bidirectional else 1), proj_size or H
    x = data((N, L, D), 0)
    hx = (data((2 * nd, N, P), 1), data((2 * nd, N, H), 2)) if with_hx else None
    packed = rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                      enforce_sorted=enforce_sorted)
    out, (h_n, c_n) = model(packed, hx)
    assert isinstance(out, rnn.PackedSequence)

    xt = torch.tensor(x, requires_grad=True)
    hxt = None if hx is None else tuple(torch.tensor(a, requires_grad=True) for a in hx)
    tpacked = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths),
                                                      batch_first=True,
                                                      enforce_sorted=enforce_sorted)
    tout, (ht, ct) = tmodel(tpacked, hxt)
    np.testing.assert_array_equal(out.batch_sizes, tout.batch_sizes.numpy())
    for ours, theirs in ((out.data, tout.data), (h_n, ht), (c_n, ct)):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=RTOL_Y, atol=ATOL_Y)

    gy, gh, gc = data(out.data.shape, 3), data(h_n.shape, 4), data(c_n.shape, 5)
    ((tout.data * torch.tensor(gy)).sum() + (ht * torch.tensor(gh)).sum()
     + (ct * torch.tensor(gc)).sum()).backward()
    ddata, (dh0, dc0) = model.backward(out._replace(data=gy), gh, gc, return_hx_grad=True)
    # torch's input gradient is of the padded input: pad ours the same way to compare
    dx, _ = rnn.pad_packed_sequence(packed._replace(data=ddata), batch_first=True)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=RTOL_G, atol=ATOL_G)
    if with_hx:
        np.testing.assert_allclose(dh0, hxt[0].grad.numpy(), rtol=RTOL_G, atol=ATOL_G)
        np.testing.assert_allclose(dc0, hxt[1].grad.numpy(), rtol=RTOL_G, atol=ATOL_G)
    tparams = dict(tmodel.named_parameters())
    for name, var in model.named_parameters():
        np.testing.assert_allclose(var.grad, tparams[name].grad.numpy(), rtol=RTOL_G,
                                   atol=ATOL_G, err_msg=name)
