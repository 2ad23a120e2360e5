"""`pylstm.optim` (torch-style optimizers) driving `pylstm.nn.LSTM` against `torch.optim` on
`torch.nn.LSTM` from the same weights: after a few steps of each optimizer and option (L2 and
decoupled weight decay, momentum, Nesterov, AMSGrad, centered RMSprop, parameter groups with
their own rate, a rate changed between steps), every weight agrees within 1e-5; the optimizer
state round-trips through `state_dict`."""

import numpy as np
import pytest
from pylstm_tests import require

from pylstm import optim
from pylstm.nn import LSTM

torch = require("torch")

STEPS = 4
D, H = 3, 4


def _pair(seed=0):
    torch.manual_seed(seed)
    tmodel = torch.nn.LSTM(D, H, num_layers=2, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for p in tmodel.parameters():
            p.uniform_(-0.6, 0.6)
    model = LSTM(D, H, num_layers=2, bidirectional=True, batch_first=True)
    model.load_state_dict(tmodel.state_dict())
    return model, tmodel


def _batch(step):
    rng = np.random.default_rng(100 + step)
    return (rng.normal(size=(5, 6, D)).astype("float32"),
            rng.normal(size=(5, 6, 2 * H)).astype("float32"))


def _ours_step(model, opt, step):
    x, target = _batch(step)
    opt.zero_grad()
    y, _ = model(x)
    model.backward(2 * (y - target) / y.size)  # d mean((y - target)^2) / dy
    opt.step()


def _torch_step(tmodel, topt, step):
    x, target = _batch(step)
    topt.zero_grad()
    ((tmodel(torch.tensor(x))[0] - torch.tensor(target)) ** 2).mean().backward()
    topt.step()


def _assert_same_weights(model, tmodel):
    for name, p in tmodel.named_parameters():
        np.testing.assert_allclose(getattr(model, name).value, p.detach().numpy(), rtol=1e-5,
                                   atol=1e-5, err_msg=name)


CASES = {
    "sgd": ("SGD", dict(lr=0.1)),
    "sgd-momentum-l2": ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    "sgd-nesterov": ("SGD", dict(lr=0.1, momentum=0.8, nesterov=True)),
    "sgd-dampening-maximize": ("SGD", dict(lr=0.05, momentum=0.5, dampening=0.3,
                                           maximize=True)),
    "adam": ("Adam", dict(lr=0.01)),
    "adam-l2-amsgrad": ("Adam", dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.1,
                                     amsgrad=True)),
    "adam-big-eps": ("Adam", dict(lr=0.01, eps=0.1)),  # epsilon placed as torch places it
    "adamw": ("AdamW", dict(lr=0.01)),
    "adamw-amsgrad": ("AdamW", dict(lr=0.02, weight_decay=0.5, amsgrad=True, eps=0.01)),
    "rmsprop": ("RMSprop", dict(lr=0.01)),
    "rmsprop-centered-momentum-l2": ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.5,
                                                     centered=True, weight_decay=0.05,
                                                     eps=0.01)),
}


@pytest.mark.parametrize("case", CASES)
def test_steps_match_torch(case):
    name, kwargs = CASES[case]
    model, tmodel = _pair()
    opt = getattr(optim, name)(model.parameters(), **kwargs)
    topt = getattr(torch.optim, name)(tmodel.parameters(), **kwargs)
    for step in range(STEPS):
        _ours_step(model, opt, step)
        _torch_step(tmodel, topt, step)
    _assert_same_weights(model, tmodel)


def test_defaults_are_torch_defaults():
    model, tmodel = _pair()
    for name in ("SGD", "Adam", "AdamW", "RMSprop"):
        ours = getattr(optim, name)(model.parameters()).defaults
        theirs = getattr(torch.optim, name)(tmodel.parameters()).defaults
        for key, value in ours.items():
            assert theirs[key] == value, (name, key)


def test_parameter_groups_and_a_changed_rate_match_torch():
    model, tmodel = _pair()
    names = [n for n, _ in tmodel.named_parameters()]
    layer0 = [n for n in names if "_l0" in n]
    layer1 = [n for n in names if "_l1" in n]
    opt = optim.Adam([{"params": [getattr(model, n) for n in layer0]},
                      {"params": [getattr(model, n) for n in layer1], "lr": 0.05}], lr=0.01)
    tparams = dict(tmodel.named_parameters())
    topt = torch.optim.Adam([{"params": [tparams[n] for n in layer0]},
                             {"params": [tparams[n] for n in layer1], "lr": 0.05}], lr=0.01)
    for step in range(STEPS):
        if step == 2:  # as a torch scheduler does
            opt.param_groups[0]["lr"] = topt.param_groups[0]["lr"] = 0.002
        _ours_step(model, opt, step)
        _torch_step(tmodel, topt, step)
    _assert_same_weights(model, tmodel)


def test_named_parameters_and_frozen_parameters():
    model, tmodel = _pair()
    frozen = "weight_hh_l1_reverse"
    getattr(model, frozen).trainable = False
    tparams = dict(tmodel.named_parameters())
    tparams[frozen].requires_grad_(False)
    opt = optim.SGD(model.named_parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD([p for p in tparams.values() if p.requires_grad], lr=0.1,
                           momentum=0.9)
    for step in range(STEPS):
        _ours_step(model, opt, step)
        _torch_step(tmodel, topt, step)
    _assert_same_weights(model, tmodel)


def test_state_dict_resumes_training():
    model, tmodel = _pair()
    opt = optim.Adam(model.parameters(), lr=0.01, amsgrad=True)
    topt = torch.optim.Adam(tmodel.parameters(), lr=0.01, amsgrad=True)
    for step in range(2):
        _ours_step(model, opt, step)
        _torch_step(tmodel, topt, step)
    saved = opt.state_dict()
    assert [s["step"] for s in saved["state"].values()] == [
        int(s["step"]) for s in topt.state_dict()["state"].values()]
    resumed = optim.Adam(model.parameters(), lr=0.5)
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["lr"] == 0.01
    for step in range(2, STEPS):
        _ours_step(model, resumed, step)
        _torch_step(tmodel, topt, step)
    _assert_same_weights(model, tmodel)
