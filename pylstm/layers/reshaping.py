"""Reshaping layers (Keras 3's `keras.layers.RepeatVector`, `Reshape` and `Permute`).

Design:
    Parameter-free layers that move entries without computing on them; `backward` moves the
    gradient back (a sum over the copies for `RepeatVector`). As in Keras 3, none of them
    supports masking: a mask reaching them is dropped (their `compute_mask` returns None).
"""

import math

import numpy as np

from pylstm.layers.layer import Layer


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class RepeatVector(Layer):
    """Repeats a `(B, D)` input `n` times along a new time axis (Keras 3's
    `keras.layers.RepeatVector`), e.g. to feed an encoder's summary to every decoder step.

    Args:
        n: int > 0, the number of repetitions.
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: `np.ndarray` `(B, D)`.

    Returns:
        `np.ndarray` `(B, n, D)` of the layer's dtype.

    Raises:
        TypeError: `n` is not an int.
        ValueError: `n <= 0`, or an input that is not 2-D.

    Example:

    >>> import numpy as np
    >>> RepeatVector(3)(np.array([[1.0, 2.0]])).tolist()
    [[[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]]
    """

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        if not _is_int(n):
            raise TypeError(f"Argument `n` must be an int, received {type(n).__name__} {n!r}.")
        if n <= 0:
            raise ValueError(f"Argument `n` must be a positive int, received n={n}.")
        self.n = int(n)

    def _check_rank(self, shape):
        if len(shape) != 2:
            raise ValueError(f"RepeatVector layer '{self.name}' needs 2-D inputs (batch, "
                             f"features), received shape {tuple(shape)}.")

    def build(self, input_shape):
        self._check_rank(input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        return (input_shape[0], self.n, input_shape[1])

    def call(self, inputs, training=False):
        x = np.asarray(inputs, dtype=self.dtype)
        self._check_rank(x.shape)
        return np.repeat(x[:, None, :], self.n, axis=1)

    def backward(self, grad_outputs):
        """Returns `d loss / d inputs` `(B, D)`: the gradient summed over the `n` copies."""
        return np.asarray(grad_outputs, dtype=self.dtype).sum(axis=1)

    def get_config(self):
        return {**super().get_config(), "n": self.n}


class Reshape(Layer):
    """Reshapes each sample to `target_shape` (Keras 3's `keras.layers.Reshape`).

    Args:
        target_shape: tuple of ints, the shape of a sample (without the batch axis); one entry
            may be -1, inferred from the sample's size.
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: `np.ndarray` `(B, ...)` whose samples hold `prod(target_shape)` entries.

    Returns:
        `np.ndarray` `(B, *target_shape)` of the layer's dtype, the -1 resolved.

    Raises:
        TypeError: `target_shape` is not a sequence of ints.
        ValueError: an entry below -1, more than one -1, or inputs whose sample size does not
            fit `target_shape`.

    Example:

    >>> import numpy as np
    >>> Reshape((-1, 2))(np.zeros((5, 3, 4))).shape
    (5, 6, 2)
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            target_shape = tuple(target_shape)
        except TypeError:
            raise TypeError(f"Argument `target_shape` must be a tuple of ints, received "
                            f"{type(target_shape).__name__} {target_shape!r}.") from None
        if not all(_is_int(d) for d in target_shape):
            raise TypeError(f"Argument `target_shape` must be a tuple of ints, received "
                            f"target_shape={target_shape!r}.")
        if any(d < -1 for d in target_shape) or list(target_shape).count(-1) > 1:
            raise ValueError(f"Argument `target_shape` must hold non-negative ints and at most "
                             f"one -1, received target_shape={target_shape!r}.")
        self.target_shape = tuple(int(d) for d in target_shape)
        self._input_shape_cache = None

    def _sample_shape(self, sample_shape):
        """`target_shape` with its -1 resolved for samples of `sample_shape` (None where a
        dimension is unknown), as Keras's `compute_reshape_output_shape`."""
        if None in sample_shape:
            return tuple(None if d == -1 else d for d in self.target_shape)
        size = math.prod(sample_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 not in self.target_shape:
            if size == known:
                return self.target_shape
        elif known != 0 and size % known == 0:
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        raise ValueError(f"Reshape layer '{self.name}' cannot reshape samples of shape "
                         f"{tuple(sample_shape)} ({size} entries) to "
                         f"target_shape={self.target_shape}.")

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + self._sample_shape(tuple(input_shape[1:]))

    def call(self, inputs, training=False):
        x = np.asarray(inputs, dtype=self.dtype)
        if x.ndim < 1:
            raise ValueError(f"Reshape layer '{self.name}' needs inputs with a batch axis, "
                             f"received shape {x.shape}.")
        self._input_shape_cache = x.shape if training else None
        return x.reshape(x.shape[:1] + self._sample_shape(x.shape[1:]))

    def backward(self, grad_outputs):
        """Returns `d loss / d inputs`: `grad_outputs` reshaped to the input's shape."""
        if self._input_shape_cache is None:
            raise RuntimeError(f"Reshape layer '{self.name}': backward() needs a "
                               f"call(training=True) first.")
        return np.reshape(np.asarray(grad_outputs, dtype=self.dtype), self._input_shape_cache)

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}


class Permute(Layer):
    """Permutes the axes of each sample (Keras 3's `keras.layers.Permute`).

    Args:
        dims: tuple of ints, a permutation of `1..rank-1` (the batch axis 0 stays first):
            output axis `i` is input axis `dims[i - 1]`. E.g. `(2, 1)` swaps time and features.
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: `np.ndarray` of rank `len(dims) + 1`.

    Returns:
        `np.ndarray` of the layer's dtype, `np.transpose(inputs, (0, *dims))`.

    Raises:
        TypeError: `dims` is not a sequence of ints.
        ValueError: `dims` is not a permutation of `1..len(dims)`, or inputs of another rank.

    Example:

    >>> import numpy as np
    >>> Permute((2, 1))(np.zeros((5, 3, 4))).shape
    (5, 4, 3)
    """

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        try:
            dims = tuple(dims)
        except TypeError:
            raise TypeError(f"Argument `dims` must be a tuple of ints, received "
                            f"{type(dims).__name__} {dims!r}.") from None
        if not all(_is_int(d) for d in dims):
            raise TypeError(f"Argument `dims` must be a tuple of ints, received dims={dims!r}.")
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(f"Argument `dims` must be a permutation of 1..{len(dims)} (the "
                             f"batch axis is not included), received dims={dims!r}.")
        self.dims = tuple(int(d) for d in dims)

    def _check_rank(self, shape):
        if len(shape) != len(self.dims) + 1:
            raise ValueError(f"Permute layer '{self.name}' with dims={self.dims} needs inputs of "
                             f"rank {len(self.dims) + 1}, received shape {tuple(shape)}.")

    def build(self, input_shape):
        self._check_rank(input_shape)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        self._check_rank(input_shape)
        return (input_shape[0],) + tuple(input_shape[d] for d in self.dims)

    def call(self, inputs, training=False):
        x = np.asarray(inputs, dtype=self.dtype)
        self._check_rank(x.shape)
        return np.transpose(x, (0,) + self.dims)

    def backward(self, grad_outputs):
        """Returns `d loss / d inputs`: `grad_outputs` with the inverse permutation."""
        return np.transpose(np.asarray(grad_outputs, dtype=self.dtype),
                            np.argsort((0,) + self.dims))

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}
