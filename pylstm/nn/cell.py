"""`pylstm.nn.LSTMCell`: PyTorch's `torch.nn.LSTMCell`, one timestep with its names and shapes.

Legend: N batch, H_in input size, H hidden size. Parameters in PyTorch's layout and gate order
i, f, g, o (`weight_ih` `(4H, H_in)`, `weight_hh` `(4H, H)`, `bias_ih`, `bias_hh` `(4H,)`), each
2-D one stored as its C-contiguous transpose (the Keras layout of `pylstm.ops`), so the
streaming stepper used at inference reads the memory that optimizers update in place.
"""

import math
import threading

import numpy as np

from pylstm import ops
from pylstm._validation import as_float_array, check_allocation, check_lstm_size
from pylstm.nn.module import (_as_batch, _check_dtype, _check_int, _hx_arrays, _keras_storage,
                              _Module, _parameter)
from pylstm.nn.state_dict import to_numpy
from pylstm.state import LSTMState
from pylstm.streaming import LSTMStepper


class LSTMCell(_Module):
    """One LSTM timestep with the arguments, parameters, shapes and results of PyTorch's
    `torch.nn.LSTMCell` (https://pytorch.org/docs/stable/generated/torch.nn.LSTMCell.html).

    From `x` and the previous state, `i, f, o = sigmoid(.)` and `g = tanh(.)` of
    `x @ W_ih.T + b_ih + h @ W_hh.T + b_hh`; then `c_1 = f * c + i * g` and
    `h_1 = o * tanh(c_1)` (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al.
    2000).

    In `eval()` mode a call runs one compiled step with the GIL released
    (`pylstm.streaming.LSTMStepper`, cached per thread and rebuilt when a parameter's `value` is
    rebound; threads may call one cell at once);
    in training mode (the default, as in PyTorch) it runs through `pylstm.ops.lstm_forward`
    with one step and keeps what `backward` needs.

    Args:
        input_size: int >= 1, H_in, the features of the input.
        hidden_size: int >= 1, H, the size of `h` and `c`.
        bias: bool; without it there are no `bias_ih` / `bias_hh` parameters.
        dtype: `"float32"` (default) or `"float64"`, of parameters and results.
        seed: int or None (fresh entropy): seeds PyTorch's default initialization
            `U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))` of every parameter.

    Call arguments:
        input: `(N, H_in)` or unbatched `(H_in,)` float32 or float64 array (cast to `dtype`).
        hx: None (zero states) or a pair `(h_0, c_0)`, each `(N, H)` (`(H,)` unbatched).

    Returns:
        `(h_1, c_1)`, each `(N, H)` (`(H,)` unbatched) of the cell's dtype.

    Raises:
        ValueError: an argument out of range, or sizes whose weights are over the kernels'
            int32 limit or exceed the memory available; when called, an input that is not 1-D
            or 2-D, of another feature size or empty, or an `hx` of the wrong shape.
        TypeError: a non-floating input, or `hx` not a pair.

    Example:

    >>> import numpy as np
    >>> from pylstm.nn import LSTMCell
    >>> cell = LSTMCell(input_size=3, hidden_size=4, seed=0).eval()
    >>> x = np.random.default_rng(0).standard_normal((6, 2, 3)).astype("float32")  # (L, N, H_in)
    >>> hx = None
    >>> for x_t in x:
    ...     hx = cell(x_t, hx)
    >>> hx[0].shape, hx[1].shape
    ((2, 4), (2, 4))
    >>> [name for name, _ in cell.named_parameters()]
    ['weight_ih', 'weight_hh', 'bias_ih', 'bias_hh']
    """

    def __init__(self, input_size, hidden_size, bias=True, dtype="float32", seed=None):
        self.input_size = _check_int(input_size, "input_size", 1)
        self.hidden_size = _check_int(hidden_size, "hidden_size", 1)
        self.bias = bool(bias)
        self.dtype = _check_dtype(dtype)
        self.seed = seed
        owner = f"LSTMCell({self.input_size}, {self.hidden_size})"
        check_lstm_size(self.input_size, self.hidden_size, self.hidden_size, owner)
        check_allocation((4 * self.hidden_size * (self.input_size + self.hidden_size + 2),),
                         self.dtype, "", subject=f"{owner}'s parameters")
        super().__init__()
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(self.hidden_size)
        G = 4 * self.hidden_size
        shapes = [("weight_ih", (G, self.input_size)), ("weight_hh", (G, self.hidden_size))]
        if self.bias:
            shapes += [("bias_ih", (G,)), ("bias_hh", (G,))]
        self._params = {name: _parameter(name, rng.uniform(-bound, bound, shape)
                                         .astype(self.dtype))
                        for name, shape in shapes}

    def get_config(self):
        """The constructor's arguments: `LSTMCell(**cell.get_config())` is a twin."""
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "bias": self.bias, "dtype": self.dtype, "seed": self.seed}

    def __repr__(self):
        return (f"LSTMCell({self.input_size}, {self.hidden_size}"
                f"{'' if self.bias else ', bias=False'})")

    def __call__(self, input, hx=None):
        x, unbatched, N = _as_batch(as_float_array(to_numpy(input), "input"), "input",
                                    self.input_size)
        x = np.ascontiguousarray(x, dtype=self.dtype)
        h0, c0 = self._initial_states(hx, N, unbatched)
        if self.training:
            kernel, recurrent, bias = self._weights()
            _, h1, c1, cache = ops.lstm_forward(x[:, None, :], kernel, recurrent, bias, h0, c0,
                                                training=True, return_sequences=False)
            self._cache = {"cache": cache, "unbatched": unbatched}
        else:
            self._cache = None
            state = (LSTMState(h0, c0) if h0 is not None else
                     LSTMState.zeros(N, self.hidden_size, dtype=self.dtype))
            new = LSTMState(np.zeros((N, self.hidden_size), self.dtype),
                            np.zeros((N, self.hidden_size), self.dtype))
            stepper = self._stepper()
            h1, new = stepper.step(x, state, out=new.h, new_state=new)
            c1 = new.c
        if unbatched:
            return h1[0], c1[0]
        return h1, c1

    def _initial_states(self, hx, N, unbatched):
        if hx is None:
            return None, None
        expected = (self.hidden_size,) if unbatched else (N, self.hidden_size)
        out = []
        for k, arr in _hx_arrays(hx):
            if arr.shape != expected:
                raise ValueError(f"Argument `hx[{k}]` ({'h_0' if k == 0 else 'c_0'}) must have "
                                 f"shape {expected} for an input of shape "
                                 f"{(self.input_size,) if unbatched else (N, self.input_size)}, "
                                 f"received shape {arr.shape}.")
            # A copy: the stepper's state may be written in place, never the caller's arrays.
            out.append(np.array(arr.reshape(N, self.hidden_size), dtype=self.dtype))
        return out

    def _weights(self):
        """The `pylstm.ops` (Keras-layout) weights, as copies: the training cache holds them
        until `backward`, whatever an optimizer does to the parameters meanwhile."""
        p = self._params
        bias = p["bias_ih"].value + p["bias_hh"].value if self.bias else None
        return p["weight_ih"].value.T.copy(), p["weight_hh"].value.T.copy(), bias

    def _stepper(self):
        """This thread's `LSTMStepper` over the parameters' storage, its fused bias refreshed
        from `bias_ih + bias_hh`; rebuilt when a parameter's `value` was rebound.

        Each thread has its own stepper and fused bias buffer (`_thread_cache`): a refresh in
        one thread never writes memory that a step in another is reading.
        """
        p = self._params
        local = _thread_cache(self)
        cached = getattr(local, "stepper", None)
        if cached is not None and all(a is var.value for a, var in zip(cached[0],
                                                                        p.values())):
            stepper, bias = cached[1], cached[2]
            if bias is not None:
                np.add(p["bias_ih"].value, p["bias_hh"].value, out=bias)
            return stepper
        bias = p["bias_ih"].value + p["bias_hh"].value if self.bias else None
        stepper = LSTMStepper(_keras_storage(p["weight_ih"]), _keras_storage(p["weight_hh"]),
                              bias)
        local.stepper = ([var.value for var in p.values()], stepper, bias)
        return stepper

    def backward(self, grad_h=None, grad_c=None):
        """Backpropagates through the last call (made in training mode) and adds every
        parameter's gradient into its `.grad` (as PyTorch's autograd accumulates).

        Args:
            grad_h: gradient of the loss with respect to `h_1`, in its shape (`(N, H)` or
                `(H,)`), or None for zeros.
            grad_c: gradient with respect to `c_1`, likewise.

        Returns:
            `(grad_input, (grad_h_0, grad_c_0))`: the gradients with respect to `input`
            (`(N, H_in)` or `(H_in,)`) and to `h_0`, `c_0` (`(N, H)` or `(H,)`; those of the
            zero state when `hx` was None), of the cell's dtype.

        Raises:
            RuntimeError: no call in training mode since the last `backward`.
            ValueError: a gradient of the wrong shape.
        """
        if not self._cache:
            raise RuntimeError("LSTMCell.backward needs a preceding call in training mode "
                               "(`cell.train()`); the last call ran in eval mode or was "
                               "already backpropagated.")
        cache, unbatched = self._cache["cache"], self._cache["unbatched"]
        N = cache.x.shape[1]
        expected = (self.hidden_size,) if unbatched else (N, self.hidden_size)
        grads_hc = []
        for name, value in (("grad_h", grad_h), ("grad_c", grad_c)):
            if value is None:
                grads_hc.append(None)
                continue
            arr = as_float_array(to_numpy(value), name)
            if arr.shape != expected:
                raise ValueError(f"Argument `{name}` must have shape {expected}, received "
                                 f"shape {arr.shape}.")
            grads_hc.append(arr.reshape(N, self.hidden_size).astype(self.dtype))
        grads = ops.lstm_backward(cache, None, *grads_hc)
        self._cache = None
        p = self._params
        p["weight_ih"].grad += grads["kernel"].T
        p["weight_hh"].grad += grads["recurrent_kernel"].T
        if self.bias:
            p["bias_ih"].grad += grads["bias"]
            p["bias_hh"].grad += grads["bias"]
        dx, dh0, dc0 = grads["x"][:, 0], grads["h0"], grads["c0"]
        if unbatched:
            return dx[0], (dh0[0], dc0[0])
        return dx, (dh0, dc0)


def _thread_cache(module):
    """The calling thread's namespace in `module._step_cache` (a `threading.local`, made on
    first use; `load_state_dict` drops it by setting None, and every thread rebuilds)."""
    cache = module._step_cache
    if cache is None:
        # Two threads may both make one here; the last stored wins and the other thread
        # rebuilds its steppers once on its next call.
        cache = module._step_cache = threading.local()
    return cache
