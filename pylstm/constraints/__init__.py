"""Weight constraints (Keras 3's `keras.constraints`, in NumPy).

A constraint is called as `constraint(w) -> np.ndarray`, a projection of the weight `w` of the
same shape and dtype. The optimizers apply `Variable.constraint` to a variable's value after
each update, as Keras 3's optimizers do. Norms are taken along `axis` (the input axis 0 of a
`(D, units)` kernel by default, so that each unit's incoming weight vector is constrained) and
computed in `w`'s dtype; a norm `n` is rescaled to `desired` by `w * desired / (1e-7 + n)`,
Keras's epsilon placement, so an all-zero vector stays zero.

Any callable `w -> w'` works as a constraint; `get` returns it as is.
"""

import numbers

import numpy as np

from pylstm._serialization import Configurable, Registry

# Keras's `backend.epsilon()`, added to the norms before dividing.
_EPSILON = 1e-7


def _check_real(value, name, low=None, high=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"Argument `{name}` must be a finite float, received {value!r}.")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"Argument `{name}` must be {bounds}, received {value!r}.")
    return float(value)


def _check_axis(axis):
    """An int or a list of ints (Keras documents both, e.g. `[0, 1, 2]` for a Conv2D kernel)."""
    def is_int(a):
        return isinstance(a, (int, np.integer)) and not isinstance(a, bool)

    if is_int(axis):
        return int(axis)
    if isinstance(axis, (list, tuple)) and axis and all(is_int(a) for a in axis):
        return [int(a) for a in axis]
    raise ValueError(f"Argument `axis` must be an int or a list of ints, received {axis!r}.")


class Constraint(Configurable):
    """Base class: subclasses implement `__call__(w)` and `get_config()`. The base class's
    call returns `w` unchanged (Keras's).

    Call arguments:
        w: floating-point `np.ndarray` of any shape, the weight after an optimizer step.

    Returns:
        The projected weight, `np.ndarray` of `w`'s shape and dtype.

    Example:

    >>> import numpy as np
    >>> class Clip(Constraint):
    ...     def __init__(self, limit=1.0):
    ...         self.limit = limit
    ...     def __call__(self, w):
    ...         return np.clip(w, -self.limit, self.limit)
    ...     def get_config(self):
    ...         return {"limit": self.limit}
    >>> Clip(0.5)(np.array([-2.0, 0.25, 3.0]))
    array([-0.5 ,  0.25,  0.5 ])
    """

    def __call__(self, w):
        return w


class _NormConstraint(Constraint):
    """Shared by the constraints that rescale norms along `axis`."""

    def __init__(self, axis):
        self.axis = _check_axis(axis)

    def _norms(self, w):
        """`w` as a floating array, and its L2 norms along `axis` (kept as size-1 axes)."""
        w = np.asarray(w)
        if w.dtype.kind != "f":
            raise TypeError(
                f"{type(self).__name__}: argument `w` must be a floating-point array, received "
                f"dtype {w.dtype}."
            )
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        if any(not -w.ndim <= a < w.ndim for a in axes):
            raise ValueError(
                f"{type(self).__name__}(axis={self.axis!r}) does not fit a weight of shape "
                f"{w.shape}."
            )
        return w, np.sqrt(np.sum(np.square(w), axis=tuple(axes), keepdims=True))


class MaxNorm(_NormConstraint):
    """Rescales each weight vector along `axis` whose L2 norm exceeds `max_value` to norm
    `max_value` (Srivastava et al., 2014, "Dropout", section 5.1; Keras 3's `MaxNorm`).

    Args:
        max_value: float >= 0, the largest allowed norm.
        axis: int or list of ints, the axes the norm is taken over: 0 for the incoming weights
            of each unit of a `(D, units)` kernel.

    Raises:
        ValueError: for a negative or non-numeric `max_value`, or a bad `axis`; on call, for an
            `axis` outside `w`'s rank. TypeError: on call, for a non-floating `w`.

    Example:

    >>> import numpy as np
    >>> MaxNorm(max_value=1.0)(np.array([[3.0, 0.3], [4.0, 0.4]])).round(6)
    array([[0.6, 0.3],
           [0.8, 0.4]])
    """

    def __init__(self, max_value=2, axis=0):
        super().__init__(axis)
        self.max_value = _check_real(max_value, "max_value", low=0)

    def __call__(self, w):
        w, norms = self._norms(w)
        desired = np.clip(norms, 0, self.max_value)
        return w * (desired / (_EPSILON + norms))

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class MinMaxNorm(_NormConstraint):
    """Moves the L2 norm `n` of each weight vector along `axis` to
    `rate * clip(n, min_value, max_value) + (1 - rate) * n` (Keras 3's `MinMaxNorm`).

    Args:
        min_value: float >= 0, the smallest allowed norm.
        max_value: float >= `min_value`, the largest allowed norm.
        rate: float in `[0, 1]`; 1 enforces the bounds at once, a smaller rate moves the norm
            part of the way at each optimizer step.
        axis: int or list of ints, as in `MaxNorm`.

    Raises:
        ValueError: for an argument out of its range or non-numeric, or a bad `axis`; on call,
            for an `axis` outside `w`'s rank. TypeError: on call, for a non-floating `w`.

    Example:

    >>> import numpy as np
    >>> MinMaxNorm(min_value=1.0, max_value=2.0)(np.array([[0.3, 6.0], [0.4, 8.0]])).round(6)
    array([[0.6, 1.2],
           [0.8, 1.6]])
    """

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        super().__init__(axis)
        self.min_value = _check_real(min_value, "min_value", low=0)
        self.max_value = _check_real(max_value, "max_value", low=self.min_value)
        self.rate = _check_real(rate, "rate", low=0, high=1)

    def __call__(self, w):
        w, norms = self._norms(w)
        desired = (self.rate * np.clip(norms, self.min_value, self.max_value)
                   + (1 - self.rate) * norms)
        return w * (desired / (_EPSILON + norms))

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate,
                "axis": self.axis}


class NonNeg(Constraint):
    """Sets negative weights to zero: `maximum(w, 0)` (Keras 3's `NonNeg`).

    Raises:
        TypeError: on call, for a non-floating `w`.

    Example:

    >>> import numpy as np
    >>> NonNeg()(np.array([-1.0, 0.5]))
    array([0. , 0.5])
    """

    def __call__(self, w):
        w = np.asarray(w)
        if w.dtype.kind != "f":
            raise TypeError(
                f"NonNeg: argument `w` must be a floating-point array, received dtype {w.dtype}."
            )
        return np.maximum(w, w.dtype.type(0))


class UnitNorm(_NormConstraint):
    """Rescales each weight vector along `axis` to unit L2 norm: `w / (1e-7 + |w|)`
    (Keras 3's `UnitNorm`).

    Args:
        axis: int or list of ints, as in `MaxNorm`.

    Raises:
        ValueError: for a bad `axis`; on call, for an `axis` outside `w`'s rank.
        TypeError: on call, for a non-floating `w`.

    Example:

    >>> import numpy as np
    >>> UnitNorm(axis=1)(np.array([[3.0, 4.0]])).round(6)
    array([[0.6, 0.8]])
    """

    def __init__(self, axis=0):
        super().__init__(axis)

    def __call__(self, w):
        w, norms = self._norms(w)
        return w / (_EPSILON + norms)

    def get_config(self):
        return {"axis": self.axis}


# Keras 3's lowercase aliases of the classes.
max_norm = MaxNorm
min_max_norm = MinMaxNorm
non_neg = NonNeg
unit_norm = UnitNorm

# Open, as Keras's: a user's `Constraint` subclass round-trips by name like a built-in.
_REGISTRY = Registry("constraint", [MaxNorm, MinMaxNorm, NonNeg, UnitNorm], base=Constraint)


def get(identifier):
    """Returns a constraint.

    Args:
        identifier: None; a name (`"max_norm"`, `"MaxNorm"`, `"min_max_norm"`, `"non_neg"`,
            `"unit_norm"`; default arguments); a dict `{"class_name": ..., "config": ...}`; a
            `Constraint` class or instance; or any callable `w -> w'` (returned as is).

    Returns:
        A callable `w -> np.ndarray`, or None for None.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones) or an identifier
            that is not callable.

    Example:

    >>> get("non_neg")
    NonNeg()
    >>> get({"class_name": "MaxNorm", "config": {"max_value": 3.0, "axis": 0}})
    MaxNorm(max_value=3.0, axis=0)
    """
    return _REGISTRY.get(identifier)


def serialize(constraint):
    """Returns `{"class_name": str, "config": dict}`, JSON-serializable (Keras's protocol), or
    None for None (as Keras: no constraint).

    Args:
        constraint: a `Constraint` (or any object with `get_config()`), or None.

    Returns:
        dict `{"class_name": str, "config": dict}`, or None for None.

    Raises:
        TypeError: for an object without `get_config()` (a plain function), which cannot be
            saved.

    Example:

    >>> from pylstm.constraints import MaxNorm, serialize
    >>> serialize(MaxNorm(max_value=3.0))
    {'class_name': 'MaxNorm', 'config': {'max_value': 3.0, 'axis': 0}}
    """
    return _REGISTRY.serialize(constraint)


def deserialize(config):
    """Builds a constraint from `serialize`'s output (None for None).

    Args:
        config: dict `{"class_name": str, "config": dict}`, the class named by its CamelCase
            or snake_case name, or None.

    Returns:
        The `Constraint`, or None for None.

    Raises:
        ValueError: if `config` is not `{"class_name": ..., "config": {...}}` or names an unknown
            class (import the module defining a custom `Constraint` subclass first).

    Example:

    >>> from pylstm.constraints import MaxNorm, deserialize, serialize
    >>> deserialize(serialize(MaxNorm(max_value=3.0)))
    MaxNorm(max_value=3.0, axis=0)
    >>> deserialize({"class_name": "non_neg", "config": {}})
    NonNeg()
    """
    return _REGISTRY.deserialize(config)


__all__ = [
    "Constraint", "MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "max_norm", "min_max_norm",
    "non_neg", "unit_norm", "get", "serialize", "deserialize",
]
