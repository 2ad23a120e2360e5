"""Learning-rate schedules with Keras 3's names, arguments and formulas
(`keras.optimizers.schedules`).

A schedule maps the optimizer's step (its count of updates before the current one, the value
Keras passes) to a learning rate. Pass one as any optimizer's `learning_rate`; the optimizer
calls it before every update and serializes it in its config. Values are computed in float64
and returned as Python floats (Keras computes in float32; the two agree to float32 rounding).

Example:

>>> from pylstm import optimizers
>>> schedule = optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
>>> round(schedule(20), 6)
0.025
>>> optimizer = optimizers.Adam(learning_rate=schedule)
>>> optimizer.learning_rate  # the rate of the next update (step 0)
0.1
"""

import math

from pylstm._serialization import Configurable, Registry


class LearningRateSchedule(Configurable):
    """Base class of the schedules: subclasses implement `__call__(step)` and `get_config()`.

    A user's subclass serializes too when it implements `get_config()` (the registry is open,
    as Keras's is for registered classes).

    Raises:
        NotImplementedError: on calling a subclass that does not override `__call__`.

    Example:

    >>> class Halving(LearningRateSchedule):
    ...     def __call__(self, step):
    ...         return 0.1 * 0.5 ** (step // 100)
    ...     def get_config(self):
    ...         return {}
    >>> [Halving()(step) for step in (0, 100, 250)]
    [0.1, 0.05, 0.025]
    """

    def __call__(self, step):
        raise NotImplementedError(
            f"Learning rate schedule '{type(self).__name__}' must override `__call__(self, step)`.")


def _check_positive(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"Argument `{name}` must be > 0. Received: {name}={value!r}")
    return value


def _step(step):
    return float(step)


class ExponentialDecay(LearningRateSchedule):
    """`initial_learning_rate * decay_rate ** (step / decay_steps)` (the exponent floored with
    `staircase`), as `keras.optimizers.schedules.ExponentialDecay`.

    Args:
        initial_learning_rate: float, the rate at step 0.
        decay_steps: number > 0, the steps over which the rate is multiplied by `decay_rate`.
        decay_rate: float.
        staircase: bool; if True the rate changes every `decay_steps` steps only.
        name: str, Keras's name of the schedule.

    Raises:
        ValueError: if `decay_steps` is not > 0.

    Example:

    >>> schedule = ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    >>> [schedule(step) for step in (0, 9, 10, 25)]
    [0.1, 0.1, 0.05, 0.025]
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = _check_positive(decay_steps, "decay_steps")
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name

    def __call__(self, step):
        p = _step(step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate * self.decay_rate ** p

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """`values[0]` while `step <= boundaries[0]`, `values[i]` while
    `boundaries[i - 1] < step <= boundaries[i]`, `values[-1]` after the last boundary, as
    `keras.optimizers.schedules.PiecewiseConstantDecay`.

    Args:
        boundaries: list of increasing numbers (steps).
        values: list of floats, one more than `boundaries`.
        name: str, Keras's name of the schedule.

    Raises:
        ValueError: if `len(values) != len(boundaries) + 1`.

    Example:

    >>> schedule = PiecewiseConstantDecay(boundaries=[100, 200], values=[1.0, 0.5, 0.1])
    >>> [schedule(step) for step in (0, 100, 101, 201)]
    [1.0, 1.0, 0.5, 0.1]
    """

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                "The length of boundaries should be 1 less than the length of values. "
                f"Received: boundaries={boundaries} of length {len(boundaries)}, and "
                f"values={values} of length {len(values)}.")
        self.boundaries = list(boundaries)
        self.values = list(values)
        self.name = name

    def __call__(self, step):
        step = _step(step)
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """`(initial - end) * (1 - step / decay_steps) ** power + end`, with `step` capped at
    `decay_steps`, or with `cycle` the horizon stretched to the next multiple of
    `decay_steps`, as `keras.optimizers.schedules.PolynomialDecay`.

    Args:
        initial_learning_rate: float, the rate at step 0.
        decay_steps: number > 0.
        end_learning_rate: float, the rate reached at `decay_steps`.
        power: float.
        cycle: bool, restart the decay after `decay_steps`.
        name: str, Keras's name of the schedule.

    Raises:
        ValueError: if `decay_steps` is not > 0.

    Example:

    >>> schedule = PolynomialDecay(0.1, decay_steps=100, end_learning_rate=0.01)
    >>> [round(schedule(step), 4) for step in (0, 50, 100, 200)]
    [0.1, 0.055, 0.01, 0.01]
    """

    def __init__(self, initial_learning_rate, decay_steps, end_learning_rate=0.0001, power=1.0,
                 cycle=False, name="PolynomialDecay"):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = _check_positive(decay_steps, "decay_steps")
        self.end_learning_rate = end_learning_rate
        self.power = power
        self.cycle = cycle
        self.name = name

    def __call__(self, step):
        step, decay_steps = _step(step), float(self.decay_steps)
        if self.cycle:
            decay_steps *= 1.0 if step == 0 else math.ceil(step / self.decay_steps)
        else:
            step = min(step, decay_steps)
        p = step / decay_steps
        return ((self.initial_learning_rate - self.end_learning_rate) * (1 - p) ** self.power
                + self.end_learning_rate)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "end_learning_rate": self.end_learning_rate,
                "power": self.power, "cycle": self.cycle, "name": self.name}


class InverseTimeDecay(LearningRateSchedule):
    """`initial_learning_rate / (1 + decay_rate * step / decay_steps)` (the ratio floored with
    `staircase`), as `keras.optimizers.schedules.InverseTimeDecay`.

    Args:
        initial_learning_rate: float, the rate at step 0.
        decay_steps: number > 0.
        decay_rate: float.
        staircase: bool; if True the rate changes every `decay_steps` steps only.
        name: str, Keras's name of the schedule.

    Raises:
        ValueError: if `decay_steps` is not > 0.

    Example:

    >>> schedule = InverseTimeDecay(0.1, decay_steps=10, decay_rate=1.0)
    >>> [schedule(step) for step in (0, 10, 30)]
    [0.1, 0.05, 0.025]
    """

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="InverseTimeDecay"):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = _check_positive(decay_steps, "decay_steps")
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name

    def __call__(self, step):
        p = _step(step) / self.decay_steps
        if self.staircase:
            p = math.floor(p)
        return self.initial_learning_rate / (1.0 + self.decay_rate * p)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


def _cosine(fraction, alpha):
    return (1 - alpha) * 0.5 * (1.0 + math.cos(math.pi * fraction)) + alpha


class CosineDecay(LearningRateSchedule):
    """Cosine decay (Loshchilov & Hutter, 2017) with an optional linear warmup, as
    `keras.optimizers.schedules.CosineDecay`.

    Without `warmup_target`: `initial * ((1 - alpha) * 0.5 * (1 + cos(pi * s / decay_steps))
    + alpha)` with `s = min(step, decay_steps)`. With it: the rate rises linearly from
    `initial_learning_rate` to `warmup_target` over `warmup_steps`, then decays from
    `warmup_target` as above over `decay_steps` more steps.

    Args:
        initial_learning_rate: float, the rate at step 0.
        decay_steps: number > 0, the length of the decay.
        alpha: float, the final rate as a fraction of the decay's starting rate.
        name: str, Keras's name of the schedule.
        warmup_target: float or None, the rate reached at the end of the warmup.
        warmup_steps: number >= 0, the length of the warmup.

    Raises:
        ValueError: if `decay_steps` is not > 0.

    Example:

    >>> schedule = CosineDecay(0.0, decay_steps=100, warmup_target=0.1, warmup_steps=10)
    >>> [round(schedule(step), 4) for step in (0, 5, 10, 60, 110)]
    [0.0, 0.05, 0.1, 0.05, 0.0]
    """

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay",
                 warmup_target=None, warmup_steps=0):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = _check_positive(decay_steps, "decay_steps")
        self.alpha = alpha
        self.name = name
        self.warmup_target = warmup_target
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = _step(step)
        if self.warmup_target is None:
            step = min(step, self.decay_steps)
            return self.initial_learning_rate * _cosine(step / self.decay_steps, self.alpha)
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            delta = self.warmup_target - self.initial_learning_rate
            return delta * step / self.warmup_steps + self.initial_learning_rate
        fraction = (step - self.warmup_steps) / self.decay_steps
        return self.warmup_target * _cosine(fraction, self.alpha)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "alpha": self.alpha, "name": self.name,
                "warmup_target": self.warmup_target, "warmup_steps": self.warmup_steps}


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR, Loshchilov & Hutter, 2017), as
    `keras.optimizers.schedules.CosineDecayRestarts`: the i-th period lasts
    `first_decay_steps * t_mul ** i` steps and starts at `initial * m_mul ** i`; within a
    period the rate follows `CosineDecay`'s curve down to `alpha` times its start.

    Args:
        initial_learning_rate: float, the rate at step 0.
        first_decay_steps: number > 0, the length of the first period.
        t_mul: float, the factor by which each period is longer than the previous one.
        m_mul: float, the factor by which each period starts lower than the previous one.
        alpha: float, the lowest rate as a fraction of `initial_learning_rate`.
        name: str, Keras's name of the schedule.

    Raises:
        ValueError: if `first_decay_steps` is not > 0.

    Example:

    >>> schedule = CosineDecayRestarts(0.1, first_decay_steps=10)  # periods of 10, 20, 40
    >>> [round(schedule(step), 4) for step in (0, 5, 10, 20, 30)]
    [0.1, 0.05, 0.1, 0.05, 0.1]
    """

    def __init__(self, initial_learning_rate, first_decay_steps, t_mul=2.0, m_mul=1.0,
                 alpha=0.0, name="SGDRDecay"):
        self.initial_learning_rate = initial_learning_rate
        self.first_decay_steps = _check_positive(first_decay_steps, "first_decay_steps")
        self.t_mul = t_mul
        self.m_mul = m_mul
        self.alpha = alpha
        self.name = name

    def __call__(self, step):
        fraction = _step(step) / self.first_decay_steps
        if self.t_mul == 1.0:
            i_restart = math.floor(fraction)
            fraction -= i_restart
        else:
            # the period whose start, a geometric sum of earlier lengths, `fraction` has passed
            i_restart = math.floor(math.log(1.0 - fraction * (1.0 - self.t_mul))
                                   / math.log(self.t_mul))
            done = (1.0 - self.t_mul ** i_restart) / (1.0 - self.t_mul)
            fraction = (fraction - done) / self.t_mul ** i_restart
        cosine = 0.5 * self.m_mul ** i_restart * (1.0 + math.cos(math.pi * fraction))
        return self.initial_learning_rate * ((1 - self.alpha) * cosine + self.alpha)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "first_decay_steps": self.first_decay_steps, "t_mul": self.t_mul,
                "m_mul": self.m_mul, "alpha": self.alpha, "name": self.name}


_REGISTRY = Registry(
    "learning rate schedule",
    [ExponentialDecay, PiecewiseConstantDecay, PolynomialDecay, InverseTimeDecay, CosineDecay,
     CosineDecayRestarts],
    base=LearningRateSchedule)


def serialize(learning_rate_schedule):
    """Returns a schedule's class name and config, as
    `keras.optimizers.schedules.serialize`.

    Args:
        learning_rate_schedule: a `LearningRateSchedule`.

    Returns:
        dict `{"class_name": str, "config": dict}`, JSON-serializable.

    Raises:
        TypeError: if the schedule has no `get_config()`.

    Example:

    >>> config = serialize(PiecewiseConstantDecay(boundaries=[100], values=[0.1, 0.01]))
    >>> config["class_name"], config["config"]["boundaries"], config["config"]["values"]
    ('PiecewiseConstantDecay', [100], [0.1, 0.01])
    """
    return _REGISTRY.serialize(learning_rate_schedule)


def deserialize(config):
    """Builds a schedule from its serialized form, as
    `keras.optimizers.schedules.deserialize`.

    Args:
        config: dict `{"class_name": str, "config": dict}` (what `serialize` returns).

    Returns:
        A new `LearningRateSchedule`.

    Raises:
        ValueError: for a malformed dict or an unknown class name (the valid ones are listed).

    Example:

    >>> config = {"class_name": "ExponentialDecay",
    ...           "config": {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.5}}
    >>> deserialize(config)(20)
    0.025
    """
    return _REGISTRY.deserialize(config)


def get(identifier):
    """Returns a schedule from a config dict or a schedule (returned as is).

    Args:
        identifier: a dict `{"class_name": str, "config": dict}` or a `LearningRateSchedule`.

    Returns:
        A `LearningRateSchedule`: a new one for a dict, else `identifier` itself.

    Raises:
        ValueError: for an unknown class name or another type.

    Example:

    >>> schedule = get({"class_name": "CosineDecay",
    ...                 "config": {"initial_learning_rate": 0.1, "decay_steps": 100}})
    >>> type(schedule).__name__, round(schedule(50), 4)
    ('CosineDecay', 0.05)
    """
    if isinstance(identifier, LearningRateSchedule):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise ValueError(f"Could not interpret learning rate schedule identifier: {identifier!r}.")


__all__ = ["LearningRateSchedule", "ExponentialDecay", "PiecewiseConstantDecay",
           "PolynomialDecay", "InverseTimeDecay", "CosineDecay", "CosineDecayRestarts",
           "serialize", "deserialize", "get"]
