"""The core's activations (`_core.activate`, `_core.activation_grad`) against float64 NumPy:
float32 (vectorizable approximations in _fastmath.h) on a dense grid of the whole useful
range, float64 (libm) to double precision."""

import numpy as np
import pytest
from scipy.special import expit

from pylstm._kernels import core as _core
from pylstm import _reference as ref

GRID = np.concatenate([np.linspace(-100, 100, 400_001), np.linspace(-1e-3, 1e-3, 20_001),
                       [-1e30, -88.5, -87.0, 0.0, 87.0, 88.5, 1e30]])
FLOAT32_MAX = float(np.finfo(np.float32).max)

# Activations whose float32 value has no cancellation: checked to a relative error as well.
RELATIVE = ["sigmoid", "tanh", "elu", "selu", "softplus", "softsign", "swish", "exponential"]
# Piecewise linear: derivatives checked away from the kinks.
LINEAR_PIECES = ["linear", "relu", "hard_sigmoid", "legacy_hard_sigmoid"]
CODES = sorted(_core.ACTIVATION_CODES)


def exact(name, x):
    with np.errstate(over="ignore"):
        return ref.ACTIVATIONS[name][0](x)


def core_activate(name, z):
    got = z.copy()
    _core.activate(got, _core.ACTIVATION_CODES[name])
    return got


@pytest.mark.parametrize("name,exact_fn,abs_tol,rel_tol", [
    ("sigmoid", expit, 1.5e-7, 5e-7),
    ("tanh", np.tanh, 1.5e-7, 5e-7),
])
def test_float32_activation_accuracy(name, exact_fn, abs_tol, rel_tol):
    z = GRID.astype(np.float32)
    got = core_activate(name, z)
    want = exact_fn(z.astype(np.float64))
    err = np.abs(got - want)
    assert err.max() < abs_tol, f"max abs error {err.max():.3g} at x={z[err.argmax()]}"
    big = np.abs(want) > 1e-30
    rel = err[big] / np.abs(want[big])
    assert rel.max() < rel_tol, f"max rel error {rel.max():.3g} at x={z[big][rel.argmax()]}"
    assert np.all(np.isfinite(got))


@pytest.mark.parametrize("name", CODES)
def test_float32_every_activation_accuracy(name):
    """Error relative to max(1, |f(x)|) below 3e-7 everywhere f(x) is a finite float32, and
    below 3e-7 relative wherever |f(x)| > 1e-30 for the smooth ones."""
    z = GRID.astype(np.float32)
    got = core_activate(name, z)
    want = exact(name, z.astype(np.float64))
    finite = np.abs(want) <= FLOAT32_MAX
    err = np.abs(got[finite] - want[finite])
    mixed = err / np.maximum(1.0, np.abs(want[finite]))
    assert mixed.max() < 3e-7, f"max error {mixed.max():.3g} at x={z[finite][mixed.argmax()]}"
    assert np.all(np.isfinite(got[finite]))
    if name in RELATIVE:
        big = np.abs(want[finite]) > 1e-30
        rel = err[big] / np.abs(want[finite][big])
        assert rel.max() < 3e-7, f"max rel error {rel.max():.3g} at x={z[finite][big][rel.argmax()]}"


def test_float32_exponential_overflows_like_expf():
    """exp's own range: inf above ln(FLT_MAX), gradual underflow to 0 below about -103."""
    z = np.array([88.7, 88.73, 100, 1e30, -95, -104, -1e30], np.float32)
    got = core_activate("exponential", z)
    with np.errstate(over="ignore"):
        want = np.exp(z)
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    np.testing.assert_allclose(got[np.isfinite(want)], want[np.isfinite(want)], rtol=3e-7,
                               atol=1e-45)


@pytest.mark.parametrize("name", CODES)
def test_float32_derivative_accuracy(name):
    """act'(x) as backward computes it, from y = act(x) (and x for swish), against the exact
    derivative, to 3e-7 of max(1, |act'(x)|)."""
    z = GRID.astype(np.float32)
    z = z[np.abs(z) < 80]        # keep exponential's derivative a finite float32
    if name in LINEAR_PIECES:    # away from the kinks, where either side is right
        z = z[np.min(np.abs(z[:, None] - np.array([0, -3, 3, -2.5, 2.5])), axis=1) > 1e-3]
    y = core_activate(name, z)
    got = np.ones_like(z)
    _core.activation_grad(got, z, y, _core.ACTIVATION_CODES[name])
    x64 = z.astype(np.float64)
    want = ref.ACTIVATIONS[name][1](x64, exact(name, x64))
    err = np.abs(got - want) / np.maximum(1.0, np.abs(want))
    assert err.max() < 3e-7, f"max error {err.max():.3g} at x={z[err.argmax()]}"


@pytest.mark.parametrize("name", CODES)
def test_float64_activations_exact(name):
    """libm values; derivatives from y lose only what y's rounding loses (1 - y^2 near
    |tanh| = 1, y + 1 near elu = -1): exact to about 1e-16 of max(1, |act'|)."""
    z = np.linspace(-50, 50, 10_001)
    got = core_activate(name, z)
    np.testing.assert_allclose(got, exact(name, z), rtol=1e-14, atol=1e-16)
    grad = np.ones_like(z)
    _core.activation_grad(grad, z, got, _core.ACTIVATION_CODES[name])
    want = ref.ACTIVATIONS[name][1](z, exact(name, z))
    np.testing.assert_allclose(grad, want, rtol=1e-13, atol=1e-15)


def test_float64_derivatives_stay_finite_far_out():
    z = np.array([-1e300, -800.0, -710.0, 710.0, 800.0, 1e300])
    for name in ["sigmoid", "tanh", "swish", "softplus", "elu", "selu", "softsign"]:
        y = core_activate(name, z)
        grad = np.ones_like(z)
        _core.activation_grad(grad, z, y, _core.ACTIVATION_CODES[name])
        assert np.all(np.isfinite(y)) and np.all(np.isfinite(grad)), name
