"""`load`: run an ONNX graph with NumPy, its LSTM nodes on pylstm's compiled core.

The file is parsed by the `onnx` package (protobuf: parsing never runs code) and checked before
anything is allocated: every stored tensor's declared size must fit in the bytes of the file, no
tensor may live in an external data file, every node input must be produced before it is used
(so a cycle is an error), and every op type must be one `pylstm.onnx._ops.OPS` runs. A file
that fails a check raises `ValueError`; nothing is executed until `run`.

What a run does once per node is done at load instead (an LSTM node's weights converted and
checked; whether its initial states are stored zeros), and the nodes that compute only from
the inputs' shapes (exporters' zero initial states) run once per input shape: later runs of
that shape reuse their outputs (a few, small: at most 16 shapes of 1 MiB each per model).
"""

import numpy as np

_HINT = "pylstm.onnx needs the `onnx` package: pip install pylstm[onnx]"


def _onnx():
    try:
        import onnx
    except ImportError as error:
        raise ImportError(_HINT) from error
    return onnx


def _tensor(onnx, tensor, budget, where):
    """A TensorProto as an array, after checking its declared size against the `budget` bytes
    of the file."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data):
        raise ValueError(f"{where}: tensor {tensor.name!r} refers to external data, which "
                         "pylstm.onnx does not read.")
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
    except Exception as error:
        raise ValueError(f"{where}: tensor {tensor.name!r} has unsupported data type "
                         f"{tensor.data_type}.") from error
    if any(d < 0 for d in tensor.dims):
        raise ValueError(f"{where}: tensor {tensor.name!r} has negative dims {list(tensor.dims)}.")
    # Every stored element takes at least half a byte of the file (4-bit types), so a tensor
    # declaring more elements than that is refused before anything is allocated.
    elements = int(np.prod(tensor.dims, dtype=np.float64))
    if elements > 2 * budget:
        raise ValueError(f"{where}: tensor {tensor.name!r} declares {elements} elements, more "
                         f"than the {budget} bytes of the file can hold.")
    try:
        return onnx.numpy_helper.to_array(tensor)
    except Exception as error:
        raise ValueError(f"{where}: tensor {tensor.name!r} is malformed: {error}") from error


def _attributes(onnx, node, budget):
    attrs = {}
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.TENSOR:
            attrs[attr.name] = _tensor(onnx, attr.t, budget, f"Node {node.name!r}")
        elif attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            raise ValueError(f"Node {node.name!r} ({node.op_type}) has a subgraph attribute "
                             f"{attr.name!r}, which pylstm.onnx does not run.")
        else:
            value = onnx.helper.get_attribute_value(attr)
            if isinstance(value, bytes):
                value = value.decode()
            attrs[attr.name] = value
    return attrs


class OnnxModel:
    """An ONNX graph ready to run with NumPy (what `pylstm.onnx.load` returns).

    It runs as ONNX Runtime's `InferenceSession.run`: `run(output_names, feed)`, with
    `output_names` a list of graph output names or None for all and `feed` a dict from input
    names to arrays, returns a list of arrays; `model(**feed)` is `run(None, feed)`.

    Attributes:
        input_names: the graph's inputs (without initializers).
        output_names: the graph's outputs.

    Raises:
        ValueError: from `run`, for a graph input missing from `feed`, a name that is not a
            graph input or output, or a node that cannot run on the arrays given (the message
            names the node).

    Example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> from pylstm.layers import Input, LSTM
    >>> from pylstm.models import Sequential
    >>> from pylstm.onnx import export, load
    >>> model = Sequential([Input((5, 3)), LSTM(4)])
    >>> path = os.path.join(tempfile.mkdtemp(), "lstm.onnx")
    >>> _ = export(model, path)  # it returns the onnx.ModelProto too
    >>> graph = load(path)
    >>> x = np.ones((2, 5, 3), "float32")
    >>> [y] = graph.run(None, {graph.input_names[0]: x})  # as InferenceSession.run
    >>> y.shape, bool(np.allclose(y, model.predict(x, verbose=0), atol=1e-6))
    ((2, 4), True)
    """

    def __init__(self, constants, nodes, input_names, output_names, input_types=None):
        self._constants = constants
        self._nodes = nodes
        self.input_names = input_names
        self.output_names = output_names
        # name -> (NumPy dtype or None, dims: int, or None where symbolic or unknown)
        self._input_types = input_types or {}
        self._shape_nodes, self._data_nodes = _split_shape_nodes(nodes, constants, input_names)
        # input shapes -> the outputs of `_shape_nodes` on them (read-only arrays)
        self._shape_values = {}

    def __getstate__(self):
        # the kept shape values are a cache (and read-only only in this process): copies and
        # pickles start without them
        return {**self.__dict__, "_shape_values": {}}

    def __repr__(self):
        ops = ", ".join(sorted({op for op, *_ in self._nodes}))
        return (f"OnnxModel(inputs={self.input_names}, outputs={self.output_names}, "
                f"{len(self._nodes)} nodes: {ops})")

    def explain(self):
        """One line per LSTM node: whether it runs on pylstm's compiled core or, for what the
        core cannot express, on the NumPy loop (and why)."""
        from pylstm.onnx._ops import _activations, lstm_route

        lines = []
        for op_type, name, _, inputs, _, attrs in self._nodes:
            if op_type != "LSTM":
                continue
            dirs = 2 if attrs.get("direction") == "bidirectional" else 1
            acts = _activations(attrs.get("activations"), attrs.get("activation_alpha"),
                                attrs.get("activation_beta"), dirs)
            peepholes = len(inputs) > 7 and inputs[7] != ""
            reason = lstm_route(acts, attrs.get("clip"), attrs.get("input_forget", 0), peepholes)
            route = "compiled core" if reason is None else f"NumPy loop ({reason})"
            lines.append(f"{name} (LSTM, {dirs} direction{'s' * (dirs > 1)}): {route}")
        return "\n".join(lines)

    def __call__(self, **feed):
        return self.run(None, feed)

    def run(self, output_names, feed):
        """Runs the graph, as ONNX Runtime's `InferenceSession.run`.

        Args:
            output_names: list of graph output names, or None for all of them.
            feed: dict from each graph input name to its array.

        Returns:
            list of `np.ndarray`, one per name of `output_names`.

        Raises:
            ValueError: see the class docstring.
        """
        values = self._evaluate(feed)
        names = self.output_names if output_names is None else list(output_names)
        bad = [n for n in names if n not in values]
        if bad:
            raise ValueError(f"Unknown output names: {bad}.")
        # an output viewing a kept shape value (read-only) is the caller's own copy
        return [values[n] if values[n].flags.writeable or not self._shape_nodes
                else values[n].copy() for n in names]

    def _evaluate(self, feed):
        """Runs every node on `feed`; returns every tensor's value by name."""
        if feed.keys() != set(self.input_names):
            missing = [name for name in self.input_names if name not in feed]
            if missing:
                raise ValueError(f"Missing graph inputs: {missing}.")
            unknown = sorted(set(feed) - set(self.input_names))
            raise ValueError(f"Unknown graph inputs: {unknown}; inputs are {self.input_names}.")
        values = self._constants.copy()
        for name, value in feed.items():
            values[name] = np.asarray(value)
        if not self._shape_nodes:
            self._run_nodes(values, self._nodes)
            return values
        key = tuple(values[name].shape for name in self.input_names)
        known = self._shape_values.get(key)
        if known is None:
            self._run_nodes(values, self._nodes)  # in graph order: the same first error
            self._keep_shape_values(key, values)
        else:
            values.update(known)
            self._run_nodes(values, self._data_nodes)
        return values

    @staticmethod
    def _run_nodes(values, nodes):
        """Runs `nodes` in order, adding their outputs to `values`."""
        for op_type, name, function, inputs, outputs, attrs in nodes:
            try:
                result = function(*[values[i] if i else None for i in inputs], **attrs)
            except (ValueError, TypeError, IndexError) as error:
                raise ValueError(f"Node {name!r} ({op_type}): {error}") from error
            for out, value in zip(outputs, result):
                if out:
                    values[out] = value if type(value) is np.ndarray else np.asarray(value)

    def _keep_shape_values(self, key, values):
        """Keeps copies of the outputs of `_shape_nodes` for input shapes `key` (read-only, so
        that no later node or caller can change what the next run reuses), unless large."""
        kept = {out: values[out] for node in self._shape_nodes for out in node[4] if out}
        if sum(v.nbytes for v in kept.values()) > _SHAPE_VALUES_BYTES:
            return
        for name, value in kept.items():
            value = value.copy()  # this run's own arrays may have reached the caller
            value.flags.writeable = False
            kept[name] = values[name] = value
        if len(self._shape_values) >= _SHAPE_VALUES_KEYS:
            self._shape_values.clear()
        self._shape_values[key] = kept


# Per OnnxModel: the input shapes whose shape computations are kept, and their bytes each.
_SHAPE_VALUES_KEYS = 16
_SHAPE_VALUES_BYTES = 1 << 20


def _split_shape_nodes(nodes, constants, input_names):
    """`(shape_nodes, data_nodes)`: the nodes whose outputs depend only on the shapes of the
    graph inputs (`Shape` of an input, then nodes of stored tensors and such outputs, as
    exporters compute zero initial states of the input's batch size), which runs reuse for
    inputs of the same shapes, and the others, each list in graph order."""
    shape_only = set(constants)
    shape_nodes, data_nodes = [], []
    for node in nodes:
        op_type, _, _, inputs, outputs, _ = node
        present = [i for i in inputs if i]
        if op_type == "Shape":
            pure = len(present) == 1 and (present[0] in input_names or present[0] in shape_only)
        else:
            pure = op_type != "LSTM" and all(i in shape_only for i in present)
        if pure:
            shape_nodes.append(node)
            shape_only.update(o for o in outputs if o)
        else:
            data_nodes.append(node)
    return shape_nodes, data_nodes


def load(path_or_bytes, as_model=False):
    """Reads an ONNX model and returns it as a runnable `OnnxModel`, or rebuilt as a trainable
    pylstm `Sequential` model.

    Args:
        path_or_bytes: a file path, or the serialized model as `bytes`.
        as_model: bool. If True, the graph must be a plain stack -- one input, one output,
            and on the input's path only LSTM nodes, `Gather` of a stored table, `MatMul` /
            `Gemm` by stored weights with an `Add` of a stored bias, the activation ops of
            pylstm's activations (`Relu`, `Sigmoid`, `Tanh`, `Softmax`, `Elu`, `Selu`,
            `Softplus`, `Softsign`, `Exp`, `HardSigmoid`, swish's `Mul(x, Sigmoid(x))`),
            and nodes that only move entries (`Transpose`, `Squeeze`,
            `Unsqueeze`, `Reshape`, `Slice`, `Gather`, `Concat`, `Identity`, `Cast`), as
            `torch.onnx.export` writes for Embedding + LSTM (stacked, bidirectional) + Linear
            and `pylstm.onnx.export` for Sequential models. It is rebuilt as a `Sequential` of
            `Embedding`, `LSTM`, `Bidirectional(LSTM)` (merge mode "concat", or "sum", "mul",
            "ave" where the graph adds, multiplies or averages the two directions), `Dense`
            (with its activation) and `Activation` layers holding the graph's weights (ONNX gates
            i, o, f, c reordered to i, f, c, o; `Wb + Rb` summed into the LSTM's bias), whose
            input is batch-major `(B, T, D)` floats, or `(B, T)` indices for an Embedding.
            The rebuilt model is returned only after it has computed what the graph computes
            on random probe inputs of several batch sizes and lengths, layer by layer.

    Returns:
        An `OnnxModel`: `model.run(None, {"x": x})` as ONNX Runtime, or `model(x=x)`; with
        `as_model=True`, a built, uncompiled `pylstm.models.Sequential`.

    Raises:
        ImportError: the `onnx` package is missing (`pip install pylstm[onnx]`).
        ValueError: the file is malformed or hostile (truncated, external data, tensors larger
            than the file, undefined or cyclic inputs), or a node's op type is not one that
            pylstm.onnx runs (the message names it and the node). With `as_model=True`, "not a
            plain stack: ..." naming the node or attribute that a Sequential model cannot
            express (several inputs or outputs, `sequence_lens`, initial states computed from
            the input or non-zero, `clip`, `input_forget`, peepholes, LSTM activations pylstm
            lacks, other operators on the data, a time-major input), or the node where the
            rebuilt model would differ from the graph (for example the last time step of a
            bidirectional LSTM's output, which is not its final state).

    Example:

    >>> import numpy as np
    >>> from onnx import helper, numpy_helper
    >>> rng = np.random.default_rng(0)
    >>> W = numpy_helper.from_array(rng.normal(size=(1, 8, 3)).astype("float32"), "W")
    >>> R = numpy_helper.from_array(rng.normal(size=(1, 8, 2)).astype("float32"), "R")
    >>> node = helper.make_node("LSTM", ["x", "W", "R"], ["y", "h"], hidden_size=2)
    >>> graph = helper.make_graph(
    ...     [node], "g", [helper.make_tensor_value_info("x", 1, [4, 1, 3])],
    ...     [helper.make_tensor_value_info(n, 1, None) for n in ("y", "h")], [W, R])
    >>> model = load(helper.make_model(graph).SerializeToString())
    >>> y, h = model.run(None, {"x": np.ones((4, 1, 3), "float32")})
    >>> y.shape, h.shape
    ((4, 1, 1, 2), (1, 1, 2))
    >>> print(model.explain())
    LSTM_0 (LSTM, 1 direction): compiled core

    A plain stack comes back as a trainable model:

    >>> import os, tempfile
    >>> from pylstm.layers import Dense, Input, LSTM
    >>> from pylstm.models import Sequential
    >>> from pylstm.onnx import export
    >>> path = os.path.join(tempfile.mkdtemp(), "model.onnx")
    >>> _ = export(Sequential([Input((None, 3)), LSTM(4), Dense(2, activation="softmax")]), path)
    >>> [type(layer).__name__ for layer in load(path, as_model=True).layers]
    ['LSTM', 'Dense']
    """
    onnx = _onnx()
    from pylstm.onnx._ops import LEGACY_OPS, OPS

    if isinstance(path_or_bytes, (bytes, bytearray)):
        data = bytes(path_or_bytes)
    else:
        with open(path_or_bytes, "rb") as f:
            data = f.read()
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as error:
        raise ValueError(f"Not a valid ONNX file: {error}") from error
    if not model.HasField("graph"):
        raise ValueError("Not a valid ONNX file: no graph.")
    graph = model.graph
    budget = len(data)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                default=1)
    constants = {}
    for tensor in graph.initializer:
        constants[tensor.name] = _tensor(onnx, tensor, budget, "Initializer")
    if graph.sparse_initializer:
        raise ValueError("Sparse initializers are not supported.")
    input_names = [i.name for i in graph.input if i.name not in constants]
    known = set(constants) | set(input_names)
    zero_fills = set()  # outputs of ConstantOfShape nodes that fill with +0
    nodes = []
    for index, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}_{index}"
        if node.domain not in ("", "ai.onnx"):
            raise ValueError(f"Node {name!r}: operator {node.domain}.{node.op_type} is not "
                             "supported by pylstm.onnx.")
        if node.op_type != "Constant" and node.op_type not in OPS:
            raise ValueError(f"Node {name!r}: operator {node.op_type!r} is not supported by "
                             "pylstm.onnx.")
        undefined = [i for i in node.input if i and i not in known]
        if undefined:
            raise ValueError(f"Node {name!r} ({node.op_type}) uses undefined tensors "
                             f"{undefined} (missing, or produced later: a cycle).")
        twice = [o for o in node.output if o in known]
        if twice:
            raise ValueError(f"Node {name!r} ({node.op_type}) redefines tensors {twice}.")
        attrs = _attributes(onnx, node, budget)
        if node.op_type == "Constant":
            constants[node.output[0]] = _constant(name, attrs)
        else:
            if node.op_type in ("Squeeze", "Unsqueeze", "ReduceSum") and "axes" in attrs:
                attrs["attr_axes"] = attrs.pop("axes")
            if node.op_type == "LSTM":
                attrs["node"] = name
                attrs["weights"] = _stored_lstm_weights(list(node.input), constants)
                attrs["zero_states"] = tuple(
                    len(node.input) > k and node.input[k] != "" and (
                        node.input[k] in zero_fills or (node.input[k] in constants and
                                                        _zero_bits(constants[node.input[k]])))
                    for k in (5, 6))
            if node.op_type == "ConstantOfShape" and _zero_bits(attrs.get("value", 0.0)):
                zero_fills.add(node.output[0])
            function = OPS[node.op_type]
            legacy = LEGACY_OPS.get(node.op_type)
            if legacy is not None and opset < legacy[0]:
                function = legacy[1]
            nodes.append((node.op_type, name, function, list(node.input), list(node.output),
                          attrs))
        known.update(o for o in node.output if o)
    output_names = [o.name for o in graph.output]
    undefined = [o for o in output_names if o not in known]
    if undefined:
        raise ValueError(f"Graph outputs {undefined} are produced by no node.")
    model = OnnxModel(constants, nodes, input_names, output_names,
                      {i.name: _declared_type(onnx, i) for i in graph.input
                       if i.name in input_names})
    if as_model:
        from pylstm.onnx._rebuild import rebuild

        return rebuild(model)
    return model


def _declared_type(onnx, value_info):
    """A graph input's declared element type (NumPy dtype, None if unknown) and dims (ints,
    None for a symbolic or missing dim; None for an unknown rank)."""
    tensor_type = value_info.type.tensor_type
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
    except Exception:
        dtype = None
    if not tensor_type.HasField("shape"):
        return dtype, None
    return dtype, tuple(d.dim_value if d.HasField("dim_value") else None
                        for d in tensor_type.shape.dim)


def _stored_lstm_weights(inputs, constants):
    """The `LSTMWeights` of an LSTM node whose W, R and (if given) B and P are stored in the
    file, converted once for every run; None when one is computed at run time."""
    from pylstm.onnx._ops import LSTMWeights

    names = [inputs[k] if len(inputs) > k else "" for k in (1, 2, 3, 7)]
    if not (names[0] and names[1]) or not all(n == "" or n in constants for n in names):
        return None
    return LSTMWeights(*(constants[n] if n else None for n in names))


def _zero_bits(value):
    """Whether every element of a stored value is a number whose bits are all 0 (so +0.0 in
    any float dtype): an LSTM's initial state that is one runs as an omitted state."""
    value = np.asarray(value)
    return (value.dtype.kind in "biuf"
            and not np.ascontiguousarray(value).reshape(-1).view(np.uint8).any())


def _constant(name, attrs):
    if "value" in attrs:
        return attrs["value"]
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return np.array(attrs[key], dtype=dtype)
    raise ValueError(f"Node {name!r}: Constant without a supported value attribute.")
