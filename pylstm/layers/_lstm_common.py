"""What `pylstm.layers.LSTM` shares with `LSTMCell` (the cell's arguments) and with `RNN` (the
sequence layer's arguments).

Design:
    Keras 3 writes these once by making its `LSTM` layer wrap an `LSTMCell`. pylstm's `LSTM`
    runs whole sequences in the compiled core and has its own extensions (`proj_size`,
    `lengths`, `step`), so instead both classes inherit `LSTMArgs`, a mixin (before `Layer` in
    the bases) that owns the arguments of one LSTM cell: their validation and storage, the
    weights `build` creates (`kernel`, `recurrent_kernel`, `bias`, in that order, with
    `unit_forget_bias` and the layer's seed), the dropout masks, the call into
    `ops.lstm_forward` on those weights, the weight gradients, and the `get_config` entries.
    Likewise `LSTM` and `RNN` inherit `SequenceArgs`, Keras 3's `RNN` arguments
    (`return_sequences`, ..., `stateful`) with the stateful batch and `reset_state`; a stateful
    layer carries one `pylstm.state.LSTMState` per cell between batches.
"""

import numpy as np

from pylstm import activations, constraints, initializers, regularizers, utils
from pylstm._kernels import core as _core
from pylstm._validation import check_allocation, check_lstm_size
from pylstm.ops import _dense
from pylstm.state import LSTMState, reset_layers
from pylstm.variable import deferring_weights


class LSTMArgs:
    """Mixin holding one LSTM cell's arguments and weights; see `pylstm.layers.LSTMCell` for
    the meaning of each argument.

    Args:
        units, activation, recurrent_activation, use_bias, kernel_initializer,
        recurrent_initializer, bias_initializer, unit_forget_bias, kernel_regularizer,
        recurrent_regularizer, bias_regularizer, kernel_constraint, recurrent_constraint,
        bias_constraint, dropout, recurrent_dropout, seed: as Keras 3's `LSTMCell`.
        **kwargs: passed on to the next base (`Layer`).

    Raises:
        ValueError: `units` is not a positive int, `seed` not an int or None, an activation
            unknown, a dropout rate outside `[0, 1)`, or an unknown initializer, regularizer
            or constraint identifier.
    """

    # No defaults here: the public classes' signatures hold them (Keras's).
    def __init__(self, units, activation, recurrent_activation, use_bias, kernel_initializer,
                 recurrent_initializer, bias_initializer, unit_forget_bias, kernel_regularizer,
                 recurrent_regularizer, bias_regularizer, kernel_constraint,
                 recurrent_constraint, bias_constraint, dropout, recurrent_dropout, seed,
                 **kwargs):
        super().__init__(**kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"Argument `units` must be a positive int, received {units!r}.")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"Argument `seed` must be an int or None, received {seed!r}.")
        self.units = int(units)
        self.activation = _check_activation(activation, "activation")
        self.recurrent_activation = _check_activation(recurrent_activation,
                                                      "recurrent_activation")
        self.dropout = _rate(dropout, "dropout")
        self.recurrent_dropout = _rate(recurrent_dropout, "recurrent_dropout")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.seed = None if seed is None else int(seed)
        self._rng = None if seed is None else np.random.default_rng(self.seed)

    def _seeded(self, initializer, offset):
        """`initializer`, seeded from the layer's seed if it has none of its own (offsets 0, 1,
        2 for kernel, recurrent kernel and bias, so that `RNN(LSTMCell(H, seed=s))` starts
        from the weights of `LSTM(H, seed=s)`)."""
        if self.seed is None or getattr(initializer, "seed", 0) is not None:
            return initializer
        return type(initializer).from_config({**initializer.get_config(),
                                              "seed": self.seed + offset})

    def _build_lstm_weights(self, D, P):
        """Creates `kernel (D, 4H)`, `recurrent_kernel (P, 4H)` and, with `use_bias`,
        `bias (4H,)`, in Keras's order; P is the size of h (`units` unless projected)."""
        H = self.units
        if not deferring_weights():
            # before any initializer runs: sizes the kernels cannot take, or memory cannot
            # hold (inside `deferred_weights` its byte limit applies instead)
            check_lstm_size(D, H, P, f"Layer '{self.name}'")
            check_allocation((4 * H * (D + P + 1),), self.dtype, "",
                             subject=f"Layer '{self.name}' ({H} units, {D} input features)")
        self.kernel = self.add_weight("kernel", (D, 4 * H), self._seeded(self.kernel_initializer, 0),
                                      self.kernel_regularizer, self.kernel_constraint)
        self.recurrent_kernel = self.add_weight(
            "recurrent_kernel", (P, 4 * H), self._seeded(self.recurrent_initializer, 1),
            self.recurrent_regularizer, self.recurrent_constraint)
        self.bias = None
        if self.use_bias:
            bias_init = self._seeded(self.bias_initializer, 2)
            if self.unit_forget_bias:
                def bias_init(shape, dtype="float32", base=bias_init):
                    return np.concatenate([base((H,), dtype), np.ones((H,), dtype),
                                           base((2 * H,), dtype)])
            self.bias = self.add_weight("bias", (4 * H,), bias_init, self.bias_regularizer,
                                        self.bias_constraint)

    def _draw_mask(self, shape, rate):
        """A dropout mask of 0 and `1 / (1 - rate)`, or None for `rate == 0`; one per gate
        `(4, *shape)` with recurrent dropout, as Keras 3 draws them then (otherwise one input
        mask serves all four gates)."""
        if rate == 0:
            return None
        if self.recurrent_dropout > 0:
            shape = (4,) + tuple(shape)
        rng = self._rng if self._rng is not None else utils.default_generator()
        return ((rng.random(shape) >= rate) / (1.0 - rate)).astype(self.dtype)

    def _lstm_forward(self, x, h0, c0, training, dropout_masks=None, checked=(), **kwargs):
        """`ops.lstm_forward` of `x (B, T, D)` on the layer's weights and activations.

        In training, `dropout_masks` is the pair (input mask, recurrent mask) to apply, or None
        to draw fresh ones (the input mask first, as Keras); `checked` names the arrays among
        "x", "h0" and "c0" that the caller scanned for NaN and inf; other keyword arguments go
        to `ops.lstm_forward` as they are."""
        dropout_mask = recurrent_dropout_mask = None
        if training:
            if dropout_masks is None:
                B = x.shape[0]
                dropout_masks = (self._draw_mask((B, x.shape[2]), self.dropout),
                                 self._draw_mask((B, self.recurrent_kernel.shape[0]),
                                                 self.recurrent_dropout))
            dropout_mask, recurrent_dropout_mask = dropout_masks
        return _dense.forward(
            x, self.kernel.value, self.recurrent_kernel.value,
            None if self.bias is None else self.bias.value, h0, c0,
            activation=self.activation, recurrent_activation=self.recurrent_activation,
            dropout_mask=dropout_mask, recurrent_dropout_mask=recurrent_dropout_mask,
            training=training, checked=checked, **kwargs)

    def _add_weight_grads(self, grads):
        """Adds `ops.lstm_backward`'s weight gradients into the variables' `grad`."""
        self.kernel.grad += grads["kernel"]
        self.recurrent_kernel.grad += grads["recurrent_kernel"]
        if self.bias is not None:
            self.bias.grad += grads["bias"]

    def _lstm_config(self):
        """The config entries of the arguments above (Keras 3's `LSTMCell` keys)."""
        return dict(
            units=self.units,
            activation=_activation_name(self.activation),
            recurrent_activation=_activation_name(self.recurrent_activation),
            use_bias=self.use_bias,
            kernel_initializer=initializers.serialize(self.kernel_initializer),
            recurrent_initializer=initializers.serialize(self.recurrent_initializer),
            bias_initializer=initializers.serialize(self.bias_initializer),
            unit_forget_bias=self.unit_forget_bias,
            kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
            recurrent_regularizer=regularizers.serialize(self.recurrent_regularizer),
            bias_regularizer=regularizers.serialize(self.bias_regularizer),
            kernel_constraint=constraints.serialize(self.kernel_constraint),
            recurrent_constraint=constraints.serialize(self.recurrent_constraint),
            bias_constraint=constraints.serialize(self.bias_constraint),
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            seed=self.seed,
        )



class SequenceArgs:
    """Mixin for the layers that run whole sequences (`LSTM`, `RNN`): Keras 3's `RNN`
    arguments, the input-shape check of `build`, and the states a stateful layer carries
    between batches (one `LSTMState` per cell, `LSTM` being one cell)."""

    # `states` as Keras structures them: `[h, c]` (False), or one `[h, c]` pair per cell.
    _states_per_cell = False

    def _init_sequence_args(self, return_sequences, return_state, go_backwards, stateful,
                            unroll, zero_output_for_mask):
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self._carried = None
        self._stateful_batch_size = None

    @property
    def states(self):
        """The states a stateful layer carries into its next call, or None (before its first
        call, after `reset_state()`): `[h (B, P), c (B, H)]` for `LSTM`, one such pair per
        cell for `RNN` (the arrays themselves)."""
        if self._carried is None:
            return None
        pairs = [[state.h, state.c] for state in self._carried]
        return pairs if self._states_per_cell else pairs[0]

    def _carry(self, finals):
        """Keeps copies of the final states `[(h_n, c_n), ...]` (one pair per cell) as the
        initial states of the next call."""
        self._carried = tuple(LSTMState._of(h.copy(), c.copy()) for h, c in finals)

    def _check_sequence_shape(self, input_shape):
        """Checks a `build` shape `(B, T, D)`; a stateful layer takes B as its batch size when
        it is declared."""
        if len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(f"Argument `inputs` of layer '{self.name}' must be 3-D (batch, "
                             f"timesteps, features), received input shape "
                             f"{tuple(input_shape)}.")
        if self.stateful and input_shape[0] is not None:
            self._stateful_batch_size = int(input_shape[0])

    def _check_stateful_batch(self, B):
        if self._stateful_batch_size is None:
            self._stateful_batch_size = B
        elif B != self._stateful_batch_size:
            raise ValueError(f"Stateful layer '{self.name}' keeps states for batches of "
                             f"{self._stateful_batch_size} samples, received a batch of {B}. "
                             f"Feed batches of that size (sample i continues sample i), or "
                             f"declare the batch size with Input(batch_size=...).")

    def reset_state(self, mask=None):
        """Zeroes the carried states of a stateful layer (Keras's `reset_state`).

        Args:
            mask: None to reset every sample, or a `(B,)` boolean array: only samples where it
                is True are reset (their next batch starts from zero state); the others keep
                their state. (Keras has no per-sample reset.)

        Raises:
            ValueError: `mask` is not a `(B,)` boolean array for the layer's batch size.
        """
        if mask is None or self._carried is None:
            self._carried = None
            return
        try:
            reset_layers(self._carried, mask)
        except (TypeError, ValueError):
            mask = np.asarray(mask)
            raise ValueError(f"Argument `mask` of reset_state must be a "
                             f"({self._carried[0].batch_size},) boolean array, received dtype "
                             f"{mask.dtype} and shape {mask.shape}.") from None

    def _sequence_config(self):
        return dict(
            return_sequences=self.return_sequences,
            return_state=self.return_state,
            go_backwards=self.go_backwards,
            stateful=self.stateful,
            unroll=self.unroll,
            zero_output_for_mask=self.zero_output_for_mask,
        )

def _check_activation(value, arg):
    """A core activation name (None means linear) is kept as a name; a callable is kept as is
    and runs on the NumPy path of `pylstm.ops`."""
    if value is None:
        return "linear"
    if isinstance(value, str):
        if value not in _core.ACTIVATION_CODES:
            raise ValueError(f"Argument `{arg}` must be one of {sorted(_core.ACTIVATION_CODES)}, "
                             f"None or a callable, received {value!r}.")
        return value
    if callable(value):
        return value
    raise ValueError(f"Argument `{arg}` must be an activation name, None or a callable, "
                     f"received {value!r}.")


def _activation_name(value):
    return value if isinstance(value, str) else activations.serialize(value)


def _rate(value, arg):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
            or not 0.0 <= value < 1.0:
        raise ValueError(f"Argument `{arg}` must be a float in [0, 1), received {value!r}.")
    return float(value)
