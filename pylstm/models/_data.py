"""The batches `fit`, `evaluate` and `predict` draw, epoch by epoch (Keras 3's data adapters and
`EpochIterator`).

Design:
    A *source* gives passes over its batches: `ArrayBatches` slices validated arrays (shuffled
    each pass when asked), `IterableBatches` draws from a `pylstm.utils.PyDataset` (batch
    `i` is `dataset[i]`), a Python generator or iterator (one pass, continued across epochs),
    or any other iterable of batches (a new pass each time, as Keras iterates a
    `tf.data.Dataset`). `EpochIterator` cuts the passes into epochs as Keras does: without
    `steps_per_epoch` an epoch is one pass; with it, an epoch is that many batches, drawn on
    from where the last epoch stopped and starting a new pass when one ends. A batch is
    fetched after the batch's begin hook, as Keras fetches it inside its step, so a pass that
    runs out leaves a begin hook without its end.
"""

import itertools
import math
import warnings

import numpy as np

from pylstm import utils


class ArrayBatches:
    """Batches sliced from arrays of one sample count.

    Args:
        arrays: list of lists of arrays `(N, ...)` (inputs, targets, sample weights; an
            entry may be None); each batch holds the same lists, sliced.
        batch_size: int or None (32, or `ceil(N / steps)` when `steps` is given, as Keras).
        steps: int or None, the steps per epoch.
        shuffle: bool, a new sample order on each pass (from `pylstm.utils`'s generator).
    """

    def __init__(self, arrays, batch_size, steps, shuffle):
        self.arrays = arrays
        self.num_samples = len(next(a for group in arrays for a in group if a is not None))
        if batch_size is None:
            batch_size = math.ceil(self.num_samples / steps) if steps else 32
        self.batch_size = batch_size
        self.num_batches = math.ceil(self.num_samples / batch_size)
        self.shuffle = shuffle

    def iterate(self):
        n, size = self.num_samples, self.batch_size
        order = utils.default_generator().permutation(n) if self.shuffle else None
        for start in range(0, n, size):
            idx = slice(start, start + size) if order is None else order[start:start + size]
            yield [[None if a is None else a[idx] for a in group] for group in self.arrays]

    def on_epoch_begin(self):
        pass

    def on_epoch_end(self):
        pass


class IterableBatches:
    """Batches drawn from a `PyDataset`, a generator or iterator, or another iterable.

    Args:
        data: the source.
        shuffle: bool; a `PyDataset` of known length is drawn in a new random order of its
            batch indices on each pass (Keras's `PyDatasetAdapter`); ignored otherwise.
    """

    def __init__(self, data, shuffle):
        self.data = data
        self.shuffle = shuffle
        self.is_dataset = isinstance(data, utils.PyDataset)
        if self.is_dataset:
            self.num_batches = data.num_batches
        elif hasattr(data, "__len__"):
            self.num_batches = len(data)
        else:
            self.num_batches = None

    def iterate(self):
        if not self.is_dataset:
            return iter(self.data)
        if self.num_batches is None:
            indices = itertools.count()
        elif self.shuffle:
            indices = utils.default_generator().permutation(self.num_batches).tolist()
        else:
            indices = range(self.num_batches)
        return (self.data[i] for i in indices)

    def on_epoch_begin(self):
        if self.is_dataset:
            self.data.on_epoch_begin()

    def on_epoch_end(self):
        # Only a PyDataset hears of epochs, as in Keras (an iterable ends its own passes).
        if self.is_dataset:
            self.data.on_epoch_end()


class EpochIterator:
    """Epochs of batches from a source (Keras 3's `EpochIterator`, one step per batch).

    Usage: `for step in it.steps(): <begin hook>; batch = it.next_batch(); if batch is None:
    break; ...`, then `it.end_epoch()`.

    Args:
        source: an `ArrayBatches` or `IterableBatches`.
        steps_per_epoch: int or None.
        standardize: callable turning one raw batch into what the loop uses.
    """

    def __init__(self, source, steps_per_epoch, standardize):
        self.source = source
        self.steps_per_epoch = steps_per_epoch
        self.standardize = standardize
        self._num_batches = source.num_batches
        self._iterator = None
        self._seen = 0  # batches drawn from the current pass
        self._ran_out = False

    @property
    def num_batches(self):
        """Steps per epoch: `steps_per_epoch`, else the batches of a pass (None: unknown)."""
        return self.steps_per_epoch or self._num_batches

    def steps(self):
        """Yields the step indices of one epoch."""
        self.source.on_epoch_begin()
        if self._iterator is None or self.steps_per_epoch is None:
            self._iterator, self._seen = self.source.iterate(), 0
        self._ran_out = False
        limit = self.num_batches
        step = 0
        while (limit is None or step < limit) and not self._ran_out:
            if self._num_batches is not None and self._seen >= self._num_batches:
                if self.steps_per_epoch:
                    _warn_ran_out()
                break
            self._seen += 1
            yield step
            step += 1

    def next_batch(self):
        """The next batch, standardized; None when the pass has run out."""
        try:
            batch = next(self._iterator)
        except StopIteration:
            self._seen -= 1
            if self._num_batches is None:
                self._num_batches = self._seen
            if self.steps_per_epoch:
                _warn_ran_out()
            self._iterator, self._ran_out = None, True
            return None
        return self.standardize(batch)

    def reset(self):
        """Starts the next epoch at a new pass (Keras resets its iterator before each
        `evaluate`, validation included)."""
        self._iterator, self._seen = None, 0

    def end_epoch(self):
        """Ends the epoch: a pass that is over starts again at the next epoch."""
        if self._num_batches is not None and self._seen >= self._num_batches:
            self._iterator = None
        self.source.on_epoch_end()


def _warn_ran_out():
    warnings.warn("Your input ran out of data; interrupting training. Make sure that your "
                  "dataset or generator can generate at least `steps_per_epoch * epochs` "
                  "batches.", stacklevel=4)


def is_batch_source(x):
    """Whether `x` gives batches (a `PyDataset`, generator, iterator or other iterable) rather
    than arrays (an array, a list, tuple or dict of arrays, or anything NumPy converts)."""
    if x is None or isinstance(x, (np.ndarray, list, tuple, dict, str, bytes)) or hasattr(
            x, "__array__"):
        return False
    return isinstance(x, utils.PyDataset) or hasattr(x, "__iter__") or hasattr(x, "__next__")


def unpack(batch):
    """`(x, y, sample_weight)` of a batch given as `(x,)`, `(x, y)`, `(x, y, sample_weight)`
    (a tuple or list) or `x` alone, as Keras's `unpack_x_y_sample_weight`.

    Raises:
        ValueError: for a tuple or list of another length.
    """
    if isinstance(batch, list):
        batch = tuple(batch)
    if not isinstance(batch, tuple):
        return batch, None, None
    if not 1 <= len(batch) <= 3:
        raise ValueError(f"A batch must be `(x,)`, `(x, y)` or `(x, y, sample_weight)`, "
                         f"received a tuple of {len(batch)} items.")
    return batch + (None,) * (3 - len(batch))


def split_validation(arrays, validation_split):
    """The arrays (lists of arrays or None) cut into `(training, validation)` lists: the last
    `validation_split` of the samples (rounded as Keras: `floor(N * (1 - split))` kept for
    training) are held out.

    Raises:
        ValueError: a split outside `(0, 1)` or one that leaves either part empty.
    """
    if not 0.0 < validation_split < 1.0:
        raise ValueError(f"Argument `validation_split` must be in [0, 1), received "
                         f"{validation_split}.")
    n = len(next(a for group in arrays for a in group if a is not None))
    split = int(math.floor(n * (1.0 - validation_split)))
    if split in (0, n):
        raise ValueError(f"Training data contains {n} samples, which is not sufficient to "
                         f"split it into a validation and training set as specified by "
                         f"`validation_split={validation_split}`.")

    def cut(part):
        return [[None if a is None else a[part] for a in group] for group in arrays]

    return cut(slice(None, split)), cut(slice(split, None))


def check_class_weight(class_weight):
    """`class_weight` as a dict `int class -> float`.

    Raises:
        TypeError: not a dict of int classes to numbers.
    """
    if not isinstance(class_weight, dict) or not all(
            isinstance(k, (int, np.integer)) and not isinstance(k, bool)
            and isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            for k, v in class_weight.items()):
        raise TypeError(f"Argument `class_weight` must be a dict mapping int class indices "
                        f"to float weights, received {class_weight!r:.200}.")
    return {int(k): float(v) for k, v in class_weight.items()}


def class_sample_weight(class_weight, y_true, y_pred):
    """The sample weights that `class_weight` gives targets `y_true` (Keras's
    `class_weight_to_sample_weights`): each sample's class is its label (sparse targets,
    `y_pred.shape[:-1]`), its one-hot argmax (`y_pred`'s shape), or its rounded value (a
    last axis of 1); classes missing from the dict weigh 1. For a sequence output the
    weights are per timestep.

    Returns:
        float64 array `y_pred.shape[:-1]`.
    """
    y = np.asarray(y_true)
    if y.ndim == np.ndim(y_pred):
        y = y[..., 0] if y.shape[-1] == 1 else np.argmax(y, axis=-1)
    classes = np.round(y).astype(np.int64)
    weights = np.ones(classes.shape, dtype=np.float64)
    for label, weight in class_weight.items():
        weights[classes == label] = weight
    return weights
