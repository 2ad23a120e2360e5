"""`pylstm.regularizers` against Keras 3's: values and gradients (float32 and float64, the
gradients also by central differences), default names and configs, serialization, and one SGD
step with a kernel regularizer. Oracle-free checks: unit/regularizers/test_regularizers.py."""

import json
import os

import numpy as np
import pytest
from pylstm_tests import require

from pylstm import optimizers, regularizers
from pylstm.layers import Dense
from pylstm.models import Sequential

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = require("keras")
tf = require("tensorflow")

# (pylstm regularizer, the same Keras 3 regularizer).
CASES = {
    "l1": (regularizers.L1(0.3), keras.regularizers.L1(0.3)),
    "l1_default": (regularizers.L1(), keras.regularizers.L1()),
    "l2": (regularizers.L2(0.25), keras.regularizers.L2(0.25)),
    "l1_l2": (regularizers.L1L2(l1=0.1, l2=0.2), keras.regularizers.L1L2(l1=0.1, l2=0.2)),
    "l1_l2_only_l2": (regularizers.L1L2(l2=0.2), keras.regularizers.L1L2(l2=0.2)),
    "orthogonal_rows": (regularizers.OrthogonalRegularizer(0.2),
                        keras.regularizers.OrthogonalRegularizer(0.2)),
    "orthogonal_columns": (regularizers.OrthogonalRegularizer(0.5, mode="columns"),
                           keras.regularizers.OrthogonalRegularizer(0.5, mode="columns")),
}


def _weight(shape, dtype, seed):
    """Normal draws with a few exact zeros (where |x| and its gradient are non-smooth)."""
    x = np.random.default_rng(seed).normal(size=shape)
    x.flat[::7] = 0.0
    return x.astype(dtype)


def _keras_value_and_grad(regularizer, x):
    var = tf.Variable(x)
    with tf.GradientTape() as tape:
        penalty = regularizer(var)
    return float(penalty), tape.gradient(penalty, var).numpy()


@pytest.mark.parametrize("shape", [(6, 5), (5, 6)])
@pytest.mark.parametrize("case", sorted(CASES))
def test_value_and_gradient_match_keras_float32(case, shape):
    ours, theirs = CASES[case]
    x = _weight(shape, "float32", seed=len(case))
    value, grad = _keras_value_and_grad(theirs, x)
    assert isinstance(ours(x), float)
    np.testing.assert_allclose(ours(x), value, rtol=1e-6)
    ours_grad = ours.gradient(x)
    assert ours_grad.shape == x.shape and ours_grad.dtype == np.float32
    np.testing.assert_allclose(ours_grad, grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case", ["l1", "l2", "l1_l2"])
def test_float64_value_and_gradient_match_keras(case):
    ours, theirs = CASES[case]
    x = _weight((4, 3, 5), "float64", seed=3)
    value, grad = _keras_value_and_grad(theirs, x)
    # Keras makes the factor a float32 tensor before casting it to float64: rtol covers that.
    np.testing.assert_allclose(ours(x), value, rtol=1e-7)
    assert ours.gradient(x).dtype == np.float64
    np.testing.assert_allclose(ours.gradient(x), grad, rtol=1e-7)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_matches_central_differences(case, numeric_grad):
    ours, _ = CASES[case]
    x = np.random.default_rng(5).normal(size=(5, 4))  # no exact zeros: |x| is smooth here
    np.testing.assert_allclose(ours.gradient(x), numeric_grad(lambda: ours(x), x),
                               rtol=1e-6, atol=1e-9)


def test_orthogonal_row_shorter_than_epsilon_matches_keras():
    # Keras divides such a row by epsilon instead of its norm, a different branch.
    x = _weight((4, 6), "float32", seed=1)
    x[2] = 1e-9 * np.arange(1, 7)
    ours, theirs = CASES["orthogonal_rows"]
    value, grad = _keras_value_and_grad(theirs, x)
    np.testing.assert_allclose(ours(x), value, rtol=1e-6)
    np.testing.assert_allclose(ours.gradient(x), grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name, cls, config", [
    ("l1", regularizers.L1, {"l1": 0.01}),
    ("L1", regularizers.L1, {"l1": 0.01}),
    ("l2", regularizers.L2, {"l2": 0.01}),
    ("L2", regularizers.L2, {"l2": 0.01}),
    ("l1_l2", regularizers.L1L2, {"l1": 0.0, "l2": 0.0}),
    ("l1l2", regularizers.L1L2, {"l1": 0.0, "l2": 0.0}),
    ("L1L2", regularizers.L1L2, {"l1": 0.0, "l2": 0.0}),
    ("orthogonal_regularizer", regularizers.OrthogonalRegularizer,
     {"factor": 0.01, "mode": "rows"}),
    ("OrthogonalRegularizer", regularizers.OrthogonalRegularizer,
     {"factor": 0.01, "mode": "rows"}),
])
def test_names_give_keras_defaults(name, cls, config):
    reg = regularizers.get(name)
    assert type(reg) is cls and reg.get_config() == config
    if name in ("l1", "l2", "l1l2", "orthogonal_regularizer"):
        keras_config = keras.regularizers.get(name).get_config()
        assert keras_config == pytest.approx(config)


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_json_round_trip(case):
    ours, _ = CASES[case]
    restored = regularizers.deserialize(json.loads(json.dumps(regularizers.serialize(ours))))
    assert type(restored) is type(ours)
    assert restored.get_config() == ours.get_config()
    assert type(ours).from_config(ours.get_config()).get_config() == ours.get_config()
    x = _weight((4, 5), "float64", seed=0)
    assert restored(x) == ours(x)


def test_serialize_matches_keras_class_name_and_config():
    for ours, theirs in CASES.values():
        keras_form = keras.regularizers.serialize(theirs)
        ours_form = regularizers.serialize(ours)
        assert ours_form["class_name"] == keras_form["class_name"]
        assert ours_form["config"] == pytest.approx(keras_form["config"])
        # Keras's form (with "module" and "registered_name") reads back directly.
        from_keras = regularizers.deserialize(keras_form)
        assert type(from_keras) is type(ours)
        assert from_keras.get_config() == pytest.approx(ours.get_config())
    assert regularizers.serialize(None) is None and regularizers.deserialize(None) is None


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(2)
    return rng.normal(size=(8, 4)).astype("float32"), rng.normal(size=(8, 3)).astype("float32")


@pytest.mark.parametrize("case", ["l1_l2", "orthogonal_columns"])
def test_one_sgd_step_with_kernel_regularizer_matches_keras(case, data):
    x, y = data
    ours_reg, theirs_reg = CASES[case]
    kernel = _weight((4, 3), "float32", seed=9)
    theirs = keras.Sequential([keras.Input((4,)),
                               keras.layers.Dense(3, kernel_regularizer=theirs_reg)])
    theirs.layers[0].set_weights([kernel, np.zeros(3, "float32")])
    theirs.compile(keras.optimizers.SGD(0.1), "mse")
    keras_loss = theirs.evaluate(x, y, verbose=0)
    theirs.train_on_batch(x, y)

    ours = Sequential([Dense(3, input_shape=(4,),
                             kernel_regularizer=regularizers.serialize(ours_reg))])
    ours.layers[0].set_weights([kernel, np.zeros(3, "float32")])
    ours.compile(optimizers.SGD(0.1), "mse")
    assert ours.evaluate(x, y, verbose=0) == pytest.approx(keras_loss, rel=1e-5)
    ours.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
