"""Keras 3's `TimeDistributed` wrapper: one layer applied to every timestep."""

import numpy as np

from pylstm.layers._registry import serialize, with_inner_layers
from pylstm.layers.layer import Layer


class TimeDistributed(Layer):
    """Applies `layer` to every timestep of a `(B, T, ...)` input, with the same weights at
    every step, as Keras 3's `keras.layers.TimeDistributed`.

    The timesteps are folded into the batch: `layer` sees one `(B * T, ...)` array, so one
    call (and one GEMM for `Dense`) covers the whole sequence. This equals Keras's step-by-step
    application for any layer that treats the samples of a batch independently (`Dense`,
    `Dropout`, `Activation`, `Embedding`, ...). Gradients flow back through the same folding.
    The wrapped layer runs through its `__call__`, so its own `activity_regularizer` applies
    (Keras calls the wrapped layer's `call` directly and skips it).

    Args:
        layer: the `Layer` to apply at each timestep.
        **kwargs: `name`, `trainable`, `dtype` (default: `layer`'s), `input_shape`,
            `activity_regularizer`.

    Call arguments:
        inputs: `(B, T, ...)` array; each `(B, ...)` timestep slice is what `layer` accepts.
        training: bool, passed to `layer`.
        mask: None or a `(B, T)` boolean array; it is not given to `layer` (which sees no
            time axis) and passes through unchanged to the next layer, as in Keras.

    Returns:
        `(B, T, ...)`: `layer`'s output for each timestep, stacked along axis 1.

    Raises:
        TypeError: `layer` is not a `Layer`.
        ValueError: an input of fewer than 3 dimensions; a mask that is not `(B, T)`; a
            `layer` that returns several outputs.

    Example:
    >>> import numpy as np
    >>> from pylstm.layers import Dense
    >>> td = TimeDistributed(Dense(2, kernel_initializer="ones"))
    >>> td(np.ones((4, 3, 5), dtype="float32"))[0].tolist()
    [[5.0, 5.0], [5.0, 5.0], [5.0, 5.0]]
    """

    supports_masking = True

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise TypeError(f"Argument `layer` must be a pylstm Layer, received "
                            f"{type(layer).__name__}: {layer!r:.100}.")
        kwargs.setdefault("dtype", layer.dtype)
        super().__init__(**kwargs)
        self.layer = layer
        self._sublayers = [layer]
        self._batch_time = None

    def _step_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 3:
            raise ValueError(f"Argument `inputs` of layer '{self.name}' must have at least 3 "
                             f"dimensions (batch, timesteps, ...), received shape "
                             f"{input_shape}.")
        return (input_shape[0],) + input_shape[2:]

    def build(self, input_shape):
        step_shape = self._step_shape(input_shape)
        if not self.layer.built:
            self.layer.build(step_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        out = tuple(self.layer.compute_output_shape(self._step_shape(input_shape)))
        return (out[0], input_shape[1]) + out[1:]

    def call(self, inputs, training=False, mask=None):
        x = np.asarray(inputs)
        self._step_shape(x.shape)
        B, T = x.shape[:2]
        if mask is not None and np.shape(mask)[:2] != (B, T):
            raise ValueError(f"Argument `mask` of layer '{self.name}' must have shape ({B}, "
                             f"{T}) like the inputs' first two axes, received shape "
                             f"{np.shape(mask)}.")
        y = self.layer(x.reshape((B * T,) + x.shape[2:]), training=training)
        if isinstance(y, (list, tuple)):
            raise ValueError(f"TimeDistributed '{self.name}' wraps a layer with one output; "
                             f"'{self.layer.name}' returned {len(y)}.")
        self._batch_time = (B, T) if training else None
        return y.reshape((B, T) + y.shape[1:])

    def backward(self, grad_outputs):
        """Returns the gradient with respect to `inputs` (`(B, T, ...)`, or None where the
        wrapped layer has no input gradient, as `Embedding`); the wrapped layer adds its weight
        gradients, summed over timesteps.

        Raises:
            RuntimeError: the layer was not called with `training=True` first.
            ValueError: `grad_outputs` does not start with the `(B, T)` axes of the call.
        """
        if self._batch_time is None:
            raise RuntimeError(f"Layer '{self.name}': call it with training=True before "
                               f"backward().")
        B, T = self._batch_time
        g = np.asarray(grad_outputs, dtype=self.dtype)
        if g.shape[:2] != (B, T):
            raise ValueError(f"Argument `grad_outputs` must start with the axes ({B}, {T}) of "
                             f"the call's output, received shape {g.shape}.")
        grad_inputs = self.layer.backward_with_penalties(g.reshape((B * T,) + g.shape[2:]))
        if grad_inputs is None:
            return None
        return grad_inputs.reshape((B, T) + grad_inputs.shape[1:])

    def get_config(self):
        return {**super().get_config(), "layer": serialize(self.layer)}

    @classmethod
    def from_config(cls, config):
        return cls(**with_inner_layers(config, ("layer",)))
