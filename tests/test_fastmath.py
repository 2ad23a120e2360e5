"""The core's float32 gate activations (vectorizable approximations in _fastmath.h) against
float64 NumPy on a dense grid of the whole useful range."""

import numpy as np
import pytest
from scipy.special import expit

from pylstm import _core

GRID = np.concatenate([np.linspace(-100, 100, 400_001), np.linspace(-1e-3, 1e-3, 20_001),
                       [-1e30, -88.5, -87.0, 0.0, 87.0, 88.5, 1e30]])


@pytest.mark.parametrize("name,exact,abs_tol,rel_tol", [
    ("sigmoid", expit, 1.5e-7, 5e-7),
    ("tanh", np.tanh, 1.5e-7, 5e-7),
])
def test_float32_activation_accuracy(name, exact, abs_tol, rel_tol):
    z = GRID.astype(np.float32)
    got = z.copy()
    _core.activate(got, _core.ACTIVATION_CODES[name])
    want = exact(z.astype(np.float64))
    err = np.abs(got - want)
    assert err.max() < abs_tol, f"max abs error {err.max():.3g} at x={z[err.argmax()]}"
    big = np.abs(want) > 1e-30
    rel = err[big] / np.abs(want[big])
    assert rel.max() < rel_tol, f"max rel error {rel.max():.3g} at x={z[big][rel.argmax()]}"
    assert np.all(np.isfinite(got))


@pytest.mark.parametrize("name,exact", [("sigmoid", expit), ("tanh", np.tanh),
                                        ("relu", lambda x: np.maximum(x, 0)),
                                        ("hard_sigmoid", lambda x: np.clip((x + 3) / 6, 0, 1))])
def test_float64_activations_exact(name, exact):
    z = np.linspace(-50, 50, 10_001)
    got = z.copy()
    _core.activate(got, _core.ACTIVATION_CODES[name])
    np.testing.assert_allclose(got, exact(z), rtol=1e-15, atol=1e-300)
