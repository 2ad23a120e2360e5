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
    `client.gather` and sums them in shard order (an `Embedding`'s rows concatenated, as `fit`
    keeps them), and the driver's optimizer makes the step. The gradients are gathered rather than tree-reduced through the scheduler: the step
    happens on the driver, which needs the sum anyway; a gather moves each shard's gradients
    once (a tree would move them to a worker first, then the sum to the driver, and add a
    round of scheduling per level); and the fixed shard order makes the sum, hence the weights,
    the same whichever worker computed which shard, or whether a shard was computed twice.
"""

import collections
import concurrent.futures
import contextlib
import functools
import threading
import uuid

import numpy as np

try:
    import cloudpickle
    import dask
    import dask.array as da
    import distributed
except ImportError as error:  # pragma: no cover - exercised without the extra
    raise ImportError(f"pylstm.dask needs dask[array,distributed] ({error}); install it "
                      f"with `pip install pylstm[dask]`.") from error

from pylstm import _threads
from pylstm._threads import get_num_threads, set_num_threads
from pylstm.variable import add_gradients

__all__ = ["fit", "predict"]


# Worker side ------------------------------------------------------------------------------

class _ModelCache:
    """The models unpickled in this process, by `(payload key, thread)`: a model is not shared
    between threads, since a training step keeps its caches for `backward` in the layers
    (inference alone is thread-safe). Least recently used models are dropped beyond `size`.
    `loads` counts the unpickled payloads."""

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


@contextlib.contextmanager
def _limited_threads(num_threads):
    """The BLAS libraries and pylstm at `num_threads` threads while any task of this process
    is inside; the first one in saves the process's settings and the last one out restores
    them (None: leave the settings alone).

    The BLAS counts are set through pylstm's own setters (`pylstm._threads`), which act from
    any thread: threadpoolctl lets only the first thread that sets an OpenBLAS count change
    it, and a Dask task runs in whichever thread of the worker's pool is free. pylstm's count
    is left alone when it is None: pylstm then follows the BLAS libraries' count."""
    global _pinned, _saved
    if num_threads is None:
        yield
        return
    with _pin_lock:
        if not _pinned:
            libs = _threads._discover()
            _saved = (get_num_threads(), [(lib, lib.get()) for lib in libs])
            for lib in libs:
                lib.set(num_threads)
            if _saved[0] is not None:
                set_num_threads(num_threads)
        _pinned += 1
    try:
        yield
    finally:
        with _pin_lock:
            _pinned -= 1
            if not _pinned:
                pylstm_threads, counts = _saved
                for lib, count in counts:
                    lib.set(count)
                if pylstm_threads is not None:
                    set_num_threads(pylstm_threads)
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
    gradient seam takes them (predictions and masks None unless `with_outputs`)."""
    model = _models.get(key, payload)
    with _limited_threads(num_threads):
        model.set_weights(weights)
        gradients, logs, preds, masks = model._shard_gradients(
            xs, ys, sample_weights, class_weight, global_batch_size)
    return gradients, logs, (preds if with_outputs else None), (masks if with_outputs else None)


# Driver side ------------------------------------------------------------------------------

def _payload(model):
    """`(bytes, key)`: the model cloudpickled (a gradient seam set by `fit` stays behind, as
    the layers' pickling leaves it) and its token."""
    payload = cloudpickle.dumps(model)
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

    >>> import dask.array as da
    >>> import pylstm
    >>> from pylstm.layers import LSTM, Dense, Input
    >>> model = pylstm.Sequential([Input((48, 1)), LSTM(8, seed=0), Dense(1)])
    >>> x = da.zeros((1_000, 48, 1), chunks=(250, 48, 1), dtype="float32")
    >>> y = pylstm.dask.predict(model, x)   # lazy: nothing runs yet
    >>> y.shape, y.numblocks
    ((1000, 1), (4, 1))
    >>> y.compute().shape                   # on the scheduler in use (here Dask's threads)
    (1000, 1)
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


class _DataParallel:
    """`fit`'s gradient seam (`Trainer._gradient_fn`): each batch's gradients computed on the
    workers of `client`, shard by shard, and summed on the driver in shard order."""

    def __init__(self, model, client, num_shards, num_threads, retries):
        self.model = model
        self.client = client
        self.num_shards = num_shards
        self.num_threads = num_threads
        self.retries = retries
        self.payload = None    # the model's future on every worker, sent at the first step

    def _send_model(self):
        payload, key = _payload(self.model)
        # The workers set each step's weights on their copy: a key of its own, so that no
        # `predict` of the same model finds the copy in the workers' cache.
        self.key = f"{key}-fit-{uuid.uuid4().hex}"
        self.payload = self.client.scatter([payload], broadcast=True, hash=False)[0]

    def __call__(self, targets, xs, ys, sample_weights, class_weight):
        size = len(xs[0])
        cuts = np.linspace(0, size, min(self.num_shards, size) + 1).round().astype(int)
        shards = [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:])]
        with_outputs = any(target.metrics for target in targets)
        for attempt in range(self.retries + 1):
            try:
                results = self._step(shards, xs, ys, sample_weights, class_weight, size,
                                     with_outputs)
                break
            except concurrent.futures.CancelledError:
                # Every replica of the step's inputs (the model, the weights) was lost with
                # its workers: send the step again, from the same weights.
                if attempt == self.retries:
                    raise
                self.payload = None
        gradients = None
        if all(result[0] is not None for result in results):
            gradients = [functools.reduce(add_gradients, parts)
                         for parts in zip(*(result[0] for result in results))]
        logs = dict(results[0][1])
        for result in results[1:]:
            for name, value in result[1].items():
                logs[name] += value
        if with_outputs:
            preds = [np.concatenate(parts) for parts in zip(*(r[2] for r in results))]
            masks = [None if parts[0] is None else np.concatenate(parts)
                     for parts in zip(*(r[3] for r in results))]
        else:   # no metric reads them: only the count of samples
            preds = [np.empty((size, 0))] * len(ys)
            masks = [None] * len(ys)
        return gradients, logs, preds, masks

    def _step(self, shards, xs, ys, sample_weights, class_weight, size, with_outputs):
        if self.payload is None:
            self._send_model()
        client = self.client
        # The weights go to every worker once per step, whichever shards they compute.
        weights = client.scatter([self.model.get_weights()], broadcast=True, hash=False)[0]
        futures = [client.submit(
            _shard_gradients, self.payload, self.key, weights, [x[rows] for x in xs],
            [y[rows] for y in ys], [None if w is None else w[rows] for w in sample_weights],
            class_weight, size, with_outputs, self.num_threads, pure=False)
            for rows in shards]
        return client.gather(futures)


def _computed(value):
    """`value` with its dask collections computed into NumPy arrays (in lists, tuples and
    dicts, as `fit`'s arguments nest them)."""
    return dask.compute(value)[0] if _has_collection(value) else value


def _has_collection(value):
    if dask.is_dask_collection(value):
        return True
    if isinstance(value, dict):
        return any(_has_collection(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_collection(v) for v in value)
    return False


def fit(model, x=None, y=None, *, client=None, num_shards=None, num_threads=1, retries=2,
        **kwargs):
    """Trains `model` as `model.fit(x, y, **kwargs)` does, with each batch's gradients
    computed by synchronous data parallelism on the workers of a Dask cluster (TensorFlow's
    `MultiWorkerMirroredStrategy` or PyTorch's `DistributedDataParallel`, on Dask).

    This is `model.fit` itself, its batches, shuffling, callbacks, validation, History and
    progress bar included: only the gradients of each training batch come from the workers.
    Each global batch of `B` samples is cut into `num_shards` contiguous shards; each shard
    goes to a worker, which sets the step's weights (sent once per step to every worker) on
    its copy of the model (sent once per `fit`) and computes the shard's gradients and losses
    as `model.compute_gradients(..., global_batch_size=B)` does; the driver gathers them,
    sums them in shard order, and its optimizer makes the step. The weights are then those of
    `model.fit` on the same batches, within float32 rounding (the shards' sums group the
    samples differently). Validation, evaluation and the callbacks run on the driver.

    A worker that dies during a step is replaced by its nanny and the scheduler runs its
    shards again elsewhere from the step's weights (Dask's `distributed.scheduler.
    allowed-failures`); where the step's inputs were lost with every worker that held them,
    the step is sent again, up to `retries` times. Each shard is counted once, so the
    weights are those of an uninterrupted run.

    Not for stateful layers (each worker's copy keeps its own states); training-mode
    dropout draws its masks on the workers, so a model with dropout trains as well but not
    to the same bits as in one process.

    Args:
        model: a compiled `Sequential` or functional `Model`; it is trained in place on the
            driver.
        x, y: as in `model.fit`: NumPy arrays, or `dask.array`s (and in `sample_weight` and
            `validation_data` too), computed into the driver's memory at the start; or a
            source of batches (a `pylstm.utils.PyDataset` whose `__getitem__` computes a
            batch, for data larger than the driver's memory).
        client: the `distributed.Client` of the cluster (default: the current client,
            `distributed.get_client()`).
        num_shards: int or None: the shards of each batch (default: the cluster's worker
            threads at the start of `fit`). It is fixed for the whole `fit`, so that a worker
            lost or added does not change the sums.
        num_threads: int or None: BLAS and pylstm threads per shard, as in `predict`.
        retries: int: how many times a step whose inputs were lost is sent again.
        **kwargs: `model.fit`'s other arguments (`batch_size`, `epochs`, `callbacks`,
            `validation_data`, `shuffle`, ...).

    Returns:
        The `History` of `model.fit`.

    Raises:
        RuntimeError: `model` is not compiled.
        ValueError: no client is given and none is current; `num_shards` or `retries` not a
            positive (non-negative) int; and what `model.fit` raises.
        TypeError: `client` is not a `distributed.Client`.
        distributed.KilledWorker: a shard killed its workers more often than the scheduler's
            `allowed-failures` (a shard that crashes every worker is not tried again).
        distributed.client.FutureCancelledError: a step's inputs were lost more than
            `retries` times.

    Example:

    >>> import numpy as np
    >>> import pylstm
    >>> from distributed import Client, LocalCluster
    >>> from pylstm.layers import LSTM, Dense, Input
    >>> model = pylstm.Sequential([Input((10, 2)), LSTM(4, seed=0), Dense(1)])
    >>> model.compile("sgd", "mse")
    >>> x = np.random.default_rng(0).random((64, 10, 2), dtype="float32")
    >>> y = x[:, -1, :1]
    >>> with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
    ...                   dashboard_address=None) as cluster, Client(cluster) as client:
    ...     history = pylstm.dask.fit(model, x, y, client=client, batch_size=16, epochs=2,
    ...                               verbose=0)
    >>> len(history.history["loss"])
    2
    """
    model._check_compiled()
    if client is None:
        try:
            client = distributed.get_client()
        except ValueError as error:
            raise ValueError("Argument `client` must be a distributed.Client, or a client "
                             "must be current (`distributed.Client(...)`); found "
                             "none.") from error
    if not isinstance(client, distributed.Client):
        raise TypeError(f"Argument `client` must be a distributed.Client, received "
                        f"{type(client).__name__}.")
    if num_shards is None:
        num_shards = sum(client.nthreads().values())
        if not num_shards:
            raise ValueError("The cluster of `client` has no workers: start some, or pass "
                             "`num_shards`.")
    for value, name, least in ((num_shards, "num_shards", 1), (retries, "retries", 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"Argument `{name}` must be an int >= {least}, received "
                             f"{value!r}.")
    x, y = _computed(x), _computed(y)
    kwargs = {name: _computed(value) for name, value in kwargs.items()}
    seam = _DataParallel(model, client, num_shards, num_threads, retries)
    model._gradient_fn = seam
    try:
        return model.fit(x, y, **kwargs)
    finally:
        del model._gradient_fn
        if seam.payload is not None:
            client.cancel([seam.payload])
