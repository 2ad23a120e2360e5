"""`pylstm.optim`, the PyTorch-style optimizers, without torch: first steps against torch's
formulas written out, `zero_grad`, closures, frozen parameters, parameter groups, `state_dict`
errors and torch's argument errors. Against torch itself:
parity/torch/test_optim_parity.py."""

import numpy as np
import pytest

from pylstm import optim
from pylstm.nn import LSTMCell
from pylstm.variable import Variable


def _param(value):
    return Variable("p", np.array(value, dtype=np.float64))


def _steps(opt, p, grads):
    for g in grads:
        p.grad[...] = g
        opt.step()
    return p.value


def test_sgd_momentum_buffer_starts_at_the_gradient():
    p = _param([1.0])
    _steps(optim.SGD([p], lr=0.1, momentum=0.9, dampening=0.5, weight_decay=0.1), p,
           [[1.0], [1.0]])
    g1 = 1.0 + 0.1 * 1.0
    w1 = 1.0 - 0.1 * g1
    g2 = 1.0 + 0.1 * w1
    np.testing.assert_allclose(p.value, [w1 - 0.1 * (0.9 * g1 + 0.5 * g2)])


def test_adam_epsilon_after_the_bias_correction():
    p = _param([1.0])
    _steps(optim.Adam([p], lr=0.1, eps=0.5), p, [[2.0]])
    m_hat, v_hat = 2.0, 4.0  # the first step's bias-corrected moments are g and g^2
    np.testing.assert_allclose(p.value, [1.0 - 0.1 * m_hat / (np.sqrt(v_hat) + 0.5)])


def test_adamw_decays_before_the_step_and_adam_adds_l2():
    p, q = _param([2.0]), _param([2.0])
    _steps(optim.AdamW([p], lr=0.1, weight_decay=0.5, eps=0.0), p, [[1.0]])
    np.testing.assert_allclose(p.value, [2.0 * (1 - 0.05) - 0.1])
    _steps(optim.Adam([q], lr=0.1, weight_decay=0.5, eps=0.0), q, [[-0.5]])
    np.testing.assert_allclose(q.value, [2.0 - 0.1])  # -0.5 + 0.5 * 2 > 0: a step of lr


def test_rmsprop_epsilon_outside_the_root():
    p = _param([1.0])
    _steps(optim.RMSprop([p], lr=0.1, alpha=0.5, eps=0.5), p, [[2.0]])
    np.testing.assert_allclose(p.value, [1.0 - 0.1 * 2.0 / (np.sqrt(0.5 * 4.0) + 0.5)])


def test_module_parameters_zero_grad_and_closure():
    cell = LSTMCell(2, 3, seed=0)
    opt = optim.SGD(cell.parameters(), lr=0.1)
    for p in cell.parameters():
        p.grad[...] = 1.0
    before = {n: p.value.copy() for n, p in cell.named_parameters()}
    assert opt.step(closure=lambda: 1.5) == 1.5
    for n, p in cell.named_parameters():
        np.testing.assert_allclose(p.value, before[n] - 0.1)
    opt.zero_grad()
    assert all(not p.grad.any() for p in cell.parameters())


def test_frozen_parameters_are_skipped():
    p, q = _param([1.0]), _param([1.0])
    q.trainable = False
    opt = optim.Adam([p, q], lr=0.1)
    p.grad[...] = q.grad[...] = 1.0
    opt.step()
    assert p.value[0] < 1.0 and q.value[0] == 1.0 and q not in opt.state


def test_parameter_groups_override_defaults():
    p, q = _param([1.0]), _param([1.0])
    opt = optim.SGD([{"params": [p]}, {"params": q, "lr": 1.0}], lr=0.1)
    p.grad[...] = q.grad[...] = 1.0
    opt.step()
    np.testing.assert_allclose([p.value[0], q.value[0]], [0.9, 0.0])
    assert [g["lr"] for g in opt.param_groups] == [0.1, 1.0]


def test_state_dict_round_trip_and_mismatch():
    p = _param([1.0, 2.0])
    opt = optim.RMSprop([p], momentum=0.5, centered=True)
    _steps(opt, p, [[1.0, -1.0]])
    saved = opt.state_dict()
    assert sorted(saved["state"][0]) == ["grad_avg", "momentum_buffer", "square_avg", "step"]
    clone_p = _param(p.value)
    clone = optim.RMSprop([clone_p], momentum=0.5, centered=True)
    clone.load_state_dict(saved)
    _steps(opt, p, [[0.5, 0.5]])
    _steps(clone, clone_p, [[0.5, 0.5]])
    np.testing.assert_array_equal(p.value, clone_p.value)
    with pytest.raises(ValueError, match="shape"):
        optim.RMSprop([_param([1.0])]).load_state_dict(saved)
    with pytest.raises(ValueError, match="number"):
        optim.RMSprop([_param([1.0]), _param([1.0])]).load_state_dict(saved)


@pytest.mark.parametrize("make,error,match", [
    (lambda p: optim.SGD([], lr=0.1), ValueError, "empty"),
    (lambda p: optim.SGD([p, p]), ValueError, "more than one"),
    (lambda p: optim.SGD([np.zeros(2)]), TypeError, "Variables"),
    (lambda p: optim.SGD([p], lr=-1.0), ValueError, "learning rate"),
    (lambda p: optim.SGD([p], nesterov=True), ValueError, "Nesterov"),
    (lambda p: optim.Adam([p], betas=(0.9, 1.0)), ValueError, "beta parameter at index 1"),
    (lambda p: optim.AdamW([p], eps=-1.0), ValueError, "epsilon"),
    (lambda p: optim.RMSprop([p], momentum=-0.1), ValueError, "momentum"),
    (lambda p: optim.SGD([{"lr": 0.1}]), ValueError, "params"),
])
def test_argument_errors(make, error, match):
    with pytest.raises(error, match=match):
        make(_param([1.0]))
