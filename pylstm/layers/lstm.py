"""The Keras-style LSTM layer, on the Cython core (`pylstm.ops`)."""

import numpy as np

from pylstm import ops
from pylstm._validation import check_array, check_finite
from pylstm.layers._lstm_common import LSTMArgs, SequenceArgs
from pylstm.layers.layer import Layer
from pylstm.state import LSTMState
from pylstm.streaming import LSTMStepper


class LSTM(LSTMArgs, SequenceArgs, Layer):
    """Long Short-Term Memory layer (Hochreiter & Schmidhuber 1997), as Keras 3's
    `keras.layers.LSTM`.

    For each step t of `inputs (B, T, D)`:
    `z = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias`, gates `i, f, o =
    recurrent_activation(z_i, z_f, z_o)`, `g = activation(z_c)`, `c_t = f * c_{t-1} + i * g`,
    `h_t = o * activation(c_t)`. Gate order i, f, c, o. Forward and backward run in the compiled
    core over the whole sequence.

    Args:
        units: int > 0, H, the size of the output and of both states.
        activation: for the candidate and the cell output: a name -- "tanh" (default),
            "sigmoid", "hard_sigmoid" (Keras 3's `relu6(x + 3) / 6`), "relu", "linear", "elu",
            "softsign", "softplus", "selu", "swish", "exponential" -- computed inside the
            compiled core, or None for linear. A Python callable `f(ndarray) -> ndarray` also
            works but runs a NumPy loop over timesteps (much slower); give it a
            `backward(x, y, grad_y)` attribute (see `pylstm.activations.get`) for exact
            training gradients, else training uses a float64 central difference.
        recurrent_activation: for the gates i, f, o; same choices, default "sigmoid".
        use_bias: bool, whether the layer has a `bias (4H,)`.
        kernel_initializer: for `kernel (D, 4H)`, default "glorot_uniform".
        recurrent_initializer: for `recurrent_kernel (H, 4H)`, default "orthogonal".
        bias_initializer: for `bias`, default "zeros".
        unit_forget_bias: if True, the forget-gate slice of the bias starts at 1 (and the
            other slices use `bias_initializer`), as in Keras (Jozefowicz et al. 2015).
        kernel_regularizer, recurrent_regularizer, bias_regularizer: `pylstm.regularizers`
            names, configs or objects (L1, L2, L1L2, ...), or None; their penalties join the
            training loss and `model.losses`.
        activity_regularizer: a regularizer applied to the layer's output(s).
        kernel_constraint, recurrent_constraint, bias_constraint: `pylstm.constraints`
            names, configs or objects (MaxNorm, MinMaxNorm, NonNeg, UnitNorm), a callable
            `w -> w`, or None; applied after each optimizer step.
        dropout: float in [0, 1), fraction of the input features dropped while training.
        recurrent_dropout: float in [0, 1), fraction of `h_{t-1}` dropped in the recurrent
            product while training. Both are variational (Gal & Ghahramani 2016, as Keras 3):
            one mask per sample is drawn per call and reused at every timestep, survivors are
            scaled by `1 / (1 - rate)`, and nothing is dropped at inference.
        seed: int or None. Seeds the dropout masks and the weight initializers that have no
            seed of their own, so a seeded layer is reproducible.
        return_sequences: return the whole output sequence `(B, T, H)` rather than the
            last output `(B, H)`.
        return_state: also return the final states: `[output, h_n, c_n]`.
        go_backwards: process the sequence from its end, and return the output sequence in
            that (reversed) order, as Keras does.
        stateful: if True, the final state of sample i of a batch is the initial state of
            sample i of the next batch. The batch size is fixed by the input's declared batch
            size (`Input(batch_size=...)` / `batch_shape`) or else by the first batch;
            `reset_state()` zeroes the states (or only the samples of a mask).
        unroll, use_cudnn: accepted for compatibility with Keras configs; they have no effect
            (the compiled core always runs the loop itself, on the CPU).
        zero_output_for_mask: if True, masked timesteps output zeros instead of repeating
            the previous output (Keras's RNN argument).
        proj_size: int or None (pylstm's extension; PyTorch's `proj_size`): with P > 0, an LSTM
            with a projection layer (LSTMP, Sak et al. 2014): `h_t = (o * activation(c_t)) @
            projection`, `projection (H, P)` appended to the weights after `bias`; the
            output and `h` have P features (`recurrent_kernel` is `(P, 4H)`), `c` keeps H.
            Must be smaller than `units`.
        **kwargs: `name`, `trainable`, `dtype` ("float32" or "float64"), `input_shape`.

    Call arguments:
        inputs: `(B, T, D)` float array (float32 or float64, cast to the layer's dtype); need
            not be contiguous.
        initial_state: None (zeros, or the carried state when stateful) or a list
            `[h_0 (B, P), c_0 (B, H)]`, P = `proj_size` or `units`.
        training: bool; True caches what `backward` needs and applies dropout.
        mask: None or a `(B, T)` boolean array, True on real steps; any pattern (right or left
            padding, holes, fully masked rows). On a masked step the state is carried
            unchanged and the output repeats the previous output (zeros before any, or always
            zeros with `zero_output_for_mask`), as Keras's generic RNN loop does.
        lengths: None or `(B,)` ints in `[1, T]` (pylstm's extension, PyTorch's packed
            sequences): each sample's real steps, padding on the right. Only real steps are
            computed (the batch shrinks as samples end); outputs past a sample's end are
            zeros, the last output (`return_sequences=False`) and the final states are each
            sample's at its last real step. With
            `go_backwards` each sample starts at its own last real step. Not with `mask`.

    Returns:
        `(B, T, P)` if `return_sequences` else `(B, P)` (P = `proj_size` or `units`), in the
        layer's dtype; with `return_state`, the list `[output, h_n (B, P), c_n (B, H)]`.

    Raises:
        TypeError: `inputs` is not a real floating array (integers, objects, strings).
        ValueError: `inputs` is not 3-D, has a feature size other than the one the layer was
            built for, an empty batch, zero timesteps, or NaN/inf; a wrong `initial_state`
            or `mask` shape; a stateful layer given a batch of another size; an invalid
            constructor argument.

    Example:
    >>> import numpy as np, pylstm
    >>> lstm = pylstm.layers.LSTM(4, return_sequences=True, return_state=True, seed=0)
    >>> y, h, c = lstm(np.zeros((32, 10, 8), dtype="float32"))
    >>> y.shape, h.shape, c.shape
    ((32, 10, 4), (32, 4), (32, 4))
    """

    supports_masking = True

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
                 recurrent_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, recurrent_constraint=None, bias_constraint=None,
                 dropout=0.0, recurrent_dropout=0.0, seed=None, return_sequences=False,
                 return_state=False, go_backwards=False, stateful=False, unroll=False,
                 use_cudnn="auto", zero_output_for_mask=False, proj_size=None, **kwargs):
        super().__init__(
            units, activation, recurrent_activation, use_bias, kernel_initializer,
            recurrent_initializer, bias_initializer, unit_forget_bias, kernel_regularizer,
            recurrent_regularizer, bias_regularizer, kernel_constraint, recurrent_constraint,
            bias_constraint, dropout, recurrent_dropout, seed,
            activity_regularizer=activity_regularizer, **kwargs)
        if use_cudnn not in ("auto", True, False):
            raise ValueError(f"Argument `use_cudnn` must be 'auto', True or False (as Keras), "
                             f"received {use_cudnn!r}.")
        if proj_size is not None and (isinstance(proj_size, bool) or
                                      not isinstance(proj_size, (int, np.integer)) or
                                      not 0 <= proj_size < units):
            raise ValueError(f"Argument `proj_size` must be None or an int in [0, units={units}), "
                             f"received {proj_size!r}.")
        self.proj_size = int(proj_size) if proj_size else None
        self._init_sequence_args(return_sequences, return_state, go_backwards, stateful, unroll,
                                 zero_output_for_mask)
        self.use_cudnn = use_cudnn
        self._cache = None

    @property
    def _output_size(self):
        """P: the size of the output and of h (the projection size, else `units`)."""
        return self.proj_size or self.units

    def build(self, input_shape):
        self._check_sequence_shape(input_shape)
        D, H, P = int(input_shape[-1]), self.units, self._output_size
        self._build_lstm_weights(D, P)
        self.projection = None
        if self.proj_size:
            self.projection = self.add_weight("projection", (H, P),
                                              self._seeded(self.kernel_initializer, 3))
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        B, T = input_shape[0], input_shape[1]
        P = self._output_size
        out = (B, T, P) if self.return_sequences else (B, P)
        if self.return_state:
            return [out, (B, P), (B, self.units)]
        return out

    def call(self, inputs, training=False, initial_state=None, mask=None, lengths=None):
        x = check_array(inputs, "inputs", ndim=3)
        if not self.built:
            self.build(x.shape)
        D = self.kernel.shape[0]
        if x.shape[-1] != D:
            raise ValueError(f"Argument `inputs` must have {D} features (last axis), as layer "
                             f"'{self.name}' was built for; received shape {x.shape}.")
        if x.shape[0] == 0:
            raise ValueError(f"Argument `inputs` has an empty batch (shape {x.shape}); "
                             f"need >= 1 sample.")
        if x.shape[1] == 0:
            raise ValueError(f"Argument `inputs` has zero timesteps (shape {x.shape}); "
                             f"need >= 1 step.")
        check_finite(x, "inputs")
        B, H, P = x.shape[0], self.units, self._output_size
        h0 = c0 = None
        if initial_state is not None:
            if not isinstance(initial_state, (list, tuple)) or len(initial_state) != 2:
                raise ValueError(f"Argument `initial_state` must be a list [h_0 ({B}, {P}), "
                                 f"c_0 ({B}, {H})], received {initial_state!r:.200}.")
            h0 = check_array(initial_state[0], "initial_state[0]", shape=(B, P), dtype=self.dtype)
            c0 = check_array(initial_state[1], "initial_state[1]", shape=(B, H), dtype=self.dtype)
            check_finite(h0, "initial_state[0]")
            check_finite(c0, "initial_state[1]")
        elif self.stateful:
            self._check_stateful_batch(B)
            if self._carried is not None:
                h0, c0 = self._carried[0].h, self._carried[0].c
        # scanned for NaN and inf above: ops does not scan them again
        checked = ("x", "h0", "c0") if initial_state is not None else ("x",)
        y, h_n, c_n, cache = self._lstm_forward(
            x, h0, c0, training, checked=checked,
            projection=None if self.projection is None else self.projection.value, mask=mask,
            reverse=self.go_backwards, zero_output_for_mask=self.zero_output_for_mask,
            return_sequences=self.return_sequences, lengths=lengths)
        if self.go_backwards and self.return_sequences:
            y = y[:, ::-1]
        if self.stateful:
            self._carry([(h_n, c_n)])
        self._cache = cache
        self._had_initial_state = initial_state is not None
        if self.return_state:
            return [y, h_n, c_n]
        return y

    def initial_state(self, batch_size=1):
        """A zero `pylstm.streaming.LSTMState` (`h (batch_size, P)`, `c (batch_size, H)`) to
        start `step` from."""
        return LSTMState.zeros(batch_size, self.units, self._output_size, dtype=self.dtype)

    def step(self, inputs, state=None, *, out=None):
        """Runs one timestep, for applications that receive their input a step at a time.

        The step runs in compiled code with the GIL released; with `out` and a `state` it
        writes in place and allocates nothing. Stepping through a sequence gives the same
        outputs as calling the layer on the whole sequence (inference: no dropout).

        Args:
            inputs: `(B, D)` float array, this timestep's features.
            state: a `pylstm.streaming.LSTMState` (`initial_state(B)`, or the one the previous
                step returned), or None for zeros. It is updated in place and returned.
            out: optional `(B, P)` array of the layer's dtype to write the output into.

        Returns:
            `(output (B, P), state)`.

        Raises:
            TypeError, ValueError: bad shapes or dtypes, NaN/inf; `go_backwards` (the reverse
                direction needs the whole sequence).

        Example:
        >>> import numpy as np, pylstm
        >>> lstm = pylstm.layers.LSTM(4, seed=0)
        >>> state = lstm.initial_state(batch_size=2)
        >>> for x_t in np.zeros((3, 2, 5), dtype="float32"):
        ...     y, state = lstm.step(x_t, state)
        >>> y.shape, state.c.shape
        ((2, 4), (2, 4))
        """
        if self.go_backwards:
            raise ValueError(f"Layer '{self.name}' has go_backwards=True: the reverse direction "
                             f"needs the whole sequence, so it cannot be stepped.")
        x = np.asarray(inputs)
        if not self.built:
            if x.ndim != 2:
                raise ValueError(f"Argument `inputs` of step must be 2-D (batch, features), "
                                 f"received shape {x.shape}.")
            self.build((None, None, x.shape[-1]))
        stepper = self._stepper()
        if state is None:
            state = self.initial_state(x.shape[0] if x.ndim == 2 else 1)
        return stepper.step(x, state, out=out, new_state=state)

    def _stepper(self):
        weights = (self.kernel.value, self.recurrent_kernel.value,
                   None if self.bias is None else self.bias.value,
                   None if self.projection is None else self.projection.value)
        # One tuple, read once: a thread that rebuilds it while another steps replaces it
        # whole. The stepper keeps its scratch per thread, so threads may share it.
        cached = getattr(self, "_step_cache", None)
        if cached is None or any(a is not b for a, b in zip(cached[0], weights)):
            cached = (weights, LSTMStepper(*weights[:3], projection=weights[3],
                                           activation=self.activation,
                                           recurrent_activation=self.recurrent_activation))
            self._step_cache = cached
        return cached[1]

    def compute_mask(self, inputs, mask=None):
        # As Keras: the input mask, not reversed under go_backwards.
        out = mask if self.return_sequences else None
        return [out, None, None] if self.return_state else out

    def backward(self, grad_outputs):
        """Backpropagates through the last `call(..., training=True)`.

        Args:
            grad_outputs: gradient of the loss with respect to the call's output, same shape;
                with `return_state`, a list `[d_output, d_h_n, d_c_n]` (any may be None).

        Returns:
            `(B, T, D)` gradient with respect to `inputs`; if the call was given an
            `initial_state`, the pair `(d_inputs, [d_h_0, d_c_0])`. Weight gradients are
            added into `kernel.grad`, `recurrent_kernel.grad` and `bias.grad`.

        Raises:
            RuntimeError: the layer was not called with `training=True` first.
            ValueError: a gradient has the wrong shape.
        """
        if self._cache is None:
            raise RuntimeError(f"Layer '{self.name}': call it with training=True before "
                               f"backward().")
        dh_n = dc_n = None
        if self.return_state:
            dy, dh_n, dc_n = grad_outputs
        else:
            dy = grad_outputs
        if dy is not None and self.go_backwards and self.return_sequences:
            dy = np.asarray(dy)[:, ::-1]
        grads = ops.lstm_backward(self._cache, dy, dh_n, dc_n)
        self._add_weight_grads(grads)
        if self.projection is not None:
            self.projection.grad += grads["projection"]
        if self._had_initial_state:
            return grads["x"], [grads["h0"], grads["c0"]]
        return grads["x"]

    def get_config(self):
        config = super().get_config()
        config.update(
            **self._lstm_config(),
            **self._sequence_config(),
            use_cudnn=self.use_cudnn,
        )
        if self.proj_size:
            config["proj_size"] = self.proj_size
        return config

