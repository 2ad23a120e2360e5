"""Losses with their gradients (Keras 3's `keras.losses`, `sum_over_batch_size` reduction).

A loss is called as `loss(y_true, y_pred) -> float` and differentiated with
`loss.gradient(y_true, y_pred) -> np.ndarray` (d loss / d y_pred, shape and dtype of `y_pred`).
As in Keras, each sample's loss is reduced over the last axis (a mean for MSE/MAE/Huber/...,
a sum for the categorical crossentropies, KL divergence and cosine similarity) and the
per-sample losses are then reduced as Keras's `reduce_weighted_values` does: multiplied by the
`sample_weight` and by the mask (scaled by `entries / unmasked entries`, so that masked entries
drop out of the mean), summed, and divided by the number of entries. Probabilities are clipped
to `[1e-7, 1 - 1e-7]`; with `from_logits=True` the stable log-sigmoid / log-softmax is used.
Gradients follow TensorFlow's conventions where a function has a kink: `|x|` has slope 0 at 0,
`maximum(x, c)` and `clip` pass the gradient at a tie, `max` over an axis shares it among ties.
"""

import numpy as np
from scipy import special

from pylstm._serialization import Configurable, Registry

EPSILON = 1e-7


class Loss(Configurable):
    """Base class of the losses (Keras 3's `keras.losses.Loss`, `sum_over_batch_size`).

    Subclasses implement `_per_sample(y_true, y_pred) -> (losses, grads)`: the unreduced
    losses (float, `y_pred.shape[:-1]`) and d losses / d y_pred (`y_pred.shape`); the base
    class weights, masks and averages them, and gives the gradient of the mean (pylstm has
    no autodiff, so a loss brings its own gradient).

    Example:

    >>> import numpy as np
    >>> class HalfSquaredError(Loss):
    ...     def _per_sample(self, y_true, y_pred):
    ...         error = y_pred - y_true
    ...         return np.mean(0.5 * error ** 2, axis=-1), error / error.shape[-1]
    >>> HalfSquaredError().value_and_gradient(np.zeros((1, 2)), np.ones((1, 2)))
    (0.5, array([[0.5, 0.5]]))
    """

    def __call__(self, y_true, y_pred, sample_weight=None, mask=None):
        """Returns the mean loss as a Python float.

        Args:
            y_true: targets; see each subclass for the shape.
            y_pred: `np.ndarray` of predictions `(..., K)`, float32 or float64.
            sample_weight: None, or weights of shape `y_pred.shape[:-1]` or a leading part of
                it (a bool array is a mask).
            mask: None, or a bool mask of shape `y_pred.shape[:-1]`; as in Keras, masked
                entries are left out of the mean.

        Raises:
            ValueError: if the shapes are incompatible.
        """
        return self.value_and_gradient(y_true, y_pred, sample_weight, mask)[0]

    def gradient(self, y_true, y_pred, sample_weight=None, mask=None):
        """Returns d(loss)/d(y_pred): `np.ndarray` of `y_pred`'s shape and dtype.

        Args:
            y_true, y_pred, sample_weight, mask: as in `value_and_gradient`.

        Raises:
            ValueError: if the shapes are incompatible.
        """
        return self.value_and_gradient(y_true, y_pred, sample_weight, mask)[1]

    def value_and_gradient(self, y_true, y_pred, sample_weight=None, mask=None):
        """Returns `(loss, d loss / d y_pred)` in one pass: a Python float and an `np.ndarray`
        of `y_pred`'s shape and dtype.

        Args:
            y_true, y_pred: as in `__call__`.
            sample_weight: None, or float weights of the per-sample losses' shape
                (`y_pred.shape[:-1]`), or of a leading part of it (`(B,)` for `(B, T)` losses,
                the same weight at every timestep); a bool array is a mask.
            mask: None, or a bool array of the per-sample losses' shape (Keras's mask of
                `y_pred`): masked entries drop out of the mean.

        Raises:
            ValueError: if the shapes are incompatible.
        """
        y_true, y_pred = self._prepare(y_true, y_pred)
        losses, grads = self._per_sample(y_true, y_pred)
        if sample_weight is not None and np.asarray(sample_weight).dtype == bool:
            if mask is not None:
                raise ValueError(f"{type(self).__name__}: received a bool `sample_weight` (a "
                                 "mask) and a `mask`; pass the mask as `mask` only.")
            sample_weight, mask = None, sample_weight
        weights = _weights(self, sample_weight, mask, losses.shape)
        n = max(losses.size, 1)
        if weights is None:
            value = float(np.mean(losses, dtype=np.float64))
            grad = grads / n
        else:
            value = float(np.sum(losses * weights, dtype=np.float64) / n)
            grad = grads * np.expand_dims(weights / n, self._reduced_axis(y_pred.ndim))
        return value, grad.astype(y_pred.dtype, copy=False)

    def _reduced_axis(self, ndim):
        """The axis of `y_pred` that each per-sample loss reduces."""
        return ndim - 1

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


def _weights(loss, sample_weight, mask, shape):
    """The weight of each per-sample loss (float64, `shape`), or None: Keras's `apply_mask`
    (unmasked entries weigh `entries / unmasked entries`, all of them 0 when none is unmasked)
    times the sample weights."""
    weights = None
    if mask is not None:
        mask = _to_shape(np.asarray(mask, dtype=bool), shape, loss, "mask")
        valid = np.count_nonzero(mask)
        weights = np.where(mask, mask.size / valid if valid else 0.0, 0.0)
    if sample_weight is not None:
        sample_weight = _to_shape(np.asarray(sample_weight, dtype=np.float64), shape, loss,
                                  "sample_weight")
        weights = sample_weight if weights is None else weights * sample_weight
    return weights


def _to_shape(a, shape, loss, argument):
    """`a` given the per-sample losses' `shape`: a trailing unit axis dropped (Keras's
    `squeeze_or_expand_to_same_rank`), a leading part of `shape` repeated over the rest."""
    if a.ndim == len(shape) + 1 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim < len(shape) and a.shape == shape[:a.ndim]:
        a = a.reshape(a.shape + (1,) * (len(shape) - a.ndim))
    try:
        return np.broadcast_to(a, shape)
    except ValueError:
        raise ValueError(f"{type(loss).__name__}: `{argument}` must have the per-sample losses' "
                         f"shape {shape} (or a leading part of it), received {a.shape}.") from None


class MeanSquaredError(Loss):
    """`mean((y_true - y_pred) ** 2)`; `y_true` and `y_pred` of one shape `(..., K)`
    (Keras's `MeanSquaredError`, `"mse"`).

    Example:

    >>> import numpy as np
    >>> from pylstm.losses import MeanSquaredError
    >>> loss = MeanSquaredError()
    >>> loss(np.zeros((2, 3)), np.ones((2, 3)))
    1.0
    >>> loss.gradient(np.zeros((2, 3)), np.ones((2, 3))).round(4)  # 2 (y_pred - y_true) / 6
    array([[0.3333, 0.3333, 0.3333],
           [0.3333, 0.3333, 0.3333]])
    """

    def _per_sample(self, y_true, y_pred):
        diff = y_pred - y_true
        k = diff.shape[-1]
        return np.mean(np.square(diff, dtype=np.float64), axis=-1), 2.0 * diff / k


class MeanAbsoluteError(Loss):
    """`mean(|y_true - y_pred|)`; `y_true` and `y_pred` of one shape `(..., K)` (Keras's
    `MeanAbsoluteError`, `"mae"`); its gradient uses `sign(0) = 0`, as autodiff of `abs` does.

    Example:

    >>> from pylstm.losses import MeanAbsoluteError
    >>> MeanAbsoluteError()([[1.0, 2.0]], [[0.0, 4.0]])
    1.5
    """

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

    Example:

    >>> from pylstm.losses import BinaryCrossentropy
    >>> round(BinaryCrossentropy()([[0.0, 1.0]], [[0.1, 0.8]]), 4)
    0.1643
    >>> round(BinaryCrossentropy(from_logits=True)([[0.0, 1.0]], [[-2.2, 1.4]]), 4)
    0.1628
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

    Example:

    >>> from pylstm.losses import CategoricalCrossentropy
    >>> y_true = [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(CategoricalCrossentropy()(y_true, y_pred), 4)  # (-log 0.95 - log 0.1) / 2
    1.1769
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

    Example:

    >>> from pylstm.losses import SparseCategoricalCrossentropy
    >>> y_pred = [[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]
    >>> round(SparseCategoricalCrossentropy()([1, 2], y_pred), 4)
    1.1769
    >>> round(SparseCategoricalCrossentropy(from_logits=True)([0, 2], [[2.0, 1.0, 0.0]] * 2), 4)
    1.4076
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


class _Elementwise(Loss):
    """A loss that is the mean over the last axis of an elementwise function of
    `(y_true, y_pred)`: subclasses implement `_elementwise(y_true, y_pred) -> (values,
    d values / d y_pred)`, both of `y_pred`'s shape."""

    def _per_sample(self, y_true, y_pred):
        values, grads = self._elementwise(y_true, y_pred)
        return np.mean(values, axis=-1, dtype=np.float64), grads / y_pred.shape[-1]


class Huber(_Elementwise):
    """`mean(0.5 * e ** 2 if |e| <= delta else delta * |e| - 0.5 * delta ** 2)` with
    `e = y_pred - y_true`; `y_true` and `y_pred` of one shape `(..., K)` (Keras's `Huber`).

    Args:
        delta: float, where the loss turns from quadratic to linear (default 1.0).

    Raises:
        ValueError: for a `delta` that is not a non-negative number.

    Example:

    >>> from pylstm.losses import Huber
    >>> round(Huber()([[0.0, 1.0], [0.0, 0.0]], [[0.6, 0.4], [0.4, 0.6]]), 4)
    0.155
    >>> Huber(delta=0.5)([[0.0, 3.0]], [[0.0, 0.0]])  # (0 + 0.5 * 3 - 0.5 * 0.5 ** 2) / 2
    0.6875
    """

    def __init__(self, delta=1.0):
        if isinstance(delta, bool) or not isinstance(delta, (int, float, np.number)) or not (
                delta >= 0):
            raise ValueError(f"Huber: `delta` must be a non-negative float, received {delta!r}.")
        self.delta = float(delta)

    def get_config(self):
        return {"delta": self.delta}

    def _elementwise(self, y_true, y_pred):
        error = y_pred - y_true
        quadratic = np.abs(error) <= self.delta
        values = np.where(quadratic, 0.5 * np.square(error),
                          self.delta * np.abs(error) - 0.5 * self.delta ** 2)
        return values, np.where(quadratic, error, self.delta * np.sign(error))


class LogCosh(_Elementwise):
    """`mean(log(cosh(y_pred - y_true)))`, computed as `x + softplus(-2 x) - log 2` so that
    large errors do not overflow; `y_true` and `y_pred` of one shape `(..., K)` (Keras's
    `LogCosh`). Its gradient is `tanh(y_pred - y_true)`.

    Example:

    >>> from pylstm.losses import LogCosh
    >>> round(LogCosh()([[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]]), 4)  # log(cosh 1) / 4
    0.1084
    """

    def _elementwise(self, y_true, y_pred):
        x = y_pred - y_true
        return x + np.logaddexp(0.0, -2.0 * x) - np.log(2.0), np.tanh(x)


class MeanAbsolutePercentageError(_Elementwise):
    """`100 * mean(|y_true - y_pred| / max(|y_true|, 1e-7))`; `y_true` and `y_pred` of one
    shape `(..., K)` (Keras's `MeanAbsolutePercentageError`, `"mape"`).

    Example:

    >>> from pylstm.losses import MeanAbsolutePercentageError
    >>> MeanAbsolutePercentageError()([[2.0, 4.0]], [[1.0, 5.0]])  # 100 * (1/2 + 1/4) / 2
    37.5
    """

    def _elementwise(self, y_true, y_pred):
        scale = 100.0 / np.maximum(np.abs(y_true), EPSILON)
        error = y_pred - y_true
        return np.abs(error) * scale, np.sign(error) * scale


class MeanSquaredLogarithmicError(_Elementwise):
    """`mean((log(max(y_pred, 1e-7) + 1) - log(max(y_true, 1e-7) + 1)) ** 2)`; `y_true` and
    `y_pred` of one shape `(..., K)` (Keras's `MeanSquaredLogarithmicError`, `"msle"`).

    Example:

    >>> from pylstm.losses import MeanSquaredLogarithmicError
    >>> loss = MeanSquaredLogarithmicError()
    >>> round(loss([[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]]), 4)  # log(2) ** 2 / 4
    0.1201
    """

    def _elementwise(self, y_true, y_pred):
        shifted = np.maximum(y_pred, EPSILON) + 1.0
        diff = np.log(shifted) - np.log(np.maximum(y_true, EPSILON) + 1.0)
        return np.square(diff), np.where(y_pred >= EPSILON, 2.0 * diff / shifted, 0.0)


class Poisson(_Elementwise):
    """`mean(y_pred - y_true * log(y_pred + 1e-7))`; `y_true` and `y_pred` of one shape
    `(..., K)` (Keras's `Poisson`).

    Example:

    >>> from pylstm.losses import Poisson
    >>> round(Poisson()([[1.0, 2.0]], [[2.0, 1.0]]), 4)  # (2 - log 2 + 1 - 2 log 1) / 2
    1.1534
    """

    def _elementwise(self, y_true, y_pred):
        return y_pred - y_true * np.log(y_pred + EPSILON), 1.0 - y_true / (y_pred + EPSILON)


class KLDivergence(Loss):
    """`sum(t * log(t / p), axis=-1)` with `t = clip(y_true, 1e-7, 1)` and
    `p = clip(y_pred, 1e-7, 1)`; `y_true` and `y_pred` of one shape `(..., K)`, distributions
    over the last axis (Keras's `KLDivergence`, `"kld"`).

    Example:

    >>> from pylstm.losses import KLDivergence
    >>> round(KLDivergence()([[0.5, 0.5]], [[0.25, 0.75]]), 4)  # 0.5 log 2 + 0.5 log(2/3)
    0.1438
    """

    def _per_sample(self, y_true, y_pred):
        t = np.clip(y_true, EPSILON, 1.0)
        p = np.clip(y_pred, EPSILON, 1.0)
        losses = np.sum(t * np.log(t / p), axis=-1, dtype=np.float64)
        return losses, np.where((y_pred >= EPSILON) & (y_pred <= 1.0), -t / p, 0.0)


class CosineSimilarity(Loss):
    """`-sum(normalize(y_true) * normalize(y_pred), axis)`, where `normalize(x)` divides by
    `max(||x||, 1e-7)` along `axis`: -1 for parallel vectors, 0 when either is zero (Keras's
    `CosineSimilarity`).

    Args:
        axis: int, the axis of the vectors (default -1); the per-sample losses have
            `y_pred`'s shape without it.

    Raises:
        ValueError: for an `axis` that is not an int, or out of range for `y_pred`'s rank.

    Example:

    >>> from pylstm.losses import CosineSimilarity
    >>> round(CosineSimilarity()([[0.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 1.0]]), 4)
    -0.5
    """

    def __init__(self, axis=-1):
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"CosineSimilarity: `axis` must be an int, received {axis!r}.")
        self.axis = int(axis)

    def get_config(self):
        return {"axis": self.axis}

    def _reduced_axis(self, ndim):
        if not -ndim <= self.axis < ndim:
            raise ValueError(f"CosineSimilarity: `axis`={self.axis} is out of range for "
                             f"y_pred of rank {ndim}.")
        return self.axis % ndim

    def _per_sample(self, y_true, y_pred):
        axis = self._reduced_axis(y_pred.ndim)
        with np.errstate(divide="ignore"):
            inv_pred = 1.0 / np.sqrt(np.sum(np.square(y_pred), axis=axis, keepdims=True))
            inv_true = 1.0 / np.sqrt(np.sum(np.square(y_true), axis=axis, keepdims=True))
        # Keras's `normalize`: `x * min(rsqrt(sum(x ** 2)), 1 / epsilon)`.
        floored = inv_pred >= 1.0 / EPSILON
        inv_pred = np.minimum(inv_pred, 1.0 / EPSILON)
        u, v = y_pred * inv_pred, y_true * np.minimum(inv_true, 1.0 / EPSILON)
        cosine = np.sum(u * v, axis=axis, keepdims=True)
        # d(-u . v)/d y_pred, through u = y_pred / ||y_pred||; a constant scale when floored.
        grad = np.where(floored, -v, u * cosine - v) * inv_pred
        return -np.squeeze(cosine, axis=axis).astype(np.float64), grad

    def _prepare(self, y_true, y_pred):
        y_true, y_pred = super()._prepare(y_true, y_pred)
        self._reduced_axis(y_pred.ndim)
        return y_true, y_pred


def _hinge_labels(y_true):
    """Keras's `convert_binary_labels_to_hinge`: labels all in {0, 1} become -1 / 1."""
    return 2.0 * y_true - 1.0 if np.all((y_true == 0) | (y_true == 1)) else y_true


class Hinge(_Elementwise):
    """`mean(max(1 - y_true * y_pred, 0))` with labels -1 / 1 (labels all in {0, 1} are
    converted, as Keras's `Hinge` does); `y_true` and `y_pred` of one shape `(..., K)`.

    Example:

    >>> from pylstm.losses import Hinge
    >>> round(Hinge()([[0.0, 1.0]], [[-0.5, 0.3]]), 4)  # labels -1, 1: (0.5 + 0.7) / 2
    0.6
    """

    def _elementwise(self, y_true, y_pred):
        y_true = _hinge_labels(y_true)
        margin = 1.0 - y_true * y_pred
        return np.maximum(margin, 0.0), np.where(margin >= 0.0, -y_true, 0.0)


class SquaredHinge(_Elementwise):
    """`mean(max(1 - y_true * y_pred, 0) ** 2)`, labels as in `Hinge` (Keras's
    `SquaredHinge`); `y_true` and `y_pred` of one shape `(..., K)`.

    Example:

    >>> from pylstm.losses import SquaredHinge
    >>> round(SquaredHinge()([[0.0, 1.0]], [[-0.5, 0.3]]), 4)  # (0.5 ** 2 + 0.7 ** 2) / 2
    0.37
    """

    def _elementwise(self, y_true, y_pred):
        y_true = _hinge_labels(y_true)
        margin = np.maximum(1.0 - y_true * y_pred, 0.0)
        return np.square(margin), -2.0 * y_true * margin


class CategoricalHinge(Loss):
    """`max(max((1 - y_true) * y_pred, axis=-1) - sum(y_true * y_pred, axis=-1) + 1, 0)`;
    `y_true` one-hot `(..., C)`, `y_pred` scores of the same shape (Keras's
    `CategoricalHinge`).

    Example:

    >>> from pylstm.losses import CategoricalHinge
    >>> round(CategoricalHinge()([[0.0, 1.0, 0.0]], [[0.3, 0.6, 0.1]]), 4)  # 0.3 - 0.6 + 1
    0.7
    """

    def _per_sample(self, y_true, y_pred):
        negatives = (1.0 - y_true) * y_pred
        neg = np.max(negatives, axis=-1, keepdims=True)
        margin = neg[..., 0] - np.sum(y_true * y_pred, axis=-1) + 1.0
        ties = negatives == neg  # the max's gradient is shared among its ties
        d_neg = (1.0 - y_true) * ties / np.sum(ties, axis=-1, keepdims=True)
        grad = np.where((margin >= 0.0)[..., None], d_neg - y_true, 0.0)
        return np.maximum(margin, 0.0).astype(np.float64), grad


_REGISTRY = Registry(
    "loss",
    [MeanSquaredError, MeanAbsoluteError, BinaryCrossentropy, CategoricalCrossentropy,
     SparseCategoricalCrossentropy, Huber, LogCosh, MeanAbsolutePercentageError,
     MeanSquaredLogarithmicError, KLDivergence, Poisson, CosineSimilarity, Hinge, SquaredHinge,
     CategoricalHinge],
    # Keras 3's aliases (`keras.losses.ALL_OBJECTS_DICT`).
    aliases={"mse": MeanSquaredError, "MSE": MeanSquaredError, "mae": MeanAbsoluteError,
             "MAE": MeanAbsoluteError, "bce": BinaryCrossentropy, "BCE": BinaryCrossentropy,
             "mape": MeanAbsolutePercentageError, "MAPE": MeanAbsolutePercentageError,
             "msle": MeanSquaredLogarithmicError, "MSLE": MeanSquaredLogarithmicError,
             "kld": KLDivergence, "KLD": KLDivergence, "kl_divergence": KLDivergence},
)


def get(identifier):
    """Returns a `Loss`.

    Args:
        identifier: a name (`"mse"`, `"mean_squared_error"`, `"MeanSquaredError"`, ...), a dict
            `{"class_name": ..., "config": ...}`, or an object with `__call__(y_true, y_pred)`
            and `gradient(y_true, y_pred)` (returned as is).

    Returns:
        A `Loss` (a new one for a name or a dict), or `identifier` itself.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones), or an object
            without a `gradient` method (pylstm has no autodiff).

    Example:

    >>> from pylstm.losses import get
    >>> get("mse")
    MeanSquaredError()
    >>> get({"class_name": "Huber", "config": {"delta": 2.0}})
    Huber(delta=2.0)
    """
    loss = _REGISTRY.get(identifier)
    if loss is not None and not callable(getattr(loss, "gradient", None)):
        raise ValueError(
            f"A loss needs a `gradient(y_true, y_pred)` method (pylstm has no autodiff), "
            f"received {identifier!r}."
        )
    return loss


def serialize(loss):
    """Returns `{"class_name": str, "config": dict}`, JSON-serializable (Keras's protocol).

    Args:
        loss: a `Loss`.

    Example:

    >>> from pylstm.losses import Huber, serialize
    >>> serialize(Huber(delta=2.0))
    {'class_name': 'Huber', 'config': {'delta': 2.0}}
    """
    return _REGISTRY.serialize(loss)


def deserialize(config):
    """Builds a `Loss` from `serialize`'s output; `class_name` may also be a snake-case name
    or an alias such as `"mse"`.

    Args:
        config: dict `{"class_name": str, "config": dict or None}`.

    Raises:
        ValueError: if `config` is not such a dict or names an unknown loss.

    Example:

    >>> from pylstm.losses import deserialize
    >>> deserialize({"class_name": "huber", "config": {"delta": 2.0}})
    Huber(delta=2.0)
    """
    return _REGISTRY.deserialize(config)


__all__ = [
    "Loss", "MeanSquaredError", "MeanAbsoluteError", "BinaryCrossentropy",
    "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "Huber", "LogCosh",
    "MeanAbsolutePercentageError", "MeanSquaredLogarithmicError", "KLDivergence", "Poisson",
    "CosineSimilarity", "Hinge", "SquaredHinge", "CategoricalHinge", "get", "serialize",
    "deserialize",
]
