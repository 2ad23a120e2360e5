"""The layer protocol every pylstm layer follows.

Design:
    A layer owns its weights as `Variable` objects (a NumPy array, its gradient, and its
    trainability). Its lifecycle mirrors Keras 3: `__init__` validates and stores the config,
    `build(input_shape)` creates the weights with `add_weight`, and `call(inputs, training)`
    computes the outputs. Unlike Keras there is no autodiff: when called with `training=True`
    a layer caches what it needs, and `backward(grad_outputs)` returns the gradient with
    respect to its inputs and *adds* the weight gradients into each `Variable.grad`
    (scikit-learn's `neural_network` style: derivatives from cached outputs).
"""

import numpy as np

from pylstm import initializers
from pylstm._serialization import snake_case

_FLOAT_DTYPES = ("float32", "float64")


class Variable:
    """A trainable (or frozen) array owned by a layer.

    Attributes:
        name: str, e.g. `"lstm/kernel"`.
        value: `np.ndarray`, the weight itself; optimizers update it in place.
        grad: `np.ndarray` of the same shape and dtype, accumulated by `Layer.backward`
            and zeroed by `Sequential` before each batch.
        trainable: bool; optimizers skip frozen variables.
        regularizer: callable `value -> float` or None (penalty added to the loss).
        constraint: callable `value -> value` or None (applied after each optimizer step).
    """

    def __init__(self, name, value, trainable=True, regularizer=None, constraint=None):
        self.name = name
        self.value = value
        self.grad = np.zeros_like(value)
        self.trainable = trainable
        self.regularizer = regularizer
        self.constraint = constraint

    @property
    def shape(self):
        return self.value.shape

    @property
    def dtype(self):
        return self.value.dtype

    def assign(self, value):
        """Copies `value` into this variable, checking its shape.

        Raises:
            ValueError: if `value`'s shape differs from the variable's.
        """
        value = np.asarray(value)
        if value.shape != self.value.shape:
            raise ValueError(
                f"Variable '{self.name}' expects shape {self.value.shape}, "
                f"received shape {value.shape}."
            )
        self.value[...] = value

    def __repr__(self):
        return f"<Variable {self.name} shape={self.shape} dtype={self.dtype}>"


class Layer:
    """Base class of pylstm layers (Keras 3's `keras.layers.Layer` protocol, minus autodiff).

    Args:
        name: str or None; a unique name is made from the class name when None.
        trainable: bool, whether the layer's weights are updated by training.
        dtype: `"float32"` (default) or `"float64"`, the dtype of weights and outputs.
        input_shape: optional tuple without the batch dimension, as in Keras, so that a
            `Sequential` model can build itself before seeing data.

    Raises:
        ValueError: for an unknown dtype.
    """

    _name_counts = {}

    def __init__(self, name=None, trainable=True, dtype="float32", input_shape=None):
        if dtype is None:
            dtype = "float32"
        dtype = np.dtype(dtype).name
        if dtype not in _FLOAT_DTYPES:
            raise ValueError(f"Argument `dtype` must be 'float32' or 'float64', received {dtype!r}.")
        if name is None:
            base = snake_case(type(self).__name__)
            count = Layer._name_counts.get(base, 0)
            Layer._name_counts[base] = count + 1
            name = base if count == 0 else f"{base}_{count}"
        self.name = name
        self.trainable = trainable
        self.dtype = dtype
        self._input_shape_arg = tuple(input_shape) if input_shape is not None else None
        self.built = False
        self.input_shape = None
        self._variables = []

    # Weights -------------------------------------------------------------------------

    def add_weight(self, name, shape, initializer="zeros", regularizer=None, constraint=None,
                   trainable=True, seed=None):
        """Creates a `Variable` of `shape` filled by `initializer` and registers it."""
        init = initializers.get(initializer)
        value = np.asarray(init(shape, dtype=self.dtype), dtype=self.dtype)
        var = Variable(f"{self.name}/{name}", value, trainable=trainable,
                       regularizer=regularizer, constraint=constraint)
        self._variables.append(var)
        return var

    @property
    def variables(self):
        return list(self._variables)

    @property
    def weights(self):
        return list(self._variables)

    @property
    def trainable_variables(self):
        return [v for v in self._variables if v.trainable and self.trainable]

    def get_weights(self):
        """Returns copies of the weights as a list of `np.ndarray`, in Keras's order."""
        return [v.value.copy() for v in self._variables]

    def set_weights(self, weights):
        """Sets the weights from a list of arrays in `get_weights()` order.

        Raises:
            ValueError: if the count or a shape does not match.
        """
        weights = list(weights)
        if len(weights) != len(self._variables):
            raise ValueError(
                f"Layer '{self.name}' expects {len(self._variables)} weight arrays, "
                f"received {len(weights)}."
            )
        for var, w in zip(self._variables, weights):
            var.assign(w)

    def count_params(self):
        return int(sum(v.value.size for v in self._variables))

    def zero_grads(self):
        for v in self._variables:
            v.grad[...] = 0

    # Lifecycle -----------------------------------------------------------------------

    def build(self, input_shape):
        """Creates the weights for inputs of `input_shape` (batch dimension included)."""
        self.input_shape = tuple(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def __call__(self, inputs, training=None, **kwargs):
        if not self.built:
            try:
                shape = np.shape(inputs)
            except ValueError:
                raise TypeError(f"Argument `inputs` of layer '{self.name}' must be an array or a "
                                f"regular nested list, received a ragged "
                                f"{type(inputs).__name__}.") from None
            self.build(shape)
        return self.call(inputs, training=bool(training), **kwargs)

    def call(self, inputs, training=False):
        raise NotImplementedError

    def backward(self, grad_outputs):
        """Returns d(loss)/d(inputs) and adds weight gradients into `Variable.grad`.

        Valid only after a `call(..., training=True)`.
        """
        raise NotImplementedError

    # Config --------------------------------------------------------------------------

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self._input_shape_arg is not None:
            config["input_shape"] = list(self._input_shape_arg)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"

