"""`pylstm.losses` against PyTorch's on the same inputs. Oracle-free checks:
unit/losses/test_losses.py."""

import numpy as np
import pytest
from pylstm_tests import require

from pylstm import losses

torch = require("torch")
F = require("torch.nn.functional")

rng = np.random.default_rng(0)


def _probs(shape):
    e = np.exp(rng.standard_normal(shape))
    return e / e.sum(axis=-1, keepdims=True)


def _onehot(labels, n):
    return np.eye(n)[labels]


def test_values_against_torch():
    y, p = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    t, tp = torch.tensor(y), torch.tensor(p)
    assert losses.get("mse")(y, p) == pytest.approx(F.mse_loss(tp, t).item(), rel=1e-12)
    assert losses.get("mae")(y, p) == pytest.approx(F.l1_loss(tp, t).item(), rel=1e-12)
    yb, pb = rng.integers(0, 2, (6, 3)).astype(float), rng.uniform(0.05, 0.95, (6, 3))
    assert losses.get("binary_crossentropy")(yb, pb) == pytest.approx(
        F.binary_cross_entropy(torch.tensor(pb), torch.tensor(yb)).item(), rel=1e-10)
    assert losses.BinaryCrossentropy(from_logits=True)(yb, p) == pytest.approx(
        F.binary_cross_entropy_with_logits(tp, torch.tensor(yb)).item(), rel=1e-10)
    labels = rng.integers(0, 3, 6)
    assert losses.SparseCategoricalCrossentropy(from_logits=True)(labels, p) == pytest.approx(
        F.cross_entropy(tp, torch.tensor(labels)).item(), rel=1e-10)
    probs = _probs((6, 3))
    assert losses.get("categorical_crossentropy")(_onehot(labels, 3), probs) == pytest.approx(
        F.nll_loss(torch.log(torch.tensor(probs)), torch.tensor(labels)).item(), rel=1e-10)
    assert losses.get("sparse_categorical_crossentropy")(labels, probs) == pytest.approx(
        losses.get("categorical_crossentropy")(_onehot(labels, 3), probs), rel=1e-12)
