"""State dict files (`pylstm.nn.save_state_dict_file`, `load_state_dict_file`) written from
arrays in the other byte order (`>f4`, `>f8` on a little-endian machine) hold bitwise the
values of the same arrays in native order, and read back in native order. Both formats need
an optional package (safetensors, torch); the other entry points: unit/test_byte_order.py."""

import sys

import numpy as np
import pytest
from pylstm_tests import require

from pylstm import nn

require("safetensors")
require("torch")

_OTHER_ORDER = ">" if sys.byteorder == "little" else "<"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_non_native_arrays_are_saved_as_their_native_values(tmp_path, suffix, dtype):
    rng = np.random.default_rng(12)
    state = {"weight": (0.5 * rng.standard_normal((4, 3))).astype(dtype),
             "bias": (0.5 * rng.standard_normal(4)).astype(dtype)}
    other = {k: v.astype(v.dtype.newbyteorder(_OTHER_ORDER)) for k, v in state.items()}
    assert not other["weight"].dtype.isnative
    nn.save_state_dict_file(state, tmp_path / f"native{suffix}")
    nn.save_state_dict_file(other, tmp_path / f"other{suffix}")
    want = nn.load_state_dict_file(tmp_path / f"native{suffix}")
    got = nn.load_state_dict_file(tmp_path / f"other{suffix}")
    assert sorted(got) == sorted(want) == sorted(state)
    for key, value in state.items():
        assert got[key].dtype.isnative and got[key].dtype == value.dtype
        assert np.asarray(got[key]).tobytes() == np.asarray(want[key]).tobytes()
        assert np.asarray(got[key]).tobytes() == value.tobytes()
