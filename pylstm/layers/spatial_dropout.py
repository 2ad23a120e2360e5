"""Dropout of whole channels (Keras 3's `keras.layers.SpatialDropout1D`)."""

import numpy as np

from pylstm import utils
from pylstm.layers.core import Dropout


class SpatialDropout1D(Dropout):
    """Drops entire channels of a sequence, the same ones at every time step.

    As Keras's `SpatialDropout1D` (Tompson et al. 2014): while training, each `(sample,
    channel)` pair is zeroed for all `T` steps with probability `rate` and the survivors are
    scaled by `1 / (1 - rate)` (the noise shape `(B, 1, C)`); at inference the layer is the
    identity. Where neighbouring steps are strongly correlated, as after a `Conv1D`, this
    regularizes where elementwise `Dropout` would not. The mask is passed on.

    Args:
        rate: float in `[0, 1)`, the fraction of channels dropped.
        seed: int or None; as `Dropout`, a seeded layer draws a different (reproducible) mask
            on each call, an unseeded one draws from `pylstm.utils`'s module generator.
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: `(B, T, C)` float array.
        training: bool; dropout applies only when True.

    Returns:
        `(B, T, C)` array of the layer's dtype.

    Raises:
        ValueError: `rate` outside `[0, 1)`; inputs that are not `(B, T, C)`.

    Example:

    >>> import numpy as np
    >>> y = SpatialDropout1D(0.5, seed=0)(np.ones((2, 3, 4)), training=True)
    >>> bool(np.all(y == y[:, :1]))  # the same channels dropped at every step
    True
    """

    def _check_shape(self, shape):
        if len(shape) != 3:
            raise ValueError(f"SpatialDropout1D '{self.name}' needs inputs of shape (batch, "
                             f"steps, channels), received shape {tuple(shape)}.")

    def compute_output_shape(self, input_shape):
        self._check_shape(tuple(input_shape))
        return tuple(input_shape)

    def call(self, inputs, training=False):
        x = np.asarray(inputs, dtype=self.dtype)
        self._check_shape(x.shape)
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        rng = self._rng if self._rng is not None else utils.default_generator()
        keep = rng.random((x.shape[0], 1, x.shape[2])) >= self.rate
        self._mask = keep.astype(self.dtype) / (1.0 - self.rate)
        return x * self._mask

    def get_config(self):
        # Keras's SpatialDropout1D takes no `trainable` argument: a file carrying one would
        # not load there.
        config = super().get_config()
        del config["trainable"]
        return config
