"""What a training forward keeps for `lstm_backward`: one small class per route family.

`lstm_backward` runs the backward that matches the cache's type: `ReferenceCache` (the NumPy
route), `DenseCache` (the core on dense input), `LengthsCache` (the core on input packed by
`lengths`) and `PackedCache` (`lstm_forward_packed`).
"""


class LSTMCache:
    """What `lstm_forward(..., training=True)` keeps for `lstm_backward`.

    It holds references to the weights, not copies: run `lstm_backward` before the weights
    change (as a training step does: forward, backward, then the optimizer update).

    Arrays are in the weights' dtype; N is the number of real (timestep, sample) rows, T*B
    without lengths, and rows are grouped by timestep, as `_core` documents. The attributes
    from `gates` on are set by the compiled routes only (on a `ReferenceCache` they are None).

    Attributes:
        x: `(T, B, D)` time-major inputs, or `(N, D)` packed rows (before input dropout).
        kernel: the forward's `kernel`.
        recurrent_kernel: the forward's `recurrent_kernel`.
        projection: the forward's `projection`, or None without.
        has_bias: whether the forward had a bias.
        reverse: the forward's option.
        return_sequences: the forward's option.
        time_major: the forward's option.
        dropout_mask: `(R, B, D)` input dropout masks, R = 1 or 4 (one per gate), or None.
        recurrent_dropout_mask: `(R, B, P)` recurrent dropout masks, or None.
        packing: None (dense input), "lengths" or "packed".
        reference: the NumPy route's cache when an activation is a Python callable, else
            None.
        gates: `(T, B, 4H)` or `(N, 4H)` activated gates i, f, g, o.
        zs: gate pre-activations of the same shape, kept only when a gate's activation needs
            its input for its derivative (swish); else None.
        hs: `(N + B, P)` recurrent-state slots: each row's new state, plus B slots for the
            initial states; `h_prev` is the `(N, P)` view of every row's previous state.
        cs: `(N + B, H)` cell-state slots, likewise.
        ms: `(N, H)` pre-projection outputs `o * act(c)`, or None without projection.
        batch_sizes: `(T,)` the samples running at each step; `row_sample`: None, or `(N,)`
            each packed row's sample within its step.

    Example:

    >>> import numpy as np
    >>> from pylstm import ops
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2, 5, 3)).astype("float32")
    >>> kernel, recurrent_kernel = np.ones((3, 16), "float32"), np.ones((4, 16), "float32")
    >>> y, h_n, c_n, cache = ops.lstm_forward(x, kernel, recurrent_kernel, training=True)
    >>> isinstance(cache, ops.LSTMCache), cache.x.shape, cache.gates.shape
    (True, (5, 2, 3), (5, 2, 16))
    >>> ops.lstm_backward(cache, dy=np.ones_like(y))["kernel"].shape
    (3, 16)
    """

    packing = None
    reference = None
    gates = zs = hs = cs = h_prev = ms = acts = batch_sizes = row_sample = None

    def __init__(self, x, kernel, recurrent_kernel, projection, has_bias, reverse,
                 dropout_mask, recurrent_dropout_mask, return_sequences, time_major):
        self.x = x
        self.kernel = kernel
        self.recurrent_kernel = recurrent_kernel
        self.projection = projection
        self.has_bias = has_bias
        self.reverse = reverse
        self.dropout_mask = dropout_mask
        self.recurrent_dropout_mask = recurrent_dropout_mask
        self.return_sequences = return_sequences
        self.time_major = time_major


class ReferenceCache(LSTMCache):
    """The NumPy route's cache: `reference` is `pylstm._reference.lstm_forward`'s."""

    def __init__(self, reference, **common):
        super().__init__(**common)
        self.reference = reference


class _CoreCache(LSTMCache):
    """A compiled route's cache: the per-row arrays of `_core.forward` and `acts`, the five
    activation codes."""

    def __init__(self, core, mask, zero_output, **common):
        super().__init__(**common)
        self.mask = mask                 # (T, B) uint8 time-major, or None
        self.zero_output = zero_output
        self.gates = core["gates"]
        self.zs = core["zs"]
        self.hs = core["hs"]
        self.cs = core["cs"]
        self.h_prev = core["h_prev"]
        self.ms = core["ms"]
        self.acts = core["acts"]
        self.batch_sizes = core["batch_sizes"]
        self.row_sample = core["row_sample"]


class DenseCache(_CoreCache):
    """The compiled routes on dense `(T, B, D)` input, with an optional mask."""


class PackedCache(_CoreCache):
    """`lstm_forward_packed`'s cache: rows packed by step in the caller's order."""

    packing = "packed"

    def __init__(self, core, **common):
        super().__init__(core, None, False, **common)


class LengthsCache(_CoreCache):
    """`lstm_forward(lengths=...)`'s cache: rows packed by step, and where they came from.

    Attributes (besides `LSTMCache`'s): `order` `(B,)` the samples by decreasing length;
    `time`, `sample` `(N,)` each row's timestep and sample in the padded input; `padded_steps`
    its T.
    """

    packing = "lengths"

    def __init__(self, core, order, time, sample, padded_steps, **common):
        super().__init__(core, None, False, **common)
        self.order = order
        self.time = time
        self.sample = sample
        self.padded_steps = padded_steps
