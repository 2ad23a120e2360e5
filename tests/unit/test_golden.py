"""The golden fixture (tests/support/golden.py): today's code reproduces the saved results, bitwise
on the machine and libraries that wrote them, and to rounding elsewhere."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from pylstm.layers.layer import Layer

TESTS = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pylstm_tests_golden",
                                               TESTS / "support" / "golden.py")
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)

with open(TESTS / "data" / golden.FIXTURE) as f:
    SAVED = json.load(f)
BITWISE = golden.signature() == SAVED["signature"]


@pytest.fixture(scope="module")
def computed():
    # The fixture's keys hold default layer names, which count the layers made before: compute
    # with the counts of the fresh process that wrote it, whatever tests ran first.
    counts = dict(Layer._name_counts)
    Layer._name_counts.clear()
    try:
        return golden.compute()
    finally:
        Layer._name_counts.clear()
        Layer._name_counts.update(counts)


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
