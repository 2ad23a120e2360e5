import json
import os

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pylstm import constraints, optimizers  # noqa: E402
from pylstm.layers import Dense, Variable  # noqa: E402
from pylstm.models import Sequential  # noqa: E402

# (pylstm constraint, the same Keras 3 constraint).
CASES = {
    "max_norm": (constraints.MaxNorm(1.5), keras.constraints.MaxNorm(1.5)),
    "max_norm_default": (constraints.MaxNorm(), keras.constraints.MaxNorm()),
    "max_norm_axis_1": (constraints.MaxNorm(1.0, axis=1), keras.constraints.MaxNorm(1.0, axis=1)),
    "min_max_norm": (constraints.MinMaxNorm(0.5, 2.0),
                     keras.constraints.MinMaxNorm(0.5, 2.0)),
    "min_max_norm_rate": (constraints.MinMaxNorm(0.5, 2.0, rate=0.3, axis=-1),
                          keras.constraints.MinMaxNorm(0.5, 2.0, rate=0.3, axis=-1)),
    "non_neg": (constraints.NonNeg(), keras.constraints.NonNeg()),
    "unit_norm": (constraints.UnitNorm(), keras.constraints.UnitNorm()),
    "unit_norm_axis_1": (constraints.UnitNorm(axis=1), keras.constraints.UnitNorm(axis=1)),
}


def _weight(shape, dtype, seed):
    """Vectors whose norms fall below, inside and above the bounds, plus an all-zero column
    (the case Keras's epsilon exists for)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=shape) * rng.choice([0.05, 0.5, 3.0], size=shape[-1])
    w[..., 1] = 0.0
    return w.astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_keras(case, dtype):
    ours, theirs = CASES[case]
    w = _weight((7, 6), dtype, seed=len(case))
    expected = keras.ops.convert_to_numpy(theirs(w))
    got = ours(w)
    assert got.shape == w.shape and got.dtype == w.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-6 if dtype == "float32" else 1e-12,
                               atol=0)


def test_axis_list_matches_keras_on_a_conv_kernel():
    w = _weight((3, 3, 4, 5), "float32", seed=0)
    for ours, theirs in [(constraints.MaxNorm(1.0, axis=[0, 1, 2]),
                          keras.constraints.MaxNorm(1.0, axis=[0, 1, 2])),
                         (constraints.UnitNorm(axis=[0, 1, 2]),
                          keras.constraints.UnitNorm(axis=[0, 1, 2]))]:
        np.testing.assert_allclose(ours(w), keras.ops.convert_to_numpy(theirs(w)), rtol=1e-6)


def test_norms_after_projection():
    w = _weight((8, 5), "float64", seed=4)
    norms = np.linalg.norm(constraints.MaxNorm(1.0)(w), axis=0)
    assert np.all(norms <= 1.0) and norms[1] == 0.0
    norms = np.linalg.norm(constraints.MinMaxNorm(0.5, 1.0)(w), axis=0)
    assert np.all(norms[[0, 2, 3, 4]] > 0.5 - 1e-6) and np.all(norms <= 1.0) and norms[1] == 0.0
    norms = np.linalg.norm(constraints.UnitNorm()(w), axis=0)
    np.testing.assert_allclose(norms[[0, 2, 3, 4]], 1.0, rtol=1e-6)
    assert np.all(constraints.NonNeg()(w) >= 0)


@pytest.mark.parametrize("name, cls", [
    ("max_norm", constraints.MaxNorm), ("MaxNorm", constraints.MaxNorm),
    ("min_max_norm", constraints.MinMaxNorm), ("MinMaxNorm", constraints.MinMaxNorm),
    ("non_neg", constraints.NonNeg), ("NonNeg", constraints.NonNeg),
    ("unit_norm", constraints.UnitNorm), ("UnitNorm", constraints.UnitNorm),
])
def test_names_give_keras_defaults(name, cls):
    ours = constraints.get(name)
    assert type(ours) is cls
    assert ours.get_config() == keras.constraints.get(name).get_config()


def test_lowercase_aliases_are_the_classes():
    assert constraints.max_norm is constraints.MaxNorm
    assert constraints.min_max_norm is constraints.MinMaxNorm
    assert constraints.non_neg is constraints.NonNeg
    assert constraints.unit_norm is constraints.UnitNorm


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_json_round_trip(case):
    ours, theirs = CASES[case]
    form = json.loads(json.dumps(constraints.serialize(ours)))
    keras_form = keras.constraints.serialize(theirs)
    assert form["class_name"] == keras_form["class_name"]
    assert form["config"] == keras_form["config"]
    assert constraints.deserialize(keras_form).get_config() == ours.get_config()
    restored = constraints.deserialize(form)
    assert type(restored) is type(ours) and restored.get_config() == ours.get_config()
    assert type(ours).from_config(ours.get_config()).get_config() == ours.get_config()


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


@pytest.mark.parametrize("case", sorted(CASES))
def test_non_floating_weight_raises_type_error(case):
    with pytest.raises(TypeError, match="floating-point.*int64"):
        CASES[case][0](np.ones((3, 3), dtype=np.int64))


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


@pytest.mark.parametrize("case", ["max_norm_axis_1", "min_max_norm_rate", "non_neg"])
def test_one_sgd_step_with_kernel_constraint_matches_keras(case):
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 3)).astype("float32")
    ours_constraint, theirs_constraint = CASES[case]
    kernel = rng.normal(size=(4, 3)).astype("float32")
    theirs = keras.Sequential([keras.Input((4,)),
                               keras.layers.Dense(3, kernel_constraint=theirs_constraint)])
    theirs.layers[0].set_weights([kernel, np.zeros(3, "float32")])
    theirs.compile(keras.optimizers.SGD(0.1), "mse")
    theirs.train_on_batch(x, y)

    ours = Sequential([Dense(3, input_shape=(4,),
                             kernel_constraint=constraints.serialize(ours_constraint))])
    ours.layers[0].set_weights([kernel, np.zeros(3, "float32")])
    ours.compile(optimizers.SGD(0.1), "mse")
    ours.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
