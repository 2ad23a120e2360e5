"""Dask interop (`pylstm.dask`): batch inference over a `dask.array` and synchronous
data-parallel training on a `dask.distributed` cluster.

Needs the optional `dask[array,distributed]` packages (`pip install pylstm[dask]`).

Design:
    A model travels to the workers once, as one cloudpickled payload (its architecture,
    weights and compile settings): a key of the task graph in `predict`, a broadcast future in
    `fit`. Each worker process unpickles a payload once per thread that uses it and keeps the
    model in a small cache (`_ModelCache`), so a thousand blocks cost one transfer and one
    unpickling per worker. Every task pins BLAS and pylstm to `num_threads` threads (one by
    default: Dask runs a task per worker thread, and more threads per task would
    oversubscribe the cores) and restores the process's settings when the last task running
    in the process ends.

    `fit` runs the model's own `fit` (its batches, callbacks, validation, History) with the
    training step's gradients computed on the workers, through the trainer's gradient seam
    (`Trainer._gradient_fn`): each global batch of `B` samples is cut into `num_shards`
    contiguous shards, each worker computes its shard's gradients as
    `compute_gradients(..., global_batch_size=B)` does, the driver gathers them with
    `client.gather` and sums them in shard order, and the driver's optimizer makes the step.
    The gradients are gathered rather than tree-reduced through the scheduler: the step
    happens on the driver, which needs the sum anyway; a gather moves each shard's gradients
    once (a tree would move them to a worker first, then the sum to the driver, and add a
    round of scheduling per level); and the fixed shard order makes the sum, hence the weights,
    the same whichever worker computed which shard, or whether a shard was computed twice.
"""

import collections
import contextlib
import threading

import numpy as np

try:
    import cloudpickle
    import dask
    import dask.array as da
    import distributed
except ImportError as error:  # pragma: no cover - exercised without the extra
    raise ImportError(f"pylstm.dask needs dask[array,distributed] ({error}); install it "
                      f"with `pip install pylstm[dask]`.") from error

from pylstm._threads import get_num_threads, set_num_threads

__all__ = ["fit", "predict"]


# Worker side ------------------------------------------------------------------------------

class _ModelCache:
    """The models unpickled in this process, by `(payload key, thread)`: a model is not shared
    between threads, since a forward pass keeps its caches in the layers. Least recently used
    models are dropped beyond `size`. `loads` counts the unpickled payloads."""

    def __init__(self, size=8):
        self.size = size
        self.loads = 0
        self._models = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, payload):
        slot = (key, threading.get_ident())
        with self._lock:
            model = self._models.get(slot)
            if model is not None:
                self._models.move_to_end(slot)
                return model
        model = cloudpickle.loads(payload)
        with self._lock:
            self._models[slot] = model
            self.loads += 1
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return model


_models = _ModelCache()

# Tasks running inside `_limited_threads` in this process, and the settings the first found.
_pin_lock = threading.Lock()
_pinned = 0
_saved = None
_controller = None


@contextlib.contextmanager
def _limited_threads(num_threads):
    """BLAS libraries (through threadpoolctl) and pylstm at `num_threads` threads while any task
    of this process is inside; the first one in saves the process's settings and the last one
    out restores them (None: leave the settings alone)."""
    global _pinned, _saved, _controller
    if num_threads is None:
        yield
        return
    with _pin_lock:
        if not _pinned:
            if _controller is None:
                from threadpoolctl import ThreadpoolController

                _controller = ThreadpoolController()
            _saved = (get_num_threads(), _controller.limit(limits=num_threads))
            set_num_threads(num_threads)
        _pinned += 1
    try:
        yield
    finally:
        with _pin_lock:
            _pinned -= 1
            if not _pinned:
                pylstm_threads, limiter = _saved
                if get_num_threads() != pylstm_threads:
                    set_num_threads(pylstm_threads)
                limiter.restore_original_limits()
                _saved = None


def _predict_block(*blocks, payload, key, batch_size, num_threads, widths, out_dtype):
    """One block's outputs, each flattened per sample, side by side: `(b, sum(widths))`."""
    model = _models.get(key, payload)
    with _limited_threads(num_threads):
        outputs = model.predict(list(blocks), batch_size=batch_size, verbose=0)
    if len(widths) == 1:
        return outputs.reshape(len(outputs), widths[0])
    packed = np.empty((len(blocks[0]), sum(widths)), out_dtype)
    start = 0
    for output, width in zip(outputs, widths):
        packed[:, start:start + width] = output.reshape(len(output), width)
        start += width
    return packed


def _unpack_block(block, start, shape):
    """One output's `(b, *shape)` block out of `_predict_block`'s packed block."""
    width = int(np.prod(shape, dtype=np.int64))
    return block[:, start:start + width].reshape((len(block),) + shape)


def _shard_gradients(payload, key, weights, xs, ys, sample_weights, class_weight,
                     global_batch_size, with_outputs, num_threads):
    """One shard's `(gradients, logs, predictions, masks)` at `weights`, as the trainer's
    gradient seam returns them (predictions and masks None unless `with_outputs`)."""
    model = _models.get(key, payload)
    with _limited_threads(num_threads):
        model.set_weights(weights)
        gradients, logs, preds, masks = model._compute_gradients_flat(
            model._targets(), xs, ys, sample_weights, class_weight, global_batch_size)
    if gradients is not None:
        gradients = [g.copy() for g in gradients]   # the next task reuses the model's buffers
    return gradients, logs, (preds if with_outputs else None), (masks if with_outputs else None)


# Driver side ------------------------------------------------------------------------------

def _payload(model):
    """`(bytes, key)`: the model cloudpickled (without a gradient seam set by `fit`) and its
    token."""
    seam = model.__dict__.pop("_gradient_fn", None)
    try:
        payload = cloudpickle.dumps(model)
    finally:
        if seam is not None:
            model._gradient_fn = seam
    return payload, f"pylstm-model-{dask.base.tokenize(payload)}"


def _flat_inputs(model, x):
    """`x` (one dask array, a list in input order or a dict by input name) as a list of dask
    arrays in input order, each chunked along axis 0 only."""
    names = list(model.input_names)
    if isinstance(x, dict):
        missing = sorted(set(names) - set(x))
        if missing:
            raise ValueError(f"Argument `x` is missing the inputs {missing}; the model's "
                             f"inputs are {names}.")
        arrays = [x[name] for name in names]
    elif isinstance(x, (list, tuple)):
        arrays = list(x)
    else:
        arrays = [x]
    if len(arrays) != len(names):
        raise ValueError(f"Argument `x` must hold {len(names)} arrays, one per model input "
                         f"{names}, received {len(arrays)}.")
    for array in arrays:
        if not isinstance(array, da.Array):
            raise TypeError(f"Argument `x` must be a dask.array.Array (or a list or dict of "
                            f"them, one per input), received {type(array).__name__}; "
                            f"`model.predict` takes NumPy arrays.")
        if array.ndim < 2 or any(np.isnan(s) for s in array.shape[1:]):
            raise ValueError(f"Argument `x` must have a sample axis and known sizes on the "
                             f"other axes, received shape {array.shape}.")
    # Every sample whole in one block: a block of samples is one `model.predict` call.
    arrays = [a.rechunk({axis: -1 for axis in range(1, a.ndim)}) for a in arrays]
    counts = {a.shape[0] for a in arrays}
    if len(counts) > 1:
        raise ValueError(f"Argument `x` must hold the same number of samples in every input, "
                         f"received {[a.shape[0] for a in arrays]}.")
    blocks = arrays[0].chunks[0]
    return [a if a.chunks[0] == blocks else a.rechunk({0: blocks}) for a in arrays]


def predict(model, x, batch_size=None, num_threads=1):
    """Returns the outputs of `model` on a `dask.array`, as a lazy `dask.array` computed block
    by block by `model.predict` in the workers (dask-ml's `ParallelPostFit.predict`, for a
    pylstm model).

    Each block of samples runs `model.predict(block, batch_size=batch_size)`, so each output
    block is bitwise what `model.predict` returns for that block. The model travels once:
    its cloudpickled bytes are one key of the graph, which Dask sends to each worker that
    needs it, and each worker process unpickles it once per thread and keeps it for the
    following blocks. Nothing runs until the result is computed (with `.compute()`,
    `dask.compute`, `.to_zarr(...)`, ...), on the scheduler in use then (a
    `distributed.Client`, or Dask's local threads).

    Args:
        x: a `dask.array.Array` `(N, T, D)` (or `(N, T)` token ids for an `Embedding` model,
            or any shape the model's input takes), cast to the input's dtype as
            `model.predict` casts it; for a model of several inputs, a list of them in input
            order or a dict by input name, with the same `N`. Chunked along axis 0: chunks
            that split a sample's other axes are merged (rechunked) so that every block holds
            whole samples; the inputs of a model of several inputs are rechunked to the first
            input's blocks.
        batch_size: int or None (32): the batch size of `model.predict` inside each block.
        num_threads: int or None: the BLAS and pylstm threads each task uses (default 1: Dask
            runs one task per worker thread, and more would oversubscribe the cores; None
            leaves the workers' settings alone). The process's settings are restored after
            the tasks.

    Returns:
        A `dask.array.Array` `(N, ...)` in the model's dtype with `x`'s chunks along axis 0
        (`(N, units)`, or `(N, T, units)` for sequence outputs); for a model of several
        outputs, a list of them in output order, as `model.predict` returns a list (computed
        together, they share one `model.predict` call per block).

    Raises:
        TypeError: `x` is not a dask array (or a list or dict of them).
        ValueError: `x` has no sample axis or an unknown size on another axis, or not one
            array per model input with the same number of samples.

    Example:

    ```python
    import dask.array as da
    x = da.random.random((100_000, 48, 1), chunks=(10_000, 48, 1)).astype("float32")
    y = pylstm.dask.predict(model, x)      # lazy, (100_000, 1)
    y.to_zarr("forecasts.zarr")            # computed block by block on the cluster
    ```
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(
            batch_size, int) or batch_size < 1):
        raise ValueError(f"Argument `batch_size` must be a positive int or None, received "
                         f"{batch_size!r}.")
    arrays = _flat_inputs(model, x)
    model._ensure_built_flat([(1,) + a.shape[1:] for a in arrays])
    shapes = model.compute_output_shape([(None,) + a.shape[1:] for a in arrays]
                                        if len(arrays) > 1 else (None,) + arrays[0].shape[1:])
    n_out = len(model.output_names)
    if n_out == 1:
        shapes = [shapes]
    elif isinstance(shapes, dict):
        shapes = [shapes[name] for name in model.output_names]
    shapes = [tuple(s)[1:] for s in shapes]
    widths = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    dtypes = model._output_dtypes
    dtype = np.result_type(*dtypes)
    payload, key = _payload(model)
    # The payload as one key of the graph: every block depends on it, so Dask sends it to a
    # worker once, whatever the number of blocks the worker computes.
    payload_key = dask.delayed(payload, pure=True, name=key)
    letters = iter("abcdefghijklmopqrtuvwxyz")   # not "n" (samples) nor "s" (outputs)
    arguments = []
    for array in arrays:
        arguments += [array, "n" + "".join(next(letters) for _ in range(array.ndim - 1))]
    packed = da.blockwise(
        _predict_block, "ns", *arguments, payload=payload_key, key=key, batch_size=batch_size,
        num_threads=num_threads, widths=widths, out_dtype=dtype, new_axes={"s": sum(widths)},
        concatenate=True, meta=np.empty((0, 0), dtype), token="pylstm-predict")
    outputs, start = [], 0
    for shape, width, out_dtype in zip(shapes, widths, dtypes):
        part = packed
        if len(shape) != 1 or n_out > 1:
            part = packed.map_blocks(
                _unpack_block, start, shape, chunks=(packed.chunks[0],) + tuple(
                    (size,) for size in shape), dtype=dtype, meta=np.empty(
                    (0,) * (1 + len(shape)), dtype), new_axis=list(range(2, len(shape) + 1)),
                token="pylstm-output")
        outputs.append(part.astype(out_dtype, copy=False))
        start += width
    return outputs[0] if n_out == 1 else outputs
