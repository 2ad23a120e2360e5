"""Pooling over all timesteps (Keras 3's `keras.layers.GlobalAveragePooling1D` and
`GlobalMaxPooling1D`).

Design:
    Both reduce the steps axis of a `(B, T, D)` input (`(B, D, T)` with
    `data_format="channels_first"`) to `(B, D)`, or `(B, 1, D)` with `keepdims=True`. The mean
    leaves masked steps out, as Keras: the sum over the unmasked steps divided by their count
    (a sample with every step masked gives 0 / 0 = NaN, as in Keras). The maximum, as Keras's,
    takes no mask and runs over every step. Neither passes a mask on.

    Gradients follow TensorFlow's: the mean's goes to the unmasked steps in equal shares; the
    maximum's is split equally among the steps that tie for the maximum (`tf.reduce_max`'s
    gradient).
"""

import numpy as np

from pylstm.layers.layer import Layer

_DATA_FORMATS = ("channels_last", "channels_first")


class _GlobalPooling1D(Layer):
    """The shared configuration and shapes (Keras 3's `BaseGlobalPooling` for 1-D inputs).

    Args:
        data_format: `"channels_last"` (`(B, T, D)` inputs, the default when None) or
            `"channels_first"` (`(B, D, T)`).
        keepdims: bool; when True the steps axis stays, with size 1.
        **kwargs: base `Layer` arguments.

    Raises:
        ValueError: an unknown `data_format`.
    """

    def __init__(self, data_format=None, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        data_format = "channels_last" if data_format is None else str(data_format).lower()
        if data_format not in _DATA_FORMATS:
            raise ValueError(f"Argument `data_format` must be one of {_DATA_FORMATS}, received "
                             f"data_format={data_format!r}.")
        self.data_format = data_format
        self.keepdims = bool(keepdims)
        self._cache = None

    @property
    def _steps_axis(self):
        return 1 if self.data_format == "channels_last" else 2

    def _check_rank(self, shape):
        if len(shape) != 3:
            layout = "(batch, steps, features)" if self._steps_axis == 1 else \
                "(batch, features, steps)"
            raise ValueError(f"{type(self).__name__} layer '{self.name}' needs 3-D inputs "
                             f"{layout}, received shape {tuple(shape)}.")

    def build(self, input_shape):
        self._check_rank(input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        features = input_shape[2] if self._steps_axis == 1 else input_shape[1]
        if not self.keepdims:
            return (input_shape[0], features)
        return (input_shape[0], 1, features) if self._steps_axis == 1 else \
            (input_shape[0], features, 1)

    def _input(self, inputs):
        x = np.asarray(inputs, dtype=self.dtype)
        self._check_rank(x.shape)
        return x

    def _grad_with_steps_axis(self, grad_outputs):
        """`grad_outputs` with the steps axis (size 1) in place, to broadcast over the steps."""
        grad = np.asarray(grad_outputs, dtype=self.dtype)
        return grad if self.keepdims else np.expand_dims(grad, self._steps_axis)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format,
                "keepdims": self.keepdims}


class GlobalAveragePooling1D(_GlobalPooling1D):
    """The mean over the steps, masked steps left out (Keras 3's
    `keras.layers.GlobalAveragePooling1D`).

    Args:
        data_format: `"channels_last"` (`(B, T, D)` inputs, the default when None) or
            `"channels_first"` (`(B, D, T)`).
        keepdims: bool; when True the output keeps the steps axis with size 1.
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: `np.ndarray` `(B, T, D)` (or `(B, D, T)`).
        mask: None or `(B, T)` bool, True for the steps to average; a sample with no True step
            gives NaN, as in Keras.

    Returns:
        `np.ndarray` `(B, D)` of the layer's dtype (`(B, 1, D)` or `(B, D, 1)` with
        `keepdims`).

    Raises:
        ValueError: an unknown `data_format`, or an input that is not 3-D.

    Example:

    >>> import numpy as np
    >>> x = np.array([[[1.0], [3.0], [8.0]]])
    >>> GlobalAveragePooling1D()(x, mask=np.array([[True, True, False]])).tolist()
    [[2.0]]
    """

    supports_masking = True

    def call(self, inputs, training=False, mask=None):
        x = self._input(inputs)
        axis = self._steps_axis
        if mask is None:
            weights = np.full((1, 1, 1), 1.0 / x.shape[axis], dtype=self.dtype)
            y = x.mean(axis=axis, keepdims=self.keepdims)
        else:
            keep = np.expand_dims(np.asarray(mask, dtype=bool), 3 - axis)
            count = keep.sum(axis=axis, keepdims=True).astype(self.dtype)
            with np.errstate(divide="ignore", invalid="ignore"):
                # Keras: sum(where(mask, x, 0)) / sum(mask); 0 / 0 for an all-masked sample
                y = np.where(keep, x, np.zeros((), x.dtype)).sum(axis=axis, keepdims=True) / count
                weights = np.where(keep, 1.0 / count, np.zeros((), self.dtype))
            if not self.keepdims:
                y = np.squeeze(y, axis)
        self._cache = (x.shape, weights) if training else None
        return y

    def backward(self, grad_outputs):
        """Returns `d loss / d inputs`: each step's share of the mean's gradient (0 for masked
        steps)."""
        if self._cache is None:
            raise RuntimeError(f"GlobalAveragePooling1D layer '{self.name}': backward() needs a "
                               f"call(training=True) first.")
        shape, weights = self._cache
        return np.broadcast_to(self._grad_with_steps_axis(grad_outputs) * weights, shape).copy()

    def compute_mask(self, inputs, mask=None):
        """None: the steps are pooled away (Keras's `compute_mask`)."""
        return None


class GlobalMaxPooling1D(_GlobalPooling1D):
    """The maximum over the steps (Keras 3's `keras.layers.GlobalMaxPooling1D`).

    As in Keras 3 it does not support masking: masked steps take part in the maximum and the
    mask is not passed on.

    Args:
        data_format: `"channels_last"` (`(B, T, D)` inputs, the default when None) or
            `"channels_first"` (`(B, D, T)`).
        keepdims: bool; when True the output keeps the steps axis with size 1.
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: `np.ndarray` `(B, T, D)` (or `(B, D, T)`).

    Returns:
        `np.ndarray` `(B, D)` of the layer's dtype (`(B, 1, D)` or `(B, D, 1)` with
        `keepdims`).

    Raises:
        ValueError: an unknown `data_format`, or an input that is not 3-D.

    Example:

    >>> import numpy as np
    >>> GlobalMaxPooling1D()(np.array([[[1.0, 5.0], [3.0, 2.0]]])).tolist()
    [[3.0, 5.0]]
    """

    def call(self, inputs, training=False):
        x = self._input(inputs)
        y = x.max(axis=self._steps_axis, keepdims=True)
        if training:
            # tf.reduce_max's gradient: equal shares among the steps that tie for the max
            winners = (x == y).astype(self.dtype)
            self._cache = winners / winners.sum(axis=self._steps_axis, keepdims=True)
        else:
            self._cache = None
        return y if self.keepdims else np.squeeze(y, self._steps_axis)

    def backward(self, grad_outputs):
        """Returns `d loss / d inputs`: the gradient goes to the maximal steps, split equally
        among ties."""
        if self._cache is None:
            raise RuntimeError(f"GlobalMaxPooling1D layer '{self.name}': backward() needs a "
                               f"call(training=True) first.")
        return self._grad_with_steps_axis(grad_outputs) * self._cache
