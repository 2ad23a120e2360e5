"""`pylstm.nn.LSTM`: PyTorch's multi-layer `torch.nn.LSTM`, with its names, shapes and layer
order, on pylstm's Cython core (`pylstm.ops`).

Legend: L sequence length, N batch, H_in input size, H hidden size, P_out output size
(`proj_size` if > 0, else H), D 2 if bidirectional else 1.

Parameters are kept in PyTorch's layout (the source of truth, what `state_dict()` returns):
`weight_ih_l{k}` `(4H, H_in)` for layer 0 or `(4H, D*P_out)` above, `weight_hh_l{k}` `(4H, P_out)`,
`bias_ih_l{k}` and `bias_hh_l{k}` `(4H,)`, `weight_hr_l{k}` `(P_out, H)` with a projection, and
`_reverse` names for the backward direction; gate order i, f, g, o. `pylstm.ops` takes the
Keras layout, the transposes: `kernel = weight_ih.T`, `recurrent_kernel = weight_hh.T`,
`bias = bias_ih + bias_hh`, `projection = weight_hr.T`. Each 2-D parameter is stored as that
C-contiguous transpose and exposed as its transposed view (`Variable.value`, PyTorch's shape), so
the streaming steppers of `LSTM.step` read the very memory that optimizers update in place.
"""

import math
import warnings

import numpy as np

from pylstm import _stack, ops
from pylstm._validation import as_float_array, check_allocation, check_lstm_size
from pylstm.layers.layer import Layer
from pylstm.nn.cell import _thread_cache
# IncompatibleKeys: re-exported, as `pylstm.nn` imports it from here.
from pylstm.nn.module import (IncompatibleKeys, _as_batch, _check_dtype, _check_int, _hx_arrays,
                              _keras_storage, _Module, _parameter)
from pylstm.nn.state_dict import to_numpy
from pylstm.nn.utils.rnn import check_packed_sequence, pack_padded_sequence, pad_packed_sequence
from pylstm.ops._buffers import contiguous
from pylstm.state import LSTMState, LSTMStepState
from pylstm.streaming import LSTMStepper
from pylstm.variable import deferred_zeros, deferring_weights

class LSTM(_Module):
    """A multi-layer LSTM with the arguments, parameters, shapes and results of PyTorch's
    `torch.nn.LSTM` (https://pytorch.org/docs/stable/generated/torch.nn.LSTM.html).

    Each layer and direction computes, from `x_t` and the previous state
    (`i, f, o = sigmoid(.)`, `g = tanh(.)` of `x_t @ W_ih.T + b_ih + h_{t-1} @ W_hh.T + b_hh`),
    `c_t = f * c_{t-1} + i * g` and `h_t = o * tanh(c_t)`, then `h_t = h_t @ W_hr.T` with
    `proj_size > 0` (LSTMP, Sak et al. 2014). Layer k > 0 reads the outputs of layer k - 1
    (both directions concatenated), after dropout in training mode.

    Args:
        input_size: int >= 1, H_in, the features of each input step.
        hidden_size: int >= 1, H, the cell state size.
        num_layers: int >= 1, the number of stacked layers.
        bias: bool; without it there are no `bias_ih_l*` / `bias_hh_l*` parameters.
        batch_first: bool; inputs and outputs are `(N, L, features)` instead of
            `(L, N, features)`. As in PyTorch, it does not apply to `h` and `c`.
        dropout: float in `[0, 1]`, the rate of the dropout applied to each layer's output
            except the last, only in training mode (`train()`; PyTorch's behaviour).
        bidirectional: bool; each layer also runs over the reversed sequence, and its outputs
            are concatenated after the forward direction's.
        proj_size: int, 0 (no projection) or `0 < proj_size < hidden_size`.
        dtype: `"float32"` (default) or `"float64"`, of parameters and results.
        seed: int or None (fresh entropy): seeds PyTorch's default
            initialization `U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))` of every parameter
            and, independently, the dropout masks, so that a seeded model is reproducible.

    Call arguments:
        input: `(L, N, H_in)` (`(N, L, H_in)` if `batch_first`) or unbatched `(L, H_in)`,
            float32 or float64 array (cast to `dtype`); or a `PackedSequence` (see
            `pylstm.nn.utils`) whose `data` is `(sum of lengths, H_in)`.
        hx: None (zero initial states) or a pair `(h_0, c_0)`: `h_0` `(D * num_layers, N,
            P_out)` and `c_0` `(D * num_layers, N, H)` (without the N axis for unbatched
            input), ordered layer by layer, forward direction first.
        lengths: None, or `(N,)` ints in `[1, L]` for a padded 3-D input (pylstm's shortcut
            for `pack_padded_sequence(input, lengths, enforce_sorted=False)`): only real steps
            are computed, the output is zero past each sample's end, and `h_n`/`c_n` are each
            sample's state at its last real step (the reverse direction starts there).

    Returns:
        `output, (h_n, c_n)`: `output` `(L, N, D * P_out)` (`(N, L, D * P_out)` if
        `batch_first`, `(L, D * P_out)` unbatched, a `PackedSequence` for a packed input),
        the last layer's outputs at every step; `h_n` `(D * num_layers, N, P_out)` and `c_n`
        `(D * num_layers, N, H)` (no N axis unbatched), each layer and direction's final
        state. All of the model's dtype.

    Raises:
        ValueError: an argument out of range (see Args), sizes whose weights are over the
            kernels' int32 limit or whose parameters exceed the memory available; when called,
            an input that is not 2-D or 3-D, of the wrong feature size, empty, an `hx` of the
            wrong shape, or a malformed `PackedSequence` (see its docstring).
        TypeError: a non-floating input, `hx` not a pair, or a `PackedSequence` field of the
            wrong type.

    In training mode (the default, as in PyTorch) a call keeps what `backward` needs; call
    `eval()` for inference.

    Example:

    >>> import numpy as np
    >>> from pylstm.nn import LSTM
    >>> lstm = LSTM(input_size=3, hidden_size=4, num_layers=2, bidirectional=True, seed=0)
    >>> output, (h_n, c_n) = lstm(np.zeros((5, 2, 3), dtype="float32"))
    >>> output.shape, h_n.shape, c_n.shape
    ((5, 2, 8), (4, 2, 4), (4, 2, 4))
    >>> [name for name, _ in lstm.named_parameters()][:4]
    ['weight_ih_l0', 'weight_hh_l0', 'bias_ih_l0', 'bias_hh_l0']
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, dtype="float32", seed=None):
        self.input_size = _check_int(input_size, "input_size", 1)
        self.hidden_size = _check_int(hidden_size, "hidden_size", 1)
        self.num_layers = _check_int(num_layers, "num_layers", 1)
        self.proj_size = _check_int(proj_size, "proj_size", 0)
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"Argument `proj_size` must be smaller than `hidden_size` "
                             f"({self.hidden_size}), received {proj_size!r}.")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.floating)) \
                or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"Argument `dropout` must be a float in [0, 1], received "
                             f"{dropout!r}.")
        self.dropout = float(dropout)
        if self.dropout > 0 and self.num_layers == 1:
            # PyTorch warns likewise: dropout only acts between layers.
            warnings.warn(f"dropout={self.dropout} has no effect with num_layers=1: it is "
                          f"applied to the outputs of every layer but the last.", stacklevel=2)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.bidirectional = bool(bidirectional)
        self.dtype = _check_dtype(dtype)
        self.seed = seed
        if not deferring_weights():  # else `deferred_weights` limits the bytes
            _check_parameter_sizes(self)
        super().__init__()
        init_seq, dropout_seq = np.random.SeedSequence(seed).spawn(2)
        self._dropout_rng = np.random.default_rng(dropout_seq)
        rng = np.random.default_rng(init_seq)
        bound = 1.0 / math.sqrt(self.hidden_size)
        for name, shape in self._parameter_shapes():
            # zeros (no draw) while a loader builds a model from a file's config; Fortran
            # order, the layout `_parameter` stores, so that they stay untouched pages
            value = deferred_zeros(name, shape, self.dtype, order="F")
            if value is None:
                value = rng.uniform(-bound, bound, size=shape).astype(self.dtype)
            self._params[name] = _parameter(name, value)

    # Structure -----------------------------------------------------------------------

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def output_size(self):
        """P_out, the size of each output step (`proj_size` if > 0, else `hidden_size`)."""
        return self.proj_size or self.hidden_size

    def _parameter_shapes(self):
        """`(name, shape)` of every parameter, in PyTorch's order."""
        G, H, P = 4 * self.hidden_size, self.hidden_size, self.output_size
        out = []
        for layer in range(self.num_layers):
            d_in = self.input_size if layer == 0 else self.num_directions * P
            for suffix in self._suffixes():
                out.append((f"weight_ih_l{layer}{suffix}", (G, d_in)))
                out.append((f"weight_hh_l{layer}{suffix}", (G, P)))
                if self.bias:
                    out.append((f"bias_ih_l{layer}{suffix}", (G,)))
                    out.append((f"bias_hh_l{layer}{suffix}", (G,)))
                if self.proj_size:
                    out.append((f"weight_hr_l{layer}{suffix}", (P, H)))
        return out

    def _suffixes(self):
        return ("", "_reverse") if self.bidirectional else ("",)

    def get_config(self):
        """The constructor's arguments, so that `LSTM(**lstm.get_config())` is a twin
        (initialized from the same seed)."""
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "num_layers": self.num_layers, "bias": self.bias,
                "batch_first": self.batch_first, "dropout": self.dropout,
                "bidirectional": self.bidirectional, "proj_size": self.proj_size,
                "dtype": self.dtype, "seed": self.seed}

    def __repr__(self):
        # PyTorch's `extra_repr` order: proj_size first, then the constructor's order.
        extra = "".join(f", {k}={v}" for k, v, default in (
            ("proj_size", self.proj_size, 0), ("num_layers", self.num_layers, 1),
            ("bias", self.bias, True), ("batch_first", self.batch_first, False),
            ("dropout", self.dropout, 0.0), ("bidirectional", self.bidirectional, False))
            if v != default)
        return f"LSTM({self.input_size}, {self.hidden_size}{extra})"

    # Forward -------------------------------------------------------------------------

    def __call__(self, input, hx=None, lengths=None):
        if _is_packed(input):
            if lengths is not None:
                raise ValueError("Argument `lengths` cannot go with a PackedSequence input, "
                                 "which carries its lengths already.")
            return self._forward_packed(input, hx)
        if lengths is not None:
            return self._forward_lengths(input, hx, lengths)
        x = as_float_array(to_numpy(input), "input")
        if x.ndim not in (2, 3):
            raise ValueError(f"Argument `input` must be 2-D (unbatched `(L, H_in)`) or 3-D "
                             f"(`{'(N, L, H_in)' if self.batch_first else '(L, N, H_in)'}`), "
                             f"received shape {x.shape}.")
        unbatched = x.ndim == 2
        if unbatched:
            x = x[:, None, :]
        elif self.batch_first:
            x = x.transpose(1, 0, 2)
        h0, c0 = self._initial_states(hx, x.shape[1], unbatched)
        y, h_n, c_n = self._forward(x, h0, c0, self.training)
        if self._cache:
            self._cache["layout"] = (unbatched, self.batch_first)
        if unbatched:
            return y[:, 0], (h_n[:, 0], c_n[:, 0])
        if self.batch_first:
            y = contiguous(y.transpose(1, 0, 2))
        return y, (h_n, c_n)

    def _initial_states(self, hx, N, unbatched):
        if hx is None:
            return None, None
        n = self.num_layers * self.num_directions
        out = []
        for (k, arr), size in zip(_hx_arrays(hx), (self.output_size, self.hidden_size)):
            expected = (n, size) if unbatched else (n, N, size)
            if arr.shape != expected:
                raise ValueError(f"Argument `hx[{k}]` ({'h_0' if k == 0 else 'c_0'}) must have "
                                 f"shape {expected} (num_layers * num_directions"
                                 f"{'' if unbatched else ', batch'}, "
                                 f"{'proj_size or hidden_size' if k == 0 else 'hidden_size'}) "
                                 f"for this input, received shape {arr.shape}.")
            out.append(arr[:, None, :] if unbatched else arr)
        return out

    def _weights(self, layer, suffix):
        """The `pylstm.ops` (Keras-layout) weights of one layer and direction: views of the
        parameters, which are stored in that layout (no copy)."""
        p = self._params
        kernel = np.ascontiguousarray(p[f"weight_ih_l{layer}{suffix}"].value.T)
        recurrent = np.ascontiguousarray(p[f"weight_hh_l{layer}{suffix}"].value.T)
        bias = None
        if self.bias:
            bias = p[f"bias_ih_l{layer}{suffix}"].value + p[f"bias_hh_l{layer}{suffix}"].value
        projection = None
        if self.proj_size:
            projection = np.ascontiguousarray(p[f"weight_hr_l{layer}{suffix}"].value.T)
        return kernel, recurrent, bias, projection

    def _recurrent_flop(self, x):
        """FLOPs of one direction's recurrent products over input rows `x` `(..., H_in)`."""
        return _stack.recurrent_flop(x, self.hidden_size, self.output_size)

    def _forward(self, x, h0, c0, training, batch_sizes=None):
        """Runs every layer on time-major `x` `(L, N, H_in)`, or on packed rows `x`
        `(sum(batch_sizes), H_in)` when `batch_sizes` `(L,)` is given (only real steps run).

        `h0`, `c0`: `(D * num_layers, N, P_out)` / `(.., H)` or None (in the packed sample
        order for packed rows). `training` enables dropout and keeps the caches in
        `self._cache` for `backward`. Returns `(y (L, N, D * P_out) or (rows, D * P_out),
        h_n, c_n)`.
        """
        features = x.shape[-1]
        if features != self.input_size:
            raise ValueError(f"Argument `input` must have {self.input_size} features "
                             f"(input_size) on its last axis, received {features} (input "
                             f"shape {x.shape}).")
        if x.size == 0:
            raise ValueError(f"Argument `input` must have at least one step and one sample, "
                             f"received shape {x.shape}.")
        N = x.shape[1] if batch_sizes is None else int(batch_sizes[0])
        D, P, H = self.num_directions, self.output_size, self.hidden_size
        x = x.astype(self.dtype, copy=False)
        h_n = np.empty((self.num_layers * D, N, P), dtype=self.dtype)
        c_n = np.empty((self.num_layers * D, N, H), dtype=self.dtype)
        masks = [None] * self.num_layers

        def dropout(layer, x):
            if not training or self.dropout == 0:
                return x
            keep = 1.0 - self.dropout
            mask = (self._dropout_rng.random(x.shape) < keep).astype(self.dtype)
            if keep > 0:
                mask /= keep
            masks[layer] = mask
            return x * mask

        def direction(layer, d, x):
            k = layer * D + d
            kernel, recurrent, bias, projection = self._weights(layer, self._suffixes()[d])
            states = (None if h0 is None else h0[k], None if c0 is None else c0[k])
            if batch_sizes is None:
                out, h_n[k], c_n[k], cache = ops.lstm_forward(
                    x, kernel, recurrent, bias, *states, projection=projection,
                    reverse=d == 1, training=training, time_major=True)
            else:
                out, h_n[k], c_n[k], cache = ops.lstm_forward_packed(
                    x, batch_sizes, kernel, recurrent, bias, *states,
                    projection=projection, reverse=d == 1, training=training)
            return out, cache

        y, caches = _stack.forward(x, self.num_layers, direction, num_directions=D,
                                   output_size=P, flop=self._recurrent_flop, between=dropout)
        self._cache = {"caches": caches, "masks": masks, "N": N} if training else {}
        return y, h_n, c_n

    def _forward_lengths(self, input, hx, lengths):
        """Padded input with per-sample `lengths`: packed (only real steps computed), run,
        padded back with zeros past each sample's end."""
        x = as_float_array(to_numpy(input), "input")
        if x.ndim != 3:
            raise ValueError(f"Argument `input` must be 3-D with `lengths`, received shape "
                             f"{x.shape}.")
        packed = pack_padded_sequence(x, lengths, batch_first=self.batch_first,
                                      enforce_sorted=False)
        out, states = self._forward_packed(packed, hx)
        total = x.shape[1] if self.batch_first else x.shape[0]
        y, _ = pad_packed_sequence(out, batch_first=self.batch_first, total_length=total)
        if self._cache:
            self._cache["padded"] = (np.asarray(lengths), total)
        return y, states

    def _forward_packed(self, packed, hx):
        """A `PackedSequence` through every layer; states follow `sorted_indices` as in
        PyTorch (given and returned in the caller's sample order)."""
        packed = check_packed_sequence(packed, "input")
        data = as_float_array(packed.data, "input.data")
        if data.ndim != 2:
            raise ValueError(f"Argument `input.data` of a PackedSequence must be 2-D "
                             f"(sum of lengths, H_in), received shape {data.shape}.")
        batch_sizes = packed.batch_sizes
        order = packed.sorted_indices
        unorder = packed.unsorted_indices
        N = int(batch_sizes[0])
        h0, c0 = self._initial_states(hx, N, unbatched=False)
        if hx is not None and order is not None:
            h0, c0 = h0[:, order], c0[:, order]
        y, h_n, c_n = self._forward(data, h0, c0, self.training, batch_sizes=batch_sizes)
        if self._cache:
            self._cache["layout"] = ("packed", packed)
        if unorder is not None:
            h_n, c_n = h_n[:, unorder], c_n[:, unorder]
        return type(packed)(y, packed.batch_sizes, order, unorder), (h_n, c_n)

    # Streaming ----------------------------------------------------------------------

    def initial_state(self, batch_size=1):
        """The zero state of `step` (PyTorch's default `hx`) for `batch_size` samples.

        Args:
            batch_size: int >= 1, N.

        Returns:
            An `LSTMStepState` of zeros: per layer, `h` `(N, P_out)` and `c` `(N, H)` of the
            model's dtype.
        """
        return LSTMStepState.zeros(self.num_layers, batch_size, self.hidden_size,
                                   self.output_size, self.dtype)

    def step(self, input_t, state=None, *, out=None, new_state=None):
        """Runs one timestep through every layer, for inputs that arrive one step at a time.

        Stepping over the L steps of a sequence gives the `output` and `(h_n, c_n)` of calling
        the module on the whole sequence (in `eval()` mode: inter-layer dropout never applies
        here). Each layer runs in compiled code with the GIL released
        (`pylstm.streaming.LSTMStepper`); with `out` and `new_state` given, nothing is
        allocated but the cast of an input that is not C-contiguous of the model's dtype. The
        steppers are cached on the module, one set per thread (threads may step one module
        at once, each with its own states), and see in-place parameter updates (optimizers,
        `load_state_dict`); they are rebuilt when a parameter's `value` is rebound.

        Args:
            input_t: `(N, H_in)` input at this step, or unbatched `(H_in,)` (then N = 1 and
                the output has no N axis); float32 or float64, cast to the model's dtype.
            state: the state before this step: an `LSTMStepState` (from `initial_state`, a
                previous step, or `LSTMStepState.from_dict`), a pair `(h_0, c_0)` shaped as
                `hx` of a call (`(num_layers, N, P_out)` and `(num_layers, N, H)`, without
                N for unbatched input; copied), or None for zeros.
            out: None, or a C-contiguous array of the model's dtype, of the output's shape
                (`(N, P_out)`, or `(P_out,)` unbatched), to write the output into.
            new_state: None for a new `LSTMStepState`, or one of the same sizes to write the
                new state into; it may be `state` itself (updated in place).

        Returns:
            `(output_t, state)`: `output_t` `(N, P_out)` (`(P_out,)` unbatched) of the model's
            dtype, the last layer's output at this step (`out` when given); `state` the
            `LSTMStepState` after it (`new_state` when given).

        Raises:
            ValueError: a bidirectional model (the reverse direction starts from the end of
                the sequence, so it cannot be fed one step at a time); `input_t` not 1-D or
                2-D or with other than `input_size` features; a state of another batch size,
                number of layers or sizes; NaN or inf in the input or the state.
            TypeError: a non-floating `input_t`, or a state of the wrong type or dtype.

        Example:

        >>> import numpy as np
        >>> from pylstm.nn import LSTM
        >>> lstm = LSTM(input_size=3, hidden_size=4, num_layers=2, seed=0).eval()
        >>> x = np.random.default_rng(0).standard_normal((6, 1, 3)).astype("float32")
        >>> state = lstm.initial_state(batch_size=1)
        >>> for x_t in x:
        ...     y_t, state = lstm.step(x_t, state, new_state=state)
        >>> output, (h_n, c_n) = lstm(x)
        >>> bool(np.allclose(y_t, output[-1], atol=1e-6) and np.allclose(state.c, c_n, atol=1e-6))
        True
        """
        if self.bidirectional:
            raise ValueError("LSTM.step runs unidirectional models only: the reverse direction "
                             "of a bidirectional LSTM starts from the last step of the "
                             "sequence, so it needs the whole sequence; call the module on it.")
        x = input_t
        if type(x) is not np.ndarray or x.dtype.kind != "f":
            x = as_float_array(to_numpy(input_t), "input_t")
        x, unbatched, N = _as_batch(x, "input_t", self.input_size)
        if state is None:
            state = self.initial_state(N)
        elif isinstance(state, (tuple, list)):
            state = self._state_from_hx(state, N, unbatched)
        else:
            self._check_step_state(state, "state", N)
        if new_state is None:
            new_state = LSTMStepState(tuple(
                LSTMState(np.zeros_like(s.h), np.zeros_like(s.c)) for s in state.layers))
        elif new_state is not state:
            self._check_step_state(new_state, "new_state", N)
        if out is not None and unbatched:
            if not isinstance(out, np.ndarray) or out.shape != (self.output_size,):
                raise ValueError(f"Argument `out` must be a ({self.output_size},) array for "
                                 f"an unbatched input, received "
                                 f"{getattr(out, 'shape', type(out).__name__)}.")
            out = out[None]
        steppers, biases = self._steppers()
        for buffer, b_ih, b_hh in biases:
            np.add(b_ih.value, b_hh.value, out=buffer)
        last = self.num_layers - 1
        for k, stepper in enumerate(steppers):
            new = new_state.layers[k]
            y, _ = stepper.step(x, state.layers[k], out=out if k == last else new.h,
                                new_state=new)
            x = y
        return (y[0] if unbatched else y), new_state

    def _check_step_state(self, state, name, N):
        if not isinstance(state, LSTMStepState):
            accepted = "a pair (h_0, c_0) or None" if name == "state" else "or None"
            raise TypeError(f"Argument `{name}` must be an LSTMStepState (from "
                            f"`initial_state`), {accepted}, received {type(state).__name__}.")
        first = state._layers[0]  # every layer has the same shapes and dtype
        if (len(state._layers) != self.num_layers or first._h.shape != (N, self.output_size)
                or first._c.shape != (N, self.hidden_size)):
            raise ValueError(f"Argument `{name}` must hold {self.num_layers} layer(s) of h "
                             f"({N}, {self.output_size}) and c ({N}, {self.hidden_size}) for "
                             f"this input (batch size {N}), received {state!r}.")
        if first._h.dtype != self.dtype:
            raise TypeError(f"Argument `{name}` must have dtype {self.dtype}, received "
                            f"{state.dtype}.")

    def _state_from_hx(self, hx, N, unbatched):
        if len(hx) != 2:
            raise TypeError(f"Argument `state` given as a sequence must be a pair (h_0, c_0), "
                            f"received {len(hx)} items.")
        h0, c0 = self._initial_states(tuple(hx), N, unbatched)
        return LSTMStepState(tuple(
            LSTMState(np.array(h0[k], dtype=self.dtype), np.array(c0[k], dtype=self.dtype))
            for k in range(self.num_layers)))

    def _steppers(self):
        """This thread's per-layer `LSTMStepper`s over the parameters' storage, and the fused
        bias buffers `(buffer, bias_ih, bias_hh)` to refresh before a step; rebuilt when a
        parameter's `value` was rebound since they were made. Per thread (`_thread_cache`):
        threads stepping one module at once never share a bias buffer."""
        values = [var.value for var in self._params.values()]
        local = _thread_cache(self)
        cached = getattr(local, "steppers", None)
        if cached is not None:
            for a, b in zip(cached[0], values):
                if a is not b:
                    break
            else:
                return cached[1], cached[2]
        p = self._params
        steppers, biases = [], []
        for layer in range(self.num_layers):
            bias = None
            if self.bias:
                b_ih, b_hh = p[f"bias_ih_l{layer}"], p[f"bias_hh_l{layer}"]
                bias = b_ih.value + b_hh.value
                biases.append((bias, b_ih, b_hh))
            projection = None
            if self.proj_size:
                projection = _keras_storage(p[f"weight_hr_l{layer}"])
            steppers.append(LSTMStepper(_keras_storage(p[f"weight_ih_l{layer}"]),
                                        _keras_storage(p[f"weight_hh_l{layer}"]), bias,
                                        projection=projection))
        local.steppers = ([var.value for var in p.values()], steppers, biases)
        return steppers, biases

    # Backward ------------------------------------------------------------------------

    def backward(self, grad_output, grad_h_n=None, grad_c_n=None, return_hx_grad=False):
        """Backpropagates through the last call (made in training mode) and adds every
        parameter's gradient into its `.grad` (as PyTorch's autograd accumulates).

        Args:
            grad_output: gradient of the loss with respect to the call's `output`, same shape
                (`(L, N, D * P_out)`, `(N, L, D * P_out)` or `(L, D * P_out)`; for a packed
                input a `PackedSequence` or its `data` `(sum of lengths, D * P_out)`), or None.
            grad_h_n: gradient with respect to `h_n` (same shape as `h_n`), or None.
            grad_c_n: gradient with respect to `c_n`, or None.
            return_hx_grad: also return the gradients of `h_0` and `c_0`.

        Returns:
            `grad_input`, the gradient with respect to `input`, in its shape and the model's
            dtype (for a packed input, of its `data`); or `(grad_input, (grad_h_0, grad_c_0))`
            with `return_hx_grad`, in `hx`'s shapes.

        Raises:
            RuntimeError: no call in training mode since the last `backward`.
            ValueError: a gradient of the wrong shape.
        """
        cache = self._cache
        if not cache:
            raise RuntimeError("LSTM.backward needs a preceding call in training mode "
                               "(`lstm.train()`); the last call ran in eval mode or was "
                               "already backpropagated.")
        layout = cache["layout"]
        packed = layout[0] == "packed"
        unbatched = layout[0] is True
        N = cache["N"]
        D, P, H = self.num_directions, self.output_size, self.hidden_size
        n = self.num_layers * D
        L = cache["caches"][0].x.shape[0]
        dy = None
        padded = cache.get("padded")
        if grad_output is not None and padded is not None:
            grad_output = pack_padded_sequence(
                as_float_array(to_numpy(grad_output), "grad_output"), padded[0],
                batch_first=self.batch_first, enforce_sorted=False).data
        if grad_output is not None:
            if _is_packed(grad_output):
                grad_output = grad_output.data
            dy = as_float_array(to_numpy(grad_output), "grad_output")
            if packed or unbatched:  # L: the packed rows, or the steps
                expected = (L, D * P)
            else:
                expected = (N, L, D * P) if self.batch_first else (L, N, D * P)
            if dy.shape != expected:
                raise ValueError(f"Argument `grad_output` must have the output's shape "
                                 f"{expected}, received shape {dy.shape}.")
            if unbatched:
                dy = dy[:, None, :]
            elif self.batch_first and not packed:
                dy = dy.transpose(1, 0, 2)
            dy = dy.astype(self.dtype, copy=False)
        dh_n = self._state_grad(grad_h_n, "grad_h_n", (n, N, P), unbatched)
        dc_n = self._state_grad(grad_c_n, "grad_c_n", (n, N, H), unbatched)
        order = layout[1].sorted_indices if packed else None
        if order is not None:
            dh_n = None if dh_n is None else dh_n[:, order]
            dc_n = None if dc_n is None else dc_n[:, order]
        dx, dh0, dc0 = self._backward(dy, dh_n, dc_n)
        self._cache = {}
        if packed:
            if order is not None:
                unorder = layout[1].unsorted_indices
                dh0, dc0 = dh0[:, unorder], dc0[:, unorder]
            if padded is not None:
                dx, _ = pad_packed_sequence(layout[1]._replace(data=dx),
                                            batch_first=self.batch_first, total_length=padded[1])
        elif unbatched:
            dx, dh0, dc0 = dx[:, 0], dh0[:, 0], dc0[:, 0]
        elif self.batch_first:
            dx = contiguous(dx.transpose(1, 0, 2))
        return (dx, (dh0, dc0)) if return_hx_grad else dx

    def _state_grad(self, value, name, shape, unbatched):
        if value is None:
            return None
        arr = as_float_array(to_numpy(value), name)
        expected = (shape[0], shape[2]) if unbatched else shape
        if arr.shape != expected:
            raise ValueError(f"Argument `{name}` must have shape {expected}, received shape "
                             f"{arr.shape}.")
        return arr.reshape(shape)

    def _backward(self, dy, dh_n, dc_n):
        """Backward over all layers: `dy` `(L, N, D * P_out)` (or packed rows) or None, `dh_n`,
        `dc_n` or None; returns `(dx (L, N, H_in), dh0, dc0)`."""
        cache = self._cache
        D, P, H = self.num_directions, self.output_size, self.hidden_size
        N = cache["N"]
        n = self.num_layers * D
        dh0 = np.zeros((n, N, P), dtype=self.dtype)
        dc0 = np.zeros((n, N, H), dtype=self.dtype)

        def direction(layer, d, dy):
            k = layer * D + d
            return ops.lstm_backward(cache["caches"][k], dy, None if dh_n is None else dh_n[k],
                                     None if dc_n is None else dc_n[k])

        def take(k, grads):
            layer, d = divmod(k, D)
            suffix = self._suffixes()[d]
            p = self._params
            p[f"weight_ih_l{layer}{suffix}"].grad += grads["kernel"].T
            p[f"weight_hh_l{layer}{suffix}"].grad += grads["recurrent_kernel"].T
            if self.bias:
                p[f"bias_ih_l{layer}{suffix}"].grad += grads["bias"]
                p[f"bias_hh_l{layer}{suffix}"].grad += grads["bias"]
            if self.proj_size:
                p[f"weight_hr_l{layer}{suffix}"].grad += grads["projection"].T
            dh0[k], dc0[k] = grads["h0"], grads["c0"]

        def dropout(layer, dx):
            mask = cache["masks"][layer]
            return dx if mask is None else dx * mask

        dx = _stack.backward(dy, cache["caches"], self.num_layers, direction, take,
                             num_directions=D, output_size=P, flop=self._recurrent_flop,
                             between=dropout)
        return dx, dh0, dc0

    def as_layer(self, return_sequences=True, **kwargs):
        """Wraps this module as a `pylstm.layers.Layer` for `pylstm.models.Sequential`.

        Args:
            return_sequences: bool; the layer returns `(N, L, D * P_out)` (every step of the
                last layer), else `(N, D * P_out)`, the last layer's `h_n` of each direction
                concatenated (Keras's `return_sequences=False`, and what a `Bidirectional`
                layer returns).
            **kwargs: base `Layer` arguments (`name`, `trainable`).

        Returns:
            An `LSTMLayer` sharing this module's parameters; it takes `(N, L, H_in)` inputs
            whatever `batch_first` is, as Keras layers do.
        """
        return LSTMLayer(module=self, return_sequences=return_sequences, **kwargs)


class LSTMLayer(Layer):
    """A `pylstm.nn.LSTM` as a Keras-style layer (`(N, L, H_in)` in, batch first), for
    `pylstm.models.Sequential`; made by `LSTM.as_layer`.

    Args:
        return_sequences: see `LSTM.as_layer`.
        module: the `pylstm.nn.LSTM` to wrap (shared, not copied); or None to make one from
            `**lstm_args`.
        **kwargs: `pylstm.nn.LSTM` arguments (used when `module` is None) and base `Layer`
            arguments (`name`, `trainable`, `input_shape`).

    Call arguments:
        inputs: `(N, L, H_in)` float array.
        training: bool, dropout between layers and keeping the cache for `backward`.

    Returns:
        `(N, L, D * P_out)` if `return_sequences`, else `(N, D * P_out)`.

    Example:

    >>> import numpy as np
    >>> from pylstm.models import Sequential
    >>> from pylstm.layers import Dense
    >>> from pylstm.nn import LSTM
    >>> model = Sequential([LSTM(2, 8, seed=1).as_layer(return_sequences=False), Dense(1)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> model.predict(np.zeros((4, 5, 2), dtype="float32")).shape
    (4, 1)
    """

    _LSTM_ARGS = ("input_size", "hidden_size", "num_layers", "bias", "dropout",
                  "bidirectional", "proj_size", "seed")

    def __init__(self, return_sequences=True, module=None, **kwargs):
        lstm_args = {k: kwargs.pop(k) for k in self._LSTM_ARGS if k in kwargs}
        kwargs.pop("batch_first", None)
        if module is None:
            module = LSTM(**lstm_args, dtype=kwargs.get("dtype", "float32"))
        elif lstm_args:
            raise ValueError(f"Give either `module` or LSTM arguments, received both "
                             f"(LSTM arguments {sorted(lstm_args)}).")
        if not isinstance(module, LSTM):
            raise TypeError(f"Argument `module` must be a pylstm.nn.LSTM, received "
                            f"{type(module).__name__}.")
        kwargs["dtype"] = module.dtype
        super().__init__(**kwargs)
        self.module = module
        self.return_sequences = bool(return_sequences)
        for name, var in module.named_parameters():
            self._variables.append(var)

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3 or input_shape[-1] not in (None, self.module.input_size):
            raise ValueError(f"Layer '{self.name}' expects inputs of shape (batch, steps, "
                             f"{self.module.input_size}), received {input_shape}.")
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        features = self.module.num_directions * self.module.output_size
        if self.return_sequences:
            return (input_shape[0], input_shape[1], features)
        return (input_shape[0], features)

    def call(self, inputs, training=False):
        x = as_float_array(inputs, "inputs")
        if x.ndim != 3:
            raise ValueError(f"Layer '{self.name}' expects a 3-D input (batch, steps, "
                             f"features), received shape {x.shape}.")
        m = self.module
        y, h_n, _ = m._forward(x.transpose(1, 0, 2), None, None, bool(training))
        if self.return_sequences:
            return contiguous(y.transpose(1, 0, 2))
        D = m.num_directions
        return np.concatenate(list(h_n[-D:]), axis=-1)

    def backward(self, grad_outputs):
        m = self.module
        if not m._cache:
            raise RuntimeError(f"Layer '{self.name}': backward needs a call with "
                               f"training=True first.")
        g = np.asarray(grad_outputs, dtype=m.dtype)
        D, P = m.num_directions, m.output_size
        if self.return_sequences:
            dx, _, _ = m._backward(g.transpose(1, 0, 2), None, None)
        else:
            N = g.shape[0]
            dh_n = np.zeros((m.num_layers * D, N, P), dtype=m.dtype)
            dh_n[-D:] = g.reshape(N, D, P).transpose(1, 0, 2)
            dx, _, _ = m._backward(None, dh_n, None)
        m._cache = {}
        return contiguous(dx.transpose(1, 0, 2))

    def get_config(self):
        config = super().get_config()
        module_config = self.module.get_config()
        module_config.pop("batch_first")
        module_config.pop("dtype")
        config.update(module_config, return_sequences=self.return_sequences)
        return config


def _check_parameter_sizes(lstm):
    """Refuses, before any parameter is made, an `LSTM` whose weights are over the kernels'
    int32 sizes or whose parameters would not fit in the memory available."""
    H, P, D = lstm.hidden_size, lstm.output_size, lstm.num_directions
    owner = f"LSTM({lstm.input_size}, {H}, num_layers={lstm.num_layers})"
    check_lstm_size(max(lstm.input_size, D * P), H, P, owner)

    def per_direction(d_in):
        return 4 * H * (d_in + P + 2 * lstm.bias) + (P * H if lstm.proj_size else 0)

    total = D * (per_direction(lstm.input_size) + (lstm.num_layers - 1) * per_direction(D * P))
    check_allocation((total,), lstm.dtype, "", subject=f"{owner}'s parameters")


def _is_packed(value):
    """Whether `value` is a `pylstm.nn.utils.rnn.PackedSequence` (imported lazily: the packed
    utilities import this package)."""
    if type(value).__name__ != "PackedSequence":
        return False
    from pylstm.nn.utils.rnn import PackedSequence

    return isinstance(value, PackedSequence)
