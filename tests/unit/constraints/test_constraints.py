"""`pylstm.constraints`: norms after projection, aliases, axis lists, bad arguments, callables
and user subclasses by name, and constraints applied by the optimizer after the update.
Against Keras 3's constraints: parity/keras/test_constraints.py."""

import json

import numpy as np
import pytest

from pylstm import constraints, optimizers
from pylstm.layers import Variable


def _weight(shape, dtype, seed):
    """Vectors whose norms fall below, inside and above the bounds, plus an all-zero column
    (the case Keras's epsilon exists for)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=shape) * rng.choice([0.05, 0.5, 3.0], size=shape[-1])
    w[..., 1] = 0.0
    return w.astype(dtype)


def test_norms_after_projection():
    w = _weight((8, 5), "float64", seed=4)
    norms = np.linalg.norm(constraints.MaxNorm(1.0)(w), axis=0)
    assert np.all(norms <= 1.0) and norms[1] == 0.0
    norms = np.linalg.norm(constraints.MinMaxNorm(0.5, 1.0)(w), axis=0)
    assert np.all(norms[[0, 2, 3, 4]] > 0.5 - 1e-6) and np.all(norms <= 1.0) and norms[1] == 0.0
    norms = np.linalg.norm(constraints.UnitNorm()(w), axis=0)
    np.testing.assert_allclose(norms[[0, 2, 3, 4]], 1.0, rtol=1e-6)
    assert np.all(constraints.NonNeg()(w) >= 0)


def test_lowercase_aliases_are_the_classes():
    assert constraints.max_norm is constraints.MaxNorm
    assert constraints.min_max_norm is constraints.MinMaxNorm
    assert constraints.non_neg is constraints.NonNeg
    assert constraints.unit_norm is constraints.UnitNorm


def test_axis_list_round_trips():
    c = constraints.UnitNorm(axis=(0, 1))
    assert c.get_config() == {"axis": [0, 1]}
    assert constraints.get(json.loads(json.dumps(constraints.serialize(c)))).axis == [0, 1]


@pytest.mark.parametrize("make, message", [
    (lambda: constraints.MaxNorm(-1.0), "`max_value`.*>= 0.*-1.0"),
    (lambda: constraints.MaxNorm("2"), "`max_value`.*'2'"),
    (lambda: constraints.MaxNorm(float("nan")), "`max_value`.*nan"),
    (lambda: constraints.MaxNorm(axis="0"), "`axis`.*'0'"),
    (lambda: constraints.MaxNorm(axis=True), "`axis`.*True"),
    (lambda: constraints.UnitNorm(axis=[0, 1.5]), r"`axis`.*\[0, 1.5\]"),
    (lambda: constraints.MinMaxNorm(min_value=-0.5), "`min_value`.*>= 0"),
    (lambda: constraints.MinMaxNorm(min_value=2.0, max_value=1.0), "`max_value`.*>= 2.0.*1.0"),
    (lambda: constraints.MinMaxNorm(rate=1.5), r"`rate`.*\[0, 1\].*1.5"),
    (lambda: constraints.MaxNorm(axis=2)(np.ones((3, 4))),
     r"MaxNorm\(axis=2\) does not fit.*\(3, 4\)"),
    (lambda: constraints.UnitNorm(axis=[0, -3])(np.ones((3, 4))), r"UnitNorm.*\(3, 4\)"),
    (lambda: constraints.get("max_nrom"), "Unknown constraint 'max_nrom'.*max_norm"),
    (lambda: constraints.get(2.0), "Could not interpret constraint identifier: 2.0"),
    (lambda: constraints.deserialize({"class_name": "Clip", "config": {}}),
     "Unknown constraint 'Clip'"),
])
def test_bad_arguments_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_callables_and_classes():
    def clip(w):
        return np.clip(w, -1, 1)

    assert constraints.get(clip) is clip
    assert constraints.get(None) is None
    assert constraints.serialize(None) is None and constraints.deserialize(None) is None
    assert type(constraints.get(constraints.NonNeg)) is constraints.NonNeg
    with pytest.raises(TypeError, match="Cannot serialize.*get_config"):
        constraints.serialize(clip)
    w = np.array([1.0, -2.0])
    assert constraints.Constraint()(w) is w


def test_user_subclass_round_trips_by_name():
    class Clip(constraints.Constraint):
        def __init__(self, limit=1.0):
            self.limit = limit

        def __call__(self, w):
            return np.clip(w, -self.limit, self.limit)

        def get_config(self):
            return {"limit": self.limit}

    restored = constraints.deserialize(json.loads(json.dumps(constraints.serialize(Clip(0.5)))))
    assert type(restored) is Clip and restored.limit == 0.5


def test_optimizer_applies_constraint_after_the_update():
    value = np.array([[3.0, 0.1], [4.0, 0.1]])
    var = Variable("w", value.copy(), constraint=constraints.MaxNorm(1.0))
    var.grad[...] = 1.0
    optimizers.SGD(0.5).apply([var])
    np.testing.assert_allclose(var.value, constraints.MaxNorm(1.0)(value - 0.5))
