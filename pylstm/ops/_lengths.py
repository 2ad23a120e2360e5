"""Packed rows: `lstm_forward(lengths=...)` packs the real steps by step, runs the plan's
route on them and scatters the results back; `lstm_forward_packed` runs rows already packed
(PyTorch's `PackedSequence` layout)."""

import numpy as np

from pylstm import _plan, _threads
from pylstm._validation import check_lstm_weights
from pylstm.ops._arguments import (check_batch_sizes, check_data, check_dropout_mask,
                                   check_lengths, check_padding_side, check_state,
                                   resolve_activations)
from pylstm.ops._buffers import contiguous
from pylstm.ops._caches import LengthsCache, PackedCache
from pylstm.ops._routes import run_rows


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
    kernel, recurrent_kernel, bias, projection = check_lstm_weights(kernel, recurrent_kernel,
                                                                    bias, projection)
    dtype = kernel.dtype
    D, G = kernel.shape
    H = G // 4
    P = recurrent_kernel.shape[0]
    batch_sizes = check_batch_sizes(batch_sizes)
    B = int(batch_sizes[0])
    data = check_data(data, batch_sizes, D, G, P, dtype)
    N = data.shape[0]
    acts, _ = resolve_activations(activation, recurrent_activation, gate_activations)
    if acts is None:
        raise ValueError("Packed sequences run on the compiled core: the activations must be "
                         "names (see lstm_forward), received a Python callable.")
    din = check_dropout_mask(dropout_mask, "dropout_mask", B, D, "D", dtype)
    drec = check_dropout_mask(recurrent_dropout_mask, "recurrent_dropout_mask", B, P, "P",
                              dtype)
    h0 = check_state(h0, "h0", (B, P), dtype)
    c0 = check_state(c0, "c0", (B, H), dtype)
    reverse = bool(reverse)
    _, row_sample = row_steps(batch_sizes)
    plan = _plan.forward_plan(
        dtype, D, H, P, B, batch_sizes.size, N, projection=projection is not None,
        input_dropout=din is not None, recurrent_dropout=drec is not None, mask=False,
        training=training, in_core=True, input="packed", available=_threads.team_available)
    y, h_n, c_n, core = run_rows(plan, data, batch_sizes, row_sample, kernel, recurrent_kernel,
                                 bias, projection, h0, c0, None, din, drec, acts, reverse,
                                 False, want_y=True)
    cache = None
    if training:
        cache = PackedCache(core, x=data, kernel=kernel, recurrent_kernel=recurrent_kernel,
                            projection=projection, has_bias=bias is not None, reverse=reverse,
                            dropout_mask=din, recurrent_dropout_mask=drec,
                            return_sequences=True, time_major=True)
    return y, h_n, c_n, cache


def forward_lengths(x, time_major, lengths, padding_side, mask, acts, kernel, recurrent_kernel,
                    bias, projection, h0, c0, din, drec, reverse, training, return_sequences):
    """`lstm_forward` with `lengths` (arguments checked but these): pack the real steps by
    step (NumPy gathers), run the plan's route on the packed rows, scatter them back."""
    x_tm = contiguous(x if time_major else x.transpose(1, 0, 2))
    T, B, D = x_tm.shape
    if mask is not None:
        raise ValueError("Arguments `lengths` and `mask` cannot be used together: `lengths` "
                         "already marks the padding (pass one or the other).")
    if acts is None:
        raise ValueError("Argument `lengths` runs on the compiled core: the activations must be "
                         "names, received a Python callable (use `mask` with "
                         "`zero_output_for_mask=True` for right padding instead).")
    check_padding_side(padding_side)
    lengths = check_lengths(lengths, B, T)
    order = np.argsort(-lengths, kind="stable")
    batch_sizes = _batch_sizes(lengths[order])
    step, row_sample = row_steps(batch_sizes)
    sample = order[row_sample]
    time = step if padding_side == "right" else T - lengths[sample] + step
    x_rows = x_tm[time, sample]
    din = None if din is None else np.ascontiguousarray(din[:, order])
    drec = None if drec is None else np.ascontiguousarray(drec[:, order])
    G = kernel.shape[1]
    P = recurrent_kernel.shape[0]
    plan = _plan.forward_plan(
        kernel.dtype, D, G // 4, P, B, batch_sizes.size, x_rows.shape[0],
        projection=projection is not None, input_dropout=din is not None,
        recurrent_dropout=drec is not None, mask=False, training=training, in_core=True,
        input="lengths", available=_threads.team_available)
    y, h_n, c_n, core = run_rows(plan, x_rows, batch_sizes, row_sample, kernel, recurrent_kernel,
                                 bias, projection, h0[order], c0[order], None, din, drec, acts,
                                 reverse, False, want_y=return_sequences)
    h_out, c_out = np.empty_like(h_n), np.empty_like(c_n)
    h_out[order] = h_n
    c_out[order] = c_n
    if return_sequences:
        y_tm = np.zeros((T, B, y.shape[1]), dtype=kernel.dtype)
        y_tm[time, sample] = y
        out = y_tm if time_major else np.ascontiguousarray(y_tm.transpose(1, 0, 2))
    else:
        out = h_out.copy()
    cache = None
    if training:
        cache = LengthsCache(core, order, time, sample, T, x=x_rows, kernel=kernel,
                             recurrent_kernel=recurrent_kernel, projection=projection,
                             has_bias=bias is not None, reverse=reverse, dropout_mask=din,
                             recurrent_dropout_mask=drec, return_sequences=return_sequences,
                             time_major=time_major)
    return out, h_out, c_out, cache


def _batch_sizes(sorted_lengths):
    """`(T,)` intc: how many of the decreasing `sorted_lengths` are longer than each step."""
    steps = np.arange(int(sorted_lengths[0]))
    return np.searchsorted(-sorted_lengths, -steps, side="left").astype(np.intc)


def row_steps(batch_sizes):
    """`(step, position)` of each packed row, two `(N,)` int64 arrays."""
    offsets = np.concatenate([[0], np.cumsum(batch_sizes, dtype=np.int64)])
    step = np.repeat(np.arange(batch_sizes.size), batch_sizes)
    return step, np.arange(offsets[-1]) - offsets[step]
