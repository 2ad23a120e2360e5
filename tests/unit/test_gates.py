"""The gate math's constants: the compiled core (pylstm/_gates.h) and the NumPy side
(pylstm.activations, which pylstm._reference imports) hold the same numbers."""

from pylstm import _reference, activations
from pylstm._kernels import core as _core


def test_selu_constants_agree():
    assert _core.GATE_CONSTANTS == {"selu_alpha": activations._SELU_ALPHA,
                                    "selu_scale": activations._SELU_SCALE}
    assert _reference._SELU_ALPHA is activations._SELU_ALPHA
    assert _reference._SELU_SCALE is activations._SELU_SCALE
