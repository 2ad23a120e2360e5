"""`pylstm.onnx.load(path, as_model=True)`: an ONNX graph that is a plain stack of LSTM and
dense layers, rebuilt as a trainable pylstm `Sequential`.

Design: recognise, build, then prove.

1. Recognise. A node is *dynamic* if its result depends on the values of the graph input
   (`Shape` reads only a shape, so the zero initial states that exporters compute from
   `Shape` are not). Every dynamic node must be a layer node -- `LSTM`; `Gather` of a stored
   table by the input's indices (Embedding); `MatMul` or `Gemm` by a stored matrix, with an
   `Add` of a stored bias (Dense); an activation op of pylstm's activations, or swish's
   `Mul(x, Sigmoid(x))` (the Dense's activation, else an `Activation` layer); `Add` or `Mul`
   of the two directions of a bidirectional LSTM (then `Mul` by 0.5: merge mode "ave") -- or
   one that only moves entries (`Transpose`, `Squeeze`, `Unsqueeze`, `Reshape`, `Slice`,
   `Gather`, `Concat`, `Identity`, `Cast`). The layers must form one chain, each reading the
   output of the one before. What a Sequential cannot express (several inputs or outputs,
   `sequence_lens`, initial states from the input, `clip`, `input_forget`, peepholes,
   activations a pylstm LSTM lacks) is refused by name.
2. Build. Each layer's configuration comes from its node and from the shapes of a probe run
   (an LSTM returns sequences when the next layer receives a time axis); the weights are
   converted (ONNX gates i, o, f, c -> i, f, c, o; `Wb + Rb` -> the single bias; Gemm's
   `alpha`, `beta` and `transB` folded into the kernel and bias).
3. Prove. The graph and the candidate run on random probe inputs of several batch sizes and
   lengths; each layer's output must equal, within float tolerance, what the graph hands the
   next layer node (and, for the last layer, the graph output), else the rebuild is refused,
   naming the nodes where they part. Plumbing that does what no layer does (the last step of
   a bidirectional output, an unreversed `go_backwards` sequence, a time-major input, non-zero
   initial states) is therefore refused, never rebuilt wrong.
"""

import numpy as np

from pylstm.onnx import _ops

_LAYOUT_OPS = frozenset({"Transpose", "Squeeze", "Unsqueeze", "Reshape", "Slice", "Gather",
                         "Concat", "Identity", "Cast"})
# ONNX activation op -> pylstm activation (HardSigmoid's, Elu's and Selu's by their
# attributes: `_activation_name`).
_ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax",
                "Softplus": "softplus", "Softsign": "softsign", "Exp": "exponential",
                "Elu": "elu", "Selu": "selu", "HardSigmoid": None}
# Selu's attributes as pylstm's selu has them (ONNX's defaults).
_SELU = {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875}
# (batch, timesteps) of the probe inputs; a dim the file declares fixed replaces these.
_PROBES = ((2, 3), (1, 5), (3, 1))
# (rtol, atol) between the graph and the rebuilt model, by float dtype.
_TOLERANCE = {np.dtype(np.float32): (1e-4, 1e-5), np.dtype(np.float64): (1e-9, 1e-10)}
_PREFIX = "pylstm.onnx.load(as_model=True): not a plain stack: "


def _refuse(message):
    return ValueError(_PREFIX + message)


class _Layer:
    """One layer of the chain: `kind` ("embedding", "lstm", "dense", "activation"), the node
    it was recognised from (`op`, `name`, `inputs`, `attrs`), the tensor it `reads`, the
    tensor that holds its result so far (`output`), the nodes that joined it (`bias`,
    `activation`, `half`) and a bidirectional LSTM's `merge_mode`."""

    def __init__(self, kind, op, name, inputs, attrs, reads, output):
        self.kind, self.op, self.name = kind, op, name
        self.inputs, self.attrs = inputs, attrs
        self.reads, self.output = reads, output
        self.bias = self.activation = self.half = None
        self.merge_mode = "concat"


def rebuild(model):
    """The `Sequential` equal to the `OnnxModel` `model` (see the module docstring).

    Raises:
        ValueError: "...: not a plain stack: ..." naming the node or attribute a Sequential
            cannot express, or the node where the rebuilt model and the graph disagree.
    """
    if len(model.input_names) != 1 or len(model.output_names) != 1:
        raise _refuse(f"the graph has inputs {model.input_names} and outputs "
                      f"{model.output_names}; a Sequential model has one of each.")
    (x_name,), (y_name,) = model.input_names, model.output_names
    nodes = _needed(model._nodes, y_name)
    layers = _chain(nodes, x_name, y_name)
    values = _first_probe(model, layers, x_name)
    sequential = _build(model, layers, values, y_name)
    _prove(model, sequential, layers, x_name, y_name)
    return sequential


# ---------------------------------------------------------------------------------------------
# Recognise

def _needed(nodes, output):
    """The nodes the graph output depends on, in graph order."""
    producer = {out: k for k, node in enumerate(nodes) for out in node[4] if out}
    keep, stack = set(), [output]
    while stack:
        k = producer.get(stack.pop())
        if k is not None and k not in keep:
            keep.add(k)
            stack.extend(i for i in nodes[k][3] if i)
    return [node for k, node in enumerate(nodes) if k in keep]


def _chain(nodes, x_name, y_name):
    """The layers, in order, from the dynamic nodes; refuses what is not a plain stack."""
    dynamic = {x_name}
    deps = {x_name: frozenset()}  # dynamic tensor -> indices of the layers it depends on
    layers = []
    for op, name, function, inputs, outputs, attrs in nodes:
        live = [i for i in inputs if i in dynamic]
        if op == "Shape" or not live:
            continue
        layer = _layer_of(layers, op, name, function, inputs, outputs, attrs, dynamic)
        own = set() if layer is None else {layers.index(layer)}
        union = frozenset(own.union(*(deps[i] for i in live)))
        for out in outputs:
            if out:
                dynamic.add(out)
                deps[out] = union
    if not layers:
        raise _refuse("the graph has no LSTM, Gather (embedding), MatMul or Gemm node on its "
                      "input's path.")
    for k, layer in enumerate(layers):
        if layer.kind == "embedding" and k:
            raise _refuse(f"node {layer.name!r} (Gather) looks up a stored table after node "
                          f"{layers[k - 1].name!r}; an Embedding must be the first layer.")
        before = deps[layer.reads]
        if max(before, default=-1) != k - 1:
            previous = "the graph input" if k == 0 else repr(layers[k - 1].name)
            raise _refuse(f"node {layer.name!r} ({layer.op}) does not read the output of "
                          f"{previous}: the layers do not form one chain.")
    if y_name not in deps or max(deps[y_name], default=-1) != len(layers) - 1:
        raise _refuse(f"the graph output {y_name!r} is not computed from node "
                      f"{layers[-1].name!r} ({layers[-1].op}), the last layer.")
    return layers


def _layer_of(layers, op, name, function, inputs, outputs, attrs, dynamic):
    """Appends the layer a dynamic node starts, or returns the layer it joins (None for a
    node that moves entries). Refuses a node that computes anything else."""
    last = layers[-1] if layers else None
    where = f"node {name!r} ({op})"
    static = [i for i in inputs if i and i not in dynamic]
    if op == "LSTM":
        _check_lstm(name, inputs, attrs, dynamic)
        layers.append(_Layer("lstm", op, name, inputs, attrs, inputs[0], None))
    elif op == "Gather" and inputs[0] not in dynamic:
        if attrs.get("axis", 0) != 0:
            raise _refuse(f"{where} gathers a stored tensor on axis {attrs['axis']}; an "
                          f"Embedding gathers rows (axis 0).")
        layers.append(_Layer("embedding", op, name, inputs, attrs, inputs[1], outputs[0]))
    elif op in ("MatMul", "Gemm"):
        if inputs[0] not in dynamic or len(static) != len([i for i in inputs if i]) - 1:
            raise _refuse(f"{where} multiplies by a tensor computed from the input; a Dense "
                          f"layer multiplies by a stored kernel.")
        if op == "Gemm" and attrs.get("transA", 0):
            raise _refuse(f"{where} has transA=1: a Dense layer reads (batch, features).")
        layers.append(_Layer("dense", op, name, inputs, attrs, inputs[0], outputs[0]))
    elif op == "Add" and last is not None and last.kind == "dense" and last.bias is None \
            and last.activation is None and last.output in inputs and len(static) == 1 \
            and not (last.op == "Gemm" and len(last.inputs) > 2 and last.inputs[2]):
        last.bias, last.output = (name, static[0]), outputs[0]
        return last
    elif op in _ACTIVATIONS:
        if op == "Softmax":
            legacy = function is _ops.softmax_coerced
            attrs = {"axis": attrs.get("axis", 1 if legacy else -1)}
        if last is not None and last.kind == "dense" and last.activation is None \
                and last.output == inputs[0]:
            last.activation, last.output = (name, op, attrs, inputs[0]), outputs[0]
            return last
        layer = _Layer("activation", op, name, inputs, attrs, inputs[0], outputs[0])
        layer.activation = (name, op, attrs, inputs[0])
        layers.append(layer)
    elif op == "Mul" and last is not None and last.activation is not None \
            and last.activation[1] == "Sigmoid" \
            and sorted(inputs) == sorted([last.output, last.activation[3]]):
        last.activation = (name, "Swish", {}, last.activation[3])  # x * sigmoid(x)
        last.output = outputs[0]
        return last
    elif op in ("Add", "Mul") and last is not None and last.kind == "lstm" \
            and last.merge_mode == "concat" and all(i in dynamic for i in inputs):
        # the two directions of a bidirectional LSTM, taken apart then summed or multiplied
        last.merge_mode, last.output = ("sum" if op == "Add" else "mul"), outputs[0]
        return last
    elif op == "Mul" and last is not None and last.kind == "lstm" \
            and last.merge_mode == "sum" and last.output in inputs and len(static) == 1:
        last.merge_mode, last.output, last.half = "ave", outputs[0], (name, static[0])
        return last
    elif op in _LAYOUT_OPS:
        if op == "Gather" and inputs[1] in dynamic:
            raise _refuse(f"{where} gathers by indices computed from the input.")
        return None
    else:
        raise _refuse(f"{where} computes on the input's values, and is not a layer of an "
                      f"Embedding / LSTM / Bidirectional / Dense stack.")
    return layers[-1]


def _check_lstm(name, inputs, attrs, dynamic):
    """Refuses what one pylstm LSTM or Bidirectional(LSTM) layer cannot express."""
    where = f"node {name!r} (LSTM)"
    slot = dict(zip(("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"),
                    list(inputs) + [""] * 8))
    for key in ("W", "R", "B"):
        if slot[key] in dynamic:
            raise _refuse(f"{where} computes its input {key} from the graph input; a layer's "
                          f"weights are stored.")
    if slot["sequence_lens"]:
        raise _refuse(f"{where} has a sequence_lens input; a Sequential model takes no "
                      f"lengths.")
    for key in ("initial_h", "initial_c"):
        if slot[key] in dynamic:
            raise _refuse(f"{where} computes its {key} from the input; a Sequential model's "
                          f"LSTM starts from zero states.")
    if slot["P"]:
        raise _refuse(f"{where} has peepholes (input P), which a pylstm LSTM lacks.")
    if attrs.get("clip") is not None:
        raise _refuse(f"{where} has attribute clip={attrs['clip']}, which a pylstm LSTM "
                      f"lacks.")
    if attrs.get("input_forget", 0):
        raise _refuse(f"{where} has attribute input_forget=1, which a pylstm LSTM lacks.")
    _lstm_activations(name, attrs)


def _lstm_activations(name, attrs):
    """`(recurrent_activation, activation)` pylstm names of an LSTM node's attributes."""
    direction = attrs.get("direction", "forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    dirs = 2 if direction == "bidirectional" else 1
    try:
        acts = _ops._activations(attrs.get("activations"), attrs.get("activation_alpha"),
                                 attrs.get("activation_beta"), dirs)
    except ValueError as error:
        raise _refuse(f"node {name!r} (LSTM): {error}") from error
    names = [[_ops._core_name(a) for a in d] for d in acts]
    where = f"node {name!r} (LSTM) attribute activations"
    for d, (f, g, h) in zip(acts, names):
        for act, core in zip(d, (f, g, h)):
            if core is None:
                raise _refuse(f"{where}: {act[0]}(alpha={act[1]}, beta={act[2]}) is not an "
                              f"activation of a pylstm LSTM.")
        if g != h:
            raise _refuse(f"{where}: the candidate ({g}) and cell-output ({h}) activations "
                          f"differ; a pylstm LSTM uses `activation` for both.")
    if names[0] != names[-1]:
        raise _refuse(f"{where}: the two directions differ ({names[0]} and {names[1]}); "
                      f"Bidirectional runs one LSTM configuration both ways.")
    return names[0][0], names[0][1]


# ---------------------------------------------------------------------------------------------
# Build

def _input_spec(model, layers, x_name):
    """`(dtype, feature dims after (batch, time), has_time)` of the graph input: indices
    `(B, T)` for an Embedding first; else `(B, T, D)` floats with an LSTM in the stack, or
    `(B, D)` for Dense layers alone."""
    declared_dtype, dims = model._input_types.get(x_name, (None, None))
    first = layers[0]
    has_time = first.kind == "embedding" or any(layer.kind == "lstm" for layer in layers)
    if first.kind == "embedding":
        return np.dtype(np.int64), (), True
    dtype = declared_dtype if declared_dtype in _TOLERANCE else None
    weight = model._constants.get(first.inputs[1]) if first.kind != "activation" else None
    if dtype is None and weight is not None and weight.dtype in _TOLERANCE:
        dtype = weight.dtype
    rank = 3 if has_time else 2
    if dims is not None and len(dims) != rank:
        raise _refuse(f"the graph input {x_name!r} has rank {len(dims)}; expected (batch, "
                      f"{'time, ' if has_time else ''}features) before node "
                      f"{first.name!r} ({first.op}).")
    features = dims[-1] if dims is not None else None
    if features is None and weight is not None and weight.ndim >= 2:
        features = weight.shape[-1] if first.kind == "lstm" else (
            weight.shape[1] if first.attrs.get("transB", 0) else weight.shape[0])
    if features is None:
        raise _refuse(f"the size of the graph input {x_name!r}'s last axis is unknown.")
    return dtype or np.dtype(np.float32), (int(features),), has_time


def _probe(model, layers, x_name, batch, steps, rng):
    dtype, features, has_time = _input_spec(model, layers, x_name)
    shape = (batch, steps) + features if has_time else (batch,) + features
    if layers[0].kind == "embedding":
        rows = model._constants.get(layers[0].inputs[0])
        vocabulary = 2 if rows is None else rows.shape[0]
        return rng.integers(0, vocabulary, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _probe_sizes(model, x_name):
    """The (batch, timesteps) of the probes, fixed where the file declares them."""
    _, dims = model._input_types.get(x_name, (None, None))
    dims = tuple(dims or ()) + (None, None)
    sizes = []
    for batch, steps in _PROBES:
        size = (dims[0] or batch, dims[1] or steps)
        if size not in sizes:
            sizes.append(size)
    return sizes


def _evaluate(model, x_name, x):
    try:
        return model._evaluate({x_name: x})
    except ValueError as error:
        raise _refuse(f"the graph fails on a probe input of shape {x.shape}: {error}") from error


def _first_probe(model, layers, x_name):
    """The graph's tensors on the first probe; refuses a time-major input."""
    batch, steps = _probe_sizes(model, x_name)[0]
    x = _probe(model, layers, x_name, batch, steps, np.random.default_rng(0))
    values = _evaluate(model, x_name, x)
    lstm = next((layer for layer in layers if layer.kind == "lstm"), None)
    if lstm is not None and batch != steps:
        seen = values[lstm.reads].shape[:2]
        expected = (batch, steps) if lstm.attrs.get("layout", 0) else (steps, batch)
        if seen == expected[::-1]:
            raise _refuse(f"the graph reads its input {x_name!r} time-major (time, batch, "
                          f"...) (node {lstm.name!r}); a Sequential model reads (batch, "
                          f"time, ...): export with batch_first=True.")
    return values


def _float_dtype(layers, values):
    dtypes = {np.dtype(values[layer.inputs[1 if layer.kind != "embedding" else 0]].dtype)
              for layer in layers if layer.kind != "activation"}
    if len(dtypes) != 1 or not dtypes <= set(_TOLERANCE):
        raise _refuse(f"the layers' weights have dtypes {sorted(map(str, dtypes))}; a "
                      f"Sequential model has one float dtype, float32 or float64.")
    return dtypes.pop()


def _build(model, layers, values, y_name):
    """The candidate `Sequential`, built and holding the graph's weights."""
    from pylstm.layers import Input
    from pylstm.models import Sequential

    dtype = _float_dtype(layers, values)
    input_dtype, features, has_time = _input_spec(model, layers, model.input_names[0])
    shape = ((None,) if has_time else ()) + features
    sequential = Sequential([Input(shape, dtype=str(input_dtype if layers[0].kind ==
                                                    "embedding" else dtype))])
    for k, layer in enumerate(layers):
        after = values[layers[k + 1].reads] if k + 1 < len(layers) else values[y_name]
        made, weights = _make_layer(layer, values, after, dtype)
        sequential.add(made)
        if weights:
            made.set_weights(weights)
    return sequential


def _make_layer(layer, values, after, dtype):
    """`(pylstm layer, its weights)` for one recognised layer; `after` is the value the graph
    hands the next layer (its rank says whether a time axis is kept)."""
    from pylstm.layers import LSTM, Activation, Bidirectional, Dense, Embedding

    kwargs = {"dtype": str(dtype)}
    if layer.kind == "embedding":
        table = values[layer.inputs[0]]
        if table.ndim != 2:
            raise _refuse(f"node {layer.name!r} (Gather) gathers from a rank-{table.ndim} "
                          f"tensor; an Embedding's table is (input_dim, output_dim).")
        return Embedding(*table.shape, **kwargs), [table]
    if layer.kind == "activation":
        return Activation(_activation_name(layer, values), **kwargs), []
    if layer.kind == "dense":
        kernel, bias = _dense_weights(layer, values)
        activation = None if layer.activation is None else _activation_name(layer, values)
        made = Dense(kernel.shape[1], activation=activation, use_bias=bias is not None,
                     **kwargs)
        return made, [kernel] + ([] if bias is None else [bias])
    if after.ndim not in (2, 3):
        raise _refuse(f"node {layer.name!r} (LSTM)'s output reaches the next layer with rank "
                      f"{after.ndim}; expected (batch, features) or (batch, time, "
                      f"features).")
    attrs = layer.attrs
    direction = attrs.get("direction", "forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    w, r = values[layer.inputs[1]], values[layer.inputs[2]]
    b = values[layer.inputs[3]] if len(layer.inputs) > 3 and layer.inputs[3] else None
    recurrent_activation, activation = _lstm_activations(layer.name, attrs)
    for k, key in ((5, "initial_h"), (6, "initial_c")):
        if len(layer.inputs) > k and layer.inputs[k] and np.any(values[layer.inputs[k]]):
            raise _refuse(f"node {layer.name!r} (LSTM) starts from a non-zero {key}; a "
                          f"Sequential model's LSTM starts from zero states.")
    units = r.shape[-1]
    lstm = LSTM(units, activation=activation, recurrent_activation=recurrent_activation,
                use_bias=b is not None, return_sequences=after.ndim == 3,
                go_backwards=direction == "reverse", **kwargs)
    converted = _ops.LSTMWeights(w, r, b, None)
    weights = []
    for d in range(w.shape[0]):
        kernel, recurrent_kernel, bias = converted.core(d, dtype)
        weights += [kernel, recurrent_kernel] + ([bias] if b is not None else [])
    if direction == "bidirectional":
        if layer.merge_mode == "ave" and not np.allclose(values[layer.half[1]], 0.5):
            raise _refuse(f"node {layer.half[0]!r} (Mul) scales the sum of the two "
                          f"directions by {values[layer.half[1]]}; merge_mode='ave' by 0.5.")
        return Bidirectional(lstm, merge_mode=layer.merge_mode, **kwargs), weights
    if layer.merge_mode != "concat":
        raise _refuse(f"node {layer.name!r} (LSTM) has one direction, whose output the graph "
                      f"{'adds to' if layer.merge_mode != 'mul' else 'multiplies by'} itself.")
    return lstm, weights


def _dense_weights(layer, values):
    """`(kernel (K, N), bias (N,) or None)` of a MatMul (+ Add) or Gemm layer."""
    where = f"node {layer.name!r} ({layer.op})"
    kernel = values[layer.inputs[1]]
    if kernel.ndim != 2:
        raise _refuse(f"{where} multiplies by a rank-{kernel.ndim} tensor; a Dense kernel is "
                      f"(input features, units).")
    bias = None
    if layer.op == "Gemm":
        attrs = layer.attrs
        kernel = attrs.get("alpha", 1.0) * (kernel.T if attrs.get("transB", 0) else kernel)
        if len(layer.inputs) > 2 and layer.inputs[2]:
            bias = attrs.get("beta", 1.0) * values[layer.inputs[2]]
    if layer.bias is not None:
        where, bias = f"node {layer.bias[0]!r} (Add)", values[layer.bias[1]]
    if bias is not None:
        units = kernel.shape[1]
        if bias.size not in (1, units) or any(n != 1 for n in bias.shape[:-1]):
            raise _refuse(f"{where} adds a tensor of shape {bias.shape}; a Dense bias is "
                          f"({units},).")
        bias = np.broadcast_to(bias.reshape(-1), (units,))
    return kernel, bias


def _activation_name(layer, values):
    """The pylstm activation of a layer's activation node (`Mul` for swish)."""
    name, op, attrs, _ = layer.activation
    where = f"node {name!r} ({'Mul' if op == 'Swish' else op})"
    if op == "Swish":
        return "swish"
    if op == "Softmax":
        rank = values[layer.output].ndim
        if attrs["axis"] % max(rank, 1) != rank - 1:
            raise _refuse(f"{where} normalises axis {attrs['axis']} of a rank-{rank} "
                          f"tensor; a softmax activation normalises the last.")
    if op == "HardSigmoid":
        alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
        found = _ops._hard_sigmoid_name(alpha, beta)
        if found is None:
            raise _refuse(f"{where} has alpha={alpha}, beta={beta}; pylstm's hard sigmoids "
                          f"have (1/6, 0.5) (hard_sigmoid) and (0.2, 0.5) "
                          f"(legacy_hard_sigmoid).")
        return found
    if op == "Elu" and not _ops._is(attrs.get("alpha", 1.0), None, 1.0, None):
        raise _refuse(f"{where} has alpha={attrs['alpha']}; pylstm's elu has alpha 1.")
    if op == "Selu" and not all(_ops._is(attrs.get(k, v), None, v, None)
                                for k, v in _SELU.items()):
        raise _refuse(f"{where} has attributes {attrs}; pylstm's selu has ONNX's default "
                      f"alpha and gamma.")
    return _ACTIVATIONS[op]


# ---------------------------------------------------------------------------------------------
# Prove

def _prove(model, sequential, layers, x_name, y_name):
    """Runs the graph and the candidate on every probe; refuses at the first layer whose
    output differs from what the graph hands on."""
    rng = np.random.default_rng(1)
    made = [layer for layer in sequential.layers if type(layer).__name__ != "InputLayer"]
    output = (y_name, f"the graph output {y_name!r}")
    for batch, steps in _probe_sizes(model, x_name):
        x = _probe(model, layers, x_name, batch, steps, rng)
        values = _evaluate(model, x_name, x)
        h = x
        for k, (layer, pylstm_layer) in enumerate(zip(layers, made)):
            h = np.asarray(pylstm_layer(h))
            if k + 1 < len(layers):
                nxt = layers[k + 1]
                expected = _batch_major(nxt, values[nxt.reads])
                reader = (nxt.reads, f"node {nxt.name!r} ({nxt.op})")
            else:
                expected, reader = values[y_name], output
            _compare(model, h, expected, layer, pylstm_layer, reader, (batch, steps))
        whole = np.asarray(sequential(x))
        _compare(model, whole, values[y_name], layers[-1], made[-1], output, (batch, steps))


def _batch_major(layer, value):
    """What a layer node reads, as the pylstm layer reads it: an LSTM's time-major X (layout
    0) to (B, T, D)."""
    if layer.kind == "lstm" and not layer.attrs.get("layout", 0) and value.ndim == 3:
        return value.transpose(1, 0, 2)
    return value


def _compare(model, got, expected, layer, pylstm_layer, reader, size):
    """Refuses unless `got` (the pylstm layer's output) is `expected` (what `reader`, a pair
    (tensor, description), receives in the graph)."""
    rtol, atol = _TOLERANCE.get(np.dtype(got.dtype), _TOLERANCE[np.dtype(np.float32)])
    if got.shape == expected.shape and np.allclose(got, expected, rtol=rtol, atol=atol):
        return
    detail = (f"shape {got.shape} against {expected.shape}" if got.shape != expected.shape
              else f"max abs difference {float(np.max(np.abs(got - expected))):.3g}")
    hint = ""
    if layer.kind == "lstm" and got.ndim == 2 and _reads_y_only(model, layer.name, reader[0]):
        hint = (" The graph takes one time step of the LSTM's output Y: for a bidirectional "
                "or reverse LSTM that step is not the final state that a layer with "
                "return_sequences=False returns; read Y_h (PyTorch's h_n) instead.")
    raise _refuse(f"the output of node {layer.name!r} ({layer.op}) reaches {reader[1]} "
                  f"differently from what {_describe(pylstm_layer)} computes ({detail}, "
                  f"probe batch {size[0]}, {size[1]} steps).{hint}")


def _reads_y_only(model, lstm_name, tensor):
    """Whether `tensor` is computed from the LSTM node's Y and not from its Y_h."""
    producer = {out: node for node in model._nodes for out in node[4] if out}
    outputs = next(node[4] for node in model._nodes if node[1] == lstm_name)
    y, y_h = (list(outputs) + ["", ""])[:2]
    found, seen, stack = set(), set(), [tensor]
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        if t in (y, y_h):
            found.add(t)
        elif t in producer and producer[t][0] != "LSTM":
            stack.extend(i for i in producer[t][3] if i)
    return y in found and y_h not in found


def _describe(layer):
    inner = getattr(layer, "forward_layer", None)
    if inner is not None:
        return (f"Bidirectional(LSTM({inner.units}, return_sequences="
                f"{inner.return_sequences}), merge_mode={layer.merge_mode!r})")
    if type(layer).__name__ == "LSTM":
        return (f"LSTM({layer.units}, return_sequences={layer.return_sequences}, "
                f"go_backwards={layer.go_backwards})")
    return f"{type(layer).__name__} {layer.name!r}"
