"""Keras 3's `keras.utils` for pylstm: the process-wide random state, padding, one-hot
encoding, windows cut from a time series, and the `PyDataset` base class.

Unseeded initializers, unseeded `Dropout` layers and `fit`'s shuffling all draw from one
module-level `np.random.Generator`, so that `set_random_seed(seed)` makes a whole model
reproducible (the role of Keras 3's `keras.utils.set_random_seed`).

`pad_sequences`, `to_categorical` and `timeseries_dataset_from_array` take Keras 3.15's
arguments and give its NumPy results (`keras/src/utils/sequence_utils.py`,
`numerical_utils.py`, `timeseries_dataset_utils.py`); the last returns NumPy batches in
place of a `tf.data.Dataset`.
"""

import itertools
import math
import numbers

import numpy as np

_generator = np.random.default_rng()


def set_random_seed(seed):
    """Reseeds the generator that every unseeded random draw in pylstm uses.

    Args:
        seed: int >= 0.

    Raises:
        ValueError: if `seed` is not a non-negative int.

    Example:

    >>> import numpy as np
    >>> from pylstm.layers import LSTM
    >>> set_random_seed(0)
    >>> first = LSTM(4)(np.ones((1, 3, 2), dtype="float32"))
    >>> set_random_seed(0)
    >>> bool(np.array_equal(LSTM(4)(np.ones((1, 3, 2), dtype="float32")), first))
    True
    """
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"Argument `seed` must be a non-negative int, received {seed!r}.")
    _generator = np.random.default_rng(int(seed))


def default_generator():
    """Returns the module-level `np.random.Generator` (reseeded by `set_random_seed`): what
    unseeded initializers, `Dropout` layers and `fit`'s shuffling draw from.

    Returns:
        `np.random.Generator`, the same object until `set_random_seed` replaces it.

    Example:

    >>> set_random_seed(0)
    >>> round(float(default_generator().random()), 4)
    0.637
    """
    return _generator


def rng_from_seed(seed):
    """A fresh `np.random.Generator` for an int `seed`, or the module generator for None: how
    a seeded initializer or layer gets its own reproducible stream (Keras's `seed` arguments).

    Args:
        seed: int >= 0 or None.

    Returns:
        `np.random.Generator`: `np.random.default_rng(seed)`, or `default_generator()` for
        None.

    Raises:
        ValueError: a negative `seed` (from `np.random.default_rng`).

    Example:

    >>> round(float(rng_from_seed(0).random()), 4), rng_from_seed(None) is default_generator()
    (0.637, True)
    """
    return _generator if seed is None else np.random.default_rng(seed)


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _native(array):
    """`array` in the machine's byte order (copied only when it is not), so that batches cut
    from it are native whatever the caller's arrays."""
    return array.astype(array.dtype.newbyteorder("="), copy=False)


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre",
                  value=0.0):
    """Pads (and truncates) sequences to one length, as Keras's `keras.utils.pad_sequences`.

    Each sequence longer than `maxlen` loses its first (`truncating="pre"`) or last
    (`"post"`) items; each shorter one is filled with `value` before (`padding="pre"`) or
    after (`"post"`) its items. The items of a sequence may be arrays themselves (all of
    the first non-empty sequence's item shape), which the output keeps as trailing axes.

    Args:
        sequences: a list (any sized iterable) of N sequences (lists or arrays).
        maxlen: int > 0 or None: T, the output length; None takes the longest sequence's.
        dtype: the output's NumPy dtype (`"int32"` by default, as Keras; `object` for
            strings); each sequence is converted to it, so floats are truncated towards zero
            in an integer dtype.
        padding: `"pre"` or `"post"`.
        truncating: `"pre"` or `"post"`.
        value: the padding value, a number (or a str with `dtype=object` or a string dtype).

    Returns:
        An array of shape `(N, T) + item_shape` and dtype `dtype`.

    Raises:
        ValueError: if `sequences` has no length or holds something without one (Keras's
            messages), `maxlen` is not positive, `padding` or `truncating` is neither
            `"pre"` nor `"post"`, `value` is a str while `dtype` is not `object` or a string
            dtype, `sequences` is empty while `maxlen` is None, or an item's shape differs
            from the first non-empty sequence's.
        TypeError: if `maxlen` is neither an int nor None.

    Example:

    >>> pad_sequences([[1], [2, 3], [4, 5, 6]])
    array([[0, 0, 1],
           [0, 2, 3],
           [4, 5, 6]], dtype=int32)
    >>> pad_sequences([[1], [2, 3], [4, 5, 6]], maxlen=2, padding="post", truncating="post")
    array([[1, 0],
           [2, 3],
           [4, 5]], dtype=int32)
    """
    if not hasattr(sequences, "__len__"):
        raise ValueError("`sequences` must be iterable.")
    for name, where in (("padding", padding), ("truncating", truncating)):
        if where not in ("pre", "post"):
            raise ValueError(f'Argument `{name}` must be "pre" or "post", received {where!r}.')
    if maxlen is not None:
        if not _is_int(maxlen):
            raise TypeError(f"Argument `maxlen` must be an int or None, received {maxlen!r}.")
        if maxlen <= 0:
            raise ValueError(f"Argument `maxlen` must be > 0, received {maxlen}.")
    lengths, item_shape = [], None
    for s in sequences:
        try:
            lengths.append(len(s))
        except TypeError as e:
            raise ValueError(f"`sequences` must be a list of iterables. Found non-iterable: "
                             f"{s}") from e
        if item_shape is None and len(s):
            item_shape = np.asarray(s).shape[1:]
    if maxlen is None:
        if not lengths:
            raise ValueError("Argument `sequences` is empty: pass `maxlen` to pad no "
                             "sequences.")
        maxlen = max(lengths)
    is_str_dtype = np.issubdtype(dtype, np.str_) or np.issubdtype(dtype, np.bytes_)
    if isinstance(value, str) and dtype is not object and not is_str_dtype:
        raise ValueError(f"`dtype` {dtype} is not compatible with `value`'s type: "
                         f"{type(value)}\nYou should set `dtype=object` for variable length "
                         f"strings.")
    item_shape = () if item_shape is None else item_shape
    out = np.full((len(lengths), maxlen) + item_shape, value, dtype=dtype)
    for i, s in enumerate(sequences):
        if not len(s):
            continue
        kept = np.asarray(s[-maxlen:] if truncating == "pre" else s[:maxlen], dtype=dtype)
        if kept.shape[1:] != item_shape:
            raise ValueError(f"Shape of sample {kept.shape[1:]} of sequence at position {i} "
                             f"is different from expected shape {item_shape}")
        if padding == "pre":
            out[i, maxlen - len(kept):] = kept
        else:
            out[i, :len(kept)] = kept
    return out


def to_categorical(x, num_classes=None):
    """One-hot encodes class ids, as Keras's `keras.utils.to_categorical`.

    Args:
        x: array-like of integer class ids in `[0, num_classes)`, of any shape S (a trailing
            axis of size 1 is dropped when S has more than one axis, so `(N, 1)` labels give
            `(N, num_classes)`); floats are truncated towards zero, as Keras converts to
            `int64`.
        num_classes: int, C; None (or 0, as Keras) takes `max(x) + 1`.

    Returns:
        A `float64` array of shape `S + (C,)` with a 1 at each id's class and 0 elsewhere.

    Raises:
        ValueError: if `x` is not integer-like, an id is negative or not below
            `num_classes` (Keras raises an IndexError for an id too large and wraps a negative
            one around to the last classes), `num_classes` is negative, or `x` is empty and
            `num_classes` is None.
        TypeError: if `num_classes` is neither an int nor None.

    Example:

    >>> to_categorical([0, 2, 1], num_classes=3)
    array([[1., 0., 0.],
           [0., 0., 1.],
           [0., 1., 0.]])
    """
    if num_classes is not None and not _is_int(num_classes):
        raise TypeError(f"Argument `num_classes` must be an int or None, received "
                        f"{num_classes!r}.")
    if num_classes is not None and num_classes < 0:
        raise ValueError(f"Argument `num_classes` must be >= 0, received {num_classes}.")
    try:
        ids = np.array(x, dtype="int64")
    except (TypeError, ValueError) as e:
        raise ValueError(f"Argument `x` must hold integer class ids, received {x!r:.100} "
                         f"({e}).") from e
    shape = ids.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    ids = ids.reshape(-1)
    if not num_classes:
        if ids.size == 0:
            raise ValueError("Argument `x` is empty: pass `num_classes`.")
        num_classes = int(ids.max()) + 1
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        bad = ids[(ids < 0) | (ids >= num_classes)][0]
        raise ValueError(f"Argument `x` must hold class ids in [0, {num_classes}) "
                         f"(`num_classes`={num_classes}), received {bad}.")
    out = np.zeros((ids.size, num_classes))
    out[np.arange(ids.size), ids] = 1
    return out.reshape(shape + (num_classes,))


def timeseries_dataset_from_array(data, targets, sequence_length, sequence_stride=1,
                                  sampling_rate=1, batch_size=128, shuffle=False, seed=None,
                                  start_index=None, end_index=None):
    """Batches of sliding windows over a time series, as Keras's
    `keras.utils.timeseries_dataset_from_array`.

    Window `j` starts at `p_j = j * sequence_stride` (counted from `start_index`) and takes
    the `sequence_length` timesteps `p_j, p_j + sampling_rate, ...`; its target is
    `targets[start_index + p_j]`, the target of the window that starts there. Windows run
    while they fit before `end_index`, and there are at most `len(targets)` of them. Keras
    returns a `tf.data.Dataset`; this returns the same batches as NumPy arrays, in the same
    order when `shuffle` is False.

    Args:
        data: array-like of shape `(N, ...)`, axis 0 the time axis.
        targets: array-like of shape `(M, ...)`, or None to yield the windows alone.
        sequence_length: int > 0, L, timesteps per window.
        sequence_stride: int > 0 (and below N), timesteps between the starts of two
            windows.
        sampling_rate: int > 0 (and below N), timesteps between two steps of a window.
        batch_size: int > 0, B, windows per batch (the last batch may hold fewer); None
            yields one window at a time.
        shuffle: bool; True draws the windows in a new random order on each pass over the
            dataset (Keras shuffles too, within a buffer: its order differs).
        seed: int or None, seeds the shuffling (None: pylstm's generator, which
            `set_random_seed` seeds).
        start_index: int or None, the first timestep used (0 by default).
        end_index: int or None, the timestep before which windows end (N by default).

    Returns:
        A `pylstm.utils.TimeseriesDataset`: `len()` is its number of batches, indexing and
        iterating give `(x, y)` batches, `x` of shape `(B, L) + data.shape[1:]` and `y` of
        shape `(B,) + targets.shape[1:]` in the dtypes of `data` and `targets` (or `x` alone
        when `targets` is None; without the B axis when `batch_size` is None). `fit`,
        `evaluate` and `predict` take it as they take Keras's dataset.

    Raises:
        ValueError: for an index or stride out of range, with Keras's messages
            (`start_index` negative or not below N, `end_index` not above `start_index`,
            not positive or not below N, `sampling_rate` or `sequence_stride` not in
            `[1, N)`); a `sequence_length` or `batch_size` that is not positive; `targets`
            too short for the windows' starts (Keras fails on reading them).
        TypeError: if an int argument is not an int, or `shuffle` is not a bool.

    Example:

    >>> series = np.arange(10)
    >>> dataset = timeseries_dataset_from_array(series[:-3], series[3:], sequence_length=3,
    ...                                         batch_size=2)
    >>> len(dataset)
    3
    >>> x, y = dataset[0]
    >>> x, y
    (array([[0, 1, 2],
           [1, 2, 3]]), array([3, 4]))
    """
    data = _native(np.asarray(data))
    if data.ndim == 0:
        raise ValueError(f"Argument `data` must be an array with a time axis, received a "
                         f"scalar {data!r}.")
    for name, value in (("sequence_length", sequence_length),
                        ("sequence_stride", sequence_stride), ("sampling_rate", sampling_rate)):
        if not _is_int(value):
            raise TypeError(f"Argument `{name}` must be an int, received {value!r}.")
    for name, value in (("batch_size", batch_size), ("seed", seed),
                        ("start_index", start_index), ("end_index", end_index)):
        if value is not None and not _is_int(value):
            raise TypeError(f"Argument `{name}` must be an int or None, received {value!r}.")
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"Argument `shuffle` must be a bool, received {shuffle!r}.")
    n = len(data)
    # Keras checks `start_index` and `end_index` only when they are truthy (0 passes).
    if start_index:
        if start_index < 0:
            raise ValueError(f"`start_index` must be 0 or greater. Received: "
                             f"start_index={start_index}")
        if start_index >= n:
            raise ValueError(f"`start_index` must be lower than the length of the data. "
                             f"Received: start_index={start_index}, for data of length {n}")
    if end_index:
        if start_index and end_index <= start_index:
            raise ValueError(f"`end_index` must be higher than `start_index`. Received: "
                             f"start_index={start_index}, and end_index={end_index} ")
        if end_index >= n:
            raise ValueError(f"`end_index` must be lower than the length of the data. "
                             f"Received: end_index={end_index}, for data of length {n}")
        if end_index <= 0:
            raise ValueError(f"`end_index` must be higher than 0. Received: "
                             f"end_index={end_index}")
    for name, value in (("sampling_rate", sampling_rate), ("sequence_stride", sequence_stride)):
        if value <= 0:
            raise ValueError(f"`{name}` must be higher than 0. Received: {name}={value}")
        if value >= n:
            raise ValueError(f"`{name}` must be lower than the length of the data. Received: "
                             f"{name}={value}, for data of length {n}")
    if sequence_length <= 0:
        raise ValueError(f"Argument `sequence_length` must be > 0, received {sequence_length}.")
    if batch_size is not None and batch_size <= 0:
        raise ValueError(f"Argument `batch_size` must be > 0 or None, received {batch_size}.")
    start = start_index or 0
    end = n if end_index is None else end_index
    count = end - start - (sequence_length - 1) * sampling_rate
    if targets is not None:
        targets = _native(np.asarray(targets))
        if targets.ndim == 0:
            raise ValueError(f"Argument `targets` must be an array or None, received a scalar "
                             f"{targets!r}.")
        count = min(count, len(targets))
        targets = targets[start:end]
    starts = np.arange(0, max(count, 0), sequence_stride)
    if targets is not None and len(starts) and starts[-1] >= len(targets):
        raise ValueError(f"Argument `targets` holds {len(targets)} targets from `start_index` "
                         f"{start} on, too few for the window starting at {start + starts[-1]}.")
    return TimeseriesDataset(data[start:end], targets, starts,
                             np.arange(sequence_length) * sampling_rate, batch_size,
                             rng_from_seed(seed) if shuffle else None)


class TimeseriesDataset:
    """The windows of `timeseries_dataset_from_array`, batch by batch.

    Follows Keras's `PyDataset` protocol: `len(dataset)` batches, `dataset[i]` the batch `i`
    of the current order, `on_epoch_end()` draws a new order when shuffling; iterating calls
    `on_epoch_end()`, then gives every batch of one pass. It is not a `PyDataset` subclass,
    so that `fit(shuffle=True)` (the default) leaves its order alone, as Keras's `fit` leaves
    the order of the `tf.data.Dataset` Keras returns: `fit` draws it as an iterable.

    Args:
        data: array `(N', ...)`, the timesteps windows are cut from.
        targets: array `(M', ...)` or None; window `j`'s target is `targets[starts[j]]`.
        starts: int array `(W,)`, each window's first timestep in `data`.
        offsets: int array `(L,)`, a window's timesteps after its first.
        batch_size: int > 0, or None for single windows.
        rng: `np.random.Generator` that shuffles the windows, or None to keep their order.

    Batches are `x` `(batch_size, L + 1, ...)` in `data`'s dtype (the last one may be
    smaller), or `(x, y)` with `y` `(batch_size, ...)` from `targets`; without batching,
    single windows `(L + 1, ...)`.

    Raises:
        TypeError: an index that is not an int.
        IndexError: an index out of `range(-len(dataset), len(dataset))`.

    Example:

    >>> import numpy as np
    >>> dataset = timeseries_dataset_from_array(np.arange(10), None, sequence_length=4,
    ...                                         batch_size=3)
    >>> dataset
    <TimeseriesDataset: 7 windows of 4 timesteps, 3 batches>
    >>> [batch.shape for batch in dataset]
    [(3, 4), (3, 4), (1, 4)]
    """

    def __init__(self, data, targets, starts, offsets, batch_size, rng):
        self._data, self._targets, self._offsets = data, targets, offsets
        self._starts, self._order = starts, starts
        self._batch_size, self._rng = batch_size, rng
        self.on_epoch_end()

    def __len__(self):
        if self._batch_size is None:
            return len(self._starts)
        return math.ceil(len(self._starts) / self._batch_size)

    def __getitem__(self, index):
        if not _is_int(index):
            raise TypeError(f"A TimeseriesDataset is indexed by an int, received {index!r}.")
        if not -len(self) <= index < len(self):
            raise IndexError(f"Batch index {index} is out of range for {len(self)} batches.")
        index %= len(self)
        if self._batch_size is None:
            starts = self._order[index]
        else:
            starts = self._order[index * self._batch_size:(index + 1) * self._batch_size]
        x = self._data[np.add.outer(starts, self._offsets)]
        return x if self._targets is None else (x, self._targets[starts])

    def __iter__(self):
        # A new order for each pass, drawn at its start, as a shuffled tf.data.Dataset draws
        # one per iteration (so that a pass left unfinished does not repeat its order).
        self.on_epoch_end()
        for index in range(len(self)):
            yield self[index]

    def on_epoch_end(self):
        """Draws the windows' order for the next pass (a new permutation when shuffling)."""
        if self._rng is not None:
            self._order = self._rng.permutation(self._starts)

    def __repr__(self):
        return (f"<TimeseriesDataset: {len(self._starts)} windows of {len(self._offsets)} "
                f"timesteps, {len(self)} batches>")


class PyDataset:
    """Base class of a dataset of batches written in Python (Keras 3's
    `keras.utils.PyDataset`): `fit`, `evaluate` and `predict` take one as `x`.

    Subclass it and implement `__len__` (the number of batches) and `__getitem__(index)` (batch
    `index`, `0 <= index < len(self)`: `x`, `(x,)`, `(x, y)` or `(x, y, sample_weight)`, each
    structured as `fit`'s arguments, arrays of a batch's samples); optionally `on_epoch_begin`
    and `on_epoch_end` (called at each epoch's start and end, e.g. to reshuffle). `fit` with
    `shuffle=True` draws the batch indices in a new random order each epoch, as Keras does. A
    dataset whose `num_batches` is None is infinite (pass `steps_per_epoch`).

    Args:
        workers, use_multiprocessing, max_queue_size: Keras's settings of parallel loading,
            kept for compatibility; pylstm loads batches in the training thread.

    Example:

    >>> import numpy as np
    >>> class Batches(PyDataset):
    ...     def __init__(self, x, y, batch_size, **kwargs):
    ...         super().__init__(**kwargs)
    ...         self.x, self.y, self.batch_size = x, y, batch_size
    ...     def __len__(self):
    ...         return -(-len(self.x) // self.batch_size)
    ...     def __getitem__(self, index):
    ...         part = slice(index * self.batch_size, (index + 1) * self.batch_size)
    ...         return self.x[part], self.y[part]
    >>> data = Batches(np.zeros((10, 3)), np.zeros((10, 1)), batch_size=4)
    >>> data.num_batches, [len(x) for x, _ in data]
    (3, [4, 4, 2])
    """

    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        self.workers = workers
        self.use_multiprocessing = use_multiprocessing
        self.max_queue_size = max_queue_size

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement `__getitem__`.")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement `__len__`.")

    @property
    def num_batches(self):
        """The number of batches, `len(self)`; None for an infinite dataset."""
        return len(self)

    def __iter__(self):
        indices = itertools.count() if self.num_batches is None else range(self.num_batches)
        for index in indices:
            yield self[index]

    def on_epoch_begin(self):
        """Called at the start of every epoch."""

    def on_epoch_end(self):
        """Called at the end of every epoch."""
