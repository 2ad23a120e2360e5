"""`pylstm.regularizers`: hand-computed penalties, the subgradient of |x| at 0, aliases,
argument and dtype errors, callables with and without a gradient, user subclasses by name.
Against Keras 3's regularizers: parity/keras/test_regularizers.py."""

import json

import numpy as np
import pytest

from pylstm import regularizers


def test_orthogonal_penalty_hard_coded():
    # Rows at 0, 45 and 90 degrees: |cos| of the three pairs are 1/sqrt(2), 0, 1/sqrt(2).
    x = np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    expected = 0.1 * (2 / np.sqrt(2)) / 3
    assert regularizers.OrthogonalRegularizer(0.1)(x) == pytest.approx(expected)
    assert regularizers.OrthogonalRegularizer(0.1, mode="columns")(x.T) == pytest.approx(expected)


def test_subgradient_of_abs_at_zero_is_zero():
    x = np.zeros((3, 2), dtype="float32")
    np.testing.assert_array_equal(regularizers.L1(0.5).gradient(x), 0.0)
    np.testing.assert_array_equal(regularizers.L1L2(0.5, 0.5).gradient(x), 0.0)


def test_lowercase_aliases_are_the_classes():
    assert regularizers.l1 is regularizers.L1
    assert regularizers.l2 is regularizers.L2
    assert regularizers.l1_l2 is regularizers.L1L2
    assert regularizers.orthogonal_regularizer is regularizers.OrthogonalRegularizer


@pytest.mark.parametrize("make, message", [
    (lambda: regularizers.L1(-0.1), "`l1`.*non-negative.*-0.1"),
    (lambda: regularizers.L1("0.1"), "`l1`.*'0.1'"),
    (lambda: regularizers.L1(True), "`l1`.*True"),
    (lambda: regularizers.L2(float("nan")), "`l2`.*nan"),
    (lambda: regularizers.L2(float("inf")), "`l2`.*inf"),
    (lambda: regularizers.L1L2(l1=0.1, l2=-1), "`l2`.*-1"),
    (lambda: regularizers.OrthogonalRegularizer(factor=-1), "`factor`.*-1"),
    (lambda: regularizers.OrthogonalRegularizer(mode="diagonal"), "`mode`.*'diagonal'"),
    (lambda: regularizers.OrthogonalRegularizer()(np.ones(4)), r"2-D.*\(4,\)"),
    (lambda: regularizers.OrthogonalRegularizer().gradient(np.ones((1, 4))),
     r"two rows.*\(1, 4\)"),
    (lambda: regularizers.OrthogonalRegularizer(mode="columns")(np.ones((4, 1))),
     r"two columns.*\(4, 1\)"),
    (lambda: regularizers.get("l3"), "Unknown regularizer 'l3'.*l1_l2"),
    (lambda: regularizers.get(0.01), "Could not interpret regularizer identifier: 0.01"),
    (lambda: regularizers.deserialize({"class_name": "L0", "config": {}}),
     "Unknown regularizer 'L0'"),
    (lambda: regularizers.deserialize({"l1": 0.1}), "class_name"),
])
def test_bad_arguments_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_non_floating_input_raises_type_error():
    for reg in (regularizers.L1(), regularizers.L2(), regularizers.L1L2(0.1, 0.1),
                regularizers.OrthogonalRegularizer()):
        with pytest.raises(TypeError, match="floating-point.*int64"):
            reg(np.ones((3, 3), dtype=np.int64))
        with pytest.raises(TypeError, match="floating-point.*int64"):
            reg.gradient(np.ones((3, 3), dtype=np.int64))


def test_plain_callable_without_gradient_is_refused():
    with pytest.raises(TypeError, match="no autodiff.*pair `\\(penalty, gradient\\)`"):
        regularizers.get(lambda x: 0.01 * float(np.sum(x ** 2)))


def test_subclass_without_gradient_is_refused():
    class PenaltyOnly(regularizers.Regularizer):
        def __call__(self, x):
            return float(np.sum(x))

    with pytest.raises(TypeError, match="PenaltyOnly does not implement `gradient"):
        regularizers.get(PenaltyOnly())
    with pytest.raises(NotImplementedError, match="no autodiff"):
        PenaltyOnly().gradient(np.ones(2))


def test_callable_pair_and_objects_with_gradient():
    reg = regularizers.get((lambda x: float(np.sum(x ** 4)), lambda x: 4 * x ** 3))
    x = np.array([1.0, -2.0])
    assert reg(x) == 17.0
    np.testing.assert_array_equal(reg.gradient(x), [4.0, -32.0])
    with pytest.raises(TypeError, match="Cannot serialize.*get_config"):
        regularizers.serialize(reg)

    class Cubic:
        def __call__(self, x):
            return float(np.sum(x ** 3))

        def gradient(self, x):
            return 3 * x ** 2

    cubic = Cubic()
    assert regularizers.get(cubic) is cubic
    assert isinstance(regularizers.get(Cubic), Cubic)
    assert isinstance(regularizers.get(regularizers.L2), regularizers.L2)
    with pytest.raises(TypeError, match="Cannot serialize.*no `get_config"):
        regularizers.serialize(cubic)


def test_user_subclass_round_trips_by_name():
    class ScaledL2(regularizers.Regularizer):
        def __init__(self, scale=1.0):
            self.scale = scale

        def __call__(self, x):
            return float(self.scale * np.sum(x * x))

        def gradient(self, x):
            return 2 * self.scale * x

        def get_config(self):
            return {"scale": self.scale}

    restored = regularizers.deserialize(json.loads(json.dumps(
        regularizers.serialize(ScaledL2(3.0)))))
    assert type(restored) is ScaledL2 and restored.scale == 3.0
    assert type(regularizers.get("scaled_l2")) is ScaledL2
