"""One-file model saving without pickle.

Format: a zip archive written by `np.savez` holding `config.json` (UTF-8 JSON stored as a
`uint8` array) and the weights as `weight_0000`, `weight_0001`, ... in `model.get_weights()`
order. `config.json` is `{"format": "pylstm", "format_version": 1, "class_name": "Sequential"
or "Functional", "model": model.get_config(), "compile_config": {"optimizer", "loss", "metrics",
"loss_weights"} or null, "optimizer_state": {"iterations", "slots"} or null}` (a file without
`class_name` holds a `Sequential`). The optimizer's state, when compiled, is its update count
`iterations` (`Optimizer._iterations`, every `apply` call) and its per-variable arrays: for
each of `model.trainable_variables` in order, one member per name of `slots`
(`Optimizer._slot_names`), `optimizer_0000`, `optimizer_0001`, ... (none before the first
step), so that training resumes where it stopped, as from a `.keras` file. Loading reads the
zip members itself, through `pylstm.models._archive` (sizes bounded before inflating; float
.npy arrays only, their headers checked here before their data) and parses the config as plain
JSON, so opening a file cannot run code.

Paths ending in `.keras`, `.h5` or `.hdf5` use Keras's formats instead, through
`pylstm.models.keras_io`.
"""

import contextlib
import json
import os
import types
import zipfile

import numpy as np

from pylstm import losses, metrics, optimizers
from pylstm._atomic_write import atomic_write
from pylstm.models import _archive, _formats
from pylstm.models.functional import Functional
from pylstm.models.sequential import Sequential
from pylstm.variable import (DEFAULT_MAX_WEIGHT_BYTES, WeightLimitError, check_byte_limit,
                             deferred_weights)

FORMAT = "pylstm"
FORMAT_VERSION = 1
_MODEL_CLASSES = {"Sequential": Sequential, "Functional": Functional}


def save_model(model, path):
    """Writes `model` to `path` atomically (a temporary file in the same directory, then
    `os.replace`), so an interrupted save never leaves a half-written file at `path`.

    A path ending in `.keras` gets the Keras 3 format (`pylstm.models.save_keras`), one ending
    in `.h5` or `.hdf5` the legacy Keras HDF5 format (`pylstm.models.save_legacy_h5`), both of
    which Keras's `keras.saving.load_model` reads; any other path gets pylstm's own format,
    which keeps the optimizer's state.

    Args:
        model: a `Sequential` or a functional `Model`.
        path: str or path-like; used as given (no extension is appended).

    Raises:
        FileNotFoundError: if the folder of `path` does not exist (the message names `path`).
        ValueError: if the compile config holds objects that cannot be serialized, or (for
            `.keras` and `.h5`) the model holds something Keras lacks.

    Example:

    >>> import os, tempfile
    >>> from pylstm.layers import LSTM, Dense, Input
    >>> from pylstm.models import Sequential, load_keras, save_model
    >>> model = Sequential([Input((5, 2)), LSTM(4), Dense(1)])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")   # Keras 3's format
    >>> save_model(model, path)
    >>> [type(layer).__name__ for layer in load_keras(path).layers]
    ['LSTM', 'Dense']
    """
    _formats.find("save_model", path)(model, path)


def _save_pylstm(model, path):
    """`save_model` in pylstm's own format."""
    class_name = type(model).__name__
    if _MODEL_CLASSES.get(class_name) is not type(model):
        raise ValueError(f"pylstm's format saves Sequential and functional models, received a "
                         f"{class_name}.")
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "class_name": class_name,
              "model": model.get_config(), "compile_config": _serialize_compile_config(model)}
    config["optimizer_state"], slot_arrays = _optimizer_state(model, config["compile_config"])
    arrays = {"config.json": np.frombuffer(json.dumps(config).encode("utf-8"), dtype=np.uint8)}
    for i, w in enumerate(model.get_weights()):
        arrays[f"weight_{i:04d}"] = w
    for i, a in enumerate(slot_arrays):
        arrays[f"optimizer_{i:04d}"] = a
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _optimizer_state(model, compile_config):
    """`({"iterations", "slots"}, arrays)` of a compiled model's optimizer (see the module's
    docstring), or `(None, [])` when there is none; no arrays before the first step."""
    optimizer = model.optimizer
    if compile_config is None or optimizer is None:
        return None, []
    names = list(optimizer._slot_names)
    variables = model.trainable_variables
    arrays = []
    if any(var in optimizer._slots for var in variables):
        for var in variables:
            slots = optimizer._slots.get(var, {})
            arrays += [slots[name] if name in slots else optimizer._initial_slot(name, var.value)
                       for name in names]
    return {"iterations": int(optimizer._iterations), "slots": names}, arrays


def _serialize_compile_config(model):
    """`compile`'s arguments as JSON: the optimizer's and each loss's config, the metrics (a
    name when one was given, else the metric's config) and the loss weights, in the structure
    they were given (one, a list, a dict)."""
    if model.optimizer is None:
        return None

    def metric_name(metric):
        if metric is None:
            return None
        if not hasattr(metric, "fn"):  # a list or dict of a Trainer's `_Metric`s
            return _map_compile_structure(metric, metric_name)
        if metrics.made_from_name(metric.name, metric.fn):
            return metric.name
        return metrics.serialize(metric.fn)  # raises ValueError for a user's metric

    return {"optimizer": optimizers.serialize(model.optimizer),
            "loss": _map_compile_structure(
                model.loss, lambda loss: None if loss is None else losses.serialize(loss)),
            "metrics": metric_name(model._metrics),
            "loss_weights": model.loss_weights}


def _map_compile_structure(value, function):
    if isinstance(value, dict):
        return {k: function(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [function(v) for v in value]
    return function(value)


def load_model(path, max_weight_bytes=DEFAULT_MAX_WEIGHT_BYTES):
    """Loads a model written by `Sequential.save` / `save_model`, compiled if it was.

    A path ending in `.keras`, `.h5` or `.hdf5` is read as a Keras file
    (`pylstm.models.load_keras`); any other as pylstm's own format.

    The file is treated as untrusted: the model is built from its config without running
    initializers, and refused if its weights would exceed `max_weight_bytes`; each weight
    member's declared size, dtype and shape are checked against the model before its data is
    read, in bounded chunks, so that a small file cannot make loading take gigabytes or run
    code.

    Args:
        path: str or path-like.
        max_weight_bytes: int, the most bytes of weights the file's config may declare
            (`pylstm.layers.layer.DEFAULT_MAX_WEIGHT_BYTES`, 2 GiB, by default); raise it to
            load larger models.

    Returns:
        A `Sequential` or a functional `Model` with the saved architecture and weights.

    Raises:
        FileNotFoundError: if `path` does not exist.
        TypeError: if `max_weight_bytes` is not an int.
        ValueError: if `path` is not a valid pylstm model file (the message names the file and
            says why: a damaged archive or member, a malformed config, a layer class that is
            not defined, weights of the wrong dtype or shape or not finite), or its weights
            exceed `max_weight_bytes`.

    Example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> from pylstm.layers import LSTM, Dense, Input
    >>> from pylstm.models import Sequential, load_model
    >>> model = Sequential([Input((5, 2)), LSTM(4), Dense(1)])
    >>> model.compile(optimizer="adam", loss="mse")
    >>> path = os.path.join(tempfile.mkdtemp(), "model.pylstm")
    >>> model.save(path)
    >>> x = np.ones((3, 5, 2), dtype="float32")
    >>> bool(np.array_equal(load_model(path).predict(x, verbose=0), model.predict(x, verbose=0)))
    True
    """
    path = os.fspath(path)
    check_byte_limit(max_weight_bytes, "max_weight_bytes")
    return _formats.find("load_model", path)(path, max_weight_bytes=max_weight_bytes)


def _load_pylstm(path, max_weight_bytes):
    """`load_model` of a file in pylstm's own format."""

    def invalid(why):
        return _FileError(f"{path!r} is not a valid pylstm model file: {why.rstrip('.')}.")

    try:
        archive = zipfile.ZipFile(path)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except _archive.ZIP_ERRORS as e:
        if _starts_with(path, np.lib.format.MAGIC_PREFIX):
            raise invalid("it holds a single NumPy array, not a zip archive") from e
        raise invalid(f"it cannot be read as a zip archive ({e})") from e
    with archive:
        try:
            return _load_archive(archive, invalid, max_weight_bytes)
        except _FileError:
            raise
        except _archive.ZIP_ERRORS as e:
            raise invalid(f"its contents are damaged ({type(e).__name__}: {e})") from e


class _FileError(ValueError):
    """The ValueError `load_model` raises, naming the file (not to be wrapped again)."""


# What building a model from a config of the wrong shape or types can raise.
_CONFIG_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError,
                  OverflowError)

MAX_CONFIG_BYTES = 2 ** 24
"""The largest `config.json` member `load_model` reads (16 MiB; a model's config is a few KB)."""

_MAX_NPY_HEADER_BYTES = 2 ** 16
_WEIGHT_DTYPES = frozenset(np.dtype(f"{order}{code}") for order in "<>"
                           for code in ("f2", "f4", "f8"))


def _starts_with(path, prefix):
    with contextlib.suppress(OSError), open(path, "rb") as f:
        return f.read(len(prefix)) == prefix
    return False


def _load_archive(archive, invalid, max_weight_bytes):
    """`load_model` of an open zip `archive`: reads the config, builds the model within
    `max_weight_bytes`, then reads each weight member straight into its variable."""
    members = {}
    for info in archive.infolist():
        name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        if name in members:
            raise invalid(f"it holds the member {name!r} twice")
        members[name] = info
    if "config.json" not in members:
        raise invalid("it has no config.json entry")
    config = _read_config(archive, members["config.json"], invalid)
    if config.get("format") != FORMAT:
        raise invalid("config.json does not declare the pylstm format")
    if config.get("format_version") != FORMAT_VERSION:
        raise invalid(f"unsupported format_version {config.get('format_version')!r}")
    class_name = config.get("class_name", "Sequential")
    model_class = _MODEL_CLASSES.get(class_name) if isinstance(class_name, str) else None
    if model_class is None:
        raise invalid(f"its class_name must be one of {sorted(_MODEL_CLASSES)}, received "
                      f"{_describe(class_name)}")
    try:
        with deferred_weights(max_weight_bytes):
            model = model_class.from_config(config.get("model"))
    except WeightLimitError as e:
        raise _FileError(f"{archive.filename!r} cannot be loaded: {e}") from e
    except _CONFIG_ERRORS as e:
        raise invalid(f"its model config is malformed ({type(e).__name__}: {e})") from e
    compile_config = config.get("compile_config")
    if compile_config is not None:
        if not isinstance(compile_config, dict) or not set(compile_config) <= _COMPILE_KEYS:
            raise invalid(f"its compile_config must be a dict with keys among "
                          f"{sorted(_COMPILE_KEYS)}, received {_describe(compile_config)}")
        try:
            model.compile(**compile_config)
        except _CONFIG_ERRORS as e:
            raise invalid(f"its compile_config is malformed ({type(e).__name__}: {e})") from e
    variables = model.weights
    names = [n for n in members if n.startswith("weight_")]
    if names and not model.built:
        raise invalid("it holds weights but no input shape to build the model with")
    if len(names) != len(variables):
        raise invalid(f"model {model.name!r} expects {len(variables)} weight arrays, "
                      f"received {len(names)}")
    for i, var in enumerate(variables):
        name = f"weight_{i:04d}"
        if name not in members:
            raise invalid(f"it has no member {name} (its weight members are not numbered "
                          f"weight_0000 to weight_{len(variables) - 1:04d})")
        _read_weight(archive, members[name], name, var, invalid)
    _read_optimizer_state(archive, members, config.get("optimizer_state"), model, invalid)
    return model


def _read_optimizer_state(archive, members, state, model, invalid):
    """Restores the optimizer state the file holds (see the module's docstring) into the
    freshly compiled `model`."""
    names = sorted(n for n in members if n.startswith("optimizer_"))
    if state is None and not names:
        return
    optimizer = model.optimizer
    if optimizer is None or not isinstance(state, dict) or set(state) != {"iterations", "slots"}:
        raise invalid(f"its optimizer_state must be a dict with keys iterations and slots, "
                      f"saved with a compile_config, received {_describe(state)}")
    iterations, slot_names = state["iterations"], state["slots"]
    if type(iterations) is not int or iterations < 0:
        raise invalid(f"its optimizer_state's iterations must be an int >= 0, received "
                      f"{_describe(iterations)}")
    if slot_names != list(optimizer._slot_names):
        raise invalid(f"its optimizer_state's slots {_describe(slot_names)} are not those of "
                      f"optimizer {type(optimizer).__name__} {list(optimizer._slot_names)}")
    variables = model.trainable_variables
    expected = len(variables) * len(slot_names)
    if names and names != [f"optimizer_{i:04d}" for i in range(expected)]:
        raise invalid(f"it holds {len(names)} optimizer arrays, expected none or {expected} "
                      f"(optimizer_0000 to optimizer_{expected - 1:04d}), one per slot "
                      f"{slot_names} of each of the {len(variables)} trainable weights")
    slots = {}
    for i, name in enumerate(names):
        var = variables[i // len(slot_names)]
        slot = types.SimpleNamespace(name=f"{var.name} ({slot_names[i % len(slot_names)]})",
                                     value=np.empty_like(var.value), shape=var.shape,
                                     dtype=var.dtype)
        _read_weight(archive, members[name], name, slot, invalid)
        slots.setdefault(var, {})[slot_names[i % len(slot_names)]] = slot.value
    optimizer._iterations = iterations
    optimizer._slots = slots


_COMPILE_KEYS = frozenset(("optimizer", "loss", "metrics", "loss_weights"))


def _describe(value):
    text = repr(value)
    return text if len(text) <= 80 else f"a {type(value).__name__}"


def _member(archive, info, limit, why, invalid):
    """`info` of `archive` opened for bounded reading (see `_archive.Member`)."""
    return _archive.Member(archive, info, f"its member {info.filename!r}", limit, why, invalid)


def _read_npy_header(f, invalid):
    """Reads the .npy header of the open `_archive.Member` `f`; returns `(shape, fortran_order,
    dtype, data_bytes)` where `data_bytes` is what the member holds after the header."""
    version = np.lib.format.read_magic(f)
    if version not in ((1, 0), (2, 0)):
        raise invalid(f"{f.what} has .npy format version {version}, not 1.0 or 2.0")
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    try:
        shape, fortran, dtype = read_header(f)
    except _FileError:
        raise
    except Exception as e:  # NumPy parses the header with ast and tokenize, which raise many
        raise invalid(f"{f.what} has a damaged .npy header ({type(e).__name__}: {e})") from e
    return shape, fortran, dtype, f.size - f.tell()


def _read_config(archive, info, invalid):
    with _member(archive, info, MAX_CONFIG_BYTES, "a config may have", invalid) as f:
        shape, _, dtype, data_bytes = _read_npy_header(f, invalid)
        if dtype != np.uint8 or len(shape) != 1 or shape[0] != data_bytes:
            raise invalid(f"its config.json member must be {data_bytes} bytes of uint8, "
                          f"received dtype {dtype} and shape {shape}")
        text = f.read_all()
    config = _archive.parse_json(text, "its config.json", invalid)
    if not isinstance(config, dict):
        raise invalid("config.json does not declare the pylstm format")
    return config


def _read_weight(archive, info, name, var, invalid):
    """Reads the member `name` into `var` after checking its size, dtype and shape."""
    with _member(archive, info, var.value.size * 8 + _MAX_NPY_HEADER_BYTES,
                 f"that weight {var.name!r} of shape {var.shape} can take", invalid) as f:
        shape, fortran, dtype, data_bytes = _read_npy_header(f, invalid)
        if dtype not in _WEIGHT_DTYPES:
            raise invalid(f"weight array {name} has dtype {dtype.str}, not float16, float32 "
                          "or float64")
        if shape != var.shape:
            raise invalid(f"weight array {name} has shape {shape}; weight {var.name!r} "
                          f"expects shape {var.shape}")
        if data_bytes != var.value.size * dtype.itemsize:
            raise invalid(f"{f.what} holds {data_bytes} bytes of data, "
                          f"its header declares {var.value.size * dtype.itemsize}")
        direct = dtype == var.dtype and dtype.isnative and not fortran
        if direct and var.value.flags.c_contiguous:
            f.read_into(var.value.reshape(-1).view(np.uint8))
        else:
            data = np.empty(shape[::-1] if fortran else shape, dtype)
            f.read_into(data.reshape(-1).view(np.uint8))
            # Assignment converts the dtype and byte order to the variable's.
            var.value[...] = data.T if fortran else data
    if not np.isfinite(var.value).all():
        raise invalid(f"weight array {name} is not finite floating-point data")
