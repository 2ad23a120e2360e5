"""ONNX interop: run ONNX LSTM graphs with NumPy on pylstm's core (`load`).

Needs the optional `onnx` package (`pip install pylstm[onnx]`) to parse files.
"""

from pylstm.onnx._import import OnnxModel, load
from pylstm.onnx._export import export

__all__ = ["OnnxModel", "load"]
