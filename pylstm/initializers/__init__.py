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
    the receptive field `prod(shape[:-2])`; a 1-D shape uses its size for both, and the empty
    shape `()` gives `(1, 1)`.

    Args:
        shape: tuple of ints, the weight's shape.

    Returns:
        `(fan_in, fan_out)`, a pair of ints.

    Example:

    >>> from pylstm.initializers import compute_fans
    >>> compute_fans((3, 16)), compute_fans((5, 3, 4)), compute_fans((7,))
    ((3, 16), (15, 20), (7, 7))
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


class Initializer(Configurable):
    """Base class of the initializers (Keras 3's `keras.initializers.Initializer`):
    subclasses implement `__call__(shape, dtype)` and, to be saved with a model,
    `get_config()`. Any callable `(shape, dtype) -> np.ndarray` works as an initializer too.

    Call arguments:
        shape: tuple of ints, the weight's shape.
        dtype: NumPy dtype or its name, `"float32"` by default.

    Returns:
        `np.ndarray` of `shape` and `dtype`.

    Raises:
        NotImplementedError: on call, for a subclass without `__call__`.

    Example:

    >>> import numpy as np
    >>> from pylstm.initializers import Initializer
    >>> from pylstm.layers import Dense
    >>> class Halves(Initializer):
    ...     def __call__(self, shape, dtype="float32"):
    ...         return np.full(shape, 0.5, dtype=dtype)
    >>> layer = Dense(2, kernel_initializer=Halves())
    >>> layer.build((None, 3))
    >>> layer.kernel.value
    array([[0.5, 0.5],
           [0.5, 0.5],
           [0.5, 0.5]], dtype=float32)
    """

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
    """All zeros (Keras 3's `Zeros`, `"zeros"`); called as `Initializer`.

    Example:

    >>> from pylstm.initializers import Zeros
    >>> Zeros()((2, 3))
    array([[0., 0., 0.],
           [0., 0., 0.]], dtype=float32)
    """

    def __call__(self, shape, dtype="float32"):
        return np.zeros(shape, dtype=dtype)


class Ones(Initializer):
    """All ones (Keras 3's `Ones`, `"ones"`); called as `Initializer`.

    Example:

    >>> from pylstm.initializers import Ones
    >>> Ones()((2,), dtype="float64")
    array([1., 1.])
    """

    def __call__(self, shape, dtype="float32"):
        return np.ones(shape, dtype=dtype)


class Constant(Initializer):
    """Every entry equal to `value` (Keras 3's `Constant`); called as `Initializer`.

    Args:
        value: float, the value of every entry.

    Raises:
        ValueError: for a `value` that `float()` refuses, such as `"a"`.
        TypeError: for a `value` that `float()` refuses, such as None.

    Example:

    >>> from pylstm.initializers import Constant
    >>> from pylstm.layers import Dense
    >>> layer = Dense(2, bias_initializer=Constant(0.5))
    >>> layer.build((None, 3))
    >>> layer.bias.value
    array([0.5, 0.5], dtype=float32)
    """

    def __init__(self, value=0.0):
        self.value = float(value)

    def __call__(self, shape, dtype="float32"):
        return np.full(shape, self.value, dtype=dtype)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(_Seeded):
    """Normal draws `N(mean, stddev**2)` (Keras 3's `RandomNormal`); called as
    `Initializer`.

    Args:
        mean: float, the mean.
        stddev: float >= 0, the standard deviation.
        seed: int or None; an int gives the same values on every call, None draws from the
            generator `pylstm.utils.set_random_seed` seeds.

    Raises:
        ValueError: if `seed` is not an int or None; on call, for a negative `stddev`.

    Example:

    >>> import numpy as np
    >>> from pylstm.initializers import RandomNormal
    >>> init = RandomNormal(mean=0.0, stddev=0.1, seed=0)
    >>> w = init((1000, 4))
    >>> w.shape, w.dtype, round(float(w.std()), 2)
    ((1000, 4), dtype('float32'), 0.1)
    >>> bool(np.array_equal(w, init((1000, 4))))  # seeded: the same values on every call
    True
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
    """Uniform draws on `[minval, maxval)` (Keras 3's `RandomUniform`); called as
    `Initializer`.

    Args:
        minval: float, the lower bound.
        maxval: float, the upper bound.
        seed: int or None, as in `RandomNormal`.

    Raises:
        ValueError: if `seed` is not an int or None.

    Example:

    >>> from pylstm.initializers import RandomUniform
    >>> w = RandomUniform(minval=-1.0, maxval=1.0, seed=0)((1000, 4))
    >>> w.dtype, round(float(w.min()), 2), round(float(w.max()), 2)
    (dtype('float32'), -1.0, 1.0)
    """

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval = float(minval)
        self.maxval = float(maxval)

    def __call__(self, shape, dtype="float32"):
        return self._rng().uniform(self.minval, self.maxval, size=shape).astype(dtype)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class TruncatedNormal(_Seeded):
    """`mean + stddev * z`, `z` a standard normal redrawn outside [-2, 2] (Keras 3's
    `TruncatedNormal`); called as `Initializer`.

    Args:
        mean: float, the mean before truncation.
        stddev: float >= 0, the standard deviation before truncation.
        seed: int or None, as in `RandomNormal`.

    Raises:
        ValueError: if `seed` is not an int or None.

    Example:

    >>> import numpy as np
    >>> from pylstm.initializers import TruncatedNormal
    >>> w = TruncatedNormal(stddev=0.1, seed=0)((1000, 4))
    >>> w.shape, bool(np.abs(w).max() <= 0.2)  # within two standard deviations
    ((1000, 4), True)
    """

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean = float(mean)
        self.stddev = float(stddev)

    def __call__(self, shape, dtype="float32"):
        z = _truncated_standard_normal(self._rng(), shape)
        return (self.mean + self.stddev * z).astype(dtype)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class VarianceScaling(_Seeded):
    """Draws with variance `scale / n`, `n` the fan chosen by `mode` (Keras's
    `VarianceScaling`; He et al. 2015, LeCun et al. 1998 and Glorot & Bengio 2010 are special
    cases). Called as `Initializer`, with the fans of `compute_fans(shape)`.

    Args:
        scale: float > 0, the variance times the fan.
        mode: `"fan_in"`, `"fan_out"` or `"fan_avg"` (the mean of the two).
        distribution: `"truncated_normal"` (a normal truncated at two standard deviations,
            rescaled by 0.87962566103423978 to keep the variance), `"untruncated_normal"` or
            `"uniform"` (`U(-sqrt(3 scale / n), sqrt(3 scale / n))`).
        seed: int or None, as in `RandomNormal`.

    Raises:
        ValueError: for a non-positive `scale`, an unknown `mode` or `distribution`, or a
            `seed` that is not an int or None.

    Example:

    >>> import numpy as np
    >>> from pylstm.initializers import VarianceScaling
    >>> init = VarianceScaling(scale=2.0, mode="fan_in", distribution="uniform", seed=0)
    >>> w = init((50, 20))
    >>> w.shape, bool(np.abs(w).max() <= np.sqrt(3 * 2.0 / 50))  # limit sqrt(3 scale / n)
    ((50, 20), True)
    """

    _MODES = ("fan_in", "fan_out", "fan_avg")
    _DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        super().__init__(seed)
        if not scale > 0:
            raise ValueError(f"Argument `scale` must be positive, received {scale!r}.")
        if mode not in self._MODES:
            raise ValueError(f"Argument `mode` must be one of {self._MODES}, received {mode!r}.")
        if distribution == "normal":  # Keras's older spelling
            distribution = "truncated_normal"
        if distribution not in self._DISTRIBUTIONS:
            raise ValueError(f"Argument `distribution` must be one of {self._DISTRIBUTIONS}, "
                             f"received {distribution!r}.")
        self.scale = float(scale)
        self.mode = mode
        self.distribution = distribution

    def __call__(self, shape, dtype="float32"):
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        variance = self.scale / max(1.0, n)
        rng = self._rng()
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            values = rng.uniform(-limit, limit, size=shape)
        elif self.distribution == "untruncated_normal":
            values = math.sqrt(variance) * rng.standard_normal(shape)
        else:
            stddev = math.sqrt(variance) / 0.87962566103423978
            values = stddev * _truncated_standard_normal(rng, shape)
        return values.astype(dtype)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution,
                "seed": self.seed}


class _FixedVarianceScaling(VarianceScaling):
    """A `VarianceScaling` whose only argument is `seed`."""

    _ARGS = None

    def __init__(self, seed=None):
        super().__init__(*self._ARGS, seed=seed)

    def get_config(self):
        return {"seed": self.seed}


class GlorotUniform(_FixedVarianceScaling):
    """Glorot (Xavier) uniform: `U(-limit, limit)`, `limit = sqrt(6 / (fan_in + fan_out))`.

    Reference: Glorot & Bengio, 2010. Keras's `VarianceScaling(1.0, "fan_avg", "uniform")`,
    the default `kernel_initializer` of Keras's `Dense` and `LSTM`; called as `Initializer`.

    Args:
        seed: int or None, as in `RandomNormal`.

    Raises:
        ValueError: if `seed` is not an int or None.

    Example:

    >>> import numpy as np
    >>> from pylstm.initializers import GlorotUniform
    >>> from pylstm.layers import Dense
    >>> layer = Dense(2, kernel_initializer=GlorotUniform(seed=0))
    >>> layer.build((None, 3))
    >>> bool(np.array_equal(layer.kernel.value, GlorotUniform(seed=0)((3, 2))))
    True
    >>> bool(np.abs(layer.kernel.value).max() <= np.sqrt(6 / (3 + 2)))
    True
    """

    _ARGS = (1.0, "fan_avg", "uniform")


class GlorotNormal(_FixedVarianceScaling):
    """Glorot (Xavier) normal: `VarianceScaling(1.0, "fan_avg", "truncated_normal")`.

    Keras 3's `GlorotNormal`; called as `Initializer`.

    Args:
        seed: int or None, as in `RandomNormal`.

    Raises:
        ValueError: if `seed` is not an int or None.

    Example:

    >>> from pylstm.initializers import GlorotNormal
    >>> w = GlorotNormal(seed=0)((200, 100))
    >>> w.shape, round(float(w.std()), 2)  # sqrt(2 / (fan_in + fan_out))
    ((200, 100), 0.08)
    """

    _ARGS = (1.0, "fan_avg", "truncated_normal")


class HeNormal(_FixedVarianceScaling):
    """He normal (He et al., 2015): `VarianceScaling(2.0, "fan_in", "truncated_normal")`.

    Keras 3's `HeNormal`; called as `Initializer`.

    Args:
        seed: int or None, as in `RandomNormal`.

    Raises:
        ValueError: if `seed` is not an int or None.

    Example:

    >>> from pylstm.initializers import HeNormal
    >>> w = HeNormal(seed=0)((200, 100))
    >>> w.shape, round(float(w.std()), 2)  # sqrt(2 / fan_in)
    ((200, 100), 0.1)
    """

    _ARGS = (2.0, "fan_in", "truncated_normal")


class HeUniform(_FixedVarianceScaling):
    """He uniform (He et al., 2015): `VarianceScaling(2.0, "fan_in", "uniform")`.

    Keras 3's `HeUniform`; called as `Initializer`.

    Args:
        seed: int or None, as in `RandomNormal`.

    Raises:
        ValueError: if `seed` is not an int or None.

    Example:

    >>> import numpy as np
    >>> from pylstm.initializers import HeUniform
    >>> w = HeUniform(seed=0)((200, 100))
    >>> w.dtype, bool(np.abs(w).max() <= np.sqrt(6 / 200))  # limit sqrt(6 / fan_in)
    (dtype('float32'), True)
    """

    _ARGS = (2.0, "fan_in", "uniform")


class LecunNormal(_FixedVarianceScaling):
    """LeCun normal (LeCun et al., 1998): `VarianceScaling(1.0, "fan_in", "truncated_normal")`.

    Keras 3's `LecunNormal`; called as `Initializer`.

    Args:
        seed: int or None, as in `RandomNormal`.

    Raises:
        ValueError: if `seed` is not an int or None.

    Example:

    >>> from pylstm.initializers import LecunNormal
    >>> w = LecunNormal(seed=0)((200, 100))
    >>> w.shape, round(float(w.std()), 2)  # sqrt(1 / fan_in)
    ((200, 100), 0.07)
    """

    _ARGS = (1.0, "fan_in", "truncated_normal")


class LecunUniform(_FixedVarianceScaling):
    """LeCun uniform (LeCun et al., 1998): `VarianceScaling(1.0, "fan_in", "uniform")`.

    Keras 3's `LecunUniform`; called as `Initializer`.

    Args:
        seed: int or None, as in `RandomNormal`.

    Raises:
        ValueError: if `seed` is not an int or None.

    Example:

    >>> import numpy as np
    >>> from pylstm.initializers import LecunUniform
    >>> w = LecunUniform(seed=0)((200, 100))
    >>> w.dtype, bool(np.abs(w).max() <= np.sqrt(3 / 200))  # limit sqrt(3 / fan_in)
    (dtype('float32'), True)
    """

    _ARGS = (1.0, "fan_in", "uniform")


class Identity(Initializer):
    """`gain` times the identity matrix (Keras's `Identity`); 2-D shapes only.

    Called as `Initializer`; a non-square shape gets ones on the leading diagonal.

    Args:
        gain: float, the value on the diagonal.

    Raises:
        ValueError: on call, for a shape that is not 2-D.

    Example:

    >>> from pylstm.initializers import Identity
    >>> Identity(gain=2.0)((2, 3))
    array([[2., 0., 0.],
           [0., 2., 0.]], dtype=float32)
    """

    def __init__(self, gain=1.0):
        self.gain = float(gain)

    def __call__(self, shape, dtype="float32"):
        shape = tuple(int(d) for d in shape)
        if len(shape) != 2:
            raise ValueError(f"Identity initializer needs a 2-D shape, received {shape}.")
        return (self.gain * np.eye(*shape)).astype(dtype)

    def get_config(self):
        return {"gain": self.gain}


class Orthogonal(_Seeded):
    """An orthogonal matrix (Saxe et al., 2014), scaled by `gain`.

    As Keras: the shape is flattened to `(rows, cols) = (prod(shape[:-1]), shape[-1])`, a
    standard normal of shape `(max(rows, cols), min(rows, cols))` is QR-factored, `q` has its
    columns multiplied by `sign(diag(r))` (making the draw uniform over orthogonal matrices),
    and `q` is transposed when `rows < cols`. The rows or the columns, whichever are fewer, are
    orthonormal.

    Keras's default `recurrent_initializer` of `LSTM`; called as `Initializer`.

    Args:
        gain: float multiplier.
        seed: int or None, as in `RandomNormal`.

    Raises:
        ValueError: if `seed` is not an int or None; on call, for a shape of rank < 2.

    Example:

    >>> import numpy as np
    >>> from pylstm.initializers import Orthogonal
    >>> from pylstm.layers import LSTM
    >>> layer = LSTM(4, recurrent_initializer=Orthogonal(seed=0))
    >>> layer.build((None, 5, 3))
    >>> u = layer.recurrent_kernel.value  # (units, 4 * units): orthonormal rows
    >>> u.shape, bool(np.allclose(u @ u.T, np.eye(4), atol=1e-6))
    ((4, 16), True)
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
        return np.ascontiguousarray((self.gain * q).reshape(shape), dtype=dtype)

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
    [Zeros, Ones, Constant, RandomNormal, RandomUniform, TruncatedNormal, VarianceScaling,
     GlorotUniform, GlorotNormal, HeNormal, HeUniform, LecunNormal, LecunUniform, Orthogonal,
     Identity],
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

    Example:

    >>> from pylstm.initializers import get
    >>> get("glorot_uniform")
    GlorotUniform(seed=None)
    >>> get({"class_name": "RandomNormal", "config": {"stddev": 0.1, "seed": 1}})
    RandomNormal(mean=0.0, stddev=0.1, seed=1)
    """
    return _REGISTRY.get(identifier)


def serialize(initializer):
    """Returns `{"class_name": str, "config": dict}`, JSON-serializable (Keras's protocol).

    Args:
        initializer: an `Initializer`, or any object with `get_config()`.

    Returns:
        dict, with the class's name and `initializer.get_config()`.

    Raises:
        AttributeError: for an object without `get_config()` (a plain function), which
            cannot be saved.

    Example:

    >>> from pylstm.initializers import HeNormal, serialize
    >>> serialize(HeNormal(seed=1))
    {'class_name': 'HeNormal', 'config': {'seed': 1}}
    """
    return _REGISTRY.serialize(initializer)


def deserialize(config):
    """Builds an initializer from `serialize`'s output.

    Args:
        config: dict `{"class_name": str, "config": dict}`; the class's CamelCase or
            snake_case name.

    Returns:
        The `Initializer`.

    Raises:
        ValueError: if `config` is not such a dict, or names an unknown class.

    Example:

    >>> from pylstm.initializers import Orthogonal, deserialize, serialize
    >>> deserialize(serialize(Orthogonal(gain=2.0, seed=3)))
    Orthogonal(gain=2.0, seed=3)
    >>> deserialize({"class_name": "constant", "config": {"value": 0.5}})
    Constant(value=0.5)
    """
    return _REGISTRY.deserialize(config)


__all__ = [
    "Initializer", "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform", "TruncatedNormal",
    "VarianceScaling", "GlorotUniform", "GlorotNormal", "HeNormal", "HeUniform", "LecunNormal",
    "LecunUniform", "Orthogonal", "Identity", "compute_fans", "get", "serialize", "deserialize",
]
