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
      (`layers/lstm/cell/vars`, `layers/bidirectional/forward_layer/cell/vars`). A functional
      model's layers are numbered the same way in the order of Keras's `model.layers` (its
      InputLayers included: `layers/input_layer`, `layers/input_layer_1`), which
      `pylstm.models._keras_graph` computes from the graph; a nested model's layers sit under
      its own group (`layers/sequential/layers/dense`, `layers/functional/layers/lstm`), and
      a layer met twice (shared) only once. The optimizer's are `optimizer/vars`: `0`
      iterations (int64), `1` learning rate, then its slots in the order of
      `_OPTIMIZER_SLOTS`.
    - legacy HDF5 (`.h5`: Keras 2, and Keras 3's `model.save("x.h5")`): the root attributes
      `model_config` and `training_config` (JSON), and a `model_weights` group whose
      `layer_names` attribute lists one group per layer; each group's `weight_names`
      attribute names its datasets in `weights` order (a nested model's: those of all its
      layers, trainable ones first). Keras matches them to the model's layers by order,
      skipping layers without weights, and so does this module, except for a functional model
      that has every layer the file names (one loaded from the file), matched by name. In
      files
      written by Keras 2, `"hard_sigmoid"` is `clip(0.2 x + 0.5, 0, 1)`, pylstm's
      `"legacy_hard_sigmoid"` (Keras 3's `hard_sigmoid` is `relu6(x + 3) / 6`).

    Functional models (`class_name` "Functional", or Keras 2.3's "Model"): the config's
    `layers` entries carry their `name` and their calls (`inbound_nodes`), in Keras 3's or
    Keras 2's form; `_keras_graph.parse` reads and checks the graph (see its Design), then the
    model is made by calling each layer in a topological order of the calls, as Keras's
    loader does. Keras 3 records the masks it propagates as `mask` arguments computed by
    operations (`keras.ops.not_equal`, ...); those are dropped, pylstm propagating masks
    itself, while any other operation or a Lambda layer (which holds code) is refused.
    Writing lists the layers with the calls `Model.get_config()` gives, in Keras's order.

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
    byte count bounds the size model.weights.h5 may declare. Zip members are read by
    `pylstm.models._archive.Member` (encryption and other compressions refused, sizes bounded
    before inflating), JSON by `_archive.parse_json`, HDF5 by `pylstm.models._hdf5` (pyfive,
    within a read budget, refusing anything that would read outside the file). Every failure
    is a ValueError (`_invalid`) naming the file, chained to its cause.
"""

import datetime
import functools
import inspect
import io
import json
import os
import zipfile

import numpy as np

from pylstm import activations, constraints, initializers, losses, optimizers, regularizers
from pylstm._atomic_write import atomic_write, check_destination
from pylstm import metrics as metrics_module
from pylstm.layers import InputLayer, Layer, _layer_classes, deserialize, serialize
from pylstm.layers.keras_tensor import flatten
from pylstm.models import _archive, _hdf5, _keras_graph
from pylstm.models.sequential import Sequential
from pylstm.variable import (DEFAULT_MAX_WEIGHT_BYTES, assign_weights, check_byte_limit,
                             deferred_weights)

# The Keras release whose `.keras` layout `save_keras` follows (recorded in metadata.json).
KERAS_VERSION = "3.15.1"

_CONFIG, _METADATA, _WEIGHTS = "config.json", "metadata.json", "model.weights.h5"
_ZIP_MAGIC, _HDF5_MAGIC = b"PK\x03\x04", b"\x89HDF\r\n\x1a\n"


def _use_bias(config):
    return 1 if config.get("use_bias", True) else 0


def _under(attribute, nested):
    """The weight groups of the sublayer `nested` (a serialized layer) under `attribute`."""
    return [(f"{attribute}/{rel}" if rel else attribute, n) for rel, n in _weight_groups(nested)]


def _one_group(n):
    """The weight groups of a layer whose `n` arrays (none when 0) sit in its own group."""
    return [("", int(n))] if n else []


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
    "Concatenate": ("concatenate", lambda c: []),
    "Add": ("add", lambda c: []),
    "Subtract": ("subtract", lambda c: []),
    "Multiply": ("multiply", lambda c: []),
    "Average": ("average", lambda c: []),
    "Maximum": ("maximum", lambda c: []),
    "Minimum": ("minimum", lambda c: []),
    "Dot": ("dot", lambda c: []),
    "RepeatVector": ("repeat_vector", lambda c: []),
    "Reshape": ("reshape", lambda c: []),
    "Permute": ("permute", lambda c: []),
    "GlobalAveragePooling1D": ("global_average_pooling1d", lambda c: []),
    "GlobalMaxPooling1D": ("global_max_pooling1d", lambda c: []),
    "Dense": ("dense", lambda c: [("", 1 + _use_bias(c))]),
    "Embedding": ("embedding", lambda c: [("", 1)]),
    "Conv1D": ("conv1d", lambda c: [("", 1 + _use_bias(c))]),
    "MaxPooling1D": ("max_pooling1d", lambda c: []),
    "AveragePooling1D": ("average_pooling1d", lambda c: []),
    "BatchNormalization": ("batch_normalization", lambda c: [
        ("", 2 + int(c.get("center", True)) + int(c.get("scale", True)))]),
    "LayerNormalization": ("layer_normalization", lambda c: _one_group(
        int(c.get("center", True)) + int(c.get("scale", True)))),
    "SpatialDropout1D": ("spatial_dropout1d", lambda c: []),
    "LSTM": ("lstm", lambda c: [("cell", 2 + _use_bias(c))]),
    "LSTMCell": ("lstm_cell", lambda c: [("", 2 + _use_bias(c))]),
    "RNN": ("rnn", lambda c: _under("cell", c["cell"])),
    "StackedRNNCells": ("stacked_rnn_cells", lambda c: [
        group for name, cell in _numbered(c["cells"]) for group in _under(f"cells/{name}", cell)]),
    "TimeDistributed": ("time_distributed", lambda c: _under("layer", c["layer"])),
    "Bidirectional": ("bidirectional", lambda c: (
        _under("forward_layer", c["layer"])
        + _under("backward_layer", c.get("backward_layer") or c["layer"]))),
    "Attention": ("attention", lambda c: _one_group(
        bool(c.get("use_scale")) + (c.get("score_mode", "dot") == "concat"))),
    "AdditiveAttention": ("additive_attention", lambda c: _one_group(c.get("use_scale", True))),
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
# slots of one variable side by side (Adam: m0 v0 m1 v1 ..., then v_hat0 v_hat1 ...). Every
# optimizer's blocks start with the weights' moving averages (`use_ema`) and the gradient
# accumulators (`gradient_accumulation_steps`), which Keras's base class makes first.
_BASE_SLOTS = [("average",), ("gradient_accumulator",)]
_OPTIMIZER_SLOTS = {
    "SGD": _BASE_SLOTS + [("momentum",)],
    "Adam": _BASE_SLOTS + [("m", "v"), ("v_hat",)],
    "AdamW": _BASE_SLOTS + [("m", "v"), ("v_hat",)],
    "Adamax": _BASE_SLOTS + [("momentum", "norm")],
    "Nadam": _BASE_SLOTS + [("momentum", "velocity")],
    "RMSprop": _BASE_SLOTS + [("velocity",), ("momentum",), ("average_gradient",)],
    "Adagrad": _BASE_SLOTS + [("accumulator",)],
    "Adadelta": _BASE_SLOTS + [("accumulated_grad", "accumulated_delta_var")],
    "Lion": _BASE_SLOTS + [("momentum",)],
}
# Scalar optimizer state Keras writes after the slots, as attributes of pylstm's optimizer.
_OPTIMIZER_SCALARS = {"Nadam": ("_u_product",)}


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
        raise ImportError("Writing Keras files needs h5py: "
                          "`pip install h5py` (or `pip install pylstm[keras]`).") from None
    return h5py


# Public API ---------------------------------------------------------------------------------


def load_keras(path, compile=True, max_weight_bytes=DEFAULT_MAX_WEIGHT_BYTES):
    """Loads a Keras model file: a `Sequential` into a pylstm `Sequential`, a functional model
    into a pylstm functional `Model`.

    Reads Keras 3's `.keras` archives and legacy HDF5 model files (Keras 2's `model.save`,
    Keras 3's `model.save("x.h5")`), without TensorFlow. The model computes what the Keras
    model computes, and can be trained further and saved back (`model.save("x.keras")` writes
    a file Keras loads). Functional models keep their graph: several inputs and outputs,
    shared layers, `initial_state` from another layer (Keras 2's RNN states passed as extra
    inputs included), and Sequential and functional models nested in them.

    Files from anywhere are safe to load: HDF5 is read with pyfive, a pure-Python reader
    (HDF5's C library can crash on damaged files), within a bound on the bytes read; links,
    virtual datasets and external storage, which would read other files, are refused; every
    array's type and shape are checked before it is read, and every size a file declares
    (zip members, arrays) before anything of that size is allocated or decompressed. The model
    is built from the file's config without running its initializers; a functional model's
    graph is checked first (every reference, no cycle), and loading never runs code: a
    `Lambda` layer is refused, as Keras's safe mode refuses it.

    Supported layers: those of `pylstm.layers` that Keras has (`_LAYERS`: `InputLayer`,
    `Dense`, `LSTM`, `RNN(LSTMCell)`, `Bidirectional`, `TimeDistributed`, `Embedding`,
    `Masking`, the merge, attention, convolution, pooling and normalization layers, ...);
    a Keras argument pylstm lacks is accepted only when its value has no effect (e.g.
    `stateful=False`).

    Args:
        path: str or path-like; a `.keras` archive or an HDF5 file (recognized by content).
        compile: bool. If True and the file records a compile config whose optimizer, loss
            and metrics all have pylstm equivalents (SGD, Adam, RMSprop; pylstm's losses and
            metrics), the model is compiled with them, and the optimizer state of a `.keras`
            file or a legacy HDF5 file of Keras 3 (iteration count, momentums) is restored, so
            training resumes as in Keras.
            Otherwise (a learning-rate schedule, weight decay, a custom loss, ...) the model
            is returned uncompiled, as with `compile=False`, without a warning: call
            `compile()` before `fit()`.
        max_weight_bytes: int, the most bytes the weights of the file's model may take
            (default `pylstm.layers.layer.DEFAULT_MAX_WEIGHT_BYTES`, 2 GiB); a config that
            implies more is refused before anything is allocated. Raise it to load a larger
            model.

    Returns:
        A built `pylstm.models.Sequential` or `pylstm.models.Model` with the file's weights.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ImportError: if pyfive is not installed.
        ValueError: for a file that is not a valid Keras model file (damaged, truncated,
            hostile, a missing member or weight, a wrong type or shape, a functional graph
            that does not describe a model; the message names the file and says what),
            weights over `max_weight_bytes`, a model other than `Sequential` and functional
            (a subclassed model), a `Lambda` layer, or a layer or argument pylstm does not
            support (the message names the layer and its class).
        TypeError: if `max_weight_bytes` is not an int (ValueError if negative).

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
    check_byte_limit(max_weight_bytes, "max_weight_bytes")
    if _sniff(path) == "zip":
        with _Archive(path) as archive:
            config = archive.config()
            model, orders = _model_from_keras(path, config, False, max_weight_bytes)
            weights = archive.weights(model)
        with _open_hdf5(path, weights, _WEIGHTS) as f:
            _read_weights(path, model, f.root, orders)
            if compile:
                _compile_from_keras(model, config.get("compile_config"), legacy=False)
                _read_optimizer_state(model, f.root)
        return model
    with _open_hdf5(path) as f:
        return _load_legacy_model(path, f.root, compile, max_weight_bytes)


def _load_legacy_model(path, f, compile, max_weight_bytes):
    version = f.text("keras_version", _MAX_ATTR_TEXT) or ""
    if version.startswith("1."):
        raise ValueError(f"Cannot load {path!r}: it was written by Keras {version:.20}; pylstm "
                         f"reads files of Keras 2 and 3.")
    model_config = f.text("model_config", _MAX_ATTR_TEXT)
    if model_config is None:
        raise _invalid(path, "the HDF5 file has no `model_config` attribute (a weights-only "
                       "file? load it with `load_keras_weights(model, path)`)")
    config = _json(path, model_config, "model_config")
    if not isinstance(config, dict):
        raise _invalid(path, "its `model_config` does not hold a serialized model")
    # Keras 2's "hard_sigmoid" is not Keras 3's; Keras 3 writes this format too.
    model, orders = _model_from_keras(path, config, not version.startswith("3."),
                                      max_weight_bytes)
    _read_legacy_weights(path, model, _weights_root(path, f), orders)
    training_config = f.text("training_config", _MAX_ATTR_TEXT) if compile else None
    if training_config is not None:
        _compile_from_keras(model, _json(path, training_config, "training_config"), legacy=True)
        if version.startswith("3."):  # Keras 2 ordered its optimizers' variables otherwise
            _read_legacy_optimizer_state(model, f)
    return model


def _weights_root(path, f):
    """The group of a legacy file that holds `layer_names`: `model_weights`, or the root."""
    if "model_weights" not in f.links:
        return f
    group = f.get("model_weights")
    if not isinstance(group, _hdf5.Group):
        raise _invalid(path, "its `model_weights` is not a group")
    return group


def load_keras_weights(model, path):
    """Loads Keras weights into a pylstm model of the same architecture.

    Reads `.weights.h5` files (Keras 3's `save_weights`), `.keras` archives and legacy HDF5
    weight or model files (Keras 2's `save_weights("x.h5")`, matched layer by layer in order,
    as Keras does; into a functional model that has every layer the file names, by name). A
    functional model's weights are addressed as Keras addresses them, by the order of the
    layers in its graph. A `.keras` or `.weights.h5` file's optimizer state is restored too
    when `model` is compiled with the same optimizer class. Files are read as safely as by
    `load_keras`, each array's size bounded by the model's.

    Args:
        model: a built `pylstm.models.Sequential` or functional `pylstm.models.Model`.
        path: str or path-like.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ImportError: if pyfive is not installed.
        ValueError: if `model` is not built, the file is not a valid Keras weights file
            (damaged or hostile; the message names the file), or its weights do not fit the
            model (a missing group, a count or shape mismatch, or weights for layers the model
            lacks; the message says which).

    Example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> from pylstm.layers import Dense, Input
    >>> from pylstm.models import Sequential
    >>> path = os.path.join(tempfile.mkdtemp(), "model.weights.h5")
    >>> save_keras_weights(Sequential([Input((3,)), Dense(1, kernel_initializer="ones")]), path)
    >>> model = Sequential([Input((3,)), Dense(1)])
    >>> load_keras_weights(model, path)  # as keras_model.load_weights(path)
    >>> model.get_weights()[0].ravel().tolist()
    [1.0, 1.0, 1.0]
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
    Keras's layout, with the optimizer state (iterations and slots) when compiled. A functional
    model is written as Keras writes one (`class_name` "Functional", its layers with their
    calls in Keras's order, nested models in place); a compile config with one loss per output
    is not written (the model loads uncompiled). The file is written atomically (a temporary
    file, then `os.replace`).

    Args:
        model: a `pylstm.models.Sequential` or functional `pylstm.models.Model`.
        path: str or path-like, conventionally ending in `.keras`.

    Raises:
        ValueError: for a layer or activation that Keras 3 lacks (a custom layer, Keras 2's
            `"legacy_hard_sigmoid"`, a Python callable), the message naming the layer.

    Example:

    >>> import os, tempfile
    >>> from pylstm.layers import Dense, Input
    >>> from pylstm.models import Sequential
    >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
    >>> save_keras(Sequential([Input((3,)), Dense(2, name="out")]), path)
    >>> load_keras(path).layers  # keras.models.load_model(path) reads it too
    [<Dense name=out>]
    """
    check_destination(path)
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
        model: a built `pylstm.models.Sequential` or functional `pylstm.models.Model`.
        path: str or path-like, conventionally ending in `.weights.h5`.

    Raises:
        ValueError: if the model is not built or holds a layer Keras lacks.

    Example:

    >>> import os, tempfile
    >>> import numpy as np
    >>> from pylstm.layers import Dense, Input
    >>> from pylstm.models import Sequential
    >>> model = Sequential([Input((3,)), Dense(2)])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.weights.h5")
    >>> save_keras_weights(model, path)  # keras_model.load_weights(path) reads it
    >>> other = Sequential([Input((3,)), Dense(2)])
    >>> load_keras_weights(other, path)
    >>> all(np.array_equal(a, b) for a, b in zip(model.get_weights(), other.get_weights()))
    True
    """
    if not model.built:
        raise ValueError(f"Model '{model.name}' has no weights yet: build it first.")
    with_optimizer = _compile_to_keras(model) is not None
    atomic_write(path, lambda f: _write_weights(model, f, with_optimizer))


def save_legacy_h5(model, path):
    """Writes `model` as a legacy Keras HDF5 file, what Keras 3's `model.save("x.h5")` writes;
    `keras.saving.load_model` and `load_keras` read it back.

    The file holds, as Keras 3.15's `legacy_h5_format` writes them: the root attributes
    `keras_version`, `backend` and `model_config` (the model's config in Keras's legacy form:
    layer entries without `module` and `registered_name`), `training_config` when the model is
    compiled with an optimizer, loss and metrics Keras has; a `model_weights` group with one
    group per layer of Keras's `model.layers` (its `weight_names` attribute naming its
    datasets, trainable weights first); and `optimizer_weights` (iterations, learning rate and
    slots in Keras's order of `optimizer.variables`), which Keras and `load_keras` restore. The
    masks of a functional model are left out of its config (Keras's legacy loader cannot read
    the operations that compute them, and computes them again itself). The file is written
    atomically.

    Args:
        model: a `pylstm.models.Sequential` or functional `pylstm.models.Model`.
        path: str or path-like, conventionally ending in `.h5` or `.hdf5`.

    Raises:
        ImportError: if h5py is not installed.
        ValueError: for a layer or activation that Keras 3 lacks (as `save_keras`), or a model
            that is not built (Keras's legacy format needs its weights).

    Example:

    >>> import os, tempfile
    >>> from pylstm.layers import Dense, Input
    >>> from pylstm.models import Sequential
    >>> path = os.path.join(tempfile.mkdtemp(), "model.h5")
    >>> save_legacy_h5(Sequential([Input((3,)), Dense(2)]), path)
    >>> load_keras(path).count_params()  # keras.saving.load_model(path) reads it too
    8
    """
    check_destination(path)
    h5py = _h5py()
    if not model.built:
        raise ValueError(f"Cannot write model '{model.name}' as a legacy Keras HDF5 file: it "
                         f"is not built (start it with an `Input` layer or call `build`), and "
                         f"the format holds the weights. Save it as `.keras` instead.")
    config = _model_to_keras(model)
    compile_config = config.pop("compile_config", None)
    model_config = _legacy_model_config(config)
    layers = _legacy_layer_order(model, model_config)

    def write(f):
        with h5py.File(f, "w") as h5:
            h5.attrs["keras_version"] = KERAS_VERSION
            h5.attrs["backend"] = "numpy"
            h5.attrs["model_config"] = json.dumps(model_config, default=_plain).encode("utf8")
            if compile_config is not None:
                h5.attrs["training_config"] = json.dumps(
                    _legacy_training_config(compile_config), default=_plain).encode("utf8")
            group = h5.create_group("model_weights")
            group.attrs["layer_names"] = [layer.name.encode("utf8") for layer in layers]
            group.attrs["backend"] = "numpy"
            group.attrs["keras_version"] = KERAS_VERSION
            for layer in layers:
                variables = _legacy_variables(layer)
                _write_named_arrays(group.create_group(layer.name), [
                    (f"{layer.name}/{v.name}", v.value) for v in variables])
            _write_named_arrays(group.create_group("top_level_model_weights"), [])
            if compile_config is not None:
                _write_named_arrays(h5.create_group("optimizer_weights"),
                                    _optimizer_variables(model))

    atomic_write(path, write)


def _optimizer_variables(model):
    """`[(name, array)]` of Keras's `optimizer.variables` for `model.optimizer`: those a
    `.keras` file's `optimizer/vars` holds, in their order (Keras restores them by order; the
    names are the optimizer's name and the variable's index, the first `iteration`)."""
    h5py = _h5py()
    buffer = io.BytesIO()
    _write_weights(model, buffer, with_optimizer=True)
    prefix = model.optimizer.name
    with h5py.File(buffer, "r") as f:
        group = f["optimizer/vars"]
        return [(f"{prefix}/iteration" if i == 0 else f"{prefix}/variable_{i}",
                 group[str(i)][()]) for i in range(len(group))]


def _write_named_arrays(group, arrays):
    """Writes `[(name, array)]` into `group` as Keras does: the `weight_names` attribute
    listing the names (made unique), then one dataset per name."""
    names, used = [], set()
    for name, _ in arrays:
        unique, count = name, 0
        while unique in used:
            count += 1
            unique = f"{name}_{count}"
        used.add(unique)
        names.append(unique)
    group.attrs["weight_names"] = [n.encode("utf8") for n in names] or np.zeros(0)
    for name, (_, value) in zip(names, arrays):
        group.create_dataset(name, data=np.asarray(value))


def _legacy_model_config(config):
    """A `.keras` config.json model (`_model_to_keras`) in the form of a legacy HDF5 file's
    `model_config`: the model and its layers as `{"class_name", "config"}` (functional
    layers with their `name` and `inbound_nodes`) and no mask operations, recursively."""
    out = {"class_name": config["class_name"], "config": dict(config["config"])}
    body = out["config"]
    if config["class_name"] == "Sequential":
        body["layers"] = [_legacy_layer_entry(entry) for entry in body["layers"]]
        return out
    entries = [entry for entry in body["layers"] if not _keras_graph.is_operation(entry)]
    operations = {entry["name"] for entry in body["layers"]} - {e["name"] for e in entries}
    body["layers"] = []
    for entry in entries:
        legacy = _legacy_layer_entry(entry)
        legacy["name"] = entry["name"]
        legacy["inbound_nodes"] = [_without_mask_from(node, operations)
                                   for node in entry["inbound_nodes"]]
        body["layers"].append(legacy)
    return out


def _legacy_layer_entry(entry):
    if entry["class_name"] in ("Sequential", "Functional"):
        return _legacy_model_config(entry)
    return {"class_name": entry["class_name"], "config": entry["config"]}


def _without_mask_from(node, operations):
    """A call's node without the `mask` argument that `operations` compute."""
    mask = node["kwargs"].get("mask")
    refs = list(_keras_graph.leaves(_tensor_refs(mask)))
    if refs and all(ref.layer in operations for ref in refs):
        node = {**node, "kwargs": {k: v for k, v in node["kwargs"].items() if k != "mask"}}
    return node


def _legacy_layer_order(model, model_config):
    """`model`'s layers in the order of the `model.layers` of the Keras model that Keras
    builds from the legacy `model_config`: a Sequential's without its InputLayer, a functional
    model's in the order of the graph without mask operations."""
    if isinstance(model, Sequential):
        return model.layers
    by_name = {layer.name: layer for layer in model.layers}
    graph = _keras_graph.parse(model_config["config"], legacy=False, drop_mask_operations=False)
    return [by_name[name] for name in graph.layer_order() if name in by_name]


def _legacy_training_config(compile_config):
    """Keras 3's `compile_config` -> a legacy HDF5 file's `training_config` (the optimizer as
    `optimizer_config`, `{"class_name", "config"}`)."""
    training = {k: v for k, v in compile_config.items() if k != "optimizer"}
    training["jit_compile"] = False
    optimizer = compile_config["optimizer"]
    training["optimizer_config"] = {"class_name": optimizer["class_name"],
                                    "config": optimizer["config"]}
    return training


# Files --------------------------------------------------------------------------------------

# The most bytes of config.json (uncompressed) a `.keras` archive may declare.
_MAX_CONFIG_BYTES = 64 * 2**20
# The most characters of a text attribute (`model_config`, ...) of a legacy HDF5 file.
_MAX_ATTR_TEXT = _MAX_CONFIG_BYTES
# HDF5 bytes a weights member may hold beyond its arrays, per array and in all (object
# headers, B-trees, heaps, attributes).
_H5_OVERHEAD_PER_ARRAY, _H5_OVERHEAD = 16 * 2**10, 4 * 2**20
# Slot arrays per weight in the optimizer state Keras saves, for any Keras optimizer (AdamW
# with amsgrad and EMA keeps four), so that a valid file is never refused for its optimizer.
_MAX_SLOTS = 5


def _invalid(path, why):
    return ValueError(f"{path!r} is not a valid Keras file: {why.rstrip('.')}.")


def _sniff(path):
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head == _HDF5_MAGIC:
        return "h5"
    raise _invalid(path, "it is neither a .keras zip archive nor an HDF5 file")


def _open_hdf5(path, data=None, member=None):
    """`_hdf5.HDF5` of `data`, the bytes of `member` of a `.keras` archive, or else of the
    file at `path`; its errors name `path` as a Keras file."""
    return _hdf5.open_file(path, functools.partial(_invalid, path), data,
                           None if member is None else f"its {member}")


class _Archive:
    """A `.keras` zip archive, read member by member within declared and implied sizes."""

    def __init__(self, path):
        self.path = path
        try:
            self.zip = zipfile.ZipFile(path)
            names = set(self.zip.namelist())
        except _archive.ZIP_ERRORS as e:
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
        with _archive.Member(self.zip, self.zip.getinfo(member), f"its {member}", limit, why,
                             functools.partial(_invalid, self.path)) as f:
            return f.read_all()

    def config(self):
        """config.json as a dict."""
        text = self.read(_CONFIG, _MAX_CONFIG_BYTES, "a model config may have")
        config = _json(self.path, text, f"its {_CONFIG}")
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
    return _archive.parse_json(text, what, functools.partial(_invalid, path))


def _plain(value):
    """`json.dumps`'s fallback: NumPy scalars (e.g. a shape's `np.int64`) as Python numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


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
    if class_name == "Lambda":
        raise _Unmappable(f"{where}: a Lambda layer holds Python code (its function, as "
                          f"bytecode or source), and loading a file never runs code (Keras "
                          f"refuses it too unless `safe_mode=False`); build the model in "
                          f"pylstm with a layer in its place and load its weights")
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
    """The pylstm model (a `Sequential`, or a functional `Model`; built, weights zeros) of a
    Keras model config, built without running initializers and within `max_weight_bytes` of
    weights, and the layer orders of its functional models as the file lists them (see
    `_keras_layers`)."""
    if config.get("class_name") not in _MODEL_CLASSES:
        raise ValueError(f"Cannot load {path!r}: pylstm loads Keras Sequential and functional "
                         f"models, this file holds a {config.get('class_name')!r:.100} model.")
    try:
        plan = _plan_from_keras(config, legacy)
    except _Unmappable as e:
        raise ValueError(f"Cannot load {path!r}: {e}.") from e
    except _keras_graph.GraphError as e:
        raise _invalid(path, str(e)) from e
    except (ValueError, TypeError, KeyError, AttributeError) as e:  # a value of the wrong form
        raise _invalid(path, f"its model config cannot be read ({type(e).__name__}: "
                       f"{e})") from e
    except RecursionError as e:
        raise _invalid(path, "its model config nests layers too deeply") from e
    orders = {}
    with deferred_weights(max_weight_bytes):
        try:
            return _build(plan, orders), orders
        except (ValueError, TypeError, KeyError, IndexError, OverflowError,
                RecursionError) as e:
            raise ValueError(f"Cannot load {path!r}: its model cannot be built in pylstm "
                             f"({type(e).__name__}: {e}).") from e


# Keras's class names of the models a file may hold (Keras 2.3 and earlier: "Model").
_MODEL_CLASSES = ("Sequential", "Functional", "Model")


def _plan_from_keras(config, legacy):
    """What `_build` makes from a serialized Keras model or layer: `("Sequential", pylstm's
    Sequential config)`, `("Layer", pylstm's serialized layer)` or `("Functional", {"name",
    "trainable", "graph", "layers": {layer name: plan}})`; raises `_Unmappable` for what pylstm
    lacks and `_keras_graph.GraphError` for a malformed config."""
    class_name = config.get("class_name")
    if class_name == "Sequential":
        return "Sequential", _sequential_from_keras(config, legacy)
    if class_name in _MODEL_CLASSES:
        return "Functional", _functional_from_keras(config.get("config"), legacy)
    return "Layer", _layer_from_keras(config, legacy)


def _sequential_from_keras(config, legacy):
    """A Keras Sequential model's config -> pylstm's `Sequential.from_config` argument."""
    body = config.get("config")
    if isinstance(body, list):  # Keras 2.0 wrote the list of layers alone
        body = {"layers": body}
    if not isinstance(body, dict) or not isinstance(body.get("layers"), list):
        raise _keras_graph.GraphError("the model config has no list of layers")
    layers = []
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
            raise _keras_graph.GraphError(f"its model config's {e}") from e
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise _keras_graph.GraphError(f"the Sequential model's name is not a string: "
                                      f"{name!r:.100}")
    return {"name": name, "layers": layers, "build_input_shape": build_shape}


# Input dtypes of a functional model's InputLayer that pylstm takes (integers: token ids).
_INPUT_DTYPES = ("float32", "float64", "int32", "int64")


def _functional_from_keras(body, legacy):
    """A Keras functional model's `config` -> the plan of `_plan_from_keras`."""
    if not isinstance(body, dict):
        raise _keras_graph.GraphError(f"the functional model's config is not a dict: "
                                      f"{body!r:.100}")
    graph = _keras_graph.parse(body, legacy)
    layers = {}
    for name, entry in graph.entries.items():
        class_name = entry.get("class_name")
        if _keras_graph.is_operation(entry):
            raise _Unmappable(f"layer '{name:.100}' ({class_name!s:.100}) is a Keras operation "
                              f"({entry['module']:.100}) called in the graph, which pylstm does "
                              f"not support; use a layer instead")
        kind, spec = plan = _plan_from_keras(entry, legacy)
        # The graph refers to a layer by its entry's name.
        if kind == "Functional":
            spec["name"] = name
        else:
            (spec if kind == "Sequential" else spec["config"])["name"] = name
        if class_name == "InputLayer":
            dtype = entry["config"].get("dtype") or "float32"
            if dtype not in _INPUT_DTYPES:
                raise _Unmappable(f"layer '{name:.100}' (InputLayer): pylstm's inputs are "
                                  f"{', '.join(_INPUT_DTYPES)}, this one is {dtype!r:.100}")
            spec["config"]["dtype"] = dtype
        layers[name] = plan
    name, trainable = body.get("name"), body.get("trainable", True)
    if name is not None and not isinstance(name, str):
        raise _keras_graph.GraphError(f"the functional model's name is not a string: "
                                      f"{name!r:.100}")
    if not isinstance(trainable, bool):
        raise _keras_graph.GraphError(f"the functional model's `trainable` is not a bool: "
                                      f"{trainable!r:.100}")
    return {"name": name, "trainable": trainable, "graph": graph, "layers": layers}


def _build(plan, orders):
    """The pylstm model or layer of a plan of `_plan_from_keras` (weights made by the
    enclosing `deferred_weights`); records in `orders` each functional model's layer names in
    the config's order, by `id` of the model."""
    kind, spec = plan
    if kind == "Sequential":
        return Sequential.from_config(spec)
    if kind == "Layer":
        return deserialize(spec)
    from pylstm.models.functional import Functional

    graph = spec["graph"]
    layers = {name: _build(layer_plan, orders) for name, layer_plan in spec["layers"].items()}
    made = {}  # (layer name, call index) -> the call's output tensors

    def tensor(ref):
        tensors = made[ref[:2]]
        if ref.tensor >= len(tensors):
            raise ValueError(f"the model uses output {ref.tensor} of call {ref.node} of layer "
                             f"'{ref.layer}', which makes {len(tensors)} tensor"
                             f"{'s' * (len(tensors) != 1)}")
        return tensors[ref.tensor]

    for name, call in graph.call_order:
        layer = layers[name]
        if isinstance(layer, InputLayer):
            made[(name, call)] = [layer.output]
            continue
        node = graph.nodes[name][call]
        outputs = layer(*_refs_to(node.args, tensor), **_refs_to(node.kwargs, tensor))
        made[(name, call)] = flatten(outputs)
    model = Functional(_refs_to(graph.inputs, tensor), _refs_to(graph.outputs, tensor),
                       name=spec["name"], trainable=spec["trainable"])
    orders[id(model)] = list(graph.entries)
    return model


def _refs_to(structure, tensor):
    """`structure` (lists, dicts and values) with each `_keras_graph.Ref` replaced by
    `tensor(ref)`."""
    if isinstance(structure, _keras_graph.Ref):
        return tensor(structure)
    if isinstance(structure, list):
        return [_refs_to(item, tensor) for item in structure]
    if isinstance(structure, dict):
        return {key: _refs_to(value, tensor) for key, value in structure.items()}
    return structure


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
            learning_rate = optimizer["config"].get("learning_rate")
            if isinstance(learning_rate, dict):
                optimizer["config"]["learning_rate"] = _schedule_from_keras(learning_rate)
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


def _schedule_from_keras(obj):
    """A Keras learning-rate schedule's dict -> pylstm's `{"class_name", "config"}` (raises
    `_Unmappable` for another object, a user's function among them)."""
    where = "the optimizer's learning rate"
    class_name, config = obj.get("class_name"), obj.get("config")
    # Keras 2's legacy files name no module
    if (obj.get("module") not in ("keras.optimizers.schedules", None)
            or not isinstance(class_name, str) or not isinstance(config, dict)):
        raise _Unmappable(f"{where}: cannot read {obj!r:.100}")
    cls = getattr(optimizers.schedules, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, optimizers.schedules.LearningRateSchedule)
            and cls.__name__ in optimizers.schedules.__all__):
        raise _Unmappable(f"{where}: pylstm has no schedule {class_name!r:.100}")
    return {"class_name": class_name, "config": _keep_supported(cls, config, where)}


def _flat_metrics(metrics):
    if metrics is None:
        return []
    if len(metrics) == 1 and isinstance(metrics[0], list):  # Keras 2: one list per output
        metrics = metrics[0]
    return metrics


def _metric_from_keras(metric):
    """A Keras metric (a name, a serialized metric class, or Keras 2's `MeanMetricWrapper` of
    a named function) -> a metric name or a `pylstm.metrics.Metric` for `compile`; raises for
    one pylstm lacks."""
    if isinstance(metric, dict):
        if metric.get("class_name") == "MeanMetricWrapper":
            config = metric.get("config")
            if not isinstance(config, dict):
                raise _Unmappable("metric: the config of MeanMetricWrapper is not a dict")
            fn, name = config.get("fn"), config.get("name")
            # Logged under its name when that name makes the same metric as the function.
            same = _metric_class(name) is not None and _metric_class(name) is _metric_class(fn)
            metric = name if same else fn
        else:
            return metrics_module.deserialize(
                _object_from_keras(metric, metrics_module, "metric"))
    metrics_module.get(metric)  # raises for an unknown name
    return metric


def _metric_class(name):
    """The class of pylstm's metric called `name`, or None."""
    try:
        return type(metrics_module.get(name)) if isinstance(name, str) else None
    except ValueError:
        return None


# Weights ------------------------------------------------------------------------------------


def _is_model(layer):
    from pylstm.models.functional import Functional

    return isinstance(layer, (Sequential, Functional))


def _keras_layers(model, orders=None):
    """`model`'s layers in the order of the Keras model's `layers`: a Sequential's without its
    InputLayer, a functional model's (InputLayers included) in Keras's order of the graph.

    For a model loaded from a file, `orders` holds the order of its config, in which Keras
    saved the model's layers: Keras counts in its order the operations that compute masks,
    which pylstm's graphs lack (see `_keras_graph`)."""
    if isinstance(model, Sequential):
        return model.layers
    by_name = {layer.name: layer for layer in model.layers}
    names = (orders or {}).get(id(model))
    if names is None:
        names = _keras_order(model.get_config())
    # Operations, and a file's layers that no output uses (a model leaves them out), are not
    # among the model's layers.
    return [by_name[name] for name in names if name in by_name]


def _keras_order(body):
    """The names in Keras's order of the layers of a functional config (edited in place) and
    of the operations computing its masks, which Keras counts in the order (`_write_masks`)."""
    _write_masks(body)
    return _keras_graph.parse(body, legacy=False, drop_mask_operations=False).layer_order()


def _group_names(layers):
    """Keras's group names of `layers` (one model's, in order): the snake_case class name,
    numbered `_1`, `_2`, ... among layers of the same class."""
    from pylstm.models.functional import Functional

    used = {}
    for layer in layers:
        if isinstance(layer, Functional):
            base = "functional"
        elif isinstance(layer, Sequential):
            base = "sequential"
        else:
            base = _entry(serialize(layer))[0]
        count = used.get(base, 0)
        used[base] = count + 1
        yield base if count == 0 else f"{base}_{count}"


def _layer_groups(model, prefix="layers", seen=None, orders=None):
    """Yields `(layer, path of its group, [(group path, number of arrays)])` for each layer
    of `model`, with Keras's paths in a weights file: a nested model (with no arrays of its
    own) and then its layers under `<its group>/layers`; a layer met twice only the first
    time, as Keras."""
    seen = set() if seen is None else seen
    layers = _keras_layers(model, orders)
    for layer, name in zip(layers, list(_group_names(layers))):
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        path = f"{prefix}/{name}"
        if _is_model(layer):
            yield layer, path, []
            yield from _layer_groups(layer, f"{path}/layers", seen, orders)
            continue
        yield layer, path, [(f"{path}/{rel}" if rel else path, n)
                            for rel, n in _weight_groups(serialize(layer))]


def _read_vars(path, f, group_path, layer, shapes):
    """The arrays of the group `group_path/vars` of `f`, of the shapes `shapes` that `layer`
    expects."""
    name = f"{group_path}/vars"
    group = f.get(name)
    if not isinstance(group, _hdf5.Group):
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
    if not isinstance(dataset, _hdf5.Dataset):
        raise _invalid(path, f"'{name}' is not an array")
    try:
        value = dataset.read(shape)
    except _hdf5.ShapeMismatch as e:
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


def _read_weights(path, model, f, orders=None):
    """Loads a Keras 3 weights file (`f`, the root `_hdf5.Group`) into `model` (`orders`: as
    for `_keras_layers`)."""
    try:
        # A model saved before it was built has no weights, in Keras as in pylstm.
        plan = list(_layer_groups(model, orders=orders)) if model.built else []
    except _Unmappable as e:
        raise ValueError(f"Cannot load Keras weights into model '{model.name}': {e}.") from e
    read = set()
    for layer, _, groups in plan:
        if _is_model(layer):  # its layers follow
            continue
        shapes, weights = iter(_weight_shapes(layer)), []
        for group_path, n in groups:
            group_shapes = [shape for _, shape in zip(range(n), shapes)]
            if len(group_shapes) != n:
                raise _invalid(path, f"its weights do not fit layer '{layer.name}'")
            weights += _read_vars(path, f, group_path, layer, group_shapes)
            read.add(f"{group_path}/vars")
        _set_weights(path, layer, weights)
    layers = f.get("layers")
    if isinstance(layers, _hdf5.Group):
        extra = next((name for name in layers.datasets()
                      if f"layers/{name.rsplit('/', 1)[0]}" not in read), None)
        if extra is not None:
            raise _invalid(path, f"it holds weights the model has no layer for (e.g. "
                           f"'layers/{extra}'): it was saved from another architecture")


def _read_legacy_weights(path, model, group, orders=None):
    """Loads legacy HDF5 weights (Keras 2 layout) into `model`: layer by layer in order, as
    Keras does, or by layer name into a functional model that has every layer the file names
    (a model loaded from the file itself)."""
    names = group.names("layer_names")
    if names is None:
        raise _invalid(path, "it has no `layer_names` attribute: not a Keras weights file")
    saved = []
    for name in names:
        layer_group = group.get(name) if name else None
        if not isinstance(layer_group, _hdf5.Group):
            raise _invalid(path, f"it has no group for layer '{name:.100}'")
        weight_names = layer_group.names("weight_names") or []
        if weight_names:
            saved.append((name, layer_group, weight_names))
    layers = [layer for layer in _keras_layers(model, orders) if layer.weights]
    by_name = {layer.name: layer for layer in layers}
    if not isinstance(model, Sequential) and all(name in by_name for name, _, _ in saved):
        layers = [by_name[name] for name, _, _ in saved] + [
            layer for layer in layers if layer.name not in {name for name, _, _ in saved}]
    if len(saved) != len(layers):
        raise _invalid(path, f"it holds weights for {len(saved)} layers "
                       f"({', '.join(n for n, _, _ in saved[:20])}), model '{model.name}' has "
                       f"{len(layers)} layers with weights")
    for layer, (name, layer_group, weight_names) in zip(layers, saved):
        variables = _legacy_variables(layer, orders)
        if len(weight_names) != len(variables):
            raise _invalid(path, f"its weights do not fit layer '{layer.name}': the file holds "
                           f"{len(weight_names)} arrays for it (layer '{name}'), the layer has "
                           f"{len(variables)}")
        arrays = [_array(path, layer_group.get(w) if w else None, f"{name}/{w}", layer, v.shape)
                  for w, v in zip(weight_names, variables)]
        try:
            assign_weights(variables, arrays, f"Layer '{layer.name}'")
        except ValueError as e:
            raise _invalid(path, f"its weights do not fit layer '{layer.name}': {e}") from e


def _legacy_variables(layer, orders=None):
    """`layer`'s variables in the order of a legacy HDF5 file: Keras's `trainable_weights`
    then `non_trainable_weights` (for a nested model, of all its layers in Keras's order)."""
    variables, seen, stack = [], set(), [layer]
    while stack:
        current = stack.pop()
        if _is_model(current):
            stack.extend(reversed(_keras_layers(current, orders)))
            continue
        for var in current.weights:
            if id(var) not in seen:
                seen.add(id(var))
                variables.append(var)
    trainable = {id(v) for v in layer.trainable_variables}
    return ([v for v in variables if id(v) in trainable]
            + [v for v in variables if id(v) not in trainable])


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
    group = f.get("optimizer/vars")
    if not isinstance(group, _hdf5.Group):
        return
    keys = set(group.keys())
    if keys == {str(i) for i in range(len(keys))}:
        _restore_optimizer_state(model, [group.get(str(i)) for i in range(len(keys))])


def _read_legacy_optimizer_state(model, f):
    """Restores `model.optimizer`'s state from a legacy HDF5 file of Keras 3, whose
    `optimizer_weights` holds Keras's `optimizer.variables` in the order of its `weight_names`
    (as `optimizer/vars` of a `.keras` file); leaves the optimizer fresh when they do not
    match it."""
    group = f.get("optimizer_weights")
    names = group.names("weight_names") if isinstance(group, _hdf5.Group) else None
    if names:
        _restore_optimizer_state(model, [group.get(name) if name else None for name in names])


def _restore_optimizer_state(model, datasets):
    """Restores `model.optimizer`'s state from the datasets of Keras's `optimizer.variables`
    (iterations, learning rate, slots, scalars), unless they do not match the optimizer."""
    optimizer = model.optimizer
    if optimizer is None or type(optimizer).__name__ not in _OPTIMIZER_SLOTS:
        return
    variables = model.trainable_variables
    order = _slot_order(optimizer, variables)
    head = _optimizer_head(optimizer)
    scalars = _OPTIMIZER_SCALARS.get(type(optimizer).__name__, ())
    if len(datasets) == head:  # saved before Keras built the optimizer
        order, scalars = [], ()
    elif len(datasets) != head + len(order) + len(scalars):
        return
    if not all(isinstance(d, _hdf5.Dataset) for d in datasets) or datasets[0].shape != ():
        return
    slots = {var: {} for var in variables}
    for dataset, (var, slot) in zip(datasets[head:], order):
        if dataset.shape != tuple(var.shape):
            return
        slots[var][slot] = np.asarray(dataset.read(var.shape), dtype=var.dtype)
    values = [d.read((), kinds="iuf") if d.shape == () else None
              for d in datasets[head + len(order):]]
    if not all(v is not None and np.isfinite(v) for v in values):
        return
    iterations = datasets[0].read((), kinds="iuf")
    if not (np.isfinite(iterations) and iterations >= 0 and iterations == int(iterations)):
        return
    optimizer._iterations = int(iterations)
    if order:
        optimizer._slots = slots
    for name, value in zip(scalars, values):
        setattr(optimizer, name, float(value))


def _optimizer_head(optimizer):
    """The count of datasets before the slots: the iterations, and the learning rate unless a
    schedule or callable gives it (Keras then keeps no variable for it)."""
    return 1 if callable(optimizer._learning_rate) else 2


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
            arrays = iter(layer.get_weights() if groups else ())
            for group_path, n in groups if model.built else ():
                group = f.require_group(f"{group_path}/vars")
                for i in range(n):
                    group.create_dataset(str(i), data=next(arrays))
        if with_optimizer:
            optimizer = model.optimizer
            group = f.create_group("optimizer/vars")
            group.attrs["name"] = type(optimizer).__name__.lower()
            group.create_dataset("0", data=np.int64(optimizer._iterations))
            head = _optimizer_head(optimizer)
            if head == 2:
                group.create_dataset("1", data=np.float32(optimizer.learning_rate))
            order = _slot_order(optimizer, model.trainable_variables)
            for i, (var, slot) in enumerate(order, start=head):
                value = optimizer._slots.get(var, {}).get(slot)
                group.create_dataset(str(i), data=(optimizer._initial_slot(slot, var.value)
                                                   if value is None else value))
            for i, name in enumerate(_OPTIMIZER_SCALARS.get(type(optimizer).__name__, ()),
                                     start=head + len(order)):
                group.create_dataset(str(i), data=np.float32(getattr(optimizer, name)))


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
    optimizer_config = optimizers.serialize(optimizer)
    learning_rate = optimizer_config["config"]["learning_rate"]
    if isinstance(learning_rate, dict):
        optimizer_config["config"]["learning_rate"] = _keras_object(
            "keras.optimizers.schedules", learning_rate)
    elif callable(learning_rate):
        return None  # a user's function
    try:
        if loss is not None:
            _check_builtin(losses, losses.serialize(loss), "loss")
    except (_Unmappable, AttributeError):  # a user's loss object
        return None
    names = []
    for name, metric in model._metrics:
        if metrics_module.made_from_name(name, metric):
            names.append(name)
        elif type(metric) in metrics_module._CLASSES and type(
                metric) is not metrics_module.MeanMetricWrapper:
            config = metrics_module.serialize(metric)
            config["config"]["dtype"] = "float32"
            names.append(_keras_object("keras.metrics", config))
        else:
            return None  # a user's metric
    return {
        "optimizer": _keras_object("keras.optimizers", optimizer_config),
        "loss": None if loss is None else _keras_object("keras.losses", losses.serialize(loss)),
        "loss_weights": None,
        "metrics": names or None,
        "weighted_metrics": None,
        "run_eagerly": False,
        "steps_per_execution": 1,
        "jit_compile": "auto",
    }


def _model_to_keras(model):
    """Keras's config.json dict for a pylstm `Sequential` or functional `Model`."""
    try:
        config = (_sequential_to_keras(model) if isinstance(model, Sequential)
                  else _functional_to_keras(model))
    except _Unmappable as e:
        raise ValueError(f"Cannot write model '{model.name}' in the Keras format: {e}.") from None
    compile_config = _compile_to_keras(model) if _one_loss(model) else None
    if compile_config is not None:
        config["compile_config"] = compile_config
    return config


def _one_loss(model):
    """Whether `model` is compiled with one loss and a flat list of metrics (Keras 3's
    compile_config of a model with several losses is not written)."""
    return not isinstance(model.loss, (list, dict)) and all(
        isinstance(m, tuple) and len(m) == 2 for m in model._metrics)


def _sequential_to_keras(model):
    """Keras's serialized Sequential (without compile_config) for a pylstm `Sequential`."""
    layers = []
    shape = model._build_input_shape if model.built else None
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
    config = {"module": "keras", "class_name": "Sequential",
              "config": {"name": model.name, "trainable": True, "dtype": _policy(model.dtype),
                         "layers": layers,
                         "build_input_shape": list(shape) if shape is not None else None},
              "registered_name": None}
    if shape is not None:
        config["build_config"] = {"input_shape": list(shape)}
    return config


def _functional_to_keras(model):
    """Keras's serialized functional model (without compile_config) for a pylstm functional
    `Model`: its layers with their calls (`inbound_nodes`) as `model.get_config()` gives them,
    nested models serialized the same way, the operations computing its masks as Keras writes
    them (`_write_masks`), all in Keras's order."""
    config = model.get_config()
    layers = []
    for layer, entry in zip(model.layers, config["layers"]):
        if isinstance(layer, Sequential):
            keras = _sequential_to_keras(layer)
        elif _is_model(layer):
            keras = _functional_to_keras(layer)
        elif isinstance(layer, InputLayer):
            keras = _layer_to_keras({"class_name": "InputLayer", "config": {
                "shape": list(layer.shape), "batch_size": layer.batch_size,
                "dtype": layer.dtype, "name": layer.name}})
        else:
            keras = _layer_to_keras(serialize(layer))
        keras["name"] = entry["name"]
        keras["inbound_nodes"] = entry["inbound_nodes"]
        layers.append(keras)
    body = {"name": model.name, "trainable": model.trainable, "layers": layers,
            "input_layers": config["input_layers"], "output_layers": config["output_layers"]}
    position = {name: i for i, name in enumerate(_keras_order(body))}
    body["layers"].sort(key=lambda entry: position.get(entry["name"], -1))
    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "config": body, "registered_name": "Functional", "build_config": {"input_shape": None}}


# Keras layers whose call Keras gives the mask of its one tensor argument (and records it in
# `inbound_nodes`), and those whose output keeps their input's mask.
_MASK_TAKING = ("LSTM", "RNN", "Bidirectional", "TimeDistributed", "GlobalAveragePooling1D",
                "BatchNormalization", "Sequential", "Functional")
_MASK_KEEPING = ("Dense", "Dropout", "Activation", "TimeDistributed", "BatchNormalization",
                 "LayerNormalization", "SpatialDropout1D", "Attention", "AdditiveAttention")
_MASK_MERGING = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")


def _write_masks(body):
    """Adds to a functional config (Keras's `config`, or pylstm's, whose layer configs have
    Keras's keys; edited in place) the masks Keras propagates, as Keras writes them:
    operations computing each mask
    (`not_equal` for an Embedding's `mask_zero`, ...) and the `mask` argument of each call
    that takes one.

    Keras's loader rebuilds the graph of the file, so with the masks written out it keeps
    them (the mask operations its layers make while loading stay outside the graph); left
    out, Keras would add its own, which move layers in its order of the graph (by which it
    addresses their weights) and may take a layer's name (`concatenate`).
    """
    entries = {entry["name"]: entry for entry in body["layers"]}
    used = set(entries)
    masks = {}  # (layer name, call, output index) -> the mask's tensor config, if any

    def operation(class_name, snake, config, args):
        name, count = snake, 0
        while name in used:
            count += 1
            name = f"{snake}_{count}"
        used.add(name)
        body["layers"].append({
            "module": "keras.src.ops.numpy", "class_name": class_name,
            "config": {"name": name, **config}, "registered_name": class_name, "name": name,
            "inbound_nodes": [{"args": args, "kwargs": {}}]})
        return name

    def tensor(name, shape):
        return {"class_name": "__keras_tensor__",
                "config": {"shape": list(shape), "dtype": "bool", "keras_history": [name, 0, 0]}}

    def mask_of(value):
        if isinstance(value, list):
            return [mask_of(v) for v in value]
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            return masks.get(tuple(value["config"]["keras_history"]))
        return None

    def not_equal(x, value):
        return tensor(operation("NotEqual", "not_equal", {}, [x, value]), x["config"]["shape"])

    def any_last(x):
        return tensor(operation("Any", "any", {"axis": -1, "keepdims": False}, [x]),
                      x["config"]["shape"][:-1])

    def logical_or(a, b):
        shape = max(a["config"]["shape"], b["config"]["shape"], key=len)
        return tensor(operation("LogicalOr", "logical_or", {}, [a, b]), shape)

    def concatenated(inputs, input_masks, axis):
        # Keras's Concatenate.compute_mask: each input's mask (all True for one without),
        # broadcast to the input's shape, concatenated, then any over the last axis.
        parts = []
        for x, m in zip(inputs, input_masks):
            shape = x["config"]["shape"]
            if m is None:
                parts.append(tensor(operation("OnesLike", "ones_like", {"dtype": "bool"}, [x]),
                                    shape))
            elif len(m["config"]["shape"]) < len(shape):
                expanded = tensor(operation("ExpandDims", "expand_dims", {"axis": -1}, [m]),
                                  m["config"]["shape"] + [1])
                zeros = tensor(operation("ZerosLike", "zeros_like", {"dtype": "bool"}, [x]),
                               shape)
                parts.append(logical_or(expanded, zeros))
            else:
                parts.append(m)
        shape = list(parts[0]["config"]["shape"])
        shape[axis] = None
        joined = tensor(operation("Concatenate", "concatenate", {"axis": axis}, [parts]), shape)
        return any_last(joined)

    graph = _keras_graph.parse(body, legacy=False, drop_mask_operations=False)
    for name, call in graph.call_order:
        entry = entries[name]
        if entry["class_name"] == "InputLayer":
            continue
        node = entry["inbound_nodes"][call]
        first = node["args"][0]
        in_mask = mask_of(first)
        config = entry["config"]
        class_name = entry["class_name"]
        with_tensors = [v for v in list(node["args"]) + list(node["kwargs"].values())
                        if list(_keras_graph.leaves(_tensor_refs(v)))]
        if (class_name in _MASK_TAKING and len(with_tensors) == 1
                and any(m is not None for m in _flat_list(in_mask))):
            node["kwargs"]["mask"] = in_mask
        outputs = []
        if class_name == "Embedding" and config.get("mask_zero"):
            outputs = [not_equal(first, 0)]
        elif class_name == "Masking":
            outputs = [any_last(not_equal(first, config.get("mask_value", 0.0)))]
        elif isinstance(in_mask, list) and class_name in ("Attention", "AdditiveAttention"):
            outputs = [in_mask[0]]
        elif class_name in _MASK_KEEPING:
            outputs = [in_mask]
        elif class_name in ("LSTM", "RNN", "Bidirectional") and (
                config if class_name != "Bidirectional" else config["layer"]["config"]).get(
                "return_sequences"):
            sequence_mask = _flat_list(in_mask)[0]
            both = class_name == "Bidirectional" and config.get("merge_mode") is None
            outputs = [sequence_mask] * (2 if both else 1)
        elif class_name in _MASK_MERGING and isinstance(in_mask, list) and in_mask and all(
                m is not None for m in in_mask):
            merged = in_mask[0]
            for m in in_mask[1:]:
                merged = logical_or(merged, m)
            outputs = [merged]
        elif class_name == "Concatenate" and isinstance(in_mask, list) and any(
                m is not None for m in in_mask):
            outputs = [concatenated(first, in_mask, config.get("axis", -1))]
        for i, m in enumerate(outputs):
            if m is not None and not isinstance(m, list):
                masks[(name, call, i)] = m


def _tensor_refs(value):
    """A call argument with its `__keras_tensor__` configs as `_keras_graph.Ref`s."""
    if isinstance(value, list):
        return [_tensor_refs(v) for v in value]
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return _keras_graph.Ref(*value["config"]["keras_history"])
        return {k: _tensor_refs(v) for k, v in value.items()}
    return value


def _flat_list(value):
    return [m for v in value for m in _flat_list(v)] if isinstance(value, list) else [value]
