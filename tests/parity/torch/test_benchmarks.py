"""The benchmark harness's correctness check, run before timing: pylstm against PyTorch and
ONNX Runtime on tiny shapes (benchmarks/bench_lstm.py); it passes, and catches a wrong weight."""

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
def test_correctness_check_passes_and_catches_a_wrong_weight(case):
    torch = require("torch")
    require("onnxruntime")
    import bench_lstm

    problem = bench_lstm.Problem(case, "float32", 1, True, False, np.random.default_rng(0))
    diffs = problem.check(1e-4, 2e-4)
    assert diffs["torch fwd"] < 1e-5
    assert diffs["onnxruntime fwd vs torch"] < 1e-5
    with torch.no_grad():
        problem.module.weight_hh_l0[0, 0] += 0.5
    with pytest.raises(AssertionError, match="torch"):
        problem.check(1e-4, 2e-4)
