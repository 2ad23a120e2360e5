"""Weight penalties with their gradients (Keras 3's `keras.regularizers`, in NumPy).

A regularizer is called as `regularizer(x) -> float`, the penalty Keras 3 adds to the loss for
a weight `x`, and differentiated with `regularizer.gradient(x) -> np.ndarray` of `x`'s shape and
dtype. pylstm has no autodiff, so the gradient is written by hand; `Sequential` adds it into
`Variable.grad` at each training step. The penalty is computed in `x`'s dtype, the factor cast
to that dtype first, as Keras does.

A user's regularizer is any object with `__call__(x) -> float` and `gradient(x) -> ndarray`
(e.g. a `Regularizer` subclass), or a pair of callables `(penalty, gradient)`.
"""

import numbers

import numpy as np

from pylstm._serialization import Configurable, Registry

# Keras's `backend.epsilon()`: the smallest norm `OrthogonalRegularizer` divides by.
_EPSILON = 1e-7


def _check_factor(value, name):
    """A non-negative finite real number, as Keras's `validate_float_arg` demands."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not np.isfinite(value) or value < 0):
        raise ValueError(
            f"Argument `{name}` must be a non-negative finite float, received {value!r}."
        )
    return float(value)


def _as_float_array(x):
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TypeError(
            f"A regularizer's argument `x` must be a floating-point array, received dtype "
            f"{x.dtype}."
        )
    return x


class Regularizer(Configurable):
    """Base class: subclasses implement `__call__(x)`, `gradient(x)` and `get_config()`.

    Call arguments:
        x: floating-point `np.ndarray` of any shape (a weight, or a layer's output for an
            activity regularizer).

    Returns:
        `__call__`: the penalty, a Python float. `gradient`: d penalty / d x, an
        `np.ndarray` of `x`'s shape and dtype.

    Example:

    >>> import numpy as np
    >>> class Quartic(Regularizer):
    ...     def __init__(self, factor=1.0):
    ...         self.factor = factor
    ...     def __call__(self, x):
    ...         return float(self.factor * np.sum(x ** 4))
    ...     def gradient(self, x):
    ...         return 4 * self.factor * x ** 3
    ...     def get_config(self):
    ...         return {"factor": self.factor}
    >>> Quartic(0.5).gradient(np.array([1.0, 2.0]))
    array([ 2., 16.])
    """

    def __call__(self, x):
        raise NotImplementedError(f"{type(self).__name__} must implement `__call__(x)`.")

    def gradient(self, x):
        raise NotImplementedError(
            f"{type(self).__name__} must implement `gradient(x)`: pylstm has no autodiff, so a "
            "regularizer supplies the derivative of its penalty."
        )


class L1(Regularizer):
    """The L1 penalty `l1 * sum(|x|)`; its gradient is `l1 * sign(x)`, with `sign(0) = 0`
    (TensorFlow's subgradient of `abs` at 0).

    Args:
        l1: float >= 0, the factor; None means the default 0.01 (as Keras).

    Raises:
        ValueError: for a negative, non-finite or non-numeric `l1`.

    Example:

    >>> import numpy as np
    >>> L1(0.1)(np.array([1.0, -2.0, 0.0]))
    0.30000000000000004
    >>> L1(0.1).gradient(np.array([1.0, -2.0, 0.0]))
    array([ 0.1, -0.1,  0. ])
    """

    def __init__(self, l1=0.01):
        self.l1 = _check_factor(0.01 if l1 is None else l1, "l1")

    def __call__(self, x):
        x = _as_float_array(x)
        return float(x.dtype.type(self.l1) * np.sum(np.abs(x)))

    def gradient(self, x):
        x = _as_float_array(x)
        return x.dtype.type(self.l1) * np.sign(x)

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    """The L2 penalty `l2 * sum(x ** 2)` (no factor 1/2, as Keras); its gradient is `2 * l2 * x`.

    Args:
        l2: float >= 0, the factor; None means the default 0.01 (as Keras).

    Raises:
        ValueError: for a negative, non-finite or non-numeric `l2`.

    Example:

    >>> import numpy as np
    >>> L2(0.5)(np.ones((2, 3)))
    3.0
    >>> L2(0.5).gradient(np.array([1.0, -2.0]))
    array([ 1., -2.])
    """

    def __init__(self, l2=0.01):
        self.l2 = _check_factor(0.01 if l2 is None else l2, "l2")

    def __call__(self, x):
        x = _as_float_array(x)
        return float(x.dtype.type(self.l2) * np.sum(np.square(x)))

    def gradient(self, x):
        x = _as_float_array(x)
        return x.dtype.type(2.0 * self.l2) * x

    def get_config(self):
        return {"l2": self.l2}


class L1L2(Regularizer):
    """The sum of the L1 and L2 penalties: `l1 * sum(|x|) + l2 * sum(x ** 2)`.

    Unlike `L1` and `L2`, both factors default to 0 (Keras 3's `L1L2`; its `get("l1l2")` also
    gives zero factors, and so does `get("l1_l2")` here).

    Args:
        l1: float >= 0; None means 0.
        l2: float >= 0; None means 0.

    Raises:
        ValueError: for a negative, non-finite or non-numeric factor.

    Example:

    >>> import numpy as np
    >>> L1L2(l1=0.1, l2=0.5)(np.array([1.0, -2.0]))
    2.8
    >>> L1L2(l1=0.1, l2=0.5).gradient(np.array([1.0, -2.0]))
    array([ 1.1, -2.1])
    """

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _check_factor(0.0 if l1 is None else l1, "l1")
        self.l2 = _check_factor(0.0 if l2 is None else l2, "l2")

    def __call__(self, x):
        x = _as_float_array(x)
        dtype = x.dtype.type
        return float(dtype(self.l1) * np.sum(np.abs(x)) + dtype(self.l2) * np.sum(np.square(x)))

    def gradient(self, x):
        x = _as_float_array(x)
        dtype = x.dtype.type
        return dtype(self.l1) * np.sign(x) + dtype(2.0 * self.l2) * x

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class OrthogonalRegularizer(Regularizer):
    """Pushes the rows (or the columns) of a 2-D weight towards mutual orthogonality.

    As Keras 3: each of the `n` rows of `x (n, d)` is L2-normalized, `u_i = x_i / max(|x_i|,
    1e-7)`, and the penalty is `factor` times the mean of `|u_i . u_j|` over the
    `n (n - 1) / 2` pairs `i < j`. `mode="columns"` does the same on `x.T`. The gradient takes
    `sign(0) = 0` for an exactly orthogonal pair.

    Args:
        factor: float >= 0.
        mode: `"rows"` or `"columns"`.

    Call arguments:
        x: floating-point `np.ndarray` `(n, d)`, with at least two rows (`"rows"`) or two
            columns (`"columns"`): with one there is no pair, and Keras's formula gives NaN.

    Raises:
        ValueError: for a bad `factor` or `mode`; on call, for `x` not 2-D or without two rows
            (columns) to compare.

    Example:

    >>> import numpy as np
    >>> OrthogonalRegularizer(factor=1.0)(np.array([[1.0, 0.0], [1.0, 1.0]]))
    0.7071067811865475
    """

    def __init__(self, factor=0.01, mode="rows"):
        self.factor = _check_factor(factor, "factor")
        if mode not in ("rows", "columns"):
            raise ValueError(f"Argument `mode` must be 'rows' or 'columns', received {mode!r}.")
        self.mode = mode

    def _vectors(self, x):
        """The vectors to compare, as the rows of a 2-D array (a view of `x` or `x.T`)."""
        x = _as_float_array(x)
        if x.ndim != 2:
            raise ValueError(
                f"OrthogonalRegularizer needs a 2-D `x`, received shape {x.shape}."
            )
        a = x if self.mode == "rows" else x.T
        if a.shape[0] < 2:
            raise ValueError(
                f"OrthogonalRegularizer(mode={self.mode!r}) needs at least two {self.mode} to "
                f"compare, received shape {x.shape}."
            )
        return a

    def _normalized(self, a):
        norms = np.sqrt(np.sum(np.square(a), axis=1, keepdims=True))
        return a / np.maximum(norms, a.dtype.type(_EPSILON)), norms

    def __call__(self, x):
        a = self._vectors(x)
        u, _ = self._normalized(a)
        products = u @ u.T
        np.fill_diagonal(products, 0)
        n = a.shape[0]
        # Each off-diagonal pair appears twice in the sum, hence 0.5 (Keras's formula).
        return float(a.dtype.type(self.factor * 0.5 / (n * (n - 1) / 2.0)) *
                     np.sum(np.abs(products)))

    def gradient(self, x):
        a = self._vectors(x)
        u, norms = self._normalized(a)
        products = u @ u.T
        np.fill_diagonal(products, 0)
        n = a.shape[0]
        # d penalty / d products = c * sign(products) off the diagonal; products = u u^T is
        # symmetric, so d penalty / d u = 2 c sign(products) @ u.
        grad_u = a.dtype.type(2.0 * self.factor / (n * (n - 1))) * (np.sign(products) @ u)
        # Through u = a / |a|: (grad_u - u (u . grad_u)) / |a|; a row shorter than epsilon is
        # divided by the constant epsilon instead, so its Jacobian is 1 / epsilon.
        radial = np.sum(u * grad_u, axis=1, keepdims=True)
        grad_a = np.where(norms >= _EPSILON,
                          (grad_u - u * radial) / np.maximum(norms, a.dtype.type(_EPSILON)),
                          grad_u / a.dtype.type(_EPSILON))
        return grad_a if self.mode == "rows" else grad_a.T

    def get_config(self):
        return {"factor": self.factor, "mode": self.mode}


class _FunctionRegularizer(Regularizer):
    """A `(penalty, gradient)` pair of callables, as given to `get`; it has no config."""

    def __init__(self, penalty, gradient):
        self._penalty = penalty
        self._gradient = gradient

    def __call__(self, x):
        return float(self._penalty(x))

    def gradient(self, x):
        return self._gradient(x)

    def get_config(self):
        raise TypeError(
            f"Cannot serialize the regularizer built from the functions {self._penalty!r} and "
            f"{self._gradient!r}: to save a model with it, subclass "
            "`pylstm.regularizers.Regularizer` and implement `get_config()`."
        )

    def __repr__(self):
        return f"<regularizer ({self._penalty!r}, {self._gradient!r})>"


# Keras 3's lowercase aliases of the classes.
l1 = L1
l2 = L2
l1_l2 = L1L2
orthogonal_regularizer = OrthogonalRegularizer

# Open, as Keras's: a user's `Regularizer` subclass round-trips by name like a built-in.
# "l1l2" is Keras 3's snake_case of "L1L2"; "l1_l2" comes from pylstm's.
_REGISTRY = Registry("regularizer", [L1, L2, L1L2, OrthogonalRegularizer],
                     aliases={"l1l2": L1L2}, base=Regularizer)


def get(identifier):
    """Returns a regularizer.

    Args:
        identifier: None; a name (`"l1"`, `"l2"`, `"l1_l2"`, `"L1L2"`,
            `"orthogonal_regularizer"`, ...; defaults as the class's); a dict
            `{"class_name": ..., "config": ...}`; a `Regularizer` class or instance; any object
            with `__call__(x) -> float` and `gradient(x) -> ndarray` (returned as is); or a pair
            of callables `(penalty, gradient)`.

    Returns:
        An object with `__call__(x) -> float` and `gradient(x) -> ndarray`, or None for None.

    Raises:
        TypeError: for a callable without a `gradient` method (pylstm has no autodiff) or a
            `Regularizer` subclass that does not implement `gradient`.
        ValueError: for an unknown name (the message lists the valid ones) or an identifier of
            another type.

    Example:

    >>> import numpy as np
    >>> get("l2")
    L2(l2=0.01)
    >>> reg = get((lambda x: float(np.sum(x ** 4)), lambda x: 4 * x ** 3))
    >>> reg(np.array([1.0, 2.0])), reg.gradient(np.array([1.0, 2.0]))
    (17.0, array([ 4., 32.]))
    """
    if isinstance(identifier, (tuple, list)) and len(identifier) == 2 and all(
            callable(f) for f in identifier):
        return _FunctionRegularizer(*identifier)
    regularizer = _REGISTRY.get(identifier)
    if isinstance(regularizer, Regularizer):
        if type(regularizer).gradient is Regularizer.gradient:
            raise TypeError(
                f"Regularizer {type(regularizer).__name__} does not implement `gradient(x)`; "
                "pylstm has no autodiff, so a regularizer must supply the derivative of its "
                "penalty."
            )
    elif regularizer is not None and not callable(getattr(regularizer, "gradient", None)):
        raise TypeError(
            f"Regularizer {regularizer!r} has no `gradient(x)` method: pylstm has no autodiff, so "
            "it cannot differentiate the penalty. Pass a pair `(penalty, gradient)` of "
            "callables, an object with `__call__(x)` and `gradient(x)`, or a "
            "`pylstm.regularizers.Regularizer` subclass."
        )
    return regularizer


def serialize(regularizer):
    """Returns `{"class_name": str, "config": dict}`, JSON-serializable (Keras's protocol), or
    None for None (as Keras: no regularizer).

    Args:
        regularizer: a `Regularizer` (or any object with `get_config()`), or None.

    Returns:
        dict `{"class_name": str, "config": dict}`, or None for None.

    Raises:
        TypeError: for an object without `get_config()`, which cannot be saved; a
            `(penalty, gradient)` pair's `get_config()` raises it too.

    Example:

    >>> from pylstm.regularizers import L1L2, serialize
    >>> serialize(L1L2(l1=0.01, l2=0.001))
    {'class_name': 'L1L2', 'config': {'l1': 0.01, 'l2': 0.001}}
    """
    return _REGISTRY.serialize(regularizer)


def deserialize(config):
    """Builds a regularizer from `serialize`'s output (None for None).

    Args:
        config: dict `{"class_name": str, "config": dict}`, the class named by its CamelCase
            or snake_case name, or None.

    Returns:
        The `Regularizer`, or None for None.

    Raises:
        ValueError: if `config` is not `{"class_name": ..., "config": {...}}` or names an unknown
            class (import the module defining a custom `Regularizer` subclass first).

    Example:

    >>> from pylstm.regularizers import L1L2, deserialize, serialize
    >>> deserialize(serialize(L1L2(l1=0.01, l2=0.001)))
    L1L2(l1=0.01, l2=0.001)
    >>> deserialize({"class_name": "l2", "config": {"l2": 0.001}})
    L2(l2=0.001)
    """
    return _REGISTRY.deserialize(config)


__all__ = [
    "Regularizer", "L1", "L2", "L1L2", "OrthogonalRegularizer", "l1", "l2", "l1_l2",
    "orthogonal_regularizer", "get", "serialize", "deserialize",
]
