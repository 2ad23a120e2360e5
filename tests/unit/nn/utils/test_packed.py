"""The packed LSTM entry point (`ops.lstm_forward_packed`) on `pylstm.nn.utils.rnn`'s output
against the lengths path, and bad input. Against torch.nn.utils.rnn:
parity/torch/test_packed.py."""

import numpy as np
import pytest

from pylstm import ops
from pylstm.nn.utils import rnn


def test_packed_entry_point_matches_lengths_path():
    rng = np.random.default_rng(2)
    B, T, D, H = 4, 6, 3, 5
    kernel = rng.normal(size=(D, 4 * H)).astype(np.float32)
    recurrent_kernel = rng.normal(size=(H, 4 * H)).astype(np.float32)
    x = rng.normal(size=(T, B, D)).astype(np.float32)
    lengths = np.array([2, 6, 5, 3])
    packed = rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    y, h_n, c_n, _ = ops.lstm_forward_packed(packed.data, packed.batch_sizes, kernel,
                                             recurrent_kernel, reverse=True)
    want = ops.lstm_forward(x, kernel, recurrent_kernel, lengths=lengths, reverse=True,
                            time_major=True)
    padded, _ = rnn.pad_packed_sequence(rnn.PackedSequence(y, *packed[1:]))
    np.testing.assert_array_equal(padded, want[0])
    np.testing.assert_array_equal(h_n[packed.unsorted_indices], want[1])
    np.testing.assert_array_equal(c_n[packed.unsorted_indices], want[2])


def test_bad_input():
    x = np.zeros((4, 2, 3), np.float32)
    with pytest.raises(ValueError, match="sorted in decreasing order"):
        rnn.pack_padded_sequence(x, [2, 4])
    with pytest.raises(ValueError, match="greater than 0"):
        rnn.pack_padded_sequence(x, [4, 0])
    with pytest.raises(ValueError, match=r"`lengths` must be <= 4"):
        rnn.pack_padded_sequence(x, [5, 2])
    with pytest.raises(ValueError, match=r"`lengths` must have shape \(2,\)"):
        rnn.pack_padded_sequence(x, [4, 2, 1])
    with pytest.raises(TypeError, match=r"`lengths` must be integers"):
        rnn.pack_padded_sequence(x, [4.0, 2.0])
    with pytest.raises(ValueError, match="total_length to be at least"):
        rnn.pad_packed_sequence(rnn.pack_padded_sequence(x, [4, 2]), total_length=3)
    with pytest.raises(TypeError, match="PackedSequence"):
        rnn.pad_packed_sequence(x)
    with pytest.raises(ValueError, match=r"shape \(L, \*\(3,\)\)"):
        rnn.pad_sequence([np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(ValueError, match="at least one array"):
        rnn.pad_sequence([])
