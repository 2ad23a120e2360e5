"""Helpers shared by the test modules. pytest runs with --import-mode=importlib, which keeps
tests/ off `sys.path`, so they come as fixtures, or, for `support/keras_util.py` (needed at
module level by the Keras parity suites), as the module `pylstm_tests_keras_util` registered here:
`import pylstm_tests_keras_util as ku`."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest


def _register_lazily(name, path):
    """Puts the module at `path` into `sys.modules` as `name`, executed on first attribute
    access, so that sessions that never touch it do not import TensorFlow."""
    spec = importlib.util.spec_from_file_location(name, path)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_register_lazily("pylstm_tests_keras_util", Path(__file__).parent / "support" / "keras_util.py")


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
