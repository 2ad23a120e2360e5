"""Metrics for `compile(metrics=...)` (Keras 3's `keras.metrics`), with Keras's stateful protocol.

A metric is an object that accumulates over batches: `update_state(y_true, y_pred,
sample_weight=None)` adds a batch, `result()` gives the value over every batch since the last
`reset_state()`, `get_config()` returns its constructor's arguments and `name` is its log name.
`Model.fit` and `evaluate` reset each metric at the start of an epoch (or evaluation), update it
with every batch and log its `result()`, as Keras's trainer does.

Three families, as in Keras:

- means of per-sample values (`MeanMetricWrapper` and its subclasses: the accuracies, the
  errors, the losses as metrics): `fn(y_true, y_pred) -> values` of shape `y_pred.shape[:-1]`
  (or `y_pred.shape`), averaged over every value seen, weighted by the sample weights and by the
  output's mask (masked timesteps count for nothing), as Keras's `reduce_to_samplewise_values`;
- `RootMeanSquaredError` and `R2Score`, from sums of squares;
- `Precision`, `Recall` and `AUC`, from the confusion matrix counted at thresholds (`y_pred > t`
  is a positive prediction; a nonzero `y_true` is a positive label), as Keras's
  `update_confusion_matrix_variables`; they ignore the output's mask, as Keras's do.

The functions below (`mean_squared_error`, `accuracy`, ...) give per-sample values; a plain
function `(y_true, y_pred) -> values` given to `compile` is wrapped in a `MeanMetricWrapper`.
"""

import copy
import math

import numpy as np
from scipy import special

from pylstm import losses as losses_module
from pylstm._serialization import Configurable, Registry, snake_case

EPSILON = 1e-7
# Keras's `metrics_utils.NEG_INF`: the threshold of `Precision`/`Recall` with `top_k`.
NEG_INF = -1e10


# Per-sample functions ---------------------------------------------------------------------


def _align(y_true, y_pred):
    y_pred = np.asarray(y_pred)
    y_true = np.asarray(y_true, dtype=y_pred.dtype)
    if y_true.ndim == y_pred.ndim - 1:
        y_true = y_true[..., None]
    return y_true, y_pred


def mean_squared_error(y_true, y_pred):
    """`mean((y_true - y_pred) ** 2, axis=-1)`, per sample (Keras's `mean_squared_error`).

    Args:
        y_true: array-like `(..., K)`, or `(...)` for `K = 1`.
        y_pred: array-like `(..., K)`, float.

    Returns:
        `np.ndarray` of shape `y_pred.shape[:-1]`.

    Example:

    >>> from pylstm.metrics import mean_squared_error
    >>> mean_squared_error([[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]])
    array([0.5, 0. ])
    """
    y_true, y_pred = _align(y_true, y_pred)
    return np.mean(np.square(y_pred - y_true), axis=-1)


def mean_absolute_error(y_true, y_pred):
    """`mean(|y_true - y_pred|, axis=-1)`, per sample (Keras's `mean_absolute_error`).

    Args:
        y_true: array-like `(..., K)`, or `(...)` for `K = 1`.
        y_pred: array-like `(..., K)`, float.

    Returns:
        `np.ndarray` of shape `y_pred.shape[:-1]`.

    Example:

    >>> from pylstm.metrics import mean_absolute_error
    >>> mean_absolute_error([[0.0, 1.0], [0.0, 0.0]], [[1.0, 3.0], [0.0, 0.0]])
    array([1.5, 0. ])
    """
    y_true, y_pred = _align(y_true, y_pred)
    return np.mean(np.abs(y_pred - y_true), axis=-1)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Mean over the last axis of `(y_pred > threshold) == y_true` (Keras's
    `binary_accuracy`).

    Args:
        y_true: array-like of 0 / 1 labels `(..., K)`, or `(...)` for `K = 1`.
        y_pred: array-like of probabilities `(..., K)`, float.
        threshold: float, the probability above which a prediction is 1.

    Returns:
        `np.ndarray` of shape `y_pred.shape[:-1]`.

    Example:

    >>> from pylstm.metrics import binary_accuracy
    >>> binary_accuracy([[1], [1], [0], [0]], [[0.98], [1.0], [0.0], [0.6]])
    array([1., 1., 1., 0.])
    """
    y_true, y_pred = _align(y_true, y_pred)
    return np.mean((y_pred > threshold).astype(y_true.dtype) == y_true, axis=-1)


def categorical_accuracy(y_true, y_pred):
    """`argmax(y_true, -1) == argmax(y_pred, -1)` for one-hot targets (Keras's
    `categorical_accuracy`).

    Args:
        y_true: array-like one-hot `(..., C)`.
        y_pred: array-like of scores `(..., C)`.

    Returns:
        float64 `np.ndarray` of 0 / 1, shape `y_pred.shape[:-1]`.

    Example:

    >>> from pylstm.metrics import categorical_accuracy
    >>> categorical_accuracy([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0.0]])
    array([0., 1.])
    """
    return (np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)).astype(np.float64)


def _sparse_labels(y_true, y_pred):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim == y_pred.ndim:
        y_true = y_true[..., 0]
    return y_true, y_pred


def sparse_categorical_accuracy(y_true, y_pred):
    """`y_true == argmax(y_pred, -1)` for integer labels (Keras's
    `sparse_categorical_accuracy`).

    Args:
        y_true: array-like of integer labels `y_pred.shape[:-1]` (or with a last axis of 1).
        y_pred: array-like of scores `(..., C)`.

    Returns:
        float64 `np.ndarray` of 0 / 1, shape `y_pred.shape[:-1]`.

    Example:

    >>> from pylstm.metrics import sparse_categorical_accuracy
    >>> sparse_categorical_accuracy([2, 1], [[0.1, 0.9, 0.8], [0.05, 0.95, 0.0]])
    array([0., 1.])
    """
    y_true, y_pred = _sparse_labels(y_true, y_pred)
    return (y_true == np.argmax(y_pred, axis=-1)).astype(np.float64)


def accuracy(y_true, y_pred):
    """Keras's `"accuracy"`, dispatched on the shapes as Keras's `compile` does.

    Binary when `y_pred`'s last axis is 1 (threshold 0.5); sparse categorical when `y_true`
    has a lower rank than `y_pred` or a last axis of 1; categorical (argmax of both) otherwise.
    (Keras's `Accuracy` class, exact equality, is `equal_accuracy`.)

    Args:
        y_true: array-like of labels: 0 / 1 `(..., 1)`, integers `(...)` or `(..., 1)`, or
            one-hot `(..., C)`.
        y_pred: array-like of probabilities or scores `(..., 1)` or `(..., C)`.

    Returns:
        `np.ndarray` of per-sample values in `{0, 1}` (or their mean over a binary last axis),
        shape `y_pred.shape[:-1]`.

    Example:

    >>> from pylstm.metrics import accuracy
    >>> accuracy([[1], [0]], [[0.7], [0.6]])  # binary, threshold 0.5
    array([1., 0.])
    >>> accuracy([2, 1], [[0.1, 0.9, 0.8], [0.05, 0.95, 0.0]])  # sparse categorical
    array([0., 1.])
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_pred.ndim == 1 or y_pred.shape[-1] == 1:
        return binary_accuracy(y_true, y_pred)
    if y_true.ndim < y_pred.ndim or y_true.shape[-1] == 1:
        return sparse_categorical_accuracy(y_true, y_pred)
    return categorical_accuracy(y_true, y_pred)


def equal_accuracy(y_true, y_pred):
    """`y_true == y_pred`, elementwise (Keras's `keras.metrics.accuracy`, the `Accuracy`
    class).

    Args:
        y_true: array-like of `y_pred`'s shape (or without its last axis of 1).
        y_pred: array-like.

    Returns:
        float64 `np.ndarray` of 0 / 1, of `y_pred`'s shape.

    Example:

    >>> from pylstm.metrics import equal_accuracy
    >>> equal_accuracy([1, 2, 3], [1, 2, 4])
    array([1., 1., 0.])
    """
    y_true, y_pred = _align(y_true, y_pred)
    return (y_true == y_pred).astype(np.float64)


def _in_top_k(scores, labels, k):
    """TensorFlow's `in_top_k`: whether fewer than `k` scores exceed the label's score (ties
    at the boundary count as in); `scores` `(..., C)`, integer `labels` `scores.shape[:-1]`."""
    target = np.take_along_axis(scores, labels[..., None].astype(np.int64), axis=-1)
    return (np.sum(scores > target, axis=-1) < k).astype(np.float64)


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """Whether `argmax(y_true, -1)` is among the `k` highest scores of `y_pred` (Keras's
    `top_k_categorical_accuracy`; scores tied with the k-th count as in).

    Args:
        y_true: array-like one-hot `(..., C)`.
        y_pred: array-like of scores `(..., C)`.
        k: int, how many top scores count.

    Returns:
        float64 `np.ndarray` of 0 / 1, shape `y_pred.shape[:-1]`.

    Example:

    >>> from pylstm.metrics import top_k_categorical_accuracy
    >>> y_true, y_pred = [[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0.0]]
    >>> top_k_categorical_accuracy(y_true, y_pred, k=1)
    array([0., 1.])
    >>> top_k_categorical_accuracy(y_true, y_pred, k=2)
    array([1., 1.])
    """
    y_pred = np.asarray(y_pred)
    return _in_top_k(y_pred, np.argmax(y_true, axis=-1), k)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5, from_sorted_ids=False):
    """Whether the integer label is among the `k` highest scores of `y_pred` `(..., C)`; with
    `from_sorted_ids=True`, whether it is among the first `k` ids of `y_pred` (class ids
    sorted by score) (Keras's `sparse_top_k_categorical_accuracy`).

    Args:
        y_true: array-like of integer labels `y_pred.shape[:-1]` (or with a last axis of 1).
        y_pred: array-like of scores `(..., C)`, or of class ids `(..., >= k)`.
        k: int, how many top scores (or ids) count.
        from_sorted_ids: bool, whether `y_pred` holds class ids sorted by score.

    Returns:
        float64 `np.ndarray` of 0 / 1, shape `y_true`'s (without a last axis of 1).

    Example:

    >>> from pylstm.metrics import sparse_top_k_categorical_accuracy
    >>> sparse_top_k_categorical_accuracy([2, 1], [[0.1, 0.9, 0.8], [0.05, 0.95, 0.0]], k=2)
    array([1., 1.])
    >>> sparse_top_k_categorical_accuracy([2, 2], [[1, 2, 0], [1, 0, 2]], k=2,
    ...                                   from_sorted_ids=True)
    array([1., 0.])
    """
    y_true, y_pred = _sparse_labels(y_true, y_pred)
    if from_sorted_ids:
        return np.any(y_pred[..., :k] == y_true[..., None], axis=-1).astype(np.float64)
    return _in_top_k(y_pred, y_true, k)


# Reduction --------------------------------------------------------------------------------


def _same_rank(x1, x2, expand_rank_1=True):
    """Keras's `squeeze_or_expand_to_same_rank`: ranks one apart meet over a unit last axis."""
    if x1.ndim == x2.ndim + 1 and x1.shape[-1] == 1:
        if x2.ndim == 1 and expand_rank_1:
            x2 = x2[..., None]
        else:
            x1 = x1[..., 0]
    elif x2.ndim == x1.ndim + 1 and x2.shape[-1] == 1:
        if x1.ndim == 1 and expand_rank_1:
            x1 = x1[..., None]
        else:
            x2 = x2[..., 0]
    return x1, x2


def _leading(weights, shape):
    """`weights` given for a leading part of `shape` (one weight per sample), repeated over
    the trailing axes."""
    if weights.ndim < len(shape) and weights.shape == tuple(shape[:weights.ndim]):
        weights = weights.reshape(weights.shape + (1,) * (len(shape) - weights.ndim))
    return weights


def _samplewise(values, sample_weight):
    """Keras's `reduce_to_samplewise_values` with a mean: `(per-sample values, per-sample
    weights or None)`."""
    values = np.asarray(values, dtype=np.float64)
    if sample_weight is not None:
        weights = np.asarray(sample_weight, dtype=np.float64)
        values, weights = _same_rank(values, weights)
        weights = _leading(weights, values.shape)
        if values.ndim > weights.ndim:
            values = np.mean(values, axis=tuple(range(weights.ndim, values.ndim)))
        weights = np.broadcast_to(weights, values.shape)
        values = values * weights
        if weights.ndim > 1:
            weights = np.mean(weights, axis=tuple(range(1, weights.ndim)))
        sample_weight = weights
    if values.ndim > 1:
        values = np.mean(values, axis=tuple(range(1, values.ndim)))
    return values, sample_weight


def _divide_no_nan(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b != 0)


def _scalar(value):
    value = np.asarray(value, dtype=np.float64)
    return float(value) if value.ndim == 0 else value


# Base classes -----------------------------------------------------------------------------


class Metric(Configurable):
    """The stateful metric protocol (Keras 3's `keras.metrics.Metric`).

    Subclasses implement `update_state(y_true, y_pred, sample_weight=None)`, `result()` and
    `reset_state()`; `get_config()` returns the constructor's arguments, `name` among them.

    Args:
        name: str, the log name (default: the class's snake-case name).

    Raises:
        TypeError: for a `name` that is not a str.

    Example:

    >>> m = Precision()
    >>> m.update_state([[1], [0]], [[0.9], [0.8]])
    >>> m.update_state([[1], [1]], [[0.7], [0.2]])
    >>> m.result()  # 2 true positives, 1 false positive
    0.6666666666666666
    >>> m.reset_state()
    >>> m.result()
    0.0
    """

    # "up" or "down": the better direction, read by `EarlyStopping(mode="auto")`.
    _direction = None

    def __init__(self, name=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: `name` must be a str, received {name!r}.")
        self.name = name or _default_name(type(self))
        self.reset_state()

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Adds a batch: `y_true` and `y_pred` array-likes (shapes as the subclass says),
        `sample_weight` None or weights of the batch's samples."""
        raise NotImplementedError

    def result(self):
        """Returns the value over every batch since the last `reset_state()`: a Python float
        (an `np.ndarray` for a metric with several values)."""
        raise NotImplementedError

    def reset_state(self):
        """Forgets every batch seen."""
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        """Updates the state with one batch and returns `result()`, as Keras's `Metric`."""
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self):
        return {"name": self.name}


class Mean(Metric):
    """The (weighted) mean of the values given to `update_state(values, sample_weight=None)`
    (Keras's `Mean`): each sample's values are averaged, multiplied by its weight, and the
    total is divided by the sum of the weights (the number of samples when unweighted).

    Args:
        name: str (default `"mean"`).

    Example:

    >>> from pylstm.metrics import Mean
    >>> m = Mean()
    >>> m.update_state([1.0, 2.0])
    >>> m.update_state([3.0], sample_weight=[2.0])
    >>> m.result()  # (1 + 2 + 2 * 3) / (1 + 1 + 2)
    2.25
    >>> m.reset_state()
    >>> m.result()
    0.0
    """

    def __init__(self, name="mean"):
        super().__init__(name=name)

    def reset_state(self):
        self.total = 0.0
        self.count = 0.0

    def update_state(self, values, sample_weight=None):
        """Adds the values of a batch: `values` array-like `(N, ...)` (a scalar counts as one
        sample), `sample_weight` None or float weights `(N,)` (or of `values`' shape)."""
        values, sample_weight = _samplewise(values, sample_weight)
        self.total += float(np.sum(values))
        if sample_weight is not None:
            self.count += float(np.sum(sample_weight))
        else:
            self.count += values.shape[0] if values.ndim else 1

    def result(self):
        return self.total / self.count if self.count else 0.0


class MeanMetricWrapper(Mean):
    """The mean of a per-sample function `fn(y_true, y_pred, **kwargs) -> values` (Keras's
    `MeanMetricWrapper`), what `compile` makes of a plain function.

    `update_state(y_true, y_pred, sample_weight=None, mask=None)`: `mask`, a bool array of the
    values' shape (the output's mask, which Keras reads from `y_pred`), multiplies the sample
    weights, so that masked timesteps count for nothing.

    Args:
        fn: callable `(y_true, y_pred, **kwargs) -> np.ndarray` of per-sample values, or
            the name of one of `pylstm.metrics`' functions (`"mean_squared_error"`, ...).
        name: str (default `fn.__name__`).
        **kwargs: passed to `fn`.

    Raises:
        TypeError: for an `fn` that is not callable.
        ValueError: for an unknown function name; the message lists the valid ones.

    Example:

    >>> import numpy as np
    >>> from pylstm.metrics import MeanMetricWrapper
    >>> def max_error(y_true, y_pred):
    ...     return np.max(np.abs(np.subtract(y_pred, y_true)), axis=-1)
    >>> m = MeanMetricWrapper(max_error)
    >>> m([[0.0, 1.0], [0.0, 0.0]], [[1.0, 3.0], [0.0, 1.0]]), m.name  # mean of 2 and 1
    (1.5, 'max_error')
    """

    def __init__(self, fn, name=None, **kwargs):
        if isinstance(fn, str):
            fn = _function(fn)
        if not callable(fn):
            raise TypeError(f"MeanMetricWrapper: `fn` must be callable, received {fn!r}.")
        self._fn = fn
        self._fn_kwargs = kwargs
        super().__init__(name=name or getattr(fn, "__name__", None) or "mean_metric_wrapper")

    def update_state(self, y_true, y_pred, sample_weight=None, mask=None):
        values = np.asarray(self._fn(y_true, y_pred, **self._fn_kwargs), dtype=np.float64)
        if mask is not None:
            mask = np.asarray(mask, dtype=np.float64)
            if sample_weight is None:
                sample_weight = mask
            else:
                weights = _leading(np.asarray(sample_weight, dtype=np.float64), mask.shape)
                mask, weights = _same_rank(mask, weights)
                sample_weight = mask * weights
        super().update_state(values, sample_weight)

    def get_config(self):
        """The function by name (`from_config` finds it among `pylstm.metrics`' functions)."""
        return {"fn": getattr(self._fn, "__name__", repr(self._fn)), "name": self.name,
                **self._fn_kwargs}


def _function(name):
    try:
        return _FUNCTIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown metric function {name!r}. Valid names: "
                         f"{', '.join(sorted(_FUNCTIONS))}.") from None


class _Wrapped(MeanMetricWrapper):
    """A `MeanMetricWrapper` class with a fixed function, configured by its own arguments."""

    _fn_of_class = None

    def __init__(self, name=None, **kwargs):
        super().__init__(type(self)._fn_of_class, name=name or _default_name(type(self)),
                         **kwargs)

    def get_config(self):
        return {"name": self.name, **self._fn_kwargs}


def _wrapped(cls_name, fn, direction, doc):
    """A `_Wrapped` class of `fn`, named by its class name as Keras's is."""
    return type(cls_name, (_Wrapped,), {
        "_fn_of_class": staticmethod(fn), "_direction": direction, "__doc__": doc,
        "__module__": __name__})


# Keras's default names that are not the snake case of the class name.
_DEFAULT_NAMES = {}


def _default_name(cls):
    return _DEFAULT_NAMES.get(cls, snake_case(cls.__name__))


# Means of per-sample values ---------------------------------------------------------------


MeanSquaredError = _wrapped(
    "MeanSquaredError", mean_squared_error, "down",
    """The mean of `(y_true - y_pred) ** 2` (Keras's `MeanSquaredError`, `"mse"`);
    `y_true`, `y_pred` `(..., K)`.

    Args:
        name: str (default `"mean_squared_error"`).

    Example:

    >>> from pylstm.metrics import MeanSquaredError
    >>> m = MeanSquaredError()
    >>> m.update_state([[0.0, 1.0]], [[1.0, 1.0]])
    >>> m.result()
    0.5
    >>> m.update_state([[0.0, 0.0]], [[0.0, 0.0]])
    >>> m.result()  # the mean over both batches
    0.25
    >>> m.reset_state()
    >>> m.result()
    0.0
    """)
MeanAbsoluteError = _wrapped(
    "MeanAbsoluteError", mean_absolute_error, "down",
    """The mean of `|y_true - y_pred|` (Keras's `MeanAbsoluteError`, `"mae"`); `y_true`,
    `y_pred` `(..., K)`.

    Args:
        name: str (default `"mean_absolute_error"`).

    Example:

    >>> from pylstm.metrics import MeanAbsoluteError
    >>> MeanAbsoluteError()([[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]])
    0.5
    """)
CategoricalAccuracy = _wrapped(
    "CategoricalAccuracy", categorical_accuracy, "up",
    """How often `argmax(y_pred, -1)` is `argmax(y_true, -1)`, one-hot `y_true` `(..., C)`
    (Keras's `CategoricalAccuracy`).

    Args:
        name: str (default `"categorical_accuracy"`).

    Example:

    >>> from pylstm.metrics import CategoricalAccuracy
    >>> m = CategoricalAccuracy()
    >>> m.update_state([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0.0]])
    >>> m.result()
    0.5
    >>> m.update_state([[1, 0, 0]], [[0.6, 0.3, 0.1]])
    >>> round(m.result(), 4)  # 2 right out of 3
    0.6667
    >>> m.reset_state()
    >>> m.result()
    0.0
    """)
SparseCategoricalAccuracy = _wrapped(
    "SparseCategoricalAccuracy", sparse_categorical_accuracy, "up",
    """How often `argmax(y_pred, -1)` is the integer label, `y_true` `y_pred.shape[:-1]`
    (Keras's `SparseCategoricalAccuracy`).

    Args:
        name: str (default `"sparse_categorical_accuracy"`).

    Example:

    >>> from pylstm.metrics import SparseCategoricalAccuracy
    >>> SparseCategoricalAccuracy()([[2], [1]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0.0]])
    0.5
    """)
Accuracy = _wrapped(
    "Accuracy", equal_accuracy, "up",
    """How often `y_pred` equals `y_true` exactly (Keras's `Accuracy`; the `"accuracy"`
    string of `compile` picks binary, categorical or sparse accuracy from the shapes instead).

    Args:
        name: str (default `"accuracy"`).

    Example:

    >>> from pylstm.metrics import Accuracy
    >>> Accuracy()([[1], [2], [3], [4]], [[0], [2], [3], [4]])
    0.75
    """)


class BinaryAccuracy(_Wrapped):
    """How often `(y_pred > threshold)` equals the binary `y_true` (Keras's `BinaryAccuracy`).

    Args:
        name: str (default `"binary_accuracy"`).
        threshold: float, the probability above which a prediction is 1 (default 0.5).

    Example:

    >>> from pylstm.metrics import BinaryAccuracy
    >>> BinaryAccuracy()([[1], [1], [0], [0]], [[0.98], [1.0], [0.0], [0.6]])
    0.75
    """

    _fn_of_class = staticmethod(binary_accuracy)
    _direction = "up"

    def __init__(self, name="binary_accuracy", threshold=0.5):
        super().__init__(name=name, threshold=float(threshold))


class TopKCategoricalAccuracy(_Wrapped):
    """How often the one-hot target is among the `k` highest scores (Keras's
    `TopKCategoricalAccuracy`; TensorFlow's `in_top_k`: scores tied with the k-th count as in).

    Args:
        k: int, how many top scores count (default 5).
        name: str (default `"top_k_categorical_accuracy"`).

    Raises:
        ValueError: for a `k` that is not a positive int.

    Example:

    >>> from pylstm.metrics import TopKCategoricalAccuracy
    >>> y_true, y_pred = [[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0.0]]
    >>> TopKCategoricalAccuracy(k=1)(y_true, y_pred), TopKCategoricalAccuracy(k=2)(y_true, y_pred)
    (0.5, 1.0)
    """

    _fn_of_class = staticmethod(top_k_categorical_accuracy)
    _direction = "up"

    def __init__(self, k=5, name="top_k_categorical_accuracy"):
        super().__init__(name=name, k=_positive_int(k, "k", type(self).__name__))


class SparseTopKCategoricalAccuracy(_Wrapped):
    """How often the integer label is among the `k` highest scores (Keras's
    `SparseTopKCategoricalAccuracy`).

    Args:
        k: int, how many top scores count (default 5).
        name: str (default `"sparse_top_k_categorical_accuracy"`).
        from_sorted_ids: bool; if True `y_pred` holds class ids sorted by score and the label
            is looked for among the first `k`.

    Raises:
        ValueError: for a `k` that is not a positive int.

    Example:

    >>> from pylstm.metrics import SparseTopKCategoricalAccuracy
    >>> SparseTopKCategoricalAccuracy(k=1)([2, 1], [[0.1, 0.9, 0.8], [0.05, 0.95, 0.0]])
    0.5
    """

    _fn_of_class = staticmethod(sparse_top_k_categorical_accuracy)
    _direction = "up"

    def __init__(self, k=5, name="sparse_top_k_categorical_accuracy", from_sorted_ids=False):
        super().__init__(name=name, k=_positive_int(k, "k", type(self).__name__),
                         from_sorted_ids=bool(from_sorted_ids))

    def get_config(self):
        config = {"name": self.name, "k": self._fn_kwargs["k"]}
        if self._fn_kwargs["from_sorted_ids"]:  # Keras writes it only when set
            config["from_sorted_ids"] = True
        return config


def _positive_int(value, argument, where):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{where}: `{argument}` must be a positive int, received {value!r}.")
    return int(value)


class _LossValues:
    """The per-sample values of a `pylstm.losses` class, as a metric function (a class, not
    a closure, so that the metrics holding it pickle)."""

    def __init__(self, loss_class, sign=1.0):
        self.loss_class = loss_class
        self.sign = sign
        self.__name__ = snake_case(loss_class.__name__)

    def __call__(self, y_true, y_pred, **kwargs):
        loss = self.loss_class(**kwargs)
        return self.sign * loss._per_sample(*loss._prepare(y_true, y_pred))[0]


def _loss_metric(cls_name, loss_class, default_name, keras_doc, example):
    """A `_Wrapped` class of a loss's per-sample values (lower is better); `example` is its
    docstring's example, lines indented by 4 spaces."""
    cls = type(cls_name, (_Wrapped,), {
        "_fn_of_class": staticmethod(_LossValues(loss_class)), "_direction": "down",
        "__module__": __name__,
        "__doc__": f"""The mean of `pylstm.losses.{loss_class.__name__}`'s per-sample values
    (Keras's `{keras_doc}`); `y_true`, `y_pred` as the loss's.

    Args:
        name: str (default `"{default_name}"`).

    Example:
{example}
    """})
    _DEFAULT_NAMES[cls] = default_name
    return cls


MeanAbsolutePercentageError = _loss_metric(
    "MeanAbsolutePercentageError", losses_module.MeanAbsolutePercentageError,
    "mean_absolute_percentage_error", "MeanAbsolutePercentageError", """
    >>> from pylstm.metrics import MeanAbsolutePercentageError
    >>> MeanAbsolutePercentageError()([[2.0, 4.0]], [[1.0, 5.0]])  # 100 * (1/2 + 1/4) / 2
    37.5""")
MeanSquaredLogarithmicError = _loss_metric(
    "MeanSquaredLogarithmicError", losses_module.MeanSquaredLogarithmicError,
    "mean_squared_logarithmic_error", "MeanSquaredLogarithmicError", """
    >>> from pylstm.metrics import MeanSquaredLogarithmicError
    >>> m = MeanSquaredLogarithmicError()
    >>> round(m([[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]]), 4)  # log(2) ** 2 / 4
    0.1201""")
LogCoshError = _loss_metric("LogCoshError", losses_module.LogCosh, "logcosh", "LogCoshError", """
    >>> from pylstm.metrics import LogCoshError
    >>> m = LogCoshError()
    >>> m.update_state([[0.0, 1.0]], [[1.0, 1.0]])
    >>> m.update_state([[0.0, 0.0]], [[0.0, 0.0]])
    >>> round(m.result(), 4)  # log(cosh 1) / 4
    0.1084""")
KLDivergence = _loss_metric("KLDivergence", losses_module.KLDivergence, "kl_divergence",
                            "KLDivergence", """
    >>> from pylstm.metrics import KLDivergence
    >>> round(KLDivergence()([[0.5, 0.5]], [[0.25, 0.75]]), 4)  # 0.5 log 2 + 0.5 log(2/3)
    0.1438""")
Poisson = _loss_metric("Poisson", losses_module.Poisson, "poisson", "Poisson", """
    >>> from pylstm.metrics import Poisson
    >>> round(Poisson()([[1.0, 2.0]], [[2.0, 1.0]]), 4)  # (2 - log 2 + 1 - 2 log 1) / 2
    1.1534""")
Hinge = _loss_metric("Hinge", losses_module.Hinge, "hinge", "Hinge", """
    >>> from pylstm.metrics import Hinge
    >>> round(Hinge()([[0.0, 1.0]], [[-0.5, 0.3]]), 4)  # labels -1, 1: (0.5 + 0.7) / 2
    0.6""")
SquaredHinge = _loss_metric("SquaredHinge", losses_module.SquaredHinge, "squared_hinge",
                            "SquaredHinge", """
    >>> from pylstm.metrics import SquaredHinge
    >>> round(SquaredHinge()([[0.0, 1.0]], [[-0.5, 0.3]]), 4)  # (0.5 ** 2 + 0.7 ** 2) / 2
    0.37""")
CategoricalHinge = _loss_metric("CategoricalHinge", losses_module.CategoricalHinge,
                                "categorical_hinge", "CategoricalHinge", """
    >>> from pylstm.metrics import CategoricalHinge
    >>> round(CategoricalHinge()([[0.0, 1.0, 0.0]], [[0.3, 0.6, 0.1]]), 4)  # 0.3 - 0.6 + 1
    0.7""")


class CosineSimilarity(_Wrapped):
    """The mean cosine of the angle between `y_true` and `y_pred` along `axis` (Keras's
    `CosineSimilarity` metric: `+cos`, where the loss is `-cos`).

    Args:
        name: str (default `"cosine_similarity"`).
        axis: int, the axis of the vectors (default -1).

    Raises:
        ValueError: (from `update_state`) for an `axis` that is not an int or is out of range.

    Example:

    >>> from pylstm.metrics import CosineSimilarity
    >>> m = CosineSimilarity()
    >>> round(m([[0.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]), 4)  # (0 + 1) / 2
    0.5
    """

    _fn_of_class = staticmethod(_LossValues(losses_module.CosineSimilarity, sign=-1.0))
    _direction = "up"

    def __init__(self, name="cosine_similarity", axis=-1):
        super().__init__(name=name, axis=axis)


class _CrossentropyMetric(_Wrapped):
    _direction = "down"

    def __init__(self, name=None, from_logits=False):
        super().__init__(name=name, from_logits=bool(from_logits))


def _crossentropy_metric(cls_name, loss_class, default_name, example):
    cls = type(cls_name, (_CrossentropyMetric,), {
        "_fn_of_class": staticmethod(_LossValues(loss_class)), "__module__": __name__,
        "__doc__": f"""The mean of `pylstm.losses.{cls_name}`'s per-sample values (Keras's
    `{cls_name}` metric); `y_true`, `y_pred` as the loss's.

    Args:
        name: str (default `"{default_name}"`).
        from_logits: bool, as the loss's.

    Example:
{example}
    """})
    _DEFAULT_NAMES[cls] = default_name
    return cls


BinaryCrossentropy = _crossentropy_metric(
    "BinaryCrossentropy", losses_module.BinaryCrossentropy, "binary_crossentropy", """
    >>> from pylstm.metrics import BinaryCrossentropy
    >>> m = BinaryCrossentropy()
    >>> m.update_state([[0.0, 1.0]], [[0.1, 0.8]])
    >>> m.update_state([[1.0, 1.0]], [[0.9, 0.8]])
    >>> round(m.result(), 4)  # -(2 log 0.9 + 2 log 0.8) / 4
    0.1643
    >>> m.reset_state()
    >>> m.result()
    0.0""")
CategoricalCrossentropy = _crossentropy_metric(
    "CategoricalCrossentropy", losses_module.CategoricalCrossentropy, "categorical_crossentropy",
    """
    >>> from pylstm.metrics import CategoricalCrossentropy
    >>> y_true = [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(CategoricalCrossentropy()(y_true, y_pred), 4)  # (-log 0.95 - log 0.1) / 2
    1.1769""")
SparseCategoricalCrossentropy = _crossentropy_metric(
    "SparseCategoricalCrossentropy", losses_module.SparseCategoricalCrossentropy,
    "sparse_categorical_crossentropy", """
    >>> from pylstm.metrics import SparseCategoricalCrossentropy
    >>> m = SparseCategoricalCrossentropy()
    >>> round(m([1, 2], [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]), 4)
    1.1769""")


# Sums of squares --------------------------------------------------------------------------


class RootMeanSquaredError(Mean):
    """`sqrt` of the (weighted) mean of `(y_true - y_pred) ** 2` over every entry seen
    (Keras's `RootMeanSquaredError`; it ignores the output's mask, as Keras's does);
    `y_true`, `y_pred` `(..., K)`, `sample_weight` None or `(N,)` (or the values' shape).

    Args:
        name: str (default `"root_mean_squared_error"`).

    Example:

    >>> from pylstm.metrics import RootMeanSquaredError
    >>> m = RootMeanSquaredError()
    >>> m.update_state([[0.0]], [[3.0]])
    >>> m.update_state([[0.0]], [[4.0]])
    >>> round(m.result(), 4)  # sqrt((9 + 16) / 2), not the mean of 3 and 4
    3.5355
    >>> m.reset_state()
    >>> m.result()
    0.0
    """

    _direction = "down"

    def __init__(self, name="root_mean_squared_error"):
        super().__init__(name=name)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = np.asarray(y_pred, dtype=np.float64)
        y_true, y_pred = _same_rank(np.asarray(y_true, dtype=np.float64), y_pred)
        super().update_state(np.square(y_pred - y_true), sample_weight)

    def result(self):
        return math.sqrt(super().result())


class R2Score(Metric):
    """The coefficient of determination `1 - SS_res / SS_tot` per output column, accumulated
    over batches (Keras's `R2Score`); `y_true`, `y_pred` `(N, K)`.

    Args:
        class_aggregation: `"uniform_average"` (the mean over the K columns, default),
            `"variance_weighted_average"` (weighted by each column's total sum of squares) or
            None (the K scores, an `np.ndarray`).
        num_regressors: int >= 0; if positive, the adjusted score
            `1 - (1 - R2) (n - 1) / (n - p - 1)` with `n` the number of entries seen (Keras's
            count); it falls back to R2 when `p >= n - 1`.
        name: str (default `"r2_score"`).

    Raises:
        ValueError: for an unknown `class_aggregation`, a negative `num_regressors`, or inputs
            that are not 2-D.

    Example:

    >>> from pylstm.metrics import R2Score
    >>> m = R2Score()
    >>> m.update_state([[1.0], [2.0]], [[1.0], [2.0]])
    >>> m.update_state([[3.0]], [[4.0]])
    >>> m.result()  # 1 - SS_res / SS_tot = 1 - 1 / 2 over the 3 samples
    0.5
    >>> R2Score(class_aggregation=None)([[1.0, 0.0], [2.0, 1.0]], [[1.5, 0.0], [2.0, 1.0]])
    array([0.5, 1. ])
    """

    _direction = "up"

    def __init__(self, class_aggregation="uniform_average", num_regressors=0, name="r2_score"):
        if class_aggregation not in (None, "uniform_average", "variance_weighted_average"):
            raise ValueError("R2Score: `class_aggregation` must be None, 'uniform_average' or "
                             f"'variance_weighted_average', received {class_aggregation!r}.")
        if isinstance(num_regressors, bool) or not isinstance(
                num_regressors, (int, np.integer)) or num_regressors < 0:
            raise ValueError(f"R2Score: `num_regressors` must be an int >= 0, received "
                             f"{num_regressors!r}.")
        self.class_aggregation = class_aggregation
        self.num_regressors = int(num_regressors)
        super().__init__(name=name)

    def reset_state(self):
        self.sums = None  # (sum, squared_sum, residual, count) per column, once shapes are known
        self.num_samples = 0

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = np.asarray(y_pred, dtype=np.float64)
        y_true, y_pred = _same_rank(np.asarray(y_true, dtype=np.float64), y_pred)
        if y_true.ndim != 2 or y_pred.ndim != 2:
            raise ValueError(f"R2Score expects 2-D inputs (batch_size, output_dim), received "
                             f"y_true.shape={y_true.shape} and y_pred.shape={y_pred.shape}.")
        weights = np.ones(()) if sample_weight is None else np.asarray(sample_weight,
                                                                       dtype=np.float64)
        if weights.ndim == 1:
            weights = weights[:, None]
        weights = np.broadcast_to(weights, y_true.shape)
        batch = np.stack([np.sum(y_true * weights, axis=0),
                          np.sum(y_true * y_true * weights, axis=0),
                          np.sum(np.square(y_true - y_pred) * weights, axis=0),
                          np.sum(weights, axis=0)])
        self.sums = batch if self.sums is None else self.sums + batch
        self.num_samples += y_true.size

    def result(self):
        if self.sums is None:
            return 0.0
        total_sum, squared_sum, residual, count = self.sums
        with np.errstate(divide="ignore", invalid="ignore"):
            total = squared_sum - total_sum * (total_sum / count)
            raw = 1.0 - residual / total
        raw = np.where(np.isinf(raw), 0.0, raw)
        if self.class_aggregation == "uniform_average":
            score = float(np.mean(raw))
        elif self.class_aggregation == "variance_weighted_average":
            score = float(np.sum(total * raw) / np.sum(total))
        else:
            return raw
        n, p = self.num_samples, self.num_regressors
        if p and p < n - 1:
            score = 1.0 - (1.0 - score) * (n - 1) / (n - p - 1)
        return score

    def get_config(self):
        return {"class_aggregation": self.class_aggregation,
                "num_regressors": self.num_regressors, "name": self.name}


# Confusion-matrix metrics -----------------------------------------------------------------


def _check_thresholds(thresholds, where):
    values = [thresholds] if np.isscalar(thresholds) else list(thresholds)
    if not values or not all(isinstance(t, (int, float, np.number)) and 0 <= t <= 1
                             for t in values):
        raise ValueError(f"{where}: `thresholds` must be a float or a list of floats in [0, 1], "
                         f"received {thresholds!r}.")
    return [float(t) for t in values]


def _evenly_distributed(thresholds):
    """Keras's `is_evenly_distributed_thresholds`: at least 3, `i / (n - 1)` up to 1e-7."""
    n = len(thresholds)
    return n >= 3 and np.allclose(thresholds, np.arange(n, dtype=np.float32) / (n - 1),
                                  atol=EPSILON)


def _filter_top_k(y_pred, k):
    """Scores outside each row's `k` highest (the lower index first among ties, as
    TensorFlow's `top_k`) become `NEG_INF`."""
    order = np.argsort(-y_pred, axis=-1, kind="stable")[..., :k]
    keep = np.zeros(y_pred.shape, bool)
    np.put_along_axis(keep, order, True, axis=-1)
    return np.where(keep, y_pred, np.float32(NEG_INF))


def _confusion(y_true, y_pred, thresholds, sample_weight=None, top_k=None, class_id=None,
               multi_label=False, label_weights=None, evenly=False):
    """Keras's `update_confusion_matrix_variables`: the weighted true positives, false
    positives, true negatives and false negatives at each threshold, each `(len(thresholds),)`
    (`(len(thresholds), L)` with `multi_label`), compared in float32 as Keras's variables.

    With evenly spaced thresholds Keras buckets `ceil(p (n - 1)) - 1` instead of comparing
    (the same counts, up to float32 rounding, which this reproduces)."""
    y_pred = np.asarray(y_pred, dtype=np.float32)
    y_true = np.asarray(y_true, dtype=np.float32)
    y_pred, y_true = _same_rank(y_pred, y_true)
    weights = None
    if sample_weight is not None:
        weights = np.asarray(sample_weight, dtype=np.float64)[..., None]
        _, weights = _same_rank(y_true, weights, expand_rank_1=False)
    if top_k is not None:
        y_pred = _filter_top_k(y_pred, top_k)
    if class_id is not None:
        y_true, y_pred = y_true[..., class_id, None], y_pred[..., class_id, None]
    weights = np.ones(y_pred.shape) if weights is None else np.broadcast_to(
        _leading(weights, y_pred.shape), y_pred.shape)
    if label_weights is not None and not multi_label:
        weights = weights * np.broadcast_to(label_weights, y_pred.shape)
    positive = (y_true != 0).astype(np.float64)
    if multi_label:
        y_pred, positive, weights = (a.reshape(-1, a.shape[-1]) for a in (y_pred, positive,
                                                                           weights))
    else:
        y_pred, positive, weights = y_pred.reshape(-1, 1), positive.reshape(-1, 1), \
            weights.reshape(-1, 1)
    thresholds = np.asarray(thresholds, dtype=np.float32)
    n = len(thresholds)
    if evenly:
        with_epsilon = thresholds[0] < 0.0 or thresholds[-1] > 1.0
        bucket = np.ceil(np.clip(y_pred, 0.0, 1.0) * np.float32(n - 1)) - 1
        if with_epsilon:
            bucket = np.maximum(bucket, 0)
        # Entry e counts as predicted positive at every threshold t <= bucket(e).
        predicted = np.arange(n)[:, None, None] <= bucket[None]
    else:
        predicted = y_pred[None] > thresholds[:, None, None]
    true_w, false_w = positive * weights, (1.0 - positive) * weights
    tp = np.sum(predicted * true_w, axis=1)
    fp = np.sum(predicted * false_w, axis=1)
    fn = np.sum(true_w, axis=0) - tp
    tn = np.sum(false_w, axis=0) - fp
    if not multi_label:
        tp, fp, tn, fn = tp[:, 0], fp[:, 0], tn[:, 0], fn[:, 0]
    return tp, fp, tn, fn


class _PrecisionRecall(Metric):
    _direction = "up"

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None):
        where = type(self).__name__
        if thresholds is not None:
            _check_thresholds(thresholds, where)
        if top_k is not None:
            _positive_int(top_k, "top_k", where)
        if class_id is not None and (isinstance(class_id, bool) or not isinstance(
                class_id, (int, np.integer)) or class_id < 0):
            raise ValueError(f"{where}: `class_id` must be an int >= 0, received {class_id!r}.")
        self.init_thresholds = thresholds
        self.top_k = top_k
        self.class_id = class_id
        self.thresholds = (_check_thresholds(thresholds, where) if thresholds is not None
                           else [0.5 if top_k is None else NEG_INF])
        self._evenly = _evenly_distributed(self.thresholds)
        super().__init__(name=name)

    def reset_state(self):
        self.true_positives = np.zeros(len(self.thresholds))
        self.false_positives = np.zeros(len(self.thresholds))
        self.false_negatives = np.zeros(len(self.thresholds))

    def update_state(self, y_true, y_pred, sample_weight=None):
        tp, fp, _, fn = _confusion(y_true, y_pred, self.thresholds, sample_weight, self.top_k,
                                   self.class_id, evenly=self._evenly)
        self.true_positives += tp
        self.false_positives += fp
        self.false_negatives += fn

    def _value(self, wrong):
        value = _divide_no_nan(self.true_positives, self.true_positives + wrong)
        return float(value[0]) if len(self.thresholds) == 1 else value

    def get_config(self):
        thresholds = self.init_thresholds
        if thresholds is not None and not np.isscalar(thresholds):
            thresholds = [float(t) for t in thresholds]
        return {"thresholds": thresholds, "top_k": self.top_k, "class_id": self.class_id,
                "name": self.name}


class Precision(_PrecisionRecall):
    """`TP / (TP + FP)` over every batch (Keras's `Precision`): `y_pred > threshold` is a
    positive prediction, a nonzero `y_true` a positive label.

    Args:
        thresholds: None (0.5, or no threshold with `top_k`), a float in [0, 1], or a list of
            them (then `result()` is an `np.ndarray`, one value per threshold).
        top_k: None or int: only each row's `k` highest scores can be positive.
        class_id: None or int: the class (column of the last axis) looked at.
        name: str (default `"precision"`).

    Raises:
        ValueError: for thresholds outside [0, 1], or a bad `top_k` / `class_id`.

    Example:

    >>> from pylstm.metrics import Precision
    >>> round(Precision()([0, 1, 1, 1], [1.0, 1.0, 1.0, 0.0]), 4)  # 2 TP, 1 FP
    0.6667
    >>> Precision(thresholds=[0.5, 0.85])([0, 1, 1, 1], [0.9, 0.8, 0.6, 0.2]).round(4)
    array([0.6667, 0.    ])
    """

    def result(self):
        return self._value(self.false_positives)


class Recall(_PrecisionRecall):
    """`TP / (TP + FN)` over every batch (Keras's `Recall`); arguments as `Precision`'s.

    Args:
        thresholds: as `Precision`'s.
        top_k: as `Precision`'s.
        class_id: as `Precision`'s.
        name: str (default `"recall"`).

    Raises:
        ValueError: as `Precision`.

    Example:

    >>> from pylstm.metrics import Recall
    >>> m = Recall()
    >>> m.update_state([0, 1, 1, 1], [1.0, 1.0, 0.0, 0.0])
    >>> round(m.result(), 4)  # 1 TP, 2 FN
    0.3333
    >>> m.update_state([1], [0.7])
    >>> m.result()  # 2 TP, 2 FN
    0.5
    >>> m.reset_state()
    >>> m.result()
    0.0
    """

    def result(self):
        return self._value(self.false_negatives)


_CURVES = ("ROC", "PR", "PRGAIN")
_SUMMATIONS = ("interpolation", "majoring", "minoring")


class AUC(Metric):
    """The area under the ROC or precision-recall curve, approximated from the confusion
    matrix at `num_thresholds` thresholds (Keras's `AUC`).

    The thresholds are `-1e-7, 1 / (n - 1), ..., (n - 2) / (n - 1), 1 + 1e-7`; the area is a
    Riemann sum over consecutive thresholds, with the mean of the two heights
    (`"interpolation"`), their minimum (`"minoring"`) or maximum (`"majoring"`); the PR curve
    with `"interpolation"` uses Davis & Goadrich's interpolation, as Keras.

    Args:
        num_thresholds: int > 1 (default 200).
        curve: `"ROC"` (default), `"PR"` or `"PRGAIN"`.
        summation_method: `"interpolation"` (default), `"minoring"` or `"majoring"`.
        name: str (default `"auc"`).
        thresholds: None, or a list of floats in [0, 1] used instead of `num_thresholds`
            evenly spaced ones (with `-1e-7` and `1 + 1e-7` added at the ends).
        multi_label: bool; if True, `y_pred` `(N, L)` holds L independent labels and the
            result is the mean of their AUCs (weighted by `label_weights`); otherwise every
            entry is one prediction.
        num_labels: None or int, L when `multi_label` (read from the data otherwise).
        label_weights: None or L non-negative floats: with `multi_label`, the weights of the
            labels' AUCs; otherwise the weight of each column's entries.
        from_logits: bool; if True `y_pred` holds logits, passed through a sigmoid.

    Raises:
        ValueError: for `num_thresholds < 2`, an unknown `curve` or `summation_method`,
            thresholds outside [0, 1], or `num_labels` without `multi_label`.

    Example:

    >>> m = AUC(num_thresholds=3)
    >>> m.update_state([0, 0, 1, 1], [0.0, 0.5, 0.3, 0.9])
    >>> round(m.result(), 4)  # (FPR, TPR) at the thresholds: (1, 1), (0, 1/2), (0, 0)
    0.75
    """

    _direction = "up"

    def __init__(self, num_thresholds=200, curve="ROC", summation_method="interpolation",
                 name=None, thresholds=None, multi_label=False, num_labels=None,
                 label_weights=None, from_logits=False):
        if str(curve).upper() not in _CURVES:
            raise ValueError(f"AUC: `curve` must be one of {list(_CURVES)}, received {curve!r}.")
        if str(summation_method).lower() not in _SUMMATIONS:
            raise ValueError(f"AUC: `summation_method` must be one of {list(_SUMMATIONS)}, "
                             f"received {summation_method!r}.")
        if num_labels is not None and not multi_label:
            raise ValueError("AUC: `num_labels` is needed only when `multi_label` is True.")
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            inner = sorted(_check_thresholds(thresholds, "AUC"))
            self._evenly = _evenly_distributed(np.array([0.0] + inner + [1.0]))
        else:
            if isinstance(num_thresholds, bool) or not isinstance(
                    num_thresholds, (int, np.integer)) or num_thresholds <= 1:
                raise ValueError(f"AUC: `num_thresholds` must be an int > 1, received "
                                 f"{num_thresholds!r}.")
            inner = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self._evenly = True
        self.num_thresholds = len(inner) + 2
        self._thresholds = np.array([0.0 - EPSILON] + inner + [1.0 + EPSILON])
        self.curve = str(curve).upper()
        self.summation_method = str(summation_method).lower()
        self.multi_label = bool(multi_label)
        self.num_labels = num_labels
        self.label_weights = None if label_weights is None else np.asarray(
            label_weights, dtype=np.float64)
        self.from_logits = bool(from_logits)
        super().__init__(name=name)

    @property
    def thresholds(self):
        return list(self._thresholds)

    def reset_state(self):
        self.true_positives = self.false_positives = None
        self.true_negatives = self.false_negatives = None

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = np.asarray(y_pred, dtype=np.float32)
        if self.multi_label and y_pred.ndim != 2:
            raise ValueError(f"AUC: `y_pred` must have rank 2 when `multi_label=True`, "
                             f"received shape {y_pred.shape}.")
        if self.from_logits:
            y_pred = special.expit(y_pred)
        counts = _confusion(y_true, y_pred, self._thresholds, sample_weight,
                            multi_label=self.multi_label,
                            label_weights=None if self.multi_label else self.label_weights,
                            evenly=self._evenly)
        if self.true_positives is None:
            (self.true_positives, self.false_positives, self.true_negatives,
             self.false_negatives) = counts
        else:
            self.true_positives = self.true_positives + counts[0]
            self.false_positives = self.false_positives + counts[1]
            self.true_negatives = self.true_negatives + counts[2]
            self.false_negatives = self.false_negatives + counts[3]

    def _by_label(self, terms):
        if not self.multi_label:
            return float(np.sum(terms))
        by_label = np.sum(terms, axis=0)
        if self.label_weights is None:
            return float(np.mean(by_label))
        return float(_divide_no_nan(np.sum(by_label * self.label_weights),
                                    np.sum(self.label_weights)))

    def _interpolate_pr_auc(self):
        tp, fp, fn = self.true_positives, self.false_positives, self.false_negatives
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        slope = _divide_no_nan(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        ratio = np.where((p[:-1] > 0) & (p[1:] > 0),
                         _divide_no_nan(p[:-1], np.maximum(p[1:], 0)), 1.0)
        increments = _divide_no_nan(slope * (dtp + intercept * np.log(ratio)),
                                    np.maximum(tp[1:] + fn[1:], 0))
        return self._by_label(increments)

    def result(self):
        if self.true_positives is None:
            return 0.0
        tp, fp, tn, fn = (self.true_positives, self.false_positives, self.true_negatives,
                          self.false_negatives)
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self._interpolate_pr_auc()
        recall = _divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = _divide_no_nan(fp, fp + tn), recall
        elif self.curve == "PR":
            x, y = recall, _divide_no_nan(tp, tp + fp)
        else:
            scale = _divide_no_nan(tp + fn, tn + fp)
            recall_gain = np.where(tp == 0, 0.0, 1.0 - scale * _divide_no_nan(fn, tp))
            x = np.maximum(recall_gain, 0.0)
            y = np.where(tp == 0, 1.0, 1.0 - scale * _divide_no_nan(fp, tp))
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = np.minimum(y[:-1], y[1:])
        else:
            heights = np.maximum(y[:-1], y[1:])
        return self._by_label((x[:-1] - x[1:]) * heights)

    def get_config(self):
        config = {"num_thresholds": self.num_thresholds, "curve": self.curve,
                  "summation_method": self.summation_method, "name": self.name,
                  "multi_label": self.multi_label, "num_labels": self.num_labels,
                  "label_weights": None if self.label_weights is None
                  else self.label_weights.tolist(),
                  "from_logits": self.from_logits}
        if self._init_from_thresholds:
            config["thresholds"] = [float(t) for t in self._thresholds[1:-1]]
        return config


# Lookup -----------------------------------------------------------------------------------


_FUNCTIONS = {fn.__name__: fn for fn in (
    mean_squared_error, mean_absolute_error, binary_accuracy, categorical_accuracy,
    sparse_categorical_accuracy, accuracy, equal_accuracy, top_k_categorical_accuracy,
    sparse_top_k_categorical_accuracy)}

_CLASSES = [
    Mean, MeanMetricWrapper, MeanSquaredError, MeanAbsoluteError, RootMeanSquaredError,
    MeanAbsolutePercentageError, MeanSquaredLogarithmicError, LogCoshError, CosineSimilarity,
    R2Score, Precision, Recall, AUC, Accuracy, BinaryAccuracy, CategoricalAccuracy,
    SparseCategoricalAccuracy, TopKCategoricalAccuracy, SparseTopKCategoricalAccuracy,
    KLDivergence, Poisson, Hinge, SquaredHinge, CategoricalHinge, BinaryCrossentropy,
    CategoricalCrossentropy, SparseCategoricalCrossentropy,
]
_REGISTRY = Registry("metric", _CLASSES, aliases={
    # Keras 3's names (`keras.metrics.ALL_OBJECTS_DICT`) where its snake case differs.
    "top_k_categorical_accuracy": TopKCategoricalAccuracy,
    "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
    "kl_divergence": KLDivergence,
    "mse": MeanSquaredError, "MSE": MeanSquaredError, "mae": MeanAbsoluteError,
    "MAE": MeanAbsoluteError, "mape": MeanAbsolutePercentageError,
    "MAPE": MeanAbsolutePercentageError, "msle": MeanSquaredLogarithmicError,
    "MSLE": MeanSquaredLogarithmicError, "bce": BinaryCrossentropy, "BCE": BinaryCrossentropy,
})


def get(identifier):
    """Returns a `Metric`, as Keras's `compile` makes one.

    Args:
        identifier: a `Metric` (returned as is); a name, Keras's (`"mae"`, `"mse"`,
            `"root_mean_squared_error"`, `"auc"`, `"precision"`, `"AUC"`, ...; `"accuracy"` or
            `"acc"` picks binary, categorical or sparse accuracy from the shapes): a new
            metric logged under that name; a config dict `{"class_name", "config"}`; or a
            function `(y_true, y_pred) -> per-sample values`, wrapped in a
            `MeanMetricWrapper` named by its `__name__`.

    Returns:
        A `Metric`: `identifier` itself, or a new one.

    Raises:
        ValueError: for an unknown name; the message lists the valid ones.
        TypeError: for an identifier of another kind.

    Example:

    >>> from pylstm.metrics import get
    >>> get("mae")
    MeanAbsoluteError(name='mae')
    >>> get("accuracy")
    MeanMetricWrapper(fn='accuracy', name='accuracy')
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        if identifier in ("accuracy", "acc"):
            metric = MeanMetricWrapper(accuracy)
            metric._direction = "up"
        else:
            metric = _REGISTRY.lookup(identifier)()
        metric.name = identifier
        return metric
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier) and not isinstance(identifier, type):
        return MeanMetricWrapper(identifier)
    raise TypeError(f"A metric must be a name, a `Metric`, a config dict or a function "
                    f"(y_true, y_pred) -> values, received {identifier!r:.200}.")


def serialize(metric):
    """Returns `{"class_name": str, "config": dict}`, JSON-serializable (Keras's protocol).

    Args:
        metric: a `Metric` of one of `pylstm.metrics`' classes.

    Raises:
        ValueError: for a metric of a user's class, or a `MeanMetricWrapper` of a function that
            is not one of `pylstm.metrics`' functions (neither could be read back).

    Example:

    >>> from pylstm.metrics import BinaryAccuracy, serialize
    >>> serialize(BinaryAccuracy(threshold=0.7))
    {'class_name': 'BinaryAccuracy', 'config': {'name': 'binary_accuracy', 'threshold': 0.7}}
    """
    builtin = type(metric) in _CLASSES
    if type(metric) is MeanMetricWrapper:
        builtin = _FUNCTIONS.get(getattr(metric._fn, "__name__", None)) is metric._fn
    if not builtin:
        raise ValueError(f"Cannot serialize the custom metric {getattr(metric, 'name', metric)!r}"
                         ": only pylstm's metric classes and functions can be saved.")
    return _REGISTRY.serialize(metric)


def deserialize(config):
    """Builds a `Metric` from `serialize`'s output, with an empty state.

    Args:
        config: dict `{"class_name": str, "config": dict or None}`.

    Raises:
        ValueError: if `config` is not such a dict or names an unknown metric.

    Example:

    >>> from pylstm.metrics import deserialize
    >>> deserialize({"class_name": "BinaryAccuracy", "config": {"threshold": 0.7}})
    BinaryAccuracy(name='binary_accuracy', threshold=0.7)
    """
    return _REGISTRY.deserialize(config)


def made_from_name(name, metric):
    """Whether `get(name)` makes a metric of `metric`'s class and config (so that the name
    alone saves it).

    Args:
        name: str, a name `get` may know.
        metric: a `Metric`.

    Returns:
        bool; False for a name `get` does not know.

    Example:

    >>> from pylstm.metrics import MeanAbsoluteError, made_from_name
    >>> made_from_name("mae", MeanAbsoluteError(name="mae"))
    True
    >>> made_from_name("mae", MeanAbsoluteError())  # logged as "mean_absolute_error"
    False
    """
    try:
        made = get(name)
    except (ValueError, TypeError):
        return False
    if type(made) is not type(metric):
        return False
    try:
        return made.get_config() == metric.get_config()
    except ValueError:
        return False


def clone(metric):
    """A fresh copy of `metric`, with its configuration and an empty state (Keras gives each
    output of a model its own metric objects).

    Args:
        metric: a `Metric`.

    Returns:
        A new `Metric` of `metric`'s class.

    Example:

    >>> from pylstm.metrics import Mean, clone
    >>> m = Mean(name="loss")
    >>> m.update_state([1.0, 3.0])
    >>> fresh = clone(m)
    >>> fresh, fresh.result(), m.result()
    (Mean(name='loss'), 0.0, 2.0)
    """
    fresh = copy.deepcopy(metric)
    fresh.reset_state()
    return fresh


__all__ = [
    "Metric", "Mean", "MeanMetricWrapper", "MeanSquaredError", "MeanAbsoluteError",
    "RootMeanSquaredError", "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError",
    "LogCoshError", "CosineSimilarity", "R2Score", "Precision", "Recall", "AUC", "Accuracy",
    "BinaryAccuracy", "CategoricalAccuracy", "SparseCategoricalAccuracy",
    "TopKCategoricalAccuracy", "SparseTopKCategoricalAccuracy", "KLDivergence", "Poisson",
    "Hinge", "SquaredHinge", "CategoricalHinge", "BinaryCrossentropy", "CategoricalCrossentropy",
    "SparseCategoricalCrossentropy", "mean_squared_error", "mean_absolute_error",
    "binary_accuracy", "categorical_accuracy", "sparse_categorical_accuracy", "accuracy",
    "equal_accuracy", "top_k_categorical_accuracy", "sparse_top_k_categorical_accuracy", "get",
    "serialize", "deserialize", "made_from_name", "clone",
]
