"""`Model.export(path, format="onnx")`, Keras 3's method: the file pylstm.onnx.export writes."""

import numpy as np
import pytest

from pylstm.layers import LSTM, Dense, Input
from pylstm.models import Model, Sequential
from pylstm_tests import require

onnx = require("onnx")
onnxruntime = require("onnxruntime")


def _run(path, feed):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def test_sequential_export_runs_in_onnxruntime(tmp_path, capsys):
    model = Sequential([Input((None, 3)), LSTM(5), Dense(2)])
    path = tmp_path / "model.onnx"
    model.export(path, format="onnx", opset_version=17)
    assert capsys.readouterr().out == f"Saved artifact at '{path}'.\n"
    assert onnx.load(str(path)).opset_import[0].version == 17
    x = np.random.default_rng(0).standard_normal((4, 6, 3)).astype(np.float32)
    (y,) = _run(path, {"input": x})
    np.testing.assert_allclose(y, model.predict(x, verbose=0), atol=1e-5)


def test_functional_export_quiet(tmp_path, capsys):
    inputs = Input((None, 3), name="series")
    model = Model(inputs, Dense(1)(LSTM(4)(inputs)))
    path = tmp_path / "model.onnx"
    model.export(path, format="onnx", verbose=False)
    assert capsys.readouterr().out == ""
    x = np.random.default_rng(1).standard_normal((2, 5, 3)).astype(np.float32)
    (y,) = _run(path, {"series": x})
    np.testing.assert_allclose(y, model.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    ({}, "format.*'tf_saved_model'"),
    ({"format": "openvino"}, "format.*'openvino'"),
    ({"format": "onnx", "input_signature": [None]}, "input_signature"),
    ({"format": "onnx", "opset": 17}, "opset_version"),
])
def test_refusals(tmp_path, kwargs, match):
    model = Sequential([Input((None, 3)), LSTM(2)])
    with pytest.raises(ValueError, match=match):
        model.export(tmp_path / "model.onnx", **kwargs)
    assert not (tmp_path / "model.onnx").exists()
