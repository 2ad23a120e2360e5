"""State dict files: `.safetensors` (through the `safetensors` package's NumPy API) and `.pt` /
`.pth` files of `torch.save(module.state_dict(), path)` (through torch). Both packages are
optional and imported only when such a file is read or written."""

import collections.abc
import contextlib
import os
import pickle
import zipfile

import numpy as np

from pylstm._atomic_write import atomic_write, check_destination
from pylstm._validation import native

_SAFETENSORS_HINT = ("reading or writing .safetensors files needs the `safetensors` package: "
                     "pip install 'pylstm[safetensors]' (or pip install safetensors)")
_TORCH_HINT = ("reading or writing .pt / .pth files needs PyTorch: pip install torch (or save the "
               "state_dict as .safetensors, which needs only the `safetensors` package)")


def to_numpy(value):
    """`value` as a NumPy array; a torch tensor through `.detach().cpu().numpy()`, without
    importing torch (a module whose type comes from torch is recognised by its module name)."""
    if type(value).__module__.split(".")[0] == "torch" and hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _kind(path, name):
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"Argument `{name}` must be a str or os.PathLike file path, received "
                        f"{type(path).__name__}.") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".safetensors":
        return path, "safetensors"
    if ext in (".pt", ".pth"):
        return path, "torch"
    raise ValueError(f"Argument `{name}` must end in .safetensors, .pt or .pth, received "
                     f"{path!r}.")


def load_state_dict_file(path):
    """Reads a state dict file into `{name: np.ndarray}`.

    The file is treated as untrusted: whatever damage it has, reading it ends in a dict or in
    a ValueError or TypeError naming the file.

    Args:
        path: str or `os.PathLike`; a `.safetensors` file, or a `.pt` / `.pth` file written by
            `torch.save(module.state_dict(), path)` (read with
            `torch.load(path, map_location="cpu", weights_only=True)`, which loads tensors and
            containers only, never arbitrary pickled code).

    Returns:
        dict `{name: np.ndarray}`, the arrays in the file's dtypes.

    Raises:
        ValueError: an unknown extension, or a file that cannot be read as its format (damaged,
            truncated, not a mapping of names to tensors), chained to the reader's error.
        TypeError: a tensor of a dtype NumPy has no type for (bfloat16, float8).
        ImportError: `safetensors` (for `.safetensors`) or `torch` (for `.pt`) not installed.
        FileNotFoundError: no such file.

    Example:

    >>> import os, tempfile
    >>> from pylstm.nn import LSTM, load_state_dict_file
    >>> lstm = LSTM(2, 3, seed=0)
    >>> path = os.path.join(tempfile.mkdtemp(), "lstm.safetensors")
    >>> lstm.save_state_dict(path)
    >>> sorted(load_state_dict_file(path))
    ['bias_hh_l0', 'bias_ih_l0', 'weight_hh_l0', 'weight_ih_l0']
    """
    return read_state_dict_file(path)[0]


def read_state_dict_file(path, shapes=None):
    """`load_state_dict_file`, reading only the tensors a module wants.

    Args:
        path: as for `load_state_dict_file`.
        shapes: None (read every tensor), or `{name: shape}`: then only these names are read,
            each only after its dtype is checked to be float16/32/64 and its shape to be
            `shapes[name]`, so that a file's other or oversized tensors cost nothing.

    Returns:
        `(arrays, other_names)`: `{name: np.ndarray}` and the list of the file's names not in
        `shapes` (empty when `shapes` is None).

    Raises:
        ValueError: as `load_state_dict_file`; with `shapes`, a wanted tensor of another shape.
        TypeError: a wanted tensor that is not float16/32/64, or one NumPy cannot hold.
    """
    path, kind = _kind(path, "path")
    if not os.path.exists(path):
        raise FileNotFoundError(f"No state dict file at {path!r}.")
    if kind == "safetensors":
        return _read_safetensors(path, shapes)
    return _read_torch(path, shapes)


_FLOAT_NAMES = ("float16", "float32", "float64")


@contextlib.contextmanager
def _reading(path, kind):
    """Turns whatever a third-party reader raises on a damaged file (torch's
    `UnpicklingError`, `EOFError`, `RuntimeError`; safetensors' `SafetensorError`, ...) into a
    ValueError naming the file."""
    try:
        yield
    except (FileNotFoundError, PermissionError, IsADirectoryError, MemoryError):
        raise
    except pickle.UnpicklingError as e:
        # torch's own message suggests weights_only=False, which would run the file's code.
        raise ValueError(f"{path!r} is not a valid {kind} file: it is damaged or holds objects "
                         "other than tensors and containers (pylstm reads it with "
                         "weights_only=True, which never runs code from the file).") from e
    except Exception as e:  # untrusted input reaches many layers of another library
        reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise ValueError(f"{path!r} is not a valid {kind} file: {type(e).__name__}"
                         f"{': ' + reason if reason else ''}.") from e


def _check_entry(path, name, dtype_name, shape, shapes):
    """Raises if the wanted tensor `name` (of `dtype_name`, a NumPy dtype name where NumPy has
    one, and `shape`) cannot load into a parameter of shape `shapes[name]`."""
    if dtype_name not in _FLOAT_NAMES:
        raise TypeError(f"Tensor {name!r} of {path!r} has dtype {dtype_name}, not float16, "
                        "float32 or float64 (convert it, e.g. with tensor.float(), before "
                        "saving).")
    if shape != tuple(shapes[name]):
        raise ValueError(f"Tensor {name!r} of {path!r} has shape {shape}, the parameter "
                         f"expects shape {tuple(shapes[name])}.")


# safetensors' dtype names NumPy has a type for.
_SAFETENSORS_DTYPES = {"F16": "float16", "F32": "float32", "F64": "float64", "I8": "int8",
                       "I16": "int16", "I32": "int32", "I64": "int64", "U8": "uint8",
                       "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool"}


def _read_safetensors(path, shapes):
    try:
        from safetensors import safe_open
    except ImportError as exc:
        raise ImportError(_SAFETENSORS_HINT) from exc
    with contextlib.ExitStack() as stack:   # the handle maps the file until it is closed
        with _reading(path, "safetensors"):
            handle = stack.enter_context(safe_open(path, framework="np"))
            entries = {}
            for name in handle.keys():
                tensor = handle.get_slice(name)
                entries[name] = (tensor.get_dtype(), tuple(tensor.get_shape()))
        wanted = list(entries) if shapes is None else [n for n in entries if n in shapes]
        for name in wanted:
            dtype, shape = entries[name]
            if shapes is not None:
                _check_entry(path, name, _SAFETENSORS_DTYPES.get(dtype, dtype), shape, shapes)
            elif dtype not in _SAFETENSORS_DTYPES:
                raise TypeError(f"Tensor {name!r} of {path!r} has dtype {dtype}, which NumPy "
                                "has no type for (convert it, e.g. with tensor.float(), before "
                                "saving).")
        with _reading(path, "safetensors"):
            arrays = {name: handle.get_tensor(name) for name in wanted}
    return arrays, [n for n in entries if shapes is not None and n not in shapes]


def _read_torch(path, shapes):
    try:
        import torch
    except ImportError as exc:
        raise ImportError(_TORCH_HINT) from exc
    with _reading(path, "PyTorch state dict"):
        is_zip = zipfile.is_zipfile(path)   # raises BadZipFile on some damaged archives
    if is_zip:
        _check_zip_checksums(path)
    with _reading(path, "PyTorch state dict"):
        # weights_only: tensors and containers only, never arbitrary pickled code. mmap, when
        # loading into a module (which copies what it wants) from torch.save's zip format
        # (the legacy format cannot): the tensors it does not want take no memory.
        loaded = torch.load(path, map_location="cpu", weights_only=True,
                            mmap=shapes is not None and is_zip)
    if not isinstance(loaded, collections.abc.Mapping):
        raise ValueError(f"{path!r} is not a valid PyTorch state dict file: it holds a "
                         f"{type(loaded).__name__}, not a state dict (save it with "
                         "torch.save(module.state_dict(), path)).")
    entries = {str(k): v for k, v in loaded.items()}
    arrays = {}
    for name, value in entries.items():
        if shapes is not None and name not in shapes:
            continue
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"Entry {name!r} of {path!r} is a {type(value).__name__}, not a "
                            "tensor.")
        dtype_name = str(value.dtype).removeprefix("torch.")
        if shapes is not None:
            _check_entry(path, name, dtype_name, tuple(value.shape), shapes)
        try:
            arrays[name] = to_numpy(value)
        except (TypeError, RuntimeError, NotImplementedError) as e:
            # bfloat16 and float8 (NumPy has no such type), sparse or meta tensors
            raise TypeError(f"Tensor {name!r} of {path!r} ({dtype_name}, {value.layout}, on "
                            f"{value.device}) cannot become a NumPy array: "
                            f"{str(e).strip()[:200]} (save a dense float tensor, e.g. "
                            "tensor.to_dense().float()).") from e
    return arrays, [n for n in entries if shapes is not None and n not in shapes]


def _check_zip_checksums(path):
    """Raises a ValueError naming the file if a member of `torch.save`'s zip archive is damaged:
    torch does not check the CRCs, so a flipped byte in a tensor would load silently.
    torch.save stores its members uncompressed; a compressed member is refused rather than
    inflated, so checking costs one read of the file."""
    with _reading(path, "PyTorch state dict"), zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        packed = [m.filename for m in members
                  if m.compress_type != zipfile.ZIP_STORED or m.flag_bits & 0x1]
        damaged = None if packed else archive.testzip()
    if packed:
        raise ValueError(f"{path!r} is not a valid PyTorch state dict file: member "
                         f"{packed[0]!r} is compressed or encrypted, torch.save stores its "
                         "members as they are.")
    if damaged is not None:
        raise ValueError(f"{path!r} is not a valid PyTorch state dict file: member "
                         f"{damaged!r} fails its CRC check (the file is damaged).")


def save_state_dict_file(state_dict, path):
    """Writes `{name: array}` to a `.safetensors` file or a `.pt` / `.pth` file that
    `torch.load(path, weights_only=True)` and `torch.nn.LSTM.load_state_dict` accept,
    atomically (`pylstm._atomic_write.atomic_write`): an interrupted save never leaves a
    half-written file at `path`.

    Args:
        state_dict: mapping of str names to arrays (NumPy arrays or torch tensors).
        path: str or `os.PathLike` ending in `.safetensors`, `.pt` or `.pth`.

    Raises:
        ValueError: an unknown extension.
        TypeError: `path` is not a str or `os.PathLike`.
        ImportError: `safetensors` or `torch` not installed, for its format.

    Example:

    >>> import os, tempfile
    >>> from pylstm.nn import LSTM
    >>> path = os.path.join(tempfile.mkdtemp(), "lstm.safetensors")
    >>> save_state_dict_file(LSTM(2, 3, seed=0).state_dict(), path)
    >>> load_state_dict_file(path)["weight_ih_l0"].shape  # torch's (4 * hidden, input)
    (12, 2)
    """
    path, kind = _kind(path, "path")
    check_destination(path)
    # both formats store native (little-endian) values: another byte order is converted
    arrays = {str(k): np.ascontiguousarray(native(to_numpy(v))) for k, v in state_dict.items()}
    if kind == "safetensors":
        try:
            from safetensors.numpy import save
        except ImportError as exc:
            raise ImportError(_SAFETENSORS_HINT) from exc
        data = save(arrays)
        atomic_write(path, lambda f: f.write(data))
        return
    try:
        import torch
    except ImportError as exc:
        raise ImportError(_TORCH_HINT) from exc
    tensors = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
    atomic_write(path, lambda f: torch.save(tensors, f))
