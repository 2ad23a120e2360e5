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

from pylstm import ops
from pylstm._kernels import step as _step
from pylstm._validation import (check_array, check_destination, check_finite,
                                check_lstm_weights)
from pylstm.ops._arguments import resolve_activations as _resolve_activations
# LSTMState: public here (`pylstm.streaming.LSTMState`), where steps take it.
from pylstm.state import LSTMState

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
        kernel, recurrent_kernel, bias, projection = check_lstm_weights(
            kernel, recurrent_kernel, bias, projection, min_features=1)
        dtype = kernel.dtype
        D, G = kernel.shape
        H = G // 4
        P = recurrent_kernel.shape[0]
        codes, entries = _resolve_activations(activation, recurrent_activation, gate_activations)

        self._kernel = kernel
        self._recurrent_kernel = recurrent_kernel
        self._bias = bias
        self._projection = projection
        self._entries = entries
        self._dtype = dtype
        self._D, self._H, self._P = D, H, P
        self._codes = codes
        self._compile()

    def _compile(self):
        # None when an activation is a Python callable: steps then go through pylstm.ops.
        self._kernel_step = (None if self._codes is None else _step.StepKernel(
            self._kernel, self._recurrent_kernel, self._bias, self._projection, self._codes))
        # Per thread: {B: (z, m)} scratch of the compiled step (steps release the GIL).
        self._local = threading.local()

    def __getstate__(self):
        """The weights and activations for `pickle` and `copy.deepcopy`; the compiled step
        and the per-thread scratch are rebuilt on arrival."""
        state = self.__dict__.copy()
        del state["_kernel_step"], state["_local"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._compile()

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
            new_state = LSTMState._of(np.empty_like(h), np.empty_like(c))
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
