"""Functional LSTM: validated forward and backward over whole sequences, on the Cython core.

This is the boundary between Python and the compiled kernels of `pylstm._core`: everything is
checked and allocated here, and the kernels trust what they get. Layers (`pylstm.layers.LSTM`)
and benchmarks call these two functions; `pylstm._reference` is the same math in plain NumPy,
and runs instead of the core for activations the core does not have (Python callables).

Legend: B batch, T timesteps, D input features, H units, P recurrent output size (H, or the
projection size), G = 4H. Weights use the Keras layout and gate order i, f, c, o.
"""

import numpy as np

from pylstm import _core, _reference, activations
from pylstm._validation import as_float_array, check_array, check_finite, check_weight

_INT32_MAX = 2**31 - 1


class LSTMCache:
    """What `lstm_forward(..., training=True)` keeps for `lstm_backward`.

    Attributes (time-major, C-contiguous, the weights' dtype):
        x: `(T, B, D)` inputs (before input dropout).
        gates: `(T, B, 4H)` activated gates i, f, g, o.
        zs: `(T, B, 4H)` gate pre-activations, kept only when a gate's activation needs its
            input for its derivative (swish); else None.
        hs: `(T + 1, B, P)` recurrent states, the initial state in the slot before step one.
        cs: `(T + 1, B, H)` cell states, likewise.
        ms: `(T, B, H)` pre-projection outputs `o * act(c)`, or None without projection.
        dropout_mask: `(R, B, D)` input dropout masks, R = 1 or 4 (one per gate), or None.
        recurrent_dropout_mask: `(R, B, P)` recurrent dropout masks, or None.
        reference: the NumPy path's cache when an activation is a Python callable (then
            `gates`, `zs`, `hs`, `cs` and `ms` are None), else None.

    It holds references to the weights, not copies: run `lstm_backward` before the weights
    change (as a training step does: forward, backward, then the optimizer update).
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)


def lstm_forward(x, kernel, recurrent_kernel, bias=None, h0=None, c0=None, *, projection=None,
                 mask=None, reverse=False, zero_output_for_mask=False, activation="tanh",
                 recurrent_activation="sigmoid", gate_activations=None, dropout_mask=None,
                 recurrent_dropout_mask=None, training=False, return_sequences=True,
                 time_major=False):
    """Runs one LSTM direction over whole sequences.

    Computes, for each step t (in reverse order when `reverse`):
    `z = (x_t * dropout_mask) @ kernel + (h * recurrent_dropout_mask) @ recurrent_kernel + bias`,
    `i, f, o = recurrent_activation(...)`, `g = activation(z_c)`, `c = f * c + i * g`,
    `h = o * activation(c)` (then `h = h @ projection` with a projection, LSTMP, Sak et al.
    2014). This is the equation of Keras 3's `LSTMCell` and of PyTorch's `nn.LSTM` (whose two
    biases sum to `bias`).

    Activations named by a string run inside the compiled core, with no Python call per step.
    A Python callable (anything but a built-in of `pylstm.activations`) runs the whole call on
    the plain-NumPy path (`pylstm._reference`, one loop over time: much slower), with the same
    arguments, results and cache: callables with `backward(x, y, grad_y)` (as
    `pylstm.activations.get` returns) use it; plain callables `f(ndarray) -> ndarray` must be
    elementwise, and their derivative is taken by float64 central differences (about 1e-10
    relative error for a smooth `f`; inference calls only `f`).

    Args:
        x: `(B, T, D)` array (`(T, B, D)` if `time_major`), float32 or float64; cast to the
            weights' dtype. Need not be contiguous.
        kernel: `(D, 4H)` input weights, float32 or float64 (sets the dtype of everything).
        recurrent_kernel: `(P, 4H)` recurrent weights, same dtype.
        bias: `(4H,)` or None for no bias.
        h0: `(B, P)` initial recurrent state, or None for zeros.
        c0: `(B, H)` initial cell state, or None for zeros.
        projection: `(H, P)` output projection, or None.
        mask: `(B, T)` boolean (`(T, B)` if `time_major`), True where a step is real, or None.
            On a masked step the state is carried unchanged and the output repeats the last
            unmasked output (zeros before any), or is zero with `zero_output_for_mask`
            (Keras's RNN masking semantics).
        reverse: process the steps from T-1 down to 0; outputs stay at their time index
            (PyTorch's reverse direction). Keras's `go_backwards` is this plus flipping the
            output sequence.
        zero_output_for_mask: see `mask`.
        activation, recurrent_activation: a name among "tanh", "sigmoid", "hard_sigmoid"
            (Keras 3's `relu6(x + 3) / 6`), "relu", "linear", "elu", "selu", "softplus",
            "softsign", "swish" (or "silu"), "exponential", "legacy_hard_sigmoid" (Keras 2's
            `clip(0.2 x + 0.5, 0, 1)`); None for linear; or a callable (see above).
            `recurrent_activation` is used for gates i, f, o; `activation` for the candidate g
            and the cell output, as in Keras.
        gate_activations: None, or five activations (names or callables) for gates i, f, g,
            o and the cell output, overriding the two above (per-gate activations, as Apple
            BNNS allows).
        dropout_mask: None, `(B, D)` or `(4, B, D)` input dropout mask, already scaled (0 or
            `1 / (1 - rate)`), applied to every step's input: `x_t * dropout_mask` (one mask
            per gate i, f, c, o in the 4-mask form, as Keras's `LSTMCell` draws them when
            `recurrent_dropout > 0`). Applied whenever given: pass None at inference.
        recurrent_dropout_mask: None, `(B, P)` or `(4, B, P)`, likewise for `h_{t-1}`, used
            only in the recurrent product: the carried state stays unmasked (Keras 3's
            `LSTMCell`; Gal & Ghahramani 2016).
        training: keep the cache `lstm_backward` needs; otherwise only two state slots are
            kept, whatever T is.
        return_sequences: return the output at every step, else only the last processed one.
        time_major: `x`, `mask` and the returned sequence are `(T, B, ...)`.

    Returns:
        `(y, h_n, c_n, cache)`: `y` is `(B, T, P)` (or `(T, B, P)`) if `return_sequences`,
        else `(B, P)`; `h_n` `(B, P)` and `c_n` `(B, H)` are the final states; `cache` is an
        `LSTMCache` when `training`, else None. All in the weights' dtype.

    Raises:
        TypeError: an argument is not a real floating or boolean array as required.
        ValueError: wrong ndim or shape, an empty batch or zero timesteps, NaN or inf in `x`,
            the initial states or the dropout masks, an unknown activation,
            `gate_activations` not of length 5, a callable activation that changes its
            input's shape, or sizes over the BLAS int32 limit.
    """
    kernel = check_weight(kernel, "kernel", ndim=2)
    dtype = kernel.dtype
    D, G = kernel.shape
    if G == 0 or G % 4:
        raise ValueError(f"Argument `kernel` must have shape (D, 4*units) with units >= 1, "
                         f"received shape {kernel.shape}.")
    H = G // 4
    recurrent_kernel = check_weight(recurrent_kernel, "recurrent_kernel", ndim=2, dtype=dtype)
    P = recurrent_kernel.shape[0]
    if recurrent_kernel.shape[1] != G:
        raise ValueError(f"Argument `recurrent_kernel` must have shape ({P}, {G}), "
                         f"received shape {recurrent_kernel.shape}.")
    if projection is None:
        if P != H:
            raise ValueError(f"Argument `recurrent_kernel` must have shape ({H}, {G}) without "
                             f"a projection, received shape {recurrent_kernel.shape}.")
    else:
        projection = check_weight(projection, "projection", shape=(H, P), dtype=dtype)
    if bias is not None:
        bias = check_weight(bias, "bias", shape=(G,), dtype=dtype)

    x = check_array(x, "x", ndim=3, dtype=dtype)
    if time_major:
        T, B, Dx = x.shape
        x_tm = np.ascontiguousarray(x)
    else:
        B, T, Dx = x.shape
        x_tm = np.ascontiguousarray(x.transpose(1, 0, 2))
    if Dx != D:
        raise ValueError(f"Argument `x` must have {D} features (last axis), as `kernel` has "
                         f"{D} rows; received shape {x.shape}.")
    if B == 0:
        raise ValueError(f"Argument `x` has an empty batch (shape {x.shape}); need >= 1 sample.")
    if T == 0:
        raise ValueError(f"Argument `x` has zero timesteps (shape {x.shape}); need >= 1 step.")
    if max(T * B * max(D, G, P), G * max(D, P)) > _INT32_MAX:
        raise ValueError(f"Argument `x` of shape {x.shape} with {H} units is over the BLAS "
                         f"int32 size limit; split the batch.")
    check_finite(x_tm, "x")

    mask_tm = None
    if mask is not None:
        mask = np.asarray(mask)
        expected = (T, B) if time_major else (B, T)
        if mask.dtype != np.bool_:
            raise TypeError(f"Argument `mask` must be a boolean array, received dtype "
                            f"{mask.dtype}.")
        if mask.shape != expected:
            raise ValueError(f"Argument `mask` must have shape {expected}, received shape "
                             f"{mask.shape}.")
        mask_tm = np.ascontiguousarray(mask if time_major else mask.T).view(np.uint8)

    acts, entries = _activations(activation, recurrent_activation, gate_activations)
    din = _dropout_mask(dropout_mask, "dropout_mask", B, D, "D", dtype)
    drec = _dropout_mask(recurrent_dropout_mask, "recurrent_dropout_mask", B, P, "P", dtype)
    h0 = _initial_state(h0, "h0", (B, P), dtype)
    c0 = _initial_state(c0, "c0", (B, H), dtype)
    fields = dict(x=x_tm, kernel=kernel, recurrent_kernel=recurrent_kernel,
                  projection=projection, has_bias=bias is not None, mask=mask_tm,
                  reverse=bool(reverse), zero_output=bool(zero_output_for_mask),
                  dropout_mask=din, recurrent_dropout_mask=drec,
                  return_sequences=bool(return_sequences), time_major=bool(time_major))

    if acts is None:
        y, h_n, c_n, ref_cache = _reference.lstm_forward(
            x_tm, kernel, recurrent_kernel, bias, h0, c0, projection=projection,
            mask=None if mask_tm is None else mask_tm.view(np.bool_), reverse=reverse,
            zero_output_for_mask=zero_output_for_mask, gate_activations=entries,
            dropout_mask=din, recurrent_dropout_mask=drec, training=training,
            return_sequences=return_sequences, time_major=True)
        if return_sequences and not time_major:
            y = y.transpose(1, 0, 2)
        cache = None
        if training:
            cache = LSTMCache(**fields, reference=ref_cache, gates=None, zs=None, hs=None,
                              cs=None, ms=None, acts=None)
        return np.ascontiguousarray(y), h_n, c_n, cache

    # gates = (x * dropout_mask) @ kernel + bias, for all timesteps at once    (T*B, D) @ (D, G)
    gates = np.empty((T, B, G), dtype=dtype)
    gates[...] = bias if bias is not None else 0
    gates2 = gates.reshape(T * B, G)
    if din is None or len(din) == 1:
        x_in = x_tm if din is None else x_tm * din[0]
        _core.matmul_acc(x_in.reshape(T * B, D), kernel, gates2, False, False, 1.0)
    else:
        for k, cols in enumerate(_gate_columns(H)):
            gates2[:, cols] += (x_tm * din[k]).reshape(T * B, D) @ kernel[:, cols]

    slots = T + 1 if training else 2
    first = (T if reverse else 0) % slots
    last = (0 if reverse else T) % slots
    hs = np.empty((slots, B, P), dtype=dtype)
    cs = np.empty((slots, B, H), dtype=dtype)
    hs[first] = h0
    cs[first] = c0
    needs_zs = training and not _core.INPUT_DERIVATIVE_CODES.isdisjoint(acts[:4].tolist())
    zs = np.empty((T, B, G), dtype=dtype) if needs_zs else None
    ms = np.empty((T, B, H), dtype=dtype) if (training and projection is not None) else None
    m = np.empty((B, H), dtype=dtype) if projection is not None else None
    y = np.empty((T, B, P), dtype=dtype) if return_sequences else None
    y_prev = np.zeros((B, P), dtype=dtype)
    hm = np.empty((B, P), dtype=dtype) if drec is not None else None

    _core.forward(gates, zs, hs, cs, ms, m, y, y_prev, hm, recurrent_kernel, projection,
                  mask_tm, drec, reverse, training, zero_output_for_mask, acts)

    h_n, c_n = hs[last].copy(), cs[last].copy()
    if return_sequences:
        out = y if time_major else np.ascontiguousarray(y.transpose(1, 0, 2))
    else:
        out = y_prev
        if zero_output_for_mask and mask_tm is not None:
            out[mask_tm[0 if reverse else T - 1] == 0] = 0
    cache = None
    if training:
        cache = LSTMCache(**fields, reference=None, gates=gates, zs=zs, hs=hs, cs=cs, ms=ms,
                          acts=acts)
    return out, h_n, c_n, cache


def lstm_backward(cache, dy=None, dh_n=None, dc_n=None):
    """Backpropagation through time for an `lstm_forward(..., training=True)` call.

    Args:
        cache: the `LSTMCache` returned by the forward call.
        dy: gradient of the loss with respect to the forward's `y`, same shape; None for zero.
        dh_n: `(B, P)` gradient with respect to `h_n`, or None.
        dc_n: `(B, H)` gradient with respect to `c_n`, or None.

    Returns:
        dict of gradients in the forward's layouts and dtype: `"x"`, `"kernel"`,
        `"recurrent_kernel"`, `"bias"` (None without bias), `"projection"` (None without),
        `"h0"`, `"c0"`. The weight gradients are GEMMs over all T*B rows at once. With
        dropout masks, `"x"` and the weight gradients are those of the masked products
        (`d x = (dz @ kernel^T) * dropout_mask`, and so on).

    Raises:
        TypeError: `cache` is not an `LSTMCache`, or a gradient is not a real float array.
        ValueError: a gradient has the wrong shape or holds NaN or inf.
    """
    if not isinstance(cache, LSTMCache):
        raise TypeError(f"Argument `cache` must be the LSTMCache from lstm_forward(..., "
                        f"training=True), received {type(cache).__name__}.")
    T, B, D = cache.x.shape
    G = cache.kernel.shape[1]
    H = G // 4
    P = cache.recurrent_kernel.shape[0]
    dtype = cache.kernel.dtype

    dy_tm = None
    dy_last = None
    if dy is not None:
        if cache.return_sequences:
            expected = (T, B, P) if cache.time_major else (B, T, P)
            dy = check_array(dy, "dy", shape=expected, dtype=dtype)
            dy_tm = np.ascontiguousarray(dy if cache.time_major else dy.transpose(1, 0, 2))
            check_finite(dy_tm, "dy")
        else:
            dy_last = check_array(dy, "dy", shape=(B, P), dtype=dtype)
            check_finite(dy_last, "dy")
    dh = _initial_state(dh_n, "dh_n", (B, P), dtype)
    dc = _initial_state(dc_n, "dc_n", (B, H), dtype)

    if cache.reference is not None:
        grads = _reference.lstm_backward(cache.reference, dy_tm if dy_last is None else dy_last,
                                         dh, dc)
        if not cache.time_major:
            grads["x"] = np.ascontiguousarray(grads["x"].transpose(1, 0, 2))
        return grads

    dy_carry = np.zeros((B, P), dtype=dtype)
    if dy_last is not None:
        dy_carry[...] = dy_last
        if cache.zero_output and cache.mask is not None:
            dy_carry[cache.mask[0 if cache.reverse else T - 1] == 0] = 0

    projection = cache.projection
    rdrop = cache.recurrent_dropout_mask
    dz = np.empty((T, B, G), dtype=dtype)
    dhs = np.empty((T, B, P), dtype=dtype) if projection is not None else None
    dm = np.empty((B, H), dtype=dtype) if projection is not None else None
    g = np.empty((B, P), dtype=dtype)
    a = np.empty(H, dtype=dtype)
    hm = np.empty((B, P), dtype=dtype) if rdrop is not None else None
    _core.backward(dz, dh, dc, dy_carry, dhs, dm, g, a, hm, dy_tm, cache.gates, cache.zs,
                   cache.cs, cache.recurrent_kernel, projection, cache.mask, rdrop,
                   cache.reverse, cache.zero_output, cache.acts)

    dz2 = dz.reshape(T * B, G)
    # h_{t-1} for every step is one contiguous block of the state cache
    start = 1 if cache.reverse else 0
    h_prev = cache.hs[start:start + T]

    grads = {}
    grads["kernel"], dx = _masked_gemm_grads(cache.x, cache.dropout_mask, cache.kernel, dz2,
                                             want_input_grad=True)
    grads["recurrent_kernel"], _ = _masked_gemm_grads(h_prev, rdrop, cache.recurrent_kernel,
                                                      dz2, want_input_grad=False)
    grads["bias"] = dz2.sum(axis=0) if cache.has_bias else None
    grads["projection"] = None
    if projection is not None:
        grads["projection"] = np.empty((H, P), dtype=dtype)
        _core.matmul_acc(cache.ms.reshape(T * B, H), dhs.reshape(T * B, P),
                         grads["projection"], True, False, 0.0)           # m^T @ dh
    grads["x"] = dx if cache.time_major else np.ascontiguousarray(dx.transpose(1, 0, 2))
    grads["h0"] = dh
    grads["c0"] = dc
    return grads


def _masked_gemm_grads(a, masks, w, dz2, want_input_grad):
    """Gradients of `z = (a * masks) @ w` over all steps, given `dz2 = dz.reshape(T*B, G)`.

    `a` is `(T, B, n)`; `masks` None or `(R, B, n)`: one mask for all gates (R = 1), or gate
    k's columns of `w (n, G)` seeing `a * masks[k]` (R = 4).
    Returns `(dw (n, G), da (T, B, n) or None)`.
    """
    T, B, n = a.shape
    G = w.shape[1]
    dw = np.empty((n, G), dtype=w.dtype)
    da = np.empty((T, B, n), dtype=w.dtype) if want_input_grad else None
    if masks is None or len(masks) == 1:
        a2 = (a if masks is None else a * masks[0]).reshape(T * B, n)
        _core.matmul_acc(a2, dz2, dw, True, False, 0.0)                     # a^T @ dz
        if want_input_grad:
            _core.matmul_acc(dz2, w, da.reshape(T * B, n), False, True, 0.0)  # dz @ w^T
            if masks is not None:
                da *= masks[0]
        return dw, da
    if want_input_grad:
        da[...] = 0
    for k, cols in enumerate(_gate_columns(G // 4)):
        dw[:, cols] = (a * masks[k]).reshape(T * B, n).T @ dz2[:, cols]
        if want_input_grad:
            da += (dz2[:, cols] @ w[:, cols].T).reshape(T, B, n) * masks[k]
    return dw, da


def _gate_columns(H):
    return [slice(k * H, (k + 1) * H) for k in range(4)]


def _activations(activation, recurrent_activation, gate_activations):
    """The activations of gates i, f, g, o and the cell output, as `(codes, entries)`.

    `codes` is the core's `(5,)` intc array when every activation is a core name or a built-in
    of `pylstm.activations`, else None; `entries` are the five names or callables for the
    NumPy path.
    """
    if gate_activations is None:
        given = [recurrent_activation, recurrent_activation, activation, recurrent_activation,
                 activation]
        args = ["recurrent_activation"] * 2 + ["activation", "recurrent_activation",
                                                "activation"]
    else:
        given = list(gate_activations) if isinstance(gate_activations, (list, tuple)) else []
        if len(given) != 5:
            raise ValueError(f"Argument `gate_activations` must be five activations (names or "
                             f"callables, for gates i, f, g, o and the cell output), received "
                             f"{gate_activations!r}.")
        args = [f"gate_activations[{k}]" for k in range(5)]
    codes = np.empty(5, dtype=np.intc)
    entries = []
    in_core = True
    for k, (value, arg) in enumerate(zip(given, args)):
        if value is None:
            value = "linear"
        elif callable(value):
            name = getattr(value, "__name__", None)
            if name in _core.ACTIVATION_CODES and activations.get(name) is value:
                value = name
        if isinstance(value, str):
            if value not in _core.ACTIVATION_CODES:
                raise ValueError(f"Argument `{arg}` must be one of "
                                 f"{sorted(_core.ACTIVATION_CODES)}, None or a callable, "
                                 f"received {value!r}.")
            codes[k] = _core.ACTIVATION_CODES[value]
        elif callable(value):
            in_core = False
        else:
            raise ValueError(f"Argument `{arg}` must be an activation name, None or a callable, "
                             f"received {value!r}.")
        entries.append(value)
    return (codes if in_core else None), entries


def _dropout_mask(value, name, B, n, letter, dtype):
    """A `(B, n)` or `(4, B, n)` dropout mask as `(R, B, n)` in `dtype`, R = 1 or 4, or None."""
    if value is None:
        return None
    arr = as_float_array(value, name)
    if arr.shape not in ((B, n), (4, B, n)):
        raise ValueError(f"Argument `{name}` must have shape ({B}, {n}) or (4, {B}, {n}) "
                         f"(batch, {letter}; or one mask per gate i, f, c, o), received shape "
                         f"{arr.shape}.")
    check_finite(arr, name)
    return np.ascontiguousarray(arr.reshape(-1, B, n), dtype=dtype)


def _initial_state(value, name, shape, dtype):
    if value is None:
        return np.zeros(shape, dtype=dtype)
    value = check_array(value, name, shape=shape, dtype=dtype)
    check_finite(value, name)
    return np.array(value, dtype=dtype, order="C")
