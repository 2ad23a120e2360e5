"""Hostile and damaged files for pylstm's own format (`load_model`), and killed saves.

Each hostile file must end in a loaded model (predicting as the original) or in a ValueError /
TypeError naming the file, within bounded time and memory: the loads run in the isolated worker
(`support/isolated.py`, through `support/hostile_loads.py`) whose address space is capped
(RLIMIT_AS) under a generous hang guard, so that an attempt to allocate what a small file
declares fails the test instead of the machine. Pickle payloads would create a marker file: it
must never appear. The state dict formats are in `files/test_state_dict_hostile.py`."""

import importlib.util
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from pylstm import _atomic_write, initializers
from pylstm.layers import LSTM, Bidirectional, Dense
from pylstm.models import Sequential, load_model
from pylstm.models import saving

T, D = 5, 3
MIB = 2 ** 20


def small_model():
    model = Sequential([LSTM(4, seed=0), Dense(2)])
    model.build((None, T, D))
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    return model


_spec = importlib.util.spec_from_file_location(
    "pylstm_tests_hostile_loads",
    Path(__file__).resolve().parents[2] / "support" / "hostile_loads.py")
hl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hl)


def inputs():
    return np.random.default_rng(1).normal(size=(2, T, D)).astype(np.float32)


# Building pylstm files by hand -----------------------------------------------------------------


def npy(array=None, header=None, data=None, version=(1, 0)):
    """The bytes of an .npy file: `array`'s, or a hand-written header dict and raw data."""
    import io

    if header is None:
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.asanyarray(array), version=version,
                                  allow_pickle=True)
        return buf.getvalue()
    text = repr(header).encode("latin1")
    text += b" " * (63 - (len(text) + 10) % 64) + b"\n"
    return (np.lib.format.magic(*version) + struct.pack("<H", len(text)) + text
            + (data or b""))


def pylstm_members(model):
    config = {"format": "pylstm", "format_version": 1, "model": model.get_config(),
              "compile_config": saving._serialize_compile_config(model)}
    members = {"config.json.npy": npy(np.frombuffer(json.dumps(config).encode(), np.uint8))}
    for i, w in enumerate(model.get_weights()):
        members[f"weight_{i:04d}.npy"] = npy(w)
    return members, config


def write_zip(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def patch_sizes(path, member, size):
    """Rewrites the uncompressed size `member` declares, in its local header and the central
    directory."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    for sig, size_at, name_at in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        at = data.find(sig)
        while at != -1:
            if data[at + name_at:at + name_at + len(name)] == name:
                data[at + size_at:at + size_at + 4] = struct.pack("<I", size)
            at = data.find(sig, at + 4)
    path.write_bytes(bytes(data))
    return path


def set_flag(path, member, flag):
    data = bytearray(path.read_bytes())
    name = member.encode()
    for sig, flag_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        at = data.find(sig)
        while at != -1:
            if data[at + name_at:at + name_at + len(name)] == name:
                data[at + flag_at] |= flag
            at = data.find(sig, at + 4)
    path.write_bytes(bytes(data))
    return path


def pylstm_cases(tmp_path, model):
    """`(name, path, kwargs, expect)` for pylstm files: expect None (loads the same) or the
    substring its error must hold."""
    members, config = pylstm_members(model)
    weights = model.get_weights()
    marker = tmp_path / "marker_pylstm"
    cases = []

    def add(name, members_or_path, expect, kwargs=None, **zip_kwargs):
        path = members_or_path
        if isinstance(members_or_path, dict):
            path = write_zip(tmp_path / f"{name}.pylstm", members_or_path, **zip_kwargs)
        cases.append((name, path, kwargs or {}, expect))
        return path

    def with_config(edit):
        c = json.loads(json.dumps(config))
        edit(c)
        return {**members, "config.json.npy": npy(np.frombuffer(json.dumps(c).encode(),
                                                                np.uint8))}

    def with_weight(i, data):
        return {**members, f"weight_{i:04d}.npy": data}

    def setter(*keys, value):
        def edit(c):
            node = c
            for k in keys[:-1]:
                node = node[k]
            node[keys[-1]] = value
        return edit

    add("valid", members, None)
    add("valid_deflated", members, None, compression=zipfile.ZIP_DEFLATED)
    # Other byte orders and float dtypes convert to the model's.
    add("big_endian", {**members, **{f"weight_{i:04d}.npy": npy(w.astype(">f4"))
                                     for i, w in enumerate(weights)}}, None)
    add("float64", {**members, **{f"weight_{i:04d}.npy": npy(w.astype("<f8"))
                                  for i, w in enumerate(weights)}}, None)
    add("big_endian_f8_fortran", with_weight(0, npy(np.asfortranarray(
        weights[0].astype(">f8")))), None)
    # The limit: refused below the model's size, loaded when raised.
    add("limit_refused", members, "max_weight_bytes", {"max_weight_bytes": 100})
    add("limit_raised", members, None, {"max_weight_bytes": 2 ** 40})
    # An npy header lying about its shape: 8 GB of float32 declared by a tiny member.
    add("npy_shape_8gb", with_weight(0, npy(header={"descr": "<f4", "fortran_order": False,
                                                    "shape": (2 ** 31,)})), "shape")
    add("npy_right_shape_no_data", with_weight(0, npy(header={
        "descr": "<f4", "fortran_order": False, "shape": weights[0].shape})), "bytes of data")
    add("npy_header_v2_huge_length", with_weight(
        0, np.lib.format.magic(2, 0) + struct.pack("<I", 2 ** 31) + b"{"), "")
    add("npy_version_3", with_weight(0, npy(weights[0], version=(3, 0))), "version")
    add("npy_not_npy", with_weight(0, b"PK\x03\x04 not an array at all"), "")
    add("npy_object_pickle", with_weight(0, npy(np.array([hl.Marker(marker)], dtype=object))),
        "dtype |O")
    add("npy_structured", with_weight(0, npy(np.zeros(weights[0].shape,
                                                      [("a", "<f4")]))), "dtype")
    add("npy_int", with_weight(0, npy(weights[0].astype(np.int32))), "dtype")
    add("npy_complex", with_weight(0, npy(weights[0].astype(np.complex64))), "dtype")
    add("npy_nan", with_weight(0, npy(np.full_like(weights[0], np.nan))), "finite")
    add("npy_extra_data", with_weight(0, npy(weights[0]) + b"\0" * 16), "bytes of data")
    # Zip members lying about their sizes, bombs, encryption, other compressions.
    lying = add("zip_member_declares_4gb", members, "declares")
    patch_sizes(lying, "weight_0000.npy", 2 ** 32 - 1)
    lying = add("zip_config_declares_4gb", members, "config.json")
    patch_sizes(lying, "config.json.npy", 2 ** 32 - 1)
    bomb = npy(header={"descr": "<f4", "fortran_order": False, "shape": weights[0].shape},
               data=b"\0" * (64 * MIB))
    bomb_path = add("zip_bomb_weight", with_weight(0, bomb), "declares",
                    compression=zipfile.ZIP_DEFLATED)
    # The same bomb declaring the size the model expects: reading stops there, and the
    # member's CRC (of all 64 MiB) does not match.
    shrunk = tmp_path / "zip_bomb_declared_small.pylstm"
    shrunk.write_bytes(bomb_path.read_bytes())
    add("zip_bomb_declared_small", patch_sizes(shrunk, "weight_0000.npy",
                                               len(npy(weights[0]))), "")
    config_bomb = npy(np.frombuffer(b" " * (64 * MIB) + json.dumps(config).encode(), np.uint8))
    add("zip_bomb_config", {**members, "config.json.npy": config_bomb}, "config.json",
        compression=zipfile.ZIP_DEFLATED)
    for member in ("config.json.npy", "weight_0001.npy"):
        enc = add(f"encrypted_{member}", members, "encrypted")
        set_flag(enc, member, 0x1)
    add("bzip2", members, "compression method", compression=zipfile.ZIP_BZIP2)
    dup = tmp_path / "duplicate.pylstm"
    write_zip(dup, members)
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(dup, "a") as z:
        z.writestr("weight_0000.npy", npy(weights[0] * 0))
    add("duplicate_member", dup, "twice")
    add("missing_weight", {k: v for k, v in members.items() if k != "weight_0002.npy"},
        "expects")
    add("extra_weight", {**members, "weight_0099.npy": npy(weights[0])}, "expects")
    # Configs: huge units, nesting, wrong types anywhere.
    lstm = ("model", "layers", 0, "config")
    add("units_4000", with_config(setter(*lstm, "units", value=4000)), "shape")
    add("units_huge", with_config(setter(*lstm, "units", value=12_000)), "max_weight_bytes")
    add("units_bigint", with_config(setter(*lstm, "units", value=10 ** 400)), "")
    add("json_nested", {**members, "config.json.npy": npy(np.frombuffer(
        b"[" * 100_000 + b"]" * 100_000, np.uint8))}, "nested too deeply")
    add("json_nested_layer", with_config(setter(*lstm, "kernel_initializer", value=json.loads(
        '{"class_name": "Orthogonal", "config": {"gain": ' + "[" * 900 + "]" * 900 + "}}"))),
        "")
    add("json_not_utf8", {**members, "config.json.npy": npy(np.frombuffer(b"\xff\xfe{",
                                                                          np.uint8))}, "")
    add("config_not_uint8", {**members, "config.json.npy": npy(np.zeros(4, np.float32))},
        "uint8")
    wrong_types = {
        "model_list": (("model",), [1, 2]),
        "layers_int": (("model", "layers"), 5),
        "layer_int": (("model", "layers", 0), 1),
        "layer_config_list": (("model", "layers", 0, "config"), [1]),
        "class_name_int": (("model", "layers", 0, "class_name"), 1),
        "class_name_list": (("model", "layers", 0, "class_name"), ["LSTM"]),
        "model_name_int": (("model", "name"), 5),
        "build_shape_str": (("model", "build_input_shape"), "abc"),
        "build_shape_float": (("model", "build_input_shape"), [None, 1.5, 3]),
        "build_shape_huge": (("model", "build_input_shape"), [None, 5, 10 ** 12]),
        "units_str": (lstm + ("units",), "4"),
        "units_float": (lstm + ("units",), 1e308),
        "dtype_int": (lstm + ("dtype",), "int32"),
        "dtype_list": (lstm + ("dtype",), [1]),
        "activation_int": (lstm + ("activation",), 1),
        "initializer_list": (lstm + ("kernel_initializer",), [1]),
        "initializer_class_int": (lstm + ("kernel_initializer",), {"class_name": 1}),
        "regularizer_str_config": (lstm + ("kernel_regularizer",),
                                   {"class_name": "L2", "config": "x"}),
        "layer_name_list": (lstm + ("name",), [1]),
        "unknown_kwarg": (lstm + ("bogus",), 1),
        "module_int": (("model", "layers", 0, "module"), 1),
        "compile_list": (("compile_config",), [1]),
        "compile_unknown_key": (("compile_config", "bogus"), 1),
        "metrics_int": (("compile_config", "metrics"), [1]),
        "metrics_str": (("compile_config", "metrics"), "mae"),
        "metrics_dict": (("compile_config", "metrics"), {"a": 1}),
        "optimizer_int": (("compile_config", "optimizer"), 5),
        "optimizer_config_list": (("compile_config", "optimizer"),
                                  {"class_name": "Adam", "config": [1]}),
        "optimizer_lr_str": (("compile_config", "optimizer", "config", "learning_rate"), "x"),
        "loss_list": (("compile_config", "loss"), [1]),
        "format_version_str": (("format_version",), "1"),
    }
    for name, (keys, value) in wrong_types.items():
        expect = None if name == "module_int" else ""  # pylstm's format has no "module"
        add(f"type_{name}", with_config(setter(*keys, value=value)), expect)
    nested = {"class_name": "Dense", "config": {"units": 2}}
    for _ in range(300):
        nested = {"class_name": "Bidirectional", "config": {"layer": nested}}
    add("nested_wrappers", with_config(setter("model", "layers", value=[nested])), "")
    # Not a zip at all.
    for name, data in (("empty", b""), ("random", np.random.default_rng(0).bytes(4096)),
                       ("npy_file", npy(weights[0])), ("zip_magic", b"PK\x05\x06" + b"\0" * 18)):
        path = tmp_path / f"{name}.pylstm"
        path.write_bytes(data)
        add(f"not_zip_{name}", path, "")
    return cases, marker


def test_hostile_pylstm_files(tmp_path):
    model = small_model()
    x = inputs()
    np.save(tmp_path / "x.npy", x)
    want = model.predict(x, verbose=0)
    cases, marker = pylstm_cases(tmp_path, model)
    results = hl.run_isolated([{"name": n, "loader": "load_model", "path": str(p), "kwargs": k,
                             "inputs": str(tmp_path / "x.npy")} for n, p, k, _ in cases])
    for name, path, _, expect in cases:
        result = results[name]
        if expect is None:
            assert result["outcome"] == "loaded", result
            np.testing.assert_allclose(result["outputs"], want, rtol=1e-6, atol=1e-7,
                                       err_msg=name)
            assert result["compiled"], name
        else:
            hl.assert_error(result, path, expect)
    assert not marker.exists()


def test_byte_flips_of_a_pylstm_file(tmp_path):
    """Flipped bytes of a small pylstm file: a loaded model that predicts as the original,
    or a ValueError naming the file (the members' CRCs catch damaged data)."""
    model = small_model()
    x = inputs()
    np.save(tmp_path / "x.npy", x)
    want = model.predict(x, verbose=0)
    path = tmp_path / "base.pylstm"
    model.save(path)
    data = path.read_bytes()
    offsets = range(0, len(data), max(1, len(data) // 300))
    cases = []
    for offset in offsets:
        flipped = tmp_path / f"flip_{offset}.pylstm"
        damaged = bytearray(data)
        damaged[offset] ^= 0xFF
        flipped.write_bytes(bytes(damaged))
        cases.append({"name": str(offset), "loader": "load_model", "path": str(flipped),
                      "inputs": str(tmp_path / "x.npy")})
    # Flips inside the members, re-zipped with fresh CRCs: every byte of each .npy header and
    # a sample of the config's JSON and the weights' data. The format has no checksum of its
    # own, so a flipped weight may load with other predictions; it must not crash.
    members = {i.filename: zipfile.ZipFile(path).read(i) for i in
               zipfile.ZipFile(path).infolist()}
    rng = np.random.default_rng(0)
    for member, data in members.items():
        header = 10 + struct.unpack("<H", data[8:10])[0]
        body = rng.choice(np.arange(header, len(data)), min(60, len(data) - header),
                          replace=False)
        for offset in [*range(header), *map(int, sorted(body))]:
            for mask in (0x01, 0x20, 0xFF):
                damaged = bytearray(data)
                damaged[offset] ^= mask
                name = f"member_{member}_{offset}_{mask}"
                cases.append({"name": name, "loader": "load_model",
                              "inputs": str(tmp_path / "x.npy"),
                              "path": str(write_zip(tmp_path / f"{name}.pylstm",
                                                    {**members, member: bytes(damaged)})),
                              "any_outputs": offset >= header or member != "config.json.npy"})
    results = hl.run_isolated(cases)
    for case in cases:
        result = results[case["name"]]
        if result["outcome"] != "loaded":
            hl.assert_error(result, case["path"])
        elif not case.get("any_outputs"):
            np.testing.assert_allclose(result["outputs"], want, rtol=1e-6, atol=1e-7)


def test_units_4000_does_not_run_the_initializer(tmp_path, monkeypatch):
    """The audit's file: a few KB declaring `units=4000` (its weights do not match) is
    refused before any initializer runs (the orthogonal one would decompose a 16000 x 4000
    matrix)."""
    model = small_model()
    members, config = pylstm_members(model)
    config["model"]["layers"][0]["config"]["units"] = 4000
    members["config.json.npy"] = npy(np.frombuffer(json.dumps(config).encode(), np.uint8))
    path = write_zip(tmp_path / "units.pylstm", members)
    assert path.stat().st_size < 8192
    ran = []

    def recording(call):
        def recorded(self, shape, dtype="float32"):
            ran.append((type(self).__name__, shape))
            return call(self, shape, dtype)
        return recorded

    classes = [initializers.Initializer]
    for cls in classes:
        classes.extend(cls.__subclasses__())
        if "__call__" in vars(cls):
            monkeypatch.setattr(cls, "__call__", recording(cls.__call__))
    with pytest.raises(ValueError, match="units.pylstm.*expects shape"):
        load_model(path)
    assert ran == []
    LSTM(3).build((None, T, D))      # the recording works: a layer built outside a load
    assert ("Orthogonal", (3, 12)) in ran


def test_limit_counts_the_config_before_reading(tmp_path):
    model = small_model()
    path = tmp_path / "m.pylstm"
    model.save(path)
    nbytes = sum(w.nbytes for w in model.get_weights())
    with pytest.raises(ValueError, match=rf"m\.pylstm.*{nbytes} bytes exceed the limit of "
                                         rf"{nbytes - 1} bytes \(max_weight_bytes\)"):
        load_model(path, max_weight_bytes=nbytes - 1)
    loaded = load_model(path, max_weight_bytes=nbytes)
    np.testing.assert_array_equal(loaded.predict(inputs(), verbose=0),
                                  model.predict(inputs(), verbose=0))


@pytest.mark.parametrize("bad, error", [(1.5, TypeError), (True, TypeError), ("1", TypeError),
                                        (-1, ValueError)])
def test_bad_max_weight_bytes(tmp_path, bad, error):
    path = tmp_path / "m.pylstm"
    small_model().save(path)
    with pytest.raises(error, match="`max_weight_bytes`"):
        load_model(path, max_weight_bytes=bad)


def test_from_config_type_errors_are_clear():
    """`Sequential.from_config` and the registries refuse wrong-typed fields with a
    ValueError, not an AttributeError or KeyError from deep inside."""
    from pylstm import initializers

    config = small_model().get_config()
    for bad in ([1], {"layers": 5}, {"layers": [], "name": 3},
                {**config, "build_input_shape": [None, 1.5]}):
        with pytest.raises(ValueError, match="Sequential config"):
            Sequential.from_config(bad)
    for bad in ({"layers": [1]}, {"layers": [{"class_name": ["x"]}]},
                {"layers": [{"class_name": "Dense", "config": [1]}]},
                {"layers": [{"class_name": "Bidirectional",
                             "config": {"layer": {"class_name": ["LSTM"]}}}]}):
        with pytest.raises(ValueError, match="Cannot deserialize a layer from a"):
            Sequential.from_config(bad)
    for bad in ({"class_name": 1}, {"class_name": ["Orthogonal"]},
                {"class_name": "Orthogonal", "config": [1]}):
        with pytest.raises(ValueError, match="Cannot deserialize a"):
            initializers.deserialize(bad)
    with pytest.raises(TypeError, match="`metrics`"):
        small_model().compile(loss="mse", metrics=[1])
    for bad in ([1], {"config": [1]}, "tanh", 1.5):
        with pytest.raises(ValueError, match="`dtype`"):
            Dense.from_config({"units": 2, "dtype": bad})
    with pytest.raises(TypeError, match="`name`"):
        Bidirectional.from_config({"layer": {"class_name": "LSTM",
                                             "config": {"units": 2, "name": [1]}}})


def test_big_endian_weights_predict_the_same(tmp_path):
    model = Sequential([Bidirectional(LSTM(4, seed=0)), Dense(2)])
    model.build((None, T, D))
    members, _ = pylstm_members(model)
    for i, w in enumerate(model.get_weights()):
        members[f"weight_{i:04d}.npy"] = npy(w.astype(">f4"))
    loaded = load_model(write_zip(tmp_path / "be.pylstm", members))
    for w in loaded.get_weights():
        assert w.dtype == np.float32 and w.dtype.isnative
    np.testing.assert_array_equal(loaded.predict(inputs(), verbose=0),
                                  model.predict(inputs(), verbose=0))


def test_files_written_by_np_savez_still_load(tmp_path):
    """The format is unchanged: an archive written by `np.savez` / `np.savez_compressed`
    exactly as `save_model` wrote it before loads."""
    model = small_model()
    members, config = pylstm_members(model)
    arrays = {"config.json": np.frombuffer(json.dumps(config).encode(), np.uint8)}
    arrays.update({f"weight_{i:04d}": w for i, w in enumerate(model.get_weights())})
    for save in (np.savez, np.savez_compressed):
        path = tmp_path / f"{save.__name__}.npz"
        save(path, **arrays)
        np.testing.assert_array_equal(load_model(path).predict(inputs(), verbose=0),
                                      model.predict(inputs(), verbose=0))


# Saves ---------------------------------------------------------------------------------------


KILLED_SAVE = r"""
import sys, time
from pylstm._atomic_write import atomic_write
def write(f):
    f.write(b"x" * (1 << 20))
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
atomic_write(sys.argv[1], write)
"""


def start_save(path):
    """A child process that starts an atomic save to `path` and hangs in it; returns it once
    its temporary file exists."""
    proc = subprocess.Popen([sys.executable, "-P", "-c", KILLED_SAVE, str(path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def test_killed_save_is_cleaned_by_the_next(tmp_path):
    model = small_model()
    path = tmp_path / "m.pylstm"
    model.save(path)
    before = path.read_bytes()
    proc = start_save(path)
    leftover = hl.temp_files(tmp_path)
    assert len(leftover) == 1 and leftover[0].startswith(f".pylstm-{proc.pid}-")
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert path.read_bytes() == before  # the path's file is intact
    assert hl.temp_files(tmp_path) == leftover
    model.save(tmp_path / "other.pylstm")  # any save into the folder cleans up
    assert hl.temp_files(tmp_path) == []
    np.testing.assert_array_equal(load_model(path).predict(inputs(), verbose=0),
                                  model.predict(inputs(), verbose=0))


def test_live_saves_temp_files_are_kept(tmp_path):
    """A save in progress (its process alive, its file locked) keeps its temporary file;
    unlocked ones of a live process are kept for a day; files not of our pattern are never
    touched."""
    proc = start_save(tmp_path / "a.pylstm")
    try:
        live = hl.temp_files(tmp_path)
        # Unlocked, of a live process (pid 1), fresh: kept; the same a day old: removed.
        fresh = tmp_path / f".pylstm-1-{'a' * 16}.tmp"
        old = tmp_path / f".pylstm-1-{'b' * 16}.tmp"
        dead_other = tmp_path / f".pylstm-1-{'c' * 15}.tmp"  # not our pattern
        for p in (fresh, old, dead_other):
            p.write_bytes(b"x")
        day_ago = time.time() - _atomic_write._STALE_AGE_S - 60
        os.utime(old, (day_ago, day_ago))
        os.utime(dead_other, (day_ago, day_ago))
        small_model().save(tmp_path / "b.pylstm")
        assert hl.temp_files(tmp_path) == sorted(live + [fresh.name])
        assert dead_other.exists()
    finally:
        proc.kill()
        proc.wait(30)
    small_model().save(tmp_path / "b.pylstm")
    assert hl.temp_files(tmp_path) == [fresh.name]


def test_save_syncs_the_folder(tmp_path, monkeypatch):
    import stat

    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    small_model().save(tmp_path / "m.pylstm")
    assert synced == [False, True]  # the file, then the folder after the rename


def test_nn_lstm_layer_config_within_the_limit(tmp_path):
    """A file may name `LSTMLayer` (a `pylstm.nn.LSTM` as a layer), whose parameters are
    drawn in its constructor: a huge `hidden_size` is refused before any is made."""
    from pylstm.nn import LSTM as NNLSTM

    model = Sequential([NNLSTM(3, 4, seed=0).as_layer(return_sequences=False)])
    model.build((None, T, D))
    np.save(tmp_path / "x.npy", inputs())
    members, config = pylstm_members(model)
    valid = write_zip(tmp_path / "valid.pylstm", members)
    config["model"]["layers"][0]["config"]["hidden_size"] = 12_000  # 2.3 GB of weights
    members["config.json.npy"] = npy(np.frombuffer(json.dumps(config).encode(), np.uint8))
    huge = write_zip(tmp_path / "huge.pylstm", members)
    results = hl.run_isolated([{"name": p.name, "loader": "load_model", "path": str(p),
                             "inputs": str(tmp_path / "x.npy")} for p in (valid, huge)])
    np.testing.assert_allclose(results["valid.pylstm"]["outputs"],
                               model.predict(inputs(), verbose=0), rtol=1e-6)
    hl.assert_error(results["huge.pylstm"], huge, "max_weight_bytes")


MUTANTS = [None, True, False, 0, -1, 3, 1.5, float("nan"), 10 ** 6, 10 ** 30, -(10 ** 30), "",
           "x", "tanh", "float64", [], [1], [None, 5, 3], {}, {"class_name": "Dense"},
           {"class_name": "LSTM", "config": {"units": 10 ** 9}}, [[[[[]]]]]]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def test_random_config_mutations(tmp_path):
    """Each of 400 configs with one field (anywhere) replaced by a value of another type or
    size loads, or raises a ValueError / TypeError naming the file."""
    model = Sequential([Bidirectional(LSTM(3, seed=0)), Dense(2)])
    model.build((None, T, D))
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    np.save(tmp_path / "x.npy", inputs())
    members, config = pylstm_members(model)
    paths = list(_paths(config))[1:]
    rng = np.random.default_rng(0)
    cases = []
    for i in range(400):
        mutated = json.loads(json.dumps(config))
        keys = paths[rng.integers(len(paths))]
        node = mutated
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = MUTANTS[rng.integers(len(MUTANTS))]
        data = npy(np.frombuffer(json.dumps(mutated).encode(), np.uint8))
        path = write_zip(tmp_path / f"mutant_{i}.pylstm", {**members, "config.json.npy": data})
        cases.append({"name": str(i), "loader": "load_model", "path": str(path),
                      "inputs": str(tmp_path / "x.npy")})
    results = hl.run_isolated(cases)
    for case in cases:
        if results[case["name"]]["outcome"] != "loaded":
            hl.assert_error(results[case["name"]], case["path"])
