"""A corpus of hostile model files for every format pylstm loads, and what loads and judges them
in the isolated worker (`tests/support/isolated.py`).

Usage: `python -P tests/support/hostile_files.py OUT_DIR` writes the corpus into OUT_DIR (a few
seconds, about 60 MB; no TensorFlow): the files, `manifest.json` (one entry per file: its name, format,
class, loaders and expected outcome) and `reference.npz` (the predictions of the valid files).
`tests/files/test_hostile_files.py` runs every entry through its loaders; it imports this file by
path.

Formats: pylstm's own (`Sequential.save("x.pylstm")`, an npz zip), `.keras` (a zip of
config.json, metadata.json, model.weights.h5), `.weights.h5`, legacy Keras `.h5` (the Keras 2
fixture `tests/data/keras2_lstm.h5.gz`), `.pt` (`torch.save` of a state dict) and
`.safetensors`. Classes: valid files, zip bombs, lying sizes (zip headers, npy headers, HDF5
shapes, safetensors headers, torch storages), HDF5 virtual datasets, external storage,
external and soft links, byte flips (a deterministic sample, `PYLSTM_HOSTILE_FLIPS` per
format, default 24), truncations, random bytes behind the right magic, pickles whose
`__reduce__` would create a marker file, deeply nested JSON, wrong-typed config fields,
big-endian weights, huge `units`, the encrypted-zip flag, unusual dtypes.

Expected outcomes: "error" (a ValueError or TypeError naming the file), "loads_same" (loads,
and predicts as the valid file does), "error_or_same" (one of the two: a format with checksums)
and "error_or_loads" (a format without checksums, where a flipped weight byte cannot be seen).

External targets (the files that VDS, external storage and external links point at) live in
OUT_DIR/outside, marker files of pickle payloads in OUT_DIR/markers: neither may be touched.
"""

import gzip
import io
import json
import os
import pickle
import resource
import shutil
import struct
import sys
import time
import traceback
import zipfile
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
INPUT = (5, 3)  # (timesteps, features) of every model file in the corpus
TARGET_VALUE = np.float32(777.25)  # the external target's floats
SECRET = b"root:x:0:0:pylstm-hostile-secret:/root:/bin/bash\n"
BOMB_BYTES = 3_758_096_384  # 3.5 GiB of zeros, still below the 4 GiB that needs zip64
ERROR, SAME, ERROR_OR_SAME, ERROR_OR_LOADS = "error", "loads_same", "error_or_same", \
    "error_or_loads"

LOADERS = {  # format -> the public loaders each of its files goes through
    "pylstm": ["load_model"],
    "keras": ["load_model", "load_keras_weights"],
    "weights.h5": ["Sequential.load_weights"],
    "h5": ["load_keras", "load_keras_weights"],
    "pt": ["load_state_dict_file", "nn.LSTM.load_state_dict"],
    "safetensors": ["load_state_dict_file", "nn.LSTM.load_state_dict"],
}
SUFFIX = {"pylstm": ".pylstm", "keras": ".keras", "weights.h5": ".weights.h5", "h5": ".h5",
          "pt": ".pt", "safetensors": ".safetensors"}


# Reference models ---------------------------------------------------------------------------


def small_model(seed=0):
    """The corpus's model: Input(5, 3) -> LSTM(4) -> Dense(2), compiled with Adam and MSE."""
    from pylstm.layers import LSTM, Dense, Input
    from pylstm.models import Sequential

    model = Sequential([Input(INPUT), LSTM(4), Dense(2)])
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=0.5, size=w.shape).astype(w.dtype)
                       for w in model.get_weights()])
    model.compile(optimizer="adam", loss="mse")
    return model


def small_nn(seed=0):
    from pylstm.nn import LSTM

    return LSTM(INPUT[1], 4, seed=seed)


def inputs():
    """`(x, x1)`: a (2, 5, 3) batch and one sample (the small-call path)."""
    x = np.random.default_rng(0).normal(size=(2,) + INPUT).astype(np.float32)
    return x, x[:1].copy()


def receiver(fmt, corpus):
    """A fresh model for a weights-only loader of format `fmt`, its weights not the file's."""
    if fmt == "h5":
        from pylstm.models import load_keras

        model = load_keras(os.path.join(corpus, "valid.h5"), compile=False)
        model.set_weights([np.full_like(w, 0.01) for w in model.get_weights()])
        return model
    if fmt in ("pt", "safetensors"):
        return small_nn(seed=7)
    return small_model(seed=7)


def outputs_of(kind, obj):
    """The outputs compared with the reference: predictions (models), the output on `x`
    (`nn.LSTM`) or the arrays (state dicts)."""
    x, x1 = inputs()
    if kind == "model":
        return {"pred": obj.predict(x, verbose=0), "pred1": obj.predict(x1, verbose=0)}
    if kind == "nn":
        lstm = obj.eval()
        return {"out": lstm(np.ascontiguousarray(x.transpose(1, 0, 2)))[0],
                "out1": lstm(np.ascontiguousarray(x1.transpose(1, 0, 2)))[0]}
    return {f"state:{k}": np.asarray(v) for k, v in obj.items()}


def reference_key(fmt, loader):
    if fmt in ("pt", "safetensors"):
        return "state" if loader == "load_state_dict_file" else "nn"
    return "legacy" if fmt == "h5" else "small"


# Loading (in the worker) ----------------------------------------------------------------------


def _load(fmt, loader, path, corpus):
    """Runs one public loader; returns `(kind, object whose outputs are compared, weights)`."""
    from pylstm import nn
    from pylstm.models import load_keras, load_keras_weights, load_model

    if loader == "load_model":
        model = load_model(path)
    elif loader == "load_keras":
        model = load_keras(path)
    elif loader == "load_keras_weights":
        model = receiver(fmt, corpus)
        load_keras_weights(model, path)
    elif loader == "Sequential.load_weights":
        model = receiver(fmt, corpus)
        model.load_weights(path)
    elif loader == "nn.LSTM.load_state_dict":
        lstm = receiver(fmt, corpus)
        lstm.load_state_dict(path)
        return "nn", lstm, list(lstm.state_dict().values())
    elif loader == "load_state_dict_file":
        state = nn.load_state_dict_file(path)
        return "state", state, list(state.values())
    else:
        raise AssertionError(loader)
    return "model", model, model.get_weights()


def _holds_target(arrays):
    """Whether loaded arrays hold the bytes of an external target file."""
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.kind == "f" and np.any(a == TARGET_VALUE):
            return True
        if SECRET[:16] in np.ascontiguousarray(a).tobytes():
            return True
    return False


_REFERENCE = {}


def run_entry(corpus, entry, loader):
    """Loads the corpus file of `entry` with `loader`; returns a plain dict: the outcome
    ("loaded" or "raised"), and for a load whether its outputs match the reference and whether
    it holds external bytes, for an exception its type, message and cause; with the seconds
    the call took and the process's peak resident memory after it (MB)."""
    start = time.perf_counter()
    result = _run_entry(corpus, entry, loader)
    result["seconds"] = time.perf_counter() - start
    result["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _run_entry(corpus, entry, loader):
    path = os.path.join(corpus, entry["name"])
    if corpus not in _REFERENCE:
        with np.load(os.path.join(corpus, "reference.npz")) as ref:
            _REFERENCE[corpus] = dict(ref)
    ref = _REFERENCE[corpus]
    try:
        kind, obj, weights = _load(entry["format"], loader, path, corpus)
        got = outputs_of(kind, obj)
        key = reference_key(entry["format"], loader)
        wanted = {k.split("|", 1)[1]: v for k, v in ref.items() if k.startswith(key + "|")}
        same = set(got) == set(wanted) and all(
            np.asarray(got[k]).shape == wanted[k].shape
            and np.allclose(np.asarray(got[k], dtype=np.float64), wanted[k], rtol=1e-5,
                            atol=1e-6) for k in got)
        return {"outcome": "loaded", "same": bool(same), "holds_target": _holds_target(weights)}
    except BaseException as e:  # noqa: B036 - every exception is the data here
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        cause = e.__cause__ or e.__context__
        return {"outcome": "raised", "type": f"{type(e).__module__}.{type(e).__qualname__}",
                "value_or_type_error": isinstance(e, (ValueError, TypeError)),
                "names_file": os.path.basename(path) in str(e),
                "message": str(e)[:400],
                "cause": None if cause is None else f"{type(cause).__name__}: {str(cause)[:200]}",
                "where": _where(e)}


def expectation(entry, loader):
    """The outcome expected of `entry` through `loader` (an entry's `expect` is one outcome,
    or a dict by loader)."""
    expect = entry["expect"]
    return expect[loader] if isinstance(expect, dict) else expect


def _where(e):
    """The last frames of `e`'s traceback, without reading source files (which would show as
    opens outside the corpus)."""
    frames = traceback.StackSummary.extract(traceback.walk_tb(e.__traceback__),
                                            lookup_lines=False)[-3:]
    return " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}"
                       for f in reversed(frames))


def judge(entry, loader, result):
    """None if `result` (from `run_entry`) meets the expectation of `entry` through `loader`,
    else why not."""
    expect = expectation(entry, loader)
    if result["outcome"] == "loaded":
        if result["holds_target"]:
            return "loaded the bytes of a file outside the corpus"
        if expect == ERROR:
            return "loaded, expected a ValueError/TypeError"
        if expect in (SAME, ERROR_OR_SAME) and not result["same"]:
            return "loaded with outputs different from the valid file's (silently wrong)"
        return None
    if not result["value_or_type_error"]:
        return f"raised {result['type']}: {result['message'][:200]} (at {result['where']})"
    if not result["names_file"]:
        return f"raised {result['type']} without naming the file: {result['message'][:200]}"
    if expect == SAME:
        return f"raised {result['type']}, expected it to load: {result['message'][:200]}"
    return None


# Zip writing --------------------------------------------------------------------------------


def _zip(members, encrypted=False, lie=None):
    """A zip archive of `members` [(name, data)] (stored), or [(name, raw, method, crc,
    usize)] for a member whose compressed bytes are given. `lie` edits each member's declared
    (local and central) sizes: `lie(name, csize, usize) -> (csize, usize)`."""
    out, central = io.BytesIO(), []
    for m in members:
        if len(m) == 2:
            name, data = m
            raw, method, crc, usize = data, 0, zlib.crc32(data), len(data)
        else:
            name, raw, method, crc, usize = m
        csize = len(raw)
        if lie is not None:
            csize, usize = lie(name, csize, usize)
        name_b = name.encode()
        flags = 1 if encrypted else 0
        offset = out.tell()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, method, 0, 0x21, crc,
                              csize, usize, len(name_b), 0) + name_b + raw)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, flags, method, 0,
                                   0x21, crc, csize, usize, len(name_b), 0, 0, 0, 0, 0, offset)
                       + name_b)
    start = out.tell()
    for c in central:
        out.write(c)
    size = out.tell() - start
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), size,
                          start, 0))
    return out.getvalue()


_BOMB = {}


def _zero_deflate(n):
    """`(raw deflate stream, crc32)` of `n` zero bytes (n a multiple of 1 MiB), built from
    one compressed MiB repeated: a few MB for GBs."""
    if n not in _BOMB:
        mib = bytes(1 << 20)
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        block = c.compress(mib) + c.flush(zlib.Z_FULL_FLUSH)
        crc = 0
        for _ in range(n >> 20):
            crc = zlib.crc32(mib, crc)
        _BOMB[n] = (block * (n >> 20) + c.flush(), crc)
    return _BOMB[n]


def _members(path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def _npy(array=None, header=None, data=b""):
    """An .npy file: of `array`, or of a hand-written header dict literal and data bytes."""
    if array is not None:
        buf = io.BytesIO()
        np.lib.format.write_array(buf, array, allow_pickle=True)
        return buf.getvalue()
    text = header.encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


def _h5_bytes(src, edit):
    """`src` (HDF5 bytes) after `edit(h5py.File)`."""
    import h5py

    buf = io.BytesIO(src)
    with h5py.File(buf, "r+") as f:
        edit(f)
    return buf.getvalue()


# Corpus -------------------------------------------------------------------------------------


class _Corpus:
    def __init__(self, out):
        self.out = Path(out)
        self.entries = []

    def add(self, fmt, cls, name, data, expect, note="", loaders=None):
        name = f"{cls}__{name}{SUFFIX[fmt]}"
        (self.out / name).write_bytes(data)
        self.entries.append({"name": name, "format": fmt, "cls": cls, "expect": expect,
                             "loaders": loaders or LOADERS[fmt], "note": note})


def _marker_payload(marker):
    class Payload:
        def __reduce__(self):
            return exec, (f"open({str(marker)!r}, 'w').close()",)

    return Payload()


def _hdf5_attacks(outside, kernel_shape, name):
    """[(class, case, edit(f), expect)] for the HDF5 dataset `name` of shape `kernel_shape`:
    the dataset replaced by something hostile."""
    import h5py

    n = int(np.prod(kernel_shape))
    target_h5 = str(outside / "target.h5")
    target_bin = str(outside / "target.bin")
    secret = str(outside / "secret.txt")

    def replace(make):
        def edit(f):
            value = f[name][()]
            del f[name]
            make(f, value)
        return edit

    aux = "/hostile_aux/" + name.replace("/", "_")  # outside the groups the loaders list

    def vds(source_file, source_name):
        def make(f, value):
            if source_file == "." and source_name.lstrip("/") != name:
                f.create_dataset(source_name, data=value)
            layout = h5py.VirtualLayout(shape=kernel_shape, dtype="f4")
            layout[...] = h5py.VirtualSource(source_file, source_name, shape=kernel_shape)
            f.create_virtual_dataset(name, layout)
        return make

    def external(target, offset=0):
        return lambda f, value: f.create_dataset(
            name, shape=kernel_shape, dtype="f4", external=[(target, offset, n * 4)])

    def dtype(dt):
        return lambda f, value: f.create_dataset(name, data=value.astype(dt))

    def soft(f, value):
        f.create_dataset(aux, data=value)
        f[name] = h5py.SoftLink(aux)

    def soft_cycle(f, value):
        f[name] = h5py.SoftLink(aux)
        f[aux] = h5py.SoftLink("/" + name)

    compound = np.dtype([("a", "<f4"), ("b", "<f4")])
    return [
        ("vds", "self_cycle", replace(vds(".", "/" + name)), ERROR),
        ("vds", "same_file", replace(vds(".", aux)), ERROR),
        ("vds", "other_file", replace(vds(target_h5, "/data")), ERROR),
        ("vds", "missing_file", replace(vds(str(outside / "absent.h5"), "/data")), ERROR),
        ("external_storage", "target_bin", replace(external(target_bin)), ERROR),
        ("external_storage", "secret_txt", replace(external(secret)), ERROR),
        ("external_storage", "relative", replace(external("../outside/target.bin")), ERROR),
        ("external_storage", "etc_passwd", replace(external("/etc/passwd")), ERROR),
        ("external_link", "target_h5", replace(lambda f, v: f.__setitem__(
            name, h5py.ExternalLink(target_h5, "/data"))), ERROR),
        ("external_link", "self", replace(lambda f, v: f.__setitem__(
            name, h5py.ExternalLink(".", "/" + name))), ERROR),
        ("soft_link", "elsewhere", replace(soft), ERROR),
        ("soft_link", "cycle", replace(soft_cycle), ERROR),
        ("lying_size", "contiguous_40GB", replace(lambda f, v: f.create_dataset(
            name, shape=(100_000, 100_000), dtype="f4")), ERROR),
        ("lying_size", "chunked_4TB", replace(lambda f, v: f.create_dataset(
            name, shape=(1 << 20, 1 << 20), dtype="f4", chunks=(64, 64))), ERROR),
        ("lying_size", "huge_first_dim", replace(lambda f, v: f.create_dataset(
            name, shape=(kernel_shape[0] * 10**8, kernel_shape[1]), dtype="f4",
            chunks=kernel_shape)), ERROR),
        ("lying_size", "gzip_chunks_4GB", replace(lambda f, v: f.create_dataset(
            name, shape=(1 << 15, 1 << 15), dtype="f4", chunks=(1 << 10, 1 << 10),
            compression="gzip", fillvalue=1.0)), ERROR),
        ("big_endian", "f4", replace(dtype(">f4")), SAME),
        ("big_endian", "f8", replace(dtype(">f8")), SAME),
        ("dtype", "int32", replace(dtype("<i4")), ERROR),
        ("dtype", "float16", replace(dtype("<f2")), ERROR_OR_LOADS),
        ("dtype", "compound", replace(lambda f, v: f.create_dataset(
            name, shape=kernel_shape, dtype=compound)), ERROR),
        ("dtype", "string", replace(lambda f, v: f.create_dataset(
            name, data=np.full(kernel_shape, b"abcd"))), ERROR),
        ("dtype", "vlen", replace(lambda f, v: f.create_dataset(
            name, shape=kernel_shape, dtype=h5py.vlen_dtype("f4"))), ERROR),
        ("dtype", "scalar", replace(lambda f, v: f.create_dataset(name, data=1.5)), ERROR),
        ("dtype", "nan", replace(lambda f, v: f.create_dataset(
            name, data=np.full(kernel_shape, np.nan, "f4"))), ERROR),
        ("dtype", "group_not_dataset", replace(lambda f, v: f.create_group(name)), ERROR),
    ]


def _keras2_attr_attacks():
    """[(class, case, edit(f), expect)] for the root attributes of a legacy Keras file."""

    def config_edit(change):
        def edit(f):
            config = json.loads(f.attrs["model_config"])
            change(config)
            f.attrs["model_config"] = json.dumps(config)
        return edit

    def lstm(c):
        return next(x for x in c["config"]["layers"] if x["class_name"] == "LSTM")["config"]

    def first(c):  # the InputLayer, whose batch_input_shape is the model's
        return c["config"]["layers"][0]["config"]

    def set_attr(key, value, where="/"):
        def edit(f):
            f[where].attrs[key] = value
        return edit

    return [
        ("nested_json", "model_config", set_attr("model_config", "[" * 100_000 + "]" * 100_000),
         ERROR),
        ("nested_json", "training_config", set_attr("training_config",
                                                    "{\"a\":" * 50_000 + "1" + "}" * 50_000),
         ERROR_OR_LOADS),
        ("wrong_type", "model_config_int", set_attr("model_config", 5), ERROR),
        ("wrong_type", "model_config_bytes",
         set_attr("model_config", np.void(b"\xff\xfe\x00\x01")), ERROR),
        ("wrong_type", "units_str", config_edit(lambda c: lstm(c).update(units="4")), ERROR),
        ("wrong_type", "module_int", config_edit(
            lambda c: c["config"]["layers"][1].update(module=1)), ERROR),
        ("wrong_type", "layers_str", config_edit(lambda c: c["config"].update(layers="x")),
         ERROR),
        ("wrong_type", "batch_shape_str", config_edit(
            lambda c: first(c).update(batch_input_shape="abc")), ERROR),
        ("wrong_type", "layer_names_int", set_attr("layer_names", 5, "model_weights"), ERROR),
        ("wrong_type", "layer_names_missing_group", set_attr(
            "layer_names", [b"lstm", b"nope", b"dense"], "model_weights"), ERROR),
        ("wrong_type", "weight_names_to_root", set_attr(
            "weight_names", [b"/", b"..", b"/model_weights"], "model_weights/dense"), ERROR),
        ("huge_units", "4000", config_edit(lambda c: lstm(c).update(units=4000)), ERROR),
        ("huge_units", "1e9", config_edit(lambda c: lstm(c).update(units=10**9)), ERROR),
        ("huge_units", "2e19", config_edit(lambda c: lstm(c).update(units=2 * 10**19)), ERROR),
        ("huge_units", "batch_shape_1e12", config_edit(
            lambda c: first(c).update(batch_input_shape=[None, 5, 10**12])), ERROR),
    ]


def _keras_config_attacks(marker):
    """[(class, case, change(config dict) or a replacement text, expect)] for a .keras
    config.json (Keras 3 layout: layers[0] is the InputLayer, [1] the LSTM, [2] the Dense)."""

    def layer(i, **kv):
        return lambda c: c["config"]["layers"][i]["config"].update(kv)

    def top(**kv):
        return lambda c: c.update(kv)

    lambda_layer = {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
                    "config": {"name": "evil", "function": {
                        "class_name": "__lambda__", "config": {
                            "code": f"open({str(marker)!r}, 'w').close()", "defaults": None,
                            "closure": None}}}}
    return [
        ("nested_json", "list", "[" * 100_000 + "]" * 100_000, ERROR),
        ("nested_json", "dict", "{\"a\":" * 50_000 + "1" + "}" * 50_000, ERROR),
        ("nested_json", "layer_config", lambda c: c["config"]["layers"][1].update(
            config=json.loads("{\"a\":" * 500 + "1" + "}" * 500)), ERROR),
        ("wrong_type", "module_int", lambda c: c["config"]["layers"][1].update(module=1), ERROR),
        ("wrong_type", "class_name_list", lambda c: c["config"]["layers"][1].update(
            class_name=["LSTM"]), ERROR),
        ("wrong_type", "config_null", lambda c: c["config"]["layers"][1].update(config=None),
         ERROR),
        ("wrong_type", "layer_int", lambda c: c["config"]["layers"].__setitem__(1, 5), ERROR),
        ("wrong_type", "layers_dict", lambda c: c["config"].update(layers={}), ERROR),
        ("wrong_type", "config_str", top(config="x"), ERROR),
        ("wrong_type", "top_list", "[1, 2]", ERROR),
        ("wrong_type", "units_str", layer(1, units="4"), ERROR),
        ("wrong_type", "units_float", layer(1, units=4.5), ERROR),
        ("wrong_type", "units_list", layer(1, units=[4]), ERROR),
        ("wrong_type", "units_null", layer(1, units=None), ERROR),
        ("wrong_type", "units_negative", layer(1, units=-4), ERROR),
        ("wrong_type", "activation_int", layer(1, activation=5), ERROR),
        ("wrong_type", "return_sequences_str", layer(1, return_sequences="yes"), ERROR_OR_LOADS),
        ("wrong_type", "name_dict", layer(1, name={"a": 1}), ERROR_OR_LOADS),
        ("wrong_type", "batch_shape_str", layer(0, batch_shape="abc"), ERROR),
        ("wrong_type", "batch_shape_negative", layer(0, batch_shape=[None, 5, -3]), ERROR),
        ("wrong_type", "batch_shape_float", layer(0, batch_shape=[None, 5, 3.5]), ERROR),
        ("wrong_type", "initializer_int", layer(1, kernel_initializer=5), ERROR),
        ("wrong_type", "dtype_list", layer(1, dtype=[1]), ERROR),
        ("wrong_type", "compile_config_list", top(compile_config=[1]), ERROR_OR_LOADS),
        ("wrong_type", "metrics_int", lambda c: c.setdefault("compile_config", {}).update(
            metrics=[1]), ERROR_OR_LOADS),
        ("wrong_type", "optimizer_int", lambda c: c.setdefault("compile_config", {}).update(
            optimizer=5), ERROR_OR_LOADS),
        ("code", "module_os_system", lambda c: c["config"]["layers"][1].update(
            module="os", class_name="system"), ERROR),
        ("code", "lambda_layer", lambda c: c["config"]["layers"].insert(2, lambda_layer), ERROR),
        ("code", "registered_custom", lambda c: c["config"]["layers"][1].update(
            registered_name="Custom>Evil", class_name="Custom>Evil"), ERROR),
        ("huge_units", "4000", layer(1, units=4000), ERROR),
        ("huge_units", "1e6", layer(1, units=10**6), ERROR),
        ("huge_units", "2e19", layer(1, units=2 * 10**19), ERROR),
        ("huge_units", "1e400_float", "REPLACE_UNITS_1e400", ERROR),
        ("huge_units", "dense_1e9", layer(2, units=10**9), ERROR),
        ("huge_units", "features_1e12", layer(0, batch_shape=[None, 5, 10**12]), ERROR),
        ("huge_units", "timesteps_1e12", layer(0, batch_shape=[None, 10**12, 3]), ERROR_OR_LOADS),
    ]


def _pylstm_config_attacks(marker):
    """Like `_keras_config_attacks`, for the config.json of a pylstm file ({"format",
    "format_version", "model": {"name", "layers": [...], "build_input_shape"},
    "compile_config"})."""

    def layers(c):
        return c["model"]["layers"]

    def lstm(**kv):
        return lambda c: layers(c)[1]["config"].update(kv)

    return [
        ("nested_json", "list", "[" * 100_000 + "]" * 100_000, ERROR),
        ("nested_json", "model", lambda c: c.update(model=json.loads("[" * 900 + "]" * 900)),
         ERROR),
        ("wrong_type", "model_int", lambda c: c.update(model=1), ERROR),
        ("wrong_type", "layers_str", lambda c: c["model"].update(layers="x"), ERROR),
        ("wrong_type", "build_shape_str", lambda c: c["model"].update(build_input_shape="x"),
         ERROR),
        ("huge_units", "features_1e12", lambda c: layers(c)[0]["config"].update(
            batch_shape=[None, 5, 10**12]), ERROR),
        ("wrong_type", "layer_int", lambda c: layers(c).__setitem__(0, 5), ERROR),
        ("wrong_type", "class_name_int", lambda c: layers(c)[0].update(class_name=5), ERROR),
        ("wrong_type", "config_list", lambda c: layers(c)[1].update(config=[1]), ERROR),
        ("wrong_type", "units_str", lstm(units="4"), ERROR),
        ("wrong_type", "units_float", lstm(units=4.5), ERROR),
        ("wrong_type", "units_negative", lstm(units=-4), ERROR),
        ("wrong_type", "activation_int", lstm(activation=5), ERROR),
        ("wrong_type", "unknown_argument", lstm(evil=1), ERROR),
        ("wrong_type", "compile_config_list", lambda c: c.update(compile_config=[1]), ERROR),
        ("wrong_type", "metrics_int", lambda c: c["compile_config"].update(metrics=[1]), ERROR),
        ("wrong_type", "optimizer_int", lambda c: c["compile_config"].update(optimizer=5), ERROR),
        ("wrong_type", "loss_dict", lambda c: c["compile_config"].update(
            loss={"class_name": "os.system"}), ERROR),
        ("wrong_type", "format_version_str", lambda c: c.update(format_version="1"), ERROR),
        ("code", "class_name_builtin", lambda c: layers(c)[1].update(class_name="object"), ERROR),
        ("code", "class_name_lambda", lambda c: layers(c)[1].update(
            class_name="Lambda", config={"function": f"open({str(marker)!r}, 'w')"}), ERROR),
        ("huge_units", "4000", lstm(units=4000), ERROR),
        ("huge_units", "1e6", lstm(units=10**6), ERROR),
        ("huge_units", "2e19", lstm(units=2 * 10**19), ERROR),
        ("huge_units", "1e400_float", "REPLACE_UNITS_1e400", ERROR),
    ]


def _flips(corpus, fmt, base, cls, count, expect, seed, rewrap=None):
    """`count` copies of `base` with one byte XORed by a nonzero value, at deterministic
    offsets; `rewrap(bytes)` re-packs an edited member (a .keras's HDF5)."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        offset = int(rng.integers(0, len(base)))
        value = int(rng.integers(1, 256))
        data = bytearray(base)
        data[offset] ^= value
        data = bytes(data) if rewrap is None else rewrap(bytes(data))
        corpus.add(fmt, cls, f"at{offset}_x{value:02x}", data, expect)


def _member_flips(corpus, fmt, base, count, seed):
    """`count` copies of the zip `base` with one byte of one member (drawn deterministically)
    XORed, zipped again with valid checksums: the member's own parser meets the damage."""
    members = _members(io.BytesIO(base))
    rng = np.random.default_rng(seed)
    for _ in range(count):
        k = int(rng.integers(len(members)))
        name, data = members[k]
        offset = int(rng.integers(0, max(len(data), 1)))
        value = int(rng.integers(1, 256))
        damaged = bytearray(data)
        if damaged:
            damaged[offset] ^= value
        edited = list(members)
        edited[k] = (name, bytes(damaged))
        corpus.add(fmt, "byte_flip_member", f"{name.replace('/', '_')}_at{offset}_x{value:02x}",
                   _zip(edited), ERROR_OR_LOADS)


def _truncations(corpus, fmt, base, expect):
    n = len(base)
    for cut in sorted({0, 1, 7, 8, 16, 64, n // 8, n // 4, n // 2, 3 * n // 4, n - 64, n - 22,
                       n - 1}):
        corpus.add(fmt, "truncation", f"to{cut}", base[:cut], ERROR if cut == 0 else expect)


def _random(corpus, fmt, magics, seed):
    rng = np.random.default_rng(seed)
    for magic_name, magic in magics:
        for size in (16, 600, 5000):
            corpus.add(fmt, "random_bytes", f"{magic_name}_{size}", magic + rng.bytes(size),
                       ERROR)


def write_valid(out):
    """Writes the valid file of each format (`valid.pylstm`, `valid.keras`, ...) and
    `reference.npz` (their outputs) into the folder `out`, which must exist."""
    from pylstm.models import load_keras

    out = Path(out)
    reference = {}
    model = small_model(seed=0)
    model.save(out / "valid.pylstm")
    model.save(out / "valid.keras")
    model.save_weights(out / "valid.weights.h5")
    (out / "valid.h5").write_bytes(gzip.decompress((HERE.parent / "data" / "keras2_lstm.h5.gz")
                                                   .read_bytes()))
    lstm = small_nn(seed=0)
    lstm.save_state_dict(out / "valid.safetensors")
    lstm.save_state_dict(out / "valid.pt")
    for key, kind, obj in [("small", "model", model), ("nn", "nn", lstm),
                           ("state", "state", lstm.state_dict()),
                           ("legacy", "model", load_keras(out / "valid.h5"))]:
        for k, v in outputs_of(kind, obj).items():
            reference[f"{key}|{k}"] = np.asarray(v, dtype=np.float64)
    np.savez(out / "reference.npz", **reference)


def write_corpus(out, flips=None):
    """Writes the corpus into the folder `out` (created; emptied of a previous corpus) and
    returns its manifest (the list of entries)."""
    import h5py

    flips = int(os.environ.get("PYLSTM_HOSTILE_FLIPS", 24)) if flips is None else flips
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    outside, markers = out / "outside", out / "markers"
    for d in (out, outside, markers):
        d.mkdir(parents=True)
    (outside / "target.bin").write_bytes(np.full(4096, TARGET_VALUE, "<f4").tobytes())
    (outside / "secret.txt").write_bytes(SECRET * 64)
    with h5py.File(outside / "target.h5", "w") as f:
        f.create_dataset("data", data=np.full((64, 64), TARGET_VALUE, "f4"))
    corpus = _Corpus(out)
    write_valid(out)
    base = {fmt: (out / f"valid{SUFFIX[fmt]}").read_bytes() for fmt in SUFFIX}
    for fmt in SUFFIX:
        corpus.add(fmt, "valid", "file", base[fmt], SAME)

    _pylstm_corpus(corpus, base["pylstm"], markers, flips)
    _keras_corpus(corpus, base["keras"], base["weights.h5"], outside, markers, flips)
    _legacy_corpus(corpus, base["h5"], outside, flips)
    _torch_corpus(corpus, base["pt"], markers, flips)
    _safetensors_corpus(corpus, base["safetensors"], flips)
    manifest = corpus.entries
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def _pylstm_corpus(corpus, base, markers, flips):
    fmt = "pylstm"
    members = dict(_members(io.BytesIO(base)))
    config = json.loads(np.load(io.BytesIO(members["config.json.npy"]))
                        .tobytes().decode())

    def with_members(**changes):
        m = dict(members)
        for k, v in changes.items():
            k = k.replace("__", ".")
            if v is None:
                m.pop(k, None)
            else:
                m[k] = v
        return _zip(list(m.items()))

    def config_npy(text):
        return _npy(np.frombuffer(text.encode(), np.uint8))

    weights = {k: np.load(io.BytesIO(v)) for k, v in members.items() if k.startswith("weight_")}
    first = sorted(weights)[0]
    marker = markers / "pylstm_config.txt"
    for cls, case, change, expect in _pylstm_config_attacks(marker):
        if isinstance(change, str):
            text = change if change != "REPLACE_UNITS_1e400" else json.dumps(config).replace(
                '"units": 4', '"units": 1e400')
        else:
            c = json.loads(json.dumps(config))
            change(c)
            text = json.dumps(c)
        corpus.add(fmt, cls, case, with_members(config__json__npy=config_npy(text)), expect)
    corpus.add(fmt, "wrong_type", "config_not_utf8",
               with_members(config__json__npy=_npy(np.frombuffer(b"\xff\xfe{}", np.uint8))),
               ERROR)
    corpus.add(fmt, "wrong_type", "config_float_array",
               with_members(config__json__npy=_npy(np.zeros(8, np.float64))), ERROR)
    corpus.add(fmt, "wrong_type", "no_config", with_members(config__json__npy=None), ERROR)
    corpus.add(fmt, "wrong_type", "missing_weight", with_members(**{
        sorted(weights)[-1].replace(".", "__"): None}), ERROR)
    corpus.add(fmt, "wrong_type", "extra_weight", with_members(
        weight_9999__npy=_npy(np.zeros(3, np.float32))), ERROR)
    corpus.add(fmt, "wrong_type", "single_npy", _npy(np.zeros(3, np.float32)), ERROR)
    # Weight members: dtypes, byte order, lying npy headers, pickles.
    w0 = weights[first]
    key = first.replace(".", "__")
    for case, arr, expect in [
        ("f4", w0.astype(">f4"), SAME), ("f8", w0.astype(">f8"), SAME),
        ("fortran", np.asfortranarray(w0), SAME)]:
        corpus.add(fmt, "big_endian" if case != "fortran" else "layout", case,
                   with_members(**{key: _npy(arr)}), expect)
    for case, arr in [("int32", w0.astype(np.int32)), ("complex", w0.astype(np.complex64)),
                      ("bytes", w0.astype("S4")), ("void", w0.view("V4")),
                      ("nan", np.full_like(w0, np.nan)), ("wrong_shape", w0.T.copy()),
                      ("f2", w0.astype(np.float16))]:
        corpus.add(fmt, "dtype", case, with_members(**{key: _npy(arr)}),
                   ERROR_OR_LOADS if case == "f2" else ERROR)
    shape = w0.shape
    for case, header, data in [
        ("declares_4GB", "{'descr': '<f4', 'fortran_order': False, 'shape': (1073741824,), }",
         w0.tobytes()),
        ("declares_2e40", "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }",
         w0.tobytes()),
        ("declares_more", f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({shape[0] * 100}, "
         f"{shape[1]}), }}", w0.tobytes()),
        ("negative_shape", "{'descr': '<f4', 'fortran_order': False, 'shape': (-1, 16), }",
         w0.tobytes()),
        ("nested_header", "{'descr': " + "[" * 3000 + "]" * 3000 + ", 'fortran_order': False, "
         "'shape': (3, 16), }", w0.tobytes()),
        ("not_a_dict", "__import__('os').system('true')", w0.tobytes()),
        ("descr_object", f"{{'descr': '|O', 'fortran_order': False, 'shape': {shape}, }}",
         pickle.dumps([_marker_payload(markers / "pylstm_npy_descr.txt")])),
    ]:
        corpus.add(fmt, "lying_size" if case.startswith("declares") else "npy_header", case,
                   with_members(**{key: _npy(header=header, data=data)}), ERROR)
    obj = np.empty(1, dtype=object)
    obj[0] = _marker_payload(markers / "pylstm_pickle.txt")
    corpus.add(fmt, "pickle", "object_array", with_members(**{key: _npy(obj)}), ERROR)
    corpus.add(fmt, "pickle", "raw_pickle",
               pickle.dumps(_marker_payload(markers / "pylstm_raw_pickle.txt")), ERROR)
    # Zip level: bombs, lying headers, the encrypted flag.
    raw, crc = _zero_deflate(BOMB_BYTES)
    header = _npy(header=f"{{'descr': '<f4', 'fortran_order': False, "
                  f"'shape': ({BOMB_BYTES // 4 - 32},), }}")[:128]
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb_npy = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    mlist = list(members.items())
    # Members whose header comes first leave their CRC at 0: a reader has inflated them whole
    # before it can see it is wrong.
    corpus.add(fmt, "zip_bomb", "weight_member", _zip(
        [(k, v) for k, v in mlist if k != first]
        + [(first, bomb_npy + raw, 8, 0, BOMB_BYTES)]), ERROR)
    cfg_header = _npy(header=f"{{'descr': '|u1', 'fortran_order': False, "
                      f"'shape': ({BOMB_BYTES - 128},), }}")[:128]
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    corpus.add(fmt, "zip_bomb", "config_member", _zip(
        [(k, v) for k, v in mlist if k != "config.json.npy"]
        + [("config.json.npy", c.compress(cfg_header) + c.flush(zlib.Z_FULL_FLUSH) + raw, 8, 0,
            BOMB_BYTES)]), ERROR)
    corpus.add(fmt, "zip_bomb", "extra_member", _zip(mlist + [("junk.npy", raw, 8, crc,
                                                               BOMB_BYTES)]),
               ERROR_OR_SAME)
    corpus.add(fmt, "lying_size", "zip_sizes_small", _zip(
        mlist, lie=lambda n, cs, us: (cs, 4)), ERROR)
    corpus.add(fmt, "lying_size", "zip_sizes_4GB", _zip(
        mlist, lie=lambda n, cs, us: (cs, 0xFFFFFFF0)), ERROR)
    corpus.add(fmt, "lying_size", "zip_csize_4GB", _zip(
        mlist, lie=lambda n, cs, us: (0xFFFFFFF0, us)), ERROR_OR_SAME)
    eocd = _zip(mlist)
    corpus.add(fmt, "lying_size", "eocd_65535_entries",
               eocd[:-12] + struct.pack("<HH", 0xFFFF, 0xFFFF) + eocd[-8:], ERROR)
    corpus.add(fmt, "lying_size", "zip64_locator_lies", eocd[:-22] + struct.pack(
        "<IIQI", 0x07064B50, 0, 2**62, 1) + eocd[-22:], ERROR)
    corpus.add(fmt, "encrypted_flag", "all", _zip(mlist, encrypted=True), ERROR)
    corpus.add(fmt, "wrong_type", "duplicate_members", _zip(mlist + [mlist[0]]),
               ERROR_OR_SAME)
    _flips(corpus, fmt, base, "byte_flip", flips, ERROR_OR_SAME, seed=1)
    _member_flips(corpus, fmt, base, flips, seed=14)
    _truncations(corpus, fmt, base, ERROR)
    _random(corpus, fmt, [("zip", b"PK\x03\x04"), ("npy", b"\x93NUMPY\x01\x00"),
                          ("none", b"")], seed=2)


def _keras_corpus(corpus, base, weights_base, outside, markers, flips):
    members = _members(io.BytesIO(base))
    by_name = dict(members)
    config = json.loads(by_name["config.json"])

    def archive(config_text=None, h5=None, drop=(), encrypted=False):
        out = []
        for name, data in members:
            if name in drop:
                continue
            if name == "config.json" and config_text is not None:
                data = config_text.encode() if isinstance(config_text, str) else config_text
            if name == "model.weights.h5" and h5 is not None:
                data = h5
            out.append((name, data))
        return _zip(out, encrypted=encrypted)

    for cls, case, change, expect in _keras_config_attacks(markers / "keras_lambda.txt"):
        if isinstance(change, str):
            text = change if change != "REPLACE_UNITS_1e400" else json.dumps(config).replace(
                '"units": 4', '"units": 1e400', 1)
        else:
            c = json.loads(json.dumps(config))
            change(c)
            text = json.dumps(c)
        corpus.add("keras", cls, case, archive(config_text=text), expect, loaders=["load_model"])
    corpus.add("keras", "wrong_type", "config_not_utf8", archive(config_text=b"\xff\xfe{}"),
               ERROR, loaders=["load_model"])
    for name, shape in [("layers/lstm/cell/vars/0", (3, 16)), ("layers/dense/vars/0", (4, 2))]:
        short = name.split("/")[1]
        for cls, case, edit, expect in _hdf5_attacks(outside, shape, name):
            corpus.add("keras", cls, f"{short}_{case}",
                       archive(h5=_h5_bytes(by_name["model.weights.h5"], edit)), expect)
            corpus.add("weights.h5", cls, f"{short}_{case}", _h5_bytes(weights_base, edit),
                       expect)
    raw, crc = _zero_deflate(BOMB_BYTES)
    rest = [(n, d) for n, d in members if n != "model.weights.h5"]
    corpus.add("keras", "zip_bomb", "weights_member", _zip(
        rest + [("model.weights.h5", raw, 8, crc, BOMB_BYTES)]), ERROR)
    # load_keras_weights reads model.weights.h5 alone.
    corpus.add("keras", "zip_bomb", "config_member", _zip(
        [(n, d) for n, d in members if n != "config.json"]
        + [("config.json", raw, 8, crc, BOMB_BYTES)]),
        {"load_model": ERROR, "load_keras_weights": ERROR_OR_SAME})
    corpus.add("keras", "zip_bomb", "metadata_member", _zip(
        [(n, d) for n, d in members if n != "metadata.json"]
        + [("metadata.json", raw, 8, crc, BOMB_BYTES)]), ERROR_OR_SAME)
    corpus.add("keras", "lying_size", "zip_sizes_small", _zip(
        members, lie=lambda n, cs, us: (cs, 4)), ERROR)
    corpus.add("keras", "lying_size", "zip_sizes_4GB", _zip(
        members, lie=lambda n, cs, us: (cs, 0xFFFFFFF0)), ERROR)
    corpus.add("keras", "encrypted_flag", "all", archive(encrypted=True), ERROR)
    corpus.add("keras", "wrong_type", "no_weights_member", archive(drop=("model.weights.h5",)),
               ERROR)
    corpus.add("keras", "wrong_type", "weights_member_not_h5",
               archive(h5=b"\x89HDF\r\n\x1a\n" + bytes(2000)), ERROR)
    corpus.add("keras", "pickle", "weights_member_pickle",
               archive(h5=pickle.dumps(_marker_payload(markers / "keras_pickle.txt"))), ERROR)
    h5 = by_name["model.weights.h5"]

    def rewrap(data):
        return archive(h5=data)

    _flips(corpus, "keras", h5, "byte_flip_member", flips, ERROR_OR_LOADS, seed=3,
           rewrap=rewrap)
    _member_flips(corpus, "keras", base, flips // 2, seed=16)
    _flips(corpus, "keras", base, "byte_flip", flips // 2, ERROR_OR_SAME, seed=4)
    _flips(corpus, "weights.h5", weights_base, "byte_flip", flips, ERROR_OR_LOADS, seed=5)
    _truncations(corpus, "keras", base, ERROR)
    _truncations(corpus, "weights.h5", weights_base, ERROR_OR_LOADS)
    _random(corpus, "keras", [("zip", b"PK\x03\x04"), ("hdf5", b"\x89HDF\r\n\x1a\n")], seed=6)
    _random(corpus, "weights.h5", [("hdf5", b"\x89HDF\r\n\x1a\n")], seed=7)


def _legacy_corpus(corpus, base, outside, flips):
    name = "model_weights/lstm/lstm/lstm_cell/kernel:0"
    for cls, case, edit, expect in _hdf5_attacks(outside, (3, 16), name):
        corpus.add("h5", cls, case, _h5_bytes(base, edit), expect)
    for cls, case, edit, expect in _keras2_attr_attacks():
        # Only the weights' attributes concern load_keras_weights, which ignores the config.
        corpus.add("h5", cls, case, _h5_bytes(base, edit), expect,
                   loaders=None if "_names_" in case else ["load_keras"])
    _flips(corpus, "h5", base, "byte_flip", flips, ERROR_OR_LOADS, seed=8)
    _truncations(corpus, "h5", base, ERROR_OR_LOADS)
    _random(corpus, "h5", [("hdf5", b"\x89HDF\r\n\x1a\n")], seed=9)


def _torch_corpus(corpus, base, markers, flips):
    import torch

    fmt = "pt"
    corpus.add(fmt, "pickle", "raw_reduce",
               pickle.dumps(_marker_payload(markers / "pt_raw.txt"), protocol=2), ERROR)
    members = _members(io.BytesIO(base))
    pkl = next(n for n, _ in members if n.endswith("data.pkl"))

    def replace(name, data):
        return _zip([(n, data if n == name else d) for n, d in members])

    corpus.add(fmt, "pickle", "zip_data_pkl_reduce", replace(
        pkl, pickle.dumps({"weight_ih_l0": _marker_payload(markers / "pt_zip.txt")},
                          protocol=2)), ERROR)

    def saved(obj):
        buf = io.BytesIO()
        torch.save(obj, buf)
        return buf.getvalue()

    state = torch.load(io.BytesIO(base), weights_only=True)
    # Valid state dict files whose content nn.LSTM refuses: load_state_dict_file may read them.
    content = {"load_state_dict_file": ERROR_OR_LOADS, "nn.LSTM.load_state_dict": ERROR}
    for cls, case, obj, expect in [
        ("wrong_type", "list", [1, 2], ERROR),
        ("wrong_type", "tensor", torch.zeros(3), ERROR),
        ("wrong_type", "none", None, ERROR),
        ("wrong_type", "nested", {k: {"x": v} for k, v in state.items()}, ERROR),
        ("wrong_type", "int_keys", {i: v for i, v in enumerate(state.values())}, content),
        ("wrong_type", "wrong_shape", {k: v.T.contiguous() if v.dim() == 2 else v
                                       for k, v in state.items()}, content),
        ("dtype", "int_tensors", {k: v.to(torch.int32) for k, v in state.items()}, content),
        ("dtype", "complex", {k: v.to(torch.complex64) for k, v in state.items()}, content),
        ("dtype", "nan", {k: v * float("nan") for k, v in state.items()}, content),
        ("dtype", "bfloat16", {k: v.to(torch.bfloat16) for k, v in state.items()}, ERROR),
        ("dtype", "float8", {k: v.to(torch.float8_e4m3fn) for k, v in state.items()}, ERROR),
        ("layout", "strided_view", {k: torch.zeros(v.numel() * 2)[::2].reshape(v.shape)
                                    for k, v in state.items()}, ERROR_OR_LOADS),
    ]:
        corpus.add(fmt, cls, case, saved(obj), expect)
    data_members = [n for n, _ in members if "/data/" in n]
    # Lying sizes in the pickle: a storage of 2^31 - 1 floats, a (10^5, 10^5) tensor over a
    # storage of 48 floats (the first tensor, weight_ih_l0 (16, 3), follows the first 'cpu').
    pkl_bytes = dict(members)[pkl]
    at = pkl_bytes.index(b"X\x03\x00\x00\x00cpuq")
    numel = pkl_bytes.index(b"K\x30", at)
    size = pkl_bytes.index(b"K\x10K\x03\x86", at)
    for case, patched in [
        ("storage_numel_2e31", pkl_bytes[:numel] + b"J" + struct.pack("<i", 2**31 - 1)
         + pkl_bytes[numel + 2:]),
        ("tensor_size_1e10", pkl_bytes[:size] + b"J" + struct.pack("<i", 10**5) + b"J"
         + struct.pack("<i", 10**5) + pkl_bytes[size + 4:])]:
        corpus.add(fmt, "lying_size", case, replace(pkl, patched),
                   ERROR_OR_SAME if case.startswith("storage") else ERROR)
    corpus.add(fmt, "lying_size", "zip_sizes_4GB", _zip(
        members, lie=lambda n, cs, us: (cs, 0xFFFFFFF0)), ERROR)
    raw, crc = _zero_deflate(BOMB_BYTES)
    if data_members:
        corpus.add(fmt, "zip_bomb", "storage_member", _zip(
            [(n, raw, 8, crc, BOMB_BYTES) if n == data_members[0] else (n, d)
             for n, d in members]), ERROR)
    corpus.add(fmt, "encrypted_flag", "all", _zip(members, encrypted=True), ERROR)
    # torch checks neither the zip's CRCs nor its compression method; pylstm checks both
    # before torch.load, so a flipped byte of a tensor is an error, not another value.
    _flips(corpus, fmt, base, "byte_flip", flips, ERROR_OR_SAME, seed=10)
    _member_flips(corpus, fmt, base, flips, seed=15)
    _truncations(corpus, fmt, base, ERROR)
    _random(corpus, fmt, [("zip", b"PK\x03\x04"), ("pickle", b"\x80\x02")], seed=11)


def _safetensors_corpus(corpus, base, flips):
    fmt = "safetensors"
    n = struct.unpack("<Q", base[:8])[0]
    header = json.loads(base[8:8 + n])
    data = base[8 + n:]

    def st(h, body=data, length=None):
        text = h.encode() if isinstance(h, str) else json.dumps(h).encode()
        return struct.pack("<Q", len(text) if length is None else length) + text + body

    def edit(change):
        h = json.loads(json.dumps(header))
        change(h)
        return h

    first = next(k for k in header if k != "__metadata__")

    def retyped(dtype, itemsize):
        """The valid file's tensors as `dtype` (consistent offsets; every byte 0x01)."""
        h, body = {}, b""
        for k, v in header.items():
            if k == "__metadata__":
                h[k] = v
                continue
            nbytes = int(np.prod(v["shape"])) * itemsize
            h[k] = {"dtype": dtype, "shape": v["shape"],
                    "data_offsets": [len(body), len(body) + nbytes]}
            body += b"\x01" * nbytes
        return st(h, body=body)
    for case, blob, expect in [
        ("header_len_huge", st(header, length=2**62), ERROR),
        ("header_len_past_end", st(header, length=n + 10_000), ERROR),
        ("header_len_short", st(header, length=n - 5), ERROR),
        ("header_len_zero", st(header, length=0), ERROR),
        ("header_not_json", st("{not json"), ERROR),
        ("header_nested", st("{\"a\":" * 5000 + "1" + "}" * 5000), ERROR),
        ("header_list", st("[1, 2]"), ERROR),
        ("huge_shape", st(edit(lambda h: h[first].update(shape=[10**6, 10**6]))), ERROR),
        ("huge_shape_offsets", st(edit(lambda h: h[first].update(
            shape=[10**5, 10**5], data_offsets=[0, 4 * 10**10]))), ERROR),
        ("offsets_past_end", st(edit(lambda h: h[first].update(
            data_offsets=[0, len(data) + 4096]))), ERROR),
        ("offsets_reversed", st(edit(lambda h: h[first].update(
            data_offsets=list(reversed(h[first]["data_offsets"]))))), ERROR),
        ("offsets_negative", st(edit(lambda h: h[first].update(data_offsets=[-4, 4]))), ERROR),
        ("float8", retyped("F8_E4M3", 1), ERROR),
        ("float8_e5m2", retyped("F8_E5M2", 1), ERROR),
        ("bfloat16", retyped("BF16", 2), ERROR),
        ("int32", retyped("I32", 4), ERROR),
        ("bool", retyped("BOOL", 1), ERROR),
        ("float16", retyped("F16", 2), ERROR_OR_LOADS),
        ("dtype_mismatch", st(edit(lambda h: h[first].update(dtype="F8_E4M3"))), ERROR),
        ("dtype_unknown", st(edit(lambda h: h[first].update(dtype="F128"))), ERROR),
        ("shape_str", st(edit(lambda h: h[first].update(shape="abc"))), ERROR),
        ("metadata_int", st(edit(lambda h: h.update(__metadata__=5))), ERROR),
        ("entry_int", st(edit(lambda h: h.update({first: 5}))), ERROR),
        ("nan", st(header, body=np.full(len(data) // 4, np.nan, "<f4").tobytes()), ERROR),
    ]:
        if case in ("int32", "bool", "nan", "float16"):  # valid files of the wrong content
            expect = {"load_state_dict_file": ERROR_OR_LOADS, "nn.LSTM.load_state_dict": expect}
        cls = ("lying_size" if "len" in case or "shape" in case or "offsets" in case else
               "nested_json" if case == "header_nested" else
               "dtype" if case in ("float8", "float8_e5m2", "bfloat16", "int32", "bool",
                                   "float16", "dtype_unknown", "nan") else "wrong_type")
        corpus.add(fmt, cls, case, blob, expect)
    _flips(corpus, fmt, base, "byte_flip", flips, ERROR_OR_LOADS, seed=12)
    _truncations(corpus, fmt, base, ERROR)
    _random(corpus, fmt, [("header", struct.pack("<Q", 64) + b"{")], seed=13)


if __name__ == "__main__":
    if len(sys.argv) == 2:
        entries = write_corpus(sys.argv[1])
        counts = {}
        for e in entries:
            key = (e["format"], e["cls"])
            counts[key] = counts.get(key, 0) + 1
        for (fmt, cls), n in sorted(counts.items()):
            print(f"{fmt:12} {cls:20} {n}")
        print(f"{len(entries)} files in {sys.argv[1]}")
    else:
        sys.exit(__doc__)
