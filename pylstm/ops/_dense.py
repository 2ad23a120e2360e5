"""`lstm_forward`: its arguments checked once, its route chosen by `pylstm._plan`, and the
dense-input routes (reference, small call, fused and chunked inference, training); input
with `lengths` goes to `pylstm.ops._lengths`."""

import numpy as np

from pylstm import _plan, _reference, _threads
from pylstm._kernels import core as _core
from pylstm._threads import BlasThreads
from pylstm._validation import check_lstm_weights
from pylstm.ops import _routes
from pylstm.ops._arguments import (check_dropout_mask, check_mask, check_state, check_x,
                                   resolve_activations)
from pylstm.ops._buffers import contiguous, dense_batch_sizes, empty
from pylstm.ops._caches import DenseCache, ReferenceCache
from pylstm.ops._lengths import forward_lengths


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

    Example:

    >>> import numpy as np
    >>> from pylstm import ops
    >>> rng = np.random.default_rng(0)
    >>> B, T, D, H = 2, 5, 3, 4
    >>> x = rng.normal(size=(B, T, D)).astype("float32")
    >>> kernel = rng.normal(size=(D, 4 * H)).astype("float32")
    >>> recurrent_kernel = rng.normal(size=(H, 4 * H)).astype("float32")
    >>> y, h_n, c_n, cache = ops.lstm_forward(x, kernel, recurrent_kernel)
    >>> y.shape, h_n.shape, c_n.shape, cache
    ((2, 5, 4), (2, 4), (2, 4), None)
    >>> bool(np.array_equal(y[:, -1], h_n))
    True
    """
    return forward(x, kernel, recurrent_kernel, bias, h0, c0, projection, mask, reverse,
                   zero_output_for_mask, activation, recurrent_activation, gate_activations,
                   dropout_mask, recurrent_dropout_mask, training, return_sequences, time_major,
                   lengths, padding_side, ())


def forward(x, kernel, recurrent_kernel, bias=None, h0=None, c0=None, projection=None,
            mask=None, reverse=False, zero_output_for_mask=False, activation="tanh",
            recurrent_activation="sigmoid", gate_activations=None, dropout_mask=None,
            recurrent_dropout_mask=None, training=False, return_sequences=True,
            time_major=False, lengths=None, padding_side="right", checked=()):
    """`lstm_forward`, for callers that have already scanned some inputs for NaN and inf
    themselves: `checked` names them among "x", "h0" and "c0" (the Keras-style layers, which
    name them `inputs` and `initial_state`), so that each array is scanned once; "weights"
    when the four weights are what `check_lstm_weights` returned for them (ONNX import,
    which checks a node's converted weights once for all its runs)."""
    if "weights" not in checked:
        kernel, recurrent_kernel, bias, projection = check_lstm_weights(
            kernel, recurrent_kernel, bias, projection)
    dtype = kernel.dtype
    D, G = kernel.shape
    H = G // 4
    P = recurrent_kernel.shape[0]
    x, T, B = check_x(x, D, G, P, dtype, time_major, finite="x" not in checked)
    # (the None tests spare small calls three function calls)
    mask_tm = None if mask is None else check_mask(mask, T, B, time_major)
    acts, entries = resolve_activations(activation, recurrent_activation, gate_activations)
    din = drec = None
    if dropout_mask is not None:
        din = check_dropout_mask(dropout_mask, "dropout_mask", B, D, "D", dtype)
    if recurrent_dropout_mask is not None:
        drec = check_dropout_mask(recurrent_dropout_mask, "recurrent_dropout_mask", B, P, "P",
                                  dtype)
    h0 = check_state(h0, "h0", (B, P), dtype, finite="h0" not in checked)
    c0 = check_state(c0, "c0", (B, H), dtype, finite="c0" not in checked)
    reverse, zero_output = bool(reverse), bool(zero_output_for_mask)
    return_sequences, time_major = bool(return_sequences), bool(time_major)
    if lengths is not None:
        return forward_lengths(x, time_major, lengths, padding_side, mask, acts, kernel,
                               recurrent_kernel, bias, projection, h0, c0, din, drec, reverse,
                               training, return_sequences)
    # positional: the call every small call makes
    plan = _plan.forward_plan(dtype, D, H, P, B, T, T * B, projection is not None,
                              din is not None, drec is not None, mask_tm is not None,
                              training, acts is not None, "dense", time_major or B == 1,
                              _threads.team_available)
    if plan.route == _plan.REFERENCE:
        return _reference_forward(plan, x, time_major, kernel, recurrent_kernel, bias,
                                  projection, h0, c0, mask_tm, entries, din, drec, reverse,
                                  zero_output, training, return_sequences)
    if plan.route == _plan.SMALL:
        return _small(plan, x, kernel, recurrent_kernel, bias, h0, c0, acts, reverse,
                      return_sequences)
    if plan.route == _plan.FUSED_INFERENCE:
        return _fused_inference(plan, x, time_major, kernel, recurrent_kernel, bias, h0, c0,
                                mask_tm, acts, reverse, zero_output, return_sequences)
    if plan.route == _plan.CHUNKED_INFERENCE:
        return _chunked_inference(plan, x, time_major, kernel, recurrent_kernel, bias,
                                  projection, h0, c0, mask_tm, din, drec, acts, reverse,
                                  zero_output, return_sequences)
    return _training(plan, x, time_major, kernel, recurrent_kernel, bias, projection, h0, c0,
                     mask_tm, din, drec, acts, reverse, zero_output, return_sequences)


def _common(x_tm, kernel, recurrent_kernel, projection, bias, reverse, din, drec,
            return_sequences, time_major):
    """The attributes every cache has (`LSTMCache`)."""
    return dict(x=x_tm, kernel=kernel, recurrent_kernel=recurrent_kernel, projection=projection,
                has_bias=bias is not None, reverse=reverse, dropout_mask=din,
                recurrent_dropout_mask=drec, return_sequences=return_sequences,
                time_major=time_major)


def _reference_forward(plan, x, time_major, kernel, recurrent_kernel, bias, projection, h0,
                       c0, mask_tm, entries, din, drec, reverse, zero_output, training,
                       return_sequences):
    """The reference route: `pylstm._reference`'s NumPy loop, for Python-callable activations.

    One NumPy product per step, on one BLAS thread whatever the step's size: NumPy's products
    of one row, and in float64 all of them, round by how OpenBLAS shares them between threads
    (_threads), and this route is bound by its Python calls anyway.
    """
    x_tm = contiguous(x if time_major else x.transpose(1, 0, 2))
    with BlasThreads() as threads:
        threads.loop(plan.loop_threads)
        y, h_n, c_n, ref_cache = _reference.lstm_forward(
            x_tm, kernel, recurrent_kernel, bias, h0, c0, projection=projection,
            mask=None if mask_tm is None else mask_tm.view(np.bool_), reverse=reverse,
            zero_output_for_mask=zero_output, gate_activations=entries,
            dropout_mask=din, recurrent_dropout_mask=drec, training=training,
            return_sequences=return_sequences, time_major=True)
    if return_sequences and not time_major:
        y = y.transpose(1, 0, 2)
    cache = None
    if training:
        cache = ReferenceCache(ref_cache, **_common(x_tm, kernel, recurrent_kernel, projection,
                                                    bias, reverse, din, drec, return_sequences,
                                                    time_major))
    return np.ascontiguousarray(y), h_n, c_n, cache


def _small(plan, x, kernel, recurrent_kernel, bias, h0, c0, acts, reverse, return_sequences):
    """The small-call route: a few rows (one step, a short sequence at batch 1) in one core
    call, the arithmetic of the chunked route, whose Python overhead is most of the time
    here. The core sets BLAS to one thread itself where it can (`_threads.loop_switch`)."""
    B = h0.shape[0]
    args = (np.ascontiguousarray(x), kernel, recurrent_kernel, bias, h0, c0, acts,
            dense_batch_sizes(plan.steps, B), reverse, return_sequences)
    switch = _threads.loop_switch() if plan.loop_threads == 1 else None
    if switch is not None and _threads.begin_switch(switch):
        try:
            y, h_n, c_n = _core.forward_small(*args, switch)
        finally:
            _threads.end_switch(switch)
    else:
        with BlasThreads() as threads:
            threads.loop(plan.loop_threads)
            y, h_n, c_n = _core.forward_small(*args)
    return (y if return_sequences else h_n.copy()), h_n, c_n, None


def _fused_inference(plan, x, time_major, kernel, recurrent_kernel, bias, h0, c0, mask_tm,
                     acts, reverse, zero_output, return_sequences):
    """The fused inference route on dense input (`_routes.fused_inference`): `x` read and
    the output written in the caller's layout through strides, no gathered copy of `x`."""
    T, B = (x.shape[0], x.shape[1]) if time_major else (x.shape[1], x.shape[0])
    P = recurrent_kernel.shape[0]
    x_flat, ldx, x_step = _strided_rows(x, time_major)
    y = None
    ldy = y_step = 0
    if return_sequences:
        out = empty((T, B, P) if time_major else (B, T, P), np.float32)
        y = out.reshape(T * B, P)
        ldy, y_step = (P, B * P) if time_major else (T * P, P)
    h_n, c_n, y_prev = _routes.fused_inference(
        plan, x_flat, ldx, x_step, dense_batch_sizes(T, B), kernel, recurrent_kernel, bias,
        h0, c0, mask_tm, acts, reverse, zero_output, y, ldy, y_step)
    if not return_sequences:
        out = _routes.last_output(h_n, y_prev, mask_tm, zero_output, reverse)
    return out, h_n, c_n, None


def _strided_rows(x, time_major):
    """`(flat, ldx, x_step)`: `x` `(T, B, D)` (`(B, T, D)` if not `time_major`) as the fused
    core reads it, in place: element (t, b, k) at `flat[t * x_step + b * ldx + k]`, `flat` a
    1-D view of x's memory. Any layout with unit last stride and non-negative strides is read
    in place (a time-major view of a batch-major array, as `nn.LSTM` passes); others are
    copied to C order first."""
    if x.flags.c_contiguous:
        # The common case, and the cheapest view (as_strided takes tens of microseconds
        # after a pause, its Python code out of the caches). Strides from the shape: NumPy
        # lets an axis of length 1 have any stride.
        n1, D = x.shape[1], x.shape[2]
        return x.reshape(-1), (D if time_major else n1 * D), (n1 * D if time_major else D)
    item = x.itemsize
    if x.strides[2] != item or any(st < 0 or st % item for st in x.strides[:2]):
        x = np.ascontiguousarray(x)
    step, row = (x.strides[0], x.strides[1]) if time_major else (x.strides[1], x.strides[0])
    extent = ((x.shape[0] - 1) * x.strides[0] + (x.shape[1] - 1) * x.strides[1]
              + x.shape[2] * item)
    flat = np.lib.stride_tricks.as_strided(x, shape=(extent // item,), strides=(item,),
                                           writeable=False)
    return flat, row // item, step // item


def _chunked_inference(plan, x, time_major, kernel, recurrent_kernel, bias, projection, h0, c0,
                       mask_tm, din, drec, acts, reverse, zero_output, return_sequences):
    """The chunked inference route on dense input, with no time-major copy of `x`.

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
    rows_in_place = time_major or B == 1
    chunks = _routes.dense_chunks(T, B, plan.chunk_rows)
    if rows_in_place and x.flags.c_contiguous:
        x_flat = x.reshape(T * B, D)

        def load(s0, s1, r0, r1):
            return x_flat[r0:r1]
    else:
        x_buf = empty((chunks[0][3], D), dtype)   # the first chunk is the largest

        def load(s0, s1, r0, r1):
            buf = x_buf[:r1 - r0]
            steps = x[s0:s1] if time_major else x[:, s0:s1].transpose(1, 0, 2)
            np.copyto(buf.reshape(s1 - s0, B, D), steps)
            return buf

    y = y_batch_first = None
    if return_sequences:
        out = empty((T, B, P) if time_major else (B, T, P), dtype)
        if rows_in_place:
            y = out.reshape(T * B, P)
        else:
            y_batch_first = out
    h_n, c_n, y_prev = _routes.chunked_inference(
        plan, load, chunks, dense_batch_sizes(T, B), kernel, recurrent_kernel, bias,
        projection, h0, c0, mask_tm, din, False, drec, acts, reverse, zero_output, y=y,
        y_batch_first=y_batch_first)
    if not return_sequences:
        out = _routes.last_output(h_n, y_prev, mask_tm, zero_output, reverse)
    return out, h_n, c_n, None


def _training(plan, x, time_major, kernel, recurrent_kernel, bias, projection, h0, c0, mask_tm,
              din, drec, acts, reverse, zero_output, return_sequences):
    """The training routes on dense input: the core writes the sequence output in the
    caller's layout, and the cache keeps every row."""
    T, B = (x.shape[0], x.shape[1]) if time_major else (x.shape[1], x.shape[0])
    P = recurrent_kernel.shape[0]
    x_tm = contiguous(x if time_major else x.transpose(1, 0, 2))
    y, h_n, c_n, core = _routes.run_rows(
        plan, x_tm, dense_batch_sizes(T, B), None, kernel, recurrent_kernel, bias, projection,
        h0, c0, mask_tm, din, drec, acts, reverse, zero_output, want_y=return_sequences,
        y_batch_first=not time_major)
    if return_sequences:
        out = y.reshape((T, B, P) if time_major else (B, T, P))
    elif mask_tm is None:
        out = h_n.copy()
    else:
        out = core["y_prev"]
        if zero_output:
            out[mask_tm[0 if reverse else T - 1] == 0] = 0
    cache = DenseCache(core, mask_tm, zero_output,
                       **_common(x_tm, kernel, recurrent_kernel, projection, bias, reverse, din,
                                 drec, return_sequences, time_major))
    return out, h_n, c_n, cache
