"""Hostile and damaged state dict files (`.pt`, `.safetensors`, written with torch and
safetensors) through `pylstm.nn.LSTM.load_state_dict` and `load_state_dict_file`, and their
atomic saves.

Each hostile file must end in loaded weights or in a ValueError / TypeError naming the file,
within bounded time and memory: the loads run in the isolated worker (`support/isolated.py`,
through `support/hostile_loads.py`) whose address space is capped (RLIMIT_AS) under a generous
hang guard. Pickle payloads would create a marker file: it must never appear."""

import importlib.util
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pylstm_tests import require

from pylstm.nn import state_dict

_spec = importlib.util.spec_from_file_location(
    "pylstm_tests_hostile_loads",
    Path(__file__).resolve().parents[1] / "support" / "hostile_loads.py")
hl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hl)


# State dict files ---------------------------------------------------------------------------


def state_dict_cases(tmp_path):
    torch = require("torch")
    safetensors_torch = require("safetensors.torch")
    from pylstm.nn import LSTM as NNLSTM

    module = NNLSTM(3, 4, seed=0)
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in module.state_dict().items()}
    marker = tmp_path / "marker_torch"
    cases = []

    def add(name, data, expect_nn, expect_file="same"):
        """expect_*: None (loads), or the substring of the error; "same" as for nn."""
        path = tmp_path / name
        if callable(data):
            data(path)
        else:
            path.write_bytes(data)
        cases.append((name, path, expect_nn, expect_nn if expect_file == "same" else expect_file))

    def pt(obj):
        return lambda path: torch.save(obj, path)

    def st(obj):
        return lambda path: safetensors_torch.save_file(obj, path)

    add("valid.pt", pt(tensors), None)
    add("valid.safetensors", st(tensors), None)
    add("legacy.pt", lambda p: torch.save(tensors, p, _use_new_zipfile_serialization=False),
        None)
    add("float64.safetensors", st({k: v.double() for k, v in tensors.items()}), None)
    good_pt, good_st = tmp_path / "valid.pt", tmp_path / "valid.safetensors"
    for kind in ("pt", "safetensors"):
        good = (pt(tensors) if kind == "pt" else st(tensors))
        good(tmp_path / "tmp_good")
        data = (tmp_path / "tmp_good").read_bytes()
        for fraction in (0, 0.1, 0.5, 0.9, 0.99):
            add(f"truncated_{fraction}.{kind}", data[:int(len(data) * fraction)], "")
        rng = np.random.default_rng(0)
        add(f"random.{kind}", rng.bytes(4096), "")
        prefix = b"PK\x03\x04" if kind == "pt" else struct.pack("<Q", 60) + b'{"a":'
        add(f"random_magic.{kind}", prefix + rng.bytes(4096), "")
    # Pickles that would run code: as a legacy .pt and inside a zip .pt.
    payload = {"weight_ih_l0": hl.Marker(marker)}
    add("pickle_legacy.pt", pickle.dumps(payload), "weights_only=True")

    def zip_pickle(path):
        torch.save(tensors, path)
        with zipfile.ZipFile(path) as z:
            items = [(i, z.read(i)) for i in z.infolist()]
        with zipfile.ZipFile(path, "w") as z:
            for info, data in items:
                z.writestr(info, pickle.dumps(payload) if info.filename.endswith("data.pkl")
                           else data)
    add("pickle_zip.pt", zip_pickle, "weights_only=True")
    # Dtypes that are not real floats NumPy holds.
    for dtype in ("float8_e4m3fn", "bfloat16", "int32", "bool", "complex64"):
        cast = {k: v.to(getattr(torch, dtype)) for k, v in tensors.items()}
        numpy_has = dtype in ("int32", "bool", "complex64")
        add(f"{dtype}.pt", pt(cast), "has dtype", None if numpy_has else "cannot become")
        if dtype != "complex64":
            add(f"{dtype}.safetensors", st(cast), "has dtype", None if numpy_has else
                "has dtype")
    # Shapes, containers and declared sizes.
    wrong = {**tensors, "weight_ih_l0": torch.zeros(2 ** 20, 1).expand(2 ** 20, 2 ** 20)}
    add("expanded_huge.pt", pt(wrong), "shape", None)
    add("wrong_shape.safetensors", st({**tensors, "weight_ih_l0": torch.zeros(5, 5)}), "shape",
        None)
    add("list.pt", pt([1, 2]), "not a state dict")
    add("sparse.pt", pt({**tensors, "weight_ih_l0": tensors["weight_ih_l0"].to_sparse()}),
        "cannot become")
    add("meta.pt", pt({**tensors, "weight_ih_l0": torch.zeros(16, 3, device="meta")}),
        "cannot become")
    add("not_tensor.pt", pt({**tensors, "weight_ih_l0": {"x": torch.zeros(2)}}), "not a tensor")
    add("int_keys.pt", pt({i: v for i, v in enumerate(tensors.values())}), "missing keys",
        None)
    add("nan.pt", pt({**tensors, "bias_hh_l0": tensors["bias_hh_l0"] * np.nan}), "NaN", None)
    add("nan.safetensors", st({**tensors, "bias_hh_l0": tensors["bias_hh_l0"] * np.inf}), "NaN",
        None)

    def lying_storage(path):
        torch.save({"weight_ih_l0": torch.zeros(4)}, path)
        with zipfile.ZipFile(path) as z:
            items = [(i, z.read(i)) for i in z.infolist()]
        with zipfile.ZipFile(path, "w") as z:
            for info, data in items:
                if info.filename.endswith("data.pkl"):
                    # The storage's numel and the tensor's size: 4 -> 2**31 - 1 elements.
                    data = data.replace(b"K\x04t", b"J\xff\xff\xff\x7ft").replace(
                        b"K\x04\x85", b"J\xff\xff\xff\x7f\x85")
                z.writestr(info, data)
    add("lying_storage.pt", lying_storage, "")

    def pt_edit(edit):
        def write(path):
            torch.save(tensors, path)
            data = bytearray(path.read_bytes())
            edit(path, data)
            path.write_bytes(bytes(data))
        return write

    def multi_disk(path, data):  # the zip64 locator's disk number: zipfile raises BadZipFile
        data[data.rfind(b"PK\x06\x07") + 4] = 1

    def flipped_tensor(path, data):  # a tensor's bytes changed: torch would load them
        with zipfile.ZipFile(path) as z:
            stored = z.read(next(n for n in z.namelist() if n.endswith("/data/0")))
        data[data.find(stored) + 1] ^= 0x40
    add("multi_disk.pt", pt_edit(multi_disk), "")
    add("flipped_tensor.pt", pt_edit(flipped_tensor), "CRC check")

    def lying_header(path):
        header = json.dumps({"weight_ih_l0": {"dtype": "F32", "shape": [2 ** 20, 2 ** 20],
                                              "data_offsets": [0, 2 ** 42]}}).encode()
        path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 64)
    add("lying_header.safetensors", lying_header, "")
    add("huge_header_length.safetensors", struct.pack("<Q", 2 ** 62) + b"{}", "")
    return cases, marker, module


def test_hostile_state_dict_files(tmp_path):
    cases, marker, module = state_dict_cases(tmp_path)
    want = {k: v.tolist() for k, v in module.state_dict().items()}
    runs = [{"name": f"{loader}:{name}", "loader": loader, "path": str(path)}
            for name, path, _, _ in cases for loader in ("nn", "file")]
    # torch needs more address space than NumPy alone.
    results = hl.run_isolated(runs, memory=5.25 * hl.isolated.GIB, preload=["torch"])
    for name, path, expect_nn, expect_file in cases:
        nn_result, file_result = results[f"nn:{name}"], results[f"file:{name}"]
        if expect_nn is None:
            assert nn_result["outcome"] == "loaded", nn_result
            for k, v in want.items():
                np.testing.assert_allclose(nn_result["outputs"][k], v, rtol=1e-6, err_msg=name)
        else:
            hl.assert_error(nn_result, path, expect_nn)
        if expect_file is None:
            assert file_result["outcome"] == "loaded", file_result
        else:
            hl.assert_error(file_result, path, expect_file)
    assert not marker.exists()


# Saves ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".pt", ".safetensors"])
def test_state_dict_save_is_atomic(tmp_path, monkeypatch, ext):
    require("torch")
    require("safetensors")
    from pylstm.nn import LSTM as NNLSTM

    module = NNLSTM(3, 4, seed=0)
    path = tmp_path / f"m{ext}"
    module.save_state_dict(path)
    before = path.read_bytes()

    def failing(path_, write):
        return real(path_, lambda f: (write(f), f.truncate(10), 1 / 0))

    real = state_dict.atomic_write
    monkeypatch.setattr(state_dict, "atomic_write", failing)
    with pytest.raises(ZeroDivisionError):
        NNLSTM(3, 4, seed=1).save_state_dict(path)
    assert path.read_bytes() == before
    assert hl.temp_files(tmp_path) == []
