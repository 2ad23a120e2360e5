"""pylstm.nn.utils.rnn against torch.nn.utils.rnn on the same data."""

import numpy as np
import pytest
from pylstm_tests import require

from pylstm.nn.utils import rnn

torch = require("torch")
trnn = require("torch.nn.utils.rnn")


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("enforce_sorted", [False, True])
def test_pack_and_pad_match_torch(batch_first, enforce_sorted):
    rng = np.random.default_rng(0)
    lengths = np.array([6, 4, 3, 1]) if enforce_sorted else np.array([3, 6, 1, 4])
    x = rng.normal(size=(6, 4, 2)).astype(np.float32)
    if batch_first:
        x = x.transpose(1, 0, 2).copy()
    got = rnn.pack_padded_sequence(x, lengths, batch_first=batch_first,
                                   enforce_sorted=enforce_sorted)
    want = trnn.pack_padded_sequence(torch.tensor(x), torch.tensor(lengths),
                                     batch_first=batch_first, enforce_sorted=enforce_sorted)
    np.testing.assert_array_equal(got.data, want.data.numpy())
    np.testing.assert_array_equal(got.batch_sizes, want.batch_sizes.numpy())
    for a, b in [(got.sorted_indices, want.sorted_indices),
                 (got.unsorted_indices, want.unsorted_indices)]:
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b.numpy())
    padded, lens = rnn.pad_packed_sequence(got, batch_first=batch_first, padding_value=-1.0,
                                           total_length=8)
    tpadded, tlens = trnn.pad_packed_sequence(want, batch_first=batch_first, padding_value=-1.0,
                                              total_length=8)
    np.testing.assert_array_equal(padded, tpadded.numpy())
    np.testing.assert_array_equal(lens, tlens.numpy())


@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_sequence_and_pack_sequence_match_torch(side):
    rng = np.random.default_rng(1)
    seqs = [rng.normal(size=(n, 3)).astype(np.float32) for n in (2, 5, 4)]
    got = rnn.pad_sequence(seqs, batch_first=True, padding_value=7.0, padding_side=side)
    want = trnn.pad_sequence([torch.tensor(s) for s in seqs], batch_first=True,
                             padding_value=7.0, padding_side=side)
    np.testing.assert_array_equal(got, want.numpy())
    packed = rnn.pack_sequence(seqs, enforce_sorted=False)
    tpacked = trnn.pack_sequence([torch.tensor(s) for s in seqs], enforce_sorted=False)
    np.testing.assert_array_equal(packed.data, tpacked.data.numpy())
    np.testing.assert_array_equal(packed.batch_sizes, tpacked.batch_sizes.numpy())
    np.testing.assert_array_equal(packed.sorted_indices, tpacked.sorted_indices.numpy())
