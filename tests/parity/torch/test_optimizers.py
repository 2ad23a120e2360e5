"""`pylstm.optimizers` against PyTorch's on the same problem: each optimizer's trajectory, Adam's
epsilon placement (Keras's, not torch's) and global clipnorm. Oracle-free checks:
unit/optimizers/test_optimizers.py."""

import math

import numpy as np
import pytest
from pylstm_tests import require

from pylstm import optimizers
from pylstm.layers.layer import Variable

torch = require("torch")

STEPS = 5


def _grad(value, step):
    # A gradient that depends on the current value, so diverging trajectories are detected.
    return np.sin(3.0 * value) + 0.1 * (step + 1) * np.cos(np.arange(value.size)).reshape(value.shape)


def _run_pylstm(optimizer, init):
    var = Variable("w", init.copy())
    for step in range(STEPS):
        var.grad[...] = _grad(var.value, step)
        optimizer.apply([var])
    return var.value


def _run_torch(make_optimizer, init):
    p = torch.nn.Parameter(torch.tensor(init.copy()))
    opt = make_optimizer([p])
    for step in range(STEPS):
        p.grad = torch.tensor(_grad(p.detach().numpy(), step))
        opt.step()
    return p.detach().numpy()


INIT = np.random.default_rng(0).standard_normal((3, 4))

# Keras's and torch's formulas coincide when epsilon is 0 (they place epsilon differently).
TORCH_CASES = [
    (optimizers.SGD(0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    (optimizers.SGD(0.1, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    (optimizers.SGD(0.1, momentum=0.8, nesterov=True),
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.8, nesterov=True)),
    (optimizers.Adam(0.05, epsilon=0.0), lambda p: torch.optim.Adam(p, lr=0.05, eps=0.0)),
    (optimizers.Adam(0.05, beta_1=0.5, beta_2=0.9, epsilon=0.0, amsgrad=True),
     lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.5, 0.9), eps=0.0, amsgrad=True)),
    (optimizers.RMSprop(0.01, epsilon=0.0), lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=0.0)),
    (optimizers.RMSprop(0.01, rho=0.8, momentum=0.5, centered=True, epsilon=0.0),
     lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.8, momentum=0.5, centered=True, eps=0.0)),
]


@pytest.mark.parametrize("optimizer,make_torch", TORCH_CASES, ids=lambda v: repr(v)[:40])
def test_matches_torch(optimizer, make_torch):
    np.testing.assert_allclose(_run_pylstm(optimizer, INIT), _run_torch(make_torch, INIT),
                               rtol=1e-10, atol=1e-12)
    assert optimizer.iterations == STEPS


def _keras_adam(init, lr, b1, b2, eps):
    w, m, v = init.copy(), np.zeros_like(init), np.zeros_like(init)
    for t in range(1, STEPS + 1):
        g = _grad(w, t - 1)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    return w


def test_adam_epsilon_placement_is_keras_not_torch():
    eps = 0.5  # large, so the placement matters
    ours = _run_pylstm(optimizers.Adam(0.05, epsilon=eps), INIT)
    np.testing.assert_allclose(ours, _keras_adam(INIT, 0.05, 0.9, 0.999, eps), rtol=1e-12)
    theirs = _run_torch(lambda p: torch.optim.Adam(p, lr=0.05, eps=eps), INIT)
    assert not np.allclose(ours, theirs, rtol=1e-6)


def _apply_once(optimizer, grads):
    variables = [Variable(f"v{i}", np.zeros_like(g)) for i, g in enumerate(grads)]
    for v, g in zip(variables, grads):
        v.grad[...] = g
    optimizer.apply(variables)
    return [-v.value for v in variables]  # SGD(lr=1): the applied (clipped) gradient


def test_global_clipnorm_scales_all_variables_together():
    a, b = np.array([3.0, 0.0]), np.array([[0.0], [4.0]])
    ca, cb = _apply_once(optimizers.SGD(1.0, global_clipnorm=2.5), [a, b])
    np.testing.assert_allclose(ca, a / 2)
    np.testing.assert_allclose(cb, b / 2)
    ta, tb = torch.tensor(a), torch.tensor(b)
    ta.grad, tb.grad = ta.clone(), tb.clone()
    torch.nn.utils.clip_grad_norm_([ta, tb], 2.5)
    np.testing.assert_allclose(ca, ta.grad.numpy(), rtol=1e-5)
