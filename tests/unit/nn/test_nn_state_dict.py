"""`pylstm.nn.LSTM`'s state dict files without the optional packages: a missing safetensors
names the extra to install. The formats themselves: files/test_nn_state_dict.py."""

import sys

import pytest

from pylstm.nn import LSTM, save_state_dict_file


def test_missing_safetensors_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match=r"pylstm\[safetensors\]"):
        save_state_dict_file(LSTM(2, 3).state_dict(), tmp_path / "a.safetensors")
