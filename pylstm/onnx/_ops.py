"""The ONNX operators that exporters place around LSTM nodes, one NumPy function each.

Each function takes the node's input arrays (None for an omitted optional input) and its
attributes as keywords, and returns a tuple of output arrays, with the semantics of the ONNX
operator documentation (https://onnx.ai/onnx/operators/). `OPS` maps op types to functions;
`pylstm.onnx._import` looks them up and refuses any other op type.
"""

import functools
import math

import numpy as np
from onnx import helper

from pylstm._validation import all_finite, check_lstm_weights
from pylstm.ops._dense import forward as _forward

# Elements one ConstantOfShape or Expand may allocate: a hostile file cannot ask for more.
MAX_ELEMENTS = 1 << 28


def _shape_of(shape):
    shape = tuple(np.asarray(shape, dtype=np.int64).reshape(-1).tolist())
    if any(s < 0 for s in shape):
        raise ValueError(f"Negative dimension in shape {shape}.")
    # in floats: a hostile shape's product must not grow into a huge integer
    if math.prod(map(float, shape)) > MAX_ELEMENTS:
        raise ValueError(f"Shape {shape} exceeds {MAX_ELEMENTS} elements.")
    return shape


def gemm(a, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    a = a.T if transA else a
    b = b.T if transB else b
    y = alpha * (a @ b)
    if c is not None:
        y = y + beta * c
    return (y.astype(a.dtype, copy=False),)


def matmul(a, b):
    return (np.matmul(a, b),)


def add(a, b):
    return (a + b,)


def sub(a, b):
    return (a - b,)


def mul(a, b):
    return (a * b,)


def div(a, b):
    if np.issubdtype(a.dtype, np.integer):
        return (np.trunc(a / b).astype(a.dtype),)
    return (a / b,)


def transpose(x, *, perm=None):
    return (np.transpose(x, perm),)


def _axes(axes, attribute):
    if axes is not None:
        return tuple(int(a) for a in np.asarray(axes).reshape(-1))
    return None if attribute is None else tuple(attribute)


def squeeze(x, axes=None, *, attr_axes=None):
    axes = _axes(axes, attr_axes)
    return (np.squeeze(x, axis=axes),)


def unsqueeze(x, axes=None, *, attr_axes=None):
    axes = _axes(axes, attr_axes)
    if axes is None:
        raise ValueError("Unsqueeze needs `axes`.")
    rank = x.ndim + len(axes)
    axes = sorted(a % rank for a in axes)
    if len(set(axes)) != len(axes):
        raise ValueError(f"Unsqueeze axes {axes} repeat an axis.")
    shape = list(x.shape)
    for a in axes:  # increasing: each 1 lands at its place in the output's shape
        shape.insert(a, 1)
    return (x.reshape(shape),)


def reshape(x, shape, *, allowzero=0):
    shape = [int(s) for s in np.asarray(shape).reshape(-1)]
    if not allowzero:
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return (np.reshape(x, shape),)


def concat(*xs, axis):
    return (np.concatenate(xs, axis=axis),)


def slice_(x, starts, ends, axes=None, steps=None):
    starts = np.asarray(starts).reshape(-1)
    ends = np.asarray(ends).reshape(-1)
    axes = range(len(starts)) if axes is None else np.asarray(axes).reshape(-1)
    steps = np.ones(len(starts), dtype=np.int64) if steps is None else np.asarray(steps).reshape(-1)
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis, step = int(axis) % x.ndim, int(step)
        if step == 0:
            raise ValueError("Slice step cannot be 0.")
        n = x.shape[axis]
        start, end = int(start), int(end)
        start, end = start + n if start < 0 else start, end + n if end < 0 else end
        # ONNX clamps after adding n; unlike Python's slicing, a start still below 0 with a
        # negative step is clamped to 0, not an empty slice.
        if step > 0:
            index[axis] = slice(min(max(start, 0), n), min(max(end, 0), n), step)
        elif n:
            end = min(max(end, -1), n - 1)
            index[axis] = slice(min(max(start, 0), n - 1), None if end < 0 else end, step)
    return (x[tuple(index)],)


def gather(x, indices, *, axis=0):
    indices = np.asarray(indices, dtype=np.int64)
    n = x.shape[axis]
    if indices.ndim == 0:  # one index (a dimension read from Shape): no array arithmetic
        i = int(indices)
        if not -n <= i < n:
            raise ValueError(f"Gather index out of range [{-n}, {n}).")
        return (np.take(x, i + n if i < 0 else i, axis=axis),)
    if indices.size and (indices.min() < -n or indices.max() >= n):
        raise ValueError(f"Gather index out of range [{-n}, {n}).")
    return (np.take(x, np.where(indices < 0, indices + n, indices), axis=axis),)


def shape(x, *, start=0, end=None):
    return (np.array(x.shape[start:end], dtype=np.int64),)


_FLOAT_ZERO = np.zeros(1, dtype=np.float32)


def constant_of_shape(shape, *, value=None):
    value = _FLOAT_ZERO if value is None else value.reshape(-1)
    return (np.full(_shape_of(shape), value[0], dtype=value.dtype),)


def identity(x):
    return (x,)


def cast(x, *, to, saturate=1, round_mode=None):
    return (x.astype(helper.tensor_dtype_to_np_dtype(to)),)


def softmax(x, *, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return (e / np.sum(e, axis=axis, keepdims=True),)


def softmax_coerced(x, *, axis=1):
    """Softmax before opset 13: over the input flattened to 2-D at `axis`."""
    rows = int(np.prod(x.shape[:axis % x.ndim if x.ndim else 0]))
    return (softmax(x.reshape(rows, -1), axis=1)[0].reshape(x.shape),)


def sigmoid(x):
    return ((1.0 / (1.0 + np.exp(-x))).astype(x.dtype, copy=False),)


def tanh(x):
    return (np.tanh(x),)


def relu(x):
    return (np.maximum(x, 0).astype(x.dtype, copy=False),)


def elu(x, *, alpha=1.0):
    return (np.where(x >= 0, x, alpha * np.expm1(np.minimum(x, 0))).astype(x.dtype, copy=False),)


def selu(x, *, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875):
    y = gamma * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))
    return (y.astype(x.dtype, copy=False),)


def softplus(x):
    return (np.logaddexp(0, x).astype(x.dtype, copy=False),)


def softsign(x):
    return (x / (1 + np.abs(x)),)


def exp(x):
    return (np.exp(x),)


def hard_sigmoid(x, *, alpha=0.2, beta=0.5):
    return (np.clip(alpha * x + beta, 0, 1).astype(x.dtype, copy=False),)


def reverse_sequence(x, sequence_lens, *, batch_axis=1, time_axis=0):
    y = np.array(x)
    for b, n in enumerate(np.asarray(sequence_lens).reshape(-1)):
        n = int(n)
        if not 0 <= n <= x.shape[time_axis]:
            raise ValueError(f"ReverseSequence length {n} outside [0, {x.shape[time_axis]}].")
        src = [slice(None)] * x.ndim
        src[batch_axis], src[time_axis] = b, slice(n - 1, None, -1) if n else slice(0, 0)
        dst = [slice(None)] * x.ndim
        dst[batch_axis], dst[time_axis] = b, slice(0, n)
        y[tuple(dst)] = x[tuple(src)]
    return (y,)


def expand(x, shape):
    shape = _shape_of(shape)
    out = np.broadcast_shapes(x.shape, shape)
    _shape_of(out)
    return (np.broadcast_to(x, out).copy(),)


def where(condition, x, y):
    return (np.where(condition, x, y),)


def flatten(x, *, axis=1):
    axis = axis % (x.ndim + 1) if axis < 0 else axis
    return (x.reshape(int(np.prod(x.shape[:axis])), -1),)


def _elementwise(function):
    return lambda *xs: (function(*xs),)


def range_(start, limit, delta):
    start, limit, delta = (np.asarray(v).reshape(()) for v in (start, limit, delta))
    if delta == 0:
        raise ValueError("Range delta cannot be 0.")
    n = max(int(np.ceil((limit - start) / delta)), 0)
    _shape_of((n,))
    return ((start + delta * np.arange(n)).astype(start.dtype),)


def reduce_sum(x, axes=None, *, keepdims=1, noop_with_empty_axes=0, attr_axes=None):
    axes = _axes(axes, attr_axes)
    if not axes:
        if noop_with_empty_axes:
            return (x,)
        axes = None
    return (np.sum(x, axis=axes, keepdims=bool(keepdims), dtype=x.dtype),)


def _variadic(function):
    return lambda *xs: (functools.reduce(function, xs),)


OPS = {
    "Gemm": gemm, "MatMul": matmul, "Add": add, "Sub": sub, "Mul": mul, "Div": div,
    "Transpose": transpose, "Squeeze": squeeze, "Unsqueeze": unsqueeze, "Reshape": reshape,
    "Concat": concat, "Slice": slice_, "Gather": gather, "Shape": shape,
    "ConstantOfShape": constant_of_shape, "Identity": identity, "Cast": cast,
    "Softmax": softmax, "Sigmoid": sigmoid, "Tanh": tanh, "Relu": relu, "Elu": elu,
    "Selu": selu, "Softplus": softplus, "Softsign": softsign, "Exp": exp,
    "HardSigmoid": hard_sigmoid,
    "ReverseSequence": reverse_sequence, "Expand": expand, "Where": where, "Flatten": flatten,
    "Equal": _elementwise(np.equal), "Less": _elementwise(np.less),
    "Greater": _elementwise(np.greater), "GreaterOrEqual": _elementwise(np.greater_equal),
    "And": _elementwise(np.logical_and), "Or": _elementwise(np.logical_or),
    "Xor": _elementwise(np.logical_xor), "Not": _elementwise(np.logical_not),
    "Max": _variadic(np.maximum), "Min": _variadic(np.minimum), "Sum": _variadic(np.add),
    "Range": range_, "ReduceSum": reduce_sum,
}


# ---------------------------------------------------------------------------------------------
# LSTM (ONNX's equations: W, R, B in gate order i, o, f, c; P peepholes in order i, o, f).

_ONNX_TO_KERAS = (0, 2, 3, 1)  # ONNX blocks i, o, f, c -> Keras blocks i, f, c, o

def _is(alpha, beta, want_alpha, want_beta):
    """Whether (alpha, beta) are (want_alpha, want_beta) as float32 (attributes are float32,
    so 0.2 is read back as 0.20000000298...)."""
    return (np.float32(alpha), np.float32(0 if beta is None else beta)) == \
        (np.float32(want_alpha), np.float32(0 if want_beta is None else want_beta))


def _hard_sigmoid_name(a, b):
    if _is(a, b, 0.2, 0.5):
        return "legacy_hard_sigmoid"  # Keras 2's clip(0.2 x + 0.5, 0, 1)
    return "hard_sigmoid" if _is(a, b, 1.0 / 6.0, 0.5) else None  # Keras 3's relu6(x + 3) / 6


# ONNX activation name -> (pylstm core name given (alpha, beta), or None; NumPy function).
_ACTIVATIONS = {
    "sigmoid": (lambda a, b: "sigmoid", lambda x, a, b: 1.0 / (1.0 + np.exp(-x))),
    "tanh": (lambda a, b: "tanh", lambda x, a, b: np.tanh(x)),
    "relu": (lambda a, b: "relu", lambda x, a, b: np.maximum(x, 0)),
    "softsign": (lambda a, b: "softsign", lambda x, a, b: x / (1 + np.abs(x))),
    "softplus": (lambda a, b: "softplus", lambda x, a, b: np.logaddexp(0, x)),
    "affine": (lambda a, b: "linear" if _is(a, b, 1.0, 0.0) else None,
               lambda x, a, b: a * x + b),
    "leakyrelu": (lambda a, b: "relu" if a == 0.0 else None,
                  lambda x, a, b: np.where(x >= 0, x, a * x)),
    "thresholdedrelu": (lambda a, b: None, lambda x, a, b: np.where(x > a, x, 0)),
    "scaledtanh": (lambda a, b: "tanh" if _is(a, b, 1.0, 1.0) else None,
                   lambda x, a, b: a * np.tanh(b * x)),
    "hardsigmoid": (_hard_sigmoid_name, lambda x, a, b: np.clip(a * x + b, 0, 1)),
    "elu": (lambda a, b: "elu" if _is(a, b, 1.0, None) else None,
            lambda x, a, b: np.where(x >= 0, x, a * (np.exp(np.minimum(x, 0)) - 1))),
}
# Defaults of alpha and beta where the ONNX operator of the same name has them.
_DEFAULTS = {"leakyrelu": (0.01, None), "thresholdedrelu": (1.0, None), "elu": (1.0, None),
             "hardsigmoid": (0.2, 0.5), "affine": (1.0, 0.0), "scaledtanh": (1.0, 1.0)}


def _activations(names, alphas, betas, dirs):
    """Triples (f, g, h) per direction of (name, alpha, beta); alpha and beta consumed in the
    order of the activations that take them (as ONNX Runtime reads `activation_alpha`)."""
    return _parse_activations(tuple(names or ()), tuple(alphas or ()), tuple(betas or ()),
                              dirs)


@functools.lru_cache(maxsize=64)  # a node's attributes are parsed once, not at every run
def _parse_activations(names, alphas, betas, dirs):
    names = [n.decode() if isinstance(n, bytes) else n for n in
             (names or ["Sigmoid", "Tanh", "Tanh"] * dirs)]
    if len(names) != 3 * dirs:
        raise ValueError(f"`activations` needs {3 * dirs} names, got {len(names)}.")
    alphas, betas = list(alphas or []), list(betas or [])
    out = []
    for name in names:
        key = name.lower()
        if key not in _ACTIVATIONS:
            raise ValueError(f"Unknown LSTM activation {name!r} in attribute `activations`.")
        alpha, beta = _DEFAULTS.get(key, (None, None))
        if alpha is not None and alphas:
            alpha = float(alphas.pop(0))
        if beta is not None and betas:
            beta = float(betas.pop(0))
        out.append((key, alpha, beta))
    return tuple(tuple(out[3 * d:3 * d + 3]) for d in range(dirs))


def _core_name(activation):
    key, alpha, beta = activation
    return _ACTIVATIONS[key][0](alpha, beta)


def _apply(activation, x):
    key, alpha, beta = activation
    return _ACTIVATIONS[key][1](x, alpha, beta).astype(x.dtype, copy=False)


def _lstm_numpy(x, w, r, b, p, h0, c0, lengths, reverse, acts, clip, input_forget):
    """One direction in plain NumPy: the readable ONNX equations, for what the core lacks.

    x `(T, B, D)`, w `(4H, D)`, r `(4H, H)`, b `(8H,)`, h0/c0 `(B, H)`, p `(3H,)`,
    lengths `(B,)`; returns y `(T, B, H)`, h_n, c_n `(B, H)`.
    """
    T, B, _ = x.shape
    H = r.shape[1]
    f, g, h_act = acts
    h, c = h0.copy(), c0.copy()
    y = np.zeros((T, B, H), dtype=x.dtype)
    bias = b[:4 * H] + b[4 * H:]

    def clipped(z):  # clip bounds each gate's whole input, peephole term included (as ORT)
        return z if clip is None else np.clip(z, -clip, clip)

    p_i, p_o, p_f = p[:H], p[H:2 * H], p[2 * H:]
    for step in range(T):
        live = step < lengths
        t = np.where(live, lengths - 1 - step, 0) if reverse else np.full(B, step)
        z = x[t, np.arange(B)] @ w.T + h @ r.T + bias
        z_i, z_o, z_f, z_c = np.split(z, 4, axis=1)
        i = _apply(f, clipped(z_i + p_i * c))
        forget = 1 - i if input_forget else _apply(f, clipped(z_f + p_f * c))
        c_new = forget * c + i * _apply(g, clipped(z_c))
        o = _apply(f, clipped(z_o + p_o * c_new))
        h_new = o * _apply(h_act, c_new)
        rows = np.flatnonzero(live)  # samples past their length keep their state
        h[rows], c[rows] = h_new[rows], c_new[rows]
        y[t[rows], rows] = h_new[rows]
    # A sample of length 0 has zero final states, not its initial ones (as ONNX Runtime).
    empty = (lengths == 0)[:, None]
    return y, np.where(empty, 0, h), np.where(empty, 0, c)


class LSTMWeights:
    """One LSTM node's W, R, B, P `(dirs, ...)` in ONNX layout, converted for each direction
    once per float dtype and kept: Keras gate order for the compiled core, cast copies for the
    NumPy loop. `load` makes one per node whose weights are stored in the file, so that runs
    reuse it; weights computed at run time get a fresh one per run."""

    def __init__(self, w, r, b, p):
        self._onnx = (w, r, b, p)
        self._core, self._loop = {}, {}

    def core(self, d, dtype):
        """`(kernel (D, 4H), recurrent_kernel (H, 4H), bias (4H,))` of direction `d`, gates
        i, f, c, o, contiguous, of `dtype`, as `check_lstm_weights` passes them (kept only
        then: weights with NaN or inf raise its error at every run)."""
        key = (d, np.dtype(dtype))
        if key not in self._core:
            w, r, b, _ = self._onnx
            H = r.shape[-1]
            order = list(_ONNX_TO_KERAS)

            def keras(m):  # (4H, n) in ONNX gate order -> (n, 4H) in Keras gate order
                return np.ascontiguousarray(
                    m.reshape(4, H, -1)[order].reshape(4 * H, -1).T, dtype=dtype)

            bias = np.zeros(4 * H, dtype) if b is None else (
                b[d, :4 * H].astype(dtype) + b[d, 4 * H:].astype(dtype))
            self._core[key] = check_lstm_weights(
                keras(w[d]), keras(r[d]),
                np.ascontiguousarray(bias.reshape(4, H)[order].reshape(-1)))[:3]
        return self._core[key]

    def loop(self, d, dtype):
        """`(w (4H, D), r (4H, H), b (8H,), p (3H,))` of direction `d` in ONNX layout, of
        `dtype` (zeros for an omitted B or P)."""
        key = (d, np.dtype(dtype))
        if key not in self._loop:
            w, r, b, p = self._onnx
            H = r.shape[-1]
            self._loop[key] = (w[d].astype(dtype), r[d].astype(dtype),
                               np.zeros(8 * H, dtype) if b is None else b[d].astype(dtype),
                               np.zeros(3 * H, dtype) if p is None else p[d].astype(dtype))
        return self._loop[key]


@functools.lru_cache(maxsize=64)
def _core_activations(acts):
    """The keyword arguments of `pylstm.ops.lstm_forward` for one direction's (f, g, h):
    Keras's `activation` / `recurrent_activation` pair where g and h agree (resolved once and
    cached by pylstm.ops), else the five `gate_activations` (same codes for the core)."""
    f, g, h = (_core_name(a) for a in acts)
    if g == h:
        return {"activation": g, "recurrent_activation": f}
    return {"gate_activations": (f, f, g, f, h)}


def _lstm_core(x, weights, h0, c0, lengths, reverse, acts):
    """One direction on pylstm's compiled core; `weights` from `LSTMWeights.core`, `h0`/`c0`
    None for zeros, `lengths` None for full sequences; x, h0 and c0 already scanned for NaN
    and inf (`lstm`), and of the weights' dtype.

    It calls the entry point of pylstm's Keras-style layers (`pylstm.ops._dense.forward`,
    `lstm_forward` told what is checked already), so that no array is scanned twice and the
    weights are checked once per node, not at every run."""
    y, h_n, c_n, _ = _forward(x, *weights, h0, c0, reverse=reverse, time_major=True,
                              lengths=lengths, checked=("x", "h0", "c0", "weights"),
                              **_core_activations(acts))
    return y, h_n, c_n


def _finite(value):
    """Whether an array holds no NaN or inf (None: nothing to scan)."""
    if value is None:
        return True
    finite = all_finite(value) if type(value) is np.ndarray else None
    return bool(np.isfinite(value).all()) if finite is None else finite


@functools.lru_cache(maxsize=64)  # read at every run of a node, on its fixed attributes
def lstm_route(acts, clip, input_forget, peepholes):
    """Why an LSTM node runs on the NumPy loop instead of the compiled core, or None for the
    core (at run time, a `sequence_lens` of 0 or an empty sequence also takes the loop)."""
    if peepholes:
        return "peepholes P"
    if clip is not None:
        return f"clip={clip}"
    if input_forget:
        return "input_forget=1"
    for d in acts:
        for key, alpha, beta in d:
            if _core_name((key, alpha, beta)) is None:
                return f"activation {key}(alpha={alpha}, beta={beta})"
    return None


_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


def lstm(x, w, r, b=None, sequence_lens=None, initial_h=None, initial_c=None, p=None, *,
         direction="forward", activations=None, activation_alpha=None, activation_beta=None,
         clip=None, input_forget=0, layout=0, hidden_size=None, node="LSTM", weights=None,
         zero_states=(False, False)):
    """ONNX LSTM: Y `(T, dirs, B, H)`, Y_h and Y_c `(dirs, B, H)` (batch first with layout 1).

    Runs each direction on pylstm's compiled core when it can express the node (activations
    it has, no clip, no input_forget, no peepholes, lengths at least 1, finite inputs), else on
    the NumPy loop above: both give ONNX's answer. `weights` is the node's `LSTMWeights` when
    W, R, B and P are stored in the file (converted once, reused by every run), else None.
    `zero_states` says whether initial_h and initial_c are known at load to be all zeros
    (+0.0, as a `ConstantOfShape` of 0 makes them): then, once their shapes are checked, they
    run as omitted states, which the core starts from the same zeros.
    """
    direction = direction.decode() if isinstance(direction, bytes) else direction
    dirs = _DIRECTIONS.get(direction)
    if dirs is None:
        raise ValueError(f"Node {node!r}: unknown LSTM attribute direction={direction!r}.")
    if layout not in (0, 1):
        raise ValueError(f"Node {node!r}: LSTM attribute layout={layout} is not 0 or 1.")
    if x is None or w is None or r is None:
        raise ValueError(f"Node {node!r}: LSTM inputs X, W and R are required.")
    if x.ndim != 3 or w.ndim != 3 or r.ndim != 3:
        raise ValueError(f"Node {node!r}: LSTM inputs X, W, R must be rank 3.")
    dtype = x.dtype if x.dtype in _NATIVE_FLOATS else np.result_type(x.dtype, np.float32)
    if layout:
        x = x.transpose(1, 0, 2)
        initial_h = None if initial_h is None else initial_h.transpose(1, 0, 2)
        initial_c = None if initial_c is None else initial_c.transpose(1, 0, 2)
    x = x.astype(dtype, copy=False)
    T, B, D = x.shape
    H = r.shape[-1]
    for name, value, want in (("W", w, (dirs, 4 * H, D)), ("R", r, (dirs, 4 * H, H)),
                              ("B", b, (dirs, 8 * H)), ("initial_h", initial_h, (dirs, B, H)),
                              ("initial_c", initial_c, (dirs, B, H)), ("P", p, (dirs, 3 * H))):
        if value is not None and value.shape != want:
            raise ValueError(f"Node {node!r}: LSTM input {name} has shape {value.shape}, "
                             f"expected {want}.")
    if hidden_size is not None and hidden_size != H:
        raise ValueError(f"Node {node!r}: LSTM attribute hidden_size={hidden_size}, but R "
                         f"has {H} units.")
    h0 = None if initial_h is None or zero_states[0] else initial_h.astype(dtype, copy=False)
    c0 = None if initial_c is None or zero_states[1] else initial_c.astype(dtype, copy=False)
    lengths = None
    if sequence_lens is not None:
        lengths = np.asarray(sequence_lens, dtype=np.int64).reshape(-1)
        if lengths.shape != (B,) or np.any(lengths < 0) or np.any(lengths > T):
            raise ValueError(f"Node {node!r}: LSTM sequence_lens must be {B} values in [0, {T}].")
        if np.all(lengths == T):
            lengths = None
    acts = _activations(activations, activation_alpha, activation_beta, dirs)
    # The core refuses NaN and infinity, which ONNX propagates (pylstm's masked exports give
    # NaN for masks one node cannot express): such inputs take the loop.
    plain = (lstm_route(acts, clip, input_forget, p is not None) is None
             and T >= 1 and (lengths is None or np.all(lengths >= 1))
             and _finite(x) and _finite(h0) and _finite(c0))
    if weights is None:
        weights = LSTMWeights(w, r, b, p)
    zeros = None if plain else np.zeros((B, H), dtype=dtype)
    ys, hs, cs = [], [], []
    for d in range(dirs):
        reverse = direction == "reverse" or d == 1
        h0_d = None if h0 is None else h0[d]
        c0_d = None if c0 is None else c0[d]
        if plain:
            y, h_n, c_n = _lstm_core(x, weights.core(d, dtype), h0_d, c0_d, lengths, reverse,
                                     acts[d])
        else:
            y, h_n, c_n = _lstm_numpy(x, *weights.loop(d, dtype),
                                      zeros if h0_d is None else h0_d,
                                      zeros if c0_d is None else c0_d,
                                      np.full(B, T) if lengths is None else lengths,
                                      reverse, acts[d], clip, input_forget)
        ys.append(y)
        hs.append(h_n)
        cs.append(c_n)
    if dirs == 1:  # views: one direction needs no copy
        y, h_n, c_n = ys[0][:, None], hs[0][None], cs[0][None]
    else:
        y, h_n, c_n = np.stack(ys, axis=1), np.stack(hs), np.stack(cs)
    if layout:
        return y.transpose(2, 0, 1, 3), h_n.transpose(1, 0, 2), c_n.transpose(1, 0, 2)
    return y, h_n, c_n


OPS["LSTM"] = lstm
# Op types whose semantics changed: (first opset of the semantics in OPS, function before it).
LEGACY_OPS = {"Softmax": (13, softmax_coerced)}
