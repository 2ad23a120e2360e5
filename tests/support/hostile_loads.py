"""Loads of hostile files in the isolated worker (`isolated.py`) and checks of their outcome,
shared by the hostile-file tests of pylstm's own format (`unit/models/test_saving_hostile.py`)
and of the state dict formats (`files/test_state_dict_hostile.py`), which import this file by
path; the worker imports it by path too, to run `load_case`."""

import importlib.util
from pathlib import Path

import numpy as np

from pylstm import _atomic_write
from pylstm.models import load_model

HANG_GUARD_S = 240


_spec = importlib.util.spec_from_file_location("pylstm_tests_isolated",
                                               Path(__file__).with_name("isolated.py"))
isolated = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(isolated)


def load_case(case):
    """In the worker: loads `case` (a dict: name, loader, path, ...) and returns what the
    tests compare: the predictions, or the state dict."""
    result = {"name": case["name"]}
    if case["loader"] == "load_model":
        model = load_model(case["path"], **case.get("kwargs", {}))
        result["outputs"] = model.predict(np.load(case["inputs"]), verbose=0).tolist()
        result["compiled"] = model.optimizer is not None
    elif case["loader"] == "nn":
        from pylstm.nn import LSTM

        module = LSTM(3, 4, **case.get("kwargs", {}))
        module.load_state_dict(case["path"])
        result["outputs"] = {k: v.tolist() for k, v in module.state_dict().items()}
    else:
        from pylstm.nn import load_state_dict_file

        arrays = load_state_dict_file(case["path"])
        result["outputs"] = {k: [str(v.dtype), list(v.shape)] for k, v in arrays.items()}
    result["outcome"] = "loaded"
    return result


def run_isolated(cases, memory=2.75 * isolated.GIB, preload=()):
    """Runs `cases` (dicts: name, loader, path, ...) in the isolated worker, its address space
    capped at its size after importing pylstm and `preload` plus `memory`; returns `{name:
    result}`, an exception as outcome "error" (a ValueError or TypeError) or "other". A crash
    or hang fails the test, naming the case it happened in."""
    calls = isolated.run_calls(__file__, "load_case", [(case,) for case in cases],
                               timeout=HANG_GUARD_S, total_timeout=HANG_GUARD_S, memory=memory,
                               preload=[*preload, __file__])
    results, broken = {}, []
    for case, (status, value) in zip(cases, calls):
        if status == "ok":
            results[case["name"]] = value
        elif status == "raised":
            error = "ValueError" in value["mro"] or "TypeError" in value["mro"]
            results[case["name"]] = {"name": case["name"], "outcome": "error" if error else
                                     "other", "type": value["type"].rsplit(".", 1)[-1],
                                     "message": value["message"] if error else
                                     value["message"][:500]}
        else:
            broken.append(f"{case['name']}: {status}: {value}")
    assert not broken, "\n".join(broken[:5])
    return results


def assert_error(result, path, match=None):
    assert result["outcome"] == "error", result
    assert str(path) in result["message"], result
    if match is not None:
        assert match in result["message"], result


class Marker:
    """Unpickling it would create the marker file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def temp_files(folder):
    return sorted(p.name for p in folder.iterdir() if _atomic_write._TEMP_NAME.match(p.name))
