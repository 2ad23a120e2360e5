"""Losses with their gradients (Keras 3's `keras.losses`, `sum_over_batch_size` reduction).

A loss is called as `loss(y_true, y_pred) -> float` and differentiated with
`loss.gradient(y_true, y_pred) -> np.ndarray` (d loss / d y_pred, shape and dtype of `y_pred`).
As in Keras, each sample's loss is reduced over the last axis (a mean for MSE/MAE/binary
crossentropy, the class sum for categorical crossentropies) and the per-sample losses are then
averaged over all leading axes (a weighted mean when a `sample_weight` or a timestep mask is
given, Keras's `sum_over_batch_size` with masked entries excluded). Probabilities are clipped to `[1e-7, 1 - 1e-7]`; with
`from_logits=True` the stable log-sigmoid / log-softmax is used instead.
"""

import numpy as np
from scipy import special

from pylstm._serialization import Configurable, Registry

EPSILON = 1e-7


class Loss(Configurable):
    """Base class: subclasses implement `_per_sample(y_true, y_pred) -> (losses, grads)`,
    the unreduced losses (`y_pred.shape[:-1]`) and d losses / d y_pred (`y_pred.shape`)."""

    def __call__(self, y_true, y_pred, sample_weight=None):
        """Returns the mean loss as a Python float.

        Args:
            y_true: targets; see each subclass for the shape.
            y_pred: `np.ndarray` of predictions `(..., K)`, float32 or float64.
            sample_weight: None, or weights of shape `y_pred.shape[:-1]` (a bool timestep mask
                is a weight; as in Keras, masked entries are left out of the mean).

        Raises:
            ValueError: if the shapes are incompatible.
        """
        return self.value_and_gradient(y_true, y_pred, sample_weight)[0]

    def gradient(self, y_true, y_pred, sample_weight=None):
        """Returns d(loss)/d(y_pred): `np.ndarray` of `y_pred`'s shape and dtype."""
        return self.value_and_gradient(y_true, y_pred, sample_weight)[1]

    def value_and_gradient(self, y_true, y_pred, sample_weight=None):
        """Returns `(loss, d loss / d y_pred)` in one pass; see `__call__`."""
        y_true, y_pred = self._prepare(y_true, y_pred)
        losses, grads = self._per_sample(y_true, y_pred)
        n = max(losses.size, 1)
        if sample_weight is None:
            weights = None
        else:
            raw = np.asarray(sample_weight)
            weights = raw.astype(np.float64)
            if weights.shape != losses.shape:
                raise ValueError(f"{type(self).__name__}: `sample_weight` must have shape "
                                 f"{losses.shape} (y_pred.shape[:-1]), received "
                                 f"{weights.shape}.")
            if raw.dtype == bool:
                # Keras's apply_mask: masked entries drop out of the mean.
                weights = weights * (n / (weights.sum() + EPSILON))
        if weights is None:
            value = float(np.mean(losses, dtype=np.float64))
            grad = grads / n
        else:
            value = float(np.sum(losses * weights, dtype=np.float64) / n)
            grad = grads * (weights / n)[..., None]
        return value, grad.astype(y_pred.dtype, copy=False)

    def _prepare(self, y_true, y_pred):
        y_pred = np.asarray(y_pred)
        if y_pred.dtype.kind != "f":
            y_pred = y_pred.astype(np.float32)
        y_true = np.asarray(y_true, dtype=y_pred.dtype)
        # Keras's squeeze_or_expand_to_same_rank for targets given without the last unit axis.
        if y_true.ndim == y_pred.ndim - 1:
            y_true = y_true[..., None]
        if y_true.shape != y_pred.shape:
            raise ValueError(
                f"{type(self).__name__}: `y_true` and `y_pred` must have the same shape, "
                f"received y_true.shape={y_true.shape} and y_pred.shape={y_pred.shape}."
            )
        return y_true, y_pred


class MeanSquaredError(Loss):
    """`mean((y_true - y_pred) ** 2)`; `y_true` and `y_pred` of one shape `(..., K)`."""

    def _per_sample(self, y_true, y_pred):
        diff = y_pred - y_true
        k = diff.shape[-1]
        return np.mean(np.square(diff, dtype=np.float64), axis=-1), 2.0 * diff / k


class MeanAbsoluteError(Loss):
    """`mean(|y_true - y_pred|)`; its gradient uses `sign(0) = 0`, as autodiff of `abs` does."""

    def _per_sample(self, y_true, y_pred):
        diff = y_pred - y_true
        k = diff.shape[-1]
        return np.mean(np.abs(diff), axis=-1, dtype=np.float64), np.sign(diff) / k


class _FromLogits(Loss):
    def __init__(self, from_logits=False):
        self.from_logits = bool(from_logits)

    def get_config(self):
        return {"from_logits": self.from_logits}


class BinaryCrossentropy(_FromLogits):
    """`-mean(y log p + (1 - y) log(1 - p))` over `(..., K)` independent binary outputs.

    Args:
        from_logits: bool; if True `y_pred` holds logits and `p = sigmoid(y_pred)`, computed as
            `max(x, 0) - x y + log(1 + exp(-|x|))`; otherwise `y_pred` holds probabilities,
            clipped to `[1e-7, 1 - 1e-7]` (the clipped entries get a zero gradient).
    """

    def _per_sample(self, y_true, y_pred):
        k = y_pred.shape[-1]
        if self.from_logits:
            x = y_pred
            losses = np.maximum(x, 0) - x * y_true + np.log1p(np.exp(-np.abs(x)))
            return np.mean(losses, axis=-1, dtype=np.float64), (special.expit(x) - y_true) / k
        p = np.clip(y_pred, EPSILON, 1.0 - EPSILON)
        losses = -(y_true * np.log(p) + (1.0 - y_true) * np.log(1.0 - p))
        inside = (y_pred > EPSILON) & (y_pred < 1.0 - EPSILON)
        grad = np.where(inside, (p - y_true) / (p * (1.0 - p)), 0.0) / k
        return np.mean(losses, axis=-1, dtype=np.float64), grad


class CategoricalCrossentropy(_FromLogits):
    """`-sum(y_true * log p, axis=-1)` averaged over samples; `y_true` one-hot `(..., C)`.

    Args:
        from_logits: bool; if True `p = softmax(y_pred)` via a stable log-softmax; otherwise
            `y_pred` is renormalised to sum to 1 over the last axis and clipped to
            `[1e-7, 1 - 1e-7]`, as Keras does.
    """

    def _per_sample(self, y_true, y_pred):
        if self.from_logits:
            log_p = special.log_softmax(y_pred, axis=-1)
            losses = -np.sum(y_true * log_p, axis=-1)
            grad = np.exp(log_p) * np.sum(y_true, axis=-1, keepdims=True) - y_true
            return losses, grad
        total = np.sum(y_pred, axis=-1, keepdims=True)
        q = y_pred / total
        q_clipped = np.clip(q, EPSILON, 1.0 - EPSILON)
        losses = -np.sum(y_true * np.log(q_clipped), axis=-1)
        # Chain rule through the clip (zero outside) and the renormalisation q = p / sum(p).
        g_q = np.where((q > EPSILON) & (q < 1.0 - EPSILON), -y_true / q_clipped, 0.0)
        grad = (g_q - np.sum(g_q * q, axis=-1, keepdims=True)) / total
        return losses, grad


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    """Categorical crossentropy with integer labels.

    `y_true` holds class indices of shape `y_pred.shape[:-1]` (or with a trailing axis of 1);
    `y_pred` has shape `(..., C)`.

    Args:
        from_logits: bool, as in `CategoricalCrossentropy`.

    Raises:
        ValueError: for labels that are not integers in `[0, C)`.
    """

    def _prepare(self, y_true, y_pred):
        y_pred = np.asarray(y_pred)
        if y_pred.dtype.kind != "f":
            y_pred = y_pred.astype(np.float32)
        y_true = np.asarray(y_true)
        if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
            y_true = y_true[..., 0]
        if y_true.shape != y_pred.shape[:-1]:
            raise ValueError(
                "SparseCategoricalCrossentropy: `y_true` must have shape y_pred.shape[:-1] = "
                f"{y_pred.shape[:-1]}, received y_true.shape={y_true.shape}."
            )
        n_classes = y_pred.shape[-1]
        labels = y_true.astype(np.int64)
        if np.any(labels != y_true) or np.any(labels < 0) or np.any(labels >= n_classes):
            raise ValueError(
                f"SparseCategoricalCrossentropy: `y_true` must hold integer class indices in "
                f"[0, {n_classes}), received values in [{y_true.min()}, {y_true.max()}]."
            )
        return np.eye(n_classes, dtype=y_pred.dtype)[labels], y_pred


_REGISTRY = Registry(
    "loss",
    [MeanSquaredError, MeanAbsoluteError, BinaryCrossentropy, CategoricalCrossentropy,
     SparseCategoricalCrossentropy],
    aliases={"mse": MeanSquaredError, "mae": MeanAbsoluteError},
)


def get(identifier):
    """Returns a `Loss`.

    Args:
        identifier: a name (`"mse"`, `"mean_squared_error"`, `"MeanSquaredError"`, ...), a dict
            `{"class_name": ..., "config": ...}`, or an object with `__call__(y_true, y_pred)`
            and `gradient(y_true, y_pred)` (returned as is).

    Raises:
        ValueError: for an unknown name (the message lists the valid ones), or an object
            without a `gradient` method (pylstm has no autodiff).
    """
    loss = _REGISTRY.get(identifier)
    if loss is not None and not callable(getattr(loss, "gradient", None)):
        raise ValueError(
            f"A loss needs a `gradient(y_true, y_pred)` method (pylstm has no autodiff), "
            f"received {identifier!r}."
        )
    return loss


# `{"class_name": str, "config": dict}` and back, JSON-serializable (Keras's protocol).
serialize = _REGISTRY.serialize
deserialize = _REGISTRY.deserialize


__all__ = [
    "Loss", "MeanSquaredError", "MeanAbsoluteError", "BinaryCrossentropy",
    "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "get", "serialize", "deserialize",
]
