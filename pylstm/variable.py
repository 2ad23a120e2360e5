"""A weight as a `Variable` (its array, its gradient, its trainability), and the byte budget
inside which loaders make weights without running initializers (`deferred_weights`).

Layers (`pylstm.layers`), `pylstm.nn` modules and the optimizers all hold their weights as
`Variable`s; this module depends on nothing else of pylstm.
"""

import contextlib
import contextvars
import math
from typing import NamedTuple

import numpy as np

DEFAULT_MAX_WEIGHT_BYTES = 2 ** 31
"""The default `max_weight_bytes` of the loaders that build a model from a file's config
(2 GiB of weights): a config that implies more is refused before anything is allocated,
unless the caller raises the limit."""

# A context variable, not a global: each thread starts with its own (unset) value, so a
# thread building a model while another loads a file still runs its initializers.
_WEIGHT_BUDGET = contextvars.ContextVar("pylstm_weight_budget", default=None)


class WeightLimitError(ValueError):
    """Raised inside `deferred_weights` when the weights would exceed its limit (a
    `ValueError`, so that loaders' callers need catch nothing new): what `load_model` and
    `load_keras` raise for a file whose model is over their `max_weight_bytes`.

    Example:

    >>> from pylstm.layers import Dense
    >>> try:
    ...     with deferred_weights(max_bytes=1024):
    ...         Dense(64, name="dense").build((None, 32))  # a (32, 64) float32 kernel
    ... except ValueError as error:
    ...     print(type(error).__name__, str(error)[:50])
    WeightLimitError The model's weights of 8192 bytes exceed the limit
    """


class WeightBudget:
    """The running total of a `deferred_weights` block.

    Attributes:
        max_bytes: int, the limit.
        nbytes: int, the bytes of the weights created in the block so far.
    """

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self.nbytes = 0

    def zeros(self, name, shape, dtype, order="C"):
        """Counts, then allocates, zeros of `shape`, `dtype` and memory `order` for the
        weight `name`.

        Raises:
            WeightLimitError: if the total would exceed `max_bytes` (nothing is allocated).
        """
        shape = tuple(int(d) for d in shape)
        if any(d < 0 for d in shape):
            raise ValueError(f"Weight '{name}' has a negative dimension in shape {shape}.")
        # Python ints, so that a huge shape cannot overflow the count.
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        if self.nbytes + nbytes > self.max_bytes:
            raise WeightLimitError(
                f"The model's weights of {self.nbytes + nbytes} bytes exceed the limit of "
                f"{self.max_bytes} bytes (max_weight_bytes), reached at weight '{name}' of "
                f"shape {shape}; pass a larger `max_weight_bytes` to load such a model.")
        self.nbytes += nbytes
        return np.zeros(shape, dtype=dtype, order=order)


def deferred_zeros(name, shape, dtype, order="C"):
    """Inside `deferred_weights`: counts the weight `name` and returns zeros of `shape`,
    `dtype` and memory `order` in place of its initial value; outside: None (run the
    initializer). For weights made without `Layer.add_weight` (`pylstm.nn` modules).

    Raises:
        WeightLimitError: if the block's weights would exceed its limit.
    """
    budget = _WEIGHT_BUDGET.get()
    return None if budget is None else budget.zeros(name, shape, dtype, order)


def deferring_weights():
    """Whether the current thread or task is inside a `deferred_weights` block (where a weight's
    byte limit applies instead of the checks made before running an initializer)."""
    return _WEIGHT_BUDGET.get() is not None


def check_byte_limit(value, name):
    """`value` as an int, checked as the byte limit passed as argument `name`.

    Raises:
        TypeError: if `value` is not an int.
        ValueError: if `value` is negative.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"Argument `{name}` must be an int, received {value!r:.80}.")
    if value < 0:
        raise ValueError(f"Argument `{name}` must be non-negative, received {value}.")
    return int(value)


@contextlib.contextmanager
def deferred_weights(max_bytes=DEFAULT_MAX_WEIGHT_BYTES):
    """Builds layers without running their initializers, within a limit on weight bytes.

    Inside the block (in the current thread or task only), `Layer.add_weight` allocates
    zeros of the weight's shape and dtype instead of calling its initializer, and counts
    their bytes. Loaders build a model from a file's config inside it, then set the file's
    weights, so that a small file cannot make them run an initializer for minutes or
    allocate gigabytes.

    Args:
        max_bytes: non-negative int, the most bytes of weights the block may create.

    Yields:
        A `WeightBudget` whose `nbytes` is the total bytes of the weights created.

    Raises:
        TypeError: if `max_bytes` is not an int.
        ValueError: if `max_bytes` is negative; `WeightLimitError` (a `ValueError`, from
            `add_weight`) if the weights exceed it.

    Example:

    >>> from pylstm.layers import Dense, Input, LSTM
    >>> from pylstm.models import Sequential
    >>> with deferred_weights(max_bytes=2**20) as budget:
    ...     model = Sequential([Input((10, 3)), LSTM(8), Dense(1)])
    >>> budget.nbytes, model.count_params() * 4, float(abs(model.get_weights()[0]).sum())
    (1572, 1572, 0.0)
    """
    budget = WeightBudget(check_byte_limit(max_bytes, "max_bytes"))
    token = _WEIGHT_BUDGET.set(budget)
    try:
        yield budget
    finally:
        _WEIGHT_BUDGET.reset(token)


class SlicedGradient(NamedTuple):
    """A variable's gradient with the row-lookup slices it sums (`Variable.grad` and
    `Variable.grad_slices` together), as it travels from one shard of a batch to the process
    that sums the shards: `dense` the gradient `shape`, `indices (K,)` int and `values (K,) +
    shape[1:]` the rows. Shards add up as TensorFlow adds `IndexedSlices`: dense parts
    summed, rows concatenated in shard order (`add_gradients`)."""

    dense: np.ndarray
    indices: np.ndarray
    values: np.ndarray


def add_gradients(a, b):
    """`a + b` for two shards' gradients of one variable, arrays or `SlicedGradient`s (a sum
    with a dense gradient is dense, as TensorFlow densifies `IndexedSlices + Tensor`)."""
    if isinstance(a, SlicedGradient) and isinstance(b, SlicedGradient):
        return SlicedGradient(a.dense + b.dense, np.concatenate([a.indices, b.indices]),
                              np.concatenate([a.values, b.values]))
    dense = (lambda g: g.dense if isinstance(g, SlicedGradient) else g)
    return dense(a) + dense(b)


class Variable:
    """A trainable (or frozen) array owned by a layer.

    Attributes:
        name: str, e.g. `"lstm/kernel"`.
        value: `np.ndarray`, the weight itself; optimizers update it in place.
        grad: `np.ndarray` of the same shape and dtype, accumulated by `Layer.backward`
            and zeroed (`zero_grad`) by the training loop before each batch.
        grad_slices: None, or `(indices, values)` when the gradient came from row lookups
            (`Embedding`): `indices` an int array `(K,)` and `values` `(K,) + shape[1:]` of
            the variable's dtype, one row per looked-up occurrence, duplicates not summed
            (`grad` holds their per-row sums). It is TensorFlow's `tf.IndexedSlices`
            gradient, on which the Keras-style optimizers act as Keras 3 on TensorFlow does
            (see `pylstm.optimizers.optimizer`). Set by `add_grad_slices`; cleared by
            `zero_grad`, by the optimizer's step, and when a dense gradient is added.
        trainable: bool; optimizers skip frozen variables.
        regularizer: callable `value -> float` or None (penalty added to the loss).
        constraint: callable `value -> value` or None (applied after each optimizer step).

    Args:
        name, value, trainable, regularizer, constraint: the attributes above; `value` is
            kept, not copied, and `grad` is made as zeros of its shape and dtype.

    Example:

    >>> import numpy as np
    >>> v = Variable("dense/kernel", np.zeros((2, 3), "float32"))
    >>> v.assign(np.ones((2, 3)))
    >>> v, float(v.value.sum()), float(v.grad.sum())
    (<Variable dense/kernel shape=(2, 3) dtype=float32>, 6.0, 0.0)
    """

    grad_slices = None  # also the default of a Variable unpickled from an older pylstm

    def __init__(self, name, value, trainable=True, regularizer=None, constraint=None):
        self.name = name
        self.value = value
        # np.zeros (calloc) rather than zeros_like, which writes every byte: a loader builds
        # a model before reading its weights, and untouched pages cost no memory until then.
        if value.flags.c_contiguous or value.flags.f_contiguous:
            self.grad = np.zeros(value.shape, value.dtype,
                                 order="C" if value.flags.c_contiguous else "F")
        else:
            self.grad = np.zeros_like(value)
        self.grad_slices = None
        self.trainable = trainable
        self.regularizer = regularizer
        self.constraint = constraint

    def __getstate__(self):
        """The variable for `pickle` and `copy.deepcopy`: its value, name, trainability,
        regularizer and constraint; the gradient, transient, arrives zeroed."""
        return dict(self.__dict__, grad=None, grad_slices=None)

    def __setstate__(self, state):
        self.__dict__.update(state)
        value = self.value
        self.grad = np.zeros(value.shape, value.dtype,
                             order="F" if value.flags.f_contiguous and not value.flags.c_contiguous
                             else "C")

    @property
    def shape(self):
        return self.value.shape

    @property
    def dtype(self):
        return self.value.dtype

    def zero_grad(self):
        """Zeroes `grad` and clears `grad_slices`."""
        self.grad[...] = 0
        self.grad_slices = None

    def add_grad_slices(self, indices, values):
        """Adds the rows `values` into `grad` at the rows `indices` (duplicates summed) and
        appends them to `grad_slices`, as TensorFlow concatenates the `IndexedSlices` of a
        variable looked up more than once.

        Args:
            indices: int array `(K,)`, rows of the variable.
            values: array `(K,) + shape[1:]`, one gradient row per index.
        """
        indices = np.asarray(indices, dtype=np.intp).reshape(-1)
        values = np.asarray(values, dtype=self.dtype).reshape((-1,) + self.shape[1:])
        np.add.at(self.grad, indices, values)
        if self.grad_slices is not None:
            indices = np.concatenate([self.grad_slices[0], indices])
            values = np.concatenate([self.grad_slices[1], values])
        self.grad_slices = (indices, values)

    def assign(self, value):
        """Copies `value` into this variable, checking its shape.

        Raises:
            ValueError: if `value`'s shape differs from the variable's.
        """
        value = np.asarray(value)
        if value.shape != self.value.shape:
            raise ValueError(
                f"Variable '{self.name}' expects shape {self.value.shape}, "
                f"received shape {value.shape}."
            )
        self.value[...] = value

    def __repr__(self):
        return f"<Variable {self.name} shape={self.shape} dtype={self.dtype}>"


def assign_weights(variables, weights, owner):
    """Copies `weights` (arrays, in order) into `variables`, for `set_weights`.

    Raises:
        ValueError: naming `owner`, if the count or a shape does not match.
    """
    # counted before the list is made: an array passed here would be split into its rows
    count = len(weights) if isinstance(weights, np.ndarray) and weights.ndim else None
    if count is None:
        weights = list(weights)
        count = len(weights)
    if count != len(variables):
        raise ValueError(f"{owner} expects {len(variables)} weight arrays, "
                         f"received {count}.")
    for var, w in zip(variables, weights):
        var.assign(w)
