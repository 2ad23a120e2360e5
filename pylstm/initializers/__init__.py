"""Weight initializers (Keras 3's `keras.initializers`, in NumPy).

Every initializer is callable as `init(shape, dtype="float32") -> np.ndarray` of that `shape`
and `dtype`. A seeded initializer draws from `np.random.default_rng(seed)` afresh on each call,
so it returns the same values every time, as a seeded Keras 3 initializer does. An unseeded one
draws from `pylstm.utils`'s module generator, which `pylstm.utils.set_random_seed` reseeds.
"""

import math

import numpy as np

from pylstm import utils
from pylstm._serialization import Configurable, Registry


def compute_fans(shape):
    """Returns `(fan_in, fan_out)` for a weight of `shape`, as Keras computes them.

    A 2-D `(rows, cols)` kernel has `fan_in=rows`, `fan_out=cols`; higher ranks multiply both by
    the receptive field `prod(shape[:-2])`; a 1-D shape uses its size for both.
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


class Initializer(Configurable):
    """Base class: subclasses implement `__call__(shape, dtype)` and `get_config()`."""

    def __call__(self, shape, dtype="float32"):
        raise NotImplementedError


class _Seeded(Initializer):
    def __init__(self, seed=None):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"Argument `seed` must be an int or None, received {seed!r}.")
        self.seed = None if seed is None else int(seed)

    def _rng(self):
        return utils.rng_from_seed(self.seed)

    def get_config(self):
        return {"seed": self.seed}


class Zeros(Initializer):
    """All zeros."""

    def __call__(self, shape, dtype="float32"):
        return np.zeros(shape, dtype=dtype)


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape, dtype="float32"):
        return np.ones(shape, dtype=dtype)


class Constant(Initializer):
    """Every entry equal to `value`.

    Args:
        value: float.
    """

    def __init__(self, value=0.0):
        self.value = float(value)

    def __call__(self, shape, dtype="float32"):
        return np.full(shape, self.value, dtype=dtype)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(_Seeded):
    """Normal draws `N(mean, stddev**2)`.

    Args:
        mean: float.
        stddev: float > 0.
        seed: int or None.
    """

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean = float(mean)
        self.stddev = float(stddev)

    def __call__(self, shape, dtype="float32"):
        return self._rng().normal(self.mean, self.stddev, size=shape).astype(dtype)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class RandomUniform(_Seeded):
    """Uniform draws on `[minval, maxval)`.

    Args:
        minval: float.
        maxval: float.
        seed: int or None.
    """

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval = float(minval)
        self.maxval = float(maxval)

    def __call__(self, shape, dtype="float32"):
        return self._rng().uniform(self.minval, self.maxval, size=shape).astype(dtype)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class GlorotUniform(_Seeded):
    """Glorot (Xavier) uniform: `U(-limit, limit)`, `limit = sqrt(6 / (fan_in + fan_out))`.

    Reference: Glorot & Bengio, 2010. Keras's `VarianceScaling(1.0, "fan_avg", "uniform")`.

    Args:
        seed: int or None.
    """

    def __call__(self, shape, dtype="float32"):
        fan_in, fan_out = compute_fans(shape)
        limit = math.sqrt(6.0 / max(1.0, fan_in + fan_out))
        return self._rng().uniform(-limit, limit, size=shape).astype(dtype)


class GlorotNormal(_Seeded):
    """Glorot (Xavier) normal: a normal truncated at two standard deviations.

    The untruncated `stddev` is `sqrt(2 / (fan_in + fan_out)) / 0.87962566103423978`, the factor
    that restores the variance lost to truncation, as in Keras's
    `VarianceScaling(1.0, "fan_avg", "truncated_normal")`.

    Args:
        seed: int or None.
    """

    def __call__(self, shape, dtype="float32"):
        fan_in, fan_out = compute_fans(shape)
        stddev = math.sqrt(2.0 / max(1.0, fan_in + fan_out)) / 0.87962566103423978
        return (stddev * _truncated_standard_normal(self._rng(), shape)).astype(dtype)


class Orthogonal(_Seeded):
    """An orthogonal matrix (Saxe et al., 2014), scaled by `gain`.

    As Keras: the shape is flattened to `(rows, cols) = (prod(shape[:-1]), shape[-1])`, a
    standard normal of shape `(max(rows, cols), min(rows, cols))` is QR-factored, `q` has its
    columns multiplied by `sign(diag(r))` (making the draw uniform over orthogonal matrices),
    and `q` is transposed when `rows < cols`. The rows or the columns, whichever are fewer, are
    orthonormal.

    Args:
        gain: float multiplier.
        seed: int or None.

    Raises:
        ValueError: on call, for a shape of rank < 2.
    """

    def __init__(self, gain=1.0, seed=None):
        super().__init__(seed)
        self.gain = float(gain)

    def __call__(self, shape, dtype="float32"):
        shape = tuple(int(d) for d in shape)
        if len(shape) < 2:
            raise ValueError(
                f"Orthogonal initializer needs a shape of rank >= 2, received shape {shape}."
            )
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = self._rng().standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape).astype(dtype)

    def get_config(self):
        return {"gain": self.gain, "seed": self.seed}


def _truncated_standard_normal(rng, shape):
    """Standard normal draws, redrawing those outside [-2, 2] (TensorFlow's truncation)."""
    z = rng.standard_normal(shape)
    bad = np.abs(z) > 2.0
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(z) > 2.0
    return z


_REGISTRY = Registry(
    "initializer",
    [Zeros, Ones, Constant, RandomNormal, RandomUniform, GlorotUniform, GlorotNormal, Orthogonal],
    aliases={"zero": Zeros, "one": Ones, "normal": RandomNormal, "uniform": RandomUniform},
)


def get(identifier):
    """Returns an initializer.

    Args:
        identifier: a name (`"glorot_uniform"` or `"GlorotUniform"`), a dict
            `{"class_name": ..., "config": ...}`, an `Initializer`, or any callable
            `(shape, dtype) -> np.ndarray` (returned as is).

    Returns:
        A callable `(shape, dtype="float32") -> np.ndarray`, or None for None.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones) or another type.
    """
    return _REGISTRY.get(identifier)


# `{"class_name": str, "config": dict}` and back, JSON-serializable (Keras's protocol).
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize


__all__ = [
    "Initializer", "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform", "GlorotUniform",
    "GlorotNormal", "Orthogonal", "compute_fans", "get", "serialize", "deserialize",
]
