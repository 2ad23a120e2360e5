"""What every Keras-style optimizer does around its formula (`pylstm.optimizers.optimizer`):
learning rates from floats, schedules and callables (read, set, refused), `iterations`,
decoupled weight decay and its exclusions, the moving average of the weights (`use_ema`,
overwriting, `finalize_variable_values`), gradient accumulation, `loss_scale_factor`, the
common argument errors, and configs (Keras's keys, schedules inside) through JSON and `get`."""

import json

import numpy as np
import pytest

from pylstm import optimizers
from pylstm.optimizers import schedules
from pylstm.variable import Variable


def _var(value, name="w"):
    return Variable(name, np.array(value, dtype=np.float64))


def _step(optimizer, variables, grads):
    for var, g in zip(variables, grads):
        var.grad[...] = g
    optimizer.apply(variables)


def test_schedule_is_called_with_the_step_count():
    seen = []

    class Recording(schedules.LearningRateSchedule):
        def __call__(self, step):
            seen.append(step)
            return 0.1 * (step + 1)

    opt = optimizers.SGD(Recording())
    var = _var([0.0])
    for _ in range(3):
        _step(opt, [var], [[1.0]])
    assert seen == [0, 1, 2]
    np.testing.assert_allclose(var.value, [-(0.1 + 0.2 + 0.3)])
    assert opt.iterations == 3 and opt.learning_rate == pytest.approx(0.4)


def test_float_learning_rate_can_be_set():
    opt = optimizers.Adam(0.01)
    opt.learning_rate = 0.002  # as ReduceLROnPlateau does
    assert opt.learning_rate == 0.002 and opt.get_config()["learning_rate"] == 0.002
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = -1.0
    opt.learning_rate = schedules.ExponentialDecay(0.1, 10, 0.5)  # a new source replaces it
    assert opt.learning_rate == 0.1


def test_a_learning_rate_of_zero_leaves_the_weights_alone():
    # Keras accepts 0: a LearningRateScheduler warm-up may start there.
    opt = optimizers.Adam(0.0)
    var = _var([1.0])
    _step(opt, [var], [[1.0]])
    np.testing.assert_array_equal(var.value, [1.0])
    opt.learning_rate = 0.1
    _step(opt, [var], [[1.0]])
    assert var.value[0] < 1.0


def test_fit_ends_with_the_moving_averages_as_keras_does():
    from pylstm.layers import Dense, Input
    from pylstm.models import Sequential

    x = np.linspace(-1, 1, 16).reshape(8, 2).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model = Sequential([Input((2,)), Dense(1)])
    model.compile(optimizers.SGD(0.1, use_ema=True, ema_momentum=0.5), loss="mse")
    model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    averages = [model.optimizer._slots[v]["average"] for v in model.trainable_variables]
    for var, average in zip(model.trainable_variables, averages):
        np.testing.assert_array_equal(var.value, average)


@pytest.mark.parametrize("source", [schedules.CosineDecay(0.1, 10), lambda: 0.05])
def test_setting_a_float_over_a_schedule_or_callable_is_refused(source):
    opt = optimizers.SGD(source)
    with pytest.raises(TypeError, match="not settable"):
        opt.learning_rate = 0.01


def test_callable_learning_rate_is_read_each_step():
    rates = iter([0.5, 0.25])
    opt = optimizers.SGD(lambda: next(rates))
    var = _var([1.0])
    _step(opt, [var], [[1.0]])
    _step(opt, [var], [[1.0]])
    np.testing.assert_allclose(var.value, [1.0 - 0.5 - 0.25])


@pytest.mark.parametrize("bad", [-0.1, float("inf"), float("nan"), "fast", True, None])
def test_invalid_learning_rate(bad):
    with pytest.raises(ValueError, match="learning_rate"):
        optimizers.SGD(bad)


def test_weight_decay_is_decoupled_and_exclusions_apply():
    opt = optimizers.SGD(0.1, weight_decay=0.5)
    kernel, bias, other = _var([2.0], "dense/kernel"), _var([2.0], "dense/bias"), _var([2.0])
    # a name matches Keras's Variable.name, without the layer's: "dense" excludes nothing
    opt.exclude_from_weight_decay(var_list=[other], var_names=["bias", "dense"])
    _step(opt, [kernel, bias, other], [[1.0], [1.0], [1.0]])
    np.testing.assert_allclose(kernel.value, [2.0 - 2.0 * 0.5 * 0.1 - 0.1])
    np.testing.assert_allclose(bias.value, [2.0 - 0.1])
    np.testing.assert_allclose(other.value, [2.0 - 0.1])
    with pytest.raises(ValueError, match="before"):
        opt.exclude_from_weight_decay(var_names=["kernel"])


def test_weight_decay_uses_the_scheduled_rate():
    opt = optimizers.SGD(schedules.PiecewiseConstantDecay([0], [0.1, 0.01]), weight_decay=1.0)
    var = _var([1.0])
    _step(opt, [var], [[0.0]])
    _step(opt, [var], [[0.0]])
    np.testing.assert_allclose(var.value, [1.0 * 0.9 * 0.99])


def test_ema_average_and_finalize():
    opt = optimizers.SGD(1.0, use_ema=True, ema_momentum=0.5)
    var = _var([0.0])
    values = []
    for g in ([-1.0], [-2.0], [-4.0]):
        _step(opt, [var], [g])
        values.append(var.value[0])
    assert values == [1.0, 3.0, 7.0]
    # the first average is the weights themselves, then 0.5 old + 0.5 new
    np.testing.assert_allclose(opt._slots[var]["average"], [0.5 * (0.5 * 1.0 + 0.5 * 3.0) + 3.5])
    opt.finalize_variable_values([var])
    np.testing.assert_allclose(var.value, [4.5])
    optimizers.SGD(1.0).finalize_variable_values([var])  # no EMA: nothing happens
    np.testing.assert_allclose(var.value, [4.5])


def test_ema_overwrite_frequency():
    opt = optimizers.SGD(1.0, use_ema=True, ema_momentum=0.5, ema_overwrite_frequency=2)
    var = _var([0.0])
    _step(opt, [var], [[-1.0]])  # w 1, average 1
    assert var.value[0] == 1.0
    _step(opt, [var], [[-2.0]])  # w 3, average 2, overwritten at the 2nd iteration
    assert var.value[0] == 2.0


def test_gradient_accumulation_updates_with_the_mean_every_n_calls():
    opt = optimizers.SGD(0.1, momentum=0.5, gradient_accumulation_steps=3)
    var = _var([0.0, 0.0])
    _step(opt, [var], [[1.0, 0.0]])
    _step(opt, [var], [[2.0, 3.0]])
    np.testing.assert_array_equal(var.value, [0.0, 0.0])
    np.testing.assert_array_equal(opt._slots[var]["gradient_accumulator"], [3.0, 3.0])
    assert (opt.iterations, opt._iterations) == (0, 2)
    _step(opt, [var], [[3.0, 0.0]])
    np.testing.assert_allclose(var.value, [-0.2, -0.1])  # mean gradient (2, 1)
    np.testing.assert_array_equal(opt._slots[var]["gradient_accumulator"], [0.0, 0.0])
    assert (opt.iterations, opt._iterations) == (1, 3)


def test_accumulation_bias_correction_counts_updates():
    """Adam's t is the count of updates, not of calls."""
    accumulated, plain = optimizers.Adam(0.1, gradient_accumulation_steps=2), optimizers.Adam(0.1)
    a, b = _var([1.0, -1.0]), _var([1.0, -1.0])
    for g in ([0.2, 0.4], [0.6, 0.0], [1.0, 1.0], [1.0, 1.0]):
        _step(accumulated, [a], [g])
    for g in ([0.4, 0.2], [1.0, 1.0]):
        _step(plain, [b], [g])
    np.testing.assert_allclose(a.value, b.value, rtol=1e-12)


def test_loss_scale_factor_divides_gradients():
    opt = optimizers.SGD(1.0, loss_scale_factor=4.0)
    var = _var([0.0])
    assert opt.scale_loss(2.5) == 10.0
    _step(opt, [var], [[8.0]])
    np.testing.assert_allclose(var.value, [-2.0])
    assert optimizers.SGD().scale_loss(2.5) == 2.5


@pytest.mark.parametrize("kwargs,match", [
    (dict(gradient_accumulation_steps=1), "gradient_accumulation_steps"),
    (dict(gradient_accumulation_steps=2.0), "gradient_accumulation_steps"),
    (dict(use_ema=True, ema_momentum=1.5), "ema_momentum"),
    (dict(use_ema=True, ema_overwrite_frequency=0), "ema_overwrite_frequency"),
    (dict(weight_decay="l2"), "weight_decay"),
    (dict(clipnorm=1.0, global_clipnorm=1.0), "Only one"),
])
def test_common_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optimizers.Adam(**kwargs)


KERAS_BASE_KEYS = ["name", "learning_rate", "weight_decay", "clipnorm", "global_clipnorm",
                   "clipvalue", "use_ema", "ema_momentum", "ema_overwrite_frequency",
                   "loss_scale_factor", "gradient_accumulation_steps"]


@pytest.mark.parametrize("optimizer", [
    optimizers.AdamW(0.01, weight_decay=0.1, amsgrad=True, use_ema=True,
                     ema_overwrite_frequency=5, name="my_adamw"),
    optimizers.Adagrad(schedules.InverseTimeDecay(0.1, 2, 0.5), initial_accumulator_value=0.2,
                       gradient_accumulation_steps=2),
    optimizers.Adadelta(1.0, rho=0.8, clipvalue=0.5),
    optimizers.Adamax(0.02, beta_2=0.9, weight_decay=0.01),
    optimizers.Nadam(schedules.CosineDecay(0.0, 10, warmup_target=0.1, warmup_steps=2)),
    optimizers.Lion(0.001, beta_1=0.8, global_clipnorm=1.0, loss_scale_factor=8.0),
    optimizers.SGD(0.1, momentum=0.9, weight_decay=0.5),
    optimizers.RMSprop(0.01, centered=True, use_ema=True),
], ids=lambda o: type(o).__name__)
def test_config_round_trip_through_json(optimizer):
    config = optimizers.serialize(optimizer)
    assert list(config["config"])[:len(KERAS_BASE_KEYS)] == KERAS_BASE_KEYS
    clone = optimizers.deserialize(json.loads(json.dumps(config)))
    assert type(clone) is type(optimizer) and clone.get_config() == optimizer.get_config()
    a, b = _var(np.linspace(-1, 1, 6)), _var(np.linspace(-1, 1, 6))
    for k in range(4):
        g = np.cos(np.arange(6.0) + k)
        _step(optimizer, [a], [g])
        _step(clone, [b], [g])
    np.testing.assert_array_equal(a.value, b.value)


def test_get_by_name():
    for name, cls in [("adamw", optimizers.AdamW), ("AdamW", optimizers.AdamW),
                      ("adagrad", optimizers.Adagrad), ("adadelta", optimizers.Adadelta),
                      ("adamax", optimizers.Adamax), ("nadam", optimizers.Nadam),
                      ("lion", optimizers.Lion)]:
        opt = optimizers.get(name)
        assert type(opt) is cls and opt.name == opt.get_config()["name"]
    assert optimizers.get("adamw").weight_decay == 0.004


def test_fit_with_a_loss_scale_factor_trains_as_without():
    # fit scales the loss gradient by the factor; the optimizer divides it back
    from pylstm.layers import Dense, Input
    from pylstm.models import Sequential

    x = np.linspace(-1, 1, 16).reshape(8, 2)
    y = x.sum(axis=1, keepdims=True)
    weights = []
    for factor in (None, 8.0):
        model = Sequential([Input((2,)), Dense(1, kernel_initializer="ones")])
        model.compile(optimizers.SGD(0.1, loss_scale_factor=factor), loss="mse")
        model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-6)
