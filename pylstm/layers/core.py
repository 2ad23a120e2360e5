"""Parameter-free core layers: `InputLayer` / `Input`, `Dropout`, `Activation`, `Flatten`."""

import math

import numpy as np

from pylstm import activations, utils
from pylstm.layers.keras_tensor import KerasTensor, Node
from pylstm.layers.layer import Layer


class InputLayer(Layer):
    """Declares a model's input (Keras 3's `keras.layers.InputLayer`); the identity.

    It holds the input's symbolic tensor, `output` (a `KerasTensor` of shape `batch_shape`),
    from which a functional `pylstm.models.Model` is built; a `Sequential` model takes it as
    its first layer.

    Args:
        shape: tuple of ints (or None for a variable dimension), without the batch axis.
        batch_size: int or None; a fixed batch size (what a stateful LSTM needs).
        dtype: `"float32"` (default), `"float64"`, or `"int32"` / `"int64"` for token ids
            (the input is then kept as integers, for an `Embedding`).
        batch_shape: tuple with the batch axis, instead of `shape` and `batch_size`.
        name: str or None.

    Raises:
        ValueError: neither or both of `shape` and `batch_shape` given; a bad `batch_size`;
            another dtype.

    Example:

    >>> import numpy as np
    >>> from pylstm.layers import LSTM
    >>> from pylstm.models import Sequential
    >>> layer = InputLayer(shape=(5, 3), batch_size=4)
    >>> layer.batch_shape, layer.output.shape
    ((4, 5, 3), (4, 5, 3))
    >>> Sequential([layer, LSTM(2)]).predict(np.ones((4, 5, 3)), verbose=0).shape
    (4, 2)
    """

    def __init__(self, shape=None, batch_size=None, dtype="float32", batch_shape=None,
                 name=None, **kwargs):
        kwargs.pop("sparse", None)  # Keras config keys with no meaning here
        kwargs.pop("ragged", None)
        kwargs.pop("optional", None)
        input_dtype = _input_dtype(dtype)
        super().__init__(name=name, dtype="float32", **kwargs)
        self.dtype = input_dtype
        if (shape is None) == (batch_shape is None):
            raise ValueError("InputLayer needs exactly one of `shape` and `batch_shape`, "
                             f"received shape={shape!r}, batch_shape={batch_shape!r}.")
        if batch_shape is not None:
            batch_shape = tuple(batch_shape)
            if not batch_shape:
                raise ValueError("Argument `batch_shape` must include the batch axis, "
                                 "received ().")
            batch_size, shape = batch_shape[0], batch_shape[1:]
        if batch_size is not None and (isinstance(batch_size, bool) or
                                       not isinstance(batch_size, (int, np.integer)) or
                                       batch_size < 1):
            raise ValueError(f"Argument `batch_size` must be a positive int or None, "
                             f"received {batch_size!r}.")
        if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
            shape = (shape,)
        try:
            self.shape = tuple(shape)
        except TypeError:
            raise ValueError(f"Argument `shape` must be a tuple of ints and None, received "
                             f"{shape!r:.80}.") from None
        if not all(d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool)
                                 and d >= 0) for d in self.shape):
            raise ValueError(f"Argument `shape` must be a tuple of ints >= 0 and None, "
                             f"received {self.shape!r:.80}.")
        self.batch_size = None if batch_size is None else int(batch_size)
        self.output = KerasTensor(self.batch_shape, dtype=self.dtype, name=self.name)
        Node(self, outputs=[self.output])

    @property
    def batch_shape(self):
        return (self.batch_size,) + self.shape

    def call(self, inputs, training=False):
        return np.asarray(inputs, dtype=self.dtype)

    def backward(self, grad_outputs):
        return grad_outputs

    def get_config(self):
        return {"batch_shape": list(self.batch_shape), "dtype": self.dtype, "name": self.name}


_INPUT_DTYPES = ("float32", "float64", "int32", "int64")


def _input_dtype(dtype):
    """The dtype name of an input: a float dtype of the layers, or an integer one for ids."""
    if dtype is None:
        return "float32"
    try:
        if isinstance(dtype, dict):  # a Keras DTypePolicy config
            dtype = dtype.get("config", {}).get("name", "float32")
        name = np.dtype(dtype).name
    except (TypeError, AttributeError):  # configs from files hold anything
        name = None
    if name not in _INPUT_DTYPES:
        raise ValueError(f"Argument `dtype` must be one of {', '.join(_INPUT_DTYPES)}, "
                         f"received {str(dtype)[:80]!r}.")
    return name


def Input(shape=None, batch_size=None, dtype=None, batch_shape=None, name=None):
    """Returns the symbolic input of a model (Keras 3's `keras.Input`).

    A functional `pylstm.models.Model` is built by calling layers on it; as the first
    element of a `Sequential` model it declares the input shape.

    Args:
        shape: tuple without the batch axis, e.g. `(T, D)` for sequences, `(T,)` for token
            ids; None for a variable dimension.
        batch_size: int or None (fixed batch size, for stateful models).
        dtype: None or `"float32"` (default), `"float64"`, `"int32"`, `"int64"` (token ids).
        batch_shape: tuple with the batch axis, instead of `shape` and `batch_size`.
        name: str or None; also the name of the model input it declares.

    Returns:
        A `KerasTensor` of shape `(batch_size,) + shape`, made by an `InputLayer`.

    Raises:
        ValueError: as `InputLayer`.

    Example:

    >>> from pylstm.layers import LSTM
    >>> LSTM(4)(Input((5, 3))).shape
    (None, 4)
    """
    return InputLayer(shape, batch_size=batch_size, dtype=dtype, batch_shape=batch_shape,
                      name=name).output


class Dropout(Layer):
    """Inverted dropout (Srivastava et al., 2014) as Keras applies it.

    While training, each entry is zeroed with probability `rate` and the survivors are scaled by
    `1 / (1 - rate)`; at inference the layer is the identity.

    Args:
        rate: float in `[0, 1)`, the fraction of entries dropped.
        seed: int or None; a seeded layer draws a different (reproducible) mask on each call,
            an unseeded one draws from `pylstm.utils`'s module generator.
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: array of any shape.
        training: bool; dropout applies only when True.

    Returns:
        `np.ndarray` of `inputs`' shape and the layer's dtype.

    Raises:
        ValueError: for `rate` outside `[0, 1)`.

    Example:

    >>> import numpy as np
    >>> layer = Dropout(0.5, seed=0)
    >>> x = np.ones((2, 4), "float32")
    >>> np.unique(layer(x, training=True)).tolist(), layer(x).tolist() == x.tolist()
    ([0.0, 2.0], True)
    """

    supports_masking = True

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"Argument `rate` must be in [0, 1), received {rate!r}.")
        self.rate = float(rate)
        self.seed = seed
        self._rng = None if seed is None else np.random.default_rng(seed)
        self._mask = None

    def call(self, inputs, training=False):
        x = np.asarray(inputs, dtype=self.dtype)
        if not training or self.rate == 0.0:
            self._mask = None
            return x
        rng = self._rng if self._rng is not None else utils.default_generator()
        self._mask = (rng.random(x.shape) >= self.rate).astype(self.dtype) / (1.0 - self.rate)
        return x * self._mask

    def backward(self, grad_outputs):
        return grad_outputs if self._mask is None else grad_outputs * self._mask

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class Activation(Layer):
    """Applies an activation elementwise (Keras's `keras.layers.Activation`).

    Args:
        activation: a name or see `pylstm.activations.get`.
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: array of any shape.

    Returns:
        `np.ndarray` of `inputs`' shape and the layer's dtype.

    Raises:
        ValueError: an unknown activation name.

    Example:

    >>> import numpy as np
    >>> Activation("relu")(np.array([[-1.0, 2.0]])).tolist()
    [[0.0, 2.0]]
    """

    supports_masking = True

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation)
        self._cache = None

    def call(self, inputs, training=False):
        x = np.asarray(inputs, dtype=self.dtype)
        y = self.activation(x)
        self._cache = (x, y) if training else None
        return y

    def backward(self, grad_outputs):
        if self._cache is None:
            raise RuntimeError(
                f"Activation '{self.name}': backward() needs a call(training=True) first.")
        return self.activation.backward(*self._cache, grad_outputs)

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


class Flatten(Layer):
    """Reshapes `(B, d1, ..., dk)` to `(B, d)`, d the product of d1 to dk (Keras's
    `keras.layers.Flatten`).

    Args:
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: array `(B, d1, ..., dk)`.

    Returns:
        `np.ndarray` `(B, d1 * ... * dk)` of the layer's dtype.

    Example:

    >>> import numpy as np
    >>> Flatten()(np.zeros((2, 3, 4))).shape
    (2, 12)
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._input_shape_cache = None

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        return (input_shape[0], None if None in rest else math.prod(rest))

    def call(self, inputs, training=False):
        x = np.asarray(inputs, dtype=self.dtype)
        self._input_shape_cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_outputs):
        return np.reshape(grad_outputs, self._input_shape_cache)
