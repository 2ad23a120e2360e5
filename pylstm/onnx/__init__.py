"""ONNX interop (`pylstm.onnx`): `export` writes pylstm models as ONNX graphs with one `LSTM`
node per LSTM, which ONNX Runtime runs with the same numbers; `load` runs ONNX LSTM graphs
(`torch.onnx.export`'s, for example) with NumPy, the LSTM nodes on pylstm's compiled core,
or with `as_model=True` rebuilds a plain stack of LSTM and dense layers as a trainable
`Sequential`.

Needs the optional `onnx` package (`pip install pylstm[onnx]`) to build and parse files.
"""

from pylstm.onnx._export import export
from pylstm.onnx._import import OnnxModel, load

__all__ = ["OnnxModel", "export", "load"]
