"""Integer-index lookups into a trainable table (Keras 3's `keras.layers.Embedding`)."""

import numpy as np

from pylstm import constraints, initializers, regularizers
from pylstm.layers.layer import Layer


class Embedding(Layer):
    """Maps each integer index in `inputs` to a row of `embeddings (input_dim, output_dim)`.

    Args:
        input_dim: int > 0, the vocabulary size: indices run over `[0, input_dim)`.
        output_dim: int > 0, the size of each vector.
        embeddings_initializer: for the table, default `"uniform"` (Keras's
            `RandomUniform(-0.05, 0.05)`).
        embeddings_regularizer: a name, config, `pylstm.regularizers` object or None.
        embeddings_constraint: a name, config, `pylstm.constraints` object, callable or None.
        mask_zero: bool; if True, index 0 is padding and the layer emits the mask
            `inputs != 0` for the layers after it (as Keras), so index 0 must not be a word.
        **kwargs: base `Layer` arguments (`name`, `trainable`, `dtype`, `input_shape`, ...).

    Call arguments:
        inputs: `(B, T)` (or any shape) integer array; floats holding whole numbers are
            accepted (a `Sequential` model casts its input to its float dtype).

    Returns:
        `(B, T, output_dim)` array of the layer's dtype.

    Raises:
        TypeError: `inputs` is not numeric.
        ValueError: an index is not a whole number or lies outside `[0, input_dim)`; an
            invalid constructor argument.

    Example:
    >>> import numpy as np
    >>> emb = Embedding(10, 3, mask_zero=True)
    >>> x = np.array([[4, 2, 0]])
    >>> emb(x).shape, emb.compute_mask(x).tolist()
    ((1, 3, 3), [[True, True, False]])
    """

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform",
                 embeddings_regularizer=None, embeddings_constraint=None, mask_zero=False,
                 **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"Argument `{arg}` must be a positive int, received {value!r}.")
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = constraints.get(embeddings_constraint)
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero
        self._indices = None

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            "embeddings", (self.input_dim, self.output_dim), self.embeddings_initializer,
            regularizer=self.embeddings_regularizer, constraint=self.embeddings_constraint)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def _indices_of(self, inputs):
        x = np.asarray(inputs)
        if x.dtype.kind not in "biuf":
            raise TypeError(f"Argument `inputs` of layer '{self.name}' must be an integer array, "
                            f"received dtype {x.dtype}.")
        if x.dtype.kind == "f":
            if not np.all(np.isfinite(x)) or np.any(x != np.round(x)):
                raise ValueError(f"Argument `inputs` of layer '{self.name}' must hold whole "
                                 f"numbers (indices), received non-integral values.")
        idx = x.astype(np.intp)
        if idx.size and (idx.min() < 0 or idx.max() >= self.input_dim):
            raise ValueError(f"Argument `inputs` of layer '{self.name}' must hold indices in "
                             f"[0, {self.input_dim}), received values from {idx.min()} to "
                             f"{idx.max()}.")
        return idx

    def call(self, inputs, training=False):
        idx = self._indices_of(inputs)
        self._indices = idx if training else None
        return self.embeddings.value[idx]

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return np.asarray(inputs) != 0

    def backward(self, grad_outputs):
        """Adds the gradient into `embeddings.grad` (rows summed per index) and records its
        rows per occurrence in `embeddings.grad_slices` (TensorFlow's `IndexedSlices`, on
        which Keras's optimizers act); returns None, as integer inputs have no gradient."""
        if self._indices is None:
            raise RuntimeError(f"Layer '{self.name}': call it with training=True before "
                               f"backward().")
        grad = np.asarray(grad_outputs, dtype=self.dtype).reshape(-1, self.output_dim)
        self.embeddings.add_grad_slices(self._indices.reshape(-1), grad)
        return None

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim,
                "output_dim": self.output_dim,
                "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
                "embeddings_regularizer": regularizers.serialize(self.embeddings_regularizer),
                "embeddings_constraint": constraints.serialize(self.embeddings_constraint),
                "mask_zero": self.mask_zero}
