"""Per-sample metrics for `Sequential.compile(metrics=...)` (Keras 3's `keras.metrics`).

A metric is a function `(y_true, y_pred) -> np.ndarray` of per-sample values, shape
`y_pred.shape[:-1]`; `Sequential` averages them over every sample of an epoch, as Keras's
`MeanMetricWrapper` does.
"""

import numpy as np


def _align(y_true, y_pred):
    y_pred = np.asarray(y_pred)
    y_true = np.asarray(y_true, dtype=y_pred.dtype)
    if y_true.ndim == y_pred.ndim - 1:
        y_true = y_true[..., None]
    return y_true, y_pred


def mean_squared_error(y_true, y_pred):
    """`mean((y_true - y_pred) ** 2, axis=-1)`."""
    y_true, y_pred = _align(y_true, y_pred)
    return np.mean(np.square(y_pred - y_true), axis=-1)


def mean_absolute_error(y_true, y_pred):
    """`mean(|y_true - y_pred|, axis=-1)`."""
    y_true, y_pred = _align(y_true, y_pred)
    return np.mean(np.abs(y_pred - y_true), axis=-1)


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """Mean over the last axis of `(y_pred > threshold) == y_true`."""
    y_true, y_pred = _align(y_true, y_pred)
    return np.mean((y_pred > threshold).astype(y_true.dtype) == y_true, axis=-1)


def categorical_accuracy(y_true, y_pred):
    """`argmax(y_true, -1) == argmax(y_pred, -1)` for one-hot targets `(..., C)`."""
    return (np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)).astype(np.float64)


def sparse_categorical_accuracy(y_true, y_pred):
    """`y_true == argmax(y_pred, -1)` for integer labels of shape `y_pred.shape[:-1]`."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim == y_pred.ndim:
        y_true = y_true[..., 0]
    return (y_true == np.argmax(y_pred, axis=-1)).astype(np.float64)


def accuracy(y_true, y_pred):
    """Keras's `"accuracy"`, dispatched on the shapes as Keras's `compile` does.

    Binary when `y_pred`'s last axis is 1 (threshold 0.5); sparse categorical when `y_true`
    has a lower rank than `y_pred` or a last axis of 1; categorical (argmax of both) otherwise.

    Returns:
        `np.ndarray` of per-sample values in `{0, 1}` (or their mean over a binary last axis).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_pred.ndim == 1 or y_pred.shape[-1] == 1:
        return binary_accuracy(y_true, y_pred)
    if y_true.ndim < y_pred.ndim or y_true.shape[-1] == 1:
        return sparse_categorical_accuracy(y_true, y_pred)
    return categorical_accuracy(y_true, y_pred)


_METRICS = {
    "mse": mean_squared_error,
    "mean_squared_error": mean_squared_error,
    "mae": mean_absolute_error,
    "mean_absolute_error": mean_absolute_error,
    "accuracy": accuracy,
    "acc": accuracy,
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
}


def get(identifier):
    """Returns a metric function.

    Args:
        identifier: a name (`"mae"`, `"mse"`, `"accuracy"`, ...) or a callable
            `(y_true, y_pred) -> per-sample values` (returned as is).

    Raises:
        ValueError: for an unknown name; the message lists the valid ones.
    """
    if callable(identifier):
        return identifier
    try:
        return _METRICS[identifier]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown metric {identifier!r}. Valid names: {', '.join(sorted(_METRICS))}."
        ) from None
