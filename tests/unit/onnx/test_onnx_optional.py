"""pylstm.onnx imports without the optional `onnx` package and says how to get it."""

import sys

import pytest

import pylstm.onnx


def test_load_without_onnx_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install pylstm\[onnx\]"):
        pylstm.onnx.load(b"")
