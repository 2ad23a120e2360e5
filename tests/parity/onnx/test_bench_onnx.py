"""benchmarks/bench_onnx.py's correctness check, run before timing: the pylstm model, ONNX
Runtime on pylstm.onnx.export's file, pylstm.onnx.load of torch.onnx.export's file and ONNX
Runtime on it all give PyTorch's output on tiny shapes; a wrong weight is caught."""

import os
import sys

import numpy as np
import pytest
from pylstm_tests import require

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))), "benchmarks"))

from _common import Case  # noqa: E402


@pytest.mark.parametrize("case", [Case("seq", 2, 3, 4, 5), Case("step", 1, 1, 4, 5),
                                  Case("bidi", 2, 3, 4, 5)], ids=lambda c: c.kind)
def test_check_passes_and_catches_a_wrong_weight(case, tmp_path):
    require("torch")
    require("onnx")
    require("onnxruntime")
    import bench_onnx

    problem = bench_onnx.Problem(case, 1, str(tmp_path), np.random.default_rng(0))
    diffs = problem.check()
    assert set(diffs) == {"export: pylstm model", "export: ONNX Runtime",
                          "import: pylstm OnnxModel", "import: ONNX Runtime"}
    assert max(diffs.values()) < 1e-5
    weights = problem.model.layers[0].get_weights()
    weights[0] = weights[0] + 0.5
    problem.model.layers[0].set_weights(weights)
    with pytest.raises(AssertionError, match="export: pylstm model"):
        problem.check()
