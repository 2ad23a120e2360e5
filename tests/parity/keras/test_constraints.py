"""`pylstm.constraints` against Keras 3's on the same weights: values, default names and
configs, and one SGD step with a kernel constraint. Oracle-free checks:
unit/constraints/test_constraints.py."""

import json
import os

import numpy as np
import pytest
from pylstm_tests import require

from pylstm import constraints, optimizers
from pylstm.layers import Dense
from pylstm.models import Sequential

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = require("keras")

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


@pytest.mark.parametrize("case", sorted(CASES))
def test_non_floating_weight_raises_type_error(case):
    with pytest.raises(TypeError, match="floating-point.*int64"):
        CASES[case][0](np.ones((3, 3), dtype=np.int64))


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
