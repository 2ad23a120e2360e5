"""Checks at the Python-Cython boundary: dtype, shape and finiteness, with errors that name the
argument, what was expected and what was received."""

import math
import os

import numpy as np

from pylstm._kernels import scan

all_finite = scan.all_finite

_FLOATS = (np.float32, np.float64)

# The compiled kernels and BLAS take int32 sizes: no array they read may hold more elements.
INT32_MAX = 2**31 - 1

# Allocations below this size are not checked against the machine's memory (no file read on
# the fast paths).
_CHECKED_BYTES = 1 << 26


def _describe(value):
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    return f"{type(value).__name__}"


def as_float_array(value, name):
    """Returns `value` as a real floating ndarray (float16/32/64 kept), without copying it
    unless its byte order is not the machine's (the kernels read raw memory): then a copy in
    native order.

    Raises:
        TypeError: `value` is not array-like, or is of integer, boolean, complex, string or
            object dtype (cast it explicitly, e.g. `x.astype("float32")`).
        ValueError: `value` has more than 2**31 - 1 elements (the kernels' int32 limit).
    """
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"Argument `{name}` must be a real floating-point array, "
                        f"received {_describe(value)} that NumPy cannot convert ({exc}).") from None
    if arr.dtype.kind != "f":
        hint = " (cast it with .astype('float32'))" if arr.dtype.kind in "iub" else ""
        raise TypeError(f"Argument `{name}` must be a real floating-point array (float32 or "
                        f"float64), received dtype {arr.dtype}{hint}.")
    if arr.size > INT32_MAX:
        # before any copy: a broadcast view can claim terabytes without holding them
        raise ValueError(f"Argument `{name}` of shape {arr.shape} has {arr.size} elements, over "
                         f"the {INT32_MAX} that the compiled kernels' int32 sizes index; "
                         f"split it.")
    return native(arr)


def native(arr):
    """`arr` itself if its byte order is the machine's, else a copy in native order (same
    values): the compiled kernels read raw memory as native floats and integers."""
    if arr.dtype.isnative:
        return arr
    return arr.astype(arr.dtype.newbyteorder("="))


def check_lstm_size(D, H, P, owner):
    """Raises ValueError naming `owner` when an LSTM of D input features, H units and
    recurrent size P has weights over the kernels' int32 sizes (`(max(D, P), 4H)`), before
    any of them is allocated."""
    if 4 * H * max(D, P) > INT32_MAX:
        raise ValueError(f"{owner}: weights of shape ({max(D, P)}, {4 * H}) (input size {D}, "
                         f"{H} units) have over {INT32_MAX} elements, the compiled kernels' "
                         f"int32 limit.")


def check_allocation(shape, dtype, name, count=1, subject=None):
    """Raises ValueError naming argument `name` (or `subject`, a phrase that replaces
    "Argument `name`") when `count` arrays of `shape` and `dtype` would take more memory than
    this machine has available: a size that can only fail is refused before
    anything is allocated (rather than a MemoryError, or the process killed when the pages of
    an overcommitted allocation are first touched).

    Raises:
        ValueError: the request exceeds the available memory.
    """
    nbytes = count * math.prod(int(n) for n in shape) * np.dtype(dtype).itemsize  # no overflow
    if nbytes <= _CHECKED_BYTES:
        return
    available = _available_memory()
    if available is not None and nbytes > available:
        raise ValueError(f"{subject or f'Argument `{name}`'} asks for {_gib(nbytes)} (shape "
                         f"{tuple(shape)}"
                         f"{f' x {count}' if count != 1 else ''}, {np.dtype(dtype)}), more "
                         f"than the {_gib(available)} of memory available.")


def _available_memory():
    """Bytes of memory available to a new allocation: Linux's MemAvailable, else the physical
    memory, else None (unknown)."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def _gib(nbytes):
    return f"{nbytes / 2**30:.3g} GiB"


def check_destination(arr, name):
    """Raises TypeError naming `name` if the `out=` / in-place destination `arr` is not in
    the machine's byte order (results are written there as native values, so it cannot be
    converted the way an input is)."""
    if isinstance(arr, np.ndarray) and not arr.dtype.isnative:
        raise TypeError(f"Argument `{name}` must be in the machine's native byte order to be "
                        f"written into, received dtype {arr.dtype.str} (non-native); pass a "
                        f"native array such as `np.empty(shape, {arr.dtype.name!r})`.")


def check_array(value, name, ndim=None, shape=None, dtype=None):
    """Validates a floating array's ndim or shape and casts it to `dtype` (copying only if
    the dtype differs). Contiguity is not required.

    Raises:
        TypeError: see `as_float_array`.
        ValueError: wrong ndim or shape.
    """
    arr = as_float_array(value, name)
    if shape is not None:
        if arr.shape != tuple(shape):
            raise ValueError(f"Argument `{name}` must have shape {tuple(shape)}, "
                             f"received shape {arr.shape}.")
    elif ndim is not None and arr.ndim != ndim:
        raise ValueError(f"Argument `{name}` must be {ndim}-D, received a {arr.ndim}-D array "
                         f"of shape {arr.shape}.")
    if dtype is not None and arr.dtype != dtype:
        arr = arr.astype(dtype)
    return arr


def check_weight(value, name, ndim=None, shape=None, dtype=None):
    """Like `check_array`, for weights: float32 or float64 only, C-contiguous (copied if not).

    A C-contiguous native-order float32/float64 ndarray of the right ndim, shape and dtype is
    returned as it is, only checked for NaN and inf (no conversion to look for).

    Raises:
        TypeError: not float32/float64, or not the dtype of the other weights.
        ValueError: wrong ndim or shape, NaN or inf.
    """
    if (type(value) is np.ndarray and value.flags.c_contiguous and value.size <= INT32_MAX
            and (value.dtype == dtype if dtype is not None else value.dtype in _NATIVE_FLOATS)
            and (value.shape == shape if shape is not None else value.ndim == ndim)):
        check_finite(value, name)
        return value
    arr = check_array(value, name, ndim=ndim, shape=shape)
    if arr.dtype.type not in _FLOATS:
        raise TypeError(f"Argument `{name}` must be float32 or float64, received dtype "
                        f"{arr.dtype}.")
    if dtype is not None and arr.dtype != dtype:
        raise TypeError(f"Argument `{name}` must have dtype {np.dtype(dtype)} like `kernel`, "
                        f"received dtype {arr.dtype}.")
    check_finite(arr, name)
    return np.ascontiguousarray(arr)


_NATIVE_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def check_lstm_weights(kernel, recurrent_kernel, bias=None, projection=None, *,
                       min_features=0):
    """The weights of one LSTM direction, validated (`check_weight`): `(kernel (D, 4H),
    recurrent_kernel (P, 4H), bias (4H,) or None, projection (H, P) or None)`, all of
    `kernel`'s dtype, P = H without a projection.

    Args:
        min_features: the least D accepted (the step kernel needs 1).

    Raises:
        TypeError: a weight not float32/float64, or not of `kernel`'s dtype.
        ValueError: a shape that does not fit the others, NaN or inf.
    """
    kernel = check_weight(kernel, "kernel", ndim=2)
    dtype = kernel.dtype
    D, G = kernel.shape
    if D < min_features or G == 0 or G % 4:
        least = f"D >= {min_features} and " if min_features else ""
        raise ValueError(f"Argument `kernel` must have shape (D, 4*units) with {least}units "
                         f">= 1, received shape {kernel.shape}.")
    H = G // 4
    recurrent_kernel = check_weight(recurrent_kernel, "recurrent_kernel", ndim=2, dtype=dtype)
    P = recurrent_kernel.shape[0]
    if recurrent_kernel.shape[1] != G or P == 0:
        raise ValueError(f"Argument `recurrent_kernel` must have shape (P, {G}) with P >= 1, "
                         f"received shape {recurrent_kernel.shape}.")
    if projection is None:
        if P != H:
            raise ValueError(f"Argument `recurrent_kernel` must have shape ({H}, {G}) without "
                             f"a projection, received shape {recurrent_kernel.shape}.")
    else:
        projection = check_weight(projection, "projection", shape=(H, P), dtype=dtype)
    if bias is not None:
        bias = check_weight(bias, "bias", shape=(G,), dtype=dtype)
    return kernel, recurrent_kernel, bias, projection


def check_batch_sizes(arr, name):
    """Checks the values of an integer `(T,)` array of batch sizes (a packed sequence's, as in
    PyTorch's `PackedSequence`): non-empty, every entry >= 1, non-increasing.

    Raises:
        ValueError: naming `name`, for an empty array, an entry < 1 or an increase.
    """
    if arr.size == 0:
        raise ValueError(f"Argument `{name}` must not be empty (one entry per step, at least "
                         f"one step).")
    if arr.min() < 1:
        raise ValueError(f"Argument `{name}` must be >= 1 at every step, received "
                         f"{short_repr(arr)}.")
    if np.any(np.diff(arr) > 0):
        raise ValueError(f"Argument `{name}` must be non-increasing (samples sorted by "
                         f"decreasing length), received {short_repr(arr)}.")


def short_repr(arr):
    """An array's values for an error message, elided past 20 values."""
    values = arr.tolist()
    return str(values) if len(values) <= 20 else f"[{', '.join(map(str, values[:20]))}, ...]"


class NonFiniteError(ValueError):
    """An argument holds NaN or inf (`check_finite`): training tells a gradient that overflowed
    inside backpropagation from other errors by this class."""


def check_finite(arr, name):
    """Raises NonFiniteError (a ValueError) naming `name` if `arr` holds NaN or inf."""
    # one pass with no boolean temporary for contiguous float32/64 arrays, else NumPy
    finite = all_finite(arr) if type(arr) is np.ndarray else None
    if finite is None:
        finite = np.isfinite(arr).all()
    if not finite:
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise NonFiniteError(f"Argument `{name}` contains {bad} NaN or inf value(s); "
                         f"all values must be finite.")
