"""Keras 3's `LSTMCell`, `StackedRNNCells` and `RNN` layer, on the Cython core (`pylstm.ops`).

Design:
    A cell owns the weights and computes one step; `RNN` owns the loop. Keras runs `RNN(cell)`
    as a Python-level loop over `cell.call`; here `RNN` hands the cell's weights to
    `ops.lstm_forward` / `ops.lstm_backward`, so `RNN(LSTMCell(H))` runs the same compiled
    whole-sequence kernels as `pylstm.layers.LSTM` and has the same weights in the same order
    as Keras's `RNN(LSTMCell(H))`. Stacked cells run one whole sequence per cell, the outputs of
    one feeding the next: with a mask this equals Keras's step-by-step stacking, because a masked
    step leaves every cell's state unchanged whatever its input.

    Stepping a cell by hand (`h, [h, c] = cell(x_t, [h, c], training=True)`) is also one call
    to the core, on a sequence of length one. Each training step pushes its cache on a stack and
    `cell.backward` pops the most recent one, so calling `backward` on the steps in reverse
    order is backpropagation through time.

    Dropout follows Keras 3's `LSTMCell` and `DropoutRNNCell`: a cell draws an input mask
    `(B, D)` (with recurrent dropout, Keras's `implementation=1`: one input mask `(4, B, D)`
    and one recurrent mask `(4, B, H)` per gate i, f, c, o) and reuses them at every step until
    `reset_dropout_mask()` / `reset_recurrent_dropout_mask()` (the `RNN` layer draws fresh
    masks for each call). The recurrent mask multiplies `h_{t-1}` only inside the recurrent
    product.
"""

import numpy as np

from pylstm import _stack, ops
from pylstm._validation import check_array, check_finite
from pylstm.layers._lstm_common import LSTMArgs, SequenceArgs
from pylstm.layers._registry import deserialize, serialize, with_inner_layers
from pylstm.layers.layer import Layer


class LSTMCell(LSTMArgs, Layer):
    """One step of a Long Short-Term Memory layer (Hochreiter & Schmidhuber 1997), as Keras
    3's `keras.layers.LSTMCell`.

    Given `x_t (B, D)` and the states `[h_{t-1}, c_{t-1}]`, computes `z = x_t @ kernel +
    h_{t-1} @ recurrent_kernel + bias`, gates `i, f, o = recurrent_activation(z_i, z_f, z_o)`,
    `g = activation(z_c)`, `c_t = f * c_{t-1} + i * g`, `h_t = o * activation(c_t)` (gate
    order i, f, c, o). Use it inside `RNN` (which runs whole sequences in the compiled core), or
    step it yourself; `backward` then gives per-step gradients.

    Args:
        units: int > 0, H, the size of the output and of both states.
        activation: for the candidate and the cell output: a name of `pylstm.ops`'s core
            activations ("tanh" by default, "sigmoid", "hard_sigmoid", "relu", "linear", ...),
            None for linear, or a callable (the slower NumPy path of `pylstm.ops`).
        recurrent_activation: for the gates i, f, o; same choices, default "sigmoid".
        use_bias: bool, whether the cell has a `bias (4H,)`.
        kernel_initializer: for `kernel (D, 4H)`, default "glorot_uniform".
        recurrent_initializer: for `recurrent_kernel (H, 4H)`, default "orthogonal".
        bias_initializer: for `bias`, default "zeros".
        unit_forget_bias: if True, the forget-gate slice of the bias starts at 1 (and the other
            slices use `bias_initializer`), as in Keras (Jozefowicz et al. 2015).
        kernel_regularizer, recurrent_regularizer, bias_regularizer: a `pylstm.regularizers`
            identifier or None, for each weight.
        kernel_constraint, recurrent_constraint, bias_constraint: a `pylstm.constraints`
            identifier or None, applied after each optimizer step.
        dropout: float in `[0, 1)`, the fraction of input features dropped in training (one
            mask per sequence, Gal & Ghahramani 2016, as Keras).
        recurrent_dropout: float in `[0, 1)`, likewise for `h_{t-1}` in the recurrent product.
        seed: int or None. Seeds the dropout masks (as in Keras) and the weight initializers
            that have no seed of their own (as `pylstm.layers.LSTM` does, so that
            `RNN(LSTMCell(H, seed=s))` starts from the weights of `LSTM(H, seed=s)`).
        **kwargs: `name`, `trainable`, `dtype` ("float32" or "float64").

    Call arguments:
        inputs: `(B, D)` float array, cast to the cell's dtype.
        states: list `[h_{t-1}, c_{t-1}]` of `(B, H)` arrays, or None for zeros.
        training: bool; True applies dropout and caches the step for `backward`.

    Returns:
        `(h_t, [h_t, c_t])`, each `(B, H)` in the cell's dtype (Keras's cell contract: the
        output and the new states).

    Raises:
        TypeError: `inputs` or a state is not a real floating array.
        ValueError: an input of the wrong shape or with NaN/inf; `states` not a list of two
            `(B, H)` arrays; an invalid constructor argument.

    Example:
    >>> import numpy as np
    >>> cell = LSTMCell(4, seed=0)
    >>> x = np.ones((2, 10, 3), dtype="float32")
    >>> states = cell.get_initial_state(batch_size=2)
    >>> for t in range(10):
    ...     h, states = cell(x[:, t], states)
    >>> h.shape, states[1].shape
    ((2, 4), (2, 4))
    """

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 recurrent_constraint=None, bias_constraint=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, **kwargs):
        super().__init__(units, activation, recurrent_activation, use_bias, kernel_initializer,
                         recurrent_initializer, bias_initializer, unit_forget_bias,
                         kernel_regularizer, recurrent_regularizer, bias_regularizer,
                         kernel_constraint, recurrent_constraint, bias_constraint, dropout,
                         recurrent_dropout, seed, **kwargs)
        self.state_size = [self.units, self.units]
        self.output_size = self.units
        self._dropout_mask = None
        self._recurrent_dropout_mask = None
        self._steps = []

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(f"Argument `inputs` of cell '{self.name}' must be 2-D (batch, "
                             f"features), received input shape {tuple(input_shape)}.")
        D, H = int(input_shape[-1]), self.units
        self._build_lstm_weights(D, H)
        super().build(input_shape)

    def get_initial_state(self, batch_size=None):
        """Returns `[h_0, c_0]`, zeros of shape `(batch_size, H)` in the cell's dtype."""
        return [np.zeros((batch_size, self.units), dtype=self.dtype) for _ in range(2)]

    # Dropout masks (Keras 3's DropoutRNNCell) -------------------------------------------------

    def get_dropout_mask(self, step_input):
        """The input dropout mask, `(B, D)` of 0 and `1 / (1 - dropout)` (`(4, B, D)`, one per
        gate, when `recurrent_dropout > 0`), drawn on first use for `step_input (B, D)` and
        reused until `reset_dropout_mask()`; None without dropout."""
        if self._dropout_mask is None:
            self._dropout_mask = self._draw_mask(np.shape(step_input), self.dropout)
        return self._dropout_mask

    def get_recurrent_dropout_mask(self, step_state):
        """The recurrent dropout mask `(4, B, H)` for `h_{t-1}`, like `get_dropout_mask`."""
        if self._recurrent_dropout_mask is None:
            self._recurrent_dropout_mask = self._draw_mask(np.shape(step_state),
                                                           self.recurrent_dropout)
        return self._recurrent_dropout_mask

    def reset_dropout_mask(self):
        """Forgets the input dropout mask, so the next training step draws a new one."""
        self._dropout_mask = None

    def reset_recurrent_dropout_mask(self):
        """Forgets the recurrent dropout mask, so the next training step draws a new one."""
        self._recurrent_dropout_mask = None

    # Forward and backward ----------------------------------------------------------------------

    def __call__(self, inputs, states=None, training=None):
        return super().__call__(inputs, training=training, states=states)

    def call(self, inputs, states=None, training=False):
        x = check_array(inputs, "inputs", ndim=2, dtype=self.dtype)
        D = self.kernel.shape[0]
        if x.shape[1] != D or x.shape[0] == 0:
            raise ValueError(f"Argument `inputs` of cell '{self.name}' must have shape "
                             f"(batch >= 1, {D}), received shape {x.shape}.")
        check_finite(x, "inputs")
        if states is None:
            h, c = self.get_initial_state(x.shape[0])
        else:
            h, c = _check_states(states, "states", x.shape[0], self.units, self.dtype)
        masks = None
        if training:
            masks = (self.get_dropout_mask(x), self.get_recurrent_dropout_mask(h))
        _, h, c, cache = self._lstm_forward(x[:, None, :], h, c, training, masks,
                                            checked=("x", "h0", "c0"),
                                            return_sequences=False)
        if training:
            self._steps.append(cache)
        return h, [h, c]

    def backward(self, grad_outputs):
        """Backpropagates through the most recent `call(..., training=True)` not yet
        backpropagated (steps form a stack: call `backward` on them in reverse order).

        Args:
            grad_outputs: pair `(d_output, [d_h, d_c])`: the gradients with respect to the
                step's output `h_t` and new states `[h_t, c_t]`, each `(B, H)` or None. The
                output and the state `h_t` are the same value, so their gradients add up.

        Returns:
            `(d_inputs (B, D), [d_h_{t-1}, d_c_{t-1}])`, in the cell's dtype. Weight gradients
            are added into `kernel.grad`, `recurrent_kernel.grad` and `bias.grad`.

        Raises:
            RuntimeError: no training step is left to backpropagate.
            ValueError: `grad_outputs` is not such a pair, or a gradient has the wrong shape.
        """
        if not self._steps:
            raise RuntimeError(f"Cell '{self.name}': call it with training=True before "
                               f"backward() (one backward per training step).")
        d_output, d_states = _split_cell_grads(grad_outputs, 2)
        grads = ops.lstm_backward(self._steps.pop(), d_output, *d_states)
        self._add_weight_grads(grads)
        return grads["x"][:, 0, :], [grads["h0"], grads["c0"]]

    def _run_sequence(self, x, h0, c0, mask, reverse, zero_output_for_mask, training,
                      return_sequences, checked=()):
        """The whole sequence `x (B, T, D)` through the core, for `RNN`; fresh dropout masks
        for each call, as Keras's `RNN` resets the cell's masks after each call. `checked`
        names the arrays among "x", "h0" and "c0" that `RNN` scanned for NaN and inf."""
        return self._lstm_forward(x, h0, c0, training, checked=checked, mask=mask,
                                  reverse=reverse, zero_output_for_mask=zero_output_for_mask,
                                  return_sequences=return_sequences)

    def get_config(self):
        return {**super().get_config(), **self._lstm_config()}


class StackedRNNCells(Layer):
    """Cells stacked into one cell, each one's output the next one's input (Keras 3's
    `keras.layers.StackedRNNCells`); `RNN([cell_1, cell_2])` builds one.

    Args:
        cells: non-empty list of `LSTMCell`s.
        **kwargs: `name`, `trainable`, `dtype` (the cells', which must all have the same).

    Call arguments:
        inputs: `(B, D)` float array.
        states: one `[h, c]` pair per cell (`[[h_1, c_1], [h_2, c_2], ...]`, each `(B, H_k)`),
            or None for zeros.
        training: bool, passed to every cell.

    Returns:
        `(h_top, new_states)`: the last cell's output `(B, H_last)` and the new states in the
        structure of `states`.

    Raises:
        TypeError: `cells` is not a non-empty list of `LSTMCell`s.
        ValueError: the cells, or the cells and `dtype`, differ in dtype.

    Example:
    >>> import numpy as np
    >>> stack = StackedRNNCells([LSTMCell(4, seed=0), LSTMCell(3, seed=1)])
    >>> h, states = stack(np.ones((2, 5), dtype="float32"))
    >>> h.shape, [s[0].shape for s in states]
    ((2, 3), [(2, 4), (2, 3)])
    """

    def __init__(self, cells, **kwargs):
        if (not isinstance(cells, (list, tuple)) or not cells
                or not all(isinstance(c, LSTMCell) for c in cells)):
            raise TypeError(f"Argument `cells` must be a non-empty list of LSTMCell, received "
                            f"{cells!r:.200}.")
        kwargs.setdefault("dtype", cells[0].dtype)
        super().__init__(**kwargs)
        _check_same_dtype(self, cells)
        self.cells = list(cells)
        self._sublayers = self.cells

    @property
    def state_size(self):
        return [cell.state_size for cell in self.cells]

    @property
    def output_size(self):
        return self.cells[-1].units

    def get_initial_state(self, batch_size=None):
        """Returns one `[h_0, c_0]` pair of zeros per cell."""
        return [cell.get_initial_state(batch_size) for cell in self.cells]

    def build(self, input_shape):
        shape = tuple(input_shape)
        for cell in self.cells:
            if not cell.built:
                cell.build(shape)
            shape = (shape[0], cell.units)
        super().build(input_shape)

    def __call__(self, inputs, states=None, training=None):
        return super().__call__(inputs, training=training, states=states)

    def call(self, inputs, states=None, training=False):
        if states is None:
            states = [None] * len(self.cells)
        elif not isinstance(states, (list, tuple)) or len(states) != len(self.cells):
            raise ValueError(f"Argument `states` must be a list of {len(self.cells)} [h, c] "
                             f"pairs (one per cell), received {states!r:.200}.")
        new_states = []

        def step(k, d, inputs):
            inputs, cell_states = self.cells[k](inputs, states[k], training=training)
            new_states.append(cell_states)
            return inputs, None

        inputs, _ = _stack.forward(inputs, len(self.cells), step)
        return inputs, new_states

    def backward(self, grad_outputs):
        """Backpropagates the most recent training step through every cell, top first.

        Args:
            grad_outputs: pair `(d_output, d_states)`: `d_output` `(B, H_last)` or None, and
                `d_states` one `[d_h, d_c]` pair per cell (or None).

        Returns:
            `(d_inputs (B, D), d_states_prev)`, the latter one `[d_h, d_c]` pair per cell.
        """
        n = len(self.cells)
        d_output, d_states = _split_cell_grads(grad_outputs, n)
        prev = [None] * n

        def step_backward(k, d, grad):
            grad, d_prev = self.cells[k].backward((grad, d_states[k]))
            return {"x": grad, "states": d_prev}

        def take(k, grads):
            prev[k] = grads["states"]

        grad = _stack.backward(d_output, [None] * n, n, step_backward, take)
        return grad, prev

    def get_config(self):
        return {**super().get_config(), "cells": [serialize(cell) for cell in self.cells]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["cells"] = [deserialize(c) if isinstance(c, dict) else c for c in config["cells"]]
        return cls(**config)


class RNN(SequenceArgs, Layer):
    """A recurrent layer over an `LSTMCell` or a stack of them (Keras 3's `keras.layers.RNN`).

    Unlike Keras, which loops over `cell.call` in Python, this runs the whole sequence through
    the compiled core (`pylstm.ops.lstm_forward` / `lstm_backward`) on the cell's weights:
    `RNN(LSTMCell(H, ...))` computes what `pylstm.layers.LSTM(H, ...)` computes, with Keras's
    `RNN(LSTMCell)` weights (`kernel (D, 4H)`, `recurrent_kernel (H, 4H)`, `bias (4H,)`, cell
    after cell).

    Args:
        cell: an `LSTMCell`, a `StackedRNNCells`, or a list of `LSTMCell`s (stacked).
        return_sequences: return the whole output sequence `(B, T, H)` rather than the last
            output `(B, H)`.
        return_state: also return the final states (see Returns).
        go_backwards: process the sequence from its end and return the output sequence in
            that (reversed) order, as Keras does.
        stateful: the final states of a call are the initial states of the next one (sample
            `b` of one batch continues sample `b` of the previous), as `pylstm.layers.LSTM`:
            the batch size is fixed by the declared input batch size or else by the first
            batch; `reset_state()` zeroes the states. Gradients stop at the batch boundary
            (truncated backpropagation through time).
        unroll: accepted for Keras compatibility; it changes nothing, as the compiled loop
            has no graph to unroll.
        zero_output_for_mask: with a mask, masked steps output zeros instead of repeating the
            previous output (Keras).
        **kwargs: `name`, `trainable`, `dtype` (the cell's; another one is an error),
            `input_shape`, `activity_regularizer`.

    Call arguments:
        inputs: `(B, T, D)` float array, cast to the layer's dtype; need not be contiguous.
        initial_state: None (zeros, or the carried states when `stateful`), `[h_0, c_0]` of
            `(B, H)` arrays for one cell, or one such pair per cell for a stack.
        training: bool; True applies the cell's dropout and caches what `backward` needs.
        mask: None or a `(B, T)` boolean array, True on real steps. On a masked step the
            states are carried unchanged and the output repeats the previous output (or is
            zero with `zero_output_for_mask`), as in Keras.

    Returns:
        `(B, T, H)` if `return_sequences` else `(B, H)` (H of the last cell), in the layer's
        dtype; with `return_state`, `[output, h_n, c_n]` for one cell and
        `[output, [h_1, c_1], [h_2, c_2], ...]` for a stack (Keras's structure).

    Raises:
        TypeError: `cell` is not an `LSTMCell` or a stack of them; `inputs` is not a real
            floating array.
        ValueError: `inputs` is not 3-D, has another feature size than the layer was built
            for, an empty batch, zero timesteps, or NaN/inf; a malformed `initial_state` or
            `mask`; a stateful layer called with another batch size; a `dtype` other than
            the cell's.

    Example:
    >>> import numpy as np
    >>> rnn = RNN(LSTMCell(4, seed=0), return_sequences=True, return_state=True)
    >>> y, h, c = rnn(np.zeros((32, 10, 8), dtype="float32"))
    >>> y.shape, h.shape, c.shape
    ((32, 10, 4), (32, 4), (32, 4))
    """

    supports_masking = True
    _states_per_cell = True

    def __init__(self, cell, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, zero_output_for_mask=False, **kwargs):
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(cell)
        if not isinstance(cell, (LSTMCell, StackedRNNCells)):
            raise TypeError(f"Argument `cell` must be an LSTMCell, a StackedRNNCells or a list "
                            f"of LSTMCell (pylstm runs them in its compiled LSTM core), received "
                            f"{cell!r:.200}.")
        kwargs.setdefault("dtype", cell.dtype)
        super().__init__(**kwargs)
        _check_same_dtype(self, [cell])
        self.cell = cell
        self._sublayers = [cell]
        self._init_sequence_args(return_sequences, return_state, go_backwards, stateful, unroll,
                                 zero_output_for_mask)
        self._caches = None

    @property
    def _cells(self):
        return self.cell.cells if isinstance(self.cell, StackedRNNCells) else [self.cell]

    @property
    def _single(self):
        """One cell: states are `[h, c]`, not one such pair per cell."""
        return isinstance(self.cell, LSTMCell)

    @property
    def state_size(self):
        return self.cell.state_size

    def build(self, input_shape):
        self._check_sequence_shape(input_shape)
        if not self.cell.built:
            self.cell.build((input_shape[0], input_shape[2]))
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        B, T = input_shape[0], input_shape[1]
        H = self._cells[-1].units
        out = (B, T, H) if self.return_sequences else (B, H)
        if not self.return_state:
            return out
        pairs = [[(B, cell.units), (B, cell.units)] for cell in self._cells]
        return [out] + (pairs[0] if self._single else pairs)

    def compute_mask(self, inputs, mask=None):
        """The input mask when `return_sequences`, else None; with `return_state`, a list
        with None for each state (Keras)."""
        out = mask if self.return_sequences else None
        if not self.return_state:
            return out
        return [out] + [None] * (2 if self._single else len(self._cells))

    def call(self, inputs, training=False, initial_state=None, mask=None):
        x = check_array(inputs, "inputs", ndim=3, dtype=self.dtype)
        if not self.built:
            self.build(x.shape)
        B, T, D = x.shape
        D_built = self._cells[0].kernel.shape[0]
        if D != D_built:
            raise ValueError(f"Argument `inputs` must have {D_built} features (last axis), as "
                             f"layer '{self.name}' was built for; received shape {x.shape}.")
        if B == 0 or T == 0:
            raise ValueError(f"Argument `inputs` must have >= 1 sample and >= 1 timestep, "
                             f"received shape {x.shape}.")
        check_finite(x, "inputs")
        if initial_state is not None:
            states = self._check_initial_state(initial_state, B)
        else:
            states = [(None, None)] * len(self._cells)
            if self.stateful:
                self._check_stateful_batch(B)
                if self._carried is not None:
                    states = [(state.h, state.c) for state in self._carried]

        finals = []
        # scanned for NaN and inf above: ops does not scan them again (it scans the carried
        # states and each later cell's input, the output of the cell below)
        given = ("h0", "c0") if initial_state is not None else ()

        def run(k, d, seq):
            top = k == len(self._cells) - 1
            seq, h_n, c_n, cache = self._cells[k]._run_sequence(
                seq, *states[k], mask, self.go_backwards, self.zero_output_for_mask and top,
                training, self.return_sequences or not top,
                checked=("x",) + given if k == 0 else given)
            finals.append([h_n, c_n])
            return seq, cache

        seq, caches = _stack.forward(x, len(self._cells), run)
        if self.go_backwards and self.return_sequences:
            seq = seq[:, ::-1]
        if self.stateful:
            self._carry(finals)
        self._caches = caches if training else None
        self._had_initial_state = initial_state is not None
        if self.return_state:
            return [seq] + (finals[0] if self._single else finals)
        return seq

    def _check_initial_state(self, initial_state, B):
        if self._single:
            return [_check_states(initial_state, "initial_state", B, self.cell.units, self.dtype)]
        cells = self._cells
        if not isinstance(initial_state, (list, tuple)) or len(initial_state) != len(cells):
            raise ValueError(f"Argument `initial_state` must be a list of {len(cells)} [h_0, "
                             f"c_0] pairs (one per cell), received {initial_state!r:.200}.")
        return [_check_states(s, f"initial_state[{k}]", B, cell.units, self.dtype)
                for k, (s, cell) in enumerate(zip(initial_state, cells))]

    def backward(self, grad_outputs):
        """Backpropagates through the last `call(..., training=True)`.

        Args:
            grad_outputs: gradient of the loss with respect to the call's output, same shape;
                with `return_state`, a list in the structure of the call's result (any
                gradient may be None).

        Returns:
            `(B, T, D)` gradient with respect to `inputs`; if the call was given an
            `initial_state`, the pair `(d_inputs, d_initial_state)` with `d_initial_state` in
            the structure of `initial_state`. Weight gradients are added into the cells'
            `Variable.grad`.

        Raises:
            RuntimeError: the layer was not called with `training=True` first.
            ValueError: `grad_outputs` does not match the call's result.
        """
        if self._caches is None:
            raise RuntimeError(f"Layer '{self.name}': call it with training=True before "
                               f"backward().")
        n = len(self._cells)
        d_states = [[None, None]] * n
        if self.return_state:
            expected = 3 if self._single else 1 + n
            if not isinstance(grad_outputs, (list, tuple)) or len(grad_outputs) != expected:
                raise ValueError(f"Argument `grad_outputs` must be a list of {expected} "
                                 f"gradients like the call's result, received "
                                 f"{type(grad_outputs).__name__}.")
            dy = grad_outputs[0]
            d_states = [grad_outputs[1:]] if self._single else \
                [_split_pair(g, f"grad_outputs[{k + 1}]") for k, g in enumerate(grad_outputs[1:])]
        else:
            dy = grad_outputs
        if dy is not None and self.go_backwards and self.return_sequences:
            dy = np.asarray(dy)[:, ::-1]
        d_initial = [None] * n

        def run_backward(k, d, dy):
            return ops.lstm_backward(self._caches[k], dy, *d_states[k])

        def take(k, grads):
            self._cells[k]._add_weight_grads(grads)
            d_initial[k] = [grads["h0"], grads["c0"]]

        dy = _stack.backward(dy, self._caches, n, run_backward, take)
        if self._had_initial_state:
            return dy, (d_initial[0] if self._single else d_initial)
        return dy

    def get_config(self):
        config = super().get_config()
        config.update(
            cell=serialize(self.cell),
            **self._sequence_config(),
        )
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**with_inner_layers(config, ("cell",)))


# Helpers ---------------------------------------------------------------------------------------


def _check_same_dtype(layer, cells):
    """The core runs one dtype per call, so a layer and its cells must agree."""
    for cell in cells:
        if cell.dtype != layer.dtype:
            raise ValueError(f"Argument `dtype` of layer '{layer.name}' is {layer.dtype!r} but "
                             f"its cell '{cell.name}' has dtype {cell.dtype!r}; give the cells "
                             f"the dtype instead (e.g. LSTMCell(units, dtype=...)).")


def _split_pair(value, name):
    if value is None:
        return [None, None]
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"Argument `{name}` must be a pair [h, c] (entries may be None), "
                         f"received {type(value).__name__}.")
    return list(value)


def _check_states(states, name, B, H, dtype):
    """Validates a `[h, c]` pair of `(B, H)` arrays; returns them cast to `dtype`."""
    if not isinstance(states, (list, tuple)) or len(states) != 2:
        raise ValueError(f"Argument `{name}` must be a list [h, c] of two ({B}, {H}) arrays, "
                         f"received {states!r:.200}.")
    pair = []
    for k, state in enumerate(states):
        state = check_array(state, f"{name}[{k}]", shape=(B, H), dtype=dtype)
        check_finite(state, f"{name}[{k}]")
        pair.append(state)
    return pair


def _split_cell_grads(grad_outputs, n):
    """`(d_output, d_states)` from a cell's `backward` argument, `d_states` a list of `n`
    entries: `[d_h, d_c]` for a cell (`n == 2`), one such pair per cell for a stack."""
    if not isinstance(grad_outputs, (list, tuple)) or len(grad_outputs) != 2:
        raise ValueError("Argument `grad_outputs` must be a pair (d_output, d_states), "
                         f"received {type(grad_outputs).__name__}.")
    d_output, d_states = grad_outputs
    if d_states is None:
        d_states = [None] * n
    if not isinstance(d_states, (list, tuple)) or len(d_states) != n:
        raise ValueError(f"Argument `grad_outputs[1]` must be a list of {n} state "
                         f"gradients, received {d_states!r:.200}.")
    return d_output, list(d_states)
