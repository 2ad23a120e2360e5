"""Helpers shared by the test modules (pytest runs with --import-mode=importlib, so they come as
fixtures rather than imports)."""

import numpy as np
import pytest


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
