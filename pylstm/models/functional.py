"""Models built from a graph of layer calls (Keras 3's functional `keras.Model(inputs, outputs)`).

Design:
    Calling layers on the `KerasTensor`s of `pylstm.layers.Input` records a `Node` per call
    (`pylstm.layers.keras_tensor`). A `Functional` model walks those nodes from its outputs back
    to its inputs once, at construction, and keeps them in a topological order. Its forward
    pass runs the nodes in that order on arrays, giving each layer the mask its inputs carry
    and taking the output masks from the layer's `compute_mask`, as Keras propagates masks.
    Its backward pass sends the output gradients through the nodes in reverse order; the
    gradients that reach one tensor from several consumers add up, and weight gradients add
    up in each `Variable.grad`, so a layer called twice gets the sum of both calls'.

    A layer keeps what its `backward` needs in attributes that its `call` assigns. For a layer
    called by several nodes of the graph (a shared layer, or a model holding it), the forward
    pass keeps a shallow copy of its attributes (and its sublayers') after each call; the
    backward pass restores each call's copy before that call's `backward`, then restores the
    state after the last call, so a stateful layer keeps its latest state.
"""

import collections

import numpy as np

from pylstm import regularizers
from pylstm.layers import InputLayer, Layer, deserialize, serialize
from pylstm.layers.layer import call_and_mask
from pylstm.layers.keras_tensor import (KerasTensor, flatten, is_symbolic, map_structure,
                                        shape_arguments, traced_masks)
from pylstm.models import _formats
from pylstm.models._summary import print_summary
from pylstm.models._training import Trainer


class Functional(Trainer, Layer):
    """A model whose layers form a graph from `inputs` to `outputs` (Keras 3's functional
    `keras.Model`, class name `Functional`); `pylstm.models.Model` is this class.

    Layers may be called several times (they share their weights, and their gradients add
    up); a model may be called as a layer inside another model, on `KerasTensor`s or arrays.

    Args:
        inputs: a `KerasTensor` (from `pylstm.layers.Input`, or any tensor of the graph), or
            a list or a dict of them (a dict's keys name the inputs).
        outputs: a `KerasTensor`, or a list or a dict of them (a dict's keys name the outputs).
        name: str or None (`"functional"`, `"functional_1"`, ... as Keras).
        trainable: bool.

    Call arguments:
        inputs: arrays structured as `inputs` was (one array, a list, or a dict by input name),
            each cast to its input's dtype.
        training: bool; True caches what `backward` needs.
        mask: None, or masks structured as `inputs` (None for an input without one).

    Returns:
        The outputs, structured as `outputs` was.

    Raises:
        ValueError: an input or output is not a `KerasTensor`; an output depends on an input
            that is not in `inputs`; two layers share a name.

    Example:
    >>> import numpy as np
    >>> from pylstm.layers import LSTM, Dense, Input
    >>> x = Input((5, 3), name="x")
    >>> y = Dense(1, name="y")(LSTM(4, name="lstm")(x))
    >>> model = Functional(x, y)
    >>> model(np.zeros((2, 5, 3), dtype="float32")).shape
    (2, 1)
    >>> [layer.name for layer in model.layers]
    ['x', 'lstm', 'y']
    """

    def __init__(self, inputs, outputs, name=None, trainable=True):
        super().__init__(name=name, trainable=trainable)
        for argument, structure in (("inputs", inputs), ("outputs", outputs)):
            leaves = flatten(structure)
            if not leaves:
                raise ValueError(f"Argument `{argument}` must hold at least one KerasTensor.")
            for leaf in leaves:
                if not isinstance(leaf, KerasTensor):
                    raise ValueError(f"All `{argument}` values must be KerasTensors (from "
                                     f"`pylstm.layers.Input` and layer calls), received "
                                     f"{type(leaf).__name__} {leaf!r:.80}.")
        self._inputs_struct = inputs
        self._outputs_struct = outputs
        # what calls, `predict` and `output_shape` return: one output given in a list comes
        # back alone, as Keras 3 unpacks it
        self._returned_struct = outputs[0] if isinstance(outputs, (list, tuple)) and \
            len(outputs) == 1 else outputs
        self.inputs = flatten(inputs)
        self.outputs = flatten(outputs)
        self._nodes, self._layers = _map_graph(self.inputs, self.outputs)
        self._sublayers = [layer for layer in self._layers if not isinstance(layer, InputLayer)]
        self.input_names = sorted(inputs) if isinstance(inputs, dict) else \
            [t.name for t in self.inputs]
        self.output_names = sorted(outputs) if isinstance(outputs, dict) else \
            [t._keras_history.layer.name for t in self.outputs]
        self._input_dtypes = [np.dtype(t.dtype) for t in self.inputs]
        float_outputs = [t.dtype for t in self.outputs if t.dtype in ("float32", "float64")]
        self.dtype = float_outputs[0] if float_outputs else "float32"
        self._own_nodes = {id(node) for node in self._nodes}
        self._shared = _shared_nodes(self._nodes)
        self._last_run = None
        self.input_shape = _pack(inputs, [t.shape for t in self.inputs])
        self.built = True

    # Structure -----------------------------------------------------------------------

    @property
    def layers(self):
        """Every layer of the graph once, `InputLayer`s included, in Keras's order (farthest
        from the outputs first, then by first visit from the outputs)."""
        return list(self._layers)

    def get_layer(self, name=None, index=None):
        """Returns a layer by `name` or by `index` into `layers` (Keras's `get_layer`).

        Raises:
            ValueError: neither or both given, or no layer matches.
        """
        if (name is None) == (index is None):
            raise ValueError(f"Provide exactly one of `name` and `index` to get_layer, "
                             f"received name={name!r}, index={index!r}.")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or \
                    not -len(self._layers) <= index < len(self._layers):
                raise ValueError(f"Was asked to retrieve layer at index {index!r} but model "
                                 f"'{self.name}' only has {len(self._layers)} layers.")
            return self._layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"No such layer: {name!r}. Existing layers are: "
                         f"{[layer.name for layer in self._layers]}.")

    @property
    def input(self):
        """The input tensors, structured as given (Keras's `Model.input`)."""
        return self._inputs_struct

    @property
    def output(self):
        """The output tensors, structured as given (Keras's `Model.output`)."""
        return self._outputs_struct

    @property
    def output_shape(self):
        return _pack(self._returned_struct, [t.shape for t in self.outputs])

    def build(self, input_shape):
        """A functional model is built when made; this does nothing."""

    def _ensure_built_flat(self, shapes):
        """Checks that arrays of `shapes` (one per input) fit the inputs' declared shapes.

        Raises:
            ValueError: for a rank or a known dimension that differs.
        """
        for tensor, name, shape in zip(self.inputs, self.input_names, shapes):
            expected = tensor.shape
            if len(shape) != len(expected) or any(
                    d is not None and d != s for d, s in zip(expected[1:], shape[1:])):
                raise ValueError(f"Input {name!r} of model '{self.name}' expects arrays of "
                                 f"shape {expected}, received shape {tuple(shape)}.")

    # Weights -------------------------------------------------------------------------

    @property
    def variables(self):
        """Every layer's `Variable`s once, layer by layer in `layers` order (Keras's
        `model.weights`)."""
        return _unique(v for layer in self._sublayers for v in layer.variables)

    @property
    def trainable_variables(self):
        if not self.trainable:
            return []
        return _unique(v for layer in self._sublayers for v in layer.trainable_variables)

    @property
    def losses(self):
        """The activity regularizers' penalties of the last call (every call of a shared
        layer), then the trainable weights' regularizers' (Keras 3's `Model.losses`)."""
        return list(self._activity_losses) + [
            float(v.regularizer(v.value)) for v in self.trainable_variables
            if v.regularizer is not None]

    def reset_states(self, mask=None):
        """Resets the states of every stateful layer (Keras's `reset_states`).

        Args:
            mask: None (all samples) or a `(B,)` bool array: reset only those samples.
        """
        for layer in self._sublayers:
            layer.reset_state(mask)

    reset_state = reset_states

    def summary(self, print_fn=None):
        """Prints a Keras-like table: layer name (type), output shape, parameter count and the
        tensors each layer is connected to (`name[node][tensor]`).

        Args:
            print_fn: callable taking one line (str); defaults to `print`.
        """
        rows = []
        for layer in self._layers:
            nodes = [n for n in layer._inbound_nodes if id(n) in self._own_nodes or n.is_input]
            shape = nodes[0].outputs[0].shape if len(nodes[0].outputs) == 1 else \
                [t.shape for t in nodes[0].outputs]
            sources = [self._tensor_label(t) for n in nodes for t in n.input_tensors]
            rows.append((f"{layer.name} ({type(layer).__name__})", str(shape),
                         f"{layer.count_params():,}", ", ".join(sources) or "-"))
        print_summary(self, ("Layer (type)", "Output Shape", "Param #", "Connected to"), rows,
                      (33, 26, 12, 30), print_fn)

    def _tensor_label(self, tensor):
        layer, node_index, tensor_index = tensor._keras_history
        return f"{layer.name}[{self._node_position(layer, node_index)}][{tensor_index}]"

    def _node_position(self, layer, node_index):
        """The index of `layer`'s call `node_index` among its calls in this model (Keras
        numbers a layer's nodes within the model that saves them)."""
        return sum(1 for node in layer._inbound_nodes[:node_index]
                   if id(node) in self._own_nodes or node.is_input)

    # Forward and backward ------------------------------------------------------------

    def _forward_flat(self, xs, training):
        """Runs the graph on one array per input (in `inputs` order, already cast).

        Returns:
            `(ys, masks)`: one array per output, and each output's `(B, T)` bool mask or None.
        """
        values, masks = self._run(list(xs), None, training)
        return ([values[id(t)] for t in self.outputs], [masks.get(id(t)) for t in self.outputs])

    def _backward_flat(self, grads):
        """Sends one gradient (or None) per output back through the graph; weight gradients
        (activity regularizers' included) are added into `Variable.grad`.

        Returns:
            One gradient (or None) per input.
        """
        state = self._last_run
        if state is None or not state.training:
            raise RuntimeError(f"Model '{self.name}': call it with training=True before "
                               f"backward().")
        grads = list(grads)
        if len(grads) != len(self.outputs):
            raise ValueError(f"Model '{self.name}' has {len(self.outputs)} outputs; backward "
                             f"received {len(grads)} gradients.")
        pending = {}
        for tensor, grad in zip(self.outputs, grads):
            _add_grad(pending, tensor, grad)
        for i in range(len(self._nodes) - 1, -1, -1):
            node = self._nodes[i]
            out_grads = [pending.pop(id(t), None) for t in node.outputs]
            if all(g is None for g in out_grads):
                continue
            if i in state.snapshots:
                _restore(state.snapshots[i])
            grad = out_grads if node.returns_list else out_grads[0]
            d_inputs = node.layer.backward_with_penalties(grad)
            states = _tensor_states(node)
            if states is not None:
                d_inputs, d_states = d_inputs
                _route(pending, states, d_states, node)
            _route(pending, node.call_args[0], d_inputs, node)
        if state.final is not None:
            _restore(state.final)
        return [pending.get(id(t)) for t in self.inputs]

    def _run(self, xs, input_masks, training):
        """Runs every node; returns `(values, masks)` keyed by tensor id."""
        values = {id(t): x for t, x in zip(self.inputs, xs)}
        masks = {}
        if input_masks is not None:
            masks = {id(t): m for t, m in zip(self.inputs, input_masks) if m is not None}
        snapshots = {}
        penalties = []

        def value(leaf):
            return values[id(leaf)] if isinstance(leaf, KerasTensor) else leaf

        for i, node in enumerate(self._nodes):
            inputs = map_structure(value, node.call_args[0])
            kwargs = map_structure(value, node.call_kwargs)
            mask = kwargs.pop("mask", None)
            inherited = None
            if mask is None:
                mask = map_structure(lambda t: masks.get(id(t)) if isinstance(t, KerasTensor)
                                     else None, node.call_args[0])
                if all(m is None for m in flatten(mask)):
                    mask = None
                elif is_symbolic((), node.call_kwargs):
                    # Keras 3 passes the inputs' mask to a call only when the inputs are its
                    # one tensor argument: a layer also given tensors by keyword (an LSTM's
                    # `initial_state`) runs unmasked, and its outputs carry the mask that
                    # `compute_mask` gives from the inputs' mask.
                    inherited, mask = mask, None
            outputs, out_mask = call_and_mask(node.layer, inputs, training, mask, **kwargs)
            if inherited is not None:
                out_mask = node.layer.compute_mask(inputs, inherited)
            outputs = list(outputs) if node.returns_list else [outputs]
            if len(outputs) != len(node.outputs):
                raise ValueError(f"Layer '{node.layer.name}' returned {len(outputs)} outputs; "
                                 f"the graph traced {len(node.outputs)}.")
            if not isinstance(out_mask, (list, tuple)):
                out_mask = [out_mask] * len(outputs)
            for tensor, y, m in zip(node.outputs, outputs, out_mask):
                values[id(tensor)] = y
                if m is not None:
                    masks[id(tensor)] = m
            penalties += _call_penalties(node.layer)
            if training and i in self._shared:
                snapshots[i] = _snapshot(node.layer)
        final = None
        if training and snapshots:
            final = [item for i in sorted({self._shared[i] for i in snapshots})
                     for item in _snapshot(self._nodes[i].layer)]
        self._activity_losses = penalties
        self._last_run = _Run(bool(training), snapshots, final)
        return values, masks

    def _call_with_mask(self, inputs, training=False, mask=None):
        """Runs the model as one call of an enclosing graph; returns `(outputs, masks)`, each
        structured as `outputs`."""
        xs = self._flatten_call(inputs, "inputs")
        xs = [np.asarray(x, dtype=t.dtype) for x, t in zip(xs, self.inputs)]
        input_masks = None if mask is None else self._flatten_call(mask, "mask")
        values, masks = self._run(xs, input_masks, training)
        return (_pack(self._returned_struct, [values[id(t)] for t in self.outputs]),
                _pack(self._returned_struct, [masks.get(id(t)) for t in self.outputs]))

    def _flatten_call(self, inputs, argument):
        if len(self.inputs) == 1 and not isinstance(inputs, (list, tuple, dict)):
            return [inputs]
        if isinstance(inputs, dict) and not isinstance(self._inputs_struct, dict):
            inputs = [inputs.get(name) for name in self.input_names]
        flat = flatten(inputs) if isinstance(inputs, (list, tuple, dict)) else [inputs]
        if len(flat) != len(self.inputs):
            raise ValueError(f"Model '{self.name}' expects {len(self.inputs)} `{argument}` "
                             f"{self.input_names}, received {len(flat)}.")
        return flat

    def call(self, inputs, training=False, mask=None):
        return self._call_with_mask(inputs, training=training, mask=mask)[0]

    def backward(self, grad_outputs):
        """Backpropagates through the last `call(..., training=True)`.

        Args:
            grad_outputs: gradients structured as the outputs (None for an output without one).

        Returns:
            The gradients with respect to the inputs, structured as `inputs` (None for an
            integer input, such as token ids).
        """
        if len(self.outputs) == 1 and not isinstance(grad_outputs, (list, tuple, dict)):
            grads = [grad_outputs]
        elif isinstance(grad_outputs, dict):
            grads = [grad_outputs.get(name) for name in self.output_names]
        else:
            grads = list(grad_outputs)
        return _pack(self._inputs_struct, self._backward_flat(grads))

    def compute_output_shape(self, input_shape):
        """The output shapes for inputs of `input_shape` (one shape, or a list or dict of
        them as `inputs`), traced through each layer's `compute_output_shape`."""
        if len(self.inputs) == 1 and not _is_shape_structure(input_shape):
            shapes = [tuple(input_shape)]
        elif isinstance(input_shape, dict):
            shapes = [tuple(input_shape[k]) for k in sorted(input_shape)]
        else:
            shapes = [tuple(s) for s in input_shape]
        known = {id(t): s for t, s in zip(self.inputs, shapes)}
        for node in self._nodes:
            in_shapes = map_structure(lambda t: known[id(t)], node.call_args[0])
            out = node.layer.compute_output_shape(
                in_shapes, **shape_arguments(node.layer, node.call_kwargs))
            out = list(out) if node.returns_list else [out]
            known.update({id(t): tuple(s) for t, s in zip(node.outputs, out)})
        return _pack(self._returned_struct, [known[id(t)] for t in self.outputs])

    def compute_mask(self, inputs, mask=None):
        """The output masks, structured as `outputs`, of running the model on `inputs`."""
        return self._call_with_mask(inputs, training=False, mask=mask)[1]

    def _traced_output_masks(self, input_has_mask):
        """Whether each output carries a mask when the inputs do as `input_has_mask` says
        (list of bools in input order), traced through the graph without running it."""
        flags = {id(t): f for t, f in zip(self.inputs, input_has_mask)}
        for node in self._nodes:
            outs = traced_masks(node.layer, node.call_args[0], node.call_kwargs.get("mask"),
                                len(node.outputs), has_mask=lambda t: flags[id(t)])
            flags.update({id(t): f for t, f in zip(node.outputs, outs)})
        return [flags[id(t)] for t in self.outputs]

    def _pack_outputs(self, ys):
        """The outputs as `predict` returns them: structured as `outputs`."""
        return _pack(self._returned_struct, list(ys))

    # Config and saving ---------------------------------------------------------------

    def get_config(self):
        """Returns the graph in Keras 3's functional config format.

        `{"name", "trainable", "layers": [{"class_name", "config", "name", "inbound_nodes":
        [{"args": [...], "kwargs": {...}}, ...]}, ...], "input_layers", "output_layers"}`, where
        each tensor argument is `{"class_name": "__keras_tensor__", "config": {"shape",
        "dtype", "keras_history": [layer name, node index, tensor index]}}` and
        `input_layers` / `output_layers` hold `[layer name, node index, tensor index]` triples
        structured as `inputs` / `outputs`. Node indices count a layer's calls within this
        model; a nested functional model's calls count from 1 in `input_layers` /
        `output_layers` (Keras reserves its node 0).

        Raises:
            ValueError: an input is an intermediate tensor, not one `Input` made.
        """
        for tensor in self.inputs:
            if not isinstance(tensor._keras_history.layer, InputLayer):
                raise ValueError(f"Model '{self.name}' cannot be serialized: its input "
                                 f"{tensor.name!r} is not made by `Input`.")

        def tensor_config(tensor):
            layer, node_index, tensor_index = tensor._keras_history
            return {"class_name": "__keras_tensor__",
                    "config": {"shape": list(tensor.shape), "dtype": tensor.dtype,
                               "keras_history": [layer.name,
                                                 self._node_position(layer, node_index),
                                                 tensor_index]}}

        def leaf_config(leaf):
            return tensor_config(leaf) if isinstance(leaf, KerasTensor) else leaf

        layers = []
        for layer in self._layers:
            nodes = [node for node in layer._inbound_nodes if id(node) in self._own_nodes]
            entry = serialize(layer)
            entry["name"] = layer.name
            entry["inbound_nodes"] = [
                {"args": map_structure(leaf_config, list(node.call_args)),
                 "kwargs": map_structure(leaf_config, node.call_kwargs)} for node in nodes]
            layers.append(entry)

        def history(tensor):
            layer, node_index, tensor_index = tensor._keras_history
            offset = 1 if isinstance(layer, Functional) else 0
            return [layer.name, self._node_position(layer, node_index) + offset, tensor_index]

        return {"name": self.name, "trainable": self.trainable, "layers": layers,
                "input_layers": map_structure(history, _as_lists(self._inputs_struct)),
                "output_layers": map_structure(history, _as_lists(self._outputs_struct))}

    @classmethod
    def from_config(cls, config, layer_from_config=None):
        """Rebuilds the (uncompiled) model from `get_config()`'s output, or from a Keras 3
        functional config (and Keras 2's list form of `inbound_nodes`) whose layers
        `layer_from_config` can make.

        The config is treated as untrusted: every field is checked before use.

        Args:
            config: dict, as `get_config()` returns.
            layer_from_config: callable taking one entry of `config["layers"]` and returning
                the `Layer`; by default `pylstm.layers.deserialize` (nested `Functional` and
                `Sequential` models included).

        Raises:
            ValueError: a field is missing or of the wrong type, a layer name is repeated, a
                tensor refers to a layer or call that does not exist, or the graph cannot be
                rebuilt (a loop, a disconnected call).
        """
        return _from_config(cls, config, layer_from_config or _deserialize_layer)

    def save(self, path):
        """Saves the model to one file: the Keras 3 format for a path ending in `.keras`,
        else pylstm's own; see `pylstm.models.save_model`."""
        _formats.find("save_model", path)(self, path)

    def save_weights(self, path):
        """Writes the weights as a Keras 3 `.weights.h5` file; see
        `pylstm.models.save_keras_weights`."""
        _formats.find("save_weights", path)(self, path)

    def load_weights(self, path):
        """Loads Keras weights into this model; see `pylstm.models.load_keras_weights`."""
        _formats.find("load_weights", path)(self, path)


Model = Functional


_Run = collections.namedtuple("_Run", ["training", "snapshots", "final"])


# Graph ---------------------------------------------------------------------------------------


def _map_graph(inputs, outputs):
    """The nodes to run, in a topological order, and the layers in Keras's order.

    Walks depth-first from each output to the inputs (Keras 3's `map_graph`): the nodes come
    in post-order; a layer's depth is its greatest distance (in calls) from an output, and the
    layers are listed by decreasing depth, then by first visit.

    Raises:
        ValueError: a tensor that no `Input` made, or an output that depends on an `Input`
            missing from `inputs`.
    """
    input_ids = {id(t) for t in inputs}
    order, finished, first_visit = [], set(), {}
    for output in outputs:
        stack = [(output, False)]
        while stack:
            tensor, expanded = stack.pop()
            history = tensor._keras_history
            if history is None:
                raise ValueError(f"The tensor {tensor!r} was not made by a layer call or "
                                 f"`pylstm.layers.Input`; a model's tensors must be.")
            node = history.layer._inbound_nodes[history.node_index]
            if id(node) in finished:
                continue
            if id(tensor) in input_ids and not node.is_input:
                continue
            first_visit.setdefault(id(history.layer), (len(first_visit), history.layer))
            if node.is_input:
                if id(tensor) not in input_ids:
                    raise ValueError(f"Output {output.name!r} depends on the input "
                                     f"{tensor.name!r} (layer '{history.layer.name}'), which is "
                                     f"not in `inputs`; pass it in `inputs`.")
                finished.add(id(node))
                order.append(node)
                continue
            if expanded:
                finished.add(id(node))
                order.append(node)
                continue
            stack.append((tensor, True))
            for parent in reversed(node.input_tensors):
                stack.append((parent, False))
    for tensor in inputs:  # inputs no output uses still count as layers, as Keras
        layer = tensor._keras_history.layer if tensor._keras_history else None
        if isinstance(layer, InputLayer) and id(layer) not in first_visit:
            first_visit[id(layer)] = (-1, layer)
    depth, layer_depth = {}, {}
    for node in reversed(order):
        d = max(depth.setdefault(id(node), 0), layer_depth.get(id(node.layer), 0))
        layer_depth[id(node.layer)] = depth[id(node)] = d
        if node.is_input:
            continue
        for parent in node.parent_nodes:
            if not (parent.is_input or id(parent) in finished):
                continue
            depth[id(parent)] = max(d + 1, depth.get(id(parent), 0))
    layers = sorted((entry for entry in first_visit.values()),
                    key=lambda e: (-layer_depth.get(id(e[1]), 0), e[0]))
    layers = [layer for _, layer in layers]
    names = collections.Counter(layer.name for layer in layers)
    repeated = [name for name, count in names.items() if count > 1]
    if repeated:
        raise ValueError(f"The name {repeated[0]!r} is used {names[repeated[0]]} times in the "
                         f"model. All layer names should be unique.")
    return [node for node in order if not node.is_input], layers


def _layer_tree(layer):
    """`layer` and its sublayers at any depth (a model's layers, a wrapper's inner layer)."""
    out, stack = [], [layer]
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(reversed(current._sublayers))
    return out


def _shared_nodes(nodes):
    """The nodes whose layers (or sublayers) another node also runs, mapped to the index of
    the first such node of the same layer (whose snapshot holds the final state)."""
    uses = collections.Counter(id(sub) for node in nodes for sub in _layer_tree(node.layer))
    shared, first = {}, {}
    for i, node in enumerate(nodes):
        if any(uses[id(sub)] > 1 for sub in _layer_tree(node.layer)):
            shared[i] = first.setdefault(id(node.layer), i)
    return shared


def _snapshot(layer):
    return [(sub, dict(sub.__dict__)) for sub in _layer_tree(layer)]


def _restore(snapshot):
    for layer, attributes in snapshot:
        layer.__dict__.update(attributes)


def _call_penalties(layer):
    """The activity regularizers' penalties of the call `layer` just made (its sublayers'
    included; a nested model holds all of its own)."""
    if isinstance(layer, Functional):
        return list(layer._activity_losses)
    return list(layer._activity_losses) + [p for sub in layer._sublayers
                                           for p in _call_penalties(sub)]


def _tensor_states(node):
    """The `initial_state` argument of a node when it holds tensors (its backward then
    returns `(d_inputs, d_initial_state)`), else None."""
    states = node.call_kwargs.get("initial_state")
    if states is not None and any(isinstance(t, KerasTensor) for t in flatten(states)):
        return states
    return None


def _add_grad(pending, tensor, grad):
    if grad is None:
        return
    previous = pending.get(id(tensor))
    pending[id(tensor)] = grad if previous is None else previous + grad


def _route(pending, structure, grads, node):
    """Adds each gradient of `grads` to the tensor at the same place in `structure`."""
    tensors = flatten(structure)
    if len(tensors) == 1 and not isinstance(grads, (list, tuple, dict)):
        grads = [grads]
    elif grads is None:
        return
    else:
        grads = flatten(grads)
    if len(grads) != len(tensors):
        raise ValueError(f"Layer '{node.layer.name}' returned {len(grads)} input gradients "
                         f"from backward for {len(tensors)} inputs.")
    for tensor, grad in zip(tensors, grads):
        if isinstance(tensor, KerasTensor):
            _add_grad(pending, tensor, grad)


def _pack(structure, flat):
    """`flat` (in `flatten(structure)` order) laid out as `structure`: one value, a list, or a
    dict."""
    if isinstance(structure, dict):
        return dict(zip(sorted(structure), flat))
    if isinstance(structure, (list, tuple)):
        return list(flat)
    return flat[0]


def _as_lists(structure):
    return {k: structure[k] for k in sorted(structure)} if isinstance(structure, dict) else \
        (list(structure) if isinstance(structure, tuple) else structure)


def _is_shape_structure(value):
    return isinstance(value, dict) or (isinstance(value, (list, tuple)) and len(value) > 0 and
                                       all(isinstance(s, (list, tuple)) for s in value))


def _unique(variables):
    seen, out = set(), []
    for v in variables:
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


# Config --------------------------------------------------------------------------------------


def _deserialize_layer(entry):
    """A layer from one `layers` entry of a functional config (a nested model included)."""
    from pylstm.models.sequential import Sequential

    models = {"Functional": Functional, "Sequential": Sequential}
    class_name = entry.get("class_name")
    model_class = models.get(class_name) if isinstance(class_name, str) else None
    if model_class is not None:
        if not isinstance(entry.get("config"), dict):
            raise ValueError(f"Layer {entry.get('name')!r}: its `config` must be a dict, "
                             f"received {type(entry.get('config')).__name__}.")
        return model_class.from_config(dict(entry["config"]))
    return deserialize({"class_name": entry.get("class_name"), "config": entry.get("config")})


def _from_config(cls, config, layer_from_config):
    if not isinstance(config, dict):
        raise ValueError(f"A functional model config must be a dict, received "
                         f"{type(config).__name__}.")
    entries = config.get("layers")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"Functional config's `layers` must be a non-empty list of layer "
                         f"entries, received {_describe(entries)}.")
    name = config.get("name")
    if name is not None and not isinstance(name, str):
        raise ValueError(f"Functional config's `name` must be a str, received {_describe(name)}.")
    trainable = config.get("trainable", True)
    if not isinstance(trainable, bool):
        raise ValueError(f"Functional config's `trainable` must be a bool, received "
                         f"{_describe(trainable)}.")
    created, pending = {}, []
    for entry in entries:
        if not isinstance(entry, dict):
            raise ValueError(f"Each entry of a functional config's `layers` must be a dict, "
                             f"received {_describe(entry)}.")
        layer_name = entry.get("name")
        if layer_name is None and isinstance(entry.get("config"), dict):
            layer_name = entry["config"].get("name")
        if not isinstance(layer_name, str):
            raise ValueError(f"Each layer entry needs a str `name`, received "
                             f"{_describe(layer_name)}.")
        if layer_name in created:
            raise ValueError(f"The layer name {layer_name!r} appears twice in the functional "
                             f"config.")
        nodes = entry.get("inbound_nodes", [])
        if not isinstance(nodes, list):
            raise ValueError(f"Layer {layer_name!r}: `inbound_nodes` must be a list, received "
                             f"{_describe(nodes)}.")
        try:
            layer = layer_from_config(entry)
        except (TypeError, KeyError, IndexError, AttributeError, OverflowError) as e:
            raise ValueError(f"Layer {layer_name!r}: its config cannot be read "
                             f"({type(e).__name__}: {e})") from e
        if not isinstance(layer, Layer):
            raise ValueError(f"Layer {layer_name!r}: its entry made a "
                             f"{type(layer).__name__}, not a layer.")
        if layer.name != layer_name:
            raise ValueError(f"Layer entry {layer_name!r} made a layer named {layer.name!r}; "
                             f"an entry's `name` must match its config's.")
        created[layer_name] = layer
        pending.append((layer, [_parse_node(layer_name, node) for node in nodes]))
    calls = {name: [] for name in created}  # the tensors of each call made, per layer
    pending = {layer.name: collections.deque(nodes) for layer, nodes in pending}
    for start in created:
        # Depth-first over the calls a call needs, so any order of the entries takes one
        # visit per call (Keras retries the pending calls in rounds instead).
        stack = [start] if pending[start] else []
        on_stack = set(stack)
        while stack:
            current = stack[-1]
            args, kwargs, missing = _resolve(pending[current][0], created, calls)
            if missing is None:
                layer = created[current]
                try:
                    outputs = layer(*args, **kwargs)
                except (TypeError, ValueError) as e:
                    raise ValueError(f"Invalid functional config: the call of layer "
                                     f"{current!r} cannot be rebuilt ({e})") from e
                calls[current].append(outputs if isinstance(outputs, list) else [outputs])
                pending[current].popleft()
                on_stack.discard(stack.pop())
                if pending[start] and not stack:
                    stack.append(start)
                    on_stack.add(start)
                continue
            if not pending[missing] or missing in on_stack:
                raise ValueError(f"Invalid functional config: a call of layer {current!r} refers "
                                 f"to a tensor of {missing!r} that no call makes "
                                 f"({'a loop' if missing in on_stack else 'a missing call'}).")
            stack.append(missing)
            on_stack.add(missing)

    def tensor_at(triple, where):
        layer_name, node_index, tensor_index = _check_triple(triple, where)
        if layer_name not in created:
            raise ValueError(f"Functional config's `{where}` refers to the unknown layer "
                             f"{layer_name!r}.")
        layer = created[layer_name]
        if isinstance(layer, InputLayer):
            made = [[layer.output]]
        else:
            made = calls[layer_name]
            node_index -= 1 if isinstance(layer, Functional) else 0
        if not 0 <= node_index < len(made) or not 0 <= tensor_index < len(made[node_index]):
            raise ValueError(f"Functional config's `{where}` refers to tensor "
                             f"{list(triple)!r}, which layer {layer_name!r} does not make.")
        return made[node_index][tensor_index]

    inputs = _map_triples(config.get("input_layers"), lambda t: tensor_at(t, "input_layers"),
                          "input_layers")
    outputs = _map_triples(config.get("output_layers"), lambda t: tensor_at(t, "output_layers"),
                           "output_layers")
    return cls(inputs, outputs, name=name, trainable=trainable)


def _describe(value):
    text = repr(value)
    return text if len(text) <= 80 else f"a {type(value).__name__}"


def _check_triple(triple, where):
    if not (isinstance(triple, (list, tuple)) and len(triple) >= 3 and
            isinstance(triple[0], str) and
            all(isinstance(i, int) and not isinstance(i, bool) for i in triple[1:3])):
        raise ValueError(f"Functional config's `{where}` must hold [layer name, node index, "
                         f"tensor index] triples, received {_describe(triple)}.")
    return triple[0], triple[1], triple[2]


def _is_triple(value):
    return isinstance(value, (list, tuple)) and len(value) == 3 and isinstance(value[0], str)


def _map_triples(structure, function, where):
    if _is_triple(structure):
        return function(structure)
    if isinstance(structure, dict) and structure:
        return {key: function(value) for key, value in structure.items()}
    if isinstance(structure, (list, tuple)) and structure and \
            all(_is_triple(item) for item in structure):
        return [function(item) for item in structure]
    raise ValueError(f"Functional config's `{where}` must be a [layer name, node index, tensor "
                     f"index] triple, or a non-empty list or dict of them, received "
                     f"{_describe(structure)}.")


_Call = collections.namedtuple("_Call", ["args", "kwargs"])


def _parse_node(layer_name, node):
    """One `inbound_nodes` entry as `_Call(args, kwargs)` with each tensor as a `("tensor",
    (layer, node, index))` marker: Keras 3's `{"args", "kwargs"}` form, or Keras 2's list of
    `[layer, node, index, kwargs]`."""
    where = f"layer {layer_name!r}'s inbound node"
    if isinstance(node, dict):
        args, kwargs = node.get("args", []), node.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError(f"In {where}, `args` must be a list and `kwargs` a dict, received "
                             f"{_describe(args)} and {_describe(kwargs)}.")
        if len(args) != 1:
            raise ValueError(f"In {where}, `args` must hold the one inputs argument that "
                             f"pylstm layers take, received {len(args)} arguments.")
        kwargs = {k: v for k, v in kwargs.items() if k != "training"}
        if kwargs.get("mask", 0) is None:
            del kwargs["mask"]
        return _Call(_parse_value(args, where, 0), _parse_value(kwargs, where, 0))
    if isinstance(node, list) and node:
        tensors, kwargs = [], {}
        for item in node:
            if not (isinstance(item, list) and len(item) in (3, 4)):
                raise ValueError(f"In {where}, each inbound tensor must be [layer, node, "
                                 f"tensor(, kwargs)], received {_describe(item)}.")
            tensors.append(("tensor", _check_triple(item, "inbound_nodes")))
            if len(item) == 4:
                if not isinstance(item[3], dict):
                    raise ValueError(f"In {where}, the call's kwargs must be a dict, received "
                                     f"{_describe(item[3])}.")
                kwargs = item[3]
        kwargs = {k: v for k, v in _parse_value(kwargs, where, 0).items() if k != "training"}
        return _Call([tensors[0] if len(tensors) == 1 else tensors], kwargs)
    raise ValueError(f"In {where}: expected a dict {{'args', 'kwargs'}} or a list of inbound "
                     f"tensors, received {_describe(node)}.")


_MAX_DEPTH = 32


def _parse_value(value, where, depth):
    if depth > _MAX_DEPTH:
        raise ValueError(f"In {where}, the arguments are nested more than {_MAX_DEPTH} deep.")
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            config = value.get("config")
            history = config.get("keras_history") if isinstance(config, dict) else None
            return ("tensor", _check_triple(history, "keras_history"))
        if not all(isinstance(k, str) for k in value):
            raise ValueError(f"In {where}, keyword argument names must be str.")
        return {k: _parse_value(v, where, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_parse_value(v, where, depth + 1) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"In {where}, an argument of type {type(value).__name__} cannot be read.")


def _resolve(call, created, calls):
    """The call's `(args, kwargs, None)` with its tensors in place, or `(None, None, name)`
    while a tensor of the layer `name` is not made yet."""
    missing = []

    def tensor(marker):
        layer_name, node_index, tensor_index = marker[1]
        if layer_name not in created:
            raise ValueError(f"A call refers to the unknown layer {layer_name!r}.")
        layer = created[layer_name]
        made = [[layer.output]] if isinstance(layer, InputLayer) else calls[layer_name]
        if node_index < 0 or tensor_index < 0:
            raise ValueError(f"A call refers to tensor [{layer_name!r}, {node_index}, "
                             f"{tensor_index}]: indices must be >= 0.")
        if node_index >= len(made):
            if isinstance(layer, InputLayer):
                raise ValueError(f"A call refers to call {node_index} of the input "
                                 f"{layer_name!r}, which has one.")
            missing.append(layer_name)
            return None
        if tensor_index >= len(made[node_index]):
            raise ValueError(f"A call refers to tensor [{layer_name!r}, {node_index}, "
                             f"{tensor_index}]; that call of {layer_name!r} makes "
                             f"{len(made[node_index])} tensors.")
        return made[node_index][tensor_index]

    def fill(value):
        if isinstance(value, tuple) and len(value) == 2 and value[0] == "tensor":
            return tensor(value)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    args, kwargs = fill(call.args), fill(call.kwargs)
    if missing:
        return None, None, missing[0]
    if not is_symbolic(args, kwargs):
        raise ValueError("A call in the functional config has no tensor argument.")
    return args, kwargs, None
