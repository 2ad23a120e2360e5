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

import inspect
import re

import numpy as np

from pylstm import initializers, regularizers
from pylstm.layers.keras_tensor import KerasTensor, is_symbolic, symbolic_call
# The weight names are importable from here as well: loaders and their users have them from
# `pylstm.layers.layer` (`deferred_weights`, `DEFAULT_MAX_WEIGHT_BYTES`, ...).
from pylstm.variable import (DEFAULT_MAX_WEIGHT_BYTES, Variable, WeightBudget,  # noqa: F401
                             WeightLimitError, assign_weights, check_byte_limit,
                             deferred_weights, deferred_zeros)

_FLOAT_DTYPES = ("float32", "float64")


class Layer:
    """Base class of pylstm layers (Keras 3's `keras.layers.Layer` protocol, minus autodiff).

    Args:
        name: str or None; a unique name is made from the class name when None.
        trainable: bool, whether the layer's weights are updated by training.
        dtype: `"float32"` (default) or `"float64"`, the dtype of weights and outputs.
        input_shape: optional tuple without the batch dimension, as in Keras, so that a
            `Sequential` model can build itself before seeing data.
        activity_regularizer: None, or a regularizer (name, config or callable, see
            `pylstm.regularizers.get`) whose penalty of the outputs is added to `losses`.

    Raises:
        ValueError: for an unknown dtype.
        TypeError: `name` is not a str.

    Example:

    >>> import numpy as np
    >>> class Scale(Layer):  # weights made in build, outputs in call, as in Keras
    ...     def build(self, input_shape):
    ...         self.scale = self.add_weight("scale", (input_shape[-1],), initializer="ones")
    ...         super().build(input_shape)
    ...     def call(self, inputs, training=False):
    ...         return inputs * self.scale.value
    >>> layer = Scale(name="scale")
    >>> layer(np.full((2, 3), 2.0, "float32")).tolist(), layer.variables
    ([[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]], [<Variable scale/scale shape=(3,) dtype=float32>])
    """

    _name_counts = {}
    supports_masking = False

    def __init__(self, name=None, trainable=True, dtype="float32", input_shape=None,
                 activity_regularizer=None):
        if dtype is None:
            dtype = "float32"
        try:
            if isinstance(dtype, dict):  # a Keras DTypePolicy config
                dtype = dtype.get("config", {}).get("name", "float32")
            dtype = np.dtype(dtype).name
        except (TypeError, AttributeError) as e:  # configs from files hold anything
            raise ValueError(f"Argument `dtype` must be 'float32' or 'float64', received "
                             f"{str(dtype)[:80]!r}.") from e
        if dtype not in _FLOAT_DTYPES:
            raise ValueError(f"Argument `dtype` must be 'float32' or 'float64', received {dtype!r}.")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"Argument `name` must be a str, received {type(name).__name__}.")
        if name is None:
            base = _default_name(type(self).__name__)
            count = Layer._name_counts.get(base, 0)
            Layer._name_counts[base] = count + 1
            name = base if count == 0 else f"{base}_{count}"
        self.name = name
        self.trainable = trainable
        self.dtype = dtype
        self._input_shape_arg = tuple(input_shape) if input_shape is not None else None
        self.activity_regularizer = (None if activity_regularizer is None
                                     else regularizers.get(activity_regularizer))
        self.built = False
        self.input_shape = None
        self._variables = []
        self._sublayers = []
        self._activity_outputs = None
        self._activity_losses = []
        self._inbound_nodes = []

    # Pickling ------------------------------------------------------------------------

    # What a call keeps for `backward` (one batch's arrays), compiled steppers and a
    # distributed `fit`'s gradient function: not pickled or deep-copied, but emptied (a list
    # or dict) or None on arrival, as before the first call; the next call rebuilds them.
    _TRANSIENT = ("_cache", "_caches", "_steps", "_step_cache", "_activity_outputs",
                  "_indices", "_keep", "_mask", "_input_shape_cache", "_batch_time",
                  "_last_run", "_gradient_fn")

    def __getstate__(self):
        """The layer's attributes for `pickle` and `copy.deepcopy`: weights, config,
        optimizer and states travel, what a call keeps for `backward` does not."""
        state = self.__dict__.copy()
        for name in self._TRANSIENT:
            value = state.get(name)
            if value is not None:
                state[name] = type(value)() if isinstance(value, (list, dict)) else None
        return state

    # Weights -------------------------------------------------------------------------

    def add_weight(self, name, shape, initializer="zeros", regularizer=None, constraint=None,
                   trainable=True, seed=None):
        """Creates a `Variable` of `shape` filled by `initializer` and registers it.

        Inside `deferred_weights`, the variable holds zeros and the initializer is not run.

        Raises:
            ValueError: inside `deferred_weights`, if the weights exceed its limit.
        """
        init = initializers.get(initializer)
        value = deferred_zeros(f"{self.name}/{name}", shape, self.dtype)
        if value is None:
            # C order, as the core reads weights: a Fortran-ordered one would be copied at
            # every call (benchmarks/README.md, "Compiled core measurements")
            value = np.asarray(init(shape, dtype=self.dtype), dtype=self.dtype, order="C")
        var = Variable(f"{self.name}/{name}", value, trainable=trainable,
                       regularizer=regularizer, constraint=constraint)
        self._variables.append(var)
        return var

    @property
    def variables(self):
        """This layer's `Variable`s, then its sublayers' (wrappers), in Keras's order."""
        return list(self._variables) + [v for sub in self._sublayers for v in sub.variables]

    @property
    def weights(self):
        return self.variables

    @property
    def trainable_variables(self):
        if not self.trainable:
            return []
        return [v for v in self._variables if v.trainable] + \
            [v for sub in self._sublayers for v in sub.trainable_variables]

    @property
    def losses(self):
        """Penalties (floats) of the last call's activity regularizer and of the trainable
        weights' regularizers, this layer's and its sublayers' (Keras 3's `Layer.losses`)."""
        out = list(self._activity_losses)
        if self.trainable:
            out += [float(v.regularizer(v.value)) for v in self._variables
                    if v.trainable and v.regularizer is not None]
        for sub in self._sublayers:
            out += sub.losses
        return out

    def get_weights(self):
        """Returns copies of the weights as a list of `np.ndarray`, in Keras's order."""
        return [v.value.copy() for v in self.variables]

    def set_weights(self, weights):
        """Sets the weights from a list of arrays in `get_weights()` order.

        Raises:
            ValueError: if the count or a shape does not match.
        """
        assign_weights(self.variables, weights, f"Layer '{self.name}'")

    def count_params(self):
        return int(sum(v.value.size for v in self.variables))

    def zero_grads(self):
        for v in self.variables:
            v.zero_grad()

    # Lifecycle -----------------------------------------------------------------------

    def build(self, input_shape):
        """Creates the weights for inputs of `input_shape` (batch dimension included)."""
        self.input_shape = tuple(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def __call__(self, inputs, training=None, mask=None, **kwargs):
        """Builds the layer on first use, then runs `call`.

        `mask` (a `(B, T)` bool array or None) is passed on only when `call` takes a `mask`
        argument, as Keras does. With an `activity_regularizer`, the penalty of each output is
        recorded in `losses` (divided by the batch size, as Keras 3), and in training
        `backward_with_penalties` adds its gradient.

        Called on `KerasTensor`s (`inputs`, or a keyword argument such as `initial_state`, at
        any depth), the layer computes nothing: it records the call in the graph and returns
        `KerasTensor`(s) (see `pylstm.layers.keras_tensor.symbolic_call`).

        Raises:
            TypeError: `inputs` mixes `KerasTensor`s and arrays.
        """
        if (not isinstance(inputs, np.ndarray) or kwargs or isinstance(mask, KerasTensor)) \
                and is_symbolic((inputs, mask), kwargs):
            return symbolic_call(self, inputs, mask, kwargs)
        if not self.built:
            self.build(_input_shape_of(inputs, self.name))
        if mask is not None and _takes_mask(type(self).call):
            kwargs["mask"] = mask
        outputs = self.call(inputs, training=bool(training), **kwargs)
        if self.activity_regularizer is not None:
            flat = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            # Keras 3 divides each output's penalty by its batch size.
            self._activity_losses = [float(self.activity_regularizer(o)) / _batch_size(o)
                                     for o in flat]
            self._activity_outputs = list(flat) if training else None
        return outputs

    def compute_mask(self, inputs, mask=None):
        """The mask of this layer's output: `(B, T)` bool or None (Keras's `compute_mask`).

        By default a layer that `supports_masking` passes its input mask on; others drop it.
        """
        return mask if self.supports_masking else None

    def call(self, inputs, training=False):
        raise NotImplementedError

    def backward(self, grad_outputs):
        """Returns d(loss)/d(inputs) and adds weight gradients into `Variable.grad`.

        Valid only after a `call(..., training=True)`.
        """
        raise NotImplementedError

    def backward_with_penalties(self, grad_outputs):
        """`backward`, after adding the activity regularizer's gradient to `grad_outputs`."""
        if self.activity_regularizer is not None and self._activity_outputs is not None:
            penalty_gradient = _penalty_gradient(self.activity_regularizer, self.name)

            def gradient(output):
                return penalty_gradient(output) / _batch_size(output)

            if isinstance(grad_outputs, (list, tuple)):
                grad_outputs = [gradient(o) if g is None else g + gradient(o)
                                for g, o in zip(grad_outputs, self._activity_outputs)]
            else:
                grad_outputs = grad_outputs + gradient(self._activity_outputs[0])
        return self.backward(grad_outputs)

    def reset_state(self, mask=None):
        """Resets the states of stateful sublayers (no-op for stateless layers)."""
        for sub in self._sublayers:
            sub.reset_state(mask)

    # Config --------------------------------------------------------------------------

    def get_config(self):
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self._input_shape_arg is not None:
            config["input_shape"] = list(self._input_shape_arg)
        if self.activity_regularizer is not None:
            config["activity_regularizer"] = regularizers.serialize(self.activity_regularizer)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name}>"


def call_and_mask(layer, inputs, training, mask, **kwargs):
    """Calls `layer` on arrays as a model runs it: `(outputs, output mask(s))`, the mask from
    `compute_mask` as Keras propagates it. A model used as a layer gives both from one run
    (its `_call_with_mask`), so that computing its mask does not run it again."""
    own = getattr(layer, "_call_with_mask", None)
    if own is not None:
        return own(inputs, training=training, mask=mask, **kwargs)
    outputs = layer(inputs, training=training, mask=mask, **kwargs)
    return outputs, layer.compute_mask(inputs, mask)


def _input_shape_of(inputs, layer_name):
    """The `input_shape` that `build` receives: a list of shapes for a list (or tuple) of
    arrays, as Keras builds a layer called on several tensors; else the shape of the array
    (a regular nested list of numbers counts as one array)."""
    if isinstance(inputs, (list, tuple)) and inputs and \
            all(isinstance(x, np.ndarray) for x in inputs):
        return [x.shape for x in inputs]
    try:
        return np.shape(inputs)
    except ValueError:
        raise TypeError(f"Argument `inputs` of layer '{layer_name}' must be an array, a list of "
                        f"arrays or a regular nested list, received a ragged "
                        f"{type(inputs).__name__}.") from None


_TAKES_MASK = {}


def _takes_mask(call):
    if call not in _TAKES_MASK:
        _TAKES_MASK[call] = "mask" in inspect.signature(call).parameters
    return _TAKES_MASK[call]


def _batch_size(output):
    return np.shape(output)[0] if np.ndim(output) > 0 and np.shape(output)[0] > 0 else 1


def _penalty_gradient(regularizer, owner):
    gradient = getattr(regularizer, "gradient", None)
    if gradient is None:
        raise TypeError(f"The regularizer of '{owner}' has no `gradient(value)` method; pylstm "
                        "has no autodiff, so regularizers must provide one.")
    return gradient



def _default_name(class_name):
    """Keras's default layer name: `"LSTMCell"` -> `"lstm_cell"`, `"Dense"` -> `"dense"`."""
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
