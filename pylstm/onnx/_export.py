"""Export of pylstm models to ONNX: each LSTM becomes one ONNX `LSTM` node.

Design: a `_Graph` collects nodes and initializers (each weight stored once, also for a layer
called twice; constants deduplicated by value); one function per layer kind appends the nodes
that compute it in inference mode, in the order of a Sequential's layers or of a functional
model's nodes. Tensors flow batch-major `(B, T, F)` between layers, as in pylstm; around each
`LSTM` node a `Transpose` gives ONNX's time-major `X (T, B, D)` (layout 0, the one ONNX Runtime
runs), and the node's `Y (T, dirs, B, H)` / `Y_h (dirs, B, H)` come back to pylstm's shapes.

Weights: pylstm and Keras keep gates i, f, c, o in `kernel (D, 4H)`, PyTorch keeps i, f, g, o in
`weight_ih (4H, D)`; ONNX wants `W (dirs, 4H, D)`, `R (dirs, 4H, H)` in gate order i, o, f, c and
`B (dirs, 8H)` = input bias then recurrent bias (Keras's single bias goes to the input half).
Masks (`Embedding(mask_zero=True)`, `Masking`) flow as `(B, T)` bool tensors beside the
layers' outputs, as pylstm propagates them; a masked LSTM is one node with `sequence_lens`
(`_export_masks`). A stateful layer's state becomes graph inputs and outputs. What one node
cannot express (projection, activations ONNX lacks) is refused with a `ValueError`, never
exported wrong.
"""

import functools

import numpy as np

from pylstm.onnx._export_masks import MaskPlan, any_last_axis, concatenate_mask, extremum, \
    flip_time, mask_btf, masked_lstm, multiply, not_equal

# Rows of the i, f, c, o (= i, f, g, o) gate blocks in ONNX's order i, o, f, c.
_ONNX_GATE_ORDER = (0, 3, 1, 2)

# pylstm activation name -> (ONNX LSTM activation, alpha, beta). HardSigmoid is
# max(0, min(1, alpha * x + beta)): Keras 3's hard_sigmoid relu6(x + 3) / 6 has alpha 1/6,
# Keras 2's (pylstm's legacy_hard_sigmoid) 0.2.
_LSTM_ACTIVATIONS = {
    "sigmoid": ("Sigmoid", None, None),
    "tanh": ("Tanh", None, None),
    "relu": ("Relu", None, None),
    "hard_sigmoid": ("HardSigmoid", 1.0 / 6.0, 0.5),
    "legacy_hard_sigmoid": ("HardSigmoid", 0.2, 0.5),
    "linear": ("Affine", 1.0, 0.0),
    "elu": ("Elu", 1.0, None),
    "softsign": ("Softsign", None, None),
    "softplus": ("Softplus", None, None),
}

_MIN_OPSET = 13  # Softmax over the last axis alone (earlier opsets flatten from `axis`).


def _onnx():
    try:
        import onnx
    except ImportError as e:
        raise ImportError("pylstm.onnx needs the `onnx` package: pip install pylstm[onnx]") from e
    return onnx


@functools.lru_cache(maxsize=None)
def default_opset():
    """The newest ONNX opset that both the installed `onnx` and `onnxruntime` support (probed
    with a one-node model), or `onnx`'s newest where onnxruntime is not installed."""
    onnx = _onnx()
    newest = onnx.defs.onnx_opset_version()
    try:
        import onnxruntime
    except ImportError:
        return newest
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "probe",
                                   [x], [y])
    for opset in range(newest, _MIN_OPSET - 1, -1):
        model = _make_model(onnx, graph, opset)
        try:
            onnxruntime.InferenceSession(model.SerializeToString(),
                                         providers=["CPUExecutionProvider"])
        except Exception:
            continue
        return opset
    return _MIN_OPSET


def _make_model(onnx, graph, opset):
    opset_id = onnx.helper.make_opsetid("", opset)
    ir_version = onnx.helper.find_min_ir_version_for([opset_id], ignore_unknown=True)
    return onnx.helper.make_model(graph, opset_imports=[opset_id], ir_version=ir_version,
                                  producer_name="pylstm")


class _Graph:
    """Nodes, initializers and unique names of the graph being built."""

    def __init__(self, onnx, dtype):
        self.onnx = onnx
        self.dtype = np.dtype(dtype)
        self.nodes, self.initializers = [], []
        self._names = set()
        self._constants = {}
        # A stateful layer's state: graph inputs (name, shape), outputs (name, tensor).
        self.state_inputs, self.state_outputs = [], []
        self.mask_plans = {}

    def name(self, base):
        name, k = base, 1
        while name in self._names:
            name, k = f"{base}_{k}", k + 1
        self._names.add(name)
        return name

    def weight(self, base, array, key=None):
        """Adds `array` as an initializer (in the graph's float dtype) and returns its name;
        a `key` seen before (a layer called twice) returns the stored one."""
        if key is not None and key in self._constants:
            return self._constants[key]
        name = self.name(base)
        self.initializers.append(self.onnx.numpy_helper.from_array(
            np.ascontiguousarray(array, dtype=self.dtype), name))
        if key is not None:
            self._constants[key] = name
        return name

    def weight_bool(self, name, value):
        """A bool scalar constant, stored once."""
        if ("bool", value) not in self._constants:
            self.initializers.append(self.onnx.numpy_helper.from_array(
                np.array(value), self.name(name)))
            self._constants[("bool", value)] = self.initializers[-1].name
        return self._constants[("bool", value)]

    def int64(self, values):
        """An int64 constant, stored once per distinct value."""
        array = np.asarray(values, dtype=np.int64)
        key = (array.shape, array.tobytes())
        if key not in self._constants:
            name = self.name("const_" + "_".join(str(v) for v in array.reshape(-1)).replace(
                "-", "m"))
            self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
            self._constants[key] = name
        return self._constants[key]

    def op(self, op_type, inputs, base, n_outputs=1, **attrs):
        """Appends one node; returns its output name (or names, for `n_outputs > 1`)."""
        outputs = [self.name(f"{base}_{k}" if n_outputs > 1 else base)
                   for k in range(n_outputs)]
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), outputs,
                                                     name=self.name(f"{base}_{op_type}"),
                                                     **attrs))
        return outputs if n_outputs > 1 else outputs[0]


def _activation_name(activation):
    """The built-in name of a layer's activation (a name, None, or a pylstm activation
    function), or None for a custom callable."""
    from pylstm import activations

    if activation is None:
        return "linear"
    if isinstance(activation, str):
        return activation
    name = getattr(activation, "__name__", None)
    try:
        builtin = activations.get(name)
    except (ValueError, TypeError):
        return None
    return name if builtin is activation else None


def _lstm_activation(activation, where):
    name = _activation_name(activation)
    if name not in _LSTM_ACTIVATIONS:
        raise ValueError(f"{where}: activation {name or activation!r} has no ONNX LSTM "
                         f"equivalent; exportable: {sorted(_LSTM_ACTIVATIONS)}.")
    return name


def _lstm_node(g, x_tbd, base, directions, hidden_size, sequence_lens="", initial_h="",
               initial_c="", key=None):
    """Appends one ONNX LSTM node on the time-major `x_tbd (T, B, D)`; the optional inputs
    are tensor names, "" for none.

    `directions` is a list (one per ONNX direction, forward first) of dicts with `kernel (D, 4H)`,
    `recurrent_kernel (H, 4H)`, `bias_ih`/`bias_hh (4H,)` or None, gate order i, f, c, o,
    the names of `recurrent_activation` and `activation`, and `reverse` (a single direction
    read from the end); `key` identifies the weights of a layer called more than once.
    Returns `Y (T, dirs, B, H)`, `Y_h`,
    `Y_c (dirs, B, H)`.
    """
    H = hidden_size

    def reorder(w):  # (4H, ...) in i, f, c, o -> i, o, f, c
        return np.concatenate([w[k * H:(k + 1) * H] for k in _ONNX_GATE_ORDER])

    W = np.stack([reorder(np.asarray(d["kernel"]).T) for d in directions])
    R = np.stack([reorder(np.asarray(d["recurrent_kernel"]).T) for d in directions])
    inputs = [x_tbd, g.weight(f"{base}_W", W, key and (key, "W")),
              g.weight(f"{base}_R", R, key and (key, "R"))]
    if any(d["bias_ih"] is not None or d["bias_hh"] is not None for d in directions):
        zeros = np.zeros(4 * H)
        B = np.stack([np.concatenate([
            reorder(np.asarray(zeros if d["bias_ih"] is None else d["bias_ih"])),
            reorder(np.asarray(zeros if d["bias_hh"] is None else d["bias_hh"]))])
            for d in directions])
        inputs.append(g.weight(f"{base}_B", B, key and (key, "B")))
    else:
        inputs.append("")
    inputs += [sequence_lens, initial_h, initial_c]
    while inputs[-1] == "":
        inputs.pop()
    names, alphas, betas = [], [], []
    for d in directions:
        for act in (d["recurrent_activation"], d["activation"], d["activation"]):
            onnx_name, alpha, beta = _LSTM_ACTIVATIONS[act]
            names.append(onnx_name)
            alphas += [] if alpha is None else [alpha]
            betas += [] if beta is None else [beta]
    attrs = {"hidden_size": H, "activations": names,
             "direction": {1: "forward", 2: "bidirectional"}[len(directions)]}
    if len(directions) == 1 and directions[0].get("reverse"):
        attrs["direction"] = "reverse"
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    return g.op("LSTM", inputs, base, n_outputs=3, **attrs)


def _check_keras_lstm(layer):
    from pylstm.layers.lstm import LSTM

    where = f"Layer {layer.name!r}"
    if type(layer) is not LSTM:
        raise ValueError(f"{where} ({type(layer).__name__}) is not exportable: only LSTM "
                         f"layers become ONNX LSTM nodes.")
    if layer.proj_size:
        raise ValueError(f"{where}: proj_size={layer.proj_size} has no ONNX LSTM equivalent "
                         f"(ONNX's LSTM has no projection).")
    return {"kernel": _array(layer.kernel), "recurrent_kernel": _array(layer.recurrent_kernel),
            "bias_ih": _array(layer.bias) if layer.use_bias else None, "bias_hh": None,
            "recurrent_activation": _lstm_activation(layer.recurrent_activation,
                                                     f"{where} (recurrent_activation)"),
            "activation": _lstm_activation(layer.activation, f"{where} (activation)"),
            "reverse": layer.go_backwards, "zero_output": layer.zero_output_for_mask,
            "name": layer.name, "units": layer.units, "stateful": layer.stateful}


def _array(variable):
    return np.asarray(getattr(variable, "value", variable))


def _merge(g, x, axis, merge_mode, base):
    """Merges the two directions on `axis` of `x` (2 there) as Keras's Bidirectional."""
    if merge_mode == "concat":
        shape = [0, 0, -1] if axis == 2 else [0, -1]
        return g.op("Reshape", [x, g.int64(shape)], f"{base}_out")
    fwd = g.op("Gather", [x, g.int64(0)], f"{base}_fwd", axis=axis)
    bwd = g.op("Gather", [x, g.int64(1)], f"{base}_bwd", axis=axis)
    if merge_mode == "sum":
        return g.op("Add", [fwd, bwd], f"{base}_out")
    if merge_mode == "mul":
        return g.op("Mul", [fwd, bwd], f"{base}_out")
    total = g.op("Add", [fwd, bwd], f"{base}_sum")
    return g.op("Mul", [total, g.weight(f"{base}_half", np.array(0.5))], f"{base}_out")


def _keras_lstm_node(g, x, layer, directions, units, merge_mode="concat", mask=None,
                     initial_state=None):
    """One LSTM node on `x (B, T, D)`; returns `(B, T, F)` or `(B, F)` as Keras does, then
    with `return_state` the final `h, c (B, H)` of each direction.

    `mask` is the name of the `(B, T)` bool mask or None; `initial_state` the names of each
    direction's `h, c (B, H)` in turn, or None (then a stateful direction reads its state
    from graph inputs, `_state_inputs`)."""
    base = layer.name
    x_tbd = g.op("Transpose", [x], f"{base}_X", perm=[1, 0, 2])
    states = initial_state or _state_inputs(g, directions, units)
    initial_h = _stack_directions(g, states[0::2], f"{base}_initial_h")
    initial_c = _stack_directions(g, states[1::2], f"{base}_initial_c")
    flags = [(d["reverse"], d["zero_output"]) for d in directions]
    if len(directions) == 2:
        directions = [{**d, "reverse": False} for d in directions]  # direction="bidirectional"
        flags[1] = (True, flags[1][1])

    def run_node(x_tbd, sequence_lens=""):
        return _lstm_node(g, x_tbd, base, directions, units, sequence_lens, initial_h,
                          initial_c, key=id(layer))

    if mask is None:
        Y, Y_h, Y_c = run_node(x_tbd)
        last = Y_h
    else:
        Y, last, Y_h, Y_c = masked_lstm(g, _mask_plan(g, mask), run_node, x_tbd, flags, base,
                                        initial_h, initial_c)
    _state_outputs(g, directions, Y_h, Y_c)
    if not layer.return_sequences:
        out = _merge(g, g.op("Transpose", [last], f"{base}_h_b", perm=[1, 0, 2]), 1,
                     merge_mode, base)
    else:
        if len(directions) == 1 and directions[0]["reverse"]:
            # go_backwards: Keras returns the sequence in processing (reversed) order.
            Y = flip_time(g, Y, f"{base}_Y_reversed")
        Y = g.op("Transpose", [Y], f"{base}_Y_bt", perm=[2, 0, 1, 3])  # (B, T, dirs, H)
        out = _merge(g, Y, 2, merge_mode, base)
    if not layer.return_state:
        return out
    states = [g.op("Gather", [state, g.int64(k)], f"{base}_{which}{k}", axis=0)
              for k in range(len(directions)) for which, state in (("h", Y_h), ("c", Y_c))]
    return [out] + states


def _stack_directions(g, states, base):
    """`(B, H)` states, one per direction, as ONNX's `(dirs, B, H)`; "" for none."""
    if not any(states):
        return ""
    parts = [g.op("Unsqueeze", [s, g.int64([0])], f"{base}{k}") for k, s in enumerate(states)]
    return parts[0] if len(parts) == 1 else g.op("Concat", parts, base, axis=0)


def _state_inputs(g, directions, units):
    """`[h, c, ...]` per direction: graph inputs `<layer>_h`, `<layer>_c (B, H)` for a
    stateful layer (the state it carries in from the previous call), "" otherwise."""
    states = []
    for d in directions:
        for which in ("h", "c"):
            name = ""
            if d["stateful"]:
                name = f"{d['name']}_{which}"
                if any(name == n for n, _ in g.state_inputs):
                    raise ValueError(f"Layer {d['name']!r} is stateful and called more than "
                                     f"once; its state is exportable for one call.")
                g.state_inputs.append((name, ["batch", units]))
            states.append(name)
    return states


def _state_outputs(g, directions, Y_h, Y_c):
    """Graph outputs `<layer>_h_out`, `<layer>_c_out (B, H)` for each stateful direction:
    the state to feed back as `<layer>_h`, `<layer>_c` with the next chunk."""
    for k, d in enumerate(directions):
        if d["stateful"]:
            for which, state in (("h", Y_h), ("c", Y_c)):
                g.state_outputs.append((f"{d['name']}_{which}_out", g.op(
                    "Gather", [state, g.int64(k)], f"{d['name']}_{which}_carried", axis=0)))


def _mask_plan(g, mask):
    """One `MaskPlan` per mask tensor, shared by the layers it reaches."""
    if mask not in g.mask_plans:
        g.mask_plans[mask] = MaskPlan(g, mask, mask)
    return g.mask_plans[mask]


def _lstm_output_mask(layer, out, mask):
    """Keras's `compute_mask` of an LSTM or Bidirectional: the input mask on the sequence
    output, none on the states."""
    seq_mask = mask if layer.return_sequences else None
    return [seq_mask] + [None] * (len(out) - 1) if isinstance(out, list) else seq_mask


def _export_lstm(g, layer, x, mask=None, initial_state=None):
    d = _check_keras_lstm(layer)
    out = _keras_lstm_node(g, x, layer, [d], layer.units, mask=mask,
                           initial_state=initial_state)
    return out, _lstm_output_mask(layer, out, mask)


def _export_bidirectional(g, layer, x, mask=None, initial_state=None):
    where = f"Layer {layer.name!r}"
    fwd = _check_keras_lstm(layer.forward_layer)
    bwd = _check_keras_lstm(layer.backward_layer)
    if fwd["reverse"] or not bwd["reverse"]:
        raise ValueError(f"{where}: an ONNX bidirectional LSTM reads forward then backward; "
                         f"a Bidirectional whose forward layer has go_backwards=True (or whose "
                         f"backward layer has go_backwards=False) is not exportable.")
    if layer.forward_layer.units != layer.backward_layer.units:
        raise ValueError(f"{where}: the two directions have {layer.forward_layer.units} and "
                         f"{layer.backward_layer.units} units; one ONNX LSTM node has one "
                         f"hidden_size.")
    if layer.merge_mode not in ("concat", "sum", "ave", "mul"):
        raise ValueError(f"{where}: merge_mode={layer.merge_mode!r} returns two outputs; "
                         f"exportable merge modes are concat, sum, ave and mul.")
    out = _keras_lstm_node(g, x, layer, [fwd, bwd], layer.forward_layer.units,
                           layer.merge_mode, mask=mask, initial_state=initial_state)
    return out, _lstm_output_mask(layer, out, mask)


# pylstm Dense activation name -> a function appending its ONNX nodes.
def _unary(op_type, **attrs):
    return lambda g, x, base: g.op(op_type, [x], base, **attrs)


def _swish(g, x, base):
    return g.op("Mul", [x, g.op("Sigmoid", [x], f"{base}_sigmoid")], base)


_DENSE_ACTIVATIONS = {
    "linear": None,
    "relu": _unary("Relu"),
    "sigmoid": _unary("Sigmoid"),
    "tanh": _unary("Tanh"),
    "softmax": _unary("Softmax", axis=-1),
    "elu": _unary("Elu", alpha=1.0),
    "selu": _unary("Selu", alpha=1.6732632423543772, gamma=1.0507009873554805),
    "softplus": _unary("Softplus"),
    "softsign": _unary("Softsign"),
    "exponential": _unary("Exp"),
    "hard_sigmoid": _unary("HardSigmoid", alpha=1.0 / 6.0, beta=0.5),
    "legacy_hard_sigmoid": _unary("HardSigmoid", alpha=0.2, beta=0.5),
    "swish": _swish,
}


def _export_dense(g, layer, x, mask=None):
    return _dense(g, layer, x), mask


def _dense(g, layer, x):
    name = _activation_name(layer.activation)
    if name not in _DENSE_ACTIVATIONS:
        raise ValueError(f"Layer {layer.name!r}: activation {name or layer.activation!r} has "
                         f"no ONNX equivalent; exportable: {sorted(_DENSE_ACTIVATIONS)}.")
    base = layer.name
    kernel = g.weight(f"{base}_kernel", _array(layer.kernel), (id(layer), "kernel"))
    y = g.op("MatMul", [x, kernel], f"{base}_matmul")
    if layer.use_bias:
        bias = g.weight(f"{base}_bias", _array(layer.bias), (id(layer), "bias"))
        y = g.op("Add", [y, bias], f"{base}_biased")
    activation = _DENSE_ACTIVATIONS[name]
    return y if activation is None else activation(g, y, f"{base}_out")


def _export_embedding(g, layer, x, mask=None):
    """Gather; with `mask_zero` the output mask is `x != 0` (the input's mask is dropped,
    as Keras's)."""
    embeddings = g.weight(f"{layer.name}_embeddings", _array(layer.embeddings),
                          (id(layer), "embeddings"))
    out = g.op("Gather", [embeddings, x], f"{layer.name}_out", axis=0)
    if not layer.mask_zero:
        return out, None
    return out, not_equal(g, x, g.int64(0), f"{layer.name}_mask")


def _export_masking(g, layer, x, mask=None):
    """Keras's Masking: the mask `any(x != mask_value, axis=-1)`, masked steps set to 0."""
    value = g.weight(f"{layer.name}_mask_value", np.array(layer.mask_value))
    m = any_last_axis(g, not_equal(g, x, value, f"{layer.name}_kept"), f"{layer.name}_mask")
    keep = g.op("Cast", [mask_btf(g, m, f"{layer.name}_mask_btf")],
                f"{layer.name}_keep", to=g.onnx.helper.np_dtype_to_tensor_dtype(g.dtype))
    return g.op("Mul", [x, keep], f"{layer.name}_out"), m


def _export_dropout(g, layer, x, mask=None):
    return x, mask  # the identity at inference


def _export_merge(g, layer, xs, ranks, masks):
    """Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate of inputs of one rank
    (Keras's expansion of lower ranks is not exported), with masks as pylstm's merge layers
    use and propagate them."""
    name = type(layer).__name__
    if len(set(ranks)) != 1:
        raise ValueError(f"Layer {layer.name!r} ({name}) merges inputs of ranks {ranks}; "
                         f"only inputs of one rank are exportable.")
    if any(m is not None for m in masks) and ranks[0] != 3:
        raise ValueError(f"Layer {layer.name!r} ({name}) merges masked inputs of rank "
                         f"{ranks[0]}; masked merges are exportable on (batch, time, "
                         f"features) inputs.")
    base = layer.name
    if name == "Concatenate":
        return g.op("Concat", xs, f"{base}_out", axis=layer.axis), \
            concatenate_mask(g, layer, xs, masks)
    mask = None
    if all(m is not None for m in masks):
        mask = masks[0]
        for k, m in enumerate(masks[1:]):
            mask = g.op("Or", [mask, m], f"{base}_mask{k}")
    if name == "Subtract":
        return g.op("Sub", xs, f"{base}_out"), mask
    if name == "Average":
        total = g.op("Sum", xs, f"{base}_sum")
        return g.op("Div", [total, g.weight(f"{base}_count", np.array(len(xs)))],
                    f"{base}_out"), mask
    if name == "Add":
        return g.op("Sum", xs, f"{base}_out"), mask
    if name == "Multiply":
        return multiply(g, base, xs, masks, mask), mask
    return extremum(g, base, "Max" if name == "Maximum" else "Min", xs, masks), mask


def _exporters():
    from pylstm.layers import merging
    from pylstm.layers.bidirectional import Bidirectional
    from pylstm.layers.core import Dropout
    from pylstm.layers.dense import Dense
    from pylstm.layers.embedding import Embedding
    from pylstm.layers.lstm import LSTM
    from pylstm.layers.masking import Masking

    merges = (merging.Add, merging.Subtract, merging.Multiply, merging.Average,
              merging.Maximum, merging.Minimum, merging.Concatenate)
    return {LSTM: _export_lstm, Bidirectional: _export_bidirectional, Dense: _export_dense,
            Embedding: _export_embedding, Dropout: _export_dropout, Masking: _export_masking,
            **{merge: _export_merge for merge in merges}}


def _exporter(layer, exporters):
    exporter = exporters.get(type(layer))
    if exporter is None:
        raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}) is not exportable to "
                         f"ONNX; exportable layers: {sorted(t.__name__ for t in exporters)}.")
    return exporter


def _export_sequential(g, model, x):
    """Each layer in turn, its output mask passed to the next (Keras's propagation)."""
    exporters = _exporters()
    mask = None
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        if _exporter(layer, exporters) is _export_merge:
            raise ValueError(f"Layer {layer.name!r} ({type(layer).__name__}) merges several "
                             f"inputs, which a Sequential model cannot give it.")
        x, mask = _exporter(layer, exporters)(g, layer, x, mask)
        if isinstance(x, list):
            raise ValueError(f"Layer {layer.name!r}: return_state=True in a Sequential model "
                             f"is not exportable (use a functional model).")
    return [x]


def _export_functional(g, model, *input_names):
    """Each node of the model's graph in its (topological) order, with the masks its inputs
    carry."""
    exporters = _exporters()
    names = {id(t): name for t, name in zip(model.inputs, input_names)}
    masks = {}
    for node in model._nodes:
        if node.is_input:
            continue
        layer = node.layer
        exporter = _exporter(layer, exporters)
        (args,) = node.call_args
        kwargs = _node_kwargs(layer, node, exporter, names)
        if exporter is _export_merge:
            in_mask = [masks.get(id(t)) for t in args]
            outputs, out_masks = exporter(g, layer, [names[id(t)] for t in args],
                                          [len(t.shape) for t in args], in_mask)
        else:
            if isinstance(args, (list, tuple)):
                raise ValueError(f"Layer {layer.name!r} was called on a list of tensors; "
                                 f"it is exportable called on one tensor.")
            in_mask = masks.get(id(args))
            if kwargs:
                # Keras 3: a layer also given tensors by keyword runs unmasked; its outputs
                # carry the mask `compute_mask` gives from its inputs' mask.
                outputs, _ = exporter(g, layer, names[id(args)], None, **kwargs)
                out_masks = _lstm_output_mask(layer, outputs, in_mask)
            else:
                outputs, out_masks = exporter(g, layer, names[id(args)], in_mask)
        if not isinstance(outputs, list):
            outputs, out_masks = [outputs], [out_masks]
        for tensor, name, m in zip(node.outputs, outputs, out_masks):
            names[id(tensor)] = name
            if m is not None:
                masks[id(tensor)] = m
    return [names[id(t)] for t in model.outputs]


def _node_kwargs(layer, node, exporter, names):
    """The exporter's keyword arguments for a node's call: `initial_state` (tensor names)
    for an LSTM or Bidirectional; any other argument is refused."""
    given = {k: v for k, v in node.call_kwargs.items() if v is not None}
    state = given.pop("initial_state", None)
    if given or (state is not None and exporter not in (_export_lstm, _export_bidirectional)):
        extra = sorted(given) + ([] if state is None or given else ["initial_state"])
        raise ValueError(f"Layer {layer.name!r} was called with {extra}, which this "
                         f"exporter does not express; call it on its inputs alone.")
    if state is None:
        return {}
    if not all(id(t) in names for t in state):
        raise ValueError(f"Layer {layer.name!r}: argument `initial_state` must be tensors of "
                         f"the model, received {state!r:.200}.")
    return {"initial_state": [names[id(t)] for t in state]}


def _export_nn_lstm(g, module, x, h_0="", c_0="", lengths=""):
    """pylstm.nn.LSTM: `x (T, B, D)` (or `(B, T, D)` with batch_first), optional `h_0`, `c_0
    (L * dirs, B, H)` and `lengths (B,)` -> output, `h_n`, `c_n (L * dirs, B, H)`, one ONNX
    node per layer. ONNX's `sequence_lens` means what pylstm's `lengths` mean: zeros past each
    sample's end, the reverse direction starting at that end, states at the last real step."""
    if module.proj_size:
        raise ValueError(f"nn.LSTM with proj_size={module.proj_size} has no ONNX LSTM "
                         f"equivalent (ONNX's LSTM has no projection).")
    params = dict(module.named_parameters())
    suffixes = ["", "_reverse"] if module.bidirectional else [""]
    dirs = len(suffixes)
    if module.batch_first:
        x = g.op("Transpose", [x], "input_time_major", perm=[1, 0, 2])

    def layer_state(state, k):  # this layer's (dirs, B, H) slice of (L * dirs, B, H)
        if not state:
            return ""
        return g.op("Slice", [state, g.int64([k * dirs]), g.int64([(k + 1) * dirs]),
                              g.int64([0])], f"{state}_l{k}")

    h_n, c_n = [], []
    for k in range(module.num_layers):
        directions = []
        for suffix in suffixes:
            p = {n: _array(params[f"{n}_l{k}{suffix}"]) if module.bias or "weight" in n
                 else None for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
            directions.append({"kernel": p["weight_ih"].T, "recurrent_kernel": p["weight_hh"].T,
                               "bias_ih": p["bias_ih"], "bias_hh": p["bias_hh"],
                               "recurrent_activation": "sigmoid", "activation": "tanh",
                               "reverse": False})
        Y, Y_h, Y_c = _lstm_node(g, x, f"lstm_l{k}", directions, module.hidden_size, lengths,
                                 layer_state(h_0, k), layer_state(c_0, k))
        h_n.append(Y_h)
        c_n.append(Y_c)
        Y = g.op("Transpose", [Y], f"lstm_l{k}_Y_tb", perm=[0, 2, 1, 3])  # (T, B, dirs, H)
        x = g.op("Reshape", [Y, g.int64([0, 0, -1])], f"lstm_l{k}_out")
    if module.batch_first:
        x = g.op("Transpose", [x], "output_batch_major", perm=[1, 0, 2])
    concat = (lambda parts, base: parts[0] if len(parts) == 1
              else g.op("Concat", parts, base, axis=0))
    return [x, concat(h_n, "h_n"), concat(c_n, "c_n")]


def export(model, path, opset=None, input_names=None, output_names=None,
           initial_state=False, lengths=False):
    """Writes `model` as an ONNX file that ONNX Runtime runs with pylstm's numbers.

    Each LSTM becomes one ONNX `LSTM` node (gate order i, o, f, c; bias split into the input
    and recurrent halves; `direction` forward, reverse or bidirectional; `activations` with
    `activation_alpha`/`beta`); `Dense` becomes MatMul + Add + its activation, `Embedding`
    Gather, `Masking` a Mul by its mask, `Dropout` the identity (inference: dropout inside
    LSTMs and between `nn.LSTM` layers is dropped too). The batch and time axes are dynamic.
    The graph keeps the model's float dtype; ONNX Runtime's CPU `LSTM` runs float32 only.

    Masks (`Embedding(mask_zero=True)`, `Masking`) are computed in the graph from its input
    and propagate as pylstm's (Keras 3's) `compute_mask` does: through `Dense`, `Dropout`,
    sequence-returning LSTMs and the merge layers (`Multiply`, `Maximum`, `Minimum` compute
    with them as Keras does). A masked LSTM is one node with `sequence_lens` = each sample's
    count of real steps, and gives what pylstm gives: on masked steps the previous output
    (zeros before the first real step), or zeros with `zero_output_for_mask` (forced in
    `Bidirectional` with `return_sequences`); as last output the output of the last processed
    step; as final state the state after the last real step (the initial state for an
    all-masked sample). Each sample's mask must be one run of real steps at the start (right
    padding) or at the end (left padding, `pad_sequences`' default; these samples are moved
    to right padding around the node with `ReverseSequence`); the two may mix in a batch. A
    sample whose mask has a hole (a masked step between real ones), which one ONNX LSTM node
    cannot express, gets NaN in that layer's outputs and states, never a wrong number.

    A layer called with `initial_state` (functional models: the encoder-decoder pattern)
    takes those tensors as the node's `initial_h`/`initial_c`; as in Keras 3 it then runs
    unmasked, and its sequence output carries its input's mask.

    A stateful LSTM (`stateful=True`, a Bidirectional's two layers each) reads the state it
    carries from graph inputs `<layer>_h`, `<layer>_c` and writes the state after the call to
    graph outputs `<layer>_h_out`, `<layer>_c_out` (`(B, units)`, the model's float dtype),
    after the model's own inputs and outputs: feed zeros first (or the state to continue
    from), then each call's outputs with the next chunk. A stateful layer called with
    `initial_state` starts from that instead and has no state inputs.

    Args:
        model: a built `pylstm.models.Sequential` of `Input`, `LSTM`, `Bidirectional(LSTM)`,
            `Dense`, `Embedding`, `Masking` and `Dropout` layers; a functional
            `pylstm.models.Model` of these (`return_state` and `initial_state` included,
            shared layers' weights stored once) and the merge layers `Add`, `Subtract`,
            `Multiply`, `Average`, `Maximum`, `Minimum`, `Concatenate`; or a
            `pylstm.nn.LSTM`.
        path: file path (str or path-like) to write.
        opset: int, the ONNX opset (>= 13); default: the newest that the installed `onnx`
            and `onnxruntime` both support.
        input_names, output_names: lists of graph input/output names; defaults `["input"]`
            and `["output"]` (a functional model's own input and output names, a repeated
            one numbered: `h`, `h_1`); for `nn.LSTM`, `["input"]` then `"h_0", "c_0"` with
            `initial_state` and `"lengths"` with `lengths`, and `["output", "h_n", "c_n"]`.
            The state inputs and outputs of stateful layers come after them, named as above.
        initial_state: `nn.LSTM` only: the graph takes `h_0`, `c_0 (L * dirs, B, H)` (the
            module's `hx`) as inputs.
        lengths: `nn.LSTM` only: the graph takes `lengths (B,)` int32 in `[1, T]` (the
            module's `lengths`, right padding) as input; it becomes each node's
            `sequence_lens`.

    Graph inputs: `(B, T, D)` of the model's float dtype, or `(B, T)` int64 token ids for a
    model that starts with an `Embedding` (functional: every integer input, and every input
    that feeds an Embedding); other functional inputs `(B, ...)` as declared (e.g.
    `initial_state` tensors `(B, units)`); `nn.LSTM`: `input (T, B, D)` (`(B, T, D)` with
    `batch_first`). Graph outputs: the model's outputs, of its float dtype and shapes.

    Returns:
        The `onnx.ModelProto` written.

    Raises:
        ImportError: the `onnx` package is missing (`pip install pylstm[onnx]`).
        ValueError: a layer or option one ONNX graph cannot express faithfully (`proj_size`,
            which ONNX's LSTM lacks; `return_state` in a Sequential; a Bidirectional with
            `merge_mode=None`, with units that differ or with its forward layer reading
            backwards; masked merges of inputs that are not `(B, T, F)`; a stateful layer
            called twice; keyword arguments other than `initial_state`; activations ONNX
            lacks; unknown layers), an unbuilt model, names that clash with the state names,
            or an opset outside `[13, onnx.defs.onnx_opset_version()]`.

    Example:
    >>> import numpy as np, tempfile, os
    >>> from pylstm.layers import Input, LSTM, Dense
    >>> from pylstm.models import Sequential
    >>> model = Sequential([Input((None, 4)), LSTM(8), Dense(2)])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.onnx")
    >>> proto = export(model, path)
    >>> [n.op_type for n in proto.graph.node][:2]
    ['Transpose', 'LSTM']
    """
    onnx = _onnx()
    opset = default_opset() if opset is None else int(opset)
    if opset < _MIN_OPSET or opset > onnx.defs.onnx_opset_version():
        raise ValueError(f"Argument `opset` must be in [{_MIN_OPSET}, "
                         f"{onnx.defs.onnx_opset_version()}], received {opset}.")
    dtype, inputs, defaults, build = _plan(model, initial_state, lengths)
    input_names = list(input_names or [name for name, _, _ in inputs])
    output_names = list(output_names or defaults)
    if len(input_names) != len(inputs) or len(output_names) != len(defaults) \
            or len(set(input_names + output_names)) != len(inputs) + len(output_names):
        raise ValueError(f"Arguments `input_names` and `output_names` must give "
                         f"{len(inputs)} and {len(defaults)} distinct names, received "
                         f"{input_names!r} and {output_names!r}.")
    g = _Graph(onnx, dtype)
    state_names = [f"{layer.name}_{which}{out}" for layer in _stateful_lstms(model)
                   for out in ("", "_out") for which in "hc"]
    clash = set(state_names) & set(input_names + output_names)
    if clash:
        raise ValueError(f"Arguments `input_names` and `output_names` must not use the state "
                         f"names {sorted(clash)} of the model's stateful layers.")
    for name in input_names + output_names + state_names:
        g.name(name)
    outputs = build(g, input_names)
    inputs = [(name, t, shape) for name, (_, t, shape) in zip(input_names, inputs)]
    inputs += [(name, dtype, shape) for name, shape in g.state_inputs]
    outputs += [out for _, out in g.state_outputs]
    output_names += [name for name, _ in g.state_outputs]
    proto = _model_proto(g, getattr(model, "name", None) or "pylstm", inputs,
                         list(zip(output_names, outputs)), opset)
    onnx.save(proto, path)
    return proto


def _plan(model, initial_state, lengths):
    """`(float dtype, inputs [(name, dtype, shape)], default output names, build)` for the
    kind of `model`; `build(g, input_names)` appends the graph and returns its outputs."""
    from pylstm.nn.lstm import LSTM as NNLSTM

    if isinstance(model, NNLSTM):
        dtype = np.dtype(model.dtype)
        shape = (["batch", "time"] if model.batch_first else ["time", "batch"])
        states = [model.num_layers * (2 if model.bidirectional else 1), "batch",
                  model.hidden_size]
        inputs = [("input", dtype, shape + [model.input_size])]
        inputs += [("h_0", dtype, states), ("c_0", dtype, states)] if initial_state else []
        inputs += [("lengths", np.int32, ["batch"])] if lengths else []

        def build(g, names):
            keys = [key for key, _, _ in inputs[1:]]
            return _export_nn_lstm(g, model, names[0], **dict(zip(keys, names[1:])))
        return dtype, inputs, ["output", "h_n", "c_n"], build
    if initial_state or lengths:
        raise ValueError("Arguments `initial_state` and `lengths` apply to a "
                         "pylstm.nn.LSTM only.")
    if hasattr(model, "_nodes") and hasattr(model, "outputs"):
        dtype, inputs = _functional_inputs(model)
        return dtype, inputs, _distinct(model.output_names), \
            lambda g, names: _export_functional(g, model, *names)
    layers = [l for l in getattr(model, "layers", None) or []
              if type(l).__name__ != "InputLayer"]
    if not hasattr(model, "layers") or not layers:
        raise ValueError(f"Cannot export {type(model).__name__}: expected a Sequential "
                         f"model or a pylstm.nn.LSTM.")
    if not getattr(model, "built", True) or not all(l.built for l in layers):
        raise ValueError("The model is not built: call it on data or give it an Input "
                         "before exporting.")
    dtype, shape, input_type = _sequential_input(model, layers[0])
    return dtype, [("input", input_type, shape)], ["output"], \
        lambda g, names: _export_sequential(g, model, names[0])


def _model_proto(g, name, inputs, outputs, opset):
    """The checked `ModelProto` of `g` with graph `inputs` `(name, dtype, shape)` and
    `outputs` `(name, tensor)` (each an Identity of the tensor, of the graph's dtype)."""
    onnx = g.onnx
    for output, tensor in outputs:
        g.nodes.append(onnx.helper.make_node("Identity", [tensor], [output],
                                             name=g.name(f"{output}_Identity")))
    elem = onnx.helper.np_dtype_to_tensor_dtype(g.dtype)
    graph = onnx.helper.make_graph(
        g.nodes, name,
        [onnx.helper.make_tensor_value_info(
            n, onnx.helper.np_dtype_to_tensor_dtype(np.dtype(t)), shape)
         for n, t, shape in inputs],
        [onnx.helper.make_tensor_value_info(n, elem, None) for n, _ in outputs],
        initializer=g.initializers)
    proto = _make_model(onnx, graph, opset)
    proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _stateful_lstms(model):
    """The stateful LSTM layers of a Keras-style model, Bidirectional's included."""
    found = []
    for layer in getattr(model, "layers", None) or []:
        for sub in (getattr(layer, "forward_layer", None), getattr(layer, "backward_layer", None),
                    layer):
            if getattr(sub, "stateful", False) and hasattr(sub, "units"):
                found.append(sub)
    return found


def _distinct(names):
    """`names` with a repeated one numbered (`h`, `h_1`): a layer's several outputs."""
    out = []
    for name in names:
        base, k = name, 1
        while name in out:
            name, k = f"{base}_{k}", k + 1
        out.append(name)
    return out


def _input_shape(shape, integer, k):
    """Symbolic batch axis, and time axis (axis 1 of a sequence of vectors or of indices)."""
    dims = ["batch" if k == 0 else f"batch_{k}"]
    for axis, d in enumerate(shape[1:], 1):
        if axis == 1 and (len(shape) >= 3 or integer):
            d = "time" if k == 0 else f"time_{k}"
        dims.append(f"dim_{k}_{axis}" if d is None else d)
    return dims


def _functional_inputs(model):
    """The graph's float dtype and its inputs `(name, dtype, shape)`: int64 for an integer
    input or one that feeds an Embedding."""
    from pylstm.layers.embedding import Embedding

    indices = {id(node.call_args[0]) for node in model._nodes
               if not node.is_input and isinstance(node.layer, Embedding)}
    inputs = []
    for k, (t, name) in enumerate(zip(model.inputs, model.input_names)):
        integer = id(t) in indices or np.issubdtype(np.dtype(t.dtype), np.integer)
        inputs.append((name, np.int64 if integer else np.dtype(t.dtype),
                       _input_shape(t.shape, integer, k)))
    floats = [t for _, t, _ in inputs if t is not np.int64]
    return (floats[0] if floats else np.dtype(model.dtype)), inputs


def _sequential_input(model, first):
    """The graph input's float dtype, symbolic shape and element dtype."""
    from pylstm.layers.embedding import Embedding

    declared = model._declared_input_shape() if hasattr(model, "_declared_input_shape") \
        else None
    dtype = np.dtype(first.dtype)
    integer = isinstance(first, Embedding)
    if declared is None:
        if not integer:
            raise ValueError("The model's input shape is unknown: give it an Input before "
                             "exporting.")
        declared = (None, None)
    return dtype, _input_shape(declared, integer, 0), np.int64 if integer else dtype
