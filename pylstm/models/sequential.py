"""A linear stack of layers trained by explicit backpropagation (Keras 3's `keras.Sequential`).

Design:
    Training comes from `pylstm.models._training.Trainer` through its flat interface (one input,
    one output here): the forward pass runs each layer's `call`, passing each layer's output
    mask to the next; the backward pass sends the loss gradient through each layer's
    `backward_with_penalties` in reverse order (layers add their weight gradients into
    `Variable.grad`). Nothing here knows what a layer computes: the `Layer` protocol in
    `pylstm.layers.layer` is the contract.
"""

import numpy as np

from pylstm.layers import InputLayer, Layer, deserialize, serialize
from pylstm.layers.keras_tensor import KerasTensor, is_symbolic, symbolic_call, traced_masks
from pylstm.layers.layer import call_and_mask
from pylstm.models import _formats
from pylstm.models._summary import print_summary
from pylstm.models._training import Trainer
from pylstm.variable import assign_weights


class Sequential(Trainer, Layer):
    """A stack of layers, each taking the previous one's output.

    A `Sequential` model is also a layer: it may be added to another `Sequential` model or
    called on `KerasTensor`s inside a functional `pylstm.models.Model`.

    Args:
        layers: optional list of `Layer`s (an `InputLayer`, from `pylstm.layers.Input`, may
            come first to declare the input shape).
        name: str or None.
        trainable: bool.

    Example:

    >>> import numpy as np
    >>> from pylstm.layers import Dense, Input
    >>> model = Sequential([Input((3,)), Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> x = np.ones((8, 3), dtype="float32"); y = np.zeros((8, 1), dtype="float32")
    >>> history = model.fit(x, y, epochs=2, verbose=0)
    >>> sorted(history.history)
    ['loss']
    >>> model.predict(x).shape
    (8, 1)
    """

    _count = 0

    def __init__(self, layers=None, name=None, trainable=True):
        if name is None:
            name = "sequential" if Sequential._count == 0 else f"sequential_{Sequential._count}"
            Sequential._count += 1
        super().__init__(name=name, trainable=trainable)
        self._input_layer = None
        self._layers = []
        # The layer protocol's sublayers (weights, states, snapshots) are the layers.
        self._sublayers = self._layers
        self._build_input_shape = None
        self._output_shapes = []
        for layer in layers or []:
            self.add(layer)

    # Structure -----------------------------------------------------------------------

    def add(self, layer):
        """Appends `layer`, and builds the model if its input shape is known.

        `layer` may also be the `KerasTensor` that `pylstm.layers.Input` returns: its
        `InputLayer` is added, as Keras does.

        Raises:
            TypeError: if `layer` is not a `Layer` or an `Input` tensor.
            ValueError: for an `InputLayer` that is not first.
        """
        if isinstance(layer, KerasTensor):
            source = layer._keras_history.layer if layer._keras_history else None
            if not isinstance(source, InputLayer):
                raise TypeError(f"Sequential.add takes a KerasTensor only from "
                                f"`pylstm.layers.Input`, received {layer!r}.")
            layer = source
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a Layer, received {layer!r}.")
        if isinstance(layer, InputLayer):
            if self._input_layer is not None or self._layers:
                raise ValueError("An InputLayer can only be the first layer of a Sequential model.")
            self._input_layer = layer
        else:
            self._layers.append(layer)
        self.built = False
        self._set_dtype()
        shape = self._declared_input_shape()
        if shape is not None and self._layers:
            self.build(shape)

    def pop(self):
        """Removes and returns the last layer."""
        layer = self._layers.pop()
        self.built = False
        self._set_dtype()
        return layer

    @property
    def layers(self):
        """The layers, without the `InputLayer` (as in Keras)."""
        return list(self._layers)

    def _set_dtype(self):
        """The model's dtype is its first layer's (the `InputLayer`'s when it has one)."""
        first = self._input_layer or (self._layers[0] if self._layers else None)
        self.dtype = first.dtype if first is not None else "float32"

    def _declared_input_shape(self):
        if self._input_layer is not None:
            return self._input_layer.batch_shape
        if self._layers and self._layers[0]._input_shape_arg is not None:
            return (None,) + self._layers[0]._input_shape_arg
        return self._build_input_shape

    def build(self, input_shape):
        """Builds every layer for inputs of `input_shape` (batch axis included, may be None).

        Raises:
            ValueError: if the model has no layers, or a layer rejects the shape.
        """
        if not self._layers:
            raise ValueError(f"Sequential model '{self.name}' has no layers to build.")
        shape = tuple(input_shape)
        self._output_shapes = []
        for layer in self._layers:
            if not layer.built:
                layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))
            self._output_shapes.append(shape)
        self._build_input_shape = tuple(input_shape)
        self.built = True

    def _ensure_built(self, x_shape):
        if not self.built:
            self.build(self._declared_input_shape() or (None,) + tuple(x_shape[1:]))

    # Weights -------------------------------------------------------------------------

    @property
    def weights(self):
        """All `Variable`s, layer by layer, each layer's in Keras's order."""
        return [v for layer in self._layers for v in layer.weights]

    @property
    def trainable_variables(self):
        if not self.trainable:
            return []
        return [v for layer in self._layers for v in layer.trainable_variables]

    def get_weights(self):
        """Returns copies of all weights as a list of `np.ndarray`."""
        return [v.value.copy() for v in self.weights]

    def set_weights(self, weights):
        """Sets all weights from a list in `get_weights()` order.

        Raises:
            ValueError: if the count or a shape does not match.
        """
        assign_weights(self.weights, weights, f"Model '{self.name}'")

    def count_params(self):
        return sum(layer.count_params() for layer in self._layers)

    def summary(self, print_fn=None):
        """Prints a Keras-like table: layer name (type), output shape, parameter count.

        Args:
            print_fn: callable taking one line (str); defaults to `print`.

        Raises:
            ValueError: if the model is not built yet.
        """
        if not self.built:
            raise ValueError(
                "This model has not yet been built. Build the model first by calling `build()` "
                "or by calling the model on a batch of data."
            )
        rows = [(f"{layer.name} ({type(layer).__name__})", str(shape), f"{layer.count_params():,}")
                for layer, shape in zip(self._layers, self._output_shapes)]
        print_summary(self, ("Layer (type)", "Output Shape", "Param #"), rows, (33, 26, 12),
                      print_fn)

    # Training interface (`pylstm.models._training.Trainer`) -------------------------------

    @property
    def losses(self):
        """The penalties (floats) of all layers, weight regularizers and the activity
        regularizers of the last call (Keras 3's `Model.losses`)."""
        return [penalty for layer in self._layers for penalty in layer.losses]

    @property
    def input_names(self):
        """One name, the `InputLayer`'s, else `"input_layer"` (the key of an `x` dict)."""
        return [self._input_layer.name if self._input_layer is not None else "input_layer"]

    @property
    def output_names(self):
        """One name, the last layer's (the key of `y`, `loss` and `metrics` dicts)."""
        return [self._layers[-1].name if self._layers else "output"]

    @property
    def _input_dtypes(self):
        return [np.dtype(self.dtype)]

    @property
    def _output_dtypes(self):
        return [np.dtype(self._layers[-1].dtype if self._layers else "float32")]

    def _ensure_built_flat(self, shapes):
        self._ensure_built(shapes[0])

    def _forward_flat(self, xs, training):
        y, mask = self._forward(xs[0], training=training)
        return [y], [mask]

    def _backward_flat(self, grads):
        return [self.backward(grads[0])]

    def reset_states(self, mask=None):
        """Resets the states of every stateful layer (Keras's `reset_states`).

        Args:
            mask: None (all samples) or a `(B,)` bool array: reset only those samples.
        """
        for layer in self._layers:
            layer.reset_state(mask)

    reset_state = reset_states

    def __call__(self, inputs, training=False, mask=None, **kwargs):
        """Runs the layers on `inputs` (cast to the model's dtype); builds the model if
        needed. Called on a `KerasTensor`, records the call in the graph instead (see
        `pylstm.layers.Layer.__call__`).

        Args:
            inputs: array `(B, ...)`, or a `KerasTensor`.
            training: bool; True caches what `backward` needs.
            mask: None or the input's `(B, T)` bool mask, passed to the first layer.
        """
        if is_symbolic((inputs, mask), kwargs):
            return symbolic_call(self, inputs, mask, kwargs)
        return self._call_with_mask(inputs, training=training, mask=mask)[0]

    def _call_with_mask(self, inputs, training=False, mask=None):
        """Runs the model as one call of an enclosing graph: `(outputs, output mask)`."""
        x = np.asarray(inputs, dtype=self.dtype)
        self._ensure_built(x.shape)
        return self._forward(x, training=bool(training), mask=mask)

    def _forward(self, x, training, mask=None):
        """Runs the layers, passing each layer's output mask to the next (Keras's mask
        propagation); returns `(outputs, output mask or None)`."""
        for layer in self._layers:
            x, mask = call_and_mask(layer, x, training, mask)
        return x, mask

    def call(self, inputs, training=False, mask=None):
        return self._call_with_mask(inputs, training=training, mask=mask)[0]

    def backward(self, grad_outputs):
        """Backpropagates through the last call with `training=True`: each layer's
        `backward_with_penalties` in reverse order. Returns d loss / d inputs (None for integer
        inputs)."""
        grad = grad_outputs
        for layer in reversed(self._layers):
            grad = layer.backward_with_penalties(grad)
        return grad

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self._layers:
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    def compute_mask(self, inputs, mask=None):
        """The output mask of running the model on `inputs` (in inference mode)."""
        return self._call_with_mask(inputs, training=False, mask=mask)[1]

    def _traced_output_masks(self, input_has_mask):
        """Whether the output carries a mask when the input does as `input_has_mask[0]`
        says, traced through the layers without running them."""
        tensor = KerasTensor(self._build_input_shape, self.dtype, name=f"{self.name}_input")
        tensor._has_mask = input_has_mask[0]
        for layer, shape in zip(self._layers, self._output_shapes):
            has_mask = traced_masks(layer, tensor, None, 1)[0]
            tensor = KerasTensor(shape, layer.dtype, name=f"{layer.name}_output")
            tensor._has_mask = has_mask
        return [tensor._has_mask]

    # Config and saving ---------------------------------------------------------------

    def get_config(self):
        """Returns `{"name", "layers": [{"class_name", "config"}, ...], "build_input_shape"}`."""
        layers = ([self._input_layer] if self._input_layer is not None else []) + self._layers
        return {
            "name": self.name,
            "layers": [serialize(layer) for layer in layers],
            "build_input_shape": list(self._build_input_shape) if self.built else None,
        }

    @classmethod
    def from_config(cls, config):
        """Rebuilds the (uncompiled) model from `get_config()`'s output.

        Raises:
            ValueError: for an unknown layer class, or a config whose fields do not have the
                types `get_config()` gives (a dict with a list of layer configs, a str or
                None name, a list of ints and None as `build_input_shape`).
        """
        if not isinstance(config, dict):
            raise ValueError(f"Sequential config must be a dict, received "
                             f"{type(config).__name__}.")
        layers = config.get("layers")
        if not isinstance(layers, list):
            raise ValueError(f"Sequential config's `layers` must be a list of layer configs, "
                             f"received {type(layers).__name__}.")
        name = config.get("name")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"Sequential config's `name` must be a str, received "
                             f"{type(name).__name__}.")
        shape = config.get("build_input_shape")
        if shape is not None and not (isinstance(shape, (list, tuple)) and all(
                d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in shape)):
            raise ValueError(f"Sequential config's `build_input_shape` must be a list of ints "
                             f"and None, received {shape!r}.")
        model = cls([deserialize(c) for c in layers], name=name)
        if shape is not None and not model.built:
            model.build(tuple(shape))
        return model

    def save(self, path):
        """Saves the model to one file: the Keras 3 format for a path ending in
        `.keras`, else pylstm's own; see `pylstm.models.save_model`."""
        _formats.find("save_model", path)(self, path)

    def save_weights(self, path):
        """Writes the weights (and optimizer state) as a Keras 3 `.weights.h5` file (h5py
        needed); see `pylstm.models.save_keras_weights`."""
        _formats.find("save_weights", path)(self, path)

    def load_weights(self, path):
        """Loads Keras weights (`.weights.h5`, `.keras` or legacy `.h5`) into this model (pyfive
        needed); see `pylstm.models.load_keras_weights`."""
        _formats.find("load_weights", path)(self, path)
