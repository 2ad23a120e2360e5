"""Normalization layers (Keras 3's `keras.layers.BatchNormalization` and
`keras.layers.LayerNormalization`).

Design:
    Both compute `y = (x - mean) * rsqrt(variance + epsilon) * gamma + beta` as TensorFlow's
    `tf.nn.batch_normalization` does (`inv = rsqrt(variance + epsilon) * gamma`, `y = x * inv +
    (beta - mean * inv)`), with the biased variance. BatchNormalization takes the statistics
    over every axis but `axis` (the batch and the time steps), LayerNormalization over `axis`
    (the features of each step). Backward differentiates through the statistics; it is the
    closed form `dx = r * (gh - mean(gh) - xhat * mean(gh * xhat))` (`r = rsqrt(variance +
    epsilon)`, `xhat = (x - mean) * r`, `gh = grad * gamma`) written for the weighted
    statistics of a masked batch.
"""

import math

import numpy as np

from pylstm import constraints, initializers, regularizers
from pylstm.layers.layer import Layer

# Keras's `backend.epsilon()`, which its masked moments add to the count of real entries.
_COUNT_EPSILON = 1e-7


def _positive_axis(axis, ndim, owner):
    if not -ndim <= axis < ndim:
        raise ValueError(f"{owner}: `axis` {axis} is out of bounds for inputs of rank {ndim}.")
    return axis % ndim


def _check_flag(value, name, owner):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"Argument `{name}` of {owner} must be a bool, received {value!r}.")
    return bool(value)


class BatchNormalization(Layer):
    """Normalizes each channel with batch statistics in training, moving ones at inference.

    As Keras 3's `BatchNormalization` (Ioffe & Szegedy 2015): with `training=True` (and a
    trainable layer) the mean and biased variance are taken over every axis but `axis`, the
    output is `gamma * (x - mean) / sqrt(variance + epsilon) + beta`, and the moving statistics
    become `moving * momentum + batch * (1 - momentum)`. Otherwise (inference, or a frozen
    layer even in training, as Keras) `moving_mean` and `moving_variance` are used. A mask
    leaves the masked steps out of the batch statistics (Keras 3's weighted moments, whose
    count of real entries carries Keras's `epsilon()` of 1e-7); every step is still
    normalized, and the mask is passed on.

    Args:
        axis: int, the channel axis (a list of one int, as Keras 2 files write it, is
            accepted).
        momentum: float, the moving statistics' decay.
        epsilon: float added to the variance.
        center: bool, whether to add the `beta` offset.
        scale: bool, whether to multiply by `gamma`.
        beta_initializer, gamma_initializer, moving_mean_initializer,
            moving_variance_initializer: initializers of the `(C,)` weights.
        beta_regularizer, gamma_regularizer: `pylstm.regularizers` name/config/object or None.
        beta_constraint, gamma_constraint: `pylstm.constraints` name/config/object or None.
        synchronized: bool; Keras's cross-replica statistics, the same on one device.
        renorm: False (batch renormalization is not supported).
        renorm_clipping, renorm_momentum: Keras's renorm settings, kept for the config.
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: `(B, ..., C, ...)` float array (C on `axis`).
        training: bool; True uses and updates batch statistics, and keeps what `backward`
            needs.
        mask: `(B, T)` bool array or None, for `(B, T, C)` inputs (one dimension less than
            the inputs).

    Returns:
        An array of the inputs' shape and the layer's dtype.

    Weights:
        `gamma` (if `scale`), `beta` (if `center`), then the non-trainable `moving_mean` and
        `moving_variance`, each `(C,)`, in Keras's order.

    Raises:
        ValueError: for a bad argument (naming it), `renorm=True`, an `axis` outside the
            inputs, an unknown channel dimension, inputs whose channels differ from the built
            ones, or a mask that is not one dimension less than the inputs.
        TypeError: a flag that is not a bool.

    Example:

    >>> import numpy as np
    >>> layer = BatchNormalization(epsilon=0.0)
    >>> layer(np.array([[1.0], [3.0]]), training=True).ravel().tolist()
    [-1.0, 1.0]
    >>> [round(float(v), 4) for v in layer.moving_mean.value]
    [0.02]
    """

    supports_masking = True

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, synchronized=False, renorm=False, renorm_clipping=None,
                 renorm_momentum=0.99, **kwargs):
        super().__init__(**kwargs)
        owner = f"BatchNormalization '{self.name}'"
        if isinstance(axis, (list, tuple)) and len(axis) == 1:
            axis = axis[0]
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"Argument `axis` of {owner} must be an int, received {axis!r}.")
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = _check_flag(center, "center", owner)
        self.scale = _check_flag(scale, "scale", owner)
        self.synchronized = _check_flag(synchronized, "synchronized", owner)
        if renorm:
            raise ValueError(f"Argument `renorm` of {owner}: batch renormalization is not "
                             f"supported, received renorm={renorm!r}.")
        self.renorm = False
        self.renorm_clipping = renorm_clipping
        self.renorm_momentum = float(renorm_momentum)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.gamma = self.beta = self.moving_mean = self.moving_variance = None
        self._cache = None

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        axis = _positive_axis(self.axis, len(input_shape), f"BatchNormalization '{self.name}'")
        channels = input_shape[axis]
        if channels is None:
            raise ValueError(f"BatchNormalization '{self.name}' needs a known dimension on axis "
                             f"{self.axis}, received input shape {input_shape}.")
        shape = (channels,)
        if self.scale:
            self.gamma = self.add_weight("gamma", shape, self.gamma_initializer,
                                         self.gamma_regularizer, self.gamma_constraint)
        if self.center:
            self.beta = self.add_weight("beta", shape, self.beta_initializer,
                                        self.beta_regularizer, self.beta_constraint)
        self.moving_mean = self.add_weight("moving_mean", shape, self.moving_mean_initializer,
                                           trainable=False)
        self.moving_variance = self.add_weight("moving_variance", shape,
                                               self.moving_variance_initializer, trainable=False)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        _positive_axis(self.axis, len(input_shape), f"BatchNormalization '{self.name}'")
        return tuple(input_shape)

    def call(self, inputs, training=False, mask=None):
        x = np.asarray(inputs, dtype=self.dtype)
        owner = f"BatchNormalization '{self.name}'"
        axis = _positive_axis(self.axis, x.ndim, owner)
        channels = self.moving_mean.shape[0]
        if x.shape[axis] != channels:
            raise ValueError(f"{owner}: `inputs` must have {channels} channels on axis "
                             f"{self.axis}, received shape {x.shape}.")
        axes = tuple(i for i in range(x.ndim) if i != axis)
        shape = [1] * x.ndim
        shape[axis] = channels
        if mask is not None:
            mask = np.asarray(mask)
            if mask.ndim != x.ndim - 1:
                raise ValueError(f"{owner}: the mask must have one dimension less than the "
                                 f"inputs, received mask shape {mask.shape} and inputs shape "
                                 f"{x.shape}.")
        batch_statistics = bool(training) and self.trainable
        if batch_statistics:
            if mask is None:
                weights, count = None, float(math.prod(x.shape[i] for i in axes))
                mean = x.mean(axis=axes, keepdims=True)
                variance = np.square(x - mean).mean(axis=axes, keepdims=True)
            else:
                weights = np.broadcast_to(mask[..., None], x.shape).astype(self.dtype)
                count = weights.sum(axis=axes, keepdims=True) + _COUNT_EPSILON
                mean = (x * weights).sum(axis=axes, keepdims=True) / count
                variance = np.square(weights * (x - mean)).sum(axis=axes, keepdims=True) / count
            self.moving_mean.assign(self.moving_mean.value * self.momentum
                                    + mean.reshape(channels) * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance.value * self.momentum
                                        + variance.reshape(channels) * (1.0 - self.momentum))
        else:
            weights = count = None
            mean = self.moving_mean.value.reshape(shape).copy()
            variance = self.moving_variance.value.reshape(shape).copy()
        rsqrt = 1.0 / np.sqrt(variance + self.epsilon)
        inv = rsqrt * self.gamma.value.reshape(shape) if self.scale else rsqrt
        offset = -mean * inv
        if self.center:
            offset = offset + self.beta.value.reshape(shape)
        self._cache = ((x, mean, rsqrt, weights, count, axes, shape, batch_statistics)
                       if training else None)
        return x * inv + offset

    def backward(self, grad_outputs):
        """Returns `grad_inputs` (the inputs' shape); adds into `gamma`'s and `beta`'s `grad`.

        With batch statistics the gradient flows through the mean and variance too.
        """
        if self._cache is None:
            raise RuntimeError(f"BatchNormalization '{self.name}': backward() needs a "
                               f"call(training=True) first.")
        x, mean, rsqrt, weights, count, axes, shape, batch_statistics = self._cache
        grad = np.asarray(grad_outputs, dtype=self.dtype)
        centered = x - mean
        if self.scale:
            self.gamma.grad += (grad * centered * rsqrt).sum(axis=axes)
        if self.center:
            self.beta.grad += grad.sum(axis=axes)
        grad_normalized = grad * self.gamma.value.reshape(shape) if self.scale else grad
        grad_x = grad_normalized * rsqrt
        if not batch_statistics:
            return grad_x
        real = 1.0 if weights is None else weights
        grad_variance = -0.5 * rsqrt ** 3 * (grad_normalized * centered).sum(axis=axes,
                                                                             keepdims=True)
        grad_mean = (-rsqrt * grad_normalized.sum(axis=axes, keepdims=True)
                     - 2.0 * grad_variance * (real * centered).sum(axis=axes, keepdims=True)
                     / count)
        return grad_x + real * (2.0 * grad_variance * centered + grad_mean) / count

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
            "moving_variance_initializer": initializers.serialize(
                self.moving_variance_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
            "synchronized": self.synchronized,
            "renorm": self.renorm,
            "renorm_clipping": self.renorm_clipping,
            "renorm_momentum": self.renorm_momentum,
        }


class LayerNormalization(Layer):
    """Normalizes each example over `axis` (by default the features of each step).

    As Keras 3's `LayerNormalization` (Ba et al. 2016): `y = gamma * (x - mean) /
    sqrt(variance + epsilon) + beta`, with the mean and biased variance over `axis`, in
    training and inference alike. The mask is passed on and does not enter the computation.
    Keras's deprecated `rms_scaling=True` (which scales by the variance, not the root mean
    square) is off by default there and not supported here.

    Args:
        axis: int or list of ints, the normalized axes; `gamma` and `beta` span them.
        epsilon: float added to the variance.
        center: bool, whether to add the `beta` offset.
        scale: bool, whether to multiply by `gamma`.
        beta_initializer, gamma_initializer: initializers of the weights.
        beta_regularizer, gamma_regularizer: `pylstm.regularizers` name/config/object or None.
        beta_constraint, gamma_constraint: `pylstm.constraints` name/config/object or None.
        rms_scaling: False (Keras writes the key into its configs).
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: float array, e.g. `(B, T, D)`.
        training: bool; when True what `backward` needs is kept.

    Returns:
        An array of the inputs' shape and the layer's dtype.

    Weights:
        `gamma` (if `scale`), then `beta` (if `center`), each of the shape of the normalized
        axes (`(D,)` by default), in Keras's order.

    Raises:
        ValueError: `rms_scaling=True`, an `axis` outside the inputs, an unknown dimension on
            a normalized axis, or inputs that differ there from the built shape.
        TypeError: an `axis` that is not an int or a list of ints; a flag that is not a bool.

    Example:

    >>> import numpy as np
    >>> LayerNormalization(epsilon=0.0)(np.array([[1.0, 3.0]])).tolist()
    [[-1.0, 1.0]]
    """

    supports_masking = True

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 rms_scaling=False, **kwargs):
        super().__init__(**kwargs)
        owner = f"LayerNormalization '{self.name}'"
        axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        if not axes or any(isinstance(a, bool) or not isinstance(a, (int, np.integer))
                           for a in axes):
            raise TypeError(f"Argument `axis` of {owner} must be an int or a list of ints, "
                            f"received {axis!r}.")
        self.axis = [int(a) for a in axis] if isinstance(axis, (list, tuple)) else int(axis)
        self.epsilon = float(epsilon)
        self.center = _check_flag(center, "center", owner)
        self.scale = _check_flag(scale, "scale", owner)
        if rms_scaling:
            raise ValueError(f"Argument `rms_scaling` of {owner}: Keras's deprecated variance "
                             f"scaling is not supported, received rms_scaling={rms_scaling!r}.")
        self.rms_scaling = False
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.gamma = self.beta = None
        self._weight_shape = None
        self._cache = None

    def _axes(self, ndim):
        """The normalized axes as sorted non-negative ints."""
        owner = f"LayerNormalization '{self.name}'"
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        return sorted({_positive_axis(a, ndim, owner) for a in axes})

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        shape = tuple(input_shape[a] for a in self._axes(len(input_shape)))
        if None in shape:
            raise ValueError(f"LayerNormalization '{self.name}' needs known dimensions on axis "
                             f"{self.axis}, received input shape {input_shape}.")
        if self.scale:
            self.gamma = self.add_weight("gamma", shape, self.gamma_initializer,
                                         self.gamma_regularizer, self.gamma_constraint)
        if self.center:
            self.beta = self.add_weight("beta", shape, self.beta_initializer,
                                        self.beta_regularizer, self.beta_constraint)
        self._weight_shape = shape
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        self._axes(len(input_shape))
        return tuple(input_shape)

    def call(self, inputs, training=False):
        x = np.asarray(inputs, dtype=self.dtype)
        axes = self._axes(x.ndim)
        if tuple(x.shape[a] for a in axes) != self._weight_shape:
            raise ValueError(f"LayerNormalization '{self.name}': `inputs` must have dimensions "
                             f"{self._weight_shape} on axis {self.axis}, received shape "
                             f"{x.shape}.")
        shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
        axes = tuple(axes)
        mean = x.mean(axis=axes, keepdims=True)
        variance = np.square(x - mean).mean(axis=axes, keepdims=True)
        rsqrt = 1.0 / np.sqrt(variance + self.epsilon)
        inv = rsqrt * self.gamma.value.reshape(shape) if self.scale else rsqrt
        offset = -mean * inv
        if self.center:
            offset = offset + self.beta.value.reshape(shape)
        self._cache = ((x - mean) * rsqrt, rsqrt, axes, shape) if training else None
        return x * inv + offset

    def backward(self, grad_outputs):
        """Returns `grad_inputs` (the inputs' shape); adds into `gamma`'s and `beta`'s `grad`."""
        if self._cache is None:
            raise RuntimeError(f"LayerNormalization '{self.name}': backward() needs a "
                               f"call(training=True) first.")
        normalized, rsqrt, axes, shape = self._cache
        grad = np.asarray(grad_outputs, dtype=self.dtype)
        others = tuple(i for i in range(grad.ndim) if i not in axes)
        if self.scale:
            self.gamma.grad += (grad * normalized).sum(axis=others).reshape(self.gamma.shape)
        if self.center:
            self.beta.grad += grad.sum(axis=others).reshape(self.beta.shape)
        grad_normalized = grad * self.gamma.value.reshape(shape) if self.scale else grad
        return rsqrt * (grad_normalized - grad_normalized.mean(axis=axes, keepdims=True)
                        - normalized * (grad_normalized * normalized).mean(axis=axes,
                                                                           keepdims=True))

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "rms_scaling": self.rms_scaling,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
        }
