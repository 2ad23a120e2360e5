"""Marks timesteps to skip (Keras 3's `keras.layers.Masking`)."""

import numpy as np

from pylstm.layers.layer import Layer


class Masking(Layer):
    """Masks every timestep whose features all equal `mask_value`.

    The output mask is `any(inputs != mask_value, axis=-1)`, `(B, T)` bool, passed to the
    layers after it (an LSTM then carries its state over masked steps); the output is the input
    with masked timesteps set to zero, as in Keras 3.

    Args:
        mask_value: float, the padding value (default 0.0).
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: `(B, T, D)` float array.

    Returns:
        `(B, T, D)` array of the layer's dtype.

    Raises:
        TypeError: `inputs` is not numeric.
        ValueError: `inputs` has fewer than 2 dimensions.

    Example:
    >>> import numpy as np
    >>> x = np.array([[[1.0], [0.0], [2.0]]])
    >>> Masking(0.0).compute_mask(x).tolist()
    [[True, False, True]]
    """

    supports_masking = True

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.mask_value = float(mask_value)
        self._keep = None

    def _mask_of(self, x):
        return np.any(x != self.mask_value, axis=-1)

    def call(self, inputs, training=False):
        x = np.asarray(inputs)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"Argument `inputs` of layer '{self.name}' must be numeric, "
                            f"received dtype {x.dtype}.")
        if x.ndim < 2:
            raise ValueError(f"Argument `inputs` of layer '{self.name}' must be at least 2-D "
                             f"(batch, timesteps, ...), received shape {x.shape}.")
        x = x.astype(self.dtype, copy=False)
        keep = self._mask_of(x)[..., None].astype(self.dtype)
        self._keep = keep if training else None
        return x * keep

    def compute_mask(self, inputs, mask=None):
        return self._mask_of(np.asarray(inputs))

    def backward(self, grad_outputs):
        if self._keep is None:
            raise RuntimeError(f"Layer '{self.name}': call it with training=True before "
                               f"backward().")
        return grad_outputs * self._keep

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value}
