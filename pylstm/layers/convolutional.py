"""1-D convolution over time (Keras 3's `keras.layers.Conv1D`).

Design:
    im2col: the padded input `(B, T + pads, C)` is viewed as its windows with
    `np.lib.stride_tricks.sliding_window_view` (no copy), strided and dilated by slicing, and
    copied once into columns `(B * T_out, K * C)`; the convolution is then one GEMM with the
    kernel flattened to `(K * C, F)` (Keras's kernel layout `(K, C, F)` flattens to the same
    tap-major order). Backward is the same GEMM transposed: `grad_columns = grad_z @ kernel.T`
    is added back onto the padded input one kernel tap at a time (K slices, never a loop over
    time), and `kernel.grad += columns.T @ grad_z`.

Legend: B batch, T input steps, C input channels, K kernel size, F filters, T_out output steps.
"""

import numpy as np

from pylstm import activations, constraints, initializers, regularizers
from pylstm.layers import _windows
from pylstm.layers.layer import Layer


class Conv1D(Layer):
    """`outputs = activation(conv1d(inputs, kernel) + bias)`, a cross-correlation over time.

    As Keras's `Conv1D`, channels last: `outputs[b, t, f] = sum_{k, c} inputs[b, t * strides +
    k * dilation_rate - left_pad, c] * kernel[k, c, f] + bias[f]`, where "valid" pads nothing,
    "causal" pads `dilation_rate * (kernel_size - 1)` steps on the left (the output at step t
    sees no input after t), and "same" pads so that `T_out = ceil(T / strides)`, the odd step
    on the right (TensorFlow's rule).

    Args:
        filters: int > 0, F, the number of output channels.
        kernel_size: int (or a tuple of one int), K.
        strides: int (or a tuple of one int), the step between windows.
        padding: `"valid"`, `"same"` or `"causal"` (any case).
        data_format: None or `"channels_last"` (the only layout pylstm computes).
        dilation_rate: int (or a tuple of one int), the step between a window's taps.
        groups: 1 (grouped convolutions are not supported).
        activation: an activation name, None (linear), or see `pylstm.activations.get`.
        use_bias: bool.
        kernel_initializer: initializer for the `(K, C, F)` kernel.
        bias_initializer: initializer for the `(F,)` bias.
        kernel_regularizer, bias_regularizer: `pylstm.regularizers` name/config/object or None.
        kernel_constraint, bias_constraint: `pylstm.constraints` name/config/object or None.
        **kwargs: base `Layer` arguments (`name`, `trainable`, `dtype`, `input_shape`,
            `activity_regularizer`).

    Call arguments:
        inputs: `(B, T, C)` float array, cast to the layer's dtype.
        training: bool; when True the columns are kept for `backward`.

    Returns:
        `(B, T_out, F)` array of the layer's dtype, `T_out = (T - dilation_rate * (K - 1) - 1)
        // strides + 1` for "valid" and `(T - 1) // strides + 1` otherwise. Like Keras's, the
        layer drops an input mask.

    Raises:
        ValueError: for a bad argument (naming it), `strides > 1` with `dilation_rate > 1`
            (as Keras), `groups != 1`, a `data_format` other than channels last, an input that
            is not `(B, T, C)` with the C the layer was built with, or "valid" windows longer
            than the input.

    Example:

    >>> import numpy as np
    >>> layer = Conv1D(1, 2, kernel_initializer="ones", padding="causal")
    >>> layer(np.arange(4, dtype="float32").reshape(1, 4, 1))[0, :, 0].tolist()
    [0.0, 1.0, 3.0, 5.0]
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format=None,
                 dilation_rate=1, groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        owner = f"Conv1D '{self.name}'"
        self.filters = _windows.single_int(filters, "filters", owner)
        self.kernel_size = (_windows.single_int(kernel_size, "kernel_size", owner),)
        self.strides = (_windows.single_int(strides, "strides", owner),)
        self.dilation_rate = (_windows.single_int(dilation_rate, "dilation_rate", owner),)
        if self.strides[0] > 1 and self.dilation_rate[0] > 1:
            raise ValueError(f"{owner}: `strides > 1` is not supported together with "
                             f"`dilation_rate > 1` (as in Keras), received strides={strides!r} "
                             f"and dilation_rate={dilation_rate!r}.")
        self.padding = _windows.padding_mode(padding, ("valid", "same", "causal"), owner)
        self.data_format = _windows.channels_last(data_format, owner)
        if groups != 1:
            raise ValueError(f"Argument `groups` of {owner} must be 1 (pylstm has no grouped "
                             f"convolutions), received {groups!r}.")
        self.groups = 1
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.kernel = None
        self.bias = None
        self._cache = None

    @property
    def _span(self):
        return self.dilation_rate[0] * (self.kernel_size[0] - 1) + 1

    def _check_shape(self, shape):
        if len(shape) != 3 or shape[-1] is None:
            raise ValueError(f"Conv1D '{self.name}' needs inputs of shape (batch, steps, "
                             f"channels) with known channels, received shape {tuple(shape)}.")

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self._check_shape(input_shape)
        self.compute_output_shape(input_shape)
        self.kernel = self.add_weight("kernel", self.kernel_size + (input_shape[-1], self.filters),
                                      self.kernel_initializer, self.kernel_regularizer,
                                      self.kernel_constraint)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.filters,), self.bias_initializer,
                                        self.bias_regularizer, self.bias_constraint)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        self._check_shape(tuple(input_shape))
        steps = _windows.output_length(input_shape[1], self._span, self.strides[0],
                                       self.padding, f"Conv1D '{self.name}'")
        return (input_shape[0], steps, self.filters)

    def call(self, inputs, training=False):
        x = np.asarray(inputs, dtype=self.dtype)
        channels = self.kernel.shape[1]
        if x.ndim != 3 or x.shape[-1] != channels:
            raise ValueError(f"Conv1D '{self.name}': `inputs` must have shape (batch, steps, "
                             f"{channels}), received shape {x.shape}.")
        steps = self.compute_output_shape(x.shape)[1]
        stride, dilation = self.strides[0], self.dilation_rate[0]
        left, right = _windows.pad_amounts(x.shape[1], self._span, stride, self.padding)
        padded = np.pad(x, ((0, 0), (left, right), (0, 0))) if left or right else x
        # (B, T_out, C, K) view -> (B, T_out, K, C) -> one copy as (B * T_out, K * C)
        windows = np.lib.stride_tricks.sliding_window_view(padded, self._span, axis=1)
        windows = windows[:, ::stride][:, :steps, :, ::dilation]
        columns = windows.transpose(0, 1, 3, 2).reshape(-1, self.kernel_size[0] * channels)
        z = columns @ self.kernel.value.reshape(-1, self.filters)
        if self.use_bias:
            z += self.bias.value
        z = z.reshape(x.shape[0], steps, self.filters)
        y = self.activation(z)
        self._cache = (columns, z, y, padded.shape, left, x.shape[1]) if training else None
        return y

    def backward(self, grad_outputs):
        """Returns `grad_inputs` `(B, T, C)`; adds into the kernel's and bias's `grad`."""
        if self._cache is None:
            raise RuntimeError(f"Conv1D '{self.name}': backward() needs a call(training=True) "
                               f"first.")
        columns, z, y, padded_shape, left, length = self._cache
        grad_z = self.activation.backward(z, y, np.asarray(grad_outputs, dtype=self.dtype))
        grad_z2 = grad_z.reshape(-1, self.filters)
        size, channels = self.kernel_size[0], padded_shape[-1]
        self.kernel.grad += (columns.T @ grad_z2).reshape(self.kernel.shape)
        if self.use_bias:
            self.bias.grad += grad_z2.sum(axis=0)
        grad_columns = (grad_z2 @ self.kernel.value.reshape(-1, self.filters).T).reshape(
            grad_z.shape[:2] + (size, channels))
        grad_padded = np.zeros(padded_shape, dtype=self.dtype)
        stride, dilation, steps = self.strides[0], self.dilation_rate[0], grad_z.shape[1]
        for k in range(size):
            start = k * dilation
            grad_padded[:, start:start + (steps - 1) * stride + 1:stride] += grad_columns[:, :, k]
        return grad_padded[:, left:left + length]

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "groups": self.groups,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        }
