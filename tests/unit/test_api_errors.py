"""Malformed `PackedSequence`s, states and absurd sizes end in a ValueError or TypeError that
names the argument (issue 12), never an IndexError, an OverflowError, a MemoryError, a hang or
a silently wrong result. Regressions of an odd-argument sweep over the public entry points."""

import numpy as np
import pytest

from pylstm import layers, models, nn, ops, streaming
from pylstm.nn.utils import rnn

ERRORS = (ValueError, TypeError)


def _packed(**fields):
    """A valid `PackedSequence` of 3 samples (lengths 3, 2, 1 after sorting), fields replaced."""
    data = np.arange(12, dtype="float32").reshape(6, 2)
    base = dict(data=data, batch_sizes=np.array([3, 2, 1]), sorted_indices=np.array([2, 0, 1]),
                unsorted_indices=np.array([1, 2, 0]))
    base.update(fields)
    return rnn.PackedSequence(**base)


MALFORMED = [  # (fields, exception, text naming the field and the problem)
    (dict(batch_sizes=np.array([], dtype=np.int64), data=np.zeros((0, 2), "float32")),
     ValueError, r"batch_sizes` must not be empty"),
    (dict(batch_sizes=np.array([3, 0, 3])), ValueError, r"batch_sizes` must be >= 1"),
    (dict(batch_sizes=np.array([3, -1, 4])), ValueError, r"batch_sizes` must be >= 1"),
    (dict(batch_sizes=np.array([2, 3, 1])), ValueError, r"batch_sizes` must be non-increasing"),
    (dict(batch_sizes=np.array([3, 3, 1])), ValueError, r"batch_sizes` must sum to the 6 rows"),
    (dict(batch_sizes=np.array([3, 2])), ValueError, r"batch_sizes` must sum to the 6 rows"),
    (dict(batch_sizes=np.array([2**62, 2**62, 2**62])), ValueError, r"batch_sizes` must sum to"),
    (dict(batch_sizes=np.array([3.0, 2.0, 1.0])), TypeError, r"batch_sizes` must be an array of int"),
    (dict(batch_sizes=np.array([True, True])), TypeError, r"batch_sizes` must be an array of int"),
    (dict(batch_sizes=np.array([[3, 2, 1]])), ValueError, r"batch_sizes` must be 1-D"),
    (dict(batch_sizes=np.array(6)), ValueError, r"batch_sizes` must be 1-D"),
    (dict(batch_sizes=None), TypeError, r"batch_sizes` must be a numeric array"),
    (dict(batch_sizes=np.array([2**64 - 1], dtype=np.uint64)), ValueError,
     r"batch_sizes` holds values over the int64 range"),
    (dict(sorted_indices=np.array([0, 5, 1])), ValueError, r"sorted_indices` must be a permutation"),
    (dict(sorted_indices=np.array([0, 0, 1])), ValueError, r"sorted_indices` must be a permutation"),
    (dict(sorted_indices=np.array([-1, 0, 1])), ValueError, r"sorted_indices` must be a permutation"),
    (dict(sorted_indices=np.array([1, 0])), ValueError, r"sorted_indices` must have one entry per"),
    (dict(sorted_indices=np.array([1.0, 0.0, 2.0])), TypeError, r"sorted_indices` must be an array"),
    (dict(unsorted_indices=np.array([2, 2, 0])), ValueError, r"unsorted_indices` must be a permut"),
    (dict(unsorted_indices=np.array([0, 1, 2])), ValueError,
     r"sorted_indices` and `\w+\.unsorted_indices` must be inverse permutations"),
    (dict(data=np.float32(1.0)), ValueError, r"data` must have a first axis"),
    (dict(data=np.array([[object()]] * 6)), TypeError, r"data` must be a numeric array"),
    (dict(data=np.array(["a"] * 6)), TypeError, r"data` must be a numeric array"),
]


@pytest.mark.parametrize("fields, error, message", MALFORMED)
def test_malformed_packed_sequence_is_refused_by_pad(fields, error, message):
    with pytest.raises(error, match=rf"`sequence\.{message}"):
        rnn.pad_packed_sequence(_packed(**fields))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("fields, error, message", MALFORMED)
def test_malformed_packed_sequence_is_refused_by_nn_lstm(fields, error, message, training):
    lstm = nn.LSTM(2, 3, num_layers=2, bidirectional=True, seed=0).train(training)
    with pytest.raises(error, match=rf"`input\.{message}"):
        lstm(_packed(**fields))


def test_packed_sequence_must_be_one():
    with pytest.raises(TypeError, match="`sequence` must be a PackedSequence"):
        rnn.pad_packed_sequence((np.zeros((2, 1)), np.array([1, 1])))
    with pytest.raises(TypeError, match="`total_length` must be an int"):
        rnn.pad_packed_sequence(_packed(), total_length="7")


def test_packed_sequence_fields_come_back_normalized():
    """Integer fields of any integer dtype and byte order are accepted (int64 returned)."""
    packed = _packed(batch_sizes=np.array([3, 2, 1], dtype=">i4"),
                     sorted_indices=np.array([2, 0, 1], dtype=np.uint8))
    out, _ = nn.LSTM(2, 3, seed=0).eval()(packed)
    assert out.batch_sizes.dtype == np.int64 and out.batch_sizes.dtype.isnative
    assert out.sorted_indices.dtype == np.int64
    np.testing.assert_array_equal(out.unsorted_indices, [1, 2, 0])


BAD_HX = [  # (hx, exception, message)
    ((np.zeros((1, 2, 3), "float32"),), TypeError, r"`hx` must be a pair"),
    ([np.zeros((1, 2, 3), "float32")] * 3, TypeError, r"`hx` must be a pair"),
    (np.zeros((2, 1, 2, 3), "float32"), TypeError, r"`hx` must be a pair"),
    ("hc", TypeError, r"`hx` must be a pair"),
    ((np.zeros((1, 2, 3), "float32"), None), TypeError, r"`hx\[1\]`"),
    ((np.zeros((1, 2, 3), "int64"), np.zeros((1, 2, 3), "float32")), TypeError, r"`hx\[0\]`"),
    ((np.zeros((1, 2, 3), "float32"), np.zeros((1, 2, 4), "float32")), ValueError, r"`hx\[1\]`"),
    ((np.zeros((2, 3), "float32"), np.zeros((1, 2, 3), "float32")), ValueError, r"`hx\[0\]`"),
    ((np.full((1, 2, 3), np.nan, "float32"), np.zeros((1, 2, 3), "float32")), ValueError, "NaN"),
    ((["a"], ["b"]), TypeError, r"`hx\[0\]`"),
]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("hx, error, message", BAD_HX)
def test_malformed_hx_of_nn_lstm(hx, error, message, training):
    lstm = nn.LSTM(4, 3, seed=0).train(training)
    with pytest.raises(error, match=message):
        lstm(np.zeros((5, 2, 4), "float32"), hx)


def _cell_hx(hx):
    """A `BAD_HX` case for a cell: `(N, H)` states, the layer axis dropped."""
    if not isinstance(hx, (tuple, list)):
        return hx
    return type(hx)(a[0] if isinstance(a, np.ndarray) and a.ndim == 3 else a for a in hx)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("hx, error, message", BAD_HX[:7] + BAD_HX[8:] + [
    ((np.zeros(3, "float32"), np.zeros((2, 3), "float32")), ValueError, r"`hx\[0\]`")])
def test_malformed_hx_of_nn_lstm_cell(hx, error, message, training):
    cell = nn.LSTMCell(4, 3, seed=0).train(training)
    hx = _cell_hx(hx)
    with pytest.raises(error, match=message):
        cell(np.zeros((2, 4), "float32"), hx)


@pytest.mark.parametrize("state, error, message", [
    ([np.zeros((2, 3), "float32")], ValueError, r"`initial_state` must be a list"),
    ("hc", ValueError, r"`initial_state` must be a list"),
    ([np.zeros((2, 3), "float32"), np.zeros((2, 4), "float32")], ValueError,
     r"`initial_state\[1\]` must have shape \(2, 3\)"),
    ([None, np.zeros((2, 3), "float32")], TypeError, r"`initial_state\[0\]`"),
    ([np.zeros((2, 3), "int32"), np.zeros((2, 3), "float32")], TypeError, r"`initial_state\[0\]`"),
    ([np.zeros((2, 3), "float32"), np.full((2, 3), np.inf, "float32")], ValueError,
     r"`initial_state\[1\]` contains"),
])
def test_malformed_initial_state_of_layers_lstm(state, error, message):
    lstm = layers.LSTM(3, seed=0)
    with pytest.raises(error, match=message):
        lstm(np.zeros((2, 5, 4), "float32"), initial_state=state)


@pytest.mark.parametrize("values, error, message", [
    ({"h": np.zeros((2, 3), "float32")}, ValueError, r"exactly the keys"),
    ({"h": np.zeros((2, 3)), "c": np.zeros((2, 3)), "x": 1}, ValueError, r"exactly the keys"),
    ([("h", 1), ("c", 2)], TypeError, r"`values` must be a mapping"),
    (None, TypeError, r"`values` must be a mapping"),
    ({"h": None, "c": np.zeros((2, 3), "float32")}, TypeError, r"`h`"),
    ({"h": "abc", "c": np.zeros((2, 3), "float32")}, TypeError, r"`h`"),
    ({"h": np.zeros((2, 3), "float32"), "c": np.zeros((2, 3), "float64")}, TypeError, r"`c`"),
    ({"h": np.zeros((2, 3), "float32"), "c": np.zeros((3, 3), "float32")}, ValueError,
     r"same batch size"),
    ({"h": [[1.0, 2.0], [3.0]], "c": np.zeros((2, 3), "float32")}, TypeError, r"`h`"),
])
def test_malformed_state_dicts(values, error, message):
    with pytest.raises(error, match=message):
        streaming.LSTMState.from_dict(values)


def test_state_from_dict_is_a_copy():
    values = {"h": np.zeros((2, 3), "float32"), "c": np.zeros((2, 3), "float32")}
    state = streaming.LSTMState.from_dict(values)
    state.reset()
    state.h[...] = 1
    assert not values["h"].any()


@pytest.mark.parametrize("values, error", [
    ({"h": np.zeros((2, 1, 3), "float32")}, ValueError),
    ({"h": np.zeros((2, 3), "float32"), "c": np.zeros((2, 3), "float32")}, ValueError),
    ({"h": np.zeros((2, 1, 3), "int8"), "c": np.zeros((2, 1, 3), "float32")}, TypeError),
    ({"h": "x", "c": "y"}, ValueError),
    ("hc", TypeError),
])
def test_malformed_step_state_dicts(values, error):
    with pytest.raises(error):
        nn.LSTMStepState.from_dict(values)


# A broadcast view claims any size without holding it: validation must refuse it before
# copying, casting or scanning it (each of these raised MemoryError, or scanned for seconds).
HUGE = np.broadcast_to(np.float32(0), (10**6, 10**6, 3))
HUGE_2D = np.broadcast_to(np.float32(0), (10**12, 3))


@pytest.mark.parametrize("call", [
    lambda: ops.lstm_forward(np.zeros((1, 1, 3), "float32"), HUGE_2D,
                             np.zeros((4, 16), "float32")),
    lambda: ops.lstm_forward(HUGE, np.zeros((3, 16), "float32"), np.zeros((4, 16), "float32")),
    lambda: layers.LSTM(4)(HUGE),
    lambda: nn.LSTMCell(3, 4)(HUGE_2D),
    lambda: nn.LSTM(3, 4)(HUGE),
    lambda: streaming.LSTMState(HUGE_2D, HUGE_2D),
    lambda: streaming.LSTMState.from_dict({"h": HUGE_2D, "c": HUGE_2D}),
    lambda: nn.LSTMStepState(HUGE_2D),
    lambda: _set(HUGE_2D),
    lambda: rnn.pad_sequence([HUGE_2D, np.zeros((1, 3), "float32")]),
    lambda: rnn.pad_sequence([np.zeros((1, 3), "float32")], padding_side=HUGE),
    lambda: ops.lstm_forward(np.zeros((2, 2, 3), "float32"), np.zeros((3, 16), "float32"),
                             np.zeros((4, 16), "float32"), lengths=[2, 1], padding_side=HUGE),
])
def test_absurd_views_are_refused_before_any_copy(call):
    with pytest.raises(ERRORS):
        call()


def _set(weights):
    layer = layers.LSTM(4)
    layer.build((None, 2, 3))
    layer.set_weights(weights)


@pytest.mark.parametrize("call, message", [
    (lambda: streaming.LSTMState.zeros(2**40, 4), r"`batch_size` asks for"),
    (lambda: streaming.LSTMState.zeros(2, 2**40), r"`units` asks for"),
    (lambda: nn.LSTMStepState.zeros(2**40, 2, 4), r"`num_layers` asks for"),
    (lambda: nn.LSTM(3, 4).initial_state(2**40), r"`batch_size` asks for"),
    (lambda: layers.LSTM(4).initial_state(2**40), r"`batch_size` asks for"),
    (lambda: nn.LSTM(3, 4, num_layers=2**40), r"parameters asks for"),
    (lambda: nn.LSTM(2**40, 4), r"int32 limit"),
    (lambda: nn.LSTM(3, 2**40), r"int32 limit"),
    (lambda: nn.LSTMCell(3, 2**40), r"int32 limit"),
    (lambda: layers.LSTM(2**40)(np.zeros((1, 2, 3), "float32")), r"int32 limit"),
    (lambda: layers.LSTM(4).build((None, 2, 2**40)), r"int32 limit"),
    (lambda: rnn.pad_packed_sequence(_packed(), total_length=2**50), r"`total_length` asks for"),
])
def test_absurd_sizes_are_refused_before_allocating(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("verbose", [float("inf"), float("nan"), "loud", None, HUGE])
@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_bad_verbose(method, verbose):
    """An OverflowError (inf), and a scan of an array compared with "auto", before."""
    model = models.Sequential([layers.Input(shape=(2, 3)), layers.LSTM(2), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.zeros((2, 2, 3), "float32"), np.zeros((2, 1), "float32")
    args = (x,) if method == "predict" else (x, y)
    with pytest.raises(ValueError, match="`verbose` must be 'auto' or an int"):
        getattr(model, method)(*args, verbose=verbose)
