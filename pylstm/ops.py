"""Functional LSTM: validated forward and backward over whole sequences, on the Cython core.

This is the boundary between Python and the compiled kernels of `pylstm._core`: everything is
checked and allocated here, and the kernels trust what they get. Layers (`pylstm.layers.LSTM`)
and benchmarks call these two functions; `pylstm._reference` is the same math in plain NumPy,
and runs instead of the core for activations the core does not have (Python callables).

Two paths (see pylstm/_core.pyx): float32 without projection or dropout, for calls large
enough to repay packing (`_worth_packing`), runs on the core's own products over weights
packed once per call, on a thread team (`BlasThreads.team`); everything else runs one SciPy
BLAS product per step. Threads: `set_num_threads(n)` (default None: the BLAS library's
setting) for the team, the GEMMs done once per call over all rows, and per-step BLAS
products large enough to gain from threads; the caller's BLAS settings are restored after
every call (`pylstm._threads` has the measurements behind this policy). float32 results are
bitwise the same on any thread count (but for products of one row with weight matrices of
about 2**19 elements or more); float64 results on the core can differ in their last bits
between thread counts (`pylstm._threads` says exactly where the guarantee holds).

Legend: B batch, T timesteps, D input features, H units, P recurrent output size (H, or the
projection size), G = 4H. Weights use the Keras layout and gate order i, f, c, o.
"""

import functools
import math

import numpy as np

from pylstm import _core, _memory, _reference, _threads, activations
from pylstm._threads import BlasThreads, get_num_threads, set_num_threads  # noqa: F401
from pylstm._validation import as_float_array, check_array, check_finite, check_weight

_INT32_MAX = 2**31 - 1


class LSTMCache:
    """What `lstm_forward(..., training=True)` keeps for `lstm_backward`.

    Attributes (the weights' dtype; N = the number of real (timestep, sample) rows, T*B
    without lengths; rows grouped by timestep, as `_core` documents):
        x: `(T, B, D)` time-major inputs, or `(N, D)` packed rows (before input dropout).
        gates: `(T, B, 4H)` or `(N, 4H)` activated gates i, f, g, o.
        zs: gate pre-activations of the same shape, kept only when a gate's activation needs
            its input for its derivative (swish); else None.
        hs: `(N + B, P)` recurrent-state slots: each row's new state, plus B slots for the
            initial states; `h_prev` is the `(N, P)` view of every row's previous state.
        cs: `(N + B, H)` cell-state slots, likewise.
        ms: `(N, H)` pre-projection outputs `o * act(c)`, or None without projection.
        batch_sizes: `(T,)` the samples running at each step; `row_sample`: None, or `(N,)`
            each packed row's sample within its step.
        packing: None (dense input), or how `lengths` / packed input was packed, to scatter
            gradients back.
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
                 time_major=False, lengths=None, padding_side="right"):
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
        training: keep the cache `lstm_backward` needs. Otherwise nothing per step is kept:
            in float32 without projection or dropout each step computes its own input
            product (x is read in place), and otherwise the steps run in chunks (about 1 MiB
            of gate pre-activations each), so that memory beyond the output is a few MiB
            whatever T is. Inference gives bitwise the outputs of the training forward.
        return_sequences: return the output at every step, else only the last processed one.
        time_major: `x`, `mask` and the returned sequence are `(T, B, ...)`.
        lengths: None, or `(B,)` integers in `[1, T]`: each sample's number of real steps,
            the others being padding (PyTorch's `pack_padded_sequence` lengths). The core
            then computes only real steps: the samples are stably sorted by decreasing
            length and packed by step (`lstm_forward_packed`), and the batch shrinks as
            samples end. Outputs on padding are zeros; `h_n` / `c_n` are each sample's state
            after its last real step (in `reverse`, after its first: the reverse direction
            starts at each sample's own last real step, as in PyTorch's packed `nn.LSTM`);
            without `return_sequences` the result is each sample's last computed output,
            that is `h_n`. For right padding this is `mask` with `zero_output_for_mask`
            (Keras); it cannot be combined with `mask`, and needs activations of the core
            (names, not Python callables).
        padding_side: "right" (real steps first) or "left" (padding first, real steps at the
            end), with `lengths`.

    Returns:
        `(y, h_n, c_n, cache)`: `y` is `(B, T, P)` (or `(T, B, P)`) if `return_sequences`,
        else `(B, P)`; `h_n` `(B, P)` and `c_n` `(B, H)` are the final states; `cache` is an
        `LSTMCache` when `training`, else None. All in the weights' dtype.

    Raises:
        TypeError: an argument is not a real floating or boolean array as required.
        ValueError: wrong ndim or shape, an empty batch or zero timesteps, NaN or inf in `x`,
            `lengths` out of `[1, T]` or given with `mask` or a callable activation,
            the initial states or the dropout masks, an unknown activation,
            `gate_activations` not of length 5, a callable activation that changes its
            input's shape, or sizes over the BLAS int32 limit.
    """
    kernel, recurrent_kernel, bias, projection = _check_weights(kernel, recurrent_kernel, bias,
                                                                projection)
    dtype = kernel.dtype
    D, G = kernel.shape
    H = G // 4
    P = recurrent_kernel.shape[0]

    x = check_array(x, "x", ndim=3, dtype=dtype)
    T, B, Dx = x.shape if time_major else (x.shape[1], x.shape[0], x.shape[2])
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
    check_finite(x, "x")

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
    if lengths is None and acts is not None and not training:
        return _dense_inference(x, time_major, kernel, recurrent_kernel, bias, projection, h0,
                                c0, mask_tm, din, drec, acts, bool(reverse),
                                bool(zero_output_for_mask), bool(return_sequences))
    x_tm = _contiguous(x if time_major else x.transpose(1, 0, 2))
    fields = dict(x=x_tm, kernel=kernel, recurrent_kernel=recurrent_kernel,
                  projection=projection, has_bias=bias is not None, mask=mask_tm,
                  reverse=bool(reverse), zero_output=bool(zero_output_for_mask),
                  dropout_mask=din, recurrent_dropout_mask=drec,
                  return_sequences=bool(return_sequences), time_major=bool(time_major),
                  packing=None)
    if lengths is not None:
        return _forward_lengths(x_tm, lengths, padding_side, mask, acts, fields, bias, h0, c0,
                                training)

    if acts is None:
        # One NumPy product per step, on one BLAS thread whatever the step's size: NumPy's
        # products of one row, and in float64 all of them, round by how OpenBLAS shares them
        # between threads (_threads), and this path is bound by its Python calls anyway.
        with BlasThreads() as threads:
            threads.loop(0)
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

    # A training forward (inference returned above): the core writes the sequence output in
    # the caller's layout.
    batch_sizes = _dense_batch_sizes(T, B)
    run = _core_forward(x_tm, batch_sizes, None, kernel, recurrent_kernel, bias, projection,
                        h0, c0, mask_tm, din, drec, acts, reverse, training,
                        zero_output_for_mask, want_y=return_sequences,
                        y_batch_first=not time_major)
    y, h_n, c_n, core = run
    if return_sequences:
        out = y.reshape((T, B, P) if time_major else (B, T, P))
    elif mask_tm is None:
        out = h_n.copy()
    else:
        out = core.pop("y_prev")
        if zero_output_for_mask:
            out[mask_tm[0 if reverse else T - 1] == 0] = 0
    cache = None
    if training:
        core.pop("y_prev", None)
        cache = LSTMCache(**fields, reference=None, **core)
    return out, h_n, c_n, cache


def _core_forward(x_rows, batch_sizes, row_sample, kernel, recurrent_kernel, bias, projection,
                  h0, c0, mask_tm, din, drec, acts, reverse, training, zero_output, want_y,
                  y_batch_first=False):
    """Runs the compiled forward over packed rows; validated arguments only.

    `x_rows` is `(T, B, D)` (every batch size B) or `(N, D)` packed by step; `row_sample`
    None, or `(N,)` the position within its step of each packed row (which row of a `(B, .)`
    per-sample array it uses). Returns `(y (N, P) or None, h_n, c_n, fields)`, `fields` the
    core part of an `LSTMCache` (and `y_prev`) in training, else only `y_prev`: inference
    runs in chunks of steps (`_core_inference`) and keeps nothing per step. With
    `y_batch_first` (dense rows, training), `y` is `(B, T, P)` instead, written in place.
    """
    dtype = kernel.dtype
    D, G = kernel.shape
    H = G // 4
    P = recurrent_kernel.shape[0]
    B = h0.shape[0]
    lead = x_rows.shape[:-1]
    N = math.prod(lead)
    din_rows = din if (din is None or row_sample is None) else din[:, row_sample]
    if not training:
        x_flat = x_rows.reshape(N, D)
        y = _empty((N, P), dtype) if want_y else None
        if _fusable(kernel, projection, din, drec, N, B):
            h_n, c_n, y_prev = _fused_inference(
                np.ascontiguousarray(x_flat).reshape(-1), D, 0 if row_sample is not None
                else B * D, batch_sizes, kernel, recurrent_kernel, bias, h0, c0, mask_tm, acts,
                reverse, zero_output, y, 0, 0)
            return y, h_n, c_n, dict(y_prev=y_prev)
        offsets = np.zeros(batch_sizes.size + 1, dtype=np.int64)
        np.cumsum(batch_sizes, out=offsets[1:])
        h_n, c_n, y_prev = _core_inference(
            lambda s0, s1, r0, r1: x_flat[r0:r1], _chunks(offsets, G * dtype.itemsize),
            batch_sizes, kernel, recurrent_kernel, bias, projection, h0, c0, mask_tm, din_rows,
            row_sample is not None, drec, acts, reverse, zero_output, y=y)
        return y, h_n, c_n, dict(y_prev=y_prev)

    gates = _empty((N, G), dtype)
    hs = _empty((N + B, P), dtype)
    cs = _empty((N + B, H), dtype)
    needs_zs = not _core.INPUT_DERIVATIVE_CODES.isdisjoint(acts[:4].tolist())
    zs = _empty((N, G), dtype) if needs_zs else None
    ms = _empty((N, H), dtype) if projection is not None else None
    m = np.empty((B, H), dtype=dtype) if projection is not None else None
    y = _empty((N, P), dtype) if want_y else None
    ldy = y_step = 0
    if want_y and y_batch_first:
        T = batch_sizes.size
        ldy, y_step = T * P, P       # row (t, b) of the output at b * T * P + t * P
    y_prev = np.zeros((B, P), dtype=dtype)
    hm = np.empty((B, P), dtype=dtype) if drec is not None else None

    if _fusable(kernel, projection, din, drec, N, B):
        # The core does the input product too (bias + x @ kernel into gates, the arithmetic
        # of `_fused_inference`) on the packed kernel, and the time loop, in one team run.
        packed, packed_kernel, team = _fused_buffers(kernel, recurrent_kernel, B, N // B)
        _core.forward(gates, zs, hs, cs, h0, c0, ms, m, y, y_prev, hm, recurrent_kernel,
                      projection, mask_tm, drec, batch_sizes, reverse, True, zero_output, acts,
                      packed, True, team, np.ascontiguousarray(x_rows).reshape(-1), D, 0,
                      kernel, packed_kernel, bias, ldy, y_step)
        return _training_fields(y, hs, cs, gates, zs, ms, y_prev, acts, batch_sizes,
                                row_sample, lead, B, N, G, P, reverse)

    # BLAS threads: get_num_threads() for the one big GEMM, one for the time loop (_threads).
    with BlasThreads() as threads:
        # gates = (x * dropout_mask) @ kernel + bias, for all rows at once    (N, D) @ (D, G)
        gates[...] = bias if bias is not None else 0
        threads.bulk()
        if din is None or len(din) == 1:
            x_in = x_rows if din is None else x_rows * din_rows[0]
            _core.matmul_acc(x_in.reshape(N, D), kernel, gates, False, False, 1.0)
        else:
            for k, cols in enumerate(_gate_columns(H)):
                gates[:, cols] += _matmul((x_rows * din_rows[k]).reshape(N, D), kernel[:, cols])
        packed, team = _packed(threads, recurrent_kernel, projection, drec, B, N)
        _core.forward(gates, zs, hs, cs, h0, c0, ms, m, y, y_prev, hm, recurrent_kernel,
                      projection, mask_tm, drec, batch_sizes, reverse, True, zero_output, acts,
                      packed, True, team, None, 0, 0, None, None, None, ldy, y_step)

    return _training_fields(y, hs, cs, gates, zs, ms, y_prev, acts, batch_sizes, row_sample,
                            lead, B, N, G, P, reverse)


def _training_fields(y, hs, cs, gates, zs, ms, y_prev, acts, batch_sizes, row_sample, lead, B,
                     N, G, P, reverse):
    """`_core_forward`'s result in training: `(y, h_n, c_n, fields)`."""
    final = 0 if reverse else N
    h_n, c_n = hs[final:final + B].copy(), cs[final:final + B].copy()
    start = B if reverse else 0
    fields = dict(y_prev=y_prev, gates=gates.reshape(lead + (G,)),
                  zs=None if zs is None else zs.reshape(lead + (G,)),
                  hs=hs, cs=cs, h_prev=hs[start:start + N].reshape(lead + (P,)),
                  ms=ms, acts=acts, batch_sizes=batch_sizes, row_sample=row_sample)
    return y, h_n, c_n, fields


def _packed(threads, recurrent_kernel, projection, drec, B, rows, transposed=False):
    """How the core's time loop runs: `(packed, team)` for `_core.forward` (`_core.backward`
    if `transposed`) over `rows` packed rows of batch B.

    float32 without projection or recurrent dropout, when packing pays (`_worth_packing`): the
    core's own recurrent product (_recurrent.h) on recurrent_kernel (its transpose) packed
    into a new buffer, on `team` threads (`BlasThreads.team`). Otherwise `(None, 1)`: one BLAS
    product per step, on one BLAS thread below `_threads._LOOP_MIN_FLOP` a step.
    """
    P, G = recurrent_kernel.shape
    step_flop = 2 * B * P * G
    if (recurrent_kernel.dtype != np.float32 or projection is not None or drec is not None
            or not _worth_packing(rows, step_flop, B)):
        threads.loop(step_flop)
        return None, 1
    size = (_core.packed_t_size if transposed else _core.packed_size)(G // 4, P)
    return _empty((size,), np.float32), threads.team(step_flop, rows // B)


# Inference runs the time loop in chunks of steps whose hoisted input product (rows, 4H) takes
# about this many bytes: the gates, written by one GEMM per chunk and read by the time loop
# while still in cache (1 MiB of L2 per core here), instead of one (T*B, 4H) block (105 MiB at
# B=128, T=100, H=512). Measured (float32, 2 threads, B=64 T=50 D=128 H=256): 18.6 ms at
# 1 MiB, 22.9 ms at 2 MiB, 20.3 ms at 8 MiB, 20.1 ms unchunked.
_CHUNK_BYTES = 1 << 20


def _chunks(offsets, row_bytes):
    """The inference chunks: `(s0, s1, r0, r1)` for steps `[s0, s1)` and their rows `[r0, r1)`.

    `offsets` `(T + 1,)` are the first row of each step (`offsets[T]` = N); each chunk takes
    as many whole steps as fit in `_CHUNK_BYTES` at `row_bytes` a row, at least one.
    """
    T = offsets.size - 1
    budget = max(1, _CHUNK_BYTES // row_bytes)
    chunks = []
    s0 = 0
    while s0 < T:
        s1 = int(np.searchsorted(offsets, offsets[s0] + budget, side="right")) - 1
        s1 = min(T, max(s1, s0 + 1))
        chunks.append((s0, s1, int(offsets[s0]), int(offsets[s1])))
        s0 = s1
    return chunks


def _dense_chunks(T, B, row_bytes):
    """`_chunks` for T steps of B rows each, without the offsets table."""
    steps = max(1, _CHUNK_BYTES // (row_bytes * B))
    return [(s0, min(T, s0 + steps), s0 * B, min(T, s0 + steps) * B)
            for s0 in range(0, T, steps)]


@functools.lru_cache(maxsize=64)
def _dense_batch_sizes(T, B):
    """`(T,)` intc, B at every step: read-only and shared between calls of the same shape."""
    batch_sizes = np.full(T, B, dtype=np.intc)
    batch_sizes.flags.writeable = False
    return batch_sizes


def _dense_inference(x, time_major, kernel, recurrent_kernel, bias, projection, h0, c0, mask_tm,
                     din, drec, acts, reverse, zero_output, return_sequences):
    """`lstm_forward`'s inference on the core for dense input: chunked, no time-major copy.

    `x` is the caller's `(B, T, D)` (or `(T, B, D)` if `time_major`) array in the weights'
    dtype, any strides; each chunk's steps are gathered time-major into a chunk buffer, or
    read in place where the rows already are time-major (time-major or B = 1, C-contiguous).
    The sequence output is written in the caller's layout chunk by chunk; without
    `return_sequences` none is allocated.
    """
    T, B = (x.shape[0], x.shape[1]) if time_major else (x.shape[1], x.shape[0])
    D = x.shape[2]
    P = recurrent_kernel.shape[0]
    dtype = kernel.dtype
    if _fusable(kernel, projection, din, drec, T * B, B):
        return _fused_dense_inference(x, time_major, kernel, recurrent_kernel, bias, h0, c0,
                                      mask_tm, acts, reverse, zero_output, return_sequences)
    rows_in_place = time_major or B == 1
    if (T * B < _PACK_MIN_ROWS and (rows_in_place or T == 1) and projection is None
            and din is None and drec is None and mask_tm is None):
        # A few rows (one step, a short sequence at batch 1): the same arithmetic in one
        # core call, whose Python overhead is most of the time here.
        args = (np.ascontiguousarray(x), kernel, recurrent_kernel, bias, h0, c0, acts,
                _dense_batch_sizes(T, B), reverse, return_sequences)
        step_flop = 2 * B * P * kernel.shape[1]
        switch = _threads.loop_switch(step_flop)
        if switch is not None and _threads.begin_switch(switch):
            try:
                y, h_n, c_n = _core.forward_small(*args, switch)
            finally:
                _threads.end_switch(switch)
        else:
            with BlasThreads() as threads:
                threads.loop(step_flop)
                y, h_n, c_n = _core.forward_small(*args)
        return (y if return_sequences else h_n.copy()), h_n, c_n, None

    chunks = _dense_chunks(T, B, kernel.shape[1] * dtype.itemsize)
    if rows_in_place and x.flags.c_contiguous:
        x_flat = x.reshape(T * B, D)

        def load(s0, s1, r0, r1):
            return x_flat[r0:r1]
    else:
        x_buf = _empty((chunks[0][3], D), dtype)   # the first chunk is the largest

        def load(s0, s1, r0, r1):
            buf = x_buf[:r1 - r0]
            steps = x[s0:s1] if time_major else x[:, s0:s1].transpose(1, 0, 2)
            np.copyto(buf.reshape(s1 - s0, B, D), steps)
            return buf

    y = y_batch_first = None
    if return_sequences:
        out = _empty((T, B, P) if time_major else (B, T, P), dtype)
        if rows_in_place:
            y = out.reshape(T * B, P)
        else:
            y_batch_first = out
    h_n, c_n, y_prev = _core_inference(
        load, chunks, _dense_batch_sizes(T, B), kernel, recurrent_kernel, bias, projection, h0,
        c0, mask_tm, din, False, drec, acts, reverse, zero_output, y=y,
        y_batch_first=y_batch_first)
    if not return_sequences:
        out = _last_output(h_n, y_prev, mask_tm, zero_output, reverse)
    return out, h_n, c_n, None


def _last_output(h_n, y_prev, mask_tm, zero_output, reverse):
    """The output of the last processed step `(B, P)` of a dense run without sequences: `h_n`,
    or with a mask each sample's last unmasked output (zero where that step is masked, with
    `zero_output`), as Keras returns it."""
    if mask_tm is None:
        return h_n.copy()
    out = y_prev
    if zero_output:
        out[mask_tm[0 if reverse else -1] == 0] = 0
    return out


def _fused_dense_inference(x, time_major, kernel, recurrent_kernel, bias, h0, c0, mask_tm,
                           acts, reverse, zero_output, return_sequences):
    """`_dense_inference` on the fused core (`_fused_inference`): `x` read and the output
    written in the caller's layout through strides, no gathered copy of `x`."""
    T, B = (x.shape[0], x.shape[1]) if time_major else (x.shape[1], x.shape[0])
    P = recurrent_kernel.shape[0]
    x_flat, ldx, x_step = _strided_rows(x, time_major)
    y = None
    ldy = y_step = 0
    if return_sequences:
        out = _empty((T, B, P) if time_major else (B, T, P), np.float32)
        y = out.reshape(T * B, P)
        ldy, y_step = (P, B * P) if time_major else (T * P, P)
    h_n, c_n, y_prev = _fused_inference(
        x_flat, ldx, x_step, _dense_batch_sizes(T, B), kernel, recurrent_kernel, bias,
        h0, c0, mask_tm, acts, reverse, zero_output, y, ldy, y_step)
    if not return_sequences:
        out = _last_output(h_n, y_prev, mask_tm, zero_output, reverse)
    return out, h_n, c_n, None


def _strided_rows(x, time_major):
    """`(flat, ldx, x_step)`: `x` `(T, B, D)` (`(B, T, D)` if not `time_major`) as the fused
    core reads it, in place: element (t, b, k) at `flat[t * x_step + b * ldx + k]`, `flat` a
    1-D view of x's memory. Any layout with unit last stride and non-negative strides is read
    in place (a time-major view of a batch-major array, as `nn.LSTM` passes); others are
    copied to C order first."""
    item = x.itemsize
    if x.strides[2] != item or any(st < 0 or st % item for st in x.strides[:2]):
        x = np.ascontiguousarray(x)
    step, row = (x.strides[0], x.strides[1]) if time_major else (x.strides[1], x.strides[0])
    extent = ((x.shape[0] - 1) * x.strides[0] + (x.shape[1] - 1) * x.strides[1]
              + x.shape[2] * item)
    flat = np.lib.stride_tricks.as_strided(x, shape=(extent // item,), strides=(item,),
                                           writeable=False)
    return flat, row // item, step // item


def _empty(shape, dtype):
    """`np.empty(shape, dtype)` on memory kept for reuse between calls (`_memory`), starting
    on a cache line: a loop of calls of one shape touches new pages only once, and rows whose
    size is a multiple of 64 bytes split between a thread team's members on cache-line
    boundaries (no two threads writing one line; measured 4 to 7 % faster forward than
    NumPy's 16-byte alignment at B=8 to 64, H=128 to 256 on 2 threads)."""
    dtype = np.dtype(dtype)
    n = math.prod(shape)
    return np.frombuffer(_memory.Block(n * dtype.itemsize), dtype, n).reshape(shape)


def _contiguous(a):
    """`np.ascontiguousarray(a)`, its copy (if one is needed) in `_empty` memory."""
    if a.flags.c_contiguous:
        return a
    out = _empty(a.shape, a.dtype)
    np.copyto(out, a)
    return out


def _fusable(kernel, projection, din, drec, rows, B):
    """Whether the core does the input product too, on the packed kernel (inference:
    `_fused_inference`; training: `_core_forward`), for `rows` input rows of batch `B`."""
    D, G = kernel.shape
    return (kernel.dtype == np.float32 and projection is None and din is None
            and drec is None and _worth_packing(rows, 2 * B * (D + G // 4) * G, B))


# Packing the kernels costs about as much as reading them once; a call with fewer input rows
# than this, whose steps are too small for a thread team, runs faster on BLAS (measured,
# B=1, H=128, one thread: T=20 95 against 112 us packed, T=100 H=64 122 against 116 us).
_PACK_MIN_ROWS = 64


def _worth_packing(rows, step_flop, B):
    """Whether a call of `rows` input rows of batch B, `step_flop` FLOPs a step, gains from
    packing: enough rows, or steps that a thread team shares (`BlasThreads.team`)."""
    return rows >= _PACK_MIN_ROWS or (step_flop >= _threads._TEAM_MIN_STEP_FLOP and
                                      step_flop * (rows // B) >= _threads._TEAM_MIN_FLOP)


def _fused_buffers(kernel, recurrent_kernel, B, steps):
    """`(packed, packed_kernel, team)` for a core call that packs both kernels (float32):
    the buffers they are packed into and the thread team for `steps` steps of batch B."""
    D, G = kernel.shape
    P = recurrent_kernel.shape[0]
    packed = _empty((_core.packed_size(G // 4, P),), np.float32)
    packed_kernel = _empty((_core.packed_size(G // 4, D),), np.float32)
    with BlasThreads() as threads:
        team = threads.team(2 * B * (D + P) * G, steps)
    return packed, packed_kernel, team


def _fused_inference(x_flat, ldx, x_step, batch_sizes, kernel, recurrent_kernel, bias, h0, c0,
                     mask_tm, acts, reverse, zero_output, y, ldy, y_step):
    """Inference in float32 without projection or dropout: one core call that packs both
    kernels and computes each step's `bias + x_t @ kernel + h @ recurrent_kernel` from them
    (_recurrent.h), on a thread team: no input GEMM, no chunks, and memory beyond the output
    of a few `(B, 4H)` rows and the two packed kernels.

    `x_flat` holds the input rows, a step's rows `ldx` apart, dense steps `x_step` apart (0:
    packed rows, each step's rows contiguous); `y` `(rows, P)` or None receives the outputs
    at `t * y_step + b * ldy` (`ldy` 0: packed rows). Returns `(h_n, c_n, y_prev)`.
    """
    B = h0.shape[0]
    T = batch_sizes.size
    G = kernel.shape[1]
    H = G // 4
    P = recurrent_kernel.shape[0]
    hs = _empty((3 * B, P), np.float32)
    cs = _empty((3 * B, H), np.float32)
    h_carry, c_carry = hs[2 * B:], cs[2 * B:]
    h_carry[...] = h0
    c_carry[...] = c0
    y_prev = np.zeros((B, P), dtype=np.float32)
    z = _empty((_core.HOIST_STEPS if B == 1 and x_step > 0 else B, G), np.float32)
    packed, packed_kernel, team = _fused_buffers(kernel, recurrent_kernel, B, T)
    _core.forward(z, None, hs, cs, h_carry, c_carry, None, None, y, y_prev, None,
                  recurrent_kernel, None, mask_tm, None, batch_sizes, reverse, False,
                  zero_output, acts, packed, True, team, x_flat, ldx, x_step, kernel,
                  packed_kernel, bias, ldy, y_step)
    return h_carry.copy(), c_carry.copy(), y_prev


def _core_inference(load, chunks, batch_sizes, kernel, recurrent_kernel, bias, projection, h0,
                    c0, mask_tm, din, din_per_row, drec, acts, reverse, zero_output, y=None,
                    y_batch_first=None):
    """The compiled forward without a cache, in `chunks` of whole steps (`_chunks`).

    Each chunk: one GEMM `x @ kernel + bias` over its rows into a reused `(rows, 4H)` buffer,
    then `_core.forward` over its steps from the state the previous chunk ended with (the
    final state slot, which also holds the state of packed samples that already ended), and
    `y_prev` carried for the mask semantics. Every step does the same arithmetic as in one
    chunk, so results are bitwise those of the unchunked run (tests/test_ops_chunked.py).

    `load(s0, s1, r0, r1)` returns the `(r1 - r0, D)` C-contiguous input rows of steps
    `[s0, s1)`, a view or gathered into a scratch buffer of its own. `din` is None, `(R, B, D)`
    or, if `din_per_row`, `(R, N, D)` dropout masks. The outputs go to `y` `(N, P)` (rows as
    packed), or for dense input to `y_batch_first` `(B, T, P)`, or nowhere. Returns
    `(h_n, c_n, y_prev)`, `(B, .)` each.
    """
    dtype = kernel.dtype
    D, G = kernel.shape
    H = G // 4
    P = recurrent_kernel.shape[0]
    B = h0.shape[0]
    most = max(r1 - r0 for _, _, r0, r1 in chunks) if len(chunks) > 1 else chunks[0][3]

    gates_buf = _empty((most, G), dtype)
    y_buf = _empty((most, P), dtype) if y_batch_first is not None else None
    hs = np.empty((3 * B, P), dtype=dtype)
    cs = np.empty((3 * B, H), dtype=dtype)
    # Inference slots (see _core): the final one, rows [2B, 3B), carries the state from chunk
    # to chunk; samples (in reverse: packed ones) not yet started hold their initial state.
    h_carry, c_carry = hs[2 * B:], cs[2 * B:]
    h_carry[...] = h0
    c_carry[...] = c0
    m = np.empty((B, H), dtype=dtype) if projection is not None else None
    y_prev = np.zeros((B, P), dtype=dtype)
    hm = np.empty((B, P), dtype=dtype) if drec is not None else None

    # BLAS threads: get_num_threads() for each chunk's GEMM; the time loop packs
    # recurrent_kernel once, in the first chunk, or runs BLAS on one thread (_packed).
    first = True
    with BlasThreads() as threads:
        for s0, s1, r0, r1 in (reversed(chunks) if reverse else chunks):
            x_in = load(s0, s1, r0, r1)
            gates = gates_buf[:r1 - r0]
            # gates = (x * dropout_mask) @ kernel + bias over the chunk's rows    (rows, D) @ (D, G)
            gates[...] = bias if bias is not None else 0
            threads.bulk()
            if din is None:
                _core.matmul_acc(x_in, kernel, gates, False, False, 1.0)
            else:
                masks = din[:, r0:r1] if din_per_row else din
                x_in = x_in.reshape((-1,) + masks.shape[1:])
                if len(din) == 1:
                    _core.matmul_acc((x_in * masks[0]).reshape(r1 - r0, D), kernel, gates,
                                     False, False, 1.0)
                else:
                    for k, cols in enumerate(_gate_columns(H)):
                        gates[:, cols] += _matmul((x_in * masks[k]).reshape(r1 - r0, D),
                                                  kernel[:, cols])
            if first:
                packed, team = _packed(threads, recurrent_kernel, projection, drec, B,
                                       int(batch_sizes.sum()))
            y_rows = y_buf[:r1 - r0] if y_buf is not None else (
                None if y is None else y[r0:r1])
            _core.forward(gates, None, hs, cs, h_carry, c_carry, None, m, y_rows, y_prev, hm,
                          recurrent_kernel, projection,
                          None if mask_tm is None else mask_tm[s0:s1], drec,
                          batch_sizes[s0:s1], reverse, False, zero_output, acts,
                          packed, first, team)
            first = False
            if y_buf is not None:
                y_batch_first[:, s0:s1] = y_rows.reshape(s1 - s0, B, P).transpose(1, 0, 2)
    return h_carry.copy(), c_carry.copy(), y_prev


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
        `"h0"`, `"c0"`. The weight gradients are sums over all T*B rows (GEMMs after the time
        loop, or in float32 added by the core's threads as the loop goes). With
        dropout masks, `"x"` and the weight gradients are those of the masked products
        (`d x = (dz @ kernel^T) * dropout_mask`, and so on).

    Raises:
        TypeError: `cache` is not an `LSTMCache`, or a gradient is not a real float array.
        ValueError: a gradient has the wrong shape or holds NaN or inf.
    """
    if not isinstance(cache, LSTMCache):
        raise TypeError(f"Argument `cache` must be the LSTMCache from lstm_forward(..., "
                        f"training=True), received {type(cache).__name__}.")
    if cache.packing is not None:
        return _backward_packed(cache, dy, dh_n, dc_n)
    T, B, D = cache.x.shape
    G = cache.kernel.shape[1]
    H = G // 4
    P = cache.recurrent_kernel.shape[0]
    dtype = cache.kernel.dtype

    dy_seq = None        # the sequence gradient, C-contiguous in the forward's layout
    dy_last = None
    if dy is not None:
        if cache.return_sequences:
            expected = (T, B, P) if cache.time_major else (B, T, P)
            dy_seq = _contiguous(check_array(dy, "dy", shape=expected, dtype=dtype))
            check_finite(dy_seq, "dy")
        else:
            dy_last = check_array(dy, "dy", shape=(B, P), dtype=dtype)
            check_finite(dy_last, "dy")
    dh = _initial_state(dh_n, "dh_n", (B, P), dtype)
    dc = _initial_state(dc_n, "dc_n", (B, H), dtype)

    if cache.reference is not None:
        dy_tm = None
        if dy_seq is not None:
            dy_tm = dy_seq if cache.time_major else dy_seq.transpose(1, 0, 2)
        with BlasThreads() as threads:
            threads.loop(0)     # one BLAS thread, as the forward (see lstm_forward)
            grads = _reference.lstm_backward(cache.reference,
                                             dy_tm if dy_last is None else dy_last, dh, dc)
        if not cache.time_major:
            grads["x"] = np.ascontiguousarray(grads["x"].transpose(1, 0, 2))
        return grads

    dy_carry = np.zeros((B, P), dtype=dtype)
    if dy_last is not None:
        if cache.mask is None:
            # without a mask the last output is h_n
            dh += dy_last
        else:
            dy_carry[...] = dy_last
            if cache.zero_output:
                dy_carry[cache.mask[0 if cache.reverse else T - 1] == 0] = 0
    # the core reads dy in place: rows (t, b) at b * T * P + t * P when batch-major
    lddy, dy_step = (0, 0) if cache.time_major else (T * P, P)
    grads = _core_backward(cache, None if dy_seq is None else dy_seq.reshape(T * B, P), dh, dc,
                           dy_carry, lddy, dy_step)
    dx = grads["x"]
    grads["x"] = dx if cache.time_major else _contiguous(dx.transpose(1, 0, 2))
    return grads


# The backward's team adds the weight gradients itself while they take at most this many
# bytes; above, OpenBLAS's GEMMs after the loop are faster. Measured, training step, team
# against GEMMs: on 2 threads B=32 H=128 (0.4 MB) 13.2 against 16.6 ms, B=64 H=256 (1.5 MB)
# 43 against 49 ms, B=64 D=128 H=384 (3.1 MB) 81 against 82-84 ms, D=256 H=384 (3.9 MB)
# 99.5 both, D=256 H=512 (6.3 MB) 187-200 against 155 ms, B=256 D=512 H=1024 (12.6 MB) 1.62
# against 1.03 s; on 1 thread B=64 H=256 80 against 85 ms.
_WGRAD_TEAM_BYTES = 3 << 20


def _core_backward(cache, dy_rows, dh, dc, dy_carry, lddy=0, dy_step=0):
    """The compiled backward of `_core_forward`'s training run; `dy_rows` `(N, P)` or None,
    packed rows, or with `lddy` > 0 dense rows (t, b) at `t * dy_step + b * lddy`.

    Returns the gradients dict with `"x"` in the forward's row layout (`(T, B, D)` or
    `(N, D)`) and `"h0"`, `"c0"` `(B, .)`.
    """
    kernel, recurrent_kernel, projection = cache.kernel, cache.recurrent_kernel, cache.projection
    dtype = kernel.dtype
    G = kernel.shape[1]
    H = G // 4
    P = recurrent_kernel.shape[0]
    B = dh.shape[0]
    N = cache.gates.size // G
    rdrop = cache.recurrent_dropout_mask
    dz = _empty((N, G), dtype)
    # dh and dc are written by every member of a thread team: cache-line aligned copies.
    dh_in, dc_in = dh, dc
    dh, dc = _empty(dh.shape, dtype), _empty(dc.shape, dtype)
    dh[...] = dh_in
    dc[...] = dc_in
    dhs = _empty((N, P), dtype) if projection is not None else None
    dm = np.empty((B, H), dtype=dtype) if projection is not None else None
    g = _empty((B, P), dtype)
    a = _empty((H,), dtype)
    hm = np.empty((B, P), dtype=dtype) if rdrop is not None else None
    zs = None if cache.zs is None else cache.zs.reshape(N, G)
    row_sample = cache.row_sample
    din = cache.dropout_mask
    if din is not None and row_sample is not None:
        din = din[:, row_sample]
    rdrop_rows = rdrop
    if rdrop is not None and row_sample is not None:
        rdrop_rows = rdrop[:, row_sample]
    grads = {"projection": None}
    if projection is not None:
        grads["projection"] = np.empty((H, P), dtype=dtype)
    # The time loop on the packed transposed kernel (or BLAS, _packed); get_num_threads()
    # BLAS threads for the gradient GEMMs (_threads).
    with BlasThreads() as threads:
        packed_t, team = _packed(threads, recurrent_kernel, projection, rdrop, B, N,
                                 transposed=True)
        # On the packed kernel without input dropout, and for weight gradients small enough
        # to stay in cache, the team adds them as it goes (each member its units' columns,
        # while dz is in cache); else GEMMs after the loop. Not chosen by the team's size:
        # the results must not depend on the thread count.
        D = kernel.shape[0]
        in_team = (packed_t is not None and din is None
                   and (D + P) * G * dtype.itemsize <= _WGRAD_TEAM_BYTES)
        dw = du = db = None
        if in_team:
            dw, du = _empty((D, G), dtype), _empty((P, G), dtype)
            db = _empty((G,), dtype) if cache.has_bias else None
        _core.backward(dz, dh, dc, dy_carry, dhs, dm, g, a, hm, dy_rows,
                       cache.gates.reshape(N, G), zs, cache.cs, recurrent_kernel, projection,
                       cache.mask, rdrop, cache.batch_sizes, cache.reverse, cache.zero_output,
                       cache.acts, packed_t, team, dw, du, db,
                       cache.x.reshape(N, -1) if in_team else None,
                       cache.h_prev.reshape(N, P) if in_team else None, lddy, dy_step)
        threads.bulk()
        if in_team:
            dx = _empty(cache.x.shape, dtype)
            _core.matmul_acc(dz, kernel, dx.reshape(N, -1), False, True, 0.0)    # dz @ kernel^T
            grads["kernel"], grads["recurrent_kernel"], grads["bias"] = dw, du, db
        else:
            grads["kernel"], dx = _masked_gemm_grads(cache.x, din, kernel, dz,
                                                     want_input_grad=True)
            grads["recurrent_kernel"], _ = _masked_gemm_grads(cache.h_prev, rdrop_rows,
                                                              recurrent_kernel, dz,
                                                              want_input_grad=False)
            grads["bias"] = dz.sum(axis=0) if cache.has_bias else None
        if projection is not None:
            _core.matmul_acc(cache.ms, dhs, grads["projection"], True, False, 0.0)  # m^T @ dh
    grads["x"] = dx
    grads["h0"] = dh
    grads["c0"] = dc
    return grads


def lstm_forward_packed(data, batch_sizes, kernel, recurrent_kernel, bias=None, h0=None, c0=None,
                        *, projection=None, reverse=False, activation="tanh",
                        recurrent_activation="sigmoid", gate_activations=None,
                        dropout_mask=None, recurrent_dropout_mask=None, training=False):
    """Runs one LSTM direction over a packed batch: only the real steps are computed.

    The packed layout is PyTorch's `PackedSequence` (and Apple BNNS's per-step batch sizes):
    the samples are ordered by decreasing length, and the rows of `data` are grouped by
    step, step t holding the first `batch_sizes[t]` samples in that order. Each step's
    recurrent product and gate math cover only those rows. In `reverse`, each sample starts
    at its own last step (its initial state is used there) and ends at step 0, as in
    PyTorch's bidirectional `nn.LSTM` on a `PackedSequence`. Same equations and arguments as
    `lstm_forward`; `pylstm.nn.utils.rnn.pack_padded_sequence` builds the layout.

    Args:
        data: `(N, D)` float32 or float64 inputs, N = `sum(batch_sizes)`; cast to the
            weights' dtype.
        batch_sizes: `(T,)` integers, non-increasing, each in `[1, B]` with B =
            `batch_sizes[0]`.
        kernel, recurrent_kernel, bias, projection, activation, recurrent_activation,
        gate_activations: as in `lstm_forward` (activations must be names: the compiled
            core runs this).
        h0: `(B, P)` initial recurrent state in the packed sample order (the i-th longest
            sample first), or None for zeros.
        c0: `(B, H)`, likewise.
        reverse: run each sample from its last step to its first.
        dropout_mask, recurrent_dropout_mask: None, `(B, n)` or `(4, B, n)` as in
            `lstm_forward`, in the packed sample order.
        training: keep the cache `lstm_backward` needs.

    Returns:
        `(y, h_n, c_n, cache)`: `y` `(N, P)` outputs in the rows of `data`; `h_n` `(B, P)` and
        `c_n` `(B, H)` each sample's state after its last computed step, in the packed sample
        order; `cache` an `LSTMCache` when `training` (then `lstm_backward(cache, dy (N, P),
        dh_n, dc_n)` returns `"x"` `(N, D)` and `"h0"`, `"c0"` in the packed order), else
        None.

    Raises:
        TypeError: an argument is not a real floating array, or `batch_sizes` not integers.
        ValueError: wrong shapes, `batch_sizes` empty, increasing or out of `[1, B]`, `data`
            rows not `sum(batch_sizes)`, NaN or inf, or a callable activation.

    Example:
    >>> import numpy as np
    >>> from pylstm import ops
    >>> rng = np.random.default_rng(0)
    >>> kernel = rng.normal(size=(3, 8)).astype("float32")
    >>> recurrent_kernel = rng.normal(size=(2, 8)).astype("float32")
    >>> data = rng.normal(size=(5, 3)).astype("float32")   # lengths 3 and 2
    >>> y, h_n, c_n, _ = ops.lstm_forward_packed(data, [2, 2, 1], kernel, recurrent_kernel)
    >>> y.shape, h_n.shape
    ((5, 2), (2, 2))
    """
    kernel, recurrent_kernel, bias, projection = _check_weights(kernel, recurrent_kernel, bias,
                                                                projection)
    dtype = kernel.dtype
    D, G = kernel.shape
    H = G // 4
    P = recurrent_kernel.shape[0]
    batch_sizes = _check_batch_sizes(batch_sizes)
    B = int(batch_sizes[0])
    N = int(batch_sizes.sum())
    data = check_array(data, "data", ndim=2, dtype=dtype)
    if data.shape != (N, D):
        raise ValueError(f"Argument `data` must have shape ({N}, {D}) (sum(batch_sizes) rows, "
                         f"the kernel's {D} features), received shape {data.shape}.")
    if max(N * max(D, G, P), G * max(D, P)) > _INT32_MAX:
        raise ValueError(f"Argument `data` of shape {data.shape} with {H} units is over the "
                         f"BLAS int32 size limit; split the batch.")
    data = np.ascontiguousarray(data)
    check_finite(data, "data")
    acts, _ = _activations(activation, recurrent_activation, gate_activations)
    if acts is None:
        raise ValueError("Packed sequences run on the compiled core: the activations must be "
                         "names (see lstm_forward), received a Python callable.")
    din = _dropout_mask(dropout_mask, "dropout_mask", B, D, "D", dtype)
    drec = _dropout_mask(recurrent_dropout_mask, "recurrent_dropout_mask", B, P, "P", dtype)
    h0 = _initial_state(h0, "h0", (B, P), dtype)
    c0 = _initial_state(c0, "c0", (B, H), dtype)
    _, row_sample = _row_steps(batch_sizes)
    y, h_n, c_n, core = _core_forward(data, batch_sizes, row_sample, kernel, recurrent_kernel,
                                      bias, projection, h0, c0, None, din, drec, acts,
                                      bool(reverse), training, False, want_y=True)
    cache = None
    if training:
        core.pop("y_prev")
        cache = LSTMCache(x=data, kernel=kernel, recurrent_kernel=recurrent_kernel,
                          projection=projection, has_bias=bias is not None, mask=None,
                          reverse=bool(reverse), zero_output=False, dropout_mask=din,
                          recurrent_dropout_mask=drec, return_sequences=True, time_major=True,
                          packing=dict(kind="packed"), reference=None, **core)
    return y, h_n, c_n, cache


def _forward_lengths(x_tm, lengths, padding_side, mask, acts, fields, bias, h0, c0, training):
    """`lstm_forward` with `lengths`: pack (NumPy gathers), run the packed core, scatter."""
    T, B, D = x_tm.shape
    if mask is not None:
        raise ValueError("Arguments `lengths` and `mask` cannot be used together: `lengths` "
                         "already marks the padding (pass one or the other).")
    if acts is None:
        raise ValueError("Argument `lengths` runs on the compiled core: the activations must be "
                         "names, received a Python callable (use `mask` with "
                         "`zero_output_for_mask=True` for right padding instead).")
    if not isinstance(padding_side, str) or padding_side not in ("right", "left"):
        raise ValueError(f"Argument `padding_side` must be 'right' or 'left', received "
                         f"{padding_side!r:.100}.")
    lengths = _check_lengths(lengths, B, T)
    order = np.argsort(-lengths, kind="stable")
    batch_sizes = _batch_sizes(lengths[order])
    step, row_sample = _row_steps(batch_sizes)
    sample = order[row_sample]
    time = step if padding_side == "right" else T - lengths[sample] + step
    x_rows = x_tm[time, sample]
    din, drec = fields["dropout_mask"], fields["recurrent_dropout_mask"]
    din = None if din is None else np.ascontiguousarray(din[:, order])
    drec = None if drec is None else np.ascontiguousarray(drec[:, order])
    kernel, projection = fields["kernel"], fields["projection"]
    y, h_n, c_n, core = _core_forward(x_rows, batch_sizes, row_sample, kernel,
                                      fields["recurrent_kernel"], bias, projection, h0[order],
                                      c0[order], None, din, drec, acts, fields["reverse"],
                                      training, False, want_y=fields["return_sequences"])
    h_out, c_out = np.empty_like(h_n), np.empty_like(c_n)
    h_out[order] = h_n
    c_out[order] = c_n
    if fields["return_sequences"]:
        y_tm = np.zeros((T, B, y.shape[1]), dtype=kernel.dtype)
        y_tm[time, sample] = y
        out = y_tm if fields["time_major"] else np.ascontiguousarray(y_tm.transpose(1, 0, 2))
    else:
        out = h_out.copy()
    cache = None
    if training:
        core.pop("y_prev")
        fields = dict(fields, x=x_rows, dropout_mask=din, recurrent_dropout_mask=drec,
                      zero_output=False, packing=dict(kind="lengths", order=order, time=time,
                                                      sample=sample, T=T, B=B))
        cache = LSTMCache(**fields, reference=None, **core)
    return out, h_out, c_out, cache


def _backward_packed(cache, dy, dh_n, dc_n):
    """`lstm_backward` for a cache of `lstm_forward_packed` or of `lstm_forward(lengths=...)`."""
    packing = cache.packing
    dtype = cache.kernel.dtype
    N, D = cache.x.shape
    H = cache.kernel.shape[1] // 4
    P = cache.recurrent_kernel.shape[0]
    B = int(cache.batch_sizes[0])
    if packing["kind"] == "packed":
        dy_rows = None
        if dy is not None:
            dy_rows = np.ascontiguousarray(check_array(dy, "dy", shape=(N, P), dtype=dtype))
            check_finite(dy_rows, "dy")
        dh = _initial_state(dh_n, "dh_n", (B, P), dtype)
        dc = _initial_state(dc_n, "dc_n", (B, H), dtype)
        return _core_backward(cache, dy_rows, dh, dc, np.zeros((B, P), dtype=dtype))

    T, order, time, sample = packing["T"], packing["order"], packing["time"], packing["sample"]
    dh = _initial_state(dh_n, "dh_n", (B, P), dtype)[order]
    dc = _initial_state(dc_n, "dc_n", (B, H), dtype)[order]
    dy_rows = None
    if dy is not None:
        if cache.return_sequences:
            expected = (T, B, P) if cache.time_major else (B, T, P)
            dy = check_array(dy, "dy", shape=expected, dtype=dtype)
            dy_tm = dy if cache.time_major else dy.transpose(1, 0, 2)
            dy_rows = np.ascontiguousarray(dy_tm[time, sample])
            check_finite(dy_rows, "dy")
        else:
            dy_last = check_array(dy, "dy", shape=(B, P), dtype=dtype)
            check_finite(dy_last, "dy")
            # the last output is h_n
            dh += dy_last[order]
    grads = _core_backward(cache, dy_rows, dh, dc, np.zeros((B, P), dtype=dtype))
    dx = np.zeros((T, B, D), dtype=dtype)
    dx[time, sample] = grads["x"]
    grads["x"] = dx if cache.time_major else _contiguous(dx.transpose(1, 0, 2))
    for name in ("h0", "c0"):
        unsorted = np.empty_like(grads[name])
        unsorted[order] = grads[name]
        grads[name] = unsorted
    return grads


def _check_lengths(lengths, B, T):
    """`lengths` as a `(B,)` int64 array of values in `[1, T]`, or a clear error."""
    arr = np.asarray(lengths)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"Argument `lengths` must be an integer array, received dtype "
                        f"{arr.dtype}.")
    if arr.shape != (B,):
        raise ValueError(f"Argument `lengths` must have shape ({B},) (one length per sample), "
                         f"received shape {arr.shape}.")
    if arr.min() < 1:
        raise ValueError(f"Argument `lengths` must be >= 1 (every sample needs a real step), "
                         f"received {int(arr.min())} at sample {int(arr.argmin())}.")
    if arr.max() > T:
        raise ValueError(f"Argument `lengths` must be <= {T} (the input's timesteps), "
                         f"received {int(arr.max())} at sample {int(arr.argmax())}.")
    return arr.astype(np.int64)


def _check_batch_sizes(batch_sizes):
    """`batch_sizes` as a `(T,)` intc array, non-increasing, all >= 1, or a clear error."""
    arr = np.asarray(batch_sizes)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"Argument `batch_sizes` must be an integer array, received dtype "
                        f"{arr.dtype}.")
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"Argument `batch_sizes` must be a non-empty 1-D array, received shape "
                         f"{arr.shape}.")
    if arr.min() < 1:
        raise ValueError(f"Argument `batch_sizes` must be >= 1 at every step, received "
                         f"{arr.tolist()}.")
    if np.any(np.diff(arr) > 0):
        raise ValueError(f"Argument `batch_sizes` must be non-increasing (samples sorted by "
                         f"decreasing length), received {arr.tolist()}.")
    if arr.max() > _INT32_MAX:
        raise ValueError(f"Argument `batch_sizes` is over the int32 limit: {int(arr.max())}.")
    return np.ascontiguousarray(arr, dtype=np.intc)


def _batch_sizes(sorted_lengths):
    """`(T,)` intc: how many of the decreasing `sorted_lengths` are longer than each step."""
    steps = np.arange(int(sorted_lengths[0]))
    return np.searchsorted(-sorted_lengths, -steps, side="left").astype(np.intc)


def _row_steps(batch_sizes):
    """`(step, position)` of each packed row, two `(N,)` int64 arrays."""
    offsets = np.concatenate([[0], np.cumsum(batch_sizes, dtype=np.int64)])
    step = np.repeat(np.arange(batch_sizes.size), batch_sizes)
    return step, np.arange(offsets[-1]) - offsets[step]


def _masked_gemm_grads(a, masks, w, dz2, want_input_grad):
    """Gradients of `z = (a * masks) @ w` over all rows, given `dz2` `(N, G)`.

    `a` is `(T, B, n)` or `(N, n)`; `masks` None or `(R, B, n)` / `(R, N, n)` (broadcasting
    against `a`): one mask for all gates (R = 1), or gate k's columns of `w (n, G)` seeing
    `a * masks[k]` (R = 4). Returns `(dw (n, G), da (a's shape) or None)`.
    """
    n = a.shape[-1]
    N = dz2.shape[0]
    G = w.shape[1]
    dw = _empty((n, G), w.dtype)
    da = _empty(a.shape, w.dtype) if want_input_grad else None
    if masks is None or len(masks) == 1:
        a2 = (a if masks is None else a * masks[0]).reshape(N, n)
        _core.matmul_acc(a2, dz2, dw, True, False, 0.0)                     # a^T @ dz
        if want_input_grad:
            _core.matmul_acc(dz2, w, da.reshape(N, n), False, True, 0.0)    # dz @ w^T
            if masks is not None:
                da *= masks[0]
        return dw, da
    if want_input_grad:
        da[...] = 0
    for k, cols in enumerate(_gate_columns(G // 4)):
        dw[:, cols] = _matmul((a * masks[k]).reshape(N, n).T, dz2[:, cols])
        if want_input_grad:
            da += _matmul(dz2[:, cols], w[:, cols].T).reshape(a.shape) * masks[k]
    return dw, da


def _matmul(a, b):
    """`a @ b` for 2-D arrays on NumPy's BLAS, in float32 bitwise the same on any BLAS thread
    count: a sum over more than 256 terms is split at a multiple of 32, as `_blas.gemm` does
    in the core (pylstm/_blas.pxd explains why)."""
    k = a.shape[1]
    tail = k % 32
    if a.dtype != np.float32 or k <= 256 or not tail:
        return a @ b
    out = a[:, :k - tail] @ b[:k - tail]
    out += a[:, k - tail:] @ b[k - tail:]
    return out


def _weight(value, name, ndim=None, shape=None, dtype=None):
    """`check_weight`, with its conversions skipped for an array that needs none.

    A C-contiguous native-order float32/float64 ndarray of the right ndim, shape and dtype is
    only checked for NaN and inf; anything else goes through `check_weight` (same errors; a
    copy in native byte order).
    """
    if (type(value) is np.ndarray and value.flags.c_contiguous
            and (value.dtype == dtype if dtype is not None else value.dtype in _FLOATS)
            and (value.shape == shape if shape is not None else value.ndim == ndim)):
        check_finite(value, name)
        return value
    return check_weight(value, name, ndim=ndim, shape=shape, dtype=dtype)


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))   # native byte order


def _check_weights(kernel, recurrent_kernel, bias, projection):
    """Validated `(kernel, recurrent_kernel, bias, projection)` (see `lstm_forward`)."""
    kernel = _weight(kernel, "kernel", ndim=2)
    dtype = kernel.dtype
    D, G = kernel.shape
    if G == 0 or G % 4:
        raise ValueError(f"Argument `kernel` must have shape (D, 4*units) with units >= 1, "
                         f"received shape {kernel.shape}.")
    H = G // 4
    recurrent_kernel = _weight(recurrent_kernel, "recurrent_kernel", ndim=2, dtype=dtype)
    P = recurrent_kernel.shape[0]
    if recurrent_kernel.shape[1] != G:
        raise ValueError(f"Argument `recurrent_kernel` must have shape ({P}, {G}), "
                         f"received shape {recurrent_kernel.shape}.")
    if projection is None:
        if P != H:
            raise ValueError(f"Argument `recurrent_kernel` must have shape ({H}, {G}) without "
                             f"a projection, received shape {recurrent_kernel.shape}.")
    else:
        projection = _weight(projection, "projection", shape=(H, P), dtype=dtype)
    if bias is not None:
        bias = _weight(bias, "bias", shape=(G,), dtype=dtype)
    return kernel, recurrent_kernel, bias, projection


def _gate_columns(H):
    return [slice(k * H, (k + 1) * H) for k in range(4)]


def _activations(activation, recurrent_activation, gate_activations):
    """The activations of gates i, f, g, o and the cell output, as `(codes, entries)`.

    `codes` is the core's `(5,)` intc array when every activation is a core name or a built-in
    of `pylstm.activations`, else None; `entries` are the five names or callables for the
    NumPy path. Two valid names (or None) are looked up once: then `codes` is read-only and
    shared between calls.
    """
    if (gate_activations is None and type(activation) in _NAME_TYPES
            and type(recurrent_activation) in _NAME_TYPES):
        key = (activation, recurrent_activation)
        found = _named_activations.get(key)
        if found is None:
            codes, entries = _resolve_activations(activation, recurrent_activation, None)
            codes.flags.writeable = False
            found = _named_activations.setdefault(key, (codes, tuple(entries)))
        return found[0], list(found[1])
    return _resolve_activations(activation, recurrent_activation, gate_activations)


# (activation, recurrent_activation) names -> (codes, entries), filled by valid names only.
_named_activations = {}
_NAME_TYPES = (str, type(None))


def _resolve_activations(activation, recurrent_activation, gate_activations):
    """`_activations` without the cache of names."""
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
