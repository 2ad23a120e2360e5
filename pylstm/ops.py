"""Functional LSTM: validated forward and backward over whole sequences, on the Cython core.

This is the boundary between Python and the compiled kernels of `pylstm._core`: everything is
checked and allocated here, and the kernels trust what they get. Layers (`pylstm.layers.LSTM`)
and benchmarks call these two functions; `pylstm._reference` is the same math in plain NumPy.

Legend: B batch, T timesteps, D input features, H units, P recurrent output size (H, or the
projection size), G = 4H. Weights use the Keras layout and gate order i, f, c, o.
"""

import numpy as np

from pylstm import _core
from pylstm._validation import check_array, check_finite, check_weight

_INT32_MAX = 2**31 - 1


class LSTMCache:
    """What `lstm_forward(..., training=True)` keeps for `lstm_backward`.

    Attributes (time-major, C-contiguous, the weights' dtype):
        x: `(T, B, D)` inputs.
        gates: `(T, B, 4H)` activated gates i, f, g, o.
        hs: `(T + 1, B, P)` recurrent states, the initial state in the slot before step one.
        cs: `(T + 1, B, H)` cell states, likewise.
        ms: `(T, B, H)` pre-projection outputs `o * act(c)`, or None without projection.

    It holds references to the weights, not copies: run `lstm_backward` before the weights
    change (as a training step does: forward, backward, then the optimizer update).
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)


def lstm_forward(x, kernel, recurrent_kernel, bias=None, h0=None, c0=None, *, projection=None,
                 mask=None, reverse=False, zero_output_for_mask=False, activation="tanh",
                 recurrent_activation="sigmoid", gate_activations=None, training=False,
                 return_sequences=True, time_major=False):
    """Runs one LSTM direction over whole sequences.

    Computes, for each step t (in reverse order when `reverse`):
    `z = x_t @ kernel + h @ recurrent_kernel + bias`, `i, f, o = recurrent_activation(...)`,
    `g = activation(z_c)`, `c = f * c + i * g`, `h = o * activation(c)` (then
    `h = h @ projection` with a projection, LSTMP, Sak et al. 2014). This is the equation of
    Keras 3's `LSTMCell` and of PyTorch's `nn.LSTM` (whose two biases sum to `bias`).

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
        activation, recurrent_activation: one of "tanh", "sigmoid", "hard_sigmoid"
            (Keras 3's `relu6(x + 3) / 6`), "relu", "linear" (or None for linear).
            `recurrent_activation` is used for gates i, f, o; `activation` for the candidate g
            and the cell output, as in Keras.
        gate_activations: None, or five activation names for gates i, f, g, o and the cell
            output, overriding the two above (per-gate activations, as Apple BNNS allows).
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
        ValueError: wrong ndim or shape, an empty batch or zero timesteps, NaN or inf in `x`
            or the initial states, an unknown activation, `gate_activations` not of length 5,
            or sizes over the BLAS int32 limit.
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

    acts = _activation_codes(activation, recurrent_activation, gate_activations)

    # gates = x @ kernel + bias, for all timesteps in one GEMM    (T*B, D) @ (D, G)
    gates = np.empty((T, B, G), dtype=dtype)
    gates[...] = bias if bias is not None else 0
    _core.matmul_acc(x_tm.reshape(T * B, D), kernel, gates.reshape(T * B, G), False, False, 1.0)

    slots = T + 1 if training else 2
    first = (T if reverse else 0) % slots
    last = (0 if reverse else T) % slots
    hs = np.empty((slots, B, P), dtype=dtype)
    cs = np.empty((slots, B, H), dtype=dtype)
    hs[first] = _initial_state(h0, "h0", (B, P), dtype)
    cs[first] = _initial_state(c0, "c0", (B, H), dtype)
    ms = np.empty((T, B, H), dtype=dtype) if (training and projection is not None) else None
    m = np.empty((B, H), dtype=dtype) if projection is not None else None
    y = np.empty((T, B, P), dtype=dtype) if return_sequences else None
    y_prev = np.zeros((B, P), dtype=dtype)

    _core.forward(gates, hs, cs, ms, m, y, y_prev, recurrent_kernel, projection, mask_tm,
                  reverse, training, zero_output_for_mask, acts)

    h_n, c_n = hs[last].copy(), cs[last].copy()
    if return_sequences:
        out = y if time_major else np.ascontiguousarray(y.transpose(1, 0, 2))
    else:
        out = y_prev
        if zero_output_for_mask and mask_tm is not None:
            out[mask_tm[0 if reverse else T - 1] == 0] = 0
    cache = None
    if training:
        cache = LSTMCache(x=x_tm, gates=gates, hs=hs, cs=cs, ms=ms, kernel=kernel,
                          recurrent_kernel=recurrent_kernel, projection=projection,
                          has_bias=bias is not None, mask=mask_tm, reverse=bool(reverse),
                          zero_output=bool(zero_output_for_mask), acts=acts,
                          return_sequences=bool(return_sequences), time_major=bool(time_major))
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
        `"h0"`, `"c0"`. The weight gradients are GEMMs over all T*B rows at once.

    Raises:
        TypeError: `cache` is not an `LSTMCache`, or a gradient is not a real float array.
        ValueError: a gradient has the wrong shape or holds NaN or inf.
    """
    if not isinstance(cache, LSTMCache):
        raise TypeError(f"Argument `cache` must be the LSTMCache from lstm_forward(..., "
                        f"training=True), received {type(cache).__name__}.")
    T, B, D = cache.x.shape
    G = cache.gates.shape[2]
    H = G // 4
    P = cache.hs.shape[2]
    dtype = cache.gates.dtype

    dy_tm = None
    dy_carry = np.zeros((B, P), dtype=dtype)
    if dy is not None:
        if cache.return_sequences:
            expected = (T, B, P) if cache.time_major else (B, T, P)
            dy = check_array(dy, "dy", shape=expected, dtype=dtype)
            dy_tm = np.ascontiguousarray(dy if cache.time_major else dy.transpose(1, 0, 2))
            check_finite(dy_tm, "dy")
        else:
            dy = check_array(dy, "dy", shape=(B, P), dtype=dtype)
            check_finite(dy, "dy")
            dy_carry[...] = dy
            if cache.zero_output and cache.mask is not None:
                dy_carry[cache.mask[0 if cache.reverse else T - 1] == 0] = 0
    dh = _initial_state(dh_n, "dh_n", (B, P), dtype)
    dc = _initial_state(dc_n, "dc_n", (B, H), dtype)

    projection = cache.projection
    dz = np.empty((T, B, G), dtype=dtype)
    dhs = np.empty((T, B, P), dtype=dtype) if projection is not None else None
    dm = np.empty((B, H), dtype=dtype) if projection is not None else None
    g = np.empty((B, P), dtype=dtype)
    a = np.empty(H, dtype=dtype)
    _core.backward(dz, dh, dc, dy_carry, dhs, dm, g, a, dy_tm, cache.gates, cache.cs,
                   cache.recurrent_kernel, projection, cache.mask, cache.reverse,
                   cache.zero_output, cache.acts)

    dz2 = dz.reshape(T * B, G)
    x2 = cache.x.reshape(T * B, D)
    # h_{t-1} for every step is one contiguous block of the state cache
    start = 1 if cache.reverse else 0
    h_prev = cache.hs[start:start + T].reshape(T * B, P)

    grads = {}
    grads["kernel"] = np.empty((D, G), dtype=dtype)
    _core.matmul_acc(x2, dz2, grads["kernel"], True, False, 0.0)          # x^T @ dz
    grads["recurrent_kernel"] = np.empty((P, G), dtype=dtype)
    _core.matmul_acc(h_prev, dz2, grads["recurrent_kernel"], True, False, 0.0)  # h_prev^T @ dz
    grads["bias"] = dz2.sum(axis=0) if cache.has_bias else None
    grads["projection"] = None
    if projection is not None:
        grads["projection"] = np.empty((H, P), dtype=dtype)
        _core.matmul_acc(cache.ms.reshape(T * B, H), dhs.reshape(T * B, P),
                         grads["projection"], True, False, 0.0)           # m^T @ dh
    dx = np.empty((T, B, D), dtype=dtype)
    _core.matmul_acc(dz2, cache.kernel, dx.reshape(T * B, D), False, True, 0.0)  # dz @ kernel^T
    grads["x"] = dx if cache.time_major else np.ascontiguousarray(dx.transpose(1, 0, 2))
    grads["h0"] = dh
    grads["c0"] = dc
    return grads


def _activation_codes(activation, recurrent_activation, gate_activations):
    """The core's activation array: codes for gates i, f, g, o and the cell output."""
    if gate_activations is None:
        names = [recurrent_activation, recurrent_activation, activation, recurrent_activation,
                 activation]
        args = ["recurrent_activation"] * 2 + ["activation", "recurrent_activation",
                                                "activation"]
    else:
        names = list(gate_activations) if isinstance(gate_activations, (list, tuple)) else []
        if len(names) != 5:
            raise ValueError(f"Argument `gate_activations` must be five activation names (gates "
                             f"i, f, g, o and the cell output), received {gate_activations!r}.")
        args = [f"gate_activations[{k}]" for k in range(5)]
    codes = np.empty(5, dtype=np.intc)
    for k, (name, arg) in enumerate(zip(names, args)):
        key = "linear" if name is None else name
        if not isinstance(key, str) or key not in _core.ACTIVATION_CODES:
            raise ValueError(f"Argument `{arg}` must be one of "
                             f"{sorted(_core.ACTIVATION_CODES)} or None, received {name!r}.")
        codes[k] = _core.ACTIVATION_CODES[key]
    return codes


def _initial_state(value, name, shape, dtype):
    if value is None:
        return np.zeros(shape, dtype=dtype)
    value = check_array(value, name, shape=shape, dtype=dtype)
    check_finite(value, name)
    return np.array(value, dtype=dtype, order="C")
