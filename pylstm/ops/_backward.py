"""`lstm_backward`: backpropagation through time for a training forward, run by the cache's
type (one backward per cache class of `pylstm.ops._caches`), with the time loop and the
weight-gradient method chosen by `pylstm._plan.backward_plan`."""

import numpy as np

from pylstm import _plan, _reference, _threads
from pylstm._kernels import core as _core
from pylstm._threads import BlasThreads
from pylstm._validation import check_array, check_finite
from pylstm.ops import _routes
from pylstm.ops._arguments import check_state
from pylstm.ops._buffers import contiguous, empty, gate_columns, matmul
from pylstm.ops._caches import DenseCache, LengthsCache, PackedCache, ReferenceCache


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

    Example:

    >>> import numpy as np
    >>> from pylstm import ops
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2, 5, 3))                    # float64: (B, T, D)
    >>> kernel, recurrent_kernel = rng.normal(size=(3, 16)), rng.normal(size=(4, 16))
    >>> y, h_n, c_n, cache = ops.lstm_forward(x, kernel, recurrent_kernel, training=True)
    >>> grads = lstm_backward(cache, dy=np.ones_like(y))  # the loss is y.sum()
    >>> grads["kernel"].shape, grads["x"].shape, grads["bias"]
    ((3, 16), (2, 5, 3), None)
    """
    run = _BACKWARDS.get(type(cache))
    if run is None:
        raise TypeError(f"Argument `cache` must be the LSTMCache from lstm_forward(..., "
                        f"training=True), received {type(cache).__name__}.")
    return run(cache, dy, dh_n, dc_n)


def _dense_gradients(cache, dy, dh_n, dc_n):
    """`(dy_seq, dy_last, dh, dc)` for a dense cache: the sequence gradient C-contiguous in
    the forward's layout, or the last output's, each checked once."""
    T, B, _ = cache.x.shape
    H = cache.kernel.shape[1] // 4
    P = cache.recurrent_kernel.shape[0]
    dtype = cache.kernel.dtype
    dy_seq = dy_last = None
    if dy is not None:
        if cache.return_sequences:
            expected = (T, B, P) if cache.time_major else (B, T, P)
            dy_seq = contiguous(check_array(dy, "dy", shape=expected, dtype=dtype))
            check_finite(dy_seq, "dy")
        else:
            dy_last = check_array(dy, "dy", shape=(B, P), dtype=dtype)
            check_finite(dy_last, "dy")
    dh = check_state(dh_n, "dh_n", (B, P), dtype)
    dc = check_state(dc_n, "dc_n", (B, H), dtype)
    return dy_seq, dy_last, dh, dc


def _reference_backward(cache, dy, dh_n, dc_n):
    """The reference route's backward (`pylstm._reference`), on one BLAS thread as its
    forward."""
    dy_seq, dy_last, dh, dc = _dense_gradients(cache, dy, dh_n, dc_n)
    dy_tm = None
    if dy_seq is not None:
        dy_tm = dy_seq if cache.time_major else dy_seq.transpose(1, 0, 2)
    T, B, D = cache.x.shape
    P = cache.recurrent_kernel.shape[0]
    plan = _plan.backward_plan(cache.kernel.dtype, D, cache.kernel.shape[1] // 4, P, B, T,
                               T * B, projection=False, input_dropout=False,
                               recurrent_dropout=False, reference=True)
    with BlasThreads() as threads:
        threads.loop(plan.loop_threads)
        grads = _reference.lstm_backward(cache.reference,
                                         dy_tm if dy_last is None else dy_last, dh, dc)
    if not cache.time_major:
        grads["x"] = np.ascontiguousarray(grads["x"].transpose(1, 0, 2))
    return grads


def _dense_backward(cache, dy, dh_n, dc_n):
    """The compiled backward of a dense training forward."""
    dy_seq, dy_last, dh, dc = _dense_gradients(cache, dy, dh_n, dc_n)
    T, B, _ = cache.x.shape
    P = cache.recurrent_kernel.shape[0]
    dy_carry = np.zeros((B, P), dtype=cache.kernel.dtype)
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
    grads["x"] = dx if cache.time_major else contiguous(dx.transpose(1, 0, 2))
    return grads


def _packed_backward(cache, dy, dh_n, dc_n):
    """The backward of `lstm_forward_packed`: gradients in the packed rows and order."""
    dtype = cache.kernel.dtype
    N = cache.x.shape[0]
    H = cache.kernel.shape[1] // 4
    P = cache.recurrent_kernel.shape[0]
    B = int(cache.batch_sizes[0])
    dy_rows = None
    if dy is not None:
        dy_rows = np.ascontiguousarray(check_array(dy, "dy", shape=(N, P), dtype=dtype))
        check_finite(dy_rows, "dy")
    dh = check_state(dh_n, "dh_n", (B, P), dtype)
    dc = check_state(dc_n, "dc_n", (B, H), dtype)
    return _core_backward(cache, dy_rows, dh, dc, np.zeros((B, P), dtype=dtype))


def _lengths_backward(cache, dy, dh_n, dc_n):
    """The backward of `lstm_forward(lengths=...)`: `dy` gathered into the packed rows (only
    real steps checked), the gradients scattered back to the padded layout and sample
    order."""
    dtype = cache.kernel.dtype
    D = cache.x.shape[1]
    H = cache.kernel.shape[1] // 4
    P = cache.recurrent_kernel.shape[0]
    B = int(cache.batch_sizes[0])
    T, order, time, sample = cache.padded_steps, cache.order, cache.time, cache.sample
    dh = check_state(dh_n, "dh_n", (B, P), dtype)[order]
    dc = check_state(dc_n, "dc_n", (B, H), dtype)[order]
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
    grads["x"] = dx if cache.time_major else contiguous(dx.transpose(1, 0, 2))
    for name in ("h0", "c0"):
        unsorted = np.empty_like(grads[name])
        unsorted[order] = grads[name]
        grads[name] = unsorted
    return grads


_BACKWARDS = {ReferenceCache: _reference_backward, DenseCache: _dense_backward,
              PackedCache: _packed_backward, LengthsCache: _lengths_backward}


def _core_backward(cache, dy_rows, dh, dc, dy_carry, lddy=0, dy_step=0):
    """The compiled backward of a compiled training forward, as `pylstm._plan.backward_plan`
    says; `dy_rows` `(N, P)` or None, packed rows, or with `lddy` > 0 dense rows (t, b) at
    `t * dy_step + b * lddy`.

    Returns the gradients dict with `"x"` in the forward's row layout (`(T, B, D)` or
    `(N, D)`) and `"h0"`, `"c0"` `(B, .)`.
    """
    kernel, recurrent_kernel, projection = cache.kernel, cache.recurrent_kernel, cache.projection
    dtype = kernel.dtype
    D, G = kernel.shape
    H = G // 4
    P = recurrent_kernel.shape[0]
    B = dh.shape[0]
    N = cache.gates.size // G
    rdrop = cache.recurrent_dropout_mask
    row_sample = cache.row_sample
    din = cache.dropout_mask
    if din is not None and row_sample is not None:
        din = din[:, row_sample]
    plan = _plan.backward_plan(
        dtype, D, H, P, B, cache.batch_sizes.size, N, projection=projection is not None,
        input_dropout=din is not None, recurrent_dropout=rdrop is not None, reference=False,
        input="dense" if cache.packing is None else cache.packing,
        available=_threads.team_available)
    dz = empty((N, G), dtype)
    # dh and dc are written by every member of a thread team: cache-line aligned copies.
    dh_in, dc_in = dh, dc
    dh, dc = empty(dh.shape, dtype), empty(dc.shape, dtype)
    dh[...] = dh_in
    dc[...] = dc_in
    dhs = empty((N, P), dtype) if projection is not None else None
    dm = np.empty((B, H), dtype=dtype) if projection is not None else None
    g = empty((B, P), dtype)
    a = empty((H,), dtype)
    hm = np.empty((B, P), dtype=dtype) if rdrop is not None else None
    zs = None if cache.zs is None else cache.zs.reshape(N, G)
    rdrop_rows = rdrop
    if rdrop is not None and row_sample is not None:
        rdrop_rows = rdrop[:, row_sample]
    grads = {"projection": None}
    if projection is not None:
        grads["projection"] = np.empty((H, P), dtype=dtype)
    # The time loop on the packed transposed kernel (or BLAS); get_num_threads() BLAS
    # threads for the gradient GEMMs (_threads).
    arrays = _core.BackwardArrays(dz, dh, dc, dy_carry, g, a, cache.gates.reshape(N, G),
                                  cache.cs, zs=zs, dy=dy_rows, dhs=dhs, dm=dm, hm=hm,
                                  lddy=lddy, dy_step=dy_step)
    steps = _core.Steps(cache.batch_sizes, cache.acts, mask=cache.mask, reverse=cache.reverse,
                        training=True, zero_output=cache.zero_output)
    with BlasThreads() as threads:
        weights = _core.RecurrentWeights(
            recurrent_kernel, projection=projection, recurrent_dropout_mask=rdrop,
            packed=_routes.recurrent(plan, threads, G, P, transposed=True))
        # In the team, each member adds its units' columns of the weight gradients while dz
        # is in cache; else GEMMs after the loop.
        in_team = plan.weight_grads == "team"
        sums = None
        if in_team:
            dw, du = empty((D, G), dtype), empty((P, G), dtype)
            db = empty((G,), dtype) if cache.has_bias else None
            sums = _core.TeamGradients(dw, du, cache.x.reshape(N, -1),
                                       cache.h_prev.reshape(N, P), db=db)
        _core.backward(arrays, weights, steps, plan.team, plan.team_if_awake, sums)
        threads.bulk()
        if in_team:
            dx = empty(cache.x.shape, dtype)
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


def _masked_gemm_grads(a, masks, w, dz2, want_input_grad):
    """Gradients of `z = (a * masks) @ w` over all rows, given `dz2` `(N, G)`.

    `a` is `(T, B, n)` or `(N, n)`; `masks` None or `(R, B, n)` / `(R, N, n)` (broadcasting
    against `a`): one mask for all gates (R = 1), or gate k's columns of `w (n, G)` seeing
    `a * masks[k]` (R = 4). Returns `(dw (n, G), da (a's shape) or None)`.
    """
    n = a.shape[-1]
    N = dz2.shape[0]
    G = w.shape[1]
    dw = empty((n, G), w.dtype)
    da = empty(a.shape, w.dtype) if want_input_grad else None
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
    for k, cols in enumerate(gate_columns(G // 4)):
        dw[:, cols] = matmul((a * masks[k]).reshape(N, n).T, dz2[:, cols])
        if want_input_grad:
            da += matmul(dz2[:, cols], w[:, cols].T).reshape(a.shape) * masks[k]
    return dw, da
