"""One-file model saving without pickle.

Format: a zip archive written by `np.savez` holding `config.json` (UTF-8 JSON stored as a
`uint8` array) and the weights as `weight_0000`, `weight_0001`, ... in `model.get_weights()`
order. `config.json` is `{"format": "pylstm", "format_version": 1, "model": model.get_config(),
"compile_config": {"optimizer", "loss", "metrics"} or null}`. Loading uses
`np.load(allow_pickle=False)` and `json`, so opening a file cannot run code. Optimizer state
(momentums) is not saved: a reloaded model is compiled afresh.

Paths ending in `.keras` (and, for loading, `.h5` / `.hdf5`) use Keras's formats instead,
through `pylstm.models.keras_io`.
"""

import contextlib
import json
import os
import secrets
import zipfile

import numpy as np

from pylstm import losses, optimizers

FORMAT = "pylstm"
FORMAT_VERSION = 1


def save_model(model, path):
    """Writes `model` to `path` atomically (a temporary file in the same directory, then
    `os.replace`), so an interrupted save never leaves a half-written file at `path`.

    A path ending in `.keras` gets the Keras 3 format (`pylstm.models.save_keras`), which
    Keras's `keras.models.load_model` reads; any other path gets pylstm's own format.

    Args:
        model: a `Sequential`.
        path: str or path-like; used as given (no extension is appended).

    Raises:
        ValueError: if the compile config holds objects that cannot be serialized, or (for
            `.keras`) the model holds something Keras lacks.
    """
    if os.fspath(path).endswith(".keras"):
        from pylstm.models.keras_io import save_keras

        save_keras(model, path)
        return
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": model.get_config(),
              "compile_config": _serialize_compile_config(model)}
    arrays = {"config.json": np.frombuffer(json.dumps(config).encode("utf-8"), dtype=np.uint8)}
    for i, w in enumerate(model.get_weights()):
        arrays[f"weight_{i:04d}"] = w
    atomic_write(path, lambda f: np.savez(f, **arrays))


def atomic_write(path, write):
    """Calls `write(f)` on a fresh binary file beside `path`, then moves it onto `path`, so an
    interrupted save never leaves a half-written file at `path`.

    Args:
        path: str or path-like.
        write: callable taking a writable binary file object.
    """
    path = os.fspath(path)
    # A fresh name opened with "xb" gets the usual umask permissions (mkstemp's are 0600).
    tmp = os.path.join(os.path.dirname(os.path.abspath(path)),
                       f".pylstm-{os.getpid()}-{secrets.token_hex(8)}.tmp")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _serialize_compile_config(model):
    if model.optimizer is None:
        return None
    for name, fn in model._metrics:
        if not isinstance(name, str) or fn is not _builtin_metric(name):
            raise ValueError(f"Cannot save the custom metric {name!r}: only built-in metric "
                             "names can be saved.")
    return {"optimizer": optimizers.serialize(model.optimizer),
            "loss": None if model.loss is None else losses.serialize(model.loss),
            "metrics": [name for name, _ in model._metrics]}


def _builtin_metric(name):
    from pylstm import metrics

    try:
        return metrics.get(name)
    except ValueError:
        return None


def load_model(path):
    """Loads a model written by `Sequential.save` / `save_model`, compiled if it was.

    A path ending in `.keras`, `.h5` or `.hdf5` is read as a Keras file
    (`pylstm.models.load_keras`); any other as pylstm's own format.

    Args:
        path: str or path-like.

    Returns:
        A `Sequential` with the saved architecture and weights.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if `path` is not a valid pylstm model file (the message says why), or
            names a layer class that is not defined.
    """
    from pylstm.models.sequential import Sequential

    path = os.fspath(path)
    if path.endswith((".keras", ".h5", ".hdf5")):
        from pylstm.models.keras_io import load_keras

        return load_keras(path)

    def invalid(why):
        return ValueError(f"{path!r} is not a valid pylstm model file: {why.rstrip('.')}.")

    try:
        archive = np.load(path, allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError):
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError,
            RuntimeError) as e:
        raise invalid(f"it cannot be read as a NumPy zip archive ({e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise invalid("it holds a single NumPy array, not a zip archive")
    with archive:
        if "config.json" not in archive.files:
            raise invalid("it has no config.json entry")
        try:
            config = json.loads(archive["config.json"].tobytes().decode("utf-8"))
            names = sorted(n for n in archive.files if n.startswith("weight_"))
            weights = [archive[n] for n in names]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError,
                RuntimeError) as e:
            raise invalid(f"its contents are damaged ({type(e).__name__}: {e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise invalid("config.json does not declare the pylstm format")
    if config.get("format_version") != FORMAT_VERSION:
        raise invalid(f"unsupported format_version {config.get('format_version')!r}")
    try:
        model = Sequential.from_config(config["model"])
    except (KeyError, TypeError) as e:
        raise invalid(f"its model config is malformed ({type(e).__name__}: {e})") from None
    for name, w in zip(names, weights):
        if w.dtype.kind != "f" or not np.isfinite(w).all():
            raise invalid(f"weight array {name} is not finite floating-point data")
    if weights and not model.built:
        raise invalid("it holds weights but no input shape to build the model with")
    try:
        model.set_weights(weights)
    except ValueError as e:
        raise invalid(str(e)) from None
    compile_config = config.get("compile_config")
    if compile_config is not None:
        model.compile(**compile_config)
    return model
