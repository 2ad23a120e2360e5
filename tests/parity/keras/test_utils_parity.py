"""`pylstm.utils.pad_sequences`, `to_categorical` and `timeseries_dataset_from_array` against
Keras 3's `keras.utils` on many argument combinations: the same arrays (values, shapes,
dtypes), and errors where Keras raises."""

import itertools

import numpy as np
import pytest
import pylstm_tests_keras_util as ku
from hypothesis import given, settings
from hypothesis import strategies as st

from pylstm import utils

keras = ku.keras

SEQUENCES = {
    "ragged": [[1], [2, 3], [4, 5, 6], [7, 8, 9, 10, 11]],
    "with_empty": [[], [3, 1], [], [5, 6, 7]],
    "floats": [[1.5, -2.7], [3.9], [0.2, 0.4, 0.6, 0.8]],
    "arrays": [np.arange(4), np.arange(2), np.arange(7)],
    "items": [np.ones((2, 3)), np.zeros((5, 3)), np.full((1, 3), 2.0)],
    "array_2d": np.arange(12).reshape(3, 4),
    "tuples": ((1, 2), (3,), (4, 5, 6)),
}


@pytest.mark.parametrize("name", sorted(SEQUENCES))
@pytest.mark.parametrize("maxlen, padding, truncating", [
    (None, "pre", "pre"), (None, "post", "post"), (2, "pre", "pre"), (2, "post", "pre"),
    (2, "pre", "post"), (3, "post", "post"), (6, "pre", "post"), (1, "post", "pre")])
def test_pad_sequences_matches_keras(name, maxlen, padding, truncating):
    sequences = SEQUENCES[name]
    kwargs = {"maxlen": maxlen, "padding": padding, "truncating": truncating}
    expected = keras.utils.pad_sequences(sequences, **kwargs)
    got = utils.pad_sequences(sequences, **kwargs)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype, value", [
    ("int32", 0.0), ("float32", -1.0), ("float64", 0.5), ("int64", 9), ("int8", -3),
    (object, "pad"), ("<U4", "x"), ("bool", 0)])
def test_pad_sequences_dtype_and_value_match_keras(dtype, value):
    sequences = [[1.7, 2], [3], [4, 5, 0, 6]] if dtype not in (object, "<U4") else [
        ["a", "bb"], ["c"], []]
    for padding in ("pre", "post"):
        kwargs = {"dtype": dtype, "value": value, "padding": padding, "maxlen": 3}
        expected = keras.utils.pad_sequences(sequences, **kwargs)
        got = utils.pad_sequences(sequences, **kwargs)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("sequences, kwargs", [
    (5, {}),                                                  # no length
    ([[1, 2], 3], {}),                                        # an item without one
    ([[1, 2], [3]], {"padding": "middle"}),
    ([[1, 2], [3]], {"truncating": "both"}),
    ([[1, 2], [3]], {"value": "x"}),                          # str value, int dtype
    ([np.ones((2, 3)), np.ones((2, 4))], {}),                 # item shapes differ
    ([[1, 2], [3]], {"maxlen": -1}),
])
def test_pad_sequences_refuses_what_keras_refuses(sequences, kwargs):
    with pytest.raises(ValueError):
        keras.utils.pad_sequences(sequences, **kwargs)
    with pytest.raises(ValueError):
        utils.pad_sequences(sequences, **kwargs)


@pytest.mark.parametrize("x, num_classes", [
    ([0, 1, 2, 3], None), ([0, 1, 2, 3], 6), ([[1], [0], [2]], None), ([[1, 2], [0, 0]], 4),
    (np.array([[[3]], [[1]]]), None), ([2.9, 0.1, 1.5], None), (np.arange(5, dtype="int8"), 5),
    ([1], 0), (np.array([[1]]), None), ([3], None), (np.zeros((2, 3, 1), dtype=int), 2),
    ([], 3),
])
def test_to_categorical_matches_keras(x, num_classes):
    expected = keras.utils.to_categorical(x, num_classes)
    got = utils.to_categorical(x, num_classes)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("x, num_classes", [([0, 5], 3), (["a", "b"], None)])
def test_to_categorical_refuses_what_keras_refuses(x, num_classes):
    with pytest.raises((ValueError, IndexError)):
        keras.utils.to_categorical(x, num_classes)
    with pytest.raises(ValueError):
        utils.to_categorical(x, num_classes)


def _keras_batches(*args, **kwargs):
    dataset = keras.utils.timeseries_dataset_from_array(*args, **kwargs)
    return [tuple(np.asarray(t) for t in b) if isinstance(b, tuple) else np.asarray(b)
            for b in dataset]


def _assert_same_batches(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        for g_part, e_part in zip(g if isinstance(g, tuple) else (g,),
                                  e if isinstance(e, tuple) else (e,)):
            assert g_part.dtype == e_part.dtype and g_part.shape == e_part.shape
            np.testing.assert_array_equal(g_part, e_part)


DATA = np.arange(50, dtype="float32").reshape(25, 2) / 7
TARGETS = np.arange(25) * 3


@pytest.mark.parametrize(
    "sequence_length, sequence_stride, sampling_rate, batch_size, start_index, end_index",
    [(5, 1, 1, 4, None, None), (3, 2, 1, 128, None, None), (4, 3, 2, 3, None, None),
     (2, 1, 3, 5, 4, None), (6, 2, 1, 2, None, 20), (3, 1, 1, 4, 5, 15),
     (5, 1, 1, None, None, None),
     (25, 1, 1, 8, None, None), (30, 1, 1, 8, None, None), (2, 24, 1, 1, 0, None),
     (1, 1, 1, 7, 3, 9), (4, 5, 5, 2, 1, 24)])
@pytest.mark.parametrize("with_targets", [True, False])
def test_timeseries_dataset_matches_keras(sequence_length, sequence_stride, sampling_rate,
                                          batch_size, start_index, end_index, with_targets):
    targets = TARGETS if with_targets else None
    kwargs = {"sequence_stride": sequence_stride, "sampling_rate": sampling_rate,
              "batch_size": batch_size, "start_index": start_index, "end_index": end_index}
    expected = _keras_batches(DATA, targets, sequence_length, **kwargs)
    dataset = utils.timeseries_dataset_from_array(DATA, targets, sequence_length, **kwargs)
    assert len(dataset) == len(expected)
    _assert_same_batches(list(dataset), expected)
    _assert_same_batches([dataset[i] for i in range(len(dataset))], expected)


@pytest.mark.parametrize("data, targets", [
    (np.arange(30), np.arange(30) * 2.0),                     # 1-D series, float targets
    (np.arange(60.0).reshape(20, 3), np.arange(12)),          # fewer targets than windows
    (np.arange(40.0).reshape(10, 2, 2), np.ones((10, 3))),    # items and targets of rank 2
])
def test_timeseries_dataset_shapes_and_dtypes_match_keras(data, targets):
    for length, batch in itertools.product((1, 4), (3, None)):
        expected = _keras_batches(data, targets, length, batch_size=batch)
        got = list(utils.timeseries_dataset_from_array(data, targets, length, batch_size=batch))
        _assert_same_batches(got, expected)


def test_timeseries_dataset_shuffled_holds_keras_windows_in_a_new_order_per_pass():
    data, targets = np.arange(200.0), np.arange(200) + 1000
    expected = _keras_batches(data, targets, 6, batch_size=16, shuffle=True, seed=3)
    dataset = utils.timeseries_dataset_from_array(data, targets, 6, batch_size=16,
                                                  shuffle=True, seed=3)
    passes = [list(dataset) for _ in range(2)]

    def pairs(batches):
        return sorted((tuple(x), y) for bx, by in batches for x, y in zip(bx, by))

    assert pairs(passes[0]) == pairs(passes[1]) == pairs(expected)
    assert [len(b[0]) for b in passes[0]] == [len(b[0]) for b in expected]
    assert not np.array_equal(passes[0][0][1], passes[1][0][1])
    again = list(utils.timeseries_dataset_from_array(data, targets, 6, batch_size=16,
                                                     shuffle=True, seed=3))
    _assert_same_batches(again, passes[0])


@pytest.mark.parametrize("kwargs", [
    {"start_index": -1}, {"start_index": 25}, {"end_index": 25}, {"end_index": -2},
    {"start_index": 5, "end_index": 5}, {"sampling_rate": 0}, {"sampling_rate": 25},
    {"sequence_stride": 0}, {"sequence_stride": 30},
])
def test_timeseries_dataset_refuses_what_keras_refuses(kwargs):
    with pytest.raises(ValueError) as keras_error:
        keras.utils.timeseries_dataset_from_array(DATA, TARGETS, 3, **kwargs)
    with pytest.raises(ValueError) as error:
        utils.timeseries_dataset_from_array(DATA, TARGETS, 3, **kwargs)
    assert str(error.value) == str(keras_error.value)


def _same_outcome(ours, theirs):
    """Runs both; both raise a ValueError (Keras's timeseries errors are ValueErrors too, its
    failures while batching are TensorFlow's), or both give the same batches."""
    try:
        expected = theirs()
    except Exception:  # noqa: BLE001 - Keras fails in ValueError or TensorFlow's errors
        with pytest.raises(ValueError):
            ours()
        return
    _assert_same_batches(ours(), expected)


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(0, 6), min_size=1, max_size=5),
       maxlen=st.one_of(st.none(), st.integers(1, 7)),
       padding=st.sampled_from(["pre", "post"]), truncating=st.sampled_from(["pre", "post"]),
       value=st.integers(-3, 3), dtype=st.sampled_from(["int32", "float32", "int64"]))
def test_pad_sequences_random_sweep(lengths, maxlen, padding, truncating, value, dtype):
    sequences = [list(range(1 + 10 * i, 1 + 10 * i + n)) for i, n in enumerate(lengths)]
    kwargs = {"maxlen": maxlen, "padding": padding, "truncating": truncating, "value": value,
              "dtype": dtype}
    expected = keras.utils.pad_sequences(sequences, **kwargs)
    got = utils.pad_sequences(sequences, **kwargs)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 30), length=st.integers(1, 8), stride=st.integers(1, 6),
       rate=st.integers(1, 4), batch=st.one_of(st.none(), st.integers(1, 9)),
       start=st.one_of(st.none(), st.integers(0, 12)), end=st.one_of(st.none(), st.integers(1, 30)),
       n_targets=st.one_of(st.none(), st.integers(1, 30)))
def test_timeseries_random_sweep(n, length, stride, rate, batch, start, end, n_targets):
    data = np.arange(2 * n, dtype="float32").reshape(n, 2)
    targets = None if n_targets is None else np.arange(n_targets) * 10
    kwargs = {"sequence_stride": stride, "sampling_rate": rate, "batch_size": batch,
              "start_index": start, "end_index": end}
    _same_outcome(
        lambda: list(utils.timeseries_dataset_from_array(data, targets, length, **kwargs)),
        lambda: _keras_batches(data, targets, length, **kwargs))
