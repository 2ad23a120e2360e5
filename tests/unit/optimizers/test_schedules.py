"""`pylstm.optimizers.schedules`: each schedule's value at chosen steps against values worked
out by hand from Keras 3's formulas, argument errors, config round trips through JSON, and a
user's subclass serialized. Against Keras itself: parity/keras/test_optimizers_parity.py."""

import json
import math

import numpy as np
import pytest

from pylstm.optimizers import schedules as S


@pytest.mark.parametrize("schedule,step,want", [
    (S.ExponentialDecay(0.1, 10, 0.5), 0, 0.1),
    (S.ExponentialDecay(0.1, 10, 0.5), 5, 0.1 * 0.5 ** 0.5),
    (S.ExponentialDecay(0.1, 10, 0.5), 20, 0.025),
    (S.ExponentialDecay(0.1, 10, 0.5, staircase=True), 19, 0.05),
    (S.PiecewiseConstantDecay([3, 7], [1.0, 0.5, 0.1]), 3, 1.0),  # boundary belongs below
    (S.PiecewiseConstantDecay([3, 7], [1.0, 0.5, 0.1]), 4, 0.5),
    (S.PiecewiseConstantDecay([3, 7], [1.0, 0.5, 0.1]), 7, 0.5),
    (S.PiecewiseConstantDecay([3, 7], [1.0, 0.5, 0.1]), 8, 0.1),
    (S.PolynomialDecay(0.1, 10, 0.01), 5, 0.055),
    (S.PolynomialDecay(0.1, 10, 0.01, power=2.0), 5, 0.09 * 0.25 + 0.01),
    (S.PolynomialDecay(0.1, 10, 0.01), 30, 0.01),  # capped at decay_steps
    (S.PolynomialDecay(0.1, 10, 0.01, cycle=True), 0, 0.1),
    (S.PolynomialDecay(0.1, 10, 0.01, cycle=True), 15, 0.09 * 0.25 + 0.01),  # horizon 20
    (S.InverseTimeDecay(0.1, 2, 0.5), 3, 0.1 / 1.75),
    (S.InverseTimeDecay(0.1, 2, 0.5, staircase=True), 3, 0.1 / 1.5),
    (S.CosineDecay(0.1, 10), 5, 0.05),
    (S.CosineDecay(0.1, 10, alpha=0.2), 10, 0.02),
    (S.CosineDecay(0.1, 10, alpha=0.2), 40, 0.02),
    (S.CosineDecay(0.0, 10, warmup_target=0.2, warmup_steps=4), 1, 0.05),
    (S.CosineDecay(0.0, 10, warmup_target=0.2, warmup_steps=4), 4, 0.2),
    (S.CosineDecay(0.0, 10, warmup_target=0.2, warmup_steps=4), 9, 0.1),
    (S.CosineDecay(0.0, 10, warmup_target=0.2, warmup_steps=4), 99, 0.0),
    (S.CosineDecayRestarts(0.1, 4), 2, 0.05),
    (S.CosineDecayRestarts(0.1, 4), 4, 0.1),  # first restart after 4 steps (t_mul 2)
    (S.CosineDecayRestarts(0.1, 4), 8, 0.05),  # halfway through the 8-step second period
    (S.CosineDecayRestarts(0.1, 4, t_mul=1.0, m_mul=0.5), 6, 0.05 * 0.5),
    (S.CosineDecayRestarts(0.1, 4, t_mul=2.0, m_mul=0.5, alpha=0.1), 12,
     0.1 * (0.9 * 0.25 + 0.1)),  # third period starts at 12 with half the second's height
])
def test_values_at_chosen_steps(schedule, step, want):
    assert schedule(step) == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert schedule(np.int64(step)) == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_cosine_curve_between_points():
    schedule = S.CosineDecay(1.0, 8, alpha=0.5)
    got = [schedule(s) for s in range(9)]
    want = [0.5 * 0.5 * (1 + math.cos(math.pi * s / 8)) + 0.5 for s in range(9)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert all(a > b for a, b in zip(got, got[1:]))


@pytest.mark.parametrize("make,match", [
    (lambda: S.ExponentialDecay(0.1, 0, 0.5), "decay_steps"),
    (lambda: S.PolynomialDecay(0.1, -1), "decay_steps"),
    (lambda: S.InverseTimeDecay(0.1, 0, 0.5), "decay_steps"),
    (lambda: S.CosineDecay(0.1, 0), "decay_steps"),
    (lambda: S.CosineDecayRestarts(0.1, 0), "first_decay_steps"),
    (lambda: S.PiecewiseConstantDecay([1, 2], [0.1, 0.2]), "1 less"),
])
def test_argument_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("schedule", [
    S.ExponentialDecay(0.1, 10, 0.5, staircase=True),
    S.PiecewiseConstantDecay([3, 7], [1.0, 0.5, 0.1]),
    S.PolynomialDecay(0.1, 10, 0.01, power=2.0, cycle=True),
    S.InverseTimeDecay(0.1, 2, 0.5),
    S.CosineDecay(0.0, 10, alpha=0.1, warmup_target=0.2, warmup_steps=4),
    S.CosineDecayRestarts(0.1, 4, t_mul=1.5, m_mul=0.7, alpha=0.05),
])
def test_config_round_trip_through_json(schedule):
    config = json.loads(json.dumps(S.serialize(schedule)))
    clone = S.deserialize(config)
    assert type(clone) is type(schedule) and clone.get_config() == schedule.get_config()
    assert [clone(s) for s in range(20)] == [schedule(s) for s in range(20)]
    assert S.get(config).get_config() == schedule.get_config()
    assert S.get(schedule) is schedule


def test_keras_default_names_in_configs():
    assert S.PiecewiseConstantDecay([1], [1.0, 0.5]).get_config()["name"] == "PiecewiseConstant"
    assert S.CosineDecayRestarts(0.1, 4).get_config()["name"] == "SGDRDecay"


class HalvingSchedule(S.LearningRateSchedule):
    def __init__(self, rate):
        self.rate = rate

    def __call__(self, step):
        return self.rate / 2 ** step

    def get_config(self):
        return {"rate": self.rate}


def test_user_subclass_round_trips():
    clone = S.deserialize(S.serialize(HalvingSchedule(0.8)))
    assert isinstance(clone, HalvingSchedule) and clone(2) == 0.2


def test_unknown_and_unimplemented():
    with pytest.raises(ValueError, match="ExponentialDecay"):
        S.deserialize({"class_name": "NoSuchDecay", "config": {}})
    with pytest.raises(ValueError, match="Could not interpret"):
        S.get(0.1)
    with pytest.raises(NotImplementedError, match="__call__"):
        S.LearningRateSchedule()(0)


def test_doctests():
    import doctest

    from pylstm import optimizers

    assert doctest.testmod(S).failed == 0
    assert doctest.testmod(optimizers).failed == 0
