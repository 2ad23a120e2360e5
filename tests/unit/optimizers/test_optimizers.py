"""`pylstm.optimizers`: RMSprop's epsilon inside the square root, clipnorm per variable and
clipvalue per element, constraints after the update and frozen variables skipped, float32
variables kept float32, argument validation, config round trips, `get`. Against PyTorch's
optimizers: parity/torch/test_optimizers.py."""

import json

import numpy as np
import pytest

from pylstm import optimizers
from pylstm.layers.layer import Variable

STEPS = 5


def _grad(value, step):
    # A gradient that depends on the current value, so diverging trajectories are detected.
    return np.sin(3.0 * value) + 0.1 * (step + 1) * np.cos(np.arange(value.size)).reshape(value.shape)


def _run_pylstm(optimizer, init):
    var = Variable("w", init.copy())
    for step in range(STEPS):
        var.grad[...] = _grad(var.value, step)
        optimizer.apply([var])
    return var.value


INIT = np.random.default_rng(0).standard_normal((3, 4))


def _keras_rmsprop(init, lr, rho, eps):
    w, v = init.copy(), np.zeros_like(init)
    for step in range(STEPS):
        g = _grad(w, step)
        v = rho * v + (1 - rho) * g * g
        w = w - lr * g / np.sqrt(v + eps)
    return w


def test_rmsprop_epsilon_inside_the_square_root():
    eps = 0.5
    ours = _run_pylstm(optimizers.RMSprop(0.01, epsilon=eps), INIT)
    np.testing.assert_allclose(ours, _keras_rmsprop(INIT, 0.01, 0.9, eps), rtol=1e-12)


def _apply_once(optimizer, grads):
    variables = [Variable(f"v{i}", np.zeros_like(g)) for i, g in enumerate(grads)]
    for v, g in zip(variables, grads):
        v.grad[...] = g
    optimizer.apply(variables)
    return [-v.value for v in variables]  # SGD(lr=1): the applied (clipped) gradient


def test_clipnorm_is_per_variable():
    a, b = np.array([3.0, 4.0]), np.array([0.3, 0.4])
    ca, cb = _apply_once(optimizers.SGD(1.0, clipnorm=1.0), [a, b])
    np.testing.assert_allclose(ca, [0.6, 0.8])
    np.testing.assert_allclose(cb, b)  # already below the norm: untouched


def test_clipvalue_is_elementwise():
    (c,) = _apply_once(optimizers.SGD(1.0, clipvalue=0.5), [np.array([-2.0, 0.1, 0.7])])
    np.testing.assert_allclose(c, [-0.5, 0.1, 0.5])


def test_constraint_applied_after_update_and_frozen_variables_skipped():
    var = Variable("w", np.zeros(3), constraint=lambda w: np.clip(w, -0.05, 0.05))
    frozen = Variable("f", np.ones(3), trainable=False)
    var.grad[...] = [1.0, -1.0, 0.01]
    frozen.grad[...] = 1.0
    optimizers.SGD(1.0).apply([var, frozen])
    np.testing.assert_allclose(var.value, [-0.05, 0.05, -0.01])
    np.testing.assert_array_equal(frozen.value, np.ones(3))


def test_float32_variables_stay_float32():
    var = Variable("w", np.ones((2, 2), dtype=np.float32))
    var.grad[...] = 0.5
    optimizers.Adam().apply([var])
    assert var.value.dtype == np.float32 and np.all(var.value < 1)


def test_argument_validation():
    with pytest.raises(ValueError, match="Only one"):
        optimizers.SGD(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match="momentum"):
        optimizers.SGD(momentum=1.5)
    with pytest.raises(ValueError, match="learning_rate"):
        optimizers.Adam(learning_rate=-1.0)


@pytest.mark.parametrize("optimizer", [
    optimizers.SGD(0.2, momentum=0.5, nesterov=True, clipnorm=1.0),
    optimizers.Adam(0.01, beta_1=0.8, amsgrad=True, global_clipnorm=2.0),
    optimizers.RMSprop(0.02, rho=0.7, momentum=0.1, centered=True, clipvalue=0.3)])
def test_config_round_trip_through_json(optimizer):
    clone = optimizers.deserialize(json.loads(json.dumps(optimizers.serialize(optimizer))))
    assert type(clone) is type(optimizer) and clone.get_config() == optimizer.get_config()
    np.testing.assert_array_equal(_run_pylstm(clone, INIT), _run_pylstm(optimizer, INIT))


def test_get():
    assert type(optimizers.get("adam")) is optimizers.Adam
    assert type(optimizers.get("RMSprop")) is optimizers.RMSprop
    assert type(optimizers.get("sgd")) is optimizers.SGD
    opt = optimizers.SGD()
    assert optimizers.get(opt) is opt
    assert type(optimizers.get("adamw")) is optimizers.AdamW  # Keras's lower-case name
    with pytest.raises(ValueError, match="adam"):
        optimizers.get("adam_x")
