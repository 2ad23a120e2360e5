"""Streaming inference: an LSTM fed one timestep at a time, with an explicit state.

For applications that receive their input as it arrives (audio frames, sensor readings, tokens)
rather than as whole sequences. `LSTMStepper` validates the weights once and pre-allocates its
scratch; its `step(x_t, state)` checks only the step's shapes and dtypes and runs one compiled
step (`pylstm._step`) with the GIL released. Given `out` and `new_state`, a step allocates
nothing. `lstm_step` is the one-call functional form, which validates the weights every call.

Stepping T times gives the same result as `pylstm.ops.lstm_forward` over the T steps (the same
equation and gate math); the state object plays the role of PyTorch's `(h, c)` tuple of
`torch.nn.LSTMCell` and Keras's `[h, c]` states.

Legend: B batch, D input features, H units, P recurrent output size (H, or the projection
size), G = 4H. Weights use the Keras layout and gate order i, f, c, o.
"""

import threading

import numpy as np

from pylstm import _step, ops
from pylstm._validation import (check_allocation, check_array, check_destination, check_finite,
                                check_weight)

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
        for name, value in (("batch_size", batch_size), ("units", units), ("output_size", P)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Argument `{name}` must be an integer >= 1, received "
                                 f"{value!r}.")
        dt = np.dtype(dtype)
        if dt not in _FLOATS:
            raise TypeError(f"Argument `dtype` must be float32 or float64, received {dtype!r}.")
        B, H, P = int(batch_size), int(units), int(P)
        largest = "batch_size" if B >= max(H, P) else ("units" if H >= P else "output_size")
        check_allocation((B, P + H), dt, largest)
        state = cls.__new__(cls)
        state._h = np.zeros((B, P), dtype=dt)
        state._c = np.zeros((B, H), dtype=dt)
        return state

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
        return self._h.shape[0]

    @property
    def dtype(self):
        return self._h.dtype

    def copy(self):
        """An independent copy (new arrays), e.g. to branch a stream or keep a checkpoint."""
        state = LSTMState.__new__(LSTMState)
        state._h = self._h.copy()
        state._c = self._c.copy()
        return state

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
        if not hasattr(values, "keys"):
            raise TypeError(f"Argument `values` must be a mapping with keys 'h' and 'c', "
                            f"received {type(values).__name__}.")
        keys = set(values.keys())
        if keys != {"h", "c"}:
            raise ValueError(f"Argument `values` must have exactly the keys ['c', 'h'], "
                             f"received {sorted(keys)}.")
        # validated before the copy that makes the state independent of `values`
        return cls(values["h"], values["c"]).copy()

    def __repr__(self):
        return (f"LSTMState(batch_size={self.batch_size}, units={self._c.shape[1]}, "
                f"output_size={self._h.shape[1]}, dtype={self.dtype})")


class LSTMStepper:
    """Runs an LSTM one timestep at a time with fixed weights: validated once, then cheap steps.

    Each step computes, as `pylstm.ops.lstm_forward` does at every step (and PyTorch's
    `torch.nn.LSTMCell`, whose two biases sum to `bias`):
    `z = x_t @ kernel + h @ recurrent_kernel + bias`; `i, f, o = recurrent_activation(...)`;
    `g = activation(z_c)`; `c' = f * c + i * g`; `h' = o * activation(c')` (then
    `h' = h' @ projection`, LSTMP, Sak et al. 2014); `y_t = h'`.

    The stepper keeps references to the weights (no copy when they are C-contiguous): writing
    new values into them in place is seen by the next step. Its scratch buffers are per thread
    (and per batch size), so several threads may run steps of one stepper at once, each with
    its own states and outputs; steps release the GIL. Steps use the caller's BLAS thread
    count; in float32 their results are bitwise the same on any count, but at batch 1 with a
    weight matrix of about 2**19 elements or more (`pylstm._threads` has the details).

    Args:
        kernel: `(D, 4H)` input weights, float32 or float64 (sets the dtype of everything).
        recurrent_kernel: `(P, 4H)`, same dtype.
        bias: `(4H,)` or None for no bias.
        projection: `(H, P)` output projection, or None.
        activation, recurrent_activation, gate_activations: as in `pylstm.ops.lstm_forward`
            (a Python callable runs each step on the plain-NumPy path, much slower).

    Raises:
        TypeError, ValueError: bad weights or activations, as `pylstm.ops.lstm_forward`.

    Example:

    >>> rng = np.random.default_rng(0)
    >>> D, H = 3, 4
    >>> stepper = LSTMStepper(rng.standard_normal((D, 4 * H)).astype("float32"),
    ...                       rng.standard_normal((H, 4 * H)).astype("float32"))
    >>> state = stepper.initial_state(batch_size=1)
    >>> y = np.empty((1, H), dtype="float32")
    >>> for x_t in rng.standard_normal((5, 1, D)).astype("float32"):
    ...     y, state = stepper.step(x_t, state, out=y, new_state=state)
    >>> y.shape
    (1, 4)
    """

    def __init__(self, kernel, recurrent_kernel, bias=None, *, projection=None,
                 activation="tanh", recurrent_activation="sigmoid", gate_activations=None):
        kernel = check_weight(kernel, "kernel", ndim=2)
        dtype = kernel.dtype
        D, G = kernel.shape
        if D == 0 or G == 0 or G % 4:
            raise ValueError(f"Argument `kernel` must have shape (D, 4*units) with D >= 1 and "
                             f"units >= 1, received shape {kernel.shape}.")
        H = G // 4
        recurrent_kernel = check_weight(recurrent_kernel, "recurrent_kernel", ndim=2,
                                        dtype=dtype)
        P = recurrent_kernel.shape[0]
        if recurrent_kernel.shape[1] != G or P == 0:
            raise ValueError(f"Argument `recurrent_kernel` must have shape (P, {G}) with "
                             f"P >= 1, received shape {recurrent_kernel.shape}.")
        if projection is None:
            if P != H:
                raise ValueError(f"Argument `recurrent_kernel` must have shape ({H}, {G}) "
                                 f"without a projection, received shape "
                                 f"{recurrent_kernel.shape}.")
        else:
            projection = check_weight(projection, "projection", shape=(H, P), dtype=dtype)
        if bias is not None:
            bias = check_weight(bias, "bias", shape=(G,), dtype=dtype)
        codes, entries = ops._activations(activation, recurrent_activation, gate_activations)

        self._kernel = kernel
        self._recurrent_kernel = recurrent_kernel
        self._bias = bias
        self._projection = projection
        self._entries = entries
        self._dtype = dtype
        self._D, self._H, self._P = D, H, P
        # None when an activation is a Python callable: steps then go through pylstm.ops.
        self._kernel_step = (None if codes is None else
                             _step.StepKernel(kernel, recurrent_kernel, bias, projection, codes))
        # Per thread: {B: (z, m)} scratch of the compiled step (steps release the GIL).
        self._local = threading.local()

    @property
    def input_size(self):
        """D, the number of input features."""
        return self._D

    @property
    def units(self):
        """H, the cell size."""
        return self._H

    @property
    def output_size(self):
        """P, the size of `h` and of each output (H without a projection)."""
        return self._P

    @property
    def dtype(self):
        return self._dtype

    def initial_state(self, batch_size=1):
        """The zero `LSTMState` for `batch_size` samples in this stepper's sizes and dtype."""
        return LSTMState.zeros(batch_size, self._H, self._P, self._dtype)

    def step(self, x_t, state, *, out=None, new_state=None):
        """One timestep for a batch.

        Args:
            x_t: `(B, D)` input at this step; float32 or float64 (cast to the weights' dtype,
                which costs a copy: pass the weights' dtype, C-contiguous, for speed).
            state: the `LSTMState` before this step: `h` `(B, P)`, `c` `(B, H)`, the weights'
                dtype.
            out: None, or a `(B, P)` C-contiguous array of the weights' dtype to write `y_t`
                into (it may be `state.h` or `new_state.h`).
            new_state: None for a new `LSTMState`, or an `LSTMState` of the same sizes to
                write the new state into; it may be `state` itself (updated in place).

        Returns:
            `(y_t, new_state)`: `y_t` `(B, P)` (`out` when given), equal to `new_state.h`.
            With `out` and `new_state` given, nothing is allocated.

        Raises:
            TypeError: `state`/`new_state` is not an `LSTMState`; `x_t` or `out` is not a
                float array; a dtype differs from the weights'.
            ValueError: a shape does not match; NaN or inf in `x_t` or the state (then
                nothing is written).
        """
        if type(state) is not LSTMState:
            raise TypeError(f"Argument `state` must be an LSTMState, received "
                            f"{type(state).__name__}.")
        h = state._h
        c = state._c
        B = h.shape[0]
        if h.dtype != self._dtype or h.shape[1] != self._P or c.shape[1] != self._H:
            self._bad_state(state, "state")
        x = x_t
        if (type(x) is not np.ndarray or x.dtype != self._dtype or x.shape != (B, self._D)
                or not x.flags.c_contiguous):
            x = self._input(x_t, B)
        if new_state is None:
            new_state = LSTMState.__new__(LSTMState)
            new_state._h = np.empty_like(h)
            new_state._c = np.empty_like(c)
        elif type(new_state) is not LSTMState:
            raise TypeError(f"Argument `new_state` must be an LSTMState or None, received "
                            f"{type(new_state).__name__}.")
        elif new_state is not state and (new_state._h.shape != h.shape
                                         or new_state._c.shape != c.shape
                                         or new_state._h.dtype != self._dtype):
            self._bad_state(new_state, "new_state", B)
        h_new = new_state._h
        if out is None:
            out = np.empty_like(h)
        elif (type(out) is not np.ndarray or out.dtype != self._dtype or out.shape != h.shape
              or not out.flags.c_contiguous or not out.flags.writeable):
            self._bad_out(out, B)

        if self._kernel_step is None:
            return self._numpy_step(x, state, out, new_state)
        try:
            scratch = self._local.scratch[B]
        except (AttributeError, KeyError):
            scratch = self._new_scratch(B)
        status = self._kernel_step.run(x, h, c, h_new, new_state._c,
                                       None if out is h_new else out, scratch[0], scratch[1])
        if status:
            name = {_step.STATUS_X_NOT_FINITE: "x_t", _step.STATUS_H_NOT_FINITE: "state.h",
                    _step.STATUS_C_NOT_FINITE: "state.c"}[status]
            raise ValueError(f"Argument `{name}` contains NaN or inf values; all values must "
                             f"be finite.")
        return out, new_state

    def _new_scratch(self, B):
        """This thread's scratch for batch size B, made once."""
        by_batch = getattr(self._local, "scratch", None)
        if by_batch is None:
            by_batch = self._local.scratch = {}
        scratch = by_batch[B] = (
            np.empty((B, 4 * self._H), self._dtype),
            np.empty((B, self._H), self._dtype) if self._projection is not None else None)
        return scratch

    def _input(self, x_t, B):
        """x_t validated and cast to a C-contiguous `(B, D)` array of the weights' dtype."""
        x = check_array(x_t, "x_t", shape=(B, self._D))
        return np.ascontiguousarray(x, dtype=self._dtype)

    def _bad_state(self, state, name, B=None):
        B = state.batch_size if B is None else B
        raise (TypeError if state.dtype != self._dtype else ValueError)(
            f"Argument `{name}` must hold h ({B}, {self._P}) and c ({B}, {self._H}) of dtype "
            f"{self._dtype}, received h {state.h.shape} and c {state.c.shape} of dtype "
            f"{state.dtype}.")

    def _bad_out(self, out, B):
        if not isinstance(out, np.ndarray):
            raise TypeError(f"Argument `out` must be a NumPy array or None, received "
                            f"{type(out).__name__}.")
        check_destination(out, "out")
        if out.dtype != self._dtype:
            raise TypeError(f"Argument `out` must have dtype {self._dtype}, received dtype "
                            f"{out.dtype}.")
        raise ValueError(f"Argument `out` must be a writeable C-contiguous array of shape "
                         f"({B}, {self._P}), received shape {out.shape} "
                         f"(C-contiguous: {out.flags.c_contiguous}, writeable: "
                         f"{out.flags.writeable}).")

    def _numpy_step(self, x, state, out, new_state):
        """One step through `pylstm.ops` (a Python-callable activation)."""
        check_finite(x, "x_t")
        y, h_n, c_n, _ = ops.lstm_forward(
            x[:, None, :], self._kernel, self._recurrent_kernel, self._bias, state._h,
            state._c, projection=self._projection, gate_activations=self._entries,
            return_sequences=False)
        new_state._h[...] = h_n
        new_state._c[...] = c_n
        out[...] = y
        return out, new_state


def lstm_step(x_t, state, kernel, recurrent_kernel, bias=None, *, projection=None,
              activation="tanh", recurrent_activation="sigmoid", gate_activations=None,
              out=None, new_state=None):
    """One LSTM timestep for a batch: the functional form of `LSTMStepper.step`.

    It validates the weights on every call; to stream many steps with the same weights,
    build an `LSTMStepper` once and call its `step` (a few microseconds per call at small
    sizes).

    Args:
        x_t: `(B, D)` input at this step.
        state: `LSTMState` with `h` `(B, P)` and `c` `(B, H)`.
        kernel, recurrent_kernel, bias, projection, activation, recurrent_activation,
            gate_activations: see `LSTMStepper`.
        out, new_state: output buffers, see `LSTMStepper.step`.

    Returns:
        `(y_t, new_state)`, `y_t` `(B, P)` in the weights' dtype.

    Raises:
        TypeError, ValueError: see `LSTMStepper` and `LSTMStepper.step`.

    Example:

    >>> D, H = 2, 3
    >>> kernel = np.full((D, 4 * H), 0.1, dtype="float32")
    >>> recurrent_kernel = np.zeros((H, 4 * H), dtype="float32")
    >>> y, state = lstm_step(np.ones((1, D), "float32"), LSTMState.zeros(1, H), kernel,
    ...                      recurrent_kernel)
    >>> [round(float(v), 4) for v in y[0]]  # o * tanh(i * g), i = o = sigmoid(0.2), g = tanh(0.2)
    [0.0594, 0.0594, 0.0594]
    """
    stepper = LSTMStepper(kernel, recurrent_kernel, bias, projection=projection,
                          activation=activation, recurrent_activation=recurrent_activation,
                          gate_activations=gate_activations)
    return stepper.step(x_t, state, out=out, new_state=new_state)
