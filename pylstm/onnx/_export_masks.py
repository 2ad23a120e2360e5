"""Masks in exported graphs: the `(B, T)` bool mask tensors that layers pass on, the merge
layers that compute with them, and a masked Keras LSTM as one ONNX `LSTM` node with
`sequence_lens`.

pylstm's masked LSTM (Keras 3's RNN loop): on a masked step the state is carried and the output
is the previous step's output (zeros before the first real step), or zeros with
`zero_output_for_mask`; the last output is the output of the last processed step; the final
state is the state after the last real step (the initial state if there is none).

One ONNX node reads each sample's first `sequence_lens` steps. So each sample's mask must be a
run of real steps at the end (left padding, `pad_sequences`' default) or at the start (right
padding); left-padded samples are brought to right padding before the node (time flipped, then
the first `len` steps reversed: `ReverseSequence`) and back after it, and the masked steps get
what pylstm outputs there. A sample whose mask has a hole gets NaN outputs and states: one node
cannot express it, and the graph never gives a wrong number silently.
"""

import numpy as np

_INT64_MIN = np.iinfo(np.int64).min


def not_equal(g, x, value, base):
    """`x != value` elementwise (bool)."""
    equal = g.op("Equal", [x, value], f"{base}_equal")
    return g.op("Not", [equal], base)


def any_last_axis(g, m, base):
    """`any(m, axis=-1)` of a bool tensor."""
    counts = g.op("Cast", [m], f"{base}_int", to=g.onnx.TensorProto.INT64)
    total = g.op("ReduceSum", [counts, g.int64([-1])], f"{base}_count", keepdims=0)
    return g.op("Greater", [total, g.int64(0)], base)


def expand_mask(g, m, x, base):
    """The `(B, T)` mask `m` broadcast over the features of `x (B, T, F)` (bool)."""
    return g.op("Expand", [g.op("Unsqueeze", [m, g.int64([-1])], f"{base}_m3"),
                           g.op("Shape", [x], f"{base}_shape")], base)


def flip_time(g, x, base):
    """`x` reversed along axis 0 (time, in time-major tensors)."""
    return g.op("Slice", [x, g.int64([-1]), g.int64([_INT64_MIN]), g.int64([0]),
                          g.int64([-1])], base)


def mask_btf(g, m, base):
    """The `(B, T)` mask as `(B, T, 1)`, to select among `(B, T, F)` entries."""
    return g.op("Unsqueeze", [m, g.int64([-1])], base)


def multiply(g, base, xs, masks, every):
    """Keras's Multiply: a masked entry counts as 1; entries masked in every input give 0."""
    out = None
    for k, (x, m) in enumerate(zip(xs, masks)):
        if m is not None:
            x = g.op("Where", [mask_btf(g, m, f"{base}_m{k}"), x,
                               g.weight("one", np.ones(()), "one")], f"{base}_factor{k}")
        out = x if out is None else g.op("Mul", [out, x], f"{base}_{k}")
    if every is not None:
        out = g.op("Where", [mask_btf(g, every, f"{base}_kept"), out,
                             g.weight("zero", np.zeros(()), "zero")], f"{base}_masked")
    return g.op("Identity", [out], f"{base}_out")


def extremum(g, base, op_type, xs, masks):
    """Keras's Maximum / Minimum: masked entries are left out; an entry masked in every
    input takes the first input's value."""
    out, mask = xs[0], masks[0]
    for k, (x, m) in enumerate(zip(xs[1:], masks[1:]), 1):
        if m is not None:
            x = g.op("Where", [mask_btf(g, m, f"{base}_m{k}"), x, out], f"{base}_x{k}")
        if mask is not None:
            out = g.op("Where", [mask_btf(g, mask, f"{base}_acc_m{k}"), out, x],
                       f"{base}_acc{k}")
        mask = None if m is None or mask is None else g.op("Or", [mask, m], f"{base}_or{k}")
        out = g.op(op_type, [out, x], f"{base}_{k}")
    return g.op("Identity", [out], f"{base}_out")


def concatenate_mask(g, layer, xs, masks):
    """Keras's Concatenate mask: each input's mask over its entries (all True unmasked),
    concatenated along `axis`, any over the last axis."""
    if all(m is None for m in masks):
        return None
    full = [g.op("Expand", [g.weight_bool("true", True),
                            g.op("Shape", [x], f"{layer.name}_shape{k}")],
                 f"{layer.name}_all{k}") if m is None
            else expand_mask(g, m, x, f"{layer.name}_m{k}")
            for k, (x, m) in enumerate(zip(xs, masks))]
    joined = g.op("Concat", full, f"{layer.name}_mask_joined", axis=layer.axis)
    return any_last_axis(g, joined, f"{layer.name}_mask")


class MaskPlan:
    """What a `(B, T)` mask says about each sample, as graph tensors.

    Attributes (tensor names): `lengths (B,)` int64 real steps; `clamped (B,)` int64 and
    `lengths_i32 (B,)` int32, at least 1 (`ReverseSequence`'s lengths and the node's
    `sequence_lens`; an all-masked sample's one step is discarded: its outputs are zeros);
    `nonempty (B,)`; `post`, `pre (B,)` right / left padded; `use_pre (B,)` left padded only;
    `ok (B,)` one of the two; `mask_tb (T, B)` the mask time-major; `steps (T,)` int64
    0..T-1; `T` a 1-element int64 tensor.
    """

    def __init__(self, g, m, base):
        self.g, self.base = g, base
        onnx = g.onnx
        self.mask_tb = g.op("Transpose", [m], f"{base}_mask_tb", perm=[1, 0])
        ints = g.op("Cast", [m], f"{base}_mask_int", to=onnx.TensorProto.INT64)
        self.lengths = g.op("ReduceSum", [ints, g.int64([1])], f"{base}_len", keepdims=0)
        self.T = g.op("Slice", [g.op("Shape", [m], f"{base}_mask_shape"), g.int64([1]),
                                g.int64([2]), g.int64([0])], f"{base}_T")
        T_scalar = g.op("Squeeze", [self.T, g.int64([0])], f"{base}_T_scalar")
        self.steps = g.op("Range", [g.int64(0), T_scalar, g.int64(1)], f"{base}_steps")
        zero = g.int64([0])
        self.nonempty = g.op("Greater", [self.lengths, zero], f"{base}_nonempty")
        self.clamped = g.op("Max", [self.lengths, g.int64([1])], f"{base}_len_clamped")
        self.lengths_i32 = g.op("Cast", [self.clamped], f"{base}_seq_lens",
                                to=onnx.TensorProto.INT32)
        self.start = g.op("Sub", [self.T, self.lengths], f"{base}_start")  # left padding's
        steps_bt = g.op("Unsqueeze", [self.steps, zero], f"{base}_steps_bt")  # (1, T)
        post = g.op("Less", [steps_bt, self._column(self.lengths, "len")], f"{base}_post_mask")
        pre = g.op("GreaterOrEqual", [steps_bt, self._column(self.start, "start")],
                   f"{base}_pre_mask")
        self.post = self._matches(post, m, "post")
        self.pre = self._matches(pre, m, "pre")
        self.use_pre = g.op("And", [self.pre, g.op("Not", [self.post], f"{base}_not_post")],
                            f"{base}_use_pre")
        self.ok = g.op("Or", [self.post, self.pre], f"{base}_ok")
        self._right = {}

    def _column(self, v, what):
        return self.g.op("Unsqueeze", [v, self.g.int64([1])], f"{self.base}_{what}_col")

    def _matches(self, expected, m, what):
        """Per sample: `m` equals `expected` at every step."""
        g = self.g
        differ = g.op("Cast", [g.op("Xor", [expected, m], f"{self.base}_{what}_xor")],
                      f"{self.base}_{what}_diff", to=g.onnx.TensorProto.INT64)
        count = g.op("ReduceSum", [differ, g.int64([1])], f"{self.base}_{what}_count",
                     keepdims=0)
        return g.op("Equal", [count, g.int64([0])], f"{self.base}_{what}")

    def per_sample(self, flags, rank, batch_axis, base):
        """`flags (B,)` reshaped to broadcast on a tensor of `rank` with the batch at
        `batch_axis`."""
        axes = [a for a in range(rank) if a != batch_axis]
        return self.g.op("Unsqueeze", [flags, self.g.int64(axes)], base)

    def to_right(self, x_tb, base):
        """Time-major `x (T, B, ...)` with left-padded samples moved to right padding (their
        real steps first, in order)."""
        g = self.g
        flipped = flip_time(g, x_tb, f"{base}_flipped")
        moved = g.op("ReverseSequence", [flipped, self.clamped], f"{base}_moved",
                     batch_axis=1, time_axis=0)
        return g.op("Where", [self.per_sample(self.use_pre, 3, 1, f"{base}_use_pre"),
                              moved, x_tb], base)

    def from_right(self, y_tb, rank, base):
        """The inverse of `to_right` on `y (T, B, ...)` of `rank` that is zero past each
        sample's length (the node's output): left-padded samples get their zeros first."""
        g = self.g
        reversed_ = g.op("ReverseSequence", [y_tb, self.clamped], f"{base}_unmoved",
                         batch_axis=1, time_axis=0)
        back = flip_time(g, reversed_, f"{base}_back")
        return g.op("Where", [self.per_sample(self.use_pre, rank, 1, f"{base}_use_pre"),
                              back, y_tb], base)

    def carried_steps(self, reverse, base):
        """`(T, B)` bool: the masked steps after a direction's last real step, where pylstm
        repeats the last output: past `len` in right-padded samples read forward, before the
        first real step in left-padded samples read in reverse."""
        g = self.g
        steps_tb = g.op("Unsqueeze", [self.steps, g.int64([1])], f"{base}_steps_tb")  # (T, 1)
        if not reverse:
            end = g.op("Where", [self.post, self.lengths, self.T], f"{base}_end")
            return g.op("GreaterOrEqual", [steps_tb, g.op("Unsqueeze", [end, g.int64([0])],
                                                          f"{base}_end_row")], base)
        start = g.op("Where", [self.pre, self.start, g.int64([0])], f"{base}_begin")
        return g.op("Less", [steps_tb, g.op("Unsqueeze", [start, g.int64([0])],
                                            f"{base}_begin_row")], base)


def masked_lstm(g, plan, run_node, x_tbd, flags, base, initial_h="", initial_c=""):
    """A masked Keras LSTM (one or two directions) as one ONNX node with `sequence_lens`.

    `run_node(x_tbd, sequence_lens)` appends the node and returns `Y (T, dirs, B, H)`, `Y_h`,
    `Y_c (dirs, B, H)`; `flags` gives per direction `(reverse, zero_output_for_mask)`;
    `initial_h`, `initial_c (dirs, B, H)` or "" (zeros). Returns, like the node and in input
    order, `Y (T, dirs, B, H)` as pylstm outputs it, the last outputs `(dirs, B, H)` (the
    output of each direction's last processed step) and the final `Y_h`, `Y_c (dirs, B, H)`;
    NaN for samples whose mask has a hole.
    """
    Y, Y_h, Y_c = run_node(plan.to_right(x_tbd, f"{base}_X_right"), plan.lengths_i32)
    Y = g.op("Transpose", [Y], f"{base}_Y_tb", perm=[0, 2, 1, 3])  # (T, B, dirs, H)
    Y = plan.from_right(Y, 4, f"{base}_Y_input_order")
    nonempty = plan.per_sample(plan.nonempty, 3, 1, f"{base}_nonempty_dbh")
    zeros = g.weight("zero", np.zeros(()), "zero")
    nan = g.weight("nan", np.array(np.nan), "nan")
    mask_tb = g.op("Unsqueeze", [plan.mask_tb, g.int64([2])], f"{base}_mask_tb1")  # (T, B, 1)
    # Zero on every masked step (an all-masked sample ran one step: sequence_lens >= 1).
    Y = g.op("Where", [g.op("Unsqueeze", [mask_tb, g.int64([3])], f"{base}_mask_tb11"), Y,
                       zeros], f"{base}_Y_real")
    states = []
    for state, initial, which in ((Y_h, initial_h, "h"), (Y_c, initial_c, "c")):
        states.append(g.op("Where", [nonempty, state, initial or zeros], f"{base}_{which}_n"))
    # pylstm's output before any real step is zero, also with an initial state.
    outputs = g.op("Where", [nonempty, Y_h, zeros], f"{base}_last_real")
    sequences, lasts = [], []
    for k, (reverse, zero_output) in enumerate(flags):
        y_k = g.op("Gather", [Y, g.int64(k)], f"{base}_Y{k}", axis=2)  # (T, B, H)
        out_k = g.op("Gather", [outputs, g.int64(k)], f"{base}_out{k}", axis=0)  # (B, H)
        fill = zeros if zero_output else out_k
        if not zero_output:
            carried = g.op("Unsqueeze", [plan.carried_steps(reverse, f"{base}_carried{k}"),
                                         g.int64([2])], f"{base}_carried{k}_tb1")
            y_k = g.op("Where", [carried, out_k, y_k], f"{base}_Y{k}_carried")
        edge = g.op("Gather", [mask_tb, g.int64(0 if reverse else -1)], f"{base}_edge{k}",
                    axis=0)  # (B, 1): is the last processed step real?
        lasts.append(g.op("Where", [edge, out_k, fill], f"{base}_last{k}"))
        sequences.append(y_k)
    Y = g.op("Concat", [g.op("Unsqueeze", [y, g.int64([1])], f"{y}_d") for y in sequences],
             f"{base}_Y_masked", axis=1)  # (T, dirs, B, H)
    last = g.op("Concat", [g.op("Unsqueeze", [v, g.int64([0])], f"{v}_d") for v in lasts],
                f"{base}_last", axis=0)
    ok_t = plan.per_sample(plan.ok, 4, 2, f"{base}_ok_tdbh")
    ok = plan.per_sample(plan.ok, 3, 1, f"{base}_ok_dbh")
    Y = g.op("Where", [ok_t, Y, nan], f"{base}_Y_checked")
    last, Y_h, Y_c = (g.op("Where", [ok, v, nan], f"{base}_{which}_checked")
                      for v, which in ((last, "last"), (states[0], "h"), (states[1], "c")))
    return Y, last, Y_h, Y_c
