"""`explain`: the plan `lstm_forward` / `lstm_forward_packed` (and `lstm_backward`) would run
for given sizes and options, without running anything."""

import numpy as np

from pylstm import _plan, _threads
from pylstm.ops._arguments import check_batch_sizes, check_lengths, resolve_activations


def explain(x_shape, units, *, dtype="float32", projection_size=None, time_major=False,
            training=False, mask=False, lengths=None, dropout=False, recurrent_dropout=False,
            activation="tanh", recurrent_activation="sigmoid", gate_activations=None,
            batch_sizes=None):
    """Says which code path an LSTM call of these sizes and options takes.

    `pylstm.ops` chooses a route for every call (`pylstm._plan`): the NumPy reference for
    Python-callable activations; one compiled call for a few rows; in float32 without
    projection or dropout, the fused routes, whose core computes the input product too on
    kernels packed once per call; otherwise an input GEMM (per chunk of steps at inference),
    then the time loop, whose recurrent product is the core's own on a packed kernel or one
    BLAS product per step. The plan also names the thread team, the chunks and, for
    training, the backward's route. It depends on the thread count at the call
    (`set_num_threads`, else the BLAS library's setting), read now.

    Args:
        x_shape: the shape of `lstm_forward`'s `x`: `(B, T, D)`, or `(T, B, D)` with
            `time_major`; with `batch_sizes`, the `(N, D)` shape of `lstm_forward_packed`'s
            `data`.
        units: H, the number of units.
        dtype: "float32" or "float64" (the weights' dtype).
        projection_size: P with a projection, or None.
        time_major: as in `lstm_forward`.
        training: a training call (its plan then holds the backward's, as `backward`).
        mask: whether a mask is given.
        lengths: None, or the `(B,)` lengths of `lstm_forward(lengths=...)`.
        dropout, recurrent_dropout: whether an input or a recurrent dropout mask is given.
        activation, recurrent_activation, gate_activations: as in `lstm_forward`.
        batch_sizes: None, or the `(T,)` batch sizes of `lstm_forward_packed`.

    Returns:
        A `Plan` (a named tuple: `route`, `dtype`, `input`, `batch`, `steps`, `rows`,
        `recurrent`, `team`, `loop_threads`, `chunk_rows`, `weight_grads`, `backward`) whose
        `str()` says it in words, e.g. "route: fused inference (float32, packed kernels,
        2-thread team): ...".

    Raises:
        TypeError: `lengths` or `batch_sizes` not integers.
        ValueError: a shape, size or dtype that the call itself would refuse, an unknown
            activation, or `lengths` / `batch_sizes` with a Python-callable activation.

    Example:
    >>> from pylstm import ops
    >>> ops.explain((8, 100, 32), 64).route
    'fused inference'
    >>> ops.explain((1, 1, 32), 64).route
    'small call'
    """
    dt = np.dtype(dtype) if isinstance(dtype, (str, type, np.dtype)) else None
    if dt is None or dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"Argument `dtype` must be 'float32' or 'float64', received "
                         f"{dtype!r}.")
    H = _positive(units, "units")
    P = H if projection_size is None else _positive(projection_size, "projection_size")
    shape = tuple(x_shape) if isinstance(x_shape, (tuple, list)) else ()
    expected = "(N, D)" if batch_sizes is not None else "(B, T, D)"
    if len(shape) != len(expected.split(",")) or not all(
            isinstance(n, (int, np.integer)) and n >= 1 for n in shape):
        raise ValueError(f"Argument `x_shape` must be {expected}, positive integers, received "
                         f"{x_shape!r}.")
    acts, _ = resolve_activations(activation, recurrent_activation, gate_activations)
    D = int(shape[-1])
    options = dict(projection=projection_size is not None, input_dropout=bool(dropout),
                   recurrent_dropout=bool(recurrent_dropout))
    if batch_sizes is not None or lengths is not None:
        if acts is None:
            raise ValueError("Arguments `lengths` and `batch_sizes` run on the compiled core: "
                             "the activations must be names, received a Python callable.")
        if batch_sizes is not None:
            sizes = check_batch_sizes(batch_sizes)
            if int(sizes.sum()) != shape[0]:
                raise ValueError(f"Argument `x_shape` must have sum(batch_sizes) = "
                                 f"{int(sizes.sum())} rows, received {x_shape!r}.")
            kind = "packed"
        else:
            T, B = (shape[0], shape[1]) if time_major else (shape[1], shape[0])
            sorted_lengths = np.sort(check_lengths(lengths, B, T))[::-1]
            sizes = np.searchsorted(-sorted_lengths, -np.arange(int(sorted_lengths[0])),
                                    side="left")
            kind = "lengths"
        B, T, N = int(sizes[0]), int(sizes.size), int(sizes.sum())
        in_core, rows_in_place, has_mask = True, False, False
    else:
        T, B = (shape[0], shape[1]) if time_major else (shape[1], shape[0])
        T, B, N, kind = int(T), int(B), int(T * B), "dense"
        in_core, rows_in_place, has_mask = acts is not None, time_major or B == 1, bool(mask)
    plan = _plan.forward_plan(dt, D, H, P, B, T, N, mask=has_mask, training=bool(training),
                              in_core=in_core, input=kind, rows_in_place=rows_in_place,
                              available=_threads.available, **options)
    if training:
        backward = _plan.backward_plan(dt, D, H, P, B, T, N, reference=not in_core, input=kind,
                                       available=_threads.available, **options)
        plan = plan._replace(backward=backward)
    return plan


def _positive(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Argument `{name}` must be an integer >= 1, received {value!r}.")
    return int(value)
