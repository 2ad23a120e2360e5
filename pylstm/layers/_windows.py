"""Windows over the time axis of `(B, T, C)` sequences, shared by `Conv1D` and the 1-D pooling
layers: argument checks, output lengths and padding amounts as Keras 3 computes them (its
TensorFlow backend's "SAME" rule: the extra padding goes to the right).

Legend: T input length, `span` a window's extent in input steps (`dilation * (size - 1) + 1`),
`stride` the step between windows, T_out the output length.
"""

import numpy as np


def single_int(value, name, owner):
    """`value` as a positive int; a list or tuple of one int is accepted, as Keras's
    `standardize_tuple` writes 1-D sizes into configs (`"kernel_size": [3]`).

    Raises:
        ValueError: naming `name` and `owner`, for anything else.
    """
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Argument `{name}` of {owner} must be a positive int or a tuple of one, "
                         f"received {value!r}.")
    return int(value)


def padding_mode(padding, allowed, owner):
    """`padding` lower-cased (Keras accepts any case).

    Raises:
        ValueError: for a value outside `allowed`.
    """
    mode = padding.lower() if isinstance(padding, str) else padding
    if mode not in allowed:
        raise ValueError(f"Argument `padding` of {owner} must be one of {', '.join(allowed)}, "
                         f"received {padding!r}.")
    return mode


def channels_last(data_format, owner):
    """Checks `data_format`: pylstm computes on `(B, T, C)` inputs only.

    Raises:
        ValueError: for anything but None or `"channels_last"`.
    """
    if data_format not in (None, "channels_last"):
        raise ValueError(f"Argument `data_format` of {owner} must be 'channels_last' (pylstm "
                         f"computes on (batch, steps, channels) inputs), received {data_format!r}.")
    return "channels_last"


def output_length(length, span, stride, padding, owner):
    """T_out for an input of T = `length` steps (None when T is None).

    Raises:
        ValueError: "valid" windows that do not fit in the input, as Keras raises.
    """
    if length is None:
        return None
    if padding == "valid":
        out = (length - span) // stride + 1
        if out <= 0:
            raise ValueError(f"{owner}: the output would have {out} steps: an input of {length} "
                             f"steps is shorter than its window of {span} steps with "
                             f"padding='valid'.")
        return out
    return (length - 1) // stride + 1


def pad_amounts(length, span, stride, padding):
    """`(left, right)` steps of padding before the windows are taken."""
    if padding == "valid":
        return 0, 0
    if padding == "causal":
        return span - 1, 0
    total = max(((length - 1) // stride) * stride + span - length, 0)
    return total // 2, total - total // 2
