"""The graph of a Keras functional model config: read from Keras 2's or Keras 3's form, checked,
and put in the order Keras gives a model's layers.

Design:
    A functional model's config is `{"name", "trainable", "layers", "input_layers",
    "output_layers"}`. Each entry of `layers` is a serialized layer plus its `name` and its
    `inbound_nodes`: one node per call of the layer, holding the tensors it was called on as
    references `[layer name, node index, tensor index]`, output `tensor index` of call
    `node index` of that layer. An `InputLayer` has one node and no inbound nodes.

    - Keras 3 writes a node as `{"args": [...], "kwargs": {...}}`, the call's arguments with
      each tensor as `{"class_name": "__keras_tensor__", "config": {"shape", "dtype",
      "keras_history": [name, node, tensor]}}`; `input_layers` and `output_layers` are one
      reference, or a list or dict of them.
    - Keras 2 writes a node as the list of its input tensors, each `[name, node, tensor,
      kwargs]` (the layer is called on the one tensor, or on the list of them); an RNN layer
      called with `initial_state` has its states as extra inputs after the sequence.
      `input_layers` and `output_layers` are a list (or dict) of references.
    - Nested models: Keras 2 counts a nested model's construction as its node 0 (a Sequential's
      only when it was built with an input shape), so its calls are numbered from 1; Keras 3
      numbers them so only in `input_layers` and `output_layers`, for a nested Functional.

    `parse` reads either form into a `Graph` of `Node(args, kwargs)` holding `Ref`s numbered
    from 0 among calls, and checks it before any layer is built: unique layer names, references
    to known layers and existing calls, no cycle (a node may only use tensors of nodes before it
    in some order that keeps each layer's calls in their order), `input_layers` that are
    `InputLayer`s, outputs computable from them. Walks are iterative and call arguments at most
    `_MAX_DEPTH` deep, so a hostile config cannot recurse deeply; tensor indices are checked by
    the model built from the graph.

    `Graph.layer_order()` is the order of `keras.Model.layers` for the graph (Keras's
    `map_graph`): layers by decreasing depth from the outputs, ties in the order a depth-first
    walk from the outputs first reaches them. Keras addresses a functional model's weights by
    that order, and lists its config's layers in it.
"""

import collections
from typing import NamedTuple

# Keras model classes that a functional config may hold as layers.
MODEL_CLASSES = ("Functional", "Model", "Sequential")
# Layers to which Keras 2 passes `initial_state` as extra inputs.
_RNN_CLASSES = ("LSTM", "RNN", "Bidirectional")
# Keras call arguments nest at most a list of tensors in a list (a merge layer's inputs).
_MAX_DEPTH = 8
# Call keywords whose value is a tensor (or tensors) of the graph.
_TENSOR_KWARGS = ("initial_state", "mask")


class GraphError(ValueError):
    """A functional config that does not describe a model; the message says why."""


class Ref(NamedTuple):
    """Output `tensor` of call `node` (numbered from 0) of the layer named `layer`."""
    layer: str
    node: int
    tensor: int


class Node(NamedTuple):
    """One call of a layer: its positional and keyword arguments, tensors as `Ref`s."""
    args: list
    kwargs: dict

    def refs(self):
        """The `Ref`s of the call in Keras's order (`Node.input_tensors`): the positional
        arguments, then the keyword arguments by name."""
        return list(leaves([self.args, [self.kwargs[k] for k in sorted(self.kwargs)]]))


def leaves(structure):
    """Yields the `Ref`s of a structure of lists and dicts (dicts by sorted key, as Keras's
    `tree.flatten`), depth first."""
    stack = [structure]
    while stack:
        item = stack.pop()
        if isinstance(item, Ref):
            yield item
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(item[k] for k in sorted(item, reverse=True))


class Graph:
    """A checked functional graph.

    Attributes:
        entries: {layer name: its entry of the config's `layers`}, in the config's order.
        nodes: {layer name: [Node, ...]}, the calls of each layer (an `InputLayer`'s one node
            has no arguments).
        inputs, outputs: `Ref`, or a list or dict of them, as the model takes and returns them.
        call_order: the calls `(layer name, call index)` in an order in which each call's
            tensors are made before it.
    """

    def __init__(self, entries, nodes, inputs, outputs):
        self.entries, self.nodes, self.inputs, self.outputs = entries, nodes, inputs, outputs
        self.call_order = []

    def layer_order(self):
        """The layer names in the order of Keras's `model.layers` for this graph."""
        inputs = set(leaves(self.inputs))
        order, first_seen = [], {}
        done, in_progress = set(), set()
        for out in leaves(self.outputs):
            # Keras's recursive walk, iteratively: ("enter", ref) then ("leave", node).
            stack = [("enter", out)]
            while stack:
                action, item = stack.pop()
                if action == "leave":
                    in_progress.discard(item)
                    done.add(item)
                    order.append(item)
                    continue
                key = item[:2]
                if key in done:
                    continue
                if key in in_progress:  # `parse` refused cycles
                    raise GraphError(f"layer '{item.layer}' is part of a cycle")
                first_seen.setdefault(item.layer, len(first_seen))
                in_progress.add(key)
                stack.append(("leave", key))
                stack.extend(("enter", r) for r in reversed(self._node(key).refs()))
        node_depth, layer_depth = {}, {}
        graph_nodes = set(order)
        for key in reversed(order):
            depth = max(node_depth.setdefault(key, 0), layer_depth.get(key[0], 0))
            layer_depth[key[0]] = node_depth[key] = depth
            for ref in self._node(key).refs():
                parent = ref[:2]
                if parent in graph_nodes:
                    node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
        for ref in inputs:  # inputs the outputs do not use
            if ref.layer not in layer_depth:
                layer_depth[ref.layer], first_seen[ref.layer] = 0, -1
        return sorted(layer_depth, key=lambda name: (-layer_depth[name], first_seen[name]))

    def _node(self, key):
        return self.nodes[key[0]][key[1]]


def parse(config, legacy, drop_mask_operations=True):
    """Reads the `config` of a Keras functional model into a checked `Graph`.

    Args:
        config: dict, the model's `config` (`layers`, `input_layers`, `output_layers`).
        legacy: bool, True for Keras 2's form of nodes and references, False for Keras 3's.
        drop_mask_operations: bool; False keeps the operations that compute masks (to order
            the layers of a config as Keras will, operations included).

    Returns:
        A `Graph` whose entries are the config's layer entries, unchanged.

    Raises:
        GraphError: for anything in the graph that does not describe a model.
    """
    layers = config.get("layers")
    if not isinstance(layers, list) or not layers:
        raise GraphError("the functional model config has no list of layers")
    entries = {}
    for entry in layers:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise GraphError(f"a layer entry of the functional model has no name: "
                             f"{entry!r:.100}")
        if name in entries:
            raise GraphError(f"two layers are named '{name:.100}'")
        entries[name] = entry
    # Calls of a nested model that Keras numbers from 1.
    inbound_shift = {name: _builtin_nodes(entry) if legacy else 0
                     for name, entry in entries.items()}
    io_shift = (inbound_shift if legacy else
                {name: int(entry.get("class_name") in ("Functional", "Model"))
                 for name, entry in entries.items()})
    nodes = {}
    for name, entry in entries.items():
        inbound = entry.get("inbound_nodes")
        where = f"layer '{name:.100}'"
        if not isinstance(inbound, list):
            raise GraphError(f"{where} has no list of inbound nodes")
        if entry.get("class_name") == "InputLayer":
            if inbound:
                raise GraphError(f"{where} is an InputLayer called on other tensors")
            nodes[name] = [Node([], {})]
            continue
        if not inbound:
            raise GraphError(f"{where} is never called in the model")
        read = _keras2_node if legacy else _keras3_node
        nodes[name] = [read(node, entry.get("class_name"), inbound_shift, f"{where}'s node {i}")
                       for i, node in enumerate(inbound)]
    graph = Graph(entries, nodes, None, None)
    for name, calls in nodes.items():
        for i, node in enumerate(calls):
            for ref in node.refs():
                _check_ref(graph, ref, f"layer '{name:.100}''s node {i}")
    graph.inputs = _io_structure(config.get("input_layers"), io_shift, "input_layers", legacy)
    graph.outputs = _io_structure(config.get("output_layers"), io_shift, "output_layers", legacy)
    for ref in leaves(graph.inputs):
        _check_ref(graph, ref, "`input_layers`")
        if entries[ref.layer].get("class_name") != "InputLayer" or ref[1:] != (0, 0):
            raise GraphError(f"`input_layers` lists '{ref.layer:.100}' {list(ref[1:])}, which "
                             f"is not the output of an InputLayer")
    for ref in leaves(graph.outputs):
        _check_ref(graph, ref, "`output_layers`")
    if not list(leaves(graph.outputs)):
        raise GraphError("the model has no outputs")
    if drop_mask_operations:
        _drop_mask_operations(graph)
    graph.call_order = _call_order(graph)
    _check_connected(graph)
    return graph


def is_operation(entry):
    """Whether a config's layer entry is a Keras operation (a `keras.ops` function called on
    tensors of the graph), not a layer."""
    module = entry.get("module")
    return isinstance(module, str) and module.startswith("keras.src.ops")


def _drop_mask_operations(graph):
    """Drops the `mask` arguments computed by Keras operations, and the operations that nothing
    else uses.

    Keras 3 records the mask it propagates to a layer as the call's `mask` argument, computed
    by operations in the graph (`not_equal` for an Embedding's `mask_zero`, `any` of
    `not_equal` for a Masking layer, ...). pylstm's models propagate masks themselves, as
    Keras does when a call is not given one. Keras 3's legacy HDF5 files write operations
    without their module (and Keras cannot load them back); there an operation is an entry
    whose config has no `trainable`, which every layer's but an InputLayer's has.
    """
    operations = {name for name, entry in graph.entries.items() if is_operation(entry) or (
        "module" not in entry and entry.get("class_name") != "InputLayer"
        and isinstance(entry.get("config"), dict) and "trainable" not in entry["config"])}
    if not operations:
        return
    for calls in graph.nodes.values():
        for node in calls:
            mask = node.kwargs.get("mask")
            if mask is not None and all(ref.layer in operations for ref in leaves(mask)):
                del node.kwargs["mask"]
    uses = collections.Counter(ref.layer for calls in graph.nodes.values() for node in calls
                               for ref in node.refs())
    uses.update(ref.layer for ref in leaves(graph.outputs))
    unused = [name for name in operations if not uses[name]]
    while unused:
        name = unused.pop()
        for node in graph.nodes.pop(name):
            for ref in node.refs():
                uses[ref.layer] -= 1
                if ref.layer in operations and not uses[ref.layer]:
                    unused.append(ref.layer)
        del graph.entries[name]


def _builtin_nodes(entry):
    """1 if Keras 2 counted the nested model of `entry` (a config's layer entry) as called once
    when it was built, else 0."""
    class_name = entry.get("class_name")
    if class_name in ("Functional", "Model"):
        return 1
    if class_name != "Sequential":
        return 0
    body = entry.get("config")
    layers = body.get("layers") if isinstance(body, dict) else body
    first = layers[0] if isinstance(layers, list) and layers else None
    if not isinstance(first, dict):
        return 0
    config = first.get("config")
    return int(first.get("class_name") == "InputLayer" or (
        isinstance(config, dict) and config.get("batch_input_shape") is not None))


def _index(value, where):
    if type(value) is not int or value < 0:
        raise GraphError(f"{where} is not a non-negative int: {value!r:.100}")
    return value


def _reference(raw, shift, where, length=3):
    """A `Ref` from `[layer name, node index, tensor index]` (and `length - 3` more items)."""
    if not (isinstance(raw, list) and len(raw) == length and isinstance(raw[0], str)):
        raise GraphError(f"{where} is not a tensor reference [layer name, node index, tensor "
                         f"index]: {raw!r:.100}")
    node = _index(raw[1], f"{where}'s node index") - shift.get(raw[0], 0)
    if node < 0:
        raise GraphError(f"{where} refers to node {raw[1]} of model '{raw[0]:.100}', whose "
                         f"calls Keras numbers from {shift[raw[0]]}")
    return Ref(raw[0], node, _index(raw[2], f"{where}'s tensor index"))


def _keras3_value(value, shift, where, depth=0):
    """A Keras 3 call argument with its `__keras_tensor__`s as `Ref`s."""
    if depth > _MAX_DEPTH:
        raise GraphError(f"{where} nests its arguments too deeply")
    if isinstance(value, list):
        return [_keras3_value(v, shift, where, depth + 1) for v in value]
    if not isinstance(value, dict):
        return value
    class_name = value.get("class_name")
    if class_name == "__keras_tensor__":
        config = value.get("config")
        history = config.get("keras_history") if isinstance(config, dict) else None
        return _reference(history, shift, f"{where}'s tensor")
    if class_name == "__tuple__":
        config = value.get("config")
        items = config.get("value") if isinstance(config, dict) else None
        if not isinstance(items, list):
            raise GraphError(f"{where} holds a tuple without values")
        return _keras3_value(items, shift, where, depth + 1)
    return {k: _keras3_value(v, shift, where, depth + 1) for k, v in value.items()}


def _keras3_node(node, class_name, shift, where):
    if not (isinstance(node, dict) and isinstance(node.get("args"), list)
            and isinstance(node.get("kwargs", {}), dict)):
        raise GraphError(f"{where} is not a call {{'args': [...], 'kwargs': {{...}}}}: "
                         f"{node!r:.100}")
    args = _keras3_value(node["args"], shift, where)
    kwargs = _keras3_value(node.get("kwargs", {}), shift, where)
    return Node(args, _kwargs(kwargs, where))


def _keras2_node(node, class_name, shift, where):
    if not isinstance(node, list) or not node:
        raise GraphError(f"{where} is not a list of input tensors: {node!r:.100}")
    inputs, kwargs = [], {}
    for i, raw in enumerate(node):
        length = len(raw) if isinstance(raw, list) and len(raw) == 4 else 3
        inputs.append(_reference(raw, shift, f"{where}'s input {i}", length))
        if length == 4:
            if not isinstance(raw[3], dict):
                raise GraphError(f"{where}'s input {i} has call arguments that are not a "
                                 f"dict: {raw[3]!r:.100}")
            kwargs = raw[3]
    # Keras 2 wrote tensors among the call's keywords as bare references.
    kwargs = {key: _keras2_tensors(value, shift, f"{where}'s `{key}`")
              if key in _TENSOR_KWARGS else value for key, value in kwargs.items()}
    if len(inputs) == 1:
        return Node([inputs[0]], _kwargs(kwargs, where))
    if class_name in _RNN_CLASSES:
        if kwargs.get("initial_state") is not None:
            raise GraphError(f"{where} passes initial states twice")
        kwargs = dict(kwargs, initial_state=inputs[1:])
        return Node([inputs[0]], _kwargs(kwargs, where))
    return Node([inputs], _kwargs(kwargs, where))


def _keras2_tensors(value, shift, where):
    """A reference or a list of references (or None) among Keras 2's call keywords."""
    if value is None:
        return None
    if isinstance(value, list) and value and isinstance(value[0], str):
        return _reference(value, shift, where)
    if isinstance(value, list) and len(value) <= 2**16:
        return [None if v is None else _reference(v, shift, where) for v in value]
    raise GraphError(f"{where} is not a tensor reference or a list of them: {value!r:.100}")


def _kwargs(kwargs, where):
    """The call keywords to pass on: not `training` (set by `fit` and `predict`), nor a mask
    or initial state without tensors (Keras writes `mask: None`); values are tensors and JSON
    scalars, in lists and dicts."""
    kept = {}
    for key, value in kwargs.items():
        if key == "training" and value in (None, False, True):
            continue
        if key in _TENSOR_KWARGS and not list(leaves(value)):
            continue
        if not isinstance(key, str) or not key.isidentifier():
            raise GraphError(f"{where} passes a call argument named {key!r:.100}")
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, (list, dict)):
                stack.extend(item.values() if isinstance(item, dict) else item)
            elif not isinstance(item, (Ref, str, int, float, type(None))):
                raise GraphError(f"{where}'s `{key}` cannot be read: {value!r:.100}")
        kept[key] = value
    return kept


def _check_ref(graph, ref, where):
    if ref.layer not in graph.nodes:
        raise GraphError(f"{where} refers to layer '{ref.layer:.100}', which the model does "
                         f"not have")
    calls = len(graph.nodes[ref.layer])
    if ref.node >= calls:
        raise GraphError(f"{where} refers to call {ref.node} of layer '{ref.layer:.100}', "
                         f"which is called {calls} time{'s' * (calls != 1)}")


def _call_order(graph):
    """The calls `(layer name, call index)` in an order in which each comes after the calls
    whose tensors it uses and after the earlier calls of its layer (Kahn's algorithm, in the
    config's order where free); raises if there is none (a cycle)."""
    users = collections.defaultdict(list)
    waiting = {}
    for name, calls in graph.nodes.items():
        for i, node in enumerate(calls):
            needs = {ref[:2] for ref in node.refs()}
            if i:
                needs.add((name, i - 1))
            waiting[(name, i)] = len(needs)
            for need in needs:
                users[need].append((name, i))
    ready = collections.deque(key for key, count in waiting.items() if count == 0)
    order = []
    while ready:
        key = ready.popleft()
        order.append(key)
        for user in users[key]:
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    if len(order) < len(waiting):
        name, i = next(key for key, count in waiting.items() if count)
        raise GraphError(f"call {i} of layer '{name:.100}' uses a tensor that cannot be "
                         f"computed before it (the graph has a cycle)")
    return order


def _io_structure(value, shift, field, legacy, depth=0):
    """`input_layers` / `output_layers`: a reference, or a list or dict of them, as `Ref`s;
    Keras 2's one-item list is one tensor (Keras 2 wrote every model's inputs as a list)."""
    if depth > _MAX_DEPTH:
        raise GraphError(f"`{field}` is nested too deeply")
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        return _reference(value, shift, f"`{field}`")
    if isinstance(value, list) and value:
        items = [_io_structure(v, shift, field, legacy, depth + 1) for v in value]
        return items[0] if legacy and depth == 0 and len(items) == 1 else items
    if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
        return {k: _io_structure(v, shift, field, legacy, depth + 1) for k, v in value.items()}
    raise GraphError(f"`{field}` is not a tensor reference [layer name, node index, tensor "
                     f"index] or a list or dict of them: {value!r:.100}")


def _check_connected(graph):
    """Raises if an output depends on an `InputLayer` that is not among the inputs."""
    inputs = {ref.layer for ref in leaves(graph.inputs)}
    seen, stack = set(), [ref[:2] for ref in leaves(graph.outputs)]
    while stack:
        key = stack.pop()
        if key in seen:
            continue
        seen.add(key)
        if graph.entries[key[0]].get("class_name") == "InputLayer" and key[0] not in inputs:
            raise GraphError(f"the outputs depend on InputLayer '{key[0]:.100}', which is not "
                             f"among the model's `input_layers` (a disconnected graph)")
        stack.extend(ref[:2] for ref in graph._node(key).refs())
