"""Helpers shared by the test modules. pytest runs with --import-mode=importlib, which keeps
tests/ off `sys.path`, so they come as fixtures or as modules registered here:
`from pylstm_tests import require, MASKS, as_list, lstm_weights`, and, for
`support/keras_util.py` (needed at module level by the Keras parity suites),
`import pylstm_tests_keras_util as ku`."""

import importlib
import importlib.abc
import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest


class _KerasUtilFinder(importlib.abc.MetaPathFinder):
    """Finds `pylstm_tests_keras_util` (support/keras_util.py) when a test module imports it,
    so that sessions that never do import no TensorFlow."""

    def find_spec(self, name, path=None, target=None):
        if name != "pylstm_tests_keras_util":
            return None
        return importlib.util.spec_from_file_location(
            name, Path(__file__).parent / "support" / "keras_util.py")


# Set by .ci/run: there a missing oracle or optional package fails instead of skipping.
REQUIRE_ENV = "PYLSTM_REQUIRE_ORACLES"


def require(name):
    """Imports and returns the module `name`: an oracle (torch, keras, tensorflow, onnxruntime)
    or an optional package (h5py, safetensors, ...) that a test needs beyond pylstm's own
    dependencies. Where it cannot be imported, the test (or, called at module level, the whole
    module) is skipped; with the environment variable PYLSTM_REQUIRE_ORACLES=1, as CI runs,
    it fails instead, so that a missing oracle never passes as a skip."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        why = f"needs {name}, which cannot be imported ({e})"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{why}; {REQUIRE_ENV}=1 makes that an error", pytrace=False)
        pytest.skip(why, allow_module_level=True)


# (3, 5) masks (batch, timesteps), True on real steps: the patterns Keras's RNN masking must
# handle.
MASKS = {
    "right_padding": [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]],
    "left_padding": [[1, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 0, 1]],
    "holes": [[1, 0, 1, 1, 0], [0, 1, 0, 1, 1], [1, 1, 0, 0, 1]],
    "masked_row": [[1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [1, 1, 1, 0, 0]],
}
MASKS = {k: np.array(v, dtype=bool) for k, v in MASKS.items()}


def as_list(outputs):
    """A layer's outputs as a list (one array, or the list of `return_state`)."""
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def lstm_weights(rng, input_dim, units, use_bias=True, scale=0.3, dtype="float32"):
    """Random LSTM weights in Keras's order: `kernel (D, 4H)`, `recurrent_kernel (H, 4H)` and,
    with `use_bias`, `bias (4H,)`; small (`scale`) so that unbounded activations stay finite."""
    shapes = [(input_dim, 4 * units), (units, 4 * units)] + ([(4 * units,)] if use_bias else [])
    return [(rng.normal(size=s) * scale).astype(dtype) for s in shapes]


def streaming_case(B, D, H, P=None, dtype="float32", seed=0, scale=0.5):
    """Weights in the Keras layout (`projection` None unless P is given and differs from H),
    an input sequence `(B, T=6, D)` and a random state `(h0 (B, P), c0 (B, H))`."""
    rng = np.random.default_rng(seed)
    P = P or H
    w = {
        "kernel": rng.uniform(-scale, scale, (D, 4 * H)).astype(dtype),
        "recurrent_kernel": rng.uniform(-scale, scale, (P, 4 * H)).astype(dtype),
        "bias": rng.uniform(-scale, scale, (4 * H,)).astype(dtype),
        "projection": rng.uniform(-scale, scale, (H, P)).astype(dtype) if P != H else None,
    }
    x = rng.standard_normal((B, 6, D)).astype(dtype)
    h0 = rng.standard_normal((B, P)).astype(dtype) * 0.5
    c0 = rng.standard_normal((B, H)).astype(dtype) * 0.5
    return w, x, h0, c0


def run_steps(stepper, x, h0, c0, in_place=True):
    """Steps `stepper` (an `LSTMStepper`) over `x` `(B, T, D)` from `(h0, c0)`, writing the
    new state over the old one if `in_place`; returns the outputs `(B, T, P)` and the state."""
    from pylstm.streaming import LSTMState
    state = LSTMState(h0.copy(), c0.copy())
    ys = []
    for t in range(x.shape[1]):
        x_t = np.ascontiguousarray(x[:, t])
        if in_place:
            y, state = stepper.step(x_t, state, new_state=state)
        else:
            y, state = stepper.step(x_t, state)
        ys.append(y.copy())
    return np.stack(ys, axis=1), state


_module = types.ModuleType("pylstm_tests", "The helpers of tests/conftest.py for test modules.")
for _name in ("require", "MASKS", "as_list", "lstm_weights", "streaming_case", "run_steps"):
    setattr(_module, _name, globals()[_name])
sys.modules["pylstm_tests"] = _module
sys.meta_path.append(_KerasUtilFinder())


def central_difference(f, arr, eps=1e-6):
    """d f() / d arr by central differences, perturbing `arr` in place one entry at a time.

    `f` takes no argument and returns a float computed from the current contents of `arr`.
    """
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        saved = arr[idx]
        arr[idx] = saved + eps
        up = f()
        arr[idx] = saved - eps
        down = f()
        arr[idx] = saved
        grad[idx] = (up - down) / (2 * eps)
    return grad


@pytest.fixture
def numeric_grad():
    return central_difference


@pytest.fixture
def rng():
    """A NumPy generator seeded with 0, fresh for each test."""
    return np.random.default_rng(0)
