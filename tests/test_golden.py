"""The golden fixture (tests/golden.py): today's code reproduces the saved results, bitwise on
the machine and libraries that wrote them, and to rounding elsewhere."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("pylstm_tests_golden", HERE / "golden.py")
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)

with open(HERE / "data" / golden.FIXTURE) as f:
    SAVED = json.load(f)
BITWISE = golden.signature() == SAVED["signature"]


@pytest.fixture(scope="module")
def computed():
    return golden.compute()


def test_same_cases(computed):
    assert sorted(computed) == sorted(SAVED["cases"])
    for name, arrays in computed.items():
        assert sorted(arrays) == sorted(SAVED["cases"][name]), name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_results(computed, dtype):
    tol = {"float32": 2e-4, "float64": 1e-9}[dtype]
    bad = []
    for name, arrays in computed.items():
        if not name.startswith(dtype):
            continue
        for key, got in arrays.items():
            want = SAVED["cases"][name][key]
            assert (got["shape"], got["dtype"]) == (want["shape"], want["dtype"]), (name, key)
            if BITWISE:
                if got["sha256"] != want["sha256"]:
                    bad.append(f"{name}:{key}")
            elif not np.allclose(got["samples"], want["samples"], rtol=tol, atol=tol):
                bad.append(f"{name}:{key}: {got['samples'][:4]} != {want['samples'][:4]}")
    mode = "bitwise" if BITWISE else f"to {tol} (fixture from {SAVED['signature']})"
    assert not bad, f"{len(bad)} results differ {mode}: " + "; ".join(bad[:20])
