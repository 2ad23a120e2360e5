"""`pylstm.utils` without Keras: hand-computed results, errors naming the argument, and the
`PyDataset` protocol of `timeseries_dataset_from_array` (parity with Keras:
tests/parity/keras/test_utils_parity.py)."""

import doctest

import numpy as np
import pytest

from pylstm import utils


def test_doctests():
    assert doctest.testmod(utils).failed == 0


def test_pad_sequences_by_hand():
    sequences = [[1, 2, 3, 4], [5], []]
    np.testing.assert_array_equal(utils.pad_sequences(sequences, maxlen=3),
                                  [[2, 3, 4], [0, 0, 5], [0, 0, 0]])
    np.testing.assert_array_equal(
        utils.pad_sequences(sequences, maxlen=3, padding="post", truncating="post", value=-1),
        [[1, 2, 3], [5, -1, -1], [-1, -1, -1]])
    padded = utils.pad_sequences([np.ones((2, 3)), np.ones((1, 3))], dtype="float32")
    assert padded.shape == (2, 2, 3) and padded.dtype == np.float32
    np.testing.assert_array_equal(padded[1, 0], 0.0)
    assert utils.pad_sequences([], maxlen=4).shape == (0, 4)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"padding": "mid"}, ValueError, '`padding` must be "pre" or "post", received \'mid\''),
    ({"truncating": None}, ValueError, '`truncating` must be "pre" or "post"'),
    ({"maxlen": 0}, ValueError, "`maxlen` must be > 0, received 0"),
    ({"maxlen": 2.0}, TypeError, "`maxlen` must be an int or None, received 2.0"),
    ({"value": "x"}, ValueError, "`dtype` int32 is not compatible with `value`'s type"),
])
def test_pad_sequences_errors_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        utils.pad_sequences([[1, 2], [3]], **kwargs)


def test_pad_sequences_refuses_bad_sequences():
    with pytest.raises(ValueError, match="`sequences` must be iterable"):
        utils.pad_sequences(iter([[1]]))
    with pytest.raises(ValueError, match="Found non-iterable: 3"):
        utils.pad_sequences([[1], 3])
    with pytest.raises(ValueError, match="`sequences` is empty: pass `maxlen`"):
        utils.pad_sequences([])
    with pytest.raises(ValueError, match=r"Shape of sample \(2,\) of sequence at position 1"):
        utils.pad_sequences([np.ones((1, 3)), np.ones((2, 2))])


def test_to_categorical_by_hand():
    np.testing.assert_array_equal(utils.to_categorical([[2], [0]]), [[0, 0, 1], [1, 0, 0]])
    out = utils.to_categorical(np.array([[1, 0], [2, 1]]), num_classes=4)
    assert out.shape == (2, 2, 4) and out.dtype == np.float64
    np.testing.assert_array_equal(out.argmax(-1), [[1, 0], [2, 1]])
    np.testing.assert_array_equal(out.sum(-1), 1.0)
    assert utils.to_categorical([], num_classes=2).shape == (0, 2)


@pytest.mark.parametrize("x, num_classes, error, match", [
    ([0, 3], 3, ValueError, r"class ids in \[0, 3\) \(`num_classes`=3\), received 3"),
    ([-1, 0], None, ValueError, r"class ids in \[0, 1\).*received -1"),
    (["a"], None, ValueError, "`x` must hold integer class ids"),
    ([], None, ValueError, "`x` is empty: pass `num_classes`"),
    ([0], 2.5, TypeError, "`num_classes` must be an int or None, received 2.5"),
    ([0], -2, ValueError, "`num_classes` must be >= 0, received -2"),
])
def test_to_categorical_errors(x, num_classes, error, match):
    with pytest.raises(error, match=match):
        utils.to_categorical(x, num_classes)


def test_timeseries_windows_by_hand():
    # Keras's docstring example 1: indices 0..98, length 10, rate 2, stride 3.
    dataset = utils.timeseries_dataset_from_array(np.arange(99), None, 10, sequence_stride=3,
                                                  sampling_rate=2, batch_size=None)
    windows = list(dataset)
    np.testing.assert_array_equal(windows[0], np.arange(0, 20, 2))
    np.testing.assert_array_equal(windows[1], np.arange(3, 23, 2))
    np.testing.assert_array_equal(windows[-1], np.arange(78, 98, 2))
    assert len(dataset) == len(windows) == 27
    # Keras's example 2: the past 10 steps -> the next one.
    data = np.arange(100.0)
    x, y = utils.timeseries_dataset_from_array(data[:-10], data[10:], 10)[0]
    assert x.shape == (81, 10) and y.shape == (81,)
    np.testing.assert_array_equal(x[0], data[:10])
    np.testing.assert_array_equal(x[-1], data[80:90])
    assert y[0] == data[10] and y[-1] == data[90]


def test_timeseries_start_and_end_index_reserve_data():
    data, targets = np.arange(20), np.arange(20) * 10
    x, y = utils.timeseries_dataset_from_array(data, targets, 3, start_index=5, end_index=12)[0]
    np.testing.assert_array_equal(x[:, 0], np.arange(5, 10))
    np.testing.assert_array_equal(x[-1], [9, 10, 11])
    np.testing.assert_array_equal(y, np.arange(5, 10) * 10)
    assert len(utils.timeseries_dataset_from_array(data, targets, 30)) == 0


def test_timeseries_dataset_protocol_and_shuffling():
    data = np.arange(40.0)
    dataset = utils.timeseries_dataset_from_array(data, data, 4, batch_size=8, shuffle=True,
                                                  seed=0)
    assert len(dataset) == 5 and "37 windows of 4 timesteps, 5 batches" in repr(dataset)
    first = [dataset[i] for i in range(len(dataset))]
    assert [len(y) for _, y in first] == [8, 8, 8, 8, 5]
    np.testing.assert_array_equal(dataset[-1][1], first[-1][1])
    for x, y in first:
        np.testing.assert_array_equal(x[:, 0], y)
    assert sorted(np.concatenate([y for _, y in first])) == list(range(37))
    dataset.on_epoch_end()
    second = np.concatenate([dataset[i][1] for i in range(len(dataset))])
    assert sorted(second) == list(range(37))
    assert not np.array_equal(second, np.concatenate([y for _, y in first]))
    with pytest.raises(IndexError, match="Batch index 5 is out of range for 5 batches"):
        dataset[5]
    with pytest.raises(TypeError, match="indexed by an int"):
        dataset[1.0]


def test_timeseries_unseeded_shuffling_follows_set_random_seed():
    def order():
        dataset = utils.timeseries_dataset_from_array(np.arange(30), None, 2, batch_size=None,
                                                      shuffle=True)
        return [int(w[0]) for w in dataset]

    utils.set_random_seed(4)
    first = order()
    utils.set_random_seed(4)
    assert order() == first and first != sorted(first)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"sequence_length": 0}, ValueError, "`sequence_length` must be > 0, received 0"),
    ({"sequence_length": 2.0}, TypeError, "`sequence_length` must be an int, received 2.0"),
    ({"batch_size": 0}, ValueError, "`batch_size` must be > 0 or None, received 0"),
    ({"batch_size": "8"}, TypeError, "`batch_size` must be an int or None"),
    ({"shuffle": 1}, TypeError, "`shuffle` must be a bool, received 1"),
    ({"start_index": -1}, ValueError, "`start_index` must be 0 or greater"),
    ({"sampling_rate": 10}, ValueError, "`sampling_rate` must be lower than the length"),
    ({"targets": np.arange(10)[:4], "start_index": 2}, ValueError,
     "`targets` holds 2 targets from `start_index` 2 on, too few for the window starting at 5"),
])
def test_timeseries_errors_name_the_argument(kwargs, error, match):
    kwargs = {"data": np.arange(10), "targets": None, "sequence_length": 3, **kwargs}
    with pytest.raises(error, match=match):
        utils.timeseries_dataset_from_array(**kwargs)



def test_fit_draws_the_windows_in_their_order_as_keras_draws_a_dataset():
    from pylstm.layers import LSTM, Dense, Input
    from pylstm.models import Sequential

    series = np.sin(np.arange(80) / 4).astype("float32")[:, None]
    x = np.stack([series[i:i + 5] for i in range(75)])

    def trained(data, **kwargs):
        utils.set_random_seed(0)
        model = Sequential([Input((5, 1)), LSTM(3, seed=0), Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        losses = model.fit(data, epochs=2, verbose=0, **kwargs).history["loss"]
        return model, losses

    dataset = utils.timeseries_dataset_from_array(series, series[5:], 5, batch_size=16)
    model, losses = trained(dataset)   # fit's default shuffle=True leaves a dataset's order
    reference, reference_losses = trained(x, y=series[5:80], batch_size=16, shuffle=False)
    np.testing.assert_allclose(losses, reference_losses, rtol=1e-6)
    np.testing.assert_allclose(model.evaluate(dataset, verbose=0),
                               reference.evaluate(x, series[5:80], batch_size=16, verbose=0),
                               rtol=1e-6)


def test_each_pass_draws_a_new_order_even_when_the_last_was_left_unfinished():
    dataset = utils.timeseries_dataset_from_array(np.arange(50), None, 2, batch_size=10,
                                                  shuffle=True, seed=2)
    firsts = [next(iter(dataset)) for _ in range(3)]
    assert not np.array_equal(firsts[0], firsts[1])
    assert not np.array_equal(firsts[1], firsts[2])
