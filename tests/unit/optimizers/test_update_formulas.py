"""The first steps of AdamW, Adagrad, Adadelta, Adamax, Nadam and Lion against the formulas of
Keras 3's update steps written out in NumPy (float64), and float32 variables kept float32.
Against Keras itself: parity/keras/test_optimizers_parity.py."""

import numpy as np
import pytest

from pylstm import optimizers
from pylstm.variable import Variable

STEPS = 4
INIT = np.random.default_rng(0).standard_normal((3, 4))


def _grad(value, step):
    # depends on the current value, so that a wrong trajectory is not hidden
    return np.sin(3.0 * value) + 0.1 * (step + 1) * np.cos(np.arange(value.size)).reshape(value.shape)


def _run(optimizer, init=INIT, steps=STEPS):
    var = Variable("w", init.copy())
    for step in range(steps):
        var.grad[...] = _grad(var.value, step)
        optimizer.apply([var])
    return var.value


def _adamw(lr, wd, b1, b2, eps):
    w, m, v = INIT.copy(), 0 * INIT, 0 * INIT
    for step in range(STEPS):
        g = _grad(w, step)
        w = w - w * wd * lr
        t = step + 1
        m, v = m + (g - m) * (1 - b1), v + (g * g - v) * (1 - b2)
        w = w - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
    return w


def _adagrad(lr, init_acc, eps):
    w, acc = INIT.copy(), np.full_like(INIT, init_acc)
    for step in range(STEPS):
        g = _grad(w, step)
        acc = acc + g * g
        w = w - lr * g / np.sqrt(acc + eps)
    return w


def _adadelta(lr, rho, eps):
    w, eg, ed = INIT.copy(), 0 * INIT, 0 * INIT
    for step in range(STEPS):
        g = _grad(w, step)
        eg = rho * eg + (1 - rho) * g * g
        delta = -np.sqrt(ed + eps) / np.sqrt(eg + eps) * g
        ed = rho * ed + (1 - rho) * delta * delta
        w = w + lr * delta
    return w


def _adamax(lr, b1, b2, eps):
    w, m, u = INIT.copy(), 0 * INIT, 0 * INIT
    for step in range(STEPS):
        g = _grad(w, step)
        m = b1 * m + (1 - b1) * g
        u = np.maximum(b2 * u, np.abs(g))
        w = w - lr * m / ((1 - b1 ** (step + 1)) * (u + eps))
    return w


def _nadam(lr, b1, b2, eps):
    w, m, v, prod = INIT.copy(), 0 * INIT, 0 * INIT, 1.0
    for step in range(STEPS):
        g = _grad(w, step)
        t = step + 1
        mu_t, mu_next = b1 * (1 - 0.5 * 0.96**t), b1 * (1 - 0.5 * 0.96 ** (t + 1))
        prod *= mu_t
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        m_hat = mu_next * m / (1 - prod * mu_next) + (1 - mu_t) * g / (1 - prod)
        w = w - lr * m_hat / (np.sqrt(v / (1 - b2**t)) + eps)
    return w


def _lion(lr, b1, b2):
    w, m = INIT.copy(), 0 * INIT
    for step in range(STEPS):
        g = _grad(w, step)
        w = w - lr * np.sign(b1 * m + (1 - b1) * g)
        m = b2 * m + (1 - b2) * g
    return w


@pytest.mark.parametrize("optimizer,want", [
    (optimizers.AdamW(), _adamw(0.001, 0.004, 0.9, 0.999, 1e-7)),  # Keras's defaults
    (optimizers.AdamW(0.05, weight_decay=0.3, beta_1=0.5, beta_2=0.9, epsilon=0.1),
     _adamw(0.05, 0.3, 0.5, 0.9, 0.1)),
    (optimizers.Adagrad(), _adagrad(0.001, 0.1, 1e-7)),
    (optimizers.Adagrad(0.1, initial_accumulator_value=0.5, epsilon=0.01),
     _adagrad(0.1, 0.5, 0.01)),
    (optimizers.Adadelta(), _adadelta(0.001, 0.95, 1e-7)),
    (optimizers.Adadelta(1.0, rho=0.8, epsilon=1e-3), _adadelta(1.0, 0.8, 1e-3)),
    (optimizers.Adamax(), _adamax(0.001, 0.9, 0.999, 1e-7)),
    (optimizers.Adamax(0.05, beta_1=0.5, beta_2=0.8, epsilon=0.1), _adamax(0.05, 0.5, 0.8, 0.1)),
    (optimizers.Nadam(), _nadam(0.001, 0.9, 0.999, 1e-7)),
    (optimizers.Nadam(0.05, beta_1=0.7, beta_2=0.9, epsilon=0.1), _nadam(0.05, 0.7, 0.9, 0.1)),
    (optimizers.Lion(), _lion(0.001, 0.9, 0.99)),
    (optimizers.Lion(0.05, beta_1=0.5, beta_2=0.8), _lion(0.05, 0.5, 0.8)),
], ids=lambda v: type(v).__name__ if isinstance(v, optimizers.Optimizer) else "")
def test_steps_match_the_formulas(optimizer, want):
    np.testing.assert_allclose(_run(optimizer), want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["adamw", "adagrad", "adadelta", "adamax", "nadam", "lion"])
def test_float32_variables_stay_float32(name):
    var = Variable("w", np.ones((2, 3), dtype=np.float32))
    opt = optimizers.get(name)
    for _ in range(2):
        var.grad[...] = 0.5
        opt.apply([var])
    assert var.value.dtype == np.float32 and np.all(var.value < 1)
    assert all(s.dtype == np.float32 for s in opt._slots[var].values())


def test_nadam_momentum_product_follows_restored_iterations():
    a, b = optimizers.Nadam(0.05), optimizers.Nadam(0.05)
    var_a, var_b = Variable("w", INIT.copy()), Variable("w", INIT.copy())
    for step in range(3):
        var_a.grad[...] = _grad(var_a.value, step)
        a.apply([var_a])
    # b continues from a's state as a file restores it: iterations and slots, not the product
    b._iterations, b._slots = a._iterations, {var_b: {k: v.copy() for k, v in a._slots[var_a].items()}}
    var_b.value[...] = var_a.value
    for var, opt in ((var_a, a), (var_b, b)):
        var.grad[...] = _grad(var.value, 3)
        opt.apply([var])
    np.testing.assert_allclose(var_b.value, var_a.value, rtol=1e-14)


@pytest.mark.parametrize("make,match", [
    (lambda: optimizers.AdamW(weight_decay=None), "weight_decay"),
    (lambda: optimizers.Lion(beta_1=0.0), "beta_1"),
    (lambda: optimizers.Lion(beta_1=1.5), "beta_1"),
])
def test_argument_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()
