"""What every `pylstm.nn` module shares, as PyTorch's `torch.nn.Module` does for its modules:
the parameter dict in PyTorch's names and order, `named_parameters` / `parameters` /
`zero_grad`, `train` / `eval`, and the state dict (`state_dict`, `load_state_dict`,
`save_state_dict`); plus the argument checks and the parameter storage of `pylstm.nn.LSTM` and
`pylstm.nn.LSTMCell`.

Each 2-D parameter is stored as its C-contiguous transpose (the Keras layout of `pylstm.ops`)
and exposed as the transposed view (`Variable.value`, PyTorch's shape), so the streaming
steppers read the very memory that optimizers update in place.
"""

import collections
import os

import numpy as np

from pylstm._validation import as_float_array
from pylstm.nn.state_dict import read_state_dict_file, save_state_dict_file, to_numpy
from pylstm.variable import Variable

IncompatibleKeys = collections.namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])
IncompatibleKeys.__doc__ = """What `load_state_dict(..., strict=False)` did not match (as
PyTorch's `_IncompatibleKeys`): `missing_keys`, the model's parameters absent from the dict,
and `unexpected_keys`, the dict's keys that are not parameters; both lists of str.

Example:

>>> import numpy as np
>>> from pylstm.nn import LSTM
>>> lstm = LSTM(2, 3, seed=0)
>>> state = lstm.state_dict()
>>> state["extra"] = state.pop("bias_hh_l0")
>>> lstm.load_state_dict(state, strict=False)
IncompatibleKeys(missing_keys=['bias_hh_l0'], unexpected_keys=['extra'])
"""


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"Argument `{name}` must be an int >= {minimum}, received {value!r}.")
    return int(value)


def _check_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.type not in (np.float32, np.float64):
        raise ValueError(f"Argument `dtype` must be 'float32' or 'float64', received "
                         f"{dtype!r}.")
    return dt.name


def _parameter(name, value):
    """A `Variable` for a PyTorch-layout parameter; a 2-D one lives in its C-contiguous
    transpose (the Keras layout the kernels read) and is exposed as the transposed view."""
    if value.ndim == 2:
        value = np.ascontiguousarray(value.T).T
    return Variable(name, value)


def _keras_storage(var):
    """The C-contiguous Keras-layout array behind a 2-D parameter (`var.value.T`). If
    `var.value` was rebound to an array that is not such a view (or not in native byte order),
    it is moved into a new storage and rebound to its view, so that a stepper built on the
    storage keeps seeing in-place updates."""
    storage = var.value.T
    if not (storage.flags.c_contiguous and storage.flags.writeable and storage.dtype.isnative):
        storage = np.array(storage, dtype=storage.dtype.newbyteorder("="), order="C")
        var.value = storage.T
    return storage


def _hx_arrays(hx):
    """`(k, array)` for `h_0` (k = 0) and `c_0` (k = 1) of a call's `hx` pair, each made a
    float array when its turn comes (so that a caller checks one's shape before the next).

    Raises:
        TypeError: `hx` is not a pair, or an item is not a real floating array.
    """
    if not isinstance(hx, (tuple, list)) or len(hx) != 2:
        raise TypeError(f"Argument `hx` must be a pair (h_0, c_0) or None, received "
                        f"{type(hx).__name__}.")
    for k, value in enumerate(hx):
        yield k, as_float_array(to_numpy(value), f"hx[{k}]")


def _as_batch(x, name, input_size):
    """`x`, an `(N, H_in)` or unbatched `(H_in,)` array, as `(x2d (N, H_in), unbatched, N)`.

    Raises:
        ValueError: `x` of another rank or feature size, or holding no sample.
    """
    if x.ndim not in (1, 2) or x.shape[-1] != input_size:
        raise ValueError(f"Argument `{name}` must have shape (batch, {input_size}) or unbatched "
                         f"({input_size},) (input_size {input_size}), received shape "
                         f"{x.shape}.")
    unbatched = x.ndim == 1
    if unbatched:
        x = x[None]
    if x.shape[0] == 0:
        raise ValueError(f"Argument `{name}` must hold at least one sample, received shape "
                         f"{x.shape}.")
    return x, unbatched, x.shape[0]


def _load_parameters(owner, params, state_dict, strict):
    """`load_state_dict` of `pylstm.nn` modules: validates `state_dict` against `params`
    (`{name: Variable}`) and copies it into the parameters in place."""
    unexpected, source = [], ""
    if isinstance(state_dict, (str, bytes)) or hasattr(state_dict, "__fspath__"):
        source = f" from {os.fsdecode(os.fspath(state_dict))!r}"
        # Only the parameters' tensors are read, each after its dtype and shape are checked.
        state_dict, unexpected = read_state_dict_file(
            state_dict, {name: var.shape for name, var in params.items()})
    if not isinstance(state_dict, collections.abc.Mapping):
        raise TypeError(f"Argument `state_dict` must be a mapping of names to arrays or a "
                        f"file path, received {type(state_dict).__name__}.")
    missing = [name for name in params if name not in state_dict]
    unexpected += [str(key) for key in state_dict if key not in params]
    if strict and (missing or unexpected):
        raise ValueError(f"Error loading the state_dict{source} into {owner!r}: missing keys "
                         f"{missing}, unexpected keys {unexpected}.")
    arrays, bad_shapes = {}, []
    for name, var in params.items():
        if name not in state_dict:
            continue
        arr = as_float_array(to_numpy(state_dict[name]), f"state_dict[{name!r}]")
        if arr.shape != var.shape:
            bad_shapes.append(f"{name!r}: expected shape {var.shape}, received shape "
                              f"{arr.shape}")
            continue
        if not np.isfinite(arr).all():
            raise ValueError(f"Argument `state_dict[{name!r}]`{source} contains NaN or inf.")
        arrays[name] = arr
    if bad_shapes:
        raise ValueError(f"Error loading the state_dict into {owner!r}: size mismatch for "
                         + "; ".join(bad_shapes) + ".")
    for name, arr in arrays.items():
        params[name].value[...] = arr
    return IncompatibleKeys(missing, unexpected)


class _Module:
    """Base of `pylstm.nn.LSTM` and `pylstm.nn.LSTMCell`: the parameter plumbing of
    `torch.nn.Module`. A subclass calls `super().__init__()`, then fills `self._params`
    (`{name: Variable}` in PyTorch's order, each made by `_parameter`); a parameter is also an
    attribute (`lstm.weight_ih_l0`). `self._cache` holds what `backward` needs after a call in
    training mode, `self._step_cache` the compiled steppers, dropped when parameters load."""

    def __init__(self):
        self.training = True
        self._params = {}
        self._cache = None
        self._step_cache = None

    def __getstate__(self):
        """The module's attributes for `pickle` and `copy.deepcopy` (as `torch.nn.Module`'s):
        parameters, configuration, mode and dropout generator travel; what a training call
        keeps for `backward` and the compiled steppers do not, and are rebuilt by the next
        call."""
        return dict(self.__dict__, _cache=None, _step_cache=None)

    def __getattr__(self, name):
        params = self.__dict__.get("_params")
        if params is not None and name in params:
            return params[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute {name!r}")

    def named_parameters(self):
        """Yields `(name, Variable)` for every parameter in PyTorch's order; `Variable.value`
        is the array (PyTorch layout), `Variable.grad` its accumulated gradient."""
        yield from self._params.items()

    def parameters(self):
        """Yields every parameter's `Variable`, in PyTorch's order (for `pylstm.optimizers`:
        `optimizer.apply(list(module.parameters()))`)."""
        yield from self._params.values()

    def zero_grad(self):
        """Sets every parameter's `.grad` to zeros."""
        for var in self._params.values():
            var.zero_grad()

    def train(self, mode=True):
        """Sets training mode (as `torch.nn.Module.train`): a call keeps what `backward`
        needs, and `LSTM` applies its dropout between layers; returns self."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Sets inference mode (no dropout, nothing kept for `backward`; `LSTMCell` runs a
        compiled step); returns self."""
        return self.train(False)

    def state_dict(self):
        """Returns `{name: np.ndarray}`, copies of the parameters in PyTorch's names, shapes
        and order (what the PyTorch module's `state_dict()` holds, as NumPy arrays)."""
        return {name: var.value.copy() for name, var in self._params.items()}

    def load_state_dict(self, state_dict, strict=True):
        """Copies parameters from a state dict, as `torch.nn.Module.load_state_dict` does.

        Args:
            state_dict: a mapping `{name: array}` of NumPy arrays or torch tensors (converted
                with `.detach().cpu().numpy()`, as a `torch.nn.LSTM(...).state_dict()`), or
                the path (str or `os.PathLike`) of a `.safetensors` file or of a `.pt` / `.pth`
                file written by `torch.save(module.state_dict(), path)`; see
                `pylstm.nn.load_state_dict_file`.
            strict: bool; if True the keys must match the parameters exactly.

        Returns:
            `IncompatibleKeys(missing_keys, unexpected_keys)`, both empty when `strict`.

        Raises:
            ValueError: with `strict`, missing or unexpected keys (all named); in any case a
                value whose shape differs from its parameter's (named, with both shapes), or
                holding NaN or inf; a file that cannot be read (named, chained to the
                reader's error).
            TypeError: `state_dict` not a mapping or path, or a value that is not a real
                floating array (a file's tensor: not float16/32/64).
            ImportError: a file whose format needs `safetensors` or `torch`, not installed.
        """
        result = _load_parameters(self, self._params, state_dict, strict)
        self._step_cache = None
        return result

    def save_state_dict(self, path):
        """Writes `state_dict()` to a `.safetensors` file (needs `safetensors`) or a `.pt`
        file (needs `torch`; `torch.load(path, weights_only=True)` reads it back); see
        `pylstm.nn.save_state_dict_file`."""
        save_state_dict_file(self.state_dict(), path)
