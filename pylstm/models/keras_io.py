"""Keras model files: read `.keras`, `.weights.h5` and legacy HDF5 files; write `.keras`.

Design:
    The files, as Keras 3.15 writes them (read here with pyfive, written with h5py; no
    TensorFlow):

    - `.keras`: a zip archive of `config.json` (the model as `{"module", "class_name",
      "config", "registered_name", "build_config", "compile_config"}`), `metadata.json`
      (`{"keras_version", "date_saved"}`) and `model.weights.h5`.
    - `model.weights.h5` and `.weights.h5` files address arrays by an object's place in the
      model, not by its name: the Sequential's layers are the groups `layers/<class>`, with
      Keras's snake_case class name numbered `_1`, `_2`, ... among layers of one class
      (`layers/dense`, `layers/dense_1`); an object's arrays are the datasets `vars/0`,
      `vars/1`, ... in its `weights` order, and a sublayer's sit under its attribute name
      (`layers/lstm/cell/vars`, `layers/bidirectional/forward_layer/cell/vars`). The
      optimizer's are `optimizer/vars`: `0` iterations (int64), `1` learning rate, then its
      slots in the order of `_OPTIMIZER_SLOTS`.
    - legacy HDF5 (`.h5`: Keras 2, and Keras 3's `model.save("x.h5")`): the root attributes
      `model_config` and `training_config` (JSON), and a `model_weights` group whose
      `layer_names` attribute lists one group per layer; each group's `weight_names`
      attribute names its datasets in `weights` order. Keras matches them to the model's
      layers by order, skipping layers without weights, and so does this module. In files
      written by Keras 2, `"hard_sigmoid"` is `clip(0.2 x + 0.5, 0, 1)`, pylstm's
      `"legacy_hard_sigmoid"` (Keras 3's `hard_sigmoid` is `relu6(x + 3) / 6`).

    Translation: pylstm layers take Keras's argument names, so a Keras layer config maps onto
    the pylstm layer class of the same name key by key. DTypePolicy dicts become dtype names,
    serialized objects `{"module", "class_name", "config", "registered_name"}` become pylstm's
    `{"class_name", "config"}`, and `batch_shape` / `batch_input_shape` becomes an
    `InputLayer`. A key the pylstm class does not take is dropped when its value cannot change
    the results (`None`, or a value in `_NEUTRAL`; or a speed-only key in `_IGNORED`) and is an
    error otherwise. Writing is the same walk backwards. Each supported layer class is one
    entry of `_LAYERS`: its Keras path name and the weight groups it owns.

    Untrusted files: reading is bounded before anything is validated. config.json may declare
    at most `_MAX_CONFIG_BYTES`; the model is built from it inside `deferred_weights`, whose
    byte count bounds the size model.weights.h5 may declare; members are refused when
    encrypted or compressed otherwise than stored/deflated, and inflated in chunks that
    zipfile stops at the declared size. HDF5 is parsed by pyfive (see "HDF5 reading" below).
    Every failure is a ValueError (`_invalid`) naming the file, chained to its cause.
"""

import datetime
import functools
import inspect
import io
import json
import math
import os
import struct
import zipfile
import zlib

import numpy as np

from pylstm import activations, constraints, initializers, losses, optimizers, regularizers
from pylstm import metrics as metrics_module
from pylstm.layers import Layer, _layer_classes, serialize
from pylstm.layers.layer import DEFAULT_MAX_WEIGHT_BYTES, deferred_weights
from pylstm.models.saving import atomic_write
from pylstm.models.sequential import Sequential

# The Keras release whose `.keras` layout `save_keras` follows (recorded in metadata.json).
KERAS_VERSION = "3.15.1"

_CONFIG, _METADATA, _WEIGHTS = "config.json", "metadata.json", "model.weights.h5"
_ZIP_MAGIC, _HDF5_MAGIC = b"PK\x03\x04", b"\x89HDF\r\n\x1a\n"


def _use_bias(config):
    return 1 if config.get("use_bias", True) else 0


def _under(attribute, nested):
    """The weight groups of the sublayer `nested` (a serialized layer) under `attribute`."""
    return [(f"{attribute}/{rel}" if rel else attribute, n) for rel, n in _weight_groups(nested)]


def _numbered(objs):
    """Yields `(Keras's group name, obj)` for the serialized layers of a list: the class's path
    name, then `_1`, `_2`, ... for later layers of the same class."""
    used = {}
    for obj in objs:
        base = _entry(obj)[0]
        count = used.get(base, 0)
        used[base] = count + 1
        yield (base if count == 0 else f"{base}_{count}"), obj


# Keras class -> (name of its group under `layers/`, config -> [(group path relative to the
# layer's group, number of arrays in its `vars`)], in the layer's `get_weights()` order).
_LAYERS = {
    "InputLayer": ("input_layer", lambda c: []),
    "Dropout": ("dropout", lambda c: []),
    "Activation": ("activation", lambda c: []),
    "Flatten": ("flatten", lambda c: []),
    "Masking": ("masking", lambda c: []),
    "Dense": ("dense", lambda c: [("", 1 + _use_bias(c))]),
    "Embedding": ("embedding", lambda c: [("", 1)]),
    "LSTM": ("lstm", lambda c: [("cell", 2 + _use_bias(c))]),
    "LSTMCell": ("lstm_cell", lambda c: [("", 2 + _use_bias(c))]),
    "RNN": ("rnn", lambda c: _under("cell", c["cell"])),
    "StackedRNNCells": ("stacked_rnn_cells", lambda c: [
        group for name, cell in _numbered(c["cells"]) for group in _under(f"cells/{name}", cell)]),
    "TimeDistributed": ("time_distributed", lambda c: _under("layer", c["layer"])),
    "Bidirectional": ("bidirectional", lambda c: (
        _under("forward_layer", c["layer"])
        + _under("backward_layer", c.get("backward_layer") or c["layer"]))),
}

# Config keys holding a serialized sublayer, or a list of them ("cells").
_SUBLAYER_KEYS = ("layer", "backward_layer", "cell", "cells")

# Keys a pylstm class may lack, and the values with which Keras behaves as if they were absent.
_NEUTRAL = {
    "dropout": (0.0,), "recurrent_dropout": (0.0,), "stateful": (False,),
    "zero_output_for_mask": (False,), "time_major": (False,), "sparse": (False,),
    "ragged": (False,), "optional": (False,), "data_format": ("channels_last",),
    "use_ema": (False,), "decay": (0.0,), "reduction": ("sum_over_batch_size", "auto"),
    "label_smoothing": (0.0,), "axis": (-1,), "threshold": (0.5,),
}
# Keys that never change results (speed switches, names, bookkeeping), dropped when the pylstm
# class does not take them.
_IGNORED = {"name", "dtype", "shared_object_id", "unroll", "use_cudnn", "implementation",
            "input_length", "ema_momentum", "ema_overwrite_frequency", "jit_compile",
            "is_legacy_optimizer"}

# Keras's order of optimizer slots: blocks written one after the other; within a block, the
# slots of one variable side by side (Adam: m0 v0 m1 v1 ..., then v_hat0 v_hat1 ...).
_OPTIMIZER_SLOTS = {
    "SGD": [("momentum",)],
    "Adam": [("m", "v"), ("v_hat",)],
    "RMSprop": [("velocity",), ("momentum",), ("average_gradient",)],
}

# Keras metric classes with a pylstm metric of the same meaning (the class `Accuracy`, exact
# equality, is not the `"accuracy"` string, which dispatches on shapes).
_METRIC_CLASSES = {
    "MeanSquaredError": "mean_squared_error", "MeanAbsoluteError": "mean_absolute_error",
    "BinaryAccuracy": "binary_accuracy", "CategoricalAccuracy": "categorical_accuracy",
    "SparseCategoricalAccuracy": "sparse_categorical_accuracy",
}


class _Unmappable(ValueError):
    """A Keras object with no pylstm equivalent (or the reverse)."""


def _entry(obj):
    """The `_LAYERS` entry of a serialized layer; raises `_Unmappable` for other classes."""
    if not isinstance(obj.get("class_name"), str) or obj["class_name"] not in _LAYERS:
        raise _Unmappable(f"layer '{obj['config'].get('name')}' ({obj.get('class_name')}) has no "
                          f"Keras equivalent; Keras files hold only {', '.join(sorted(_LAYERS))}")
    return _LAYERS[obj["class_name"]]


def _weight_groups(obj):
    """`[(group path relative to the layer's group, number of arrays)]` of a serialized layer."""
    return _entry(obj)[1](obj["config"])


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("Reading and writing Keras files needs h5py: "
                          "`pip install h5py` (or `pip install pylstm[keras]`).") from None
    return h5py


# Public API ---------------------------------------------------------------------------------


def load_keras(path, compile=True, max_weight_bytes=DEFAULT_MAX_WEIGHT_BYTES):
    """Loads a Keras `Sequential` model file into a pylstm `Sequential`.

    Reads Keras 3's `.keras` archives and legacy HDF5 model files (Keras 2's `model.save`,
    Keras 3's `model.save("x.h5")`), without TensorFlow. The model computes what the Keras
    model computes, and can be trained further and saved back (`model.save("x.keras")` writes
    a file Keras loads).

    Files from anywhere are safe to load: HDF5 is read with pyfive, a pure-Python reader
    (HDF5's C library can crash on damaged files), within a bound on the bytes read; links,
    virtual datasets and external storage, which would read other files, are refused; every
    array's type and shape are checked before it is read, and every size a file declares
    (zip members, arrays) before anything of that size is allocated or decompressed. The model
    is built from the file's config without running its initializers.

    Supported layers: `Input` / `InputLayer`, `Dense`, `Dropout`, `Activation`, `Flatten`,
    `Embedding`, `Masking`, `LSTM`, `RNN(LSTMCell)`, `Bidirectional` and `TimeDistributed`
    around them, as far as pylstm defines them; a Keras argument pylstm lacks is accepted only
    when its value has no effect (e.g. `stateful=False`).

    Args:
        path: str or path-like; a `.keras` archive or an HDF5 file (recognized by content).
        compile: bool. If True and the file records a compile config whose optimizer, loss
            and metrics all have pylstm equivalents (SGD, Adam, RMSprop; pylstm's losses and
            metrics), the model is compiled with them, and the optimizer state of a `.keras`
            file (iteration count, momentums) is restored, so training resumes as in Keras.
            Otherwise (a learning-rate schedule, weight decay, a custom loss, ...) the model
            is returned uncompiled, as with `compile=False`, without a warning: call
            `compile()` before `fit()`.
        max_weight_bytes: int, the most bytes the weights of the file's model may take
            (default `pylstm.layers.layer.DEFAULT_MAX_WEIGHT_BYTES`, 2 GiB); a config that
            implies more is refused before anything is allocated. Raise it to load a larger
            model.

    Returns:
        A built `pylstm.models.Sequential` with the file's weights.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ImportError: if pyfive is not installed.
        ValueError: for a file that is not a valid Keras model file (damaged, truncated,
            hostile, a missing member or weight, a wrong type or shape; the message names the
            file and says what), weights over `max_weight_bytes`, a model other than
            `Sequential`, or a layer or argument pylstm does not support (the message names
            the layer).
        TypeError: if `max_weight_bytes` is not an int.

    Example:

    >>> import os, tempfile
    >>> from pylstm.layers import LSTM, Dense, Input
    >>> from pylstm.models import Sequential
    >>> model = Sequential([Input((10, 3)), LSTM(8), Dense(1)])
    >>> model.compile(optimizer="adam", loss="mse")
    >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
    >>> model.save(path)  # keras.models.load_model(path) reads it too
    >>> restored = load_keras(path)
    >>> [type(layer).__name__ for layer in restored.layers], type(restored.optimizer).__name__
    (['LSTM', 'Dense'], 'Adam')
    """
    path = os.fspath(path)
    if _sniff(path) == "zip":
        with _Archive(path) as archive:
            config = archive.config()
            model = _model_from_keras(path, config, False, max_weight_bytes)
            weights = archive.weights(model)
        with _open_hdf5(path, weights, _WEIGHTS) as f:
            _read_weights(path, model, f.root)
            if compile:
                _compile_from_keras(model, config.get("compile_config"), legacy=False)
                _read_optimizer_state(model, f.root)
        return model
    with _open_hdf5(path) as f:
        return _load_legacy_model(path, f.root, compile, max_weight_bytes)


def _load_legacy_model(path, f, compile, max_weight_bytes):
    version = _attr_text(f, "keras_version") or ""
    if version.startswith("1."):
        raise ValueError(f"Cannot load {path!r}: it was written by Keras {version:.20}; pylstm "
                         f"reads files of Keras 2 and 3.")
    model_config = _attr_text(f, "model_config")
    if model_config is None:
        raise _invalid(path, "the HDF5 file has no `model_config` attribute (a weights-only "
                       "file? load it with `load_keras_weights(model, path)`)")
    config = _json(path, model_config, "model_config")
    if not isinstance(config, dict):
        raise _invalid(path, "its `model_config` does not hold a serialized model")
    # Keras 2's "hard_sigmoid" is not Keras 3's; Keras 3 writes this format too.
    model = _model_from_keras(path, config, not version.startswith("3."), max_weight_bytes)
    _read_legacy_weights(path, model, _weights_root(path, f))
    training_config = _attr_text(f, "training_config") if compile else None
    if training_config is not None:
        _compile_from_keras(model, _json(path, training_config, "training_config"), legacy=True)
    return model


def _weights_root(path, f):
    """The group of a legacy file that holds `layer_names`: `model_weights`, or the root."""
    if "model_weights" not in f.links:
        return f
    group = f.get("model_weights")
    if not isinstance(group, _Group):
        raise _invalid(path, "its `model_weights` is not a group")
    return group


def load_keras_weights(model, path):
    """Loads Keras weights into a pylstm model of the same architecture.

    Reads `.weights.h5` files (Keras 3's `save_weights`), `.keras` archives and legacy HDF5
    weight or model files (Keras 2's `save_weights("x.h5")`, matched layer by layer in order,
    as Keras does). A `.keras` or `.weights.h5` file's optimizer state is restored too when
    `model` is compiled with the same optimizer class. Files are read as safely as by
    `load_keras`, each array's size bounded by the model's.

    Args:
        model: a built `pylstm.models.Sequential`.
        path: str or path-like.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ImportError: if pyfive is not installed.
        ValueError: if `model` is not built, the file is not a valid Keras weights file
            (damaged or hostile; the message names the file), or its weights do not fit the
            model (a missing group, a count or shape mismatch, or weights for layers the model
            lacks; the message says which).
    """
    path = os.fspath(path)
    if not model.built:
        raise ValueError(f"Model '{model.name}' must be built before loading weights: start it "
                         f"with an `Input` layer or call `build(input_shape)`.")
    if _sniff(path) == "zip":
        with _Archive(path) as archive:
            weights = archive.weights(model)
        opened = _open_hdf5(path, weights, _WEIGHTS)
    else:
        opened = _open_hdf5(path)
    with opened as f:
        if "layers" in f.root.links or "vars" in f.root.links:
            _read_weights(path, model, f.root)
            _read_optimizer_state(model, f.root)
        else:
            _read_legacy_weights(path, model, _weights_root(path, f.root))


def save_keras(model, path):
    """Writes `model` as a Keras 3 `.keras` archive that `keras.models.load_model` reads.

    The archive holds `config.json` (Keras's layout: `module`, `class_name`, `config`,
    `registered_name`, `build_config`, and `compile_config` when the model is compiled with an
    optimizer, loss and metrics that Keras has), `metadata.json`, and `model.weights.h5` in
    Keras's layout, with the optimizer state (iterations and slots) when compiled. The file is
    written atomically (a temporary file, then `os.replace`).

    Args:
        model: a `pylstm.models.Sequential`.
        path: str or path-like, conventionally ending in `.keras`.

    Raises:
        ValueError: for a layer or activation that Keras 3 lacks (a custom layer, Keras 2's
            `"legacy_hard_sigmoid"`, a Python callable), the message naming the layer.
    """
    config = _model_to_keras(model)
    metadata = {"keras_version": KERAS_VERSION,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    weights = io.BytesIO()
    _write_weights(model, weights, with_optimizer="compile_config" in config)

    def write(f):
        with zipfile.ZipFile(f, "w") as archive:
            archive.writestr(_METADATA, json.dumps(metadata))
            archive.writestr(_CONFIG, json.dumps(config, default=_plain))
            archive.writestr(_WEIGHTS, weights.getvalue())

    atomic_write(path, write)


def save_keras_weights(model, path):
    """Writes `model`'s weights as a Keras 3 `.weights.h5` file (`keras.Model.load_weights`
    reads it into a Keras model of the same architecture), atomically.

    The optimizer state is included when the model is compiled with an optimizer Keras has.

    Args:
        model: a built `pylstm.models.Sequential`.
        path: str or path-like, conventionally ending in `.weights.h5`.

    Raises:
        ValueError: if the model is not built or holds a layer Keras lacks.
    """
    if not model.built:
        raise ValueError(f"Model '{model.name}' has no weights yet: build it first.")
    with_optimizer = _compile_to_keras(model) is not None
    atomic_write(path, lambda f: _write_weights(model, f, with_optimizer))


# Files --------------------------------------------------------------------------------------

# The most bytes of config.json (uncompressed) a `.keras` archive may declare.
_MAX_CONFIG_BYTES = 64 * 2**20
# HDF5 bytes a weights member may hold beyond its arrays, per array and in all (object
# headers, B-trees, heaps, attributes).
_H5_OVERHEAD_PER_ARRAY, _H5_OVERHEAD = 16 * 2**10, 4 * 2**20
# Slot arrays per weight in the optimizer state Keras saves (at most RMSprop's three).
_MAX_SLOTS = max(sum(len(block) for block in blocks) for blocks in _OPTIMIZER_SLOTS.values())
# How much an HDF5 file may make its reader read, as a multiple of its size plus a constant:
# a valid file reads each byte about once; a cyclic B-tree, heap or header loops until this.
_READ_FACTOR, _READ_EXTRA = 4, 4 * 2**20
# Cost charged per read or seek call, so that many tiny reads also exhaust the budget.
_CALL_COST = 16


class _Invalid(ValueError):
    """A Keras file's content is damaged or refused (raised by `_invalid`)."""


class _Refused(Exception):
    """Raised inside pyfive's parsing for a structure this module refuses (its message says
    which); the caller turns it into `_invalid`."""


def _invalid(path, why):
    return _Invalid(f"{path!r} is not a valid Keras file: {why.rstrip('.')}.")


def _sniff(path):
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head == _HDF5_MAGIC:
        return "h5"
    raise _invalid(path, "it is neither a .keras zip archive nor an HDF5 file")


class _Archive:
    """A `.keras` zip archive, read member by member within declared and implied sizes."""

    def __init__(self, path):
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
            names = set(self.zip.namelist())
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
                UnicodeDecodeError, NotImplementedError, RuntimeError) as e:
            raise _invalid(path, f"the zip archive is damaged ({type(e).__name__}: {e})") from e
        for member in (_CONFIG, _WEIGHTS):
            if member not in names:
                self.zip.close()
                extra = (" (Keras's npz weights format is not supported)"
                         if member == _WEIGHTS and "model.weights.npz" in names else "")
                raise _invalid(path, f"the archive has no {member}{extra}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.zip.close()

    def read(self, member, limit, why):
        """The bytes of `member`, refused before decompression when it declares more than
        `limit` bytes (`why` says where the limit comes from)."""
        path = self.path
        info = self.zip.getinfo(member)
        if info.flag_bits & 0x1:
            raise _invalid(path, f"its {member} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _invalid(path, f"its {member} uses zip compression method "
                           f"{info.compress_type}; Keras writes stored or deflated members")
        if info.file_size > limit:
            raise _invalid(path, f"its {member} declares {info.file_size} bytes, more than the "
                           f"{limit} bytes {why}")
        chunks, size = [], 0
        try:
            # ZipExtFile inflates at most the declared size, and checks the CRC on reaching it.
            with self.zip.open(info) as f:
                while size < info.file_size:
                    chunk = f.read(min(2**22, info.file_size - size))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
                NotImplementedError, RuntimeError, zlib.error) as e:
            raise _invalid(path, f"the zip archive is damaged ({type(e).__name__}: {e})") from e
        if size != info.file_size:
            raise _invalid(path, f"its {member} holds {size} bytes, its zip entry declares "
                           f"{info.file_size}")
        return b"".join(chunks)

    def config(self):
        """config.json as a dict."""
        try:
            text = self.read(_CONFIG, _MAX_CONFIG_BYTES, "a model config may have").decode("utf-8")
        except UnicodeDecodeError as e:
            raise _invalid(self.path, f"its {_CONFIG} is not UTF-8 text ({e})") from e
        config = _json(self.path, text, _CONFIG)
        if not isinstance(config, dict) or "class_name" not in config:
            raise _invalid(self.path, "config.json does not hold a serialized model")
        return config

    def weights(self, model):
        """model.weights.h5, refused before decompression when it declares more bytes than
        `model`'s weights, their optimizer slots and HDF5's overhead can take."""
        variables = model.weights if model.built else []
        nbytes = sum(v.value.nbytes for v in variables)
        limit = ((1 + _MAX_SLOTS) * (nbytes + _H5_OVERHEAD_PER_ARRAY * len(variables))
                 + _H5_OVERHEAD)
        return self.read(_WEIGHTS, limit, f"that the weights of model '{model.name}' "
                         f"({nbytes} bytes), their optimizer slots and HDF5's overhead can take")


def _json(path, text, what):
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError) as e:
        raise _invalid(path, f"{what} is not valid JSON ({type(e).__name__}: {e})") from e


def _plain(value):
    """`json.dumps`'s fallback: NumPy scalars (e.g. a shape's `np.int64`) as Python numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# HDF5 reading -------------------------------------------------------------------------------
#
# Files to read may come from anywhere, and HDF5's C library (under h5py) crashes or hangs on
# some damaged files and follows links, virtual datasets and external storage to other files.
# They are read with pyfive, a pure-Python HDF5 reader (a damaged file can only raise), through
# a file object of this module's that bounds the bytes pyfive may read. Only hard links inside
# the file are followed; a dataset's layout, dtype and shape are checked before its data is
# read, and its data must lie inside the file. pyfive is used for parsing only: the data of
# contiguous, compact and (unfiltered) chunked datasets is read here.


def _pyfive():
    try:
        import pyfive.btree
        import pyfive.core
        import pyfive.dataobjects
        import pyfive.misc_low_level
    except ImportError:
        raise ImportError("Reading Keras files needs pyfive: `pip install pyfive` (or "
                          "`pip install pylstm[keras]`).") from None
    return pyfive


class _BoundedFile:
    """A read-only view of a binary file for pyfive that refuses to read more than `budget`
    bytes in all (each call also counts `_CALL_COST`), and never past `size`.

    It has no `fileno`, `name` or `fs`, so pyfive neither memory-maps, reopens nor reads it
    from threads.
    """

    closed = False

    def __init__(self, raw, size, budget):
        # `raw`: a binary file object, or the bytes themselves (read without a copy).
        self._raw, self.size, self._left, self._pos = raw, size, budget, 0
        self._view = memoryview(raw) if isinstance(raw, (bytes, bytearray)) else None

    def _charge(self, n):
        self._left -= n + _CALL_COST
        if self._left < 0:
            raise _Refused("reading it takes more than a valid file of its size needs (a cycle "
                           "in its B-trees, heaps or headers?)")

    def seek(self, offset, whence=0):
        self._charge(0)
        base = (0, self._pos, self.size)[whence]
        if base + offset < 0:
            raise _Refused(f"an address points before the start of the file ({offset})")
        self._pos = base + offset
        return self._pos

    def tell(self):
        return self._pos

    def read(self, n=-1, view=False):
        """At most `n` bytes (all that are left if `n` is negative), as `bytes`, or with `view`
        as a read-only buffer without a copy where the bytes are in memory."""
        left = max(0, self.size - self._pos)
        n = left if n is None or n < 0 else min(n, left)
        self._charge(n)
        if self._view is not None:
            data = self._view[self._pos:self._pos + n]
            data = data if view else data.tobytes()
        else:
            self._raw.seek(self._pos)
            data = self._raw.read(n)
        self._pos += len(data)
        return data

    def close(self):
        if self._view is None:
            self._raw.close()


@functools.lru_cache(maxsize=None)
def _checked_objects_class():
    """pyfive's DataObjects (an HDF5 object header) with three structures checked before pyfive
    acts on them: the header's continuation blocks (each read once), links (only hard and soft
    links; `_Group` refuses soft ones) and attribute values (an element count that the bytes
    holding it cannot hold is refused before pyfive allocates for it)."""
    pyfive = _pyfive()
    base = pyfive.dataobjects.DataObjects
    p5t = pyfive.dataobjects

    unpack, continuation = pyfive.core._unpack_struct_from, p5t.OBJECT_CONTINUATION_MSG_TYPE

    def more(fh, msg_data, offset, seen):
        """Reads the continuation block that the message at `offset` points at, once."""
        address, size = struct.unpack_from("<QQ", msg_data, offset)
        if address in seen:
            raise _Refused("an object header continues into itself")
        seen.add(address)
        fh.seek(address)
        return fh.read(size)

    class CheckedObjects(base):
        # pyfive 1.3's header parsers, with two changes: a continuation block read twice (a
        # cycle) is refused, and the header grows in a bytearray (pyfive's bytes concatenation
        # is quadratic in the number of continuations).
        @staticmethod
        def _parse_v1_objects(fh):
            header = pyfive.core._unpack_struct_from_file(p5t.OBJECT_HEADER_V1, fh)
            if header["version"] != 1:
                raise _Refused(f"an object header of version {header['version']}")
            msg_data = bytearray(fh.read(header["object_header_size"]))
            msgs, offset, seen = [], 0, set()
            for _ in range(header["total_header_messages"]):
                msg = unpack(p5t.HEADER_MSG_INFO_V1, msg_data, offset)
                msg["offset_to_message"] = offset + 8
                if msg["type"] == continuation:
                    msg_data += more(fh, msg_data, offset + 8, seen)
                msgs.append(msg)
                offset += 8 + msg["size"]
            return msgs, bytes(msg_data), header

        def _parse_v2_objects(self, fh):
            header, order_size = self._parse_v2_header(fh)
            msg_data = bytearray(fh.read(header["size_of_chunk_0"]))
            msgs, offset, seen = [], 0, set()
            chunk_sizes, chunk, done = [header["size_of_chunk_0"]], 0, 0
            while offset < len(msg_data) - 4:
                msg = unpack(p5t.HEADER_MSG_INFO_V2, msg_data, offset)
                msg["offset_to_message"] = offset + 4 + order_size
                if msg["type"] == continuation:
                    block = more(fh, msg_data, offset + 4 + order_size, seen)
                    if block[:4] != b"OCHK":
                        raise _Refused("an object header continuation has no OCHK signature")
                    chunk_sizes.append(len(block) - 4)
                    msg_data += block[4:]
                msgs.append(msg)
                offset += 4 + msg["size"] + order_size
                if offset - done + 4 >= chunk_sizes[chunk]:  # to the next block
                    offset += chunk_sizes[chunk] - (offset - done)
                    done += chunk_sizes[chunk]
                    chunk += 1
            return msgs, bytes(msg_data), header

        @staticmethod
        def _decode_link_msg(data, offset):
            flags = data[offset + 1]
            link_type = data[offset + 2] if flags & 0x8 else 0
            if link_type not in (0, 1):
                raise _Refused("it holds an external or user-defined link (to another file); "
                               "links out of the file are refused")
            return base._decode_link_msg(data, offset)

        def _attr_value(self, ptype, buf, count, offset):
            vlen = isinstance(ptype, (p5t.P5SequenceType, p5t.P5ReferenceType,
                                      p5t.P5VlenStringType))
            itemsize = 8 if isinstance(ptype, p5t.P5ReferenceType) else (
                16 if vlen else ptype.dtype.itemsize)
            if count * max(itemsize, 1) > len(buf) - offset:
                raise _Refused(f"an attribute declares {count} values, more than its "
                               f"{len(buf) - offset} bytes hold")
            return super()._attr_value(ptype, buf, count, offset)

    return CheckedObjects


class _HDF5:
    """An untrusted HDF5 file opened with pyfive: `root` is its root `_Group`.

    Args:
        path: the file's path, for messages.
        raw: the HDF5 bytes, or a seekable binary file object holding them (closed on exit).
        size: int, the number of bytes.
        what: str, the file's name in messages ("the HDF5 file", "its model.weights.h5").
    """

    def __init__(self, path, raw, size, what):
        self.path, self.what, self.size = path, what, size
        self._objects_class = _checked_objects_class()
        self.fh = _BoundedFile(raw, size, _READ_FACTOR * size + _READ_EXTRA)
        self._cache = {}

        def open_root():
            superblock = _pyfive().misc_low_level.SuperBlock(self.fh, 0)
            if superblock._contents.get("base_address", 0):
                raise _Refused("its superblock declares a user block")
            end = superblock._contents["end_of_file_address"]
            if end > size:  # HDF5's own check for a truncated file
                raise _Refused(f"it is truncated: it declares {end} bytes, {size} are there")
            return superblock.offset_to_dataobjects

        self.root = _Group(self, "", self.parse(open_root))

    def parse(self, fn, *args):
        """`fn(*args)`, where any failure to parse the file's bytes is a damaged file."""
        try:
            return fn(*args)
        except (_Invalid, MemoryError):
            raise
        except _Refused as e:
            raise _invalid(self.path, f"{self.what}'s HDF5 structure is damaged or hostile: "
                           f"{e}") from e
        except Exception as e:  # any error of the parser on these bytes: a damaged file
            raise _invalid(self.path, f"{self.what}'s HDF5 structure is damaged or hostile "
                           f"({type(e).__name__}: {e})") from e

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()

    def objects(self, address):
        """The parsed object header at `address` (cached: a link cycle parses nothing twice)."""
        if address not in self._cache:
            self._cache[address] = self.parse(self._objects_class, self.fh, address)
        return self._cache[address]


class _Group:
    """An HDF5 group of an `_HDF5` file: its hard links, attributes and members."""

    def __init__(self, h5, name, address):
        self.h5, self.name, self.address = h5, name, address
        self._objects = h5.objects(address)

    @property
    def links(self):
        # Cached in the object header's entry: a group is reached once per path through it.
        if not hasattr(self._objects, "pylstm_links"):
            self._objects.pylstm_links = self.h5.parse(self._objects.get_links)
        return self._objects.pylstm_links

    @property
    def attrs(self):
        return self.h5.parse(self._objects.get_attributes)  # cached by pyfive

    def keys(self):
        return list(self.links)

    def __contains__(self, name):
        return self.get(name) is not None

    def get(self, name):
        """The `_Group` or `_Dataset` at the relative path `name`, or None if absent."""
        obj = self
        for part in name.strip("/").split("/"):
            if not isinstance(obj, _Group) or part not in obj.links:
                return None
            obj = obj._member(part)
        return obj

    def _member(self, part):
        target = self.links[part]
        name = f"{self.name}/{part}".lstrip("/")
        if not isinstance(target, int):
            raise _invalid(self.h5.path, f"'{name}' in {self.h5.what} is a soft link (to "
                           f"{target!r:.100}); links are refused")
        objects = self.h5.objects(target)
        kind = self.h5.parse(lambda: "dataset" if objects.is_dataset else "group")
        return (_Dataset if kind == "dataset" else _Group)(self.h5, name, target)

    def datasets(self):
        """Yields the paths (relative to this group) of the datasets below it."""
        seen, queue = {self.address}, [self]
        while queue:
            group = queue.pop(0)
            for part in group.keys():
                obj = group._member(part)
                if isinstance(obj, _Dataset):
                    yield obj.name[len(self.name):].lstrip("/")
                elif obj.address not in seen:
                    seen.add(obj.address)
                    queue.append(obj)


# Header message types (HDF5 file format specification, IV.A.2).
_MSG_EXTERNAL_FILES, _MSG_LAYOUT, _MSG_FILTERS = 0x0007, 0x0008, 0x000B
_COMPACT, _CONTIGUOUS, _CHUNKED, _VIRTUAL = 0, 1, 2, 3
_FILTERS = {1: "gzip", 2: "shuffle"}  # the HDF5 filters read, by id


class _Dataset:
    """An HDF5 dataset of an `_HDF5` file, read only after its storage, dtype and shape are
    checked."""

    def __init__(self, h5, name, address):
        self.h5, self.name, self.address = h5, name, address
        self._objects = h5.objects(address)

    @property
    def shape(self):
        shape = self.h5.parse(lambda: self._objects.shape)
        return None if shape is None else tuple(int(d) for d in shape)

    def read(self, shape, kinds="f"):
        """The dataset as a native-byte-order array, refused before reading when its dtype kind
        is not in `kinds` or its shape is not `shape`; None for a dataset without storage."""
        h5, objects, what = self.h5, self._objects, f"'{self.name}' in {self.h5.what}"
        types = {msg["type"] for msg in objects.msgs}
        if _MSG_EXTERNAL_FILES in types:
            raise _invalid(h5.path, f"{what} is stored in external files; reading other "
                           f"files is refused")
        _, layout, offset = h5.parse(objects.get_id_storage_params)
        if _MSG_FILTERS in types:
            filters = h5.parse(lambda: [f["filter_id"] for f in objects.filter_pipeline])
            if layout != _CHUNKED or not set(filters) <= set(_FILTERS):
                raise _invalid(h5.path, f"{what} is compressed or filtered with HDF5 filters "
                               f"{filters}; only gzip (1) and shuffle (2) are read")
        if layout not in (_COMPACT, _CONTIGUOUS, _CHUNKED):
            raise _invalid(h5.path, f"{what} is a virtual dataset (its data would come from "
                           f"other datasets or files); refused" if layout == _VIRTUAL else
                           f"{what} has an unknown storage layout ({layout})")
        dtype = h5.parse(lambda: objects.ptype.dtype)
        if not isinstance(dtype, np.dtype) or dtype.kind not in kinds or dtype.fields:
            raise _invalid(h5.path, f"'{self.name}' is not finite floating-point data "
                           f"({h5.what} stores it as {dtype})" if kinds == "f" else
                           f"{what} has the HDF5 type {dtype}, expected kind {kinds!r}")
        declared = self.shape
        if declared != tuple(shape):
            raise _ShapeMismatch(declared)
        nbytes = math.prod(shape) * dtype.itemsize
        if layout == _COMPACT:
            data = h5.parse(self._compact)
        elif layout == _CONTIGUOUS:
            data = h5.parse(self._contiguous, offset, nbytes)
        else:
            return h5.parse(self._chunked, shape, dtype).astype(dtype.newbyteorder("="))
        if data is None:
            raise _invalid(h5.path, f"{what} has no data")
        if len(data) != nbytes:
            raise _invalid(h5.path, f"{what} holds {len(data)} bytes, its shape {shape} and "
                           f"type {dtype} need {nbytes}")
        return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))

    def _compact(self):
        msg = self._objects.find_msg_type(_MSG_LAYOUT)[0]
        start = msg["offset_to_message"]
        layout = self._objects.msg_data[start:start + msg["size"]]
        if layout[0] not in (3, 4):
            raise _Refused(f"a compact layout of version {layout[0]}")
        return layout[4:4 + int.from_bytes(layout[2:4], "little")]

    def _contiguous(self, offset, nbytes):
        (address,) = struct.unpack_from("<Q", self._objects.msg_data, offset)
        if address == 0xFFFFFFFFFFFFFFFF:
            return None
        if address + nbytes > self.h5.size:
            raise _Refused(f"'{self.name}' declares data at bytes {address} to "
                           f"{address + nbytes}, past the end of the file ({self.h5.size})")
        self.h5.fh.seek(address)
        return self.h5.fh.read(nbytes, view=True)

    def _chunked(self, shape, dtype):
        objects, fh = self._objects, self.h5.fh
        objects._get_chunk_params()
        chunk = tuple(int(c) for c in objects._chunks)
        if len(chunk) != len(shape) or not all(chunk):
            raise _Refused(f"'{self.name}' declares chunks of shape {chunk} for shape {shape}")
        out = np.zeros(shape, dtype)
        if out.size == 0:
            return out
        chunk_bytes = math.prod(chunk) * dtype.itemsize
        filters = [f["filter_id"] for f in objects.filter_pipeline or ()]
        tree = _pyfive().btree.BTreeV1RawDataChunks(fh, objects._chunk_address,
                                                     objects._chunk_dims)
        seen = set()
        for node in tree.all_nodes[0]:
            for key, address in zip(node["keys"], node["addresses"]):
                start = tuple(int(s) for s in key["chunk_offset"][:-1])
                size = key["chunk_size"]
                if ((size != chunk_bytes and not filters) or start in seen
                        or len(start) != len(shape)
                        or any(s % c or s >= d for s, c, d in zip(start, chunk, shape))
                        or address + size > self.h5.size):
                    raise _Refused(f"'{self.name}' has a damaged chunk index")
                seen.add(start)
                fh.seek(address)
                data = self._unfiltered(fh.read(size), filters, key["filter_mask"],
                                        chunk_bytes, dtype.itemsize)
                block = np.frombuffer(data, dtype).reshape(chunk)
                region = tuple(slice(s, min(s + c, d)) for s, c, d in zip(start, chunk, shape))
                out[region] = block[tuple(slice(0, r.stop - r.start) for r in region)]
        if len(seen) != math.prod(-(-d // c) for d, c in zip(shape, chunk)):
            raise _Refused(f"'{self.name}' lacks some of its chunks")
        return out

    def _unfiltered(self, data, filters, mask, nbytes, itemsize):
        """A chunk's `nbytes` bytes, its filters undone in reverse order (a bit of `mask` set
        skips that filter); inflating stops at `nbytes`, so a deflate bomb costs nothing."""
        for index in reversed(range(len(filters))):
            if mask >> index & 1:
                continue
            if filters[index] == 1:
                inflate = zlib.decompressobj()
                data = inflate.decompress(data, nbytes)
                if not inflate.eof or inflate.unconsumed_tail:
                    raise _Refused(f"a chunk of '{self.name}' does not inflate to {nbytes} bytes")
            elif len(data) == nbytes:  # shuffle: byte k of every element, then byte k + 1
                data = np.frombuffer(data, np.uint8).reshape(itemsize, -1).T.tobytes()
        if len(data) != nbytes:
            raise _Refused(f"a chunk of '{self.name}' holds {len(data)} bytes, not {nbytes}")
        return data


class _ShapeMismatch(Exception):
    """A dataset's declared shape is not the expected one (the caller names the layer)."""

    def __init__(self, declared):
        super().__init__(declared)
        self.declared = declared


def _open_hdf5(path, data=None, member=None):
    """`_HDF5` of `data`, the bytes of `member` of a `.keras` archive, or else of the file at
    `path`."""
    if data is not None:
        return _HDF5(path, data, len(data), f"its {member}")
    f = open(path, "rb")
    try:
        return _HDF5(path, f, os.fstat(f.fileno()).st_size, "the HDF5 file")
    except BaseException:
        f.close()
        raise


_MAX_ATTR_TEXT = _MAX_CONFIG_BYTES


def _attr_text(group, name):
    """The text attribute `name` of `group`, None if absent."""
    value = group.attrs.get(name)
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.shape == () :
        value = value[()]
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise _invalid(group.h5.path, f"its `{name}` attribute is not UTF-8 text") from e
    if not isinstance(value, str) or len(value) > _MAX_ATTR_TEXT:
        raise _invalid(group.h5.path, f"its `{name}` attribute is not text of at most "
                       f"{_MAX_ATTR_TEXT} characters (received {type(value).__name__})")
    return value


def _attr_names(group, name):
    """The list-of-names attribute `name` of `group` (`layer_names`, `weight_names`), None if
    absent."""
    values = group.attrs.get(name)
    if values is None:
        return None
    if not isinstance(values, np.ndarray):
        values = np.asarray([values], dtype=object)
    names = []
    for value in values.reshape(-1).tolist():
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _invalid(group.h5.path, f"its `{name}` attribute is not UTF-8 text") from e
        if not isinstance(value, str):
            raise _invalid(group.h5.path, f"its `{name}` attribute holds a "
                           f"{type(value).__name__}, expected names")
        names.append(value)
    return names


# Keras config -> pylstm ---------------------------------------------------------------------


def _accepted_args(cls):
    """The keyword arguments `cls(...)` takes (a `**kwargs` passes the base `Layer`'s on)."""
    names, var_kw = set(), False
    for c in (cls, Layer) if issubclass(cls, Layer) else (cls,):
        for p in inspect.signature(c.__init__).parameters.values():
            if p.kind is p.VAR_KEYWORD:
                var_kw = True
            elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                names.add(p.name)
        if not var_kw:
            break
    return names - {"self"}


def _keep_supported(cls, config, where):
    """`config` without the keys `cls` does not take; raises `_Unmappable` for one that
    would change the results."""
    accepted = _accepted_args(cls)
    kept = {}
    for key, value in config.items():
        if key in accepted:
            kept[key] = value
        elif not (key in _IGNORED or value is None or value in _NEUTRAL.get(key, ())):
            raise _Unmappable(f"{where}: pylstm's {cls.__name__} has no argument `{key}` "
                              f"(received {key}={value!r})")
    return kept


def _shape_from_keras(shape, where):
    """A Keras shape: a non-empty list of non-negative ints or None (raises `_Unmappable`)."""
    if not isinstance(shape, list) or not shape or not all(
            d is None or type(d) is int and d >= 0 for d in shape):
        raise _Unmappable(f"{where} is not a shape (a list of non-negative ints or None): "
                          f"{shape!r:.100}")
    return shape


def _dtype_from_keras(value, where):
    if isinstance(value, dict):
        value = value.get("config")
        value = value.get("name") if isinstance(value, dict) else None
    if value not in ("float32", "float64"):
        raise _Unmappable(f"{where}: pylstm computes in float32 or float64, the layer's dtype "
                          f"policy is {value!r}")
    return value


def _activation_from_keras(value, where, legacy):
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Unmappable(f"{where}: a custom activation ({value!r:.100}) cannot be loaded")
    if legacy and value == "hard_sigmoid":
        return "legacy_hard_sigmoid"
    try:
        activations.get(value)
    except ValueError:
        raise _Unmappable(f"{where}: pylstm has no activation {value!r}") from None
    return value


def _object_from_keras(obj, package, where):
    """`{"module", "class_name", "config", ...}` -> pylstm's `{"class_name", "config"}`."""
    if isinstance(obj, str):
        return obj
    if not isinstance(obj, dict) or not isinstance(obj.get("class_name"), str):
        raise _Unmappable(f"{where}: cannot read {obj!r:.100}")
    class_name = obj["class_name"].split(">")[-1]  # Keras 2's "Custom>Adam"
    try:
        cls = type(package.get(class_name))
    except ValueError:
        raise _Unmappable(f"{where}: {package.__name__} has no {class_name!r}") from None
    config = obj.get("config") or {}
    if not isinstance(config, dict):
        raise _Unmappable(f"{where}: the config of {class_name!r} is not a dict")
    return {"class_name": class_name, "config": _keep_supported(cls, config, where)}


def _package_of(key):
    for suffix, package in (("_initializer", initializers), ("_regularizer", regularizers),
                            ("_constraint", constraints)):
        if key.endswith(suffix):
            return package
    return None


def _layer_from_keras(obj, legacy):
    """A serialized Keras layer -> pylstm's `{"class_name", "config"}` (raises `_Unmappable`)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("config"), dict):
        raise _Unmappable(f"a layer entry is not a serialized layer: {obj!r:.100}")
    class_name, config = obj.get("class_name"), obj["config"]
    where = f"layer '{config.get('name')!s:.100}' ({class_name!s:.100})"
    if not isinstance(class_name, str):
        raise _Unmappable(f"{where}: its `class_name` is not a string")
    if not isinstance(config.get("name"), (str, type(None))):
        raise _Unmappable(f"{where}: its `name` is not a string")
    cls = _layer_classes().get(class_name)
    module = obj.get("module") or "keras"
    if not isinstance(module, str):
        raise _Unmappable(f"{where}: its `module` is not a string ({module!r:.100})")
    if class_name not in _LAYERS or cls is None or not module.startswith("keras"):
        supported = ", ".join(sorted(n for n in _LAYERS if n in _layer_classes()))
        raise _Unmappable(f"{where}: pylstm does not support the Keras layer class "
                          f"{class_name!r}; supported: {supported}")
    if class_name == "InputLayer":
        shape = _shape_from_keras(config.get("batch_shape") or config.get("batch_input_shape"),
                                  f"{where}: `batch_shape`")
        dtype = config.get("dtype")
        return {"class_name": "InputLayer",
                "config": {"shape": shape[1:], "batch_size": shape[0], "name": config.get("name"),
                           "dtype": dtype if dtype in ("float32", "float64") else None}}
    config = {k: v for k, v in config.items()
              if k not in ("batch_shape", "batch_input_shape", "input_shape")}
    out = {}
    for key, value in _keep_supported(cls, config, where).items():
        if key == "dtype":
            value = _dtype_from_keras(value, where)
        elif key in ("activation", "recurrent_activation"):
            value = _activation_from_keras(value, where, legacy)
        elif key in _SUBLAYER_KEYS and value is not None:
            value = ([_layer_from_keras(v, legacy) for v in value] if isinstance(value, list)
                     else _layer_from_keras(value, legacy))
        elif _package_of(key) is not None:
            if value is None and key.endswith("_initializer"):
                continue  # Keras's add_weight falls back to its default, pylstm's layer too
            if value is not None:
                value = _object_from_keras(value, _package_of(key), f"{where}, `{key}`")
        out[key] = value
    return {"class_name": class_name, "config": out}


def _model_from_keras(path, config, legacy, max_weight_bytes=DEFAULT_MAX_WEIGHT_BYTES):
    """The pylstm `Sequential` (built, weights zeros) of a Keras model config, built without
    running initializers and within `max_weight_bytes` of weights."""
    if config.get("class_name") != "Sequential":
        raise ValueError(f"Cannot load {path!r}: pylstm loads Keras Sequential models, this file "
                         f"holds a {config.get('class_name')!r:.100} model.")
    body = config.get("config")
    if isinstance(body, list):  # Keras 2.0 wrote the list of layers alone
        body = {"layers": body}
    if not isinstance(body, dict) or not isinstance(body.get("layers"), list):
        raise _invalid(path, "the model config has no list of layers")
    layers = []
    try:
        for entry in body["layers"]:
            layer = _layer_from_keras(entry, legacy)
            keras_config = entry["config"]
            shape = keras_config.get("batch_input_shape") or keras_config.get("batch_shape")
            if layer["class_name"] != "InputLayer" and not layers and shape:
                shape = _shape_from_keras(shape, f"layer '{keras_config.get('name')!s:.100}': "
                                                 f"`batch_input_shape`")
                layers.append({"class_name": "InputLayer",
                               "config": {"shape": shape[1:], "batch_size": shape[0],
                                          "dtype": None, "name": None}})
            layers.append(layer)
    except _Unmappable as e:
        raise ValueError(f"Cannot load {path!r}: {e}.") from e
    except (ValueError, TypeError, KeyError) as e:  # a value of the wrong type or form
        raise _invalid(path, f"its model config cannot be read ({type(e).__name__}: "
                       f"{e})") from e
    except RecursionError as e:
        raise _invalid(path, "its model config nests layers too deeply") from e
    if layers and layers[0]["class_name"] == "InputLayer" and layers[0]["config"]["dtype"] is None:
        # An integer input (token ids) is fed as floats to the first layer's dtype.
        following = layers[1]["config"].get("dtype") if len(layers) > 1 else None
        layers[0]["config"]["dtype"] = following or "float32"
    build_config = config.get("build_config")
    build_shape = body.get("build_input_shape") or (
        build_config.get("input_shape") if isinstance(build_config, dict) else None)
    if build_shape is not None:
        try:
            build_shape = _shape_from_keras(build_shape, "`build_input_shape`")
        except _Unmappable as e:
            raise _invalid(path, f"its model config's {e}") from e
    with deferred_weights(max_weight_bytes):
        try:
            return Sequential.from_config({"name": body.get("name"), "layers": layers,
                                           "build_input_shape": build_shape})
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as e:
            raise ValueError(f"Cannot load {path!r}: its model cannot be built in pylstm "
                             f"({type(e).__name__}: {e}).") from e


def _compile_from_keras(model, config, legacy):
    """Compiles `model` as `config` (Keras's compile_config or Keras 2's training_config) says;
    leaves it uncompiled when something in it has no pylstm equivalent."""
    if not isinstance(config, dict):
        return
    try:
        optimizer = config.get("optimizer_config") if legacy else config.get("optimizer")
        if isinstance(optimizer, str):
            optimizer = optimizers.get(optimizer)
        else:
            optimizer = _object_from_keras(optimizer, optimizers, "optimizer")
            if not isinstance(optimizer["config"].get("learning_rate", 0.0), (int, float)):
                return  # a learning-rate schedule
            optimizer = optimizers.deserialize(optimizer)
        if config.get("loss_weights") is not None or config.get("weighted_metrics"):
            return
        loss = config.get("loss")
        if loss is not None:
            if not isinstance(loss, (str, dict)):
                return  # one loss per output
            loss = losses.get(_object_from_keras(loss, losses, "loss"))
        metrics = [_metric_from_keras(m) for m in _flat_metrics(config.get("metrics"))]
    except (ValueError, TypeError, KeyError):
        return
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)


def _flat_metrics(metrics):
    if metrics is None:
        return []
    if len(metrics) == 1 and isinstance(metrics[0], list):  # Keras 2: one list per output
        metrics = metrics[0]
    return metrics


def _metric_from_keras(metric):
    """A Keras metric (a name, a metric class, or Keras 2's `MeanMetricWrapper` of a named
    function) -> the name of the pylstm metric; raises for one pylstm lacks."""
    if isinstance(metric, dict):
        config = dict(metric.get("config") or {})
        if metric.get("class_name") == "MeanMetricWrapper":
            fn, name = config.get("fn"), config.get("name")
            metric = name if _metric_or_none(name) is _metric_or_none(fn) else fn
        else:
            name = _METRIC_CLASSES.get(metric.get("class_name"))
            if name is None:
                raise _Unmappable(f"metric {metric.get('class_name')!r}")
            _keep_supported(_NoArgs, config, f"metric {name!r}")
            metric = name
    metrics_module.get(metric)  # raises for an unknown name
    return metric


def _metric_or_none(name):
    try:
        return metrics_module.get(name) if isinstance(name, str) else None
    except ValueError:
        return None


class _NoArgs:
    """Stands for pylstm's metrics, which are functions without arguments."""


# Weights ------------------------------------------------------------------------------------


def _layer_groups(model):
    """Yields `(layer, path of its group, [(group path, number of arrays)])` for each layer
    of `model`, with Keras's paths in a weights file."""
    for layer, (name, obj) in zip(model.layers, _numbered(serialize(x) for x in model.layers)):
        path = f"layers/{name}"
        yield layer, path, [(f"{path}/{rel}" if rel else path, n)
                            for rel, n in _weight_groups(obj)]


def _read_vars(path, f, group_path, layer, shapes):
    """The arrays of the group `group_path/vars` of `f`, of the shapes `shapes` that `layer`
    expects."""
    name = f"{group_path}/vars"
    group = f.get(name)
    if not isinstance(group, _Group):
        raise _invalid(path, f"it has no weights group '{name}'")
    keys = sorted(group.keys(), key=lambda k: int(k) if k.isdigit() else -1)
    if keys != [str(i) for i in range(len(shapes))]:
        raise _invalid(path, f"'{name}' holds the arrays {keys[:10]}, expected {len(shapes)} "
                       f"(0 to {len(shapes) - 1})")
    return [_array(path, group.get(k), f"{name}/{k}", layer, shape)
            for k, shape in zip(keys, shapes)]


def _array(path, dataset, name, layer, shape):
    """The dataset `name` for a weight of `layer` of shape `shape`, checked before and after
    it is read."""
    if not isinstance(dataset, _Dataset):
        raise _invalid(path, f"'{name}' is not an array")
    try:
        value = dataset.read(shape)
    except _ShapeMismatch as e:
        raise _invalid(path, f"its weights do not fit layer '{layer.name}': '{name}' expects "
                       f"shape {tuple(shape)}, received shape {e.declared}") from e
    if not np.isfinite(value).all():
        raise _invalid(path, f"'{name}' is not finite floating-point data")
    return value


def _weight_shapes(layer):
    return [tuple(v.value.shape) for v in layer.weights]


def _set_weights(path, layer, weights):
    try:
        layer.set_weights(weights)
    except ValueError as e:
        raise _invalid(path, f"its weights do not fit layer '{layer.name}': {e}") from e


def _read_weights(path, model, f):
    """Loads a Keras 3 weights file (`f`, the root `_Group`) into `model`."""
    try:
        # A model saved before it was built has no weights, in Keras as in pylstm.
        plan = list(_layer_groups(model)) if model.built else []
    except _Unmappable as e:
        raise ValueError(f"Cannot load Keras weights into model '{model.name}': {e}.") from e
    read = set()
    for layer, _, groups in plan:
        shapes, weights = iter(_weight_shapes(layer)), []
        for group_path, n in groups:
            group_shapes = [shape for _, shape in zip(range(n), shapes)]
            if len(group_shapes) != n:
                raise _invalid(path, f"its weights do not fit layer '{layer.name}'")
            weights += _read_vars(path, f, group_path, layer, group_shapes)
            read.add(f"{group_path}/vars")
        _set_weights(path, layer, weights)
    layers = f.get("layers")
    if isinstance(layers, _Group):
        extra = next((name for name in layers.datasets()
                      if f"layers/{name.rsplit('/', 1)[0]}" not in read), None)
        if extra is not None:
            raise _invalid(path, f"it holds weights the model has no layer for (e.g. "
                           f"'layers/{extra}'): it was saved from another architecture")


def _read_legacy_weights(path, model, group):
    """Loads legacy HDF5 weights (Keras 2 layout) into `model`, layer by layer in order."""
    names = _attr_names(group, "layer_names")
    if names is None:
        raise _invalid(path, "it has no `layer_names` attribute: not a Keras weights file")
    saved = []
    for name in names:
        layer_group = group.get(name) if name else None
        if not isinstance(layer_group, _Group):
            raise _invalid(path, f"it has no group for layer '{name:.100}'")
        weight_names = _attr_names(layer_group, "weight_names") or []
        if weight_names:
            saved.append((name, layer_group, weight_names))
    layers = [layer for layer in model.layers if layer.weights]
    if len(saved) != len(layers):
        raise _invalid(path, f"it holds weights for {len(saved)} layers "
                       f"({', '.join(n for n, _, _ in saved[:20])}), model '{model.name}' has "
                       f"{len(layers)} layers with weights")
    for layer, (name, layer_group, weight_names) in zip(layers, saved):
        shapes = _weight_shapes(layer)
        if len(weight_names) != len(shapes):
            raise _invalid(path, f"its weights do not fit layer '{layer.name}': the file holds "
                           f"{len(weight_names)} arrays for it (layer '{name}'), the layer has "
                           f"{len(shapes)}")
        _set_weights(path, layer, [
            _array(path, layer_group.get(w) if w else None, f"{name}/{w}", layer, shape)
            for w, shape in zip(weight_names, shapes)])


def _slot_order(optimizer, variables):
    """[(variable, slot name)] in Keras's order of the optimizer's slot variables."""
    order = []
    for block in _OPTIMIZER_SLOTS[type(optimizer).__name__]:
        block = [s for s in block if s in optimizer._slot_names]
        order += [(var, slot) for var in variables for slot in block]
    return order


def _read_optimizer_state(model, f):
    """Restores the iteration count and slots of `model.optimizer` from Keras's
    `optimizer/vars`; leaves the optimizer fresh when the saved state does not match it (as
    Keras does, minus its warning)."""
    optimizer = model.optimizer
    group = f.get("optimizer/vars")
    if (optimizer is None or not isinstance(group, _Group)
            or type(optimizer).__name__ not in _OPTIMIZER_SLOTS):
        return
    variables = model.trainable_variables
    order = _slot_order(optimizer, variables)
    keys = set(group.keys())
    if keys == {"0", "1"}:  # saved before Keras built the optimizer: no slots yet
        order = []
    elif keys != {str(i) for i in range(2 + len(order))}:
        return
    datasets = [group.get(str(i)) for i in range(2 + len(order))]
    if not all(isinstance(d, _Dataset) for d in datasets) or datasets[0].shape != ():
        return
    slots = {var: {} for var in variables}
    for dataset, (var, slot) in zip(datasets[2:], order):
        if dataset.shape != tuple(var.shape):
            return
        slots[var][slot] = np.asarray(dataset.read(var.shape), dtype=var.dtype)
    optimizer.iterations = int(datasets[0].read((), kinds="iu"))
    if order:
        optimizer._slots = slots


def _write_weights(model, target, with_optimizer):
    """Writes `model`'s weights (and optimizer state) in Keras 3's layout to `target`."""
    h5py = _h5py()
    try:
        plan = list(_layer_groups(model))
    except _Unmappable as e:
        raise ValueError(f"Cannot write model '{model.name}' in the Keras format: {e}.") from None
    with h5py.File(target, "w") as f:
        f.create_group("vars").attrs["name"] = model.name
        for layer, layer_path, groups in plan:
            f.create_group(f"{layer_path}/vars").attrs["name"] = layer.name
            arrays = iter(layer.get_weights())
            for group_path, n in groups if model.built else ():
                group = f.require_group(f"{group_path}/vars")
                for i in range(n):
                    group.create_dataset(str(i), data=next(arrays))
        if with_optimizer:
            optimizer = model.optimizer
            group = f.create_group("optimizer/vars")
            group.attrs["name"] = type(optimizer).__name__.lower()
            group.create_dataset("0", data=np.int64(optimizer.iterations))
            group.create_dataset("1", data=np.float32(optimizer.learning_rate))
            for i, (var, slot) in enumerate(_slot_order(optimizer, model.trainable_variables),
                                            start=2):
                value = optimizer._slots.get(var, {}).get(slot)
                group.create_dataset(str(i), data=np.zeros_like(var.value) if value is None
                                     else value)


# pylstm -> Keras config ---------------------------------------------------------------------


def _policy(dtype):
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": dtype},
            "registered_name": None}


def _keras_object(module, obj):
    """pylstm's `{"class_name", "config"}` -> Keras's serialized-object dict."""
    return {"module": module, "class_name": obj["class_name"], "config": obj["config"],
            "registered_name": None}


def _activation_to_keras(name, where):
    known = isinstance(name, str) and name != "legacy_hard_sigmoid"
    try:
        known = known and activations.get(name) is not None
    except ValueError:
        known = False
    if not known:
        raise _Unmappable(f"{where}: Keras 3 has no activation {name!r}"
                          + (" (Keras 2's hard_sigmoid)" if name == "legacy_hard_sigmoid" else ""))
    return name


def _layer_to_keras(obj, input_shape=None):
    """pylstm's serialized layer -> Keras's, with a `build_config` when `input_shape` is
    given."""
    _entry(obj)  # raises for a class Keras lacks
    class_name, config = obj["class_name"], obj["config"]
    where = f"layer '{config.get('name')}' ({class_name})"
    if class_name == "InputLayer":
        return {"module": "keras.layers", "class_name": class_name, "registered_name": None,
                "config": {"batch_shape": [config["batch_size"]] + list(config["shape"]),
                           "dtype": config["dtype"], "sparse": False, "name": config["name"]}}
    out = {}
    for key, value in config.items():
        if key == "input_shape":
            continue
        if key == "dtype":
            value = _policy(value)
        elif key in ("activation", "recurrent_activation"):
            value = _activation_to_keras(value, where)
        elif key in _SUBLAYER_KEYS and value is not None:
            value = ([_layer_to_keras(v) for v in value] if isinstance(value, list)
                     else _layer_to_keras(value))
        elif isinstance(value, dict) and "class_name" in value:
            package = _package_of(key)
            if package is None:
                raise _Unmappable(f"{where}: cannot write `{key}`={value!r:.100}")
            _check_builtin(package, value, f"{where}, `{key}`")
            value = _keras_object(package.__name__.replace("pylstm", "keras"), value)
        out[key] = value
    keras = {"module": "keras.layers", "class_name": class_name, "config": out,
             "registered_name": None}
    if input_shape is not None:
        keras["build_config"] = {"input_shape": list(input_shape)}
    return keras


def _check_builtin(package, obj, where):
    """Raises `_Unmappable` unless `obj` names one of pylstm's (Keras-named) classes."""
    try:
        builtin = type(package.get(obj["class_name"])).__name__ == obj["class_name"]
    except (ValueError, TypeError):
        builtin = False
    if not builtin:
        raise _Unmappable(f"{where}: {obj['class_name']!r} is not a built-in Keras object")


def _compile_to_keras(model):
    """Keras's compile_config for `model`, or None if uncompiled or not expressible."""
    optimizer, loss = model.optimizer, model.loss
    if optimizer is None or type(optimizer).__name__ not in _OPTIMIZER_SLOTS:
        return None
    try:
        if loss is not None:
            _check_builtin(losses, losses.serialize(loss), "loss")
    except (_Unmappable, AttributeError):  # a user's loss object
        return None
    if any(_metric_or_none(name) is not fn for name, fn in model._metrics):
        return None  # a user's metric function
    names = [name for name, _ in model._metrics]
    return {
        "optimizer": _keras_object("keras.optimizers", optimizers.serialize(optimizer)),
        "loss": None if loss is None else _keras_object("keras.losses", losses.serialize(loss)),
        "loss_weights": None,
        "metrics": names or None,
        "weighted_metrics": None,
        "run_eagerly": False,
        "steps_per_execution": 1,
        "jit_compile": "auto",
    }


def _model_to_keras(model):
    """Keras's config.json dict for a pylstm `Sequential`."""
    layers = []
    shape = model._build_input_shape if model.built else None
    try:
        if model.built:
            input_layer = model._input_layer
            layers.append(_layer_to_keras({"class_name": "InputLayer", "config": {
                "shape": list(shape[1:]), "batch_size": shape[0], "dtype": model.dtype,
                "name": input_layer.name if input_layer is not None else "input_layer"}}))
        for i, layer in enumerate(model.layers):
            layer_input = None
            if model.built:
                layer_input = shape if i == 0 else model._output_shapes[i - 1]
            layers.append(_layer_to_keras(serialize(layer), layer_input))
    except _Unmappable as e:
        raise ValueError(f"Cannot write model '{model.name}' in the Keras format: {e}.") from None
    config = {"module": "keras", "class_name": "Sequential",
              "config": {"name": model.name, "trainable": True, "dtype": _policy(model.dtype),
                         "layers": layers,
                         "build_input_shape": list(shape) if shape is not None else None},
              "registered_name": None}
    if shape is not None:
        config["build_config"] = {"input_shape": list(shape)}
    compile_config = _compile_to_keras(model)
    if compile_config is not None:
        config["compile_config"] = compile_config
    return config
