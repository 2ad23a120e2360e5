"""Symbolic tensors and the record of layer calls: what the functional API builds graphs from.

Design:
    Calling a layer on `KerasTensor`s (Keras 3's `keras.KerasTensor`) computes nothing: the
    layer is built from the input shapes, its outputs' shapes come from
    `compute_output_shape`, and a `Node` records the call (the layer, its arguments with the
    tensors in place, its output tensors). Each output tensor's `_keras_history` points back
    at `(layer, node_index, tensor_index)`, so a `pylstm.models.Model` walks from its outputs
    to its inputs through the nodes, as Keras 3's `Function` does. Whether a tensor carries a
    mask (after `Embedding(mask_zero=True)` or `Masking`) is traced too: the layer's
    `compute_mask` runs on a one-sample stand-in of the inputs.
"""

import collections
import inspect

import numpy as np

KerasHistory = collections.namedtuple("KerasHistory", ["layer", "node_index", "tensor_index"])
"""Where a `KerasTensor` comes from: output `tensor_index` of call `node_index` of `layer`."""


class KerasTensor:
    """A symbolic tensor: a shape and a dtype, no data (Keras 3's `keras.KerasTensor`).

    Made by `pylstm.layers.Input` and by calling a layer on `KerasTensor`s; a
    `pylstm.models.Model` is built from them.

    Args:
        shape: tuple of ints and None, the batch axis first.
        dtype: str, a NumPy dtype name such as `"float32"` or `"int32"`.
        name: str or None; `"keras_tensor"`, `"keras_tensor_1"`, ... when None, as Keras.

    Attributes:
        shape: tuple, as given.
        dtype: str, as given.
        name: str.
        ndim: int, `len(shape)`.

    Example:

    >>> from pylstm.layers import Input, LSTM
    >>> x = Input((5, 3))
    >>> x.shape, x.dtype, x.ndim
    ((None, 5, 3), 'float32', 3)
    >>> LSTM(4, return_sequences=True)(x).shape
    (None, 5, 4)
    """

    _count = 0

    def __init__(self, shape, dtype="float32", name=None):
        self.shape = tuple(None if d is None else int(d) for d in shape)
        self.dtype = np.dtype(dtype).name
        if name is None:
            count = KerasTensor._count
            KerasTensor._count += 1
            name = "keras_tensor" if count == 0 else f"keras_tensor_{count}"
        self.name = name
        self._keras_history = None
        self._has_mask = False

    @property
    def ndim(self):
        return len(self.shape)

    def __array__(self, dtype=None, copy=None):
        raise TypeError(f"A KerasTensor ({self.name}) is symbolic: it has no values. Call "
                        "layers on it to build a graph, then make a `pylstm.models.Model` and "
                        "call the model on arrays.")

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype}, name={self.name}>"


class Node:
    """One call of a layer on `KerasTensor`s (Keras 3's `Node`).

    Args:
        layer: the `Layer` called.
        call_args: tuple, the positional arguments as called (tensors, nested lists of them).
        call_kwargs: dict, the keyword arguments as called (tensor ones such as
            `initial_state=[h, c]`, and plain values); without `training`, which the model
            that runs the node decides.
        outputs: list of `KerasTensor`, the call's outputs in order; each gets its
            `_keras_history`.
        returns_list: bool, whether the call returns a list (even of one tensor).

    Attributes:
        layer, call_args, call_kwargs, outputs, returns_list, input_tensors (every
        `KerasTensor` among the arguments, in order), node_index (this call's index among the
        layer's calls), is_input (True for an `InputLayer`'s node).
    """

    def __init__(self, layer, call_args=(), call_kwargs=None, outputs=(), returns_list=False):
        self.layer = layer
        self.returns_list = returns_list
        self.call_args = tuple(call_args)
        self.call_kwargs = dict(call_kwargs or {})
        self.outputs = list(outputs)
        self.input_tensors = [t for t in flatten((self.call_args, self.call_kwargs))
                              if isinstance(t, KerasTensor)]
        self.is_input = not self.input_tensors and not self.call_args
        self.node_index = len(layer._inbound_nodes)
        layer._inbound_nodes.append(self)
        for i, tensor in enumerate(self.outputs):
            tensor._keras_history = KerasHistory(layer, self.node_index, i)

    @property
    def parent_nodes(self):
        """The nodes that made this node's input tensors."""
        return [t._keras_history.layer._inbound_nodes[t._keras_history.node_index]
                for t in self.input_tensors]

    def __repr__(self):
        return f"<Node {self.layer.name}[{self.node_index}]>"


def flatten(structure):
    """The leaves of nested lists, tuples and dicts, in order (dict values by sorted key, as
    Keras's `tree.flatten`)."""
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in flatten(item)]
    if isinstance(structure, dict):
        return [leaf for key in sorted(structure) for leaf in flatten(structure[key])]
    return [structure]


def map_structure(function, structure):
    """`structure` with each leaf replaced by `function(leaf)` (lists stay lists, tuples
    tuples, dicts dicts)."""
    if isinstance(structure, list):
        return [map_structure(function, item) for item in structure]
    if isinstance(structure, tuple):
        return tuple(map_structure(function, item) for item in structure)
    if isinstance(structure, dict):
        return {key: map_structure(function, value) for key, value in structure.items()}
    return function(structure)


def is_symbolic(inputs, kwargs):
    """True when `inputs` or a keyword argument holds a `KerasTensor` at any depth."""
    return any(isinstance(leaf, KerasTensor) for leaf in flatten((inputs, kwargs)))


def symbolic_call(layer, inputs, mask, kwargs):
    """Records a call of `layer` on symbolic `inputs`; returns its output `KerasTensor`(s).

    The layer is built from the inputs' shapes when not built yet; the outputs' shapes come
    from `layer.compute_output_shape`, their dtype is the layer's. A layer whose
    `compute_output_shape` gives a list of shapes (`LSTM(return_state=True)`) returns a list.

    Args:
        layer: the `Layer` (or model) called.
        inputs: a `KerasTensor`, or a nested list / tuple / dict of them.
        mask: None, or an explicit mask `KerasTensor` given as `mask=`.
        kwargs: the other keyword arguments (`initial_state=[h, c]`, plain values).

    Raises:
        TypeError: `inputs` mixes `KerasTensor`s with other values, a keyword argument holds
            an array beside `KerasTensor`s (a graph cannot hold data), or the layer's `call`
            takes no such keyword argument.
    """
    for leaf in flatten(inputs):
        if not isinstance(leaf, KerasTensor):
            raise TypeError(f"Layer '{layer.name}' was called on KerasTensors mixed with a "
                            f"{type(leaf).__name__}: call a layer either on KerasTensors (to "
                            "build a model) or on arrays (to compute), not on both.")
    for key, value in kwargs.items():
        for leaf in flatten(value):
            if isinstance(leaf, np.ndarray):
                raise TypeError(f"Layer '{layer.name}' was called on KerasTensors with an "
                                f"array in `{key}`: in a graph, `{key}` must hold KerasTensors "
                                "(e.g. from `Input`), not data.")
    _check_call_arguments(layer, kwargs)
    shapes = map_structure(lambda t: t.shape, inputs)
    if not layer.built:
        layer.build(shapes)
    out_shapes = layer.compute_output_shape(shapes, **shape_arguments(layer, kwargs))
    several = _is_shape_list(out_shapes)
    out_shapes = list(out_shapes) if several else [out_shapes]
    outputs = [KerasTensor(shape, dtype=layer.dtype) for shape in out_shapes]
    for tensor, has_mask in zip(outputs, traced_masks(layer, inputs, mask, len(outputs))):
        tensor._has_mask = has_mask
    call_kwargs = dict(kwargs)
    if mask is not None:
        call_kwargs["mask"] = mask
    Node(layer, (inputs,), call_kwargs, outputs, returns_list=several)
    return outputs if several else outputs[0]


def _check_call_arguments(layer, kwargs):
    """A graph runs `layer.call` with these keyword arguments: refuse now those it lacks."""
    parameters = inspect.signature(layer.call).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    unknown = sorted(key for key in kwargs if key not in parameters)
    if unknown:
        raise TypeError(f"Layer '{layer.name}' ({type(layer).__name__}) takes no call "
                        f"argument {unknown[0]!r}; its call takes "
                        f"{[name for name in parameters if name != 'inputs']}.")


def shape_arguments(layer, kwargs):
    """The plain keyword arguments of a call that `layer.compute_output_shape` takes too: they
    can change the outputs (Attention's `return_attention_scores`)."""
    parameters = inspect.signature(layer.compute_output_shape).parameters
    return {key: value for key, value in kwargs.items() if key in parameters
            and not any(isinstance(leaf, KerasTensor) for leaf in flatten(value))}


def _is_shape_list(shape):
    """True for a list of shapes (several outputs), False for one shape (ints and None)."""
    return isinstance(shape, (list, tuple)) and len(shape) > 0 and \
        all(isinstance(s, (list, tuple)) for s in shape)


def _stand_in(tensor):
    """A one-sample array of ones shaped like `tensor` (1 for each unknown dimension)."""
    return np.ones(tuple(1 if d is None else d for d in tensor.shape), dtype=tensor.dtype)


def traced_masks(layer, inputs, mask, n_outputs, has_mask=None):
    """Whether each of the `n_outputs` outputs of `layer` called on the `KerasTensor`s
    `inputs` carries a mask: the layer's `compute_mask` run on stand-ins, with an all-True mask
    where an input carries one (`has_mask(tensor)`, by default the tensor's own flag). A model
    used as a layer answers through its `_traced_output_masks`, without running.

    Returns:
        list of `n_outputs` bools.
    """
    has_mask = has_mask or (lambda tensor: tensor._has_mask)
    flat = flatten(inputs)
    own = getattr(layer, "_traced_output_masks", None)
    if own is not None:
        return own([has_mask(t) for t in flat])

    def input_mask(tensor):
        if not has_mask(tensor) or tensor.ndim < 2:
            return None
        return np.ones(tuple(1 if d is None else d for d in tensor.shape[:2]), dtype=bool)

    if mask is not None:
        masks = _stand_in(mask).astype(bool)
    else:
        masks = map_structure(input_mask, inputs)
        if all(m is None for m in flatten(masks)):
            masks = None
    out = layer.compute_mask(map_structure(_stand_in, inputs), masks)
    out = out if isinstance(out, (list, tuple)) else [out] * n_outputs
    return [m is not None for m in out]
