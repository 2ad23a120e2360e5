"""State dict files: `.safetensors` (through the `safetensors` package's NumPy API) and `.pt` /
`.pth` files of `torch.save(module.state_dict(), path)` (through torch). Both packages are
optional and imported only when such a file is read or written."""

import os

import numpy as np

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

    Args:
        path: str or `os.PathLike`; a `.safetensors` file, or a `.pt` / `.pth` file written by
            `torch.save(module.state_dict(), path)` (read with
            `torch.load(path, map_location="cpu", weights_only=True)`, which loads tensors and
            containers only, never arbitrary pickled code).

    Returns:
        dict `{name: np.ndarray}`, the arrays in the file's dtypes.

    Raises:
        ValueError: an unknown extension, or a `.pt` file that does not hold a mapping.
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
    path, kind = _kind(path, "path")
    if not os.path.exists(path):
        raise FileNotFoundError(f"No state dict file at {path!r}.")
    if kind == "safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError as exc:
            raise ImportError(_SAFETENSORS_HINT) from exc
        return dict(load_file(path))
    try:
        import torch
    except ImportError as exc:
        raise ImportError(_TORCH_HINT) from exc
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    if not hasattr(loaded, "items"):
        raise ValueError(f"The file {path!r} holds a {type(loaded).__name__}, not a state dict "
                         f"(save it with torch.save(module.state_dict(), path)).")
    return {str(k): to_numpy(v) for k, v in loaded.items()}


def save_state_dict_file(state_dict, path):
    """Writes `{name: array}` to a `.safetensors` file or a `.pt` / `.pth` file that
    `torch.load(path, weights_only=True)` and `torch.nn.LSTM.load_state_dict` accept.

    Args:
        state_dict: mapping of str names to arrays (NumPy arrays or torch tensors).
        path: str or `os.PathLike` ending in `.safetensors`, `.pt` or `.pth`.

    Raises:
        ValueError: an unknown extension.
        ImportError: `safetensors` or `torch` not installed, for its format.
    """
    path, kind = _kind(path, "path")
    arrays = {str(k): np.ascontiguousarray(to_numpy(v)) for k, v in state_dict.items()}
    if kind == "safetensors":
        try:
            from safetensors.numpy import save_file
        except ImportError as exc:
            raise ImportError(_SAFETENSORS_HINT) from exc
        save_file(arrays, path)
        return
    try:
        import torch
    except ImportError as exc:
        raise ImportError(_TORCH_HINT) from exc
    torch.save({k: torch.from_numpy(v.copy()) for k, v in arrays.items()}, path)
