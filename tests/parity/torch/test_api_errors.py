"""A `PackedSequence` with `sorted_indices` only is unsorted as PyTorch unsorts it. The other
malformed arguments: unit/test_api_errors.py."""

import numpy as np
from pylstm_tests import require

from pylstm import nn
from pylstm.nn.utils import rnn


def _packed(**fields):
    """A valid `PackedSequence` of 3 samples (lengths 3, 2, 1 after sorting), fields replaced."""
    data = np.arange(12, dtype="float32").reshape(6, 2)
    base = dict(data=data, batch_sizes=np.array([3, 2, 1]), sorted_indices=np.array([2, 0, 1]),
                unsorted_indices=np.array([1, 2, 0]))
    base.update(fields)
    return rnn.PackedSequence(**base)


def test_packed_sequence_with_sorted_indices_only_is_unsorted_as_in_torch():
    """PyTorch computes `unsorted_indices` from `sorted_indices` when only that is given."""
    torch = require("torch")

    full = _packed()
    padded, lengths = rnn.pad_packed_sequence(full._replace(unsorted_indices=None))
    expected, expected_lengths = rnn.pad_packed_sequence(full)
    np.testing.assert_array_equal(padded, expected)
    np.testing.assert_array_equal(lengths, expected_lengths)
    t_padded, t_lengths = torch.nn.utils.rnn.pad_packed_sequence(torch.nn.utils.rnn.PackedSequence(
        torch.from_numpy(full.data), torch.from_numpy(full.batch_sizes),
        torch.from_numpy(full.sorted_indices)))
    np.testing.assert_array_equal(padded, t_padded.numpy())
    np.testing.assert_array_equal(lengths, t_lengths.numpy())
    lstm = nn.LSTM(2, 3, seed=0).eval()
    (h_only, c_only), (h_full, c_full) = (lstm(p)[1] for p in (
        full._replace(unsorted_indices=None), full))
    np.testing.assert_array_equal(h_only, h_full)
    np.testing.assert_array_equal(c_only, c_full)
