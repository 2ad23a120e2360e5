"""Keras 3's `Bidirectional` wrapper: a recurrent layer run forwards and backwards in time."""

import numpy as np

from pylstm import _stack
from pylstm.layers._registry import serialize, with_inner_layers
from pylstm.layers.layer import Layer
from pylstm.layers.lstm import LSTM

_MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Bidirectional(Layer):
    """Runs a recurrent layer over the sequence in both directions and merges the outputs
    (Schuster & Paliwal 1997), as Keras 3's `keras.layers.Bidirectional`.

    The forward layer is a fresh copy of `layer` (built from its config, named
    `forward_<name>`); the backward layer is `backward_layer`, or a copy of `layer` with
    `go_backwards` flipped (named `backward_<name>`). Neither reuses `layer`'s weights. With
    `return_sequences`, the backward layer's output (which comes in processing order) is
    flipped back to input order before merging, and both layers output zeros on masked steps
    (Keras forces their `zero_output_for_mask` to `return_sequences`).

    Args:
        layer: a recurrent `Layer` with `go_backwards`, `return_sequences` and
            `return_state` attributes: `pylstm.layers.LSTM` or `RNN`.
        merge_mode: how the two outputs combine: "concat" (default, along the last axis),
            "sum", "mul", "ave", or None (return both, `[y_forward, y_backward]`).
        weights: optional list of arrays, set when the layer is built: the forward layer's
            weights then the backward layer's (`get_weights()` order).
        backward_layer: optional recurrent `Layer` for the backward direction, used as is. It
            must differ from `layer` in `go_backwards` and match it in `return_sequences`,
            `return_state` and `stateful` (and in units for "sum", "mul" and "ave").
        **kwargs: `name`, `trainable`, `dtype` (default: `layer`'s), `input_shape` (default:
            `layer`'s), `activity_regularizer`.

    Call arguments:
        inputs: `(B, T, D)` float array.
        initial_state: None, or the list of the forward layer's initial states followed by the
            backward layer's (`[h_f, c_f, h_b, c_b]` for LSTMs, each `(B, H)`).
        training: bool; True caches what `backward` needs (and applies dropout).
        mask: None or a `(B, T)` boolean array, True on real steps; passed to both layers.

    Returns:
        The merged output: `(B, T, 2H)` for "concat" with `return_sequences` (`(B, 2H)`
        without), `(B, T, H)` / `(B, H)` for the others, in the layer's dtype; for
        `merge_mode=None` the list `[y_forward, y_backward]`. With `return_state`, the list
        `[output, h_f, c_f, h_b, c_b]` (`[y_forward, y_backward, h_f, c_f, h_b, c_b]` for
        `merge_mode=None`), Keras's order.

    Raises:
        TypeError: `layer` or `backward_layer` is not a `Layer`.
        ValueError: an unknown `merge_mode`; `layer` is not recurrent; a `backward_layer` that
            does not match `layer` as described above; a malformed `initial_state`.

    Example:
    >>> import numpy as np
    >>> from pylstm.layers import LSTM
    >>> bi = Bidirectional(LSTM(4, return_sequences=True, seed=0))
    >>> bi(np.zeros((2, 5, 3), dtype="float32")).shape
    (2, 5, 8)
    >>> [w.shape for w in bi.get_weights()]
    [(3, 16), (4, 16), (16,), (3, 16), (4, 16), (16,)]
    """

    supports_masking = True

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        _check_recurrent(layer, "layer")
        if backward_layer is not None:
            _check_recurrent(backward_layer, "backward_layer")
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"Argument `merge_mode` must be one of {list(_MERGE_MODES)}, "
                             f"received {merge_mode!r}.")
        kwargs.setdefault("dtype", layer.dtype)
        if layer._input_shape_arg is not None:
            kwargs.setdefault("input_shape", layer._input_shape_arg)
        super().__init__(**kwargs)
        name = layer.name.removeprefix("forward_").removeprefix("backward_")
        self.forward_layer = _copy(layer, name=f"forward_{name}")
        if backward_layer is None:
            self.backward_layer = _copy(layer, name=f"backward_{name}",
                                        go_backwards=not layer.go_backwards)
        else:
            self.backward_layer = backward_layer
        self._check_pair(merge_mode)
        for sub in (self.forward_layer, self.backward_layer):
            if hasattr(sub, "zero_output_for_mask"):
                sub.zero_output_for_mask = sub.return_sequences
        self._sublayers = [self.forward_layer, self.backward_layer]
        self.merge_mode = merge_mode
        self.return_sequences = self.forward_layer.return_sequences
        self.return_state = self.forward_layer.return_state
        self.stateful = getattr(self.forward_layer, "stateful", False)
        self._initial_weights = None if weights is None else list(weights)
        self._cache = None

    def _check_pair(self, merge_mode):
        fwd, bwd = self.forward_layer, self.backward_layer
        if fwd.go_backwards == bwd.go_backwards:
            raise ValueError(f"Arguments `layer` and `backward_layer` must differ in "
                             f"`go_backwards`, received go_backwards={fwd.go_backwards} for "
                             f"both.")
        for attr in ("return_sequences", "return_state", "stateful"):
            a, b = getattr(fwd, attr, False), getattr(bwd, attr, False)
            if a != b:
                raise ValueError(f"Arguments `layer` and `backward_layer` must have the same "
                                 f"`{attr}`, received {a} for `layer` and {b} for "
                                 f"`backward_layer`.")
        units_f, units_b = _units(fwd), _units(bwd)
        if merge_mode in ("sum", "mul", "ave") and units_f != units_b:
            raise ValueError(f"merge_mode={merge_mode!r} combines the outputs elementwise, so "
                             f"`layer` and `backward_layer` must have the same units; received "
                             f"{units_f} and {units_b}.")

    def build(self, input_shape):
        for sub in self._sublayers:
            if not sub.built:
                sub.build(tuple(input_shape))
        super().build(input_shape)
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def compute_output_shape(self, input_shape):
        out_f = self.forward_layer.compute_output_shape(input_shape)
        out_b = self.backward_layer.compute_output_shape(input_shape)
        states = []
        if self.return_state:
            states = list(out_f[1:]) + list(out_b[1:])
            out_f, out_b = out_f[0], out_b[0]
        out_f, out_b = tuple(out_f), tuple(out_b)
        if self.merge_mode == "concat":
            out = [out_f[:-1] + (out_f[-1] + out_b[-1],)]
        elif self.merge_mode is None:
            out = [out_f, out_b]
        else:
            out = [out_f]
        if len(out) == 1 and not states:
            return out[0]
        return out + states

    def compute_mask(self, inputs, mask=None):
        """The input mask when `return_sequences`, else None; one per output for
        `merge_mode=None`, and None for each state with `return_state` (Keras)."""
        out = mask if self.return_sequences else None
        masks = [out, out] if self.merge_mode is None else [out]
        if self.return_state:
            # The forward layer's own mask list has one None per state.
            n_states = len(self.forward_layer.compute_mask(inputs, mask)) - 1
            masks += [None] * (2 * n_states)
        return masks[0] if len(masks) == 1 else masks

    def _side_by_side_flop(self, x):
        """Recurrent FLOPs of one direction over `x` `(B, T, .)` when both directions are
        built pylstm LSTM layers (which may run side by side, `pylstm._stack.side_by_side`),
        else 0 (run one after the other: other layers may share state, and building draws
        initial weights from seeded generators in a fixed order)."""
        layers = (self.forward_layer, self.backward_layer)
        if not all(type(layer) is LSTM and layer.built for layer in layers):
            return 0
        x = np.asarray(x)
        if x.ndim != 3:
            return 0
        units = self.forward_layer.units
        return _stack.recurrent_flop(x, units, self.forward_layer.proj_size or units)

    def call(self, inputs, training=False, initial_state=None, mask=None):
        kwargs_f, kwargs_b = {}, {}
        if initial_state is not None:
            if not isinstance(initial_state, (list, tuple)) or len(initial_state) % 2:
                raise ValueError(f"Argument `initial_state` must be a list of the forward "
                                 f"layer's initial states then the backward layer's (an even "
                                 f"count), received {initial_state!r:.200}.")
            half = len(initial_state) // 2
            kwargs_f["initial_state"] = list(initial_state[:half])
            kwargs_b["initial_state"] = list(initial_state[half:])
        y, y_rev = _stack.side_by_side(
            [lambda: self.forward_layer(inputs, training=training, mask=mask, **kwargs_f),
             lambda: self.backward_layer(inputs, training=training, mask=mask, **kwargs_b)],
            self._side_by_side_flop(inputs))
        states_f = states_b = []
        if self.return_state:
            y, states_f = y[0], list(y[1:])
            y_rev, states_b = y_rev[0], list(y_rev[1:])
        y = np.asarray(y, dtype=self.dtype)
        y_rev = np.asarray(y_rev, dtype=self.dtype)
        if self.return_sequences:
            y_rev = y_rev[:, ::-1]
        if self.merge_mode == "concat":
            out = [np.concatenate([y, y_rev], axis=-1)]
        elif self.merge_mode == "sum":
            out = [y + y_rev]
        elif self.merge_mode == "ave":
            out = [(y + y_rev) / 2]
        elif self.merge_mode == "mul":
            out = [y * y_rev]
        else:
            out = [y, y_rev]
        self._cache = None
        if training:
            self._cache = (y, y_rev, len(states_f), initial_state is not None)
        if self.return_state:
            return out + states_f + states_b
        return out[0] if len(out) == 1 else out

    def backward(self, grad_outputs):
        """Backpropagates through the last `call(..., training=True)`.

        Args:
            grad_outputs: gradient with respect to the call's result, in its structure: an
                array like the merged output, or a list (`merge_mode=None`, `return_state`);
                any entry of a list may be None.

        Returns:
            `(B, T, D)` gradient with respect to `inputs`, the sum of both directions'; if the
            call was given an `initial_state`, the pair `(d_inputs, d_initial_state)` with
            `d_initial_state` in `initial_state`'s order. Weight gradients are added into
            both layers' variables.

        Raises:
            RuntimeError: the layer was not called with `training=True` first.
            ValueError: `grad_outputs` does not have the call result's structure.
        """
        if self._cache is None:
            raise RuntimeError(f"Layer '{self.name}': call it with training=True before "
                               f"backward().")
        y, y_rev, n_states, had_initial_state = self._cache
        n_out = 2 if self.merge_mode is None else 1
        expected = n_out + (2 * n_states if self.return_state else 0)
        if expected == 1:
            grads = [grad_outputs]
        elif isinstance(grad_outputs, (list, tuple)) and len(grad_outputs) == expected:
            grads = list(grad_outputs)
        else:
            raise ValueError(f"Argument `grad_outputs` must be a list of {expected} gradients "
                             f"like the call's result, received {type(grad_outputs).__name__}.")
        dy, dy_rev = self._merge_backward(grads[:n_out], y, y_rev)
        if dy_rev is not None and self.return_sequences:
            dy_rev = dy_rev[:, ::-1]
        d_states = grads[n_out:]
        if self.return_state:
            dy = [dy] + d_states[:n_states]
            dy_rev = [dy_rev] + d_states[n_states:]
        g_f, g_b = _stack.side_by_side(
            [lambda: self.forward_layer.backward_with_penalties(dy),
             lambda: self.backward_layer.backward_with_penalties(dy_rev)],
            self._side_by_side_flop(y))
        if had_initial_state:
            return g_f[0] + g_b[0], list(g_f[1]) + list(g_b[1])
        return g_f + g_b

    def _merge_backward(self, grads, y, y_rev):
        """Gradients with respect to the forward output and the (flipped) backward output."""
        if self.merge_mode is None:
            return [None if g is None else np.asarray(g, dtype=self.dtype) for g in grads]
        g = grads[0]
        if g is None:
            return None, None
        g = np.asarray(g, dtype=self.dtype)
        expected = y.shape[:-1] + (y.shape[-1] + y_rev.shape[-1],) \
            if self.merge_mode == "concat" else y.shape
        if g.shape != expected:
            raise ValueError(f"Argument `grad_outputs` must have the output's shape {expected}, "
                             f"received shape {g.shape}.")
        if self.merge_mode == "concat":
            return g[..., :y.shape[-1]], g[..., y.shape[-1]:]
        if self.merge_mode == "sum":
            return g, g
        if self.merge_mode == "ave":
            return g / 2, g / 2
        return g * y_rev, g * y  # mul

    def get_config(self):
        config = super().get_config()
        config.update(merge_mode=self.merge_mode, layer=serialize(self.forward_layer),
                      backward_layer=serialize(self.backward_layer))
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**with_inner_layers(config, ("layer", "backward_layer")))


def _check_recurrent(layer, arg):
    if not isinstance(layer, Layer):
        raise TypeError(f"Argument `{arg}` must be a pylstm Layer (such as LSTM or RNN), "
                        f"received {type(layer).__name__}: {layer!r:.100}.")
    missing = [a for a in ("go_backwards", "return_sequences", "return_state")
               if not hasattr(layer, a)]
    if missing:
        raise ValueError(f"Argument `{arg}` must be a recurrent layer (LSTM, RNN) with "
                         f"`go_backwards`, `return_sequences` and `return_state`; "
                         f"{type(layer).__name__} '{layer.name}' has no {', '.join(missing)}.")


def _copy(layer, **overrides):
    """A new, unbuilt layer from `layer`'s config, with some config entries replaced."""
    return type(layer).from_config({**layer.get_config(), **overrides})


def _units(layer):
    """The size of a recurrent layer's output, or None if it cannot be told."""
    units = getattr(layer, "units", None)
    if units is None:
        units = getattr(getattr(layer, "cell", None), "output_size", None)
    return units
