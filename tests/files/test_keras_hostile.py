"""Hostile and damaged Keras files (issue 12): each one ends in a loaded model or a ValueError /
TypeError naming the file, within bounded time and memory, and never reads another file.

The files are made here with h5py and zipfile: HDF5 virtual datasets, external storage, external
and soft links, a huge declared dataset, a zip bomb, lying zip sizes, an encrypted flag, deep
JSON, config fields of the wrong type, truncations and byte flips. Every load runs in the
isolated worker (`tests/support/isolated.py`) under a memory cap (RLIMIT_AS) and a timeout, so
that a crash or a hang is reported as a failure instead of taking pytest down.
"""

import functools
import gzip
import importlib.util
import io
import json
import pathlib
import re
import struct
import zipfile
import zlib

import numpy as np
import pytest
from pylstm_tests import require

from pylstm.layers import LSTM, Concatenate, Dense, Input
from pylstm.models import Model, Sequential, save_keras_weights

h5py = require("h5py")
require("pyfive")  # the reader of load_keras

TESTS = pathlib.Path(__file__).resolve().parents[1]
WEIGHTS = "model.weights.h5"
KERNEL = "layers/lstm/cell/vars/0"  # (3, 16) in the .keras and .weights.h5 files below
LEGACY_KERNEL = "model_weights/lstm/lstm/lstm_cell/kernel:0"  # (3, 16) in keras2_lstm.h5

_spec = importlib.util.spec_from_file_location("pylstm_tests_isolated",
                                               TESTS / "support" / "isolated.py")
isolated = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(isolated)
_REFERENCES = {}  # in the worker: path of a `.keras` file -> its model


def load_case(path, reference):
    """In the worker: loads `path` (`load_keras`, or `load_keras_weights` into the model of the
    `.keras` file `reference`); returns `{"outcome": "loaded", "y": predictions}`."""
    from pylstm.models import load_keras, load_keras_weights

    if reference:
        if reference not in _REFERENCES:
            _REFERENCES[reference] = load_keras(reference)
        model = _REFERENCES[reference]
        load_keras_weights(model, path)
    else:
        model = load_keras(path)
    # A config may load with odd sizes (0 or None timesteps): predict on 4 if unsized.
    rng = np.random.default_rng(0)
    inputs = ([(model._build_input_shape, model.dtype)] if hasattr(model, "_build_input_shape")
              else [(t.shape, t.dtype) for t in model.inputs])  # a functional model
    xs = [rng.normal(size=[2] + [4 if d is None else d for d in shape[1:]]).astype(dtype)
          for shape, dtype in inputs]
    try:
        y = model.predict(xs[0] if len(xs) == 1 else xs)
        return {"outcome": "loaded", "y": [np.asarray(a).tolist() for a in
                                           (y if isinstance(y, list) else [y])]}
    except (ValueError, TypeError) as e:
        return {"outcome": "loaded", "y": None, "predict_error": str(e)}


def _run(cases, memory=512 * 2**20, alarm=60, timeout=900):
    """Loads each `(path, reference or None)` of `cases` in the isolated worker (a memory cap,
    `alarm` seconds per case, `timeout` for all); returns their outcome dicts: "loaded",
    "ValueError", "TypeError" (with "names_file"), "other", or "crash" / "hang" (the rest run
    in a fresh worker)."""
    results = isolated.run_calls(__file__, "load_case",
                                 [(str(p), str(r) if r else None) for p, r in cases],
                                 timeout=alarm, total_timeout=timeout, memory=memory,
                                 preload=["h5py", __file__])
    outcomes = []
    for (path, _), (status, value) in zip(cases, results):
        if status == "ok":
            outcomes.append(value)
        elif status != "raised":
            outcomes.append({"outcome": status, "message": value})
        elif "ValueError" in value["mro"] or "TypeError" in value["mro"]:
            outcomes.append({"outcome": "ValueError" if "ValueError" in value["mro"] else
                             "TypeError", "message": value["message"],
                             "names_file": repr(str(path)) in value["message"]})
        else:
            outcomes.append({"outcome": "other", "message": f"{value['type']}: "
                             f"{value['message']} (at {value['where']})"})
    return outcomes


def _assert_refused(out, match):
    """Asserts that an outcome is a ValueError naming its file, whose message matches."""
    assert out["outcome"] == "ValueError", out
    assert out["names_file"], out["message"]
    assert re.search(match, out["message"]), out["message"]


# Files --------------------------------------------------------------------------------------
#
# Each case is a builder `(files, root) -> (path, reference)` (reference: the `.keras` file
# whose model `load_keras_weights` loads into, or None for `load_keras`). The `outcomes`
# fixture builds every case and loads them all in one worker.

CASES = {}


def case(name):
    def register(build):
        CASES[name] = build
        return build
    return register


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The intact files: a `.keras` archive, a `.weights.h5` and Keras 2's legacy `.h5`, and
    the files that hostile ones point at."""
    root = tmp_path_factory.mktemp("intact")
    model = Sequential([Input((5, 3)), LSTM(4), Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.save(root / "small.keras")
    save_keras_weights(model, root / "small.weights.h5")
    legacy = root / "keras2_lstm.h5"
    legacy.write_bytes(gzip.decompress((TESTS / "data" / "keras2_lstm.h5.gz").read_bytes()))
    secret = root / "secret.bin"
    secret.write_bytes(b"A" * 4096)  # float32 0x41414141 = 12.078: finite, passes a NaN check
    other = root / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.full((3, 16), 7.0, "float32")
    _functional_model().save(root / "functional.keras")
    legacy_functional = root / "keras2_functional.h5"
    legacy_functional.write_bytes(gzip.decompress(
        (TESTS / "data" / "keras2_functional.h5.gz").read_bytes()))
    return {"root": root, "keras": root / "small.keras", "weights": root / "small.weights.h5",
            "legacy": legacy, "secret": secret, "other": other,
            "functional": root / "functional.keras", "legacy_functional": legacy_functional}


def _functional_model():
    """An encoder-decoder whose Dense is shared by two calls, merged by a Concatenate."""
    encoder_in, decoder_in = Input((5, 3), name="enc"), Input((4, 4), name="dec")
    _, h, c = LSTM(4, return_state=True, name="encoder")(encoder_in)
    decoded = LSTM(4, return_sequences=True, name="decoder")(decoder_in, initial_state=[h, c])
    shared = Dense(2, name="shared")
    return Model([encoder_in, decoder_in],
                 Concatenate(name="concat")([shared(decoded), shared(decoder_in)]))


@pytest.fixture(scope="module")
def outcomes(files):
    """{case name: outcome dict} for every case of `CASES`, plus the intact files'."""
    names = ["intact_keras", "intact_weights", "intact_legacy", "intact_functional",
             "intact_legacy_functional"] + sorted(CASES)
    cases = [(files["keras"], None), (files["weights"], files["keras"]), (files["legacy"], None),
             (files["functional"], None), (files["legacy_functional"], None)]
    cases += [CASES[name](files, files["root"]) for name in sorted(CASES)]
    results = dict(zip(names, _run(cases)))
    for name in names[:5]:
        assert results[name]["outcome"] == "loaded", results[name]
    return results


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write_zip(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _edited(files, container, edit, name):
    """A copy of the intact `container` file ("keras", "weights" or "legacy") whose HDF5 is
    edited by `edit(h5py.File, kernel path)`; returns `(path, reference)`."""
    root = files["root"]
    if container == "keras":
        members = _members(files["keras"])
        h5 = root / f"{name}.weights_member.h5"
        h5.write_bytes(members[WEIGHTS])
        with h5py.File(h5, "r+") as f:
            edit(f, KERNEL)
        members[WEIGHTS] = h5.read_bytes()
        return _write_zip(root / f"{name}.keras", members), None
    path = root / f"{name}.{container}.h5"
    path.write_bytes(files[container].read_bytes())
    with h5py.File(path, "r+") as f:
        edit(f, LEGACY_KERNEL if container == "legacy" else KERNEL)
    return path, files["keras"] if container == "weights" else None


CONTAINERS = ["keras", "weights", "legacy"]

# HDF5 structures that read other files, or crash or hang HDF5 -------------------------------


def _vds_self(files, f, name):
    shape, dtype = f[name].shape, f[name].dtype
    del f[name]
    layout = h5py.VirtualLayout(shape, dtype)
    layout[:] = h5py.VirtualSource(".", name, shape, dtype)  # itself: segfaults HDF5
    f.create_virtual_dataset(name, layout)


def _vds_other(files, f, name):
    shape, dtype = f[name].shape, f[name].dtype
    del f[name]
    layout = h5py.VirtualLayout(shape, dtype)
    layout[:] = h5py.VirtualSource(str(files["other"]), "data", shape, dtype)
    f.create_virtual_dataset(name, layout)


def _external_storage(files, f, name):
    shape, dtype = f[name].shape, f[name].dtype
    del f[name]
    f.create_dataset(name, shape, dtype,
                     external=[(str(files["secret"]), 0, int(np.prod(shape)) * 4)])


def _external_link(files, f, name):
    del f[name]
    f[name] = h5py.ExternalLink(str(files["other"]), "data")


def _soft_link(files, f, name):
    f["hidden"] = f[name][()]
    del f[name]
    f[name] = h5py.SoftLink("/hidden")


def _huge(files, f, name):
    del f[name]
    f.create_dataset(name, (2**16, 2**15), "float32")  # 8 GiB declared, never written


def _huge_chunked(files, f, name):
    del f[name]
    f.create_dataset(name, (2**16, 2**15), "float32", chunks=(256, 256))


def _lzf(files, f, name):
    value = f[name][()]
    del f[name]
    f.create_dataset(name, data=value, chunks=(1, 4), compression="lzf")


def _unwritten(files, f, name):
    shape, dtype = f[name].shape, f[name].dtype
    del f[name]
    f.create_dataset(name, shape, dtype)  # no storage: HDF5 would return its fill value


def _deflate_bomb(files, f, name):
    """A 192-byte chunk whose gzip stream (64 KB, as much as its index can record) inflates
    to 64 MiB."""
    shape, dtype = f[name].shape, f[name].dtype
    del f[name]
    dataset = f.create_dataset(name, shape, dtype, chunks=shape, compression="gzip")
    dataset.id.write_direct_chunk((0,) * len(shape), zlib.compress(bytes(2**26), 9))


def _oversized_chunk(files, f, name):
    """The right data in one gzip chunk of 64 MiB: chunks larger than the dataset (allowed
    for resizable datasets) would let a small file inflate to gigabytes."""
    value = f[name][()]
    del f[name]
    f.create_dataset(name, data=value, maxshape=(None,) * value.ndim,
                     chunks=(4096,) * value.ndim, compression="gzip")


HOSTILE = {
    "vds_self": (_vds_self, "virtual dataset"),
    "vds_other": (_vds_other, "virtual dataset"),
    "external_storage": (_external_storage, "stored in external files"),
    "external_link": (_external_link, "external or user-defined link"),
    "soft_link": (_soft_link, "soft link"),
    "huge_declared": (_huge, r"expects shape \(3, 16\), received shape \(65536, 32768\)"),
    "huge_chunked": (_huge_chunked, r"expects shape \(3, 16\), received shape \(65536, 32768\)"),
    "lzf": (_lzf, r"compressed or filtered with HDF5 filters \[32000\]"),
    "unwritten": (_unwritten, "has no data"),
    "deflate_bomb": (_deflate_bomb, "does not inflate to 192 bytes"),
    "oversized_chunk": (_oversized_chunk, r"larger than its data of shape \(3, 16\)"),
}

for _attack, (_make, _) in HOSTILE.items():
    for _container in CONTAINERS:
        case(f"{_attack}_{_container}")(
            lambda files, root, make=_make, container=_container, name=f"{_attack}_{_container}":
            _edited(files, container, lambda f, kernel: make(files, f, kernel), name))


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("attack", sorted(HOSTILE))
def test_hostile_hdf5_is_refused(outcomes, container, attack):
    """Virtual datasets, external storage and links are refused before any data is read (the
    file they point at never reaches the model); a huge declared shape is refused before
    anything of its size is allocated."""
    _assert_refused(outcomes[f"{attack}_{container}"], HOSTILE[attack][1])


# HDF5 storage that must load: the same predictions as the intact file ----------------------


def _rewrite_all(f, **create):
    """Rewrites every float dataset of `f` with `create_dataset(**create)` options."""
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset)
                 and o.dtype.kind == "f" else None)
    for name in names:
        value = f[name][()]
        del f[name]
        options = dict(create)
        dtype = options.pop("dtype", value.dtype)
        if value.ndim == 0:  # scalars cannot be chunked or filtered
            options = {}
        f.create_dataset(name, data=value.astype(dtype), dtype=dtype, **options)


def _compact_all(f):
    """Rewrites every dataset of `f` with the compact layout (data inside its header)."""
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    for name in names:
        value = np.ascontiguousarray(f[name][()])
        del f[name]
        space = (h5py.h5s.create_simple(value.shape) if value.ndim
                 else h5py.h5s.create(h5py.h5s.SCALAR))
        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        plist.set_layout(h5py.h5d.COMPACT)
        dataset = h5py.h5d.create(f.id, name.encode(), h5py.h5t.py_create(value.dtype), space,
                                  dcpl=plist)
        dataset.write(h5py.h5s.ALL, h5py.h5s.ALL, value)


def _latest_format(data):
    """`data` (HDF5 bytes) in HDF5's newest format, as `support/fuzz_keras_flips.py` writes it."""
    return _fuzz_module().latest_format(data)


@case("latest_format_keras")
def _latest_keras(files, root):
    members = _members(files["keras"])
    members[WEIGHTS] = _latest_format(members[WEIGHTS])
    return _write_zip(root / "latest.keras", members), None


@case("latest_format_weights")
def _latest_weights(files, root):
    path = root / "latest.weights.h5"
    path.write_bytes(_latest_format(files["weights"].read_bytes()))
    return path, files["keras"]


@case("latest_format_legacy")
def _latest_legacy(files, root):
    path = root / "latest.h5"
    path.write_bytes(_latest_format(files["legacy"].read_bytes()))
    return path, None


STORAGE = {
    "big_endian": lambda f: _rewrite_all(f, dtype=">f4"),
    "chunked": lambda f: _rewrite_all(f, chunks=True),
    "gzip_shuffle": lambda f: _rewrite_all(f, chunks=True, compression="gzip", shuffle=True),
    "compact": _compact_all,
}

for _storage, _rewrite in STORAGE.items():
    for _container in CONTAINERS:
        case(f"{_storage}_{_container}")(
            lambda files, root, rewrite=_rewrite, container=_container,
            name=f"{_storage}_{_container}":
            _edited(files, container, lambda f, kernel: rewrite(f), name))


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("storage", sorted(STORAGE) + ["latest_format"])
def test_other_storage_loads_the_same(outcomes, container, storage):
    """Big-endian weights (`>f4`) are converted, not read as native floats; chunked and compact
    datasets, and HDF5's newest format, read as Keras's default files do."""
    out = outcomes[f"{storage}_{container}"]
    assert out["outcome"] == "loaded", out
    intact = outcomes["intact_legacy" if container == "legacy" else "intact_keras"]
    np.testing.assert_array_equal(out["y"], intact["y"])


def test_big_endian_files_hold_big_endian_weights(files):
    """The big-endian cases above do test byte order: h5py wrote `>f4`."""
    path, _ = _edited(files, "weights", lambda f, kernel: STORAGE["big_endian"](f), "be_check")
    with h5py.File(path, "r") as f:
        assert f[KERNEL].dtype == np.dtype(">f4")


# Sizes declared before anything of that size is allocated or decompressed ------------------


def _zip_entry_offsets(data, member):
    """Offsets of `member`'s local header and central directory entry in zip bytes."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        local = archive.getinfo(member).header_offset
    name = member.encode()
    central = next(i for i in range(len(data)) if data.startswith(b"PK\x01\x02", i)
                   and data[i + 46:i + 46 + len(name)] == name)
    return local, central


@case("zip_bomb")
def _zip_bomb(files, root):
    """A 1 GiB weights member (1 MB compressed): the memory cap is 512 MiB."""
    members = _members(files["keras"])
    path = root / "bomb.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name in ("config.json", "metadata.json"):
            archive.writestr(name, members[name])
        with archive.open(WEIGHTS, "w", force_zip64=True) as f:
            f.write(members[WEIGHTS])
            zeros = bytes(2**20)
            for _ in range(1024):
                f.write(zeros)
    assert path.stat().st_size < 8 * 2**20
    return path, None


case("zip_bomb_weights")(lambda files, root: (_zip_bomb(files, root)[0], files["keras"]))


@case("big_config")
def _big_config(files, root):
    members = _members(files["keras"])
    members["config.json"] = members["config.json"] + b" " * (65 * 2**20)
    path = root / "big_config.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path, None


def _patched_zip(files, root, name, member, patch):
    data = bytearray(_write_zip(root / f"{name}.plain.keras", _members(files["keras"]))
                     .read_bytes())
    patch(data, *_zip_entry_offsets(bytes(data), member))
    path = root / f"{name}.keras"
    path.write_bytes(bytes(data))
    return path, None


def _lie(factor):
    def patch(data, local, central):
        size = int(struct.unpack_from("<I", data, local + 22)[0] * factor)
        struct.pack_into("<I", data, local + 22, size)
        struct.pack_into("<I", data, central + 24, size)
    return patch


def _encrypt(data, local, central):
    data[local + 6] |= 1
    data[central + 8] |= 1


for _name, _member, _patch in [("lying_smaller", WEIGHTS, _lie(0.5)),
                               ("lying_larger", WEIGHTS, _lie(2)),
                               ("encrypted_config", "config.json", _encrypt),
                               ("encrypted_weights", WEIGHTS, _encrypt)]:
    case(_name)(lambda files, root, n=_name, m=_member, p=_patch:
                _patched_zip(files, root, n, m, p))


@case("huge_units")
def _huge_units(files, root):
    members = _members(files["keras"])
    config = json.loads(members["config.json"])
    config["config"]["layers"][1]["config"]["units"] = 10**6  # 16 TB of recurrent kernel
    members["config.json"] = json.dumps(config).encode()
    return _write_zip(root / "huge_units.keras", members), None


@pytest.mark.parametrize("name,match", [
    ("zip_bomb", "model.weights.h5 declares 1073[0-9]+ bytes, more than the [0-9]+ bytes that "
                 "the weights of model"),
    ("zip_bomb_weights", "model.weights.h5 declares 1073[0-9]+ bytes"),
    ("big_config", "config.json declares [0-9]+ bytes, more than the 67108864 bytes"),
    ("lying_smaller", "zip archive is damaged"),
    ("lying_larger", "zip archive is damaged|holds [0-9]+ bytes"),
    ("encrypted_config", "its config.json is encrypted"),
    ("encrypted_weights", "its model.weights.h5 is encrypted"),
    ("huge_units", r"exceed the limit of 2147483648 bytes \(max_weight_bytes\)"),
])
def test_declared_sizes_are_checked_first(outcomes, name, match):
    """Zip members and model configs are refused from the sizes they declare, before anything
    of that size is decompressed or allocated (the memory cap is 512 MiB)."""
    _assert_refused(outcomes[name], match)


# JSON and configs -----------------------------------------------------------------------------


@case("nested_json_keras")
def _nested_json_keras(files, root):
    members = _members(files["keras"])
    members["config.json"] = (b'{"class_name": "Sequential", "config": ' + b"[" * 10**5
                              + b"]" * 10**5 + b"}")
    return _write_zip(root / "nested.keras", members), None


@case("nested_json_legacy")
def _nested_json_legacy(files, root):
    path = root / "nested.h5"
    path.write_bytes(files["legacy"].read_bytes())
    with h5py.File(path, "r+") as f:
        f.attrs["model_config"] = "[" * 20000 + "]" * 20000
    return path, None


@case("nested_layers")
def _nested_layers(files, root):
    members = _members(files["keras"])
    config = json.loads(members["config.json"])
    layer = config["config"]["layers"][2]
    for _ in range(400):
        layer = {"module": "keras.layers", "class_name": "TimeDistributed",
                 "config": {"layer": layer}, "registered_name": None}
    config["config"]["layers"][2] = layer
    members["config.json"] = json.dumps(config).encode()
    return _write_zip(root / "deep_layers.keras", members), None


@pytest.mark.parametrize("name,match", [
    ("nested_json_keras", "config.json is not valid JSON"),
    ("nested_json_legacy", "model_config is not valid JSON"),
    ("nested_layers", "nests layers too deeply|cannot be built"),
])
def test_deep_json(outcomes, name, match):
    _assert_refused(outcomes[name], match)


def _paths(obj, prefix=()):
    yield prefix
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(
        obj, list) else ()
    for key, value in items:
        yield from _paths(value, prefix + (key,))


def _replaced(config, field, value):
    edited = json.loads(json.dumps(config))
    target = edited
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    return edited


# Values of the wrong type or form for any field of a config.
ODD_VALUES = [1, "x", None, [], {}, -1, 1e308, True, [1], {"class_name": 1}]


def test_config_fields_of_the_wrong_type(files, tmp_path):
    """Every field of config.json (and of the legacy file's model_config and training_config)
    replaced by each of `ODD_VALUES` (the first five for the legacy file): a loaded model or a
    ValueError naming the file."""
    members = _members(files["keras"])
    config = json.loads(members["config.json"])
    cases = []
    for i, field in enumerate(list(_paths(config))[1:]):
        for j, value in enumerate(ODD_VALUES):
            path = tmp_path / f"field{i}_{j}.keras"
            _write_zip(path, {**members,
                              "config.json": json.dumps(_replaced(config, field, value)).encode()})
            cases.append((path, None))
    with h5py.File(files["legacy"], "r") as f:
        legacy = {name: json.loads(f.attrs[name]) for name in ("model_config", "training_config")}
    for attr, config in legacy.items():
        for i, field in enumerate(list(_paths(config))[1:]):
            for j, value in enumerate(ODD_VALUES[:5]):
                path = tmp_path / f"{attr}{i}_{j}.h5"
                path.write_bytes(files["legacy"].read_bytes())
                with h5py.File(path, "r+") as f:
                    f.attrs[attr] = json.dumps(_replaced(config, field, value))
                cases.append((path, None))
    results = _run(cases)
    bad = [(str(p), o) for (p, _), o in zip(cases, results) if not (
        o["outcome"] == "loaded" or o["outcome"] in ("ValueError", "TypeError")
        and o["names_file"])]
    assert not bad, bad[:5]
    assert len(cases) > 1000
    assert sum(o["outcome"] == "ValueError" for o in results) > 300


# Truncations and byte flips -------------------------------------------------------------------

FRACTIONS = (0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.999)


def _truncated(files, root, container, fraction):
    if container == "keras_member":
        members = _members(files["keras"])
        members[WEIGHTS] = members[WEIGHTS][:int(len(members[WEIGHTS]) * fraction)]
        return _write_zip(root / f"cut_member{fraction}.keras", members), None
    data = files[container].read_bytes()
    path = root / f"cut_{container}{fraction}.h5"
    path.write_bytes(data[:int(len(data) * fraction)])
    return path, files["keras"] if container == "weights" else None


for _container in ("legacy", "weights", "keras_member"):
    for _fraction in FRACTIONS:
        case(f"cut_{_container}_{_fraction}")(
            lambda files, root, c=_container, x=_fraction: _truncated(files, root, c, x))


@pytest.mark.parametrize("container", ["legacy", "weights", "keras_member"])
def test_truncations(outcomes, container):
    for fraction in FRACTIONS:
        _assert_refused(outcomes[f"cut_{container}_{fraction}"], "is not a valid Keras file")


@functools.lru_cache(maxsize=None)
def _fuzz_module():
    spec = importlib.util.spec_from_file_location("fuzz_keras_flips",
                                                  TESTS / "support" / "fuzz_keras_flips.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name,step", [("legacy", 7), ("keras", 7), ("latest", 13)])
def test_byte_flips(tmp_path, name, step):
    """Every 7th byte of Keras 2's legacy .h5 and of a .keras file's weights member (every 13th
    of the legacy file in HDF5's newest format), flipped one at a time
    (tests/support/fuzz_keras_flips.py; `--all` flips every byte): each loads or raises a ValueError
    naming the file; no crash, hang or memory blowup."""
    fuzz = _fuzz_module()
    kind, base, size = fuzz.targets(tmp_path)[name]
    results = fuzz.run_flips(kind, base, list(range(0, size, step)), tmp_path, alarm=20,
                             memory=512 * 2**20, timeout=600)
    bad = {offset: r for offset, r in results.items()
           if r not in ("same", "different", "ValueError", "TypeError")}
    assert not bad, bad
    assert len(results) == len(range(0, size, step))
    assert sum(r == "ValueError" for r in results.values()) > len(results) // 20


@case("cyclic_header")
def _cyclic_header(files, root):
    """The root group's object header continues into itself, 65535 times over."""
    data = bytearray(files["legacy"].read_bytes())
    address = 96  # the root group's object header (version 1) in keras2_lstm.h5
    assert struct.unpack_from("<BBH", data, address)[0] == 1
    struct.pack_into("<H", data, address + 2, 0xFFFF)  # messages
    block = address + 16  # its first message: a continuation (type 0x10)
    assert struct.unpack_from("<H", data, block)[0] == 0x10
    struct.pack_into("<QQ", data, block + 8, block, 24)
    path = root / "cyclic_header.h5"
    path.write_bytes(bytes(data))
    return path, None


def test_cyclic_header(outcomes):
    _assert_refused(outcomes["cyclic_header"], "is not a valid Keras file")


def test_reading_opens_nothing_else_and_starts_no_thread(files, monkeypatch):
    """pyfive reads through the loader's own file object: no other file is opened, nothing is
    memory-mapped, no thread is started."""
    import builtins
    import mmap
    import threading

    from pylstm.models import load_keras, load_keras_weights

    load_keras(files["legacy"])  # imports pyfive, which reads package metadata
    opened, started = [], []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(str(f)) or
                        real_open(f, *a, **k))
    monkeypatch.setattr(io, "open", builtins.open)
    monkeypatch.setattr(threading.Thread, "start", lambda self: started.append(self))
    monkeypatch.setattr(np, "memmap", lambda *a, **k: pytest.fail("memmap"))
    monkeypatch.setattr(mmap, "mmap", lambda *a, **k: pytest.fail("mmap"))
    for path in (files["legacy"], files["keras"]):
        load_keras(path)
    load_keras_weights(load_keras(files["keras"]), files["weights"])
    assert set(opened) <= {str(files[k]) for k in ("legacy", "keras", "weights")}, opened
    assert not started


def test_max_weight_bytes(files):
    from pylstm.models import load_keras

    with pytest.raises(ValueError, match=r"small.keras'.*exceed the limit of 100 bytes "
                                         r"\(max_weight_bytes\)"):
        load_keras(files["keras"], max_weight_bytes=100)
    assert load_keras(files["keras"], max_weight_bytes=10**6).built
    with pytest.raises(TypeError, match="`max_weight_bytes` must be an int"):
        load_keras(files["keras"], max_weight_bytes=1e6)


# Functional graphs ----------------------------------------------------------------------------
#
# The encoder-decoder of `_functional_model` (layers enc, dec, encoder, decoder, shared (called
# twice), concat) with one field of its graph edited, and Keras 2's nodes in
# tests/data/keras2_functional.h5 (layers a, b, lstm (called twice), concatenate, and the nested
# models head (a Sequential) and proj (a Functional), whose calls Keras 2 numbers from 1).


def _tensor(layer, node, index):
    return {"class_name": "__keras_tensor__",
            "config": {"shape": [None, 4], "dtype": "float32",
                       "keras_history": [layer, node, index]}}


def _entry(config, name):
    return next(e for e in config["config"]["layers"] if e["name"] == name)


def _set_arg(name, call, history, position=0):
    """Sets the `position`-th tensor argument of call `call` of layer `name`."""
    def edit(config):
        args = _entry(config, name)["inbound_nodes"][call]["args"]
        if isinstance(args[0], list):
            args[0][position]["config"]["keras_history"] = history
        else:
            args[0]["config"]["keras_history"] = history
    return edit


def _functional_edited(files, root, name, edit):
    members = _members(files["functional"])
    config = json.loads(members["config.json"])
    edit(config)
    members["config.json"] = json.dumps(config).encode()
    return _write_zip(root / f"{name}.keras", members), None


def _legacy_functional_edited(files, root, name, edit):
    path = root / f"{name}.h5"
    path.write_bytes(files["legacy_functional"].read_bytes())
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        edit(config)
        f.attrs["model_config"] = json.dumps(config)
    return path, None


def _chain(config):
    """2000 Activation layers in a chain after `shared`'s second call, listed last first."""
    layers = config["config"]["layers"]
    previous = ("shared", 1)
    chain = []
    for i in range(2000):
        chain.append({"module": "keras.layers", "class_name": "Activation",
                      "config": {"name": f"act{i}", "activation": "tanh"}, "name": f"act{i}",
                      "inbound_nodes": [{"args": [_tensor(*previous, 0)], "kwargs": {}}]})
        previous = (f"act{i}", 0)
    layers += chain[::-1]
    _entry(config, "concat")["inbound_nodes"][0]["args"][0][1] = _tensor(*previous, 0)


def _nested_args(config):
    arg = _entry(config, "shared")["inbound_nodes"][0]["args"][0]
    for _ in range(40):
        arg = [arg]
    _entry(config, "shared")["inbound_nodes"][0]["args"] = [arg]


def _replace_class(name, class_name, config_update, module="keras.layers"):
    def edit(config):
        entry = _entry(config, name)
        entry.update(class_name=class_name, module=module)
        entry["config"].update(config_update)
    return edit


_LAMBDA = {"function": {"class_name": "__lambda__", "config": {
    "code": "4wEAAAAAAAAAAAAAAAEAAAACAAAAQwAAAHMIAAAAfABkARQAUwApAk7pAgAAAKkAKQHaAXhyAgAAAHIC"
            "AAAA+gg8c3RkaW4+2gg8bGFtYmRhPgEAAADzAAAAAA==", "defaults": None,
    "closure": None}}, "output_shape": None, "mask": None, "arguments": {}}

GRAPH_CASES = {
    "unknown_layer": (_set_arg("decoder", 0, ["nowhere", 0, 0]),
                      "refers to layer 'nowhere', which the model does not have"),
    "call_out_of_range": (_set_arg("concat", 0, ["shared", 2, 0]),
                          "refers to call 2 of layer 'shared', which is called 2 times"),
    "huge_call_index": (_set_arg("concat", 0, ["shared", 10**30, 0]),
                        "refers to call 1000000000000000000000000000000 of layer 'shared'"),
    "negative_index": (_set_arg("encoder", 0, ["enc", -1, 0]), "is not a non-negative int"),
    "bool_index": (_set_arg("encoder", 0, ["enc", True, 0]), "is not a non-negative int"),
    "short_history": (_set_arg("encoder", 0, ["enc", 0]), "is not a tensor reference"),
    "tensor_out_of_range": (_set_arg("concat", 0, ["shared", 0, 1]),
                            "uses output 1 of call 0 of layer 'shared', which makes 1 tensor"),
    "huge_tensor_index": (_set_arg("encoder", 0, ["enc", 0, 10**30]),
                          "uses output 1000000000000000000000000000000 of call 0 of layer "
                          "'enc'"),
    "cycle": (_set_arg("encoder", 0, ["decoder", 0, 0]), "the graph has a cycle"),
    "self_loop": (_set_arg("shared", 1, ["shared", 1, 0]), "call 1 of layer 'shared'.*cycle"),
    "used_before_made": (_set_arg("shared", 0, ["shared", 1, 0]), "the graph has a cycle"),
    "duplicate_name": (lambda c: _entry(c, "concat").update(name="shared"),
                       "two layers are named 'shared'"),
    "nameless_layer": (lambda c: _entry(c, "concat").pop("name"), "has no name"),
    "input_not_input_layer": (
        lambda c: c["config"].update(input_layers=[["encoder", 0, 0], ["dec", 0, 0]]),
        "`input_layers` lists 'encoder' \\[0, 0\\], which is not the output of an InputLayer"),
    "input_left_out": (lambda c: c["config"].update(input_layers=[["enc", 0, 0]]),
                       "depend on InputLayer 'dec', which is not among the model's "
                       "`input_layers`"),
    "input_layers_int": (lambda c: c["config"].update(input_layers=7),
                         "`input_layers` is not a tensor reference"),
    "no_outputs": (lambda c: c["config"].update(output_layers=[]),
                   "`output_layers` is not a tensor reference"),
    "output_unknown": (lambda c: c["config"].update(output_layers=["ghost", 0, 0]),
                       "`output_layers` refers to layer 'ghost'"),
    "inbound_not_list": (lambda c: _entry(c, "decoder").update(inbound_nodes={"args": []}),
                         "layer 'decoder' has no list of inbound nodes"),
    "node_not_call": (lambda c: _entry(c, "decoder").update(inbound_nodes=[[1, 2]]),
                      "layer 'decoder''s node 0 is not a call"),
    "never_called": (lambda c: _entry(c, "decoder").update(inbound_nodes=[]),
                     "layer 'decoder' is never called"),
    "input_layer_called": (
        lambda c: _entry(c, "enc").update(inbound_nodes=_entry(c, "encoder")["inbound_nodes"]),
        "layer 'enc' is an InputLayer called on other tensors"),
    "deep_arguments": (_nested_args, "nests its arguments too deeply"),
    "unknown_call_argument": (
        lambda c: _entry(c, "decoder")["inbound_nodes"][0]["kwargs"].update(frobnicate=1),
        "frobnicate"),
    "layers_not_list": (lambda c: c["config"].update(layers={}), "has no list of layers"),
    "lambda": (_replace_class("shared", "Lambda", _LAMBDA),
               r"layer 'shared' \(Lambda\): a Lambda layer holds Python code"),
    "keras_operation": (_replace_class("concat", "Concatenate", {}, module="keras.src.ops.numpy"),
                        r"layer 'concat' \(Concatenate\) is a Keras operation"),
    "unknown_class": (_replace_class("decoder", "GRU", {"reset_after": True}),
                      r"layer 'decoder' \(GRU\): pylstm does not support the Keras layer class "
                      r"'GRU'"),
    "huge_input_shape": (
        lambda c: _entry(c, "enc")["config"].update(batch_shape=[None, 5, 10**15]),
        r"exceed the limit of 2147483648 bytes \(max_weight_bytes\)"),
    "huge_batch_size": (
        lambda c: _entry(c, "enc")["config"].update(batch_shape=[10**400, 5, 3]),
        "cannot be built"),
}

LEGACY_GRAPH_CASES = {
    "construction_node": (
        lambda c: _entry(c, "proj")["inbound_nodes"][0][0].__setitem__(1, 0),
        "refers to node 0 of model 'head', whose calls Keras numbers from 1"),
    "kwargs_not_dict": (lambda c: _entry(c, "lstm")["inbound_nodes"][0][0].append(5),
                        "is not a tensor reference"),
    "kwargs_of_wrong_type": (
        lambda c: _entry(c, "lstm")["inbound_nodes"][0][0].__setitem__(3, [1]),
        "has call arguments that are not a dict"),
    "short_reference": (lambda c: _entry(c, "lstm")["inbound_nodes"][0][0].__delitem__(
        slice(2, None)), "is not a tensor reference"),
    "dict_node": (lambda c: _entry(c, "lstm").update(inbound_nodes=[{"args": []}]),
                  "is not a list of input tensors"),
    "cycle": (lambda c: _entry(c, "lstm")["inbound_nodes"][0].__setitem__(
        0, ["concatenate", 0, 0, {}]), "the graph has a cycle"),
    "extra_inputs_of_a_model": (
        lambda c: _entry(c, "head")["inbound_nodes"][0].append(["a", 0, 0, {}]),
        "cannot be built"),
}

for _name, (_edit, _) in GRAPH_CASES.items():
    case(f"graph_{_name}")(lambda files, root, e=_edit, n=_name:
                           _functional_edited(files, root, f"graph_{n}", e))
for _name, (_edit, _) in LEGACY_GRAPH_CASES.items():
    case(f"legacy_graph_{_name}")(lambda files, root, e=_edit, n=_name:
                                  _legacy_functional_edited(files, root, f"legacy_graph_{n}", e))
case("graph_long_chain")(lambda files, root: _functional_edited(files, root, "chain", _chain))


@pytest.mark.parametrize("name", sorted(GRAPH_CASES))
def test_functional_graph_is_checked(outcomes, name):
    """Every reference of a functional model's graph is checked before a layer is built: a
    ValueError naming the file says what is wrong."""
    _assert_refused(outcomes[f"graph_{name}"], GRAPH_CASES[name][1])


@pytest.mark.parametrize("name", sorted(LEGACY_GRAPH_CASES))
def test_keras2_functional_graph_is_checked(outcomes, name):
    _assert_refused(outcomes[f"legacy_graph_{name}"], LEGACY_GRAPH_CASES[name][1])


def test_long_graph_listed_backwards_loads(outcomes):
    """2000 calls whose layers the config lists last first load in one pass over a topological
    order (Keras's loader retries the whole list until each call can be made)."""
    out = outcomes["graph_long_chain"]
    assert out["outcome"] == "loaded", out
    assert np.asarray(out["y"][0]).shape == (2, 4, 4)


def _graph_fields(config):
    """The paths of every field of a functional config outside its layers' own configs."""
    return [("config",) + field for field in list(_paths(config["config"]))[1:]
            if not (len(field) > 2 and field[0] == "layers" and field[2] == "config")]


def test_functional_graph_fields_of_the_wrong_type(files, tmp_path):
    """Every field of the graph of a functional `.keras` file and of Keras 2's functional `.h5`
    (nodes, references, inputs and outputs, names, nested models' graphs) replaced by each of
    the first five `ODD_VALUES`: a loaded model or a ValueError naming the file."""
    members = _members(files["functional"])
    config = json.loads(members["config.json"])
    cases = []
    for i, field in enumerate(_graph_fields(config)):
        for j, value in enumerate(ODD_VALUES[:5]):
            path = tmp_path / f"field{i}_{j}.keras"
            _write_zip(path, {**members,
                              "config.json": json.dumps(_replaced(config, field, value)).encode()})
            cases.append((path, None))
    with h5py.File(files["legacy_functional"], "r") as f:
        legacy = json.loads(f.attrs["model_config"])
    for i, field in enumerate(_graph_fields(legacy)):
        for j, value in enumerate(ODD_VALUES[:5]):
            path = tmp_path / f"legacy{i}_{j}.h5"
            path.write_bytes(files["legacy_functional"].read_bytes())
            with h5py.File(path, "r+") as f:
                f.attrs["model_config"] = json.dumps(_replaced(legacy, field, value))
            cases.append((path, None))
    results = _run(cases)
    bad = [(str(p), o) for (p, _), o in zip(cases, results) if not (
        o["outcome"] == "loaded" or o["outcome"] in ("ValueError", "TypeError")
        and o["names_file"])]
    assert not bad, bad[:5]
    assert len(cases) > 1000
    assert sum(o["outcome"] == "ValueError" for o in results) > len(cases) // 2
