"""Checks of the LSTM functions' arguments, each array checked once: shapes, dtypes, NaN and
inf, activations resolved to the core's codes. Errors name the argument, what was expected
and what was received; what passes is what the routes run on (native, contiguous where the
core needs it, in the weights' dtype)."""

import numpy as np

from pylstm import _validation, activations
from pylstm._kernels import core as _core
from pylstm._validation import INT32_MAX, as_float_array, check_array, check_finite


def check_x(x, D, G, P, dtype, time_major, finite=True):
    """`x` `(B, T, D)` (`(T, B, D)` if `time_major`) in `dtype`, any strides, and `(T, B)`;
    scanned for NaN and inf unless the caller did (`finite` False) on this very array."""
    given = x
    x = check_array(x, "x", ndim=3, dtype=dtype)
    T, B, Dx = x.shape if time_major else (x.shape[1], x.shape[0], x.shape[2])
    if Dx != D:
        raise ValueError(f"Argument `x` must have {D} features (last axis), as `kernel` has "
                         f"{D} rows; received shape {x.shape}.")
    if B == 0:
        raise ValueError(f"Argument `x` has an empty batch (shape {x.shape}); need >= 1 sample.")
    if T == 0:
        raise ValueError(f"Argument `x` has zero timesteps (shape {x.shape}); need >= 1 step.")
    if max(T * B * max(D, G, P), G * max(D, P)) > INT32_MAX:
        raise ValueError(f"Argument `x` of shape {x.shape} with {G // 4} units is over the "
                         f"BLAS int32 size limit; split the batch.")
    if finite or x is not given:    # a cast to float32 can overflow
        check_finite(x, "x")
    return x, T, B


def check_data(data, batch_sizes, D, G, P, dtype):
    """`lstm_forward_packed`'s `(N, D)` `data`, C-contiguous in `dtype`."""
    N = int(batch_sizes.sum())
    data = check_array(data, "data", ndim=2, dtype=dtype)
    if data.shape != (N, D):
        raise ValueError(f"Argument `data` must have shape ({N}, {D}) (sum(batch_sizes) rows, "
                         f"the kernel's {D} features), received shape {data.shape}.")
    if max(N * max(D, G, P), G * max(D, P)) > INT32_MAX:
        raise ValueError(f"Argument `data` of shape {data.shape} with {G // 4} units is over the "
                         f"BLAS int32 size limit; split the batch.")
    data = np.ascontiguousarray(data)
    check_finite(data, "data")
    return data


def check_mask(mask, T, B, time_major):
    """A boolean `mask` as the core's time-major `(T, B)` uint8 array, or None."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    expected = (T, B) if time_major else (B, T)
    if mask.dtype != np.bool_:
        raise TypeError(f"Argument `mask` must be a boolean array, received dtype "
                        f"{mask.dtype}.")
    if mask.shape != expected:
        raise ValueError(f"Argument `mask` must have shape {expected}, received shape "
                         f"{mask.shape}.")
    return np.ascontiguousarray(mask if time_major else mask.T).view(np.uint8)


def check_lengths(lengths, B, T):
    """`lengths` as a `(B,)` int64 array of values in `[1, T]`, or a clear error."""
    arr = np.asarray(lengths)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"Argument `lengths` must be an integer array, received dtype "
                        f"{arr.dtype}.")
    if arr.shape != (B,):
        raise ValueError(f"Argument `lengths` must have shape ({B},) (one length per sample), "
                         f"received shape {arr.shape}.")
    if arr.min() < 1:
        raise ValueError(f"Argument `lengths` must be >= 1 (every sample needs a real step), "
                         f"received {int(arr.min())} at sample {int(arr.argmin())}.")
    if arr.max() > T:
        raise ValueError(f"Argument `lengths` must be <= {T} (the input's timesteps), "
                         f"received {int(arr.max())} at sample {int(arr.argmax())}.")
    return arr.astype(np.int64)


def check_padding_side(padding_side):
    if not isinstance(padding_side, str) or padding_side not in ("right", "left"):
        raise ValueError(f"Argument `padding_side` must be 'right' or 'left', received "
                         f"{padding_side!r:.100}.")


def check_batch_sizes(batch_sizes):
    """`batch_sizes` as a `(T,)` intc array, non-increasing, all >= 1, or a clear error."""
    arr = np.asarray(batch_sizes)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"Argument `batch_sizes` must be an integer array, received dtype "
                        f"{arr.dtype}.")
    if arr.ndim != 1:
        raise ValueError(f"Argument `batch_sizes` must be a non-empty 1-D array, received shape "
                         f"{arr.shape}.")
    _validation.check_batch_sizes(arr, "batch_sizes")
    if arr.max() > INT32_MAX:
        raise ValueError(f"Argument `batch_sizes` is over the int32 limit: {int(arr.max())}.")
    return np.ascontiguousarray(arr, dtype=np.intc)


def check_dropout_mask(value, name, B, n, letter, dtype):
    """A `(B, n)` or `(4, B, n)` dropout mask as `(R, B, n)` in `dtype`, R = 1 or 4, or None."""
    if value is None:
        return None
    arr = as_float_array(value, name)
    if arr.shape not in ((B, n), (4, B, n)):
        raise ValueError(f"Argument `{name}` must have shape ({B}, {n}) or (4, {B}, {n}) "
                         f"(batch, {letter}; or one mask per gate i, f, c, o), received shape "
                         f"{arr.shape}.")
    check_finite(arr, name)
    return np.ascontiguousarray(arr.reshape(-1, B, n), dtype=dtype)


def check_state(value, name, shape, dtype, finite=True):
    """A `shape` state (or its gradient) as a new C-contiguous array in `dtype`; None: zeros.
    Scanned for NaN and inf unless the caller did (`finite` False) on this very array."""
    if value is None:
        return np.zeros(shape, dtype=dtype)
    given = value
    value = check_array(value, name, shape=shape, dtype=dtype)
    if finite or value is not given:    # a cast to float32 can overflow
        check_finite(value, name)
    return np.array(value, dtype=dtype, order="C")


def gradient(value, name, shape, dtype):
    """An output gradient `dy` of `shape` in `dtype` (any strides)."""
    value = check_array(value, name, shape=shape, dtype=dtype)
    check_finite(value, name)
    return value


def resolve_activations(activation, recurrent_activation, gate_activations):
    """The activations of gates i, f, g, o and the cell output, as `(codes, entries)`.

    `codes` is the core's `(5,)` intc array when every activation is a core name or a built-in
    of `pylstm.activations`, else None; `entries` are the five names or callables for the
    NumPy route. Two valid names (or None) are looked up once: then `codes` is read-only and
    shared between calls.
    """
    if (gate_activations is None and type(activation) in _NAME_TYPES
            and type(recurrent_activation) in _NAME_TYPES):
        key = (activation, recurrent_activation)
        found = _named_activations.get(key)
        if found is None:
            codes, entries = _resolve(activation, recurrent_activation, None)
            codes.flags.writeable = False
            found = _named_activations.setdefault(key, (codes, tuple(entries)))
        return found[0], list(found[1])
    return _resolve(activation, recurrent_activation, gate_activations)


# (activation, recurrent_activation) names -> (codes, entries), filled by valid names only.
_named_activations = {}
_NAME_TYPES = (str, type(None))


def _resolve(activation, recurrent_activation, gate_activations):
    """`resolve_activations` without the cache of names."""
    if gate_activations is None:
        given = [recurrent_activation, recurrent_activation, activation, recurrent_activation,
                 activation]
        args = ["recurrent_activation"] * 2 + ["activation", "recurrent_activation",
                                                "activation"]
    else:
        given = list(gate_activations) if isinstance(gate_activations, (list, tuple)) else []
        if len(given) != 5:
            raise ValueError(f"Argument `gate_activations` must be five activations (names or "
                             f"callables, for gates i, f, g, o and the cell output), received "
                             f"{gate_activations!r}.")
        args = [f"gate_activations[{k}]" for k in range(5)]
    codes = np.empty(5, dtype=np.intc)
    entries = []
    in_core = True
    for k, (value, arg) in enumerate(zip(given, args)):
        if value is None:
            value = "linear"
        elif callable(value):
            name = getattr(value, "__name__", None)
            if name in _core.ACTIVATION_CODES and activations.get(name) is value:
                value = name
        if isinstance(value, str):
            if value not in _core.ACTIVATION_CODES:
                raise ValueError(f"Argument `{arg}` must be one of "
                                 f"{sorted(_core.ACTIVATION_CODES)}, None or a callable, "
                                 f"received {value!r}.")
            codes[k] = _core.ACTIVATION_CODES[value]
        elif callable(value):
            in_core = False
        else:
            raise ValueError(f"Argument `{arg}` must be an activation name, None or a callable, "
                             f"received {value!r}.")
        entries.append(value)
    return (codes if in_core else None), entries
