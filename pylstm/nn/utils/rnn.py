"""Packed variable-length sequences, after `torch.nn.utils.rnn`, on NumPy arrays.

A `PackedSequence` holds a batch of sequences of different lengths without padding: the
samples are ordered by decreasing length and the rows of `data` grouped by timestep, step t
holding the first `batch_sizes[t]` samples in that order (PyTorch's layout; Apple BNNS's
per-step batch sizes). `pylstm.ops.lstm_forward_packed` runs an LSTM on it computing only the
real steps. Same functions, arguments, results and errors as PyTorch's, with NumPy arrays in
and out (lengths and indices are int64 arrays).

Legend: T longest length, B batch, N = sum of the lengths, `*` any trailing feature shape.
"""

from typing import NamedTuple, Optional

import numpy as np

from pylstm._validation import check_allocation, check_batch_sizes, native, short_repr
from pylstm.nn.state_dict import to_numpy

__all__ = ["PackedSequence", "pack_padded_sequence", "pad_packed_sequence", "pad_sequence",
           "pack_sequence"]


class PackedSequence(NamedTuple):
    """A batch of variable-length sequences, packed by timestep (`torch.nn.utils.rnn`).

    Attributes:
        data: `(N, *)` the real steps, grouped by step: step t's `batch_sizes[t]` rows are
            the first samples in decreasing-length order.
        batch_sizes: `(T,)` int64, non-increasing: how many samples run at each step.
        sorted_indices: `(B,)` int64, the original index of each sample in the packed order,
            or None when the input was already sorted (`enforce_sorted=True`).
        unsorted_indices: `(B,)` int64, the inverse permutation, or None likewise.

    As in PyTorch, the fields are not checked when the tuple is made; they are checked where
    it is used (`pad_packed_sequence`, `pylstm.nn.LSTM`), with a ValueError or TypeError
    naming the field: `batch_sizes` must be a non-empty 1-D integer array, each >= 1,
    non-increasing, summing to `len(data)`; each index array a permutation of
    `range(batch_sizes[0])`, the two inverse to each other. A `sorted_indices` given without
    `unsorted_indices` has its inverse computed (PyTorch's `PackedSequence` does the same).

    Example:

    >>> import numpy as np
    >>> from pylstm.nn import LSTM
    >>> packed = pack_sequence([np.array([[1.0], [2.0], [3.0]]), np.array([[4.0]])])
    >>> packed.data.ravel().tolist(), packed.batch_sizes.tolist()
    ([1.0, 4.0, 2.0, 3.0], [2, 1, 1])
    >>> output, (h_n, c_n) = LSTM(1, 2, seed=0)(packed)
    >>> type(output).__name__, output.data.shape, h_n.shape
    ('PackedSequence', (4, 2), (1, 2, 2))
    """

    data: np.ndarray
    batch_sizes: np.ndarray
    sorted_indices: Optional[np.ndarray] = None
    unsorted_indices: Optional[np.ndarray] = None


def pack_padded_sequence(input, lengths, batch_first=False, enforce_sorted=True):
    """Packs a padded batch of variable-length sequences (right padding).

    Args:
        input: `(T, B, *)` array (`(B, T, *)` if `batch_first`), the real steps of sample b
            at times `[0, lengths[b])`.
        lengths: `(B,)` integers in `[1, T]`.
        batch_first: the batch is the first axis of `input`.
        enforce_sorted: `lengths` must be in decreasing order (then `sorted_indices` is
            None); with False the samples are sorted here (stably) and the permutation is
            kept in the result.

    Returns:
        `PackedSequence` with `data` `(N, *)` in `input`'s dtype.

    Raises:
        TypeError: `lengths` not integers.
        ValueError: `input` with fewer than 2 axes, `lengths` of the wrong shape, a length
            <= 0 or longer than the sequence, or unsorted lengths with `enforce_sorted`.

    Example:
    >>> import numpy as np
    >>> from pylstm.nn.utils.rnn import pack_padded_sequence
    >>> x = np.arange(6.0).reshape(3, 2, 1)          # (T=3, B=2, 1)
    >>> packed = pack_padded_sequence(x, [3, 1])
    >>> packed.data.ravel().tolist(), packed.batch_sizes.tolist()
    ([0.0, 1.0, 2.0, 4.0], [2, 1, 1])
    """
    input = _as_data(input, "input")
    if input.ndim < 2:
        raise ValueError(f"Argument `input` must have at least 2 axes (time and batch), "
                         f"received shape {input.shape}.")
    if batch_first:
        input = np.swapaxes(input, 0, 1)
    T, B = input.shape[:2]
    lengths = np.asarray(lengths)
    if lengths.dtype == np.bool_ or not np.issubdtype(lengths.dtype, np.integer):
        raise TypeError(f"Argument `lengths` must be integers, received dtype {lengths.dtype}.")
    if lengths.shape != (B,):
        raise ValueError(f"Argument `lengths` must have shape ({B},) (one per sample), "
                         f"received shape {lengths.shape}.")
    lengths = lengths.astype(np.int64)
    if lengths.min() <= 0:
        raise ValueError("Length of all samples has to be greater than 0, but found an element "
                         f"in 'lengths' that is <= 0: {lengths.tolist()}.")
    if lengths.max() > T:
        raise ValueError(f"Argument `lengths` must be <= {T} (the input's sequence length), "
                         f"received {int(lengths.max())}.")
    if enforce_sorted:
        if np.any(np.diff(lengths) > 0):
            raise ValueError("`lengths` array must be sorted in decreasing order when "
                             "`enforce_sorted` is True. You can pass `enforce_sorted=False` "
                             "to pack_padded_sequence and/or pack_sequence to sidestep this "
                             f"requirement if you do not need ONNX exportability; received "
                             f"{lengths.tolist()}.")
        sorted_indices = None
        order = np.arange(B)
    else:
        order = np.argsort(-lengths, kind="stable")
        sorted_indices = order
    sorted_lengths = lengths[order]
    steps = np.arange(int(sorted_lengths[0]))
    batch_sizes = np.searchsorted(-sorted_lengths, -steps, side="left").astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)])
    step = np.repeat(steps, batch_sizes)
    data = input[step, order[np.arange(offsets[-1]) - offsets[step]]]
    return PackedSequence(data, batch_sizes, sorted_indices,
                          None if sorted_indices is None else _invert(sorted_indices))


def pad_packed_sequence(sequence, batch_first=False, padding_value=0.0, total_length=None):
    """Pads a `PackedSequence` back into a batch: the inverse of `pack_padded_sequence`.

    Args:
        sequence: a `PackedSequence`.
        batch_first: return `(B, T, *)` instead of `(T, B, *)`.
        padding_value: the value of the padding steps.
        total_length: None, or the length T to pad to (at least the longest sequence).

    Returns:
        `(padded, lengths)`: `padded` `(T, B, *)` (or `(B, T, *)`) in `data`'s dtype, the
        samples in their original order; `lengths` `(B,)` int64.

    Raises:
        TypeError: `sequence` is not a `PackedSequence`, or a field of the wrong type (see
            `PackedSequence`); `total_length` not an integer.
        ValueError: a malformed field (see `PackedSequence`), or `total_length` shorter than
            the longest sequence.

    Example:

    >>> import numpy as np
    >>> x = np.arange(6, dtype="float32").reshape(2, 3, 1)     # (B, T, 1), batch first
    >>> packed = pack_padded_sequence(x, [3, 1], batch_first=True)
    >>> padded, lengths = pad_packed_sequence(packed, batch_first=True)
    >>> padded[:, :, 0].tolist(), lengths.tolist()
    ([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]], [3, 1])
    """
    sequence = check_packed_sequence(sequence, "sequence")
    data, batch_sizes = sequence.data, sequence.batch_sizes
    T_max, B = batch_sizes.size, int(batch_sizes[0])
    T = T_max
    if total_length is not None:
        if isinstance(total_length, bool) or not isinstance(total_length, (int, np.integer)):
            raise TypeError(f"Argument `total_length` must be an int or None, received "
                            f"{type(total_length).__name__}.")
        if total_length < T_max:
            raise ValueError(f"Expected total_length to be at least the length of the longest "
                             f"sequence in input, but got total_length={total_length} and max "
                             f"sequence length being {T_max}.")
        T = int(total_length)
    check_allocation((T, B) + data.shape[1:], data.dtype,
                     "total_length" if T > T_max else "sequence")
    padded = np.full((T, B) + data.shape[1:], padding_value, dtype=data.dtype)
    offsets = np.concatenate([[0], np.cumsum(batch_sizes)])
    step = np.repeat(np.arange(T_max), batch_sizes)
    position = np.arange(offsets[-1]) - offsets[step]
    padded[step, position] = data
    lengths = (batch_sizes[None, :] > np.arange(B)[:, None]).sum(axis=1).astype(np.int64)
    if sequence.unsorted_indices is not None:
        padded = padded[:, sequence.unsorted_indices]
        lengths = lengths[sequence.unsorted_indices]
    if batch_first:
        padded = np.swapaxes(padded, 0, 1)
    return np.ascontiguousarray(padded), lengths


def pad_sequence(sequences, batch_first=False, padding_value=0.0, padding_side="right"):
    """Stacks a list of `(L_i, *)` arrays into one padded batch.

    Args:
        sequences: non-empty list of arrays with the same trailing shape `*`.
        batch_first: return `(B, T, *)` instead of `(T, B, *)`; T = max `L_i`.
        padding_value: the value of the padding.
        padding_side: "right" (PyTorch's default) or "left".

    Returns:
        the padded array, in the sequences' common NumPy result dtype.

    Raises:
        ValueError: an empty list, arrays without a time axis or with different trailing
            shapes, or an unknown `padding_side`.

    Example:

    >>> import numpy as np
    >>> pad_sequence([np.ones((3, 2)), np.ones((1, 2))], batch_first=True).shape
    (2, 3, 2)
    """
    arrays = [_as_data(s, f"sequences[{i}]") for i, s in enumerate(_as_list(sequences))]
    if not arrays:
        raise ValueError("Argument `sequences` must hold at least one array, received none.")
    if not isinstance(padding_side, str) or padding_side not in ("right", "left"):
        raise ValueError(f"Argument `padding_side` must be 'right' or 'left', received "
                         f"{padding_side!r:.100}.")
    trailing = arrays[0].shape[1:]
    for i, a in enumerate(arrays):
        if a.ndim < 1 or a.shape[1:] != trailing:
            raise ValueError(f"Argument `sequences` must hold arrays of shape (L, *{trailing}), "
                             f"received shape {a.shape} at index {i}.")
    T = max(a.shape[0] for a in arrays)
    shape, dtype = (T, len(arrays)) + trailing, np.result_type(*arrays)
    check_allocation(shape, dtype, "sequences")
    out = np.full(shape, padding_value, dtype=dtype)
    for b, a in enumerate(arrays):
        if padding_side == "right":
            out[:a.shape[0], b] = a
        else:
            out[T - a.shape[0]:, b] = a
    return np.swapaxes(out, 0, 1).copy() if batch_first else out


def pack_sequence(sequences, enforce_sorted=True):
    """Packs a list of `(L_i, *)` arrays: `pack_padded_sequence(pad_sequence(sequences), ...)`.

    Args:
        sequences: non-empty list of arrays, decreasing in length if `enforce_sorted`.
        enforce_sorted: as in `pack_padded_sequence`.

    Returns:
        `PackedSequence`.

    Raises:
        ValueError: as `pad_sequence` and `pack_padded_sequence`.

    Example:

    >>> import numpy as np
    >>> packed = pack_sequence([np.ones((1, 2)), np.ones((3, 2))], enforce_sorted=False)
    >>> packed.batch_sizes.tolist(), packed.data.shape
    ([2, 1, 1], (4, 2))
    """
    arrays = [_as_data(s, f"sequences[{i}]") for i, s in enumerate(_as_list(sequences))]
    lengths = np.array([a.shape[0] if a.ndim else 0 for a in arrays], dtype=np.int64)
    return pack_padded_sequence(pad_sequence(arrays), lengths, enforce_sorted=enforce_sorted)


def check_packed_sequence(sequence, name):
    """`sequence` with its fields checked (see `PackedSequence`) and normalized: `data` a
    native-order array, `batch_sizes` and the indices int64 (`unsorted_indices` computed from
    `sorted_indices` when only that one is given).

    Raises:
        TypeError: not a `PackedSequence`, or a field of the wrong type, both naming the field
            as `name.field`.
        ValueError: a field of the wrong shape or values.
    """
    if not isinstance(sequence, PackedSequence):
        raise TypeError(f"Argument `{name}` must be a PackedSequence, received "
                        f"{type(sequence).__name__}.")
    data = _as_data(sequence.data, f"{name}.data")
    if data.ndim < 1:
        raise ValueError(f"Argument `{name}.data` must have a first axis of rows, received a "
                         f"0-D array.")
    batch_sizes = _int_vector(sequence.batch_sizes, f"{name}.batch_sizes")
    check_batch_sizes(batch_sizes, f"{name}.batch_sizes")
    rows = data.shape[0]
    # each entry is <= batch_sizes[0]: past these bounds the sum exceeds rows (and could
    # overflow int64), so it is not computed
    if (batch_sizes.size > rows or batch_sizes[0] > rows
            or int(batch_sizes.sum()) != rows):
        raise ValueError(f"Argument `{name}.batch_sizes` must sum to the {rows} rows of "
                         f"`{name}.data`, received {short_repr(batch_sizes)}.")
    B = int(batch_sizes[0])
    order = unorder = None
    if sequence.sorted_indices is not None:
        order = _permutation(sequence.sorted_indices, f"{name}.sorted_indices", B)
    if sequence.unsorted_indices is not None:
        unorder = _permutation(sequence.unsorted_indices, f"{name}.unsorted_indices", B)
    if order is not None:
        if unorder is None:
            unorder = _invert(order)
        elif np.any(order[unorder] != np.arange(B)):
            raise ValueError(f"Arguments `{name}.sorted_indices` and `{name}.unsorted_indices` "
                             f"must be inverse permutations, received {short_repr(order)} and "
                             f"{short_repr(unorder)}.")
    return PackedSequence(data, batch_sizes, order, unorder)


def _as_list(sequences):
    if isinstance(sequences, np.ndarray) or not hasattr(sequences, "__iter__") or \
            isinstance(sequences, (str, bytes)):
        raise TypeError(f"Argument `sequences` must be a list of arrays, received "
                        f"{type(sequences).__name__}.")
    return list(sequences)


def _as_data(value, name):
    """A numeric (bool, integer or real float) array in native byte order."""
    try:
        arr = to_numpy(value)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise TypeError(f"Argument `{name}` must be a numeric array, received "
                        f"{type(value).__name__} that NumPy cannot convert ({exc}).") from exc
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"Argument `{name}` must be a numeric array, received dtype "
                        f"{arr.dtype}.")
    return native(arr)


def _int_vector(value, name):
    """A 1-D integer array as int64, or a clear error."""
    arr = _as_data(value, name)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"Argument `{name}` must be an array of integers, received dtype "
                        f"{arr.dtype}.")
    if arr.ndim != 1:
        raise ValueError(f"Argument `{name}` must be 1-D, received shape {arr.shape}.")
    if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"Argument `{name}` holds values over the int64 range, received "
                         f"{short_repr(arr)}.")
    return arr.astype(np.int64)


def _permutation(value, name, B):
    """`value` as an int64 permutation of `range(B)`, or a clear error."""
    arr = _int_vector(value, name)
    if arr.size != B:
        raise ValueError(f"Argument `{name}` must have one entry per sample ({B}, "
                         f"batch_sizes[0]), received {arr.size}.")
    if arr.min() < 0 or arr.max() >= B or np.unique(arr).size != B:
        raise ValueError(f"Argument `{name}` must be a permutation of range({B}) (each sample "
                         f"index once), received {short_repr(arr)}.")
    return arr


def _invert(permutation):
    inverse = np.empty_like(permutation)
    inverse[permutation] = np.arange(permutation.size)
    return inverse
