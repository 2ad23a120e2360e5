"""Densely-connected layer (Keras 3's `keras.layers.Dense`)."""

import numpy as np

from pylstm import activations, constraints, initializers, regularizers
from pylstm.layers.layer import Layer


class Dense(Layer):
    """`outputs = activation(inputs @ kernel + bias)` on the last axis of its input.

    As in Keras, an N-D input `(B, ..., D)` gives `(B, ..., units)`: the kernel is applied to
    every position of the leading axes (e.g. every timestep of a `(B, T, D)` sequence).

    Args:
        units: int > 0, the output size.
        activation: an activation name, None (linear), or see `pylstm.activations.get`.
        use_bias: bool.
        kernel_initializer: initializer for the `(D, units)` kernel.
        bias_initializer: initializer for the `(units,)` bias.
        kernel_regularizer, bias_regularizer: `pylstm.regularizers` name/config/object or None;
            the penalty joins the training loss.
        kernel_constraint, bias_constraint: `pylstm.constraints` name/config/object, a
            callable `w -> w`, or None; applied after each optimizer step.
        **kwargs: base `Layer` arguments (`name`, `trainable`, `dtype`, `input_shape`,
            `activity_regularizer`).

    Call arguments:
        inputs: `np.ndarray` of shape `(B, ..., D)`, cast to the layer's dtype.
        training: bool; when True the inputs are cached for `backward`.

    Returns:
        `np.ndarray` of shape `(B, ..., units)` and the layer's dtype.

    Raises:
        ValueError: for `units <= 0`, an input of rank < 2, or a last dimension that differs
            from the one the layer was built with.

    Example:

    >>> import numpy as np
    >>> layer = Dense(3, kernel_initializer="ones", activation="relu")
    >>> layer(np.ones((2, 4), dtype="float32")).tolist()
    [[4.0, 4.0, 4.0], [4.0, 4.0, 4.0]]
    """

    supports_masking = True

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Argument `units` must be a positive int, received {units!r}.")
        self.units = int(units)
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

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                f"Dense '{self.name}' needs an input shape (batch, ..., features) with a known "
                f"last dimension, received {input_shape}."
            )
        self.kernel = self.add_weight("kernel", (input_shape[-1], self.units),
                                      self.kernel_initializer, self.kernel_regularizer,
                                      self.kernel_constraint)
        if self.use_bias:
            self.bias = self.add_weight("bias", (self.units,), self.bias_initializer,
                                        self.bias_regularizer, self.bias_constraint)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def call(self, inputs, training=False):
        x = np.asarray(inputs, dtype=self.dtype)
        in_features = self.kernel.shape[0]
        if x.ndim < 2 or x.shape[-1] != in_features:
            raise ValueError(
                f"Dense '{self.name}': `inputs` must have shape (batch, ..., {in_features}), "
                f"received shape {x.shape}."
            )
        # One 2-D product: NumPy would run an N-D @ 2-D product as one small GEMM per row.
        z = (x.reshape(-1, in_features) @ self.kernel.value).reshape(x.shape[:-1] + (self.units,))
        if self.use_bias:
            z += self.bias.value
        y = self.activation(z)
        self._cache = (x, z, y) if training else None
        return y

    def backward(self, grad_outputs):
        """Returns `grad_inputs` `(B, ..., D)`; adds into the kernel's and bias's `grad`."""
        if self._cache is None:
            raise RuntimeError(f"Dense '{self.name}': backward() needs a call(training=True) first.")
        x, z, y = self._cache
        grad_z = self.activation.backward(z, y, np.asarray(grad_outputs, dtype=self.dtype))
        grad_z2 = grad_z.reshape(-1, self.units)
        self.kernel.grad += x.reshape(-1, x.shape[-1]).T @ grad_z2
        if self.use_bias:
            self.bias.grad += grad_z2.sum(axis=0)
        return (grad_z2 @ self.kernel.value.T).reshape(x.shape)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        }
