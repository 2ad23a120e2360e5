"""Pooling over windows of time steps (Keras 3's `keras.layers.MaxPooling1D` and
`keras.layers.AveragePooling1D`).

Design:
    The padded input `(B, T + pads, C)` is viewed as its windows `(B, T_out, C, P)` with
    `np.lib.stride_tricks.sliding_window_view` (no copy) and reduced over the last axis.
    Backward adds the output gradient back onto the padded input one window tap at a time (P
    slices, never a loop over time): for max pooling onto the tap that held the maximum, for
    average pooling spread over the window's real (unpadded) entries.

Legend: B batch, T input steps, C channels, P pool size, T_out output steps.
"""

import numpy as np

from pylstm.layers import _windows
from pylstm.layers.layer import Layer


class _Pooling1D(Layer):
    """The 1-D pooling protocol; subclasses give `_fill` (the padding value) and `_reduce`."""

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        owner = f"{type(self).__name__} '{self.name}'"
        self.pool_size = (_windows.single_int(pool_size, "pool_size", owner),)
        self.strides = (self.pool_size if strides is None
                        else (_windows.single_int(strides, "strides", owner),))
        self.padding = _windows.padding_mode(padding, ("valid", "same"), owner)
        self.data_format = _windows.channels_last(data_format, owner)
        self._cache = None

    def _check_shape(self, shape):
        if len(shape) != 3:
            raise ValueError(f"{type(self).__name__} '{self.name}' needs inputs of shape (batch, "
                             f"steps, channels), received shape {tuple(shape)}.")

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        self._check_shape(tuple(input_shape))
        steps = _windows.output_length(input_shape[1], self.pool_size[0], self.strides[0],
                                       self.padding, f"{type(self).__name__} '{self.name}'")
        return (input_shape[0], steps, input_shape[2])

    def call(self, inputs, training=False):
        x = np.asarray(inputs, dtype=self.dtype)
        self._check_shape(x.shape)
        steps = self.compute_output_shape(x.shape)[1]
        size, stride = self.pool_size[0], self.strides[0]
        left, right = _windows.pad_amounts(x.shape[1], size, stride, self.padding)
        padded = (np.pad(x, ((0, 0), (left, right), (0, 0)), constant_values=self._fill)
                  if left or right else x)
        windows = np.lib.stride_tricks.sliding_window_view(padded, size, axis=1)
        windows = windows[:, ::stride][:, :steps]
        y, route = self._reduce(windows, x.shape[1], left, right)
        self._cache = (route, padded.shape, left, x.shape[1]) if training else None
        return y

    def backward(self, grad_outputs):
        """Returns `grad_inputs` `(B, T, C)`."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__} '{self.name}': backward() needs a "
                               f"call(training=True) first.")
        route, padded_shape, left, length = self._cache
        grad = np.asarray(grad_outputs, dtype=self.dtype)
        grad_padded = np.zeros(padded_shape, dtype=self.dtype)
        stride, steps = self.strides[0], grad.shape[1]
        for k in range(self.pool_size[0]):
            grad_padded[:, k:k + (steps - 1) * stride + 1:stride] += self._tap_gradient(
                grad, route, k)
        return grad_padded[:, left:left + length]

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "padding": self.padding,
                "strides": self.strides, "data_format": self.data_format}


class MaxPooling1D(_Pooling1D):
    """The maximum of each window of `pool_size` steps, per channel (Keras's `MaxPooling1D`).

    "same" padding pads with -inf so that `T_out = ceil(T / strides)`, the odd step on the
    right (TensorFlow's rule): padding never wins a window.

    Args:
        pool_size: int (or a tuple of one int), P, the window length in steps.
        strides: int (or a tuple of one int), or None for `pool_size`.
        padding: `"valid"` or `"same"` (any case).
        data_format: None or `"channels_last"` (the only layout pylstm computes).
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: `(B, T, C)` float array.
        training: bool; when True the position of each maximum is kept for `backward`.

    Returns:
        `(B, T_out, C)` array of the layer's dtype, `T_out = (T - P) // strides + 1` for
        "valid" and `(T - 1) // strides + 1` for "same". Like Keras's, the layer drops an input
        mask. The gradient of a window goes to its maximum (the first one on ties).

    Raises:
        ValueError: for a bad argument (naming it), a `data_format` other than channels last,
            an input that is not `(B, T, C)`, or a "valid" window longer than the input.

    Example:

    >>> import numpy as np
    >>> MaxPooling1D(2)(np.array([[[1.0], [3.0], [2.0], [0.0], [5.0]]]))[0, :, 0].tolist()
    [3.0, 2.0]
    """

    _fill = -np.inf

    def _reduce(self, windows, length, left, right):
        index = windows.argmax(axis=-1)
        return np.take_along_axis(windows, index[..., None], axis=-1)[..., 0], index

    def _tap_gradient(self, grad, index, k):
        return grad * (index == k)


class AveragePooling1D(_Pooling1D):
    """The mean of each window of `pool_size` steps, per channel (Keras's `AveragePooling1D`).

    With "same" padding a window at an edge averages only its real entries (TensorFlow's
    `avg_pool`, which Keras 3 runs), not the zeros of the padding.

    Args:
        pool_size: int (or a tuple of one int), P, the window length in steps.
        strides: int (or a tuple of one int), or None for `pool_size`.
        padding: `"valid"` or `"same"` (any case).
        data_format: None or `"channels_last"` (the only layout pylstm computes).
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: `(B, T, C)` float array.
        training: bool; when True the window sizes are kept for `backward`.

    Returns:
        `(B, T_out, C)` array of the layer's dtype, `T_out` as for `MaxPooling1D`. Like
        Keras's, the layer drops an input mask.

    Raises:
        ValueError: as `MaxPooling1D`.

    Example:

    >>> import numpy as np
    >>> x = np.array([[[1.0], [3.0], [2.0]]])
    >>> AveragePooling1D(2, padding="same")(x)[0, :, 0].tolist()
    [2.0, 2.0]
    """

    _fill = 0.0

    def __init__(self, pool_size, strides=None, padding="valid", data_format=None, **kwargs):
        # Keras's AveragePooling1D, unlike its MaxPooling1D, has no default `pool_size`
        super().__init__(pool_size, strides, padding, data_format, **kwargs)

    def _reduce(self, windows, length, left, right):
        real = np.pad(np.ones(length, dtype=self.dtype), (left, right))
        counts = np.lib.stride_tricks.sliding_window_view(real, self.pool_size[0])
        counts = counts[::self.strides[0]][:windows.shape[1]].sum(axis=-1)[:, None]  # (T_out, 1)
        return windows.sum(axis=-1) / counts, counts

    def _tap_gradient(self, grad, counts, k):
        return grad / counts
