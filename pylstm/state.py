"""The recurrent state of an LSTM between two calls or steps: `h` and `c` of each layer.

Design:
    `LSTMState` holds one layer's `h` `(B, P)` and `c` `(B, H)` and does all the work on them:
    validation, zeros, copy, per-sample reset, saving to and from a dict. A stack of layers is
    a tuple of them: `LSTMStepState` (`pylstm.nn.LSTM.step`) wraps that tuple and hands every
    operation to its layers, and the stateful Keras-style layers (`pylstm.layers.LSTM`, `RNN`)
    carry theirs between batches as the same tuple. `pylstm.streaming` steps an `LSTMState`
    in place.

Legend: B (or N) batch, H units (`hidden_size`), P the size of `h` (the projection size, else
H).
"""

import numpy as np

from pylstm._validation import check_allocation, check_array, check_finite

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _state_array(value, name, dtype=None):
    """A state array as a writeable C-contiguous `(B, n)` float32/float64 array (no copy when
    it already is one)."""
    arr = check_array(value, name, ndim=2)
    if dtype is not None and arr.dtype != dtype:
        raise TypeError(f"Argument `{name}` must have dtype {np.dtype(dtype)}, received dtype "
                        f"{arr.dtype}.")
    if arr.dtype not in _FLOATS:
        raise TypeError(f"Argument `{name}` must be float32 or float64, received dtype "
                        f"{arr.dtype}.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"Argument `{name}` must have shape (batch, size) with both >= 1, "
                         f"received shape {arr.shape}.")
    check_finite(arr, name)
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:
        arr = arr.copy()
    return arr


def _check_sizes(**sizes):
    for name, value in sizes.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"Argument `{name}` must be an integer >= 1, received {value!r}.")


def _hc_mapping(values):
    """`values`, checked to be a mapping with exactly the keys "h" and "c" (`from_dict`)."""
    if not hasattr(values, "keys"):
        raise TypeError(f"Argument `values` must be a mapping with keys 'h' and 'c', "
                        f"received {type(values).__name__}.")
    keys = set(values.keys())
    if keys != {"h", "c"}:
        raise ValueError(f"Argument `values` must have exactly the keys ['c', 'h'], "
                         f"received {sorted(keys)}.")
    return values


class LSTMState:
    """The recurrent state of an LSTM between two steps: `h` and `c` for a batch.

    Args:
        h: `(B, P)` recurrent state (the last output), float32 or float64.
        c: `(B, H)` cell state, same dtype and batch size.

    The state holds the arrays themselves when they are C-contiguous, writeable float arrays
    in native byte order (else a copy), so a step that writes into this state
    (`new_state=state`) updates them in place. `h` and `c` cannot be rebound; write into them
    (`state.h[...] = ...`).

    Raises:
        TypeError: `h` or `c` is not a float32/float64 array, or their dtypes differ.
        ValueError: not 2-D, empty, different batch sizes, or NaN or inf.

    Example:

    >>> state = LSTMState.zeros(batch_size=2, units=3)
    >>> state.h.shape, state.c.shape, state.dtype
    ((2, 3), (2, 3), dtype('float32'))
    >>> state.c[1] = 1.0
    >>> state.reset(np.array([False, True]))
    >>> float(state.c.sum())
    0.0
    """

    __slots__ = ("_h", "_c")

    def __init__(self, h, c):
        h = _state_array(h, "h")
        c = _state_array(c, "c", dtype=h.dtype)
        if c.shape[0] != h.shape[0]:
            raise ValueError(f"Arguments `h` and `c` must have the same batch size, received "
                             f"shapes {h.shape} and {c.shape}.")
        self._h = h
        self._c = c

    @classmethod
    def _of(cls, h, c):
        """A state holding `h` and `c` as they are, for arrays pylstm made itself (checked
        already: C-contiguous, writeable, one float dtype, one batch size)."""
        state = cls.__new__(cls)
        state._h = h
        state._c = c
        return state

    @classmethod
    def zeros(cls, batch_size, units, output_size=None, dtype="float32"):
        """The zero state (PyTorch's and Keras's default initial state).

        Args:
            batch_size: B >= 1.
            units: H >= 1, the cell size.
            output_size: P, the recurrent output size with a projection; None for H.
            dtype: "float32" or "float64".

        Returns:
            An `LSTMState` with `h` `(B, P)` and `c` `(B, H)` of zeros.

        Raises:
            ValueError: a size that is not an integer >= 1, or states larger than the memory
                available.
            TypeError: a dtype other than float32 and float64.
        """
        P = units if output_size is None else output_size
        _check_sizes(batch_size=batch_size, units=units, output_size=P)
        dt = np.dtype(dtype)
        if dt not in _FLOATS:
            raise TypeError(f"Argument `dtype` must be float32 or float64, received {dtype!r}.")
        B, H, P = int(batch_size), int(units), int(P)
        largest = "batch_size" if B >= max(H, P) else ("units" if H >= P else "output_size")
        check_allocation((B, P + H), dt, largest)
        return cls._of(np.zeros((B, P), dtype=dt), np.zeros((B, H), dtype=dt))

    @property
    def h(self):
        """`(B, P)` recurrent state."""
        return self._h

    @property
    def c(self):
        """`(B, H)` cell state."""
        return self._c

    @property
    def batch_size(self):
        """B, the number of samples (int)."""
        return self._h.shape[0]

    @property
    def dtype(self):
        """The dtype of `h` and `c`, float32 or float64."""
        return self._h.dtype

    def copy(self):
        """An independent copy (new arrays), e.g. to branch a stream or keep a checkpoint."""
        return LSTMState._of(self._h.copy(), self._c.copy())

    def reset(self, mask=None):
        """Sets the state of some or all samples back to zeros, in place.

        Args:
            mask: None to reset every sample, or a `(B,)` boolean array, True for the samples
                to reset (a stream that starts a new sequence while the others go on).

        Raises:
            TypeError: `mask` is not boolean.
            ValueError: `mask` does not have shape `(B,)`.
        """
        if mask is None:
            self._h[...] = 0
            self._c[...] = 0
            return
        mask = np.asarray(mask)
        if mask.dtype != np.bool_:
            raise TypeError(f"Argument `mask` must be a boolean array, received dtype "
                            f"{mask.dtype}.")
        if mask.shape != (self.batch_size,):
            raise ValueError(f"Argument `mask` must have shape ({self.batch_size},), received "
                             f"shape {mask.shape}.")
        self._h[mask] = 0
        self._c[mask] = 0

    def to_dict(self):
        """`{"h": (B, P), "c": (B, H)}` copies, for `np.savez`, safetensors or pickling."""
        return {"h": self._h.copy(), "c": self._c.copy()}

    @classmethod
    def from_dict(cls, values):
        """The state saved by `to_dict`.

        Raises:
            TypeError: `values` is not a mapping.
            ValueError: keys other than exactly "h" and "c", or bad arrays (see the class).
        """
        values = _hc_mapping(values)
        # validated before the copy that makes the state independent of `values`
        return cls(values["h"], values["c"]).copy()

    def __repr__(self):
        return (f"LSTMState(batch_size={self.batch_size}, units={self._c.shape[1]}, "
                f"output_size={self._h.shape[1]}, dtype={self.dtype})")


def reset_layers(layers, mask):
    """Resets some or all samples of every layer's state to zeros, in place: `LSTMState.reset`
    of each, none of them touched when `mask` is refused (the layers share one batch size).

    Args:
        layers: a sequence of `LSTMState` of one batch size B, such as `LSTMStepState.layers`.
        mask: None to reset every sample, or a `(B,)` boolean array, True for the samples to
            reset.

    Raises:
        TypeError: `mask` is not boolean.
        ValueError: `mask` does not have shape `(B,)`.

    Example:

    >>> import numpy as np
    >>> from pylstm.state import LSTMState, reset_layers
    >>> layers = [LSTMState(np.ones((2, 3)), np.ones((2, 3))) for _ in range(2)]
    >>> reset_layers(layers, np.array([True, False]))
    >>> [state.h.sum(axis=1).tolist() for state in layers]
    [[0.0, 3.0], [0.0, 3.0]]
    """
    for state in layers:
        state.reset(mask)


class LSTMStepState:
    """The state of a stacked `pylstm.nn.LSTM` between two `step` calls: one
    `pylstm.streaming.LSTMState` per layer (`h` `(N, P_out)`, `c` `(N, H)`), the streaming
    counterpart of PyTorch's `(h_n, c_n)`.

    Args:
        layers: a sequence of `LSTMState`, layer 0 first, of the same batch size, sizes and
            dtype (held, not copied).

    Raises:
        TypeError: an item that is not an `LSTMState`, or different dtypes.
        ValueError: no layers, or different batch sizes or sizes.

    Example:

    >>> import numpy as np
    >>> from pylstm.nn import LSTM, LSTMStepState
    >>> lstm = LSTM(input_size=2, hidden_size=3, num_layers=2, seed=0).eval()
    >>> _, state = lstm.step(np.ones((2, 2), dtype="float32"), lstm.initial_state(2))
    >>> saved = state.to_dict()  # {"h": (2, 2, 3), "c": (2, 2, 3)}: np.savez(path, **saved)
    >>> state.reset(np.array([True, False]))  # sample 0 starts a new sequence
    >>> float(np.abs(state.h[:, 0]).sum()), bool(np.allclose(state.h[:, 1], saved["h"][:, 1]))
    (0.0, True)
    >>> LSTMStepState.from_dict(saved).h.shape
    (2, 2, 3)
    """

    __slots__ = ("_layers",)

    def __init__(self, layers):
        if isinstance(layers, np.ndarray) or not hasattr(layers, "__iter__"):
            # an array would be split into rows before its first item is refused
            raise TypeError(f"Argument `layers` must be a sequence of LSTMState, received "
                            f"{type(layers).__name__}.")
        layers = tuple(layers)
        if not layers:
            raise ValueError("Argument `layers` must hold at least one LSTMState, received "
                             "none.")
        for k, state in enumerate(layers):
            if not isinstance(state, LSTMState):
                raise TypeError(f"Argument `layers[{k}]` must be an LSTMState, received "
                                f"{type(state).__name__}.")
            first = layers[0]
            if state.dtype != first.dtype:
                raise TypeError(f"Argument `layers` must share one dtype, received "
                                f"{first.dtype} (layer 0) and {state.dtype} (layer {k}).")
            if (state.h.shape, state.c.shape) != (first.h.shape, first.c.shape):
                raise ValueError(f"Argument `layers` must share batch size and sizes, "
                                 f"received h {first.h.shape}, c {first.c.shape} (layer 0) "
                                 f"and h {state.h.shape}, c {state.c.shape} (layer {k}).")
        self._layers = layers

    @classmethod
    def zeros(cls, num_layers, batch_size, hidden_size, output_size=None, dtype="float32"):
        """The zero state: `num_layers` layers of `h` `(batch_size, output_size or
        hidden_size)` and `c` `(batch_size, hidden_size)`."""
        _check_sizes(num_layers=num_layers)
        first = LSTMState.zeros(batch_size, hidden_size, output_size, dtype)
        (B, P), H = first.h.shape, first.c.shape[1]
        check_allocation((B, P + H), first.dtype, "num_layers", count=num_layers)
        return cls((first,) + tuple(first.copy() for _ in range(num_layers - 1)))

    @property
    def layers(self):
        """The per-layer `LSTMState`s, layer 0 first (a tuple; write into their arrays)."""
        return self._layers

    @property
    def num_layers(self):
        """The number of layers (int)."""
        return len(self._layers)

    @property
    def batch_size(self):
        """N, the number of samples (int)."""
        return self._layers[0].batch_size

    @property
    def sizes(self):
        """`(P_out, H)`: the sizes of `h` and `c`."""
        return self._layers[0].h.shape[1], self._layers[0].c.shape[1]

    @property
    def dtype(self):
        """The dtype of every layer's `h` and `c`, float32 or float64."""
        return self._layers[0].dtype

    @property
    def h(self):
        """`(num_layers, N, P_out)` copy of every layer's `h` (the layout of `h_n`)."""
        return np.stack([s.h for s in self._layers])

    @property
    def c(self):
        """`(num_layers, N, H)` copy of every layer's `c` (the layout of `c_n`)."""
        return np.stack([s.c for s in self._layers])

    def copy(self):
        """An independent copy (new arrays), to branch a stream or keep a checkpoint."""
        return LSTMStepState(tuple(s.copy() for s in self._layers))

    def reset(self, mask=None):
        """Sets the state of some or all samples back to zeros in every layer, in place.

        Args:
            mask: None for every sample, or a `(N,)` boolean array, True for the samples that
                start a new sequence.

        Raises:
            TypeError: `mask` is not boolean.
            ValueError: `mask` does not have shape `(N,)`.
        """
        reset_layers(self._layers, mask)

    def to_dict(self):
        """`{"h": (num_layers, N, P_out), "c": (num_layers, N, H)}` copies, for `np.savez`,
        safetensors or pickling; also the `(h_0, c_0)` of a call."""
        return {"h": self.h, "c": self.c}

    @classmethod
    def from_dict(cls, values):
        """The state saved by `to_dict`.

        Raises:
            TypeError: `values` is not a mapping, or its arrays are not float32/float64.
            ValueError: keys other than exactly "h" and "c", or arrays that are not 3-D with
                the same number of layers and batch size.
        """
        values = _hc_mapping(values)
        h, c = np.asarray(values["h"]), np.asarray(values["c"])
        if h.ndim != 3 or c.ndim != 3 or h.shape[:2] != c.shape[:2]:
            raise ValueError(f"Arguments `values['h']` and `values['c']` must be "
                             f"(num_layers, batch, size) with the same first two axes, "
                             f"received shapes {h.shape} and {c.shape}.")
        return cls(tuple(LSTMState(h[k].copy(), c[k].copy()) for k in range(h.shape[0])))

    def __repr__(self):
        P, H = self.sizes
        return (f"LSTMStepState(num_layers={self.num_layers}, batch_size={self.batch_size}, "
                f"hidden_size={H}, output_size={P}, dtype={self.dtype})")
