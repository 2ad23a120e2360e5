"""The compiled forward routes of `pylstm._plan` over rows already laid out by step: dense
`(T, B, D)` rows or rows packed by step (`lengths`, `lstm_forward_packed`).

- fused inference (`fused_inference`): one core call that packs both kernels and computes
  each step's input and recurrent products itself, on a thread team;
- chunked inference (`chunked_inference`): one input GEMM per chunk of steps, then the time
  loop over the chunk, from the state the previous chunk ended with;
- fused training and GEMM training (`run_rows`): the per-row arrays the backward needs.
Every route does the same arithmetic per step whatever the chunks or the team, so chunked and
unchunked runs, and inference and training, give the same bits.
"""

import math

import numpy as np

from pylstm import _plan
from pylstm._kernels import core as _core
from pylstm._threads import BlasThreads
from pylstm.ops._buffers import empty, gate_columns, matmul


def run_rows(plan, x_rows, batch_sizes, row_sample, kernel, recurrent_kernel, bias, projection,
             h0, c0, mask_tm, din, drec, acts, reverse, zero_output, want_y,
             y_batch_first=False):
    """Runs `plan`'s compiled forward over rows; validated arguments only.

    `x_rows` is `(T, B, D)` (every batch size B) or `(N, D)` packed by step; `row_sample`
    None, or `(N,)` the position within its step of each packed row (which row of a `(B, .)`
    per-sample array it uses). Returns `(y (N, P) or None, h_n, c_n, fields)`, `fields` the
    core part of a cache (and `y_prev`) in training, else only `y_prev`. With `y_batch_first`
    (dense rows, training), `y` is `(B, T, P)` instead, written in place.
    """
    dtype = kernel.dtype
    D = kernel.shape[0]
    P = recurrent_kernel.shape[0]
    B = h0.shape[0]
    N = math.prod(x_rows.shape[:-1])
    if plan.route == _plan.FUSED_INFERENCE:
        y = empty((N, P), dtype) if want_y else None
        h_n, c_n, y_prev = fused_inference(
            plan, np.ascontiguousarray(x_rows.reshape(N, D)).reshape(-1), D,
            0 if row_sample is not None else B * D, batch_sizes, kernel, recurrent_kernel,
            bias, h0, c0, mask_tm, acts, reverse, zero_output, y, 0, 0)
        return y, h_n, c_n, dict(y_prev=y_prev)
    if plan.route == _plan.CHUNKED_INFERENCE:
        x_flat = x_rows.reshape(N, D)
        y = empty((N, P), dtype) if want_y else None
        offsets = np.zeros(batch_sizes.size + 1, dtype=np.int64)
        np.cumsum(batch_sizes, out=offsets[1:])
        din_rows = din if (din is None or row_sample is None) else din[:, row_sample]
        h_n, c_n, y_prev = chunked_inference(
            plan, lambda s0, s1, r0, r1: x_flat[r0:r1], chunks(offsets, plan.chunk_rows),
            batch_sizes, kernel, recurrent_kernel, bias, projection, h0, c0, mask_tm, din_rows,
            row_sample is not None, drec, acts, reverse, zero_output, y=y)
        return y, h_n, c_n, dict(y_prev=y_prev)
    return _training(plan, x_rows, batch_sizes, row_sample, kernel, recurrent_kernel, bias,
                     projection, h0, c0, mask_tm, din, drec, acts, reverse, zero_output, want_y,
                     y_batch_first)


def _training(plan, x_rows, batch_sizes, row_sample, kernel, recurrent_kernel, bias,
              projection, h0, c0, mask_tm, din, drec, acts, reverse, zero_output, want_y,
              y_batch_first):
    """`run_rows` for the training routes: every row's gates and states kept."""
    dtype = kernel.dtype
    D, G = kernel.shape
    H = G // 4
    P = recurrent_kernel.shape[0]
    B = h0.shape[0]
    lead = x_rows.shape[:-1]
    N = math.prod(lead)
    gates = empty((N, G), dtype)
    hs = empty((N + B, P), dtype)
    cs = empty((N + B, H), dtype)
    needs_zs = not _core.INPUT_DERIVATIVE_CODES.isdisjoint(acts[:4].tolist())
    zs = empty((N, G), dtype) if needs_zs else None
    ms = empty((N, H), dtype) if projection is not None else None
    m = np.empty((B, H), dtype=dtype) if projection is not None else None
    y = empty((N, P), dtype) if want_y else None
    ldy = y_step = 0
    if want_y and y_batch_first:
        T = batch_sizes.size
        ldy, y_step = T * P, P       # row (t, b) of the output at b * T * P + t * P
    y_prev = np.zeros((B, P), dtype=dtype)
    hm = np.empty((B, P), dtype=dtype) if drec is not None else None
    steps = _core.Steps(batch_sizes, acts, mask=mask_tm, reverse=reverse, training=True,
                        zero_output=zero_output)

    if plan.route == _plan.FUSED_TRAINING:
        # The core does the input product too (bias + x @ kernel into gates, the arithmetic
        # of `fused_inference`) on the packed kernel, and the time loop, in one team run.
        packed, packed_kernel = _fused_buffers(D, G, P)
        arrays = _core.ForwardArrays(gates, hs, cs, h0, c0, y_prev, zs=zs, y=y,
                                     x=np.ascontiguousarray(x_rows).reshape(-1), ldx=D,
                                     ldy=ldy, y_step=y_step)
        weights = _core.RecurrentWeights(recurrent_kernel, packed=packed, kernel=kernel,
                                         packed_kernel=packed_kernel, bias=bias)
        _core.forward(arrays, weights, steps, plan.team, plan.team_if_awake)
    else:
        din_rows = din if (din is None or row_sample is None) else din[:, row_sample]
        # BLAS threads: get_num_threads() for the one big GEMM, the plan's for the time loop.
        with BlasThreads() as threads:
            # gates = (x * dropout_mask) @ kernel + bias, for all rows at once  (N, D) @ (D, G)
            gates[...] = bias if bias is not None else 0
            threads.bulk()
            if din is None or len(din) == 1:
                x_in = x_rows if din is None else x_rows * din_rows[0]
                _core.matmul_acc(x_in.reshape(N, D), kernel, gates, False, False, 1.0)
            else:
                for k, cols in enumerate(gate_columns(H)):
                    gates[:, cols] += matmul((x_rows * din_rows[k]).reshape(N, D),
                                             kernel[:, cols])
            arrays = _core.ForwardArrays(gates, hs, cs, h0, c0, y_prev, zs=zs, ms=ms, m=m,
                                         y=y, hm=hm, ldy=ldy, y_step=y_step)
            weights = _core.RecurrentWeights(recurrent_kernel, projection=projection,
                                             recurrent_dropout_mask=drec,
                                             packed=recurrent(plan, threads, G, P))
            _core.forward(arrays, weights, steps, plan.team, plan.team_if_awake)

    final = 0 if reverse else N
    h_n, c_n = hs[final:final + B].copy(), cs[final:final + B].copy()
    start = B if reverse else 0
    fields = dict(y_prev=y_prev, gates=gates.reshape(lead + (G,)),
                  zs=None if zs is None else zs.reshape(lead + (G,)),
                  hs=hs, cs=cs, h_prev=hs[start:start + N].reshape(lead + (P,)),
                  ms=ms, acts=acts, batch_sizes=batch_sizes, row_sample=row_sample)
    return y, h_n, c_n, fields


def recurrent(plan, threads, G, P, transposed=False):
    """How the core's time loop runs under `plan`: the `packed` buffer of
    `_core.RecurrentWeights` for `_core.forward` (`_core.backward` if `transposed`), new, that
    the core packs the recurrent kernel (its transpose) into, run by the plan's team; or None
    with the BLAS threads of one product a step set."""
    if plan.recurrent == "packed":
        size = (_core.packed_t_size if transposed else _core.packed_size)(G // 4, P)
        return empty((size,), np.float32)
    threads.loop(plan.loop_threads)
    return None


def chunks(offsets, budget):
    """The inference chunks: `(s0, s1, r0, r1)` for steps `[s0, s1)` and their rows `[r0, r1)`.

    `offsets` `(T + 1,)` are the first row of each step (`offsets[T]` = N); each chunk takes
    as many whole steps as fit in `budget` rows (`Plan.chunk_rows`), at least one.
    """
    T = offsets.size - 1
    found = []
    s0 = 0
    while s0 < T:
        s1 = int(np.searchsorted(offsets, offsets[s0] + budget, side="right")) - 1
        s1 = min(T, max(s1, s0 + 1))
        found.append((s0, s1, int(offsets[s0]), int(offsets[s1])))
        s0 = s1
    return found


def dense_chunks(T, B, budget):
    """`chunks` for T steps of B rows each, without the offsets table."""
    steps = max(1, budget // B)
    return [(s0, min(T, s0 + steps), s0 * B, min(T, s0 + steps) * B)
            for s0 in range(0, T, steps)]


def last_output(h_n, y_prev, mask_tm, zero_output, reverse):
    """The output of the last processed step `(B, P)` of a dense run without sequences: `h_n`,
    or with a mask each sample's last unmasked output (zero where that step is masked, with
    `zero_output`), as Keras returns it."""
    if mask_tm is None:
        return h_n.copy()
    out = y_prev
    if zero_output:
        out[mask_tm[0 if reverse else -1] == 0] = 0
    return out


def _fused_buffers(D, G, P):
    """`(packed, packed_kernel)`: the buffers a core call that packs both kernels (float32)
    packs them into."""
    packed = empty((_core.packed_size(G // 4, P),), np.float32)
    packed_kernel = empty((_core.packed_size(G // 4, D),), np.float32)
    return packed, packed_kernel


def fused_inference(plan, x_flat, ldx, x_step, batch_sizes, kernel, recurrent_kernel, bias, h0,
                    c0, mask_tm, acts, reverse, zero_output, y, ldy, y_step):
    """Inference in float32 without projection or dropout: one core call that packs both
    kernels and computes each step's `bias + x_t @ kernel + h @ recurrent_kernel` from them
    (_recurrent.h), on the plan's team: no input GEMM, no chunks, and memory beyond the
    output of a few `(B, 4H)` rows and the two packed kernels.

    `x_flat` holds the input rows, a step's rows `ldx` apart, dense steps `x_step` apart (0:
    packed rows, each step's rows contiguous); `y` `(rows, P)` or None receives the outputs
    at `t * y_step + b * ldy` (`ldy` 0: packed rows). Returns `(h_n, c_n, y_prev)`.
    """
    B = h0.shape[0]
    D, G = kernel.shape
    H = G // 4
    P = recurrent_kernel.shape[0]
    hs = empty((3 * B, P), np.float32)
    cs = empty((3 * B, H), np.float32)
    h_carry, c_carry = hs[2 * B:], cs[2 * B:]
    h_carry[...] = h0
    c_carry[...] = c0
    y_prev = np.zeros((B, P), dtype=np.float32)
    z = empty((_core.HOIST_STEPS if B == 1 and x_step > 0 else B, G), np.float32)
    packed, packed_kernel = _fused_buffers(D, G, P)
    arrays = _core.ForwardArrays(z, hs, cs, h_carry, c_carry, y_prev, y=y, x=x_flat, ldx=ldx,
                                 x_step=x_step, ldy=ldy, y_step=y_step)
    weights = _core.RecurrentWeights(recurrent_kernel, packed=packed, kernel=kernel,
                                     packed_kernel=packed_kernel, bias=bias)
    steps = _core.Steps(batch_sizes, acts, mask=mask_tm, reverse=reverse,
                        zero_output=zero_output)
    _core.forward(arrays, weights, steps, plan.team, plan.team_if_awake)
    return h_carry.copy(), c_carry.copy(), y_prev


def chunked_inference(plan, load, steps, batch_sizes, kernel, recurrent_kernel, bias,
                      projection, h0, c0, mask_tm, din, din_per_row, drec, acts, reverse,
                      zero_output, y=None, y_batch_first=None):
    """The compiled forward without a cache, in chunks of whole steps (`chunks`).

    Each chunk: one GEMM `x @ kernel + bias` over its rows into a reused `(rows, 4H)` buffer,
    then `_core.forward` over its steps from the state the previous chunk ended with (the
    final state slot, which also holds the state of packed samples that already ended), and
    `y_prev` carried for the mask semantics. Every step does the same arithmetic as in one
    chunk, so results are bitwise those of the unchunked run
    (tests/parity/torch/test_ops_chunked.py).

    `load(s0, s1, r0, r1)` returns the `(r1 - r0, D)` C-contiguous input rows of steps
    `[s0, s1)`, a view or gathered into a scratch buffer of its own; `steps` are the chunks.
    `din` is None, `(R, B, D)` or, if `din_per_row`, `(R, N, D)` dropout masks. The outputs
    go to `y` `(N, P)` (rows as packed), or for dense input to `y_batch_first` `(B, T, P)`,
    or nowhere. Returns `(h_n, c_n, y_prev)`, `(B, .)` each.
    """
    dtype = kernel.dtype
    D, G = kernel.shape
    H = G // 4
    P = recurrent_kernel.shape[0]
    B = h0.shape[0]
    most = max(r1 - r0 for _, _, r0, r1 in steps) if len(steps) > 1 else steps[0][3]

    gates_buf = empty((most, G), dtype)
    y_buf = empty((most, P), dtype) if y_batch_first is not None else None
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
    # recurrent_kernel once, in the first chunk, or runs BLAS as the plan says.
    first = True
    with BlasThreads() as threads:
        for s0, s1, r0, r1 in (reversed(steps) if reverse else steps):
            x_in = load(s0, s1, r0, r1)
            gates = gates_buf[:r1 - r0]
            # gates = (x * dropout_mask) @ kernel + bias over the chunk's rows  (rows, D) @ (D, G)
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
                    for k, cols in enumerate(gate_columns(H)):
                        gates[:, cols] += matmul((x_in * masks[k]).reshape(r1 - r0, D),
                                                 kernel[:, cols])
            if first:
                weights = _core.RecurrentWeights(recurrent_kernel, projection=projection,
                                                 recurrent_dropout_mask=drec,
                                                 packed=recurrent(plan, threads, G, P))
            y_rows = y_buf[:r1 - r0] if y_buf is not None else (
                None if y is None else y[r0:r1])
            arrays = _core.ForwardArrays(gates, hs, cs, h_carry, c_carry, y_prev, m=m,
                                         y=y_rows, hm=hm)
            steps = _core.Steps(batch_sizes[s0:s1], acts,
                                mask=None if mask_tm is None else mask_tm[s0:s1],
                                reverse=reverse, zero_output=zero_output)
            _core.forward(arrays, weights, steps, plan.team, plan.team_if_awake, pack=first)
            first = False
            if y_buf is not None:
                y_batch_first[:, s0:s1] = y_rows.reshape(s1 - s0, B, P).transpose(1, 0, 2)
    return h_carry.copy(), c_carry.copy(), y_prev
