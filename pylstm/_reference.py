"""Plain-NumPy LSTM forward and backward: the readable specification and the test oracle.

Same arguments, results and semantics as `pylstm.ops.lstm_forward` / `lstm_backward`, written
for clarity, not speed: batch-major, one loop over time, no validation. See `pylstm.ops` for
the equations and argument shapes. `pylstm.ops` also runs these functions for activations the
compiled core does not have (Python callables).

With `lengths`, each sample runs alone over its real steps (a plain loop over samples: the
spec of the packed core, which computes the same thing with the batch shrinking per step).

Activations are names of `ACTIVATIONS`, callables with `backward(x, y, grad_y) -> grad_x`
(as `pylstm.activations.get` returns), or plain elementwise callables `f(x) -> y`, whose
derivative is taken by float64 central differences.
"""

import numpy as np
from scipy.special import expit

from pylstm.activations import _SELU_ALPHA, _SELU_SCALE

# name: (f(x), f'(x) as a function of x and y = f(x)). Keras 3's definitions; at a kink the
# one-sided derivative TensorFlow's gradients use.
ACTIVATIONS = {
    "linear": (lambda x: x, lambda x, y: np.ones_like(x)),
    "tanh": (np.tanh, lambda x, y: 1 - y * y),
    "sigmoid": (expit, lambda x, y: y * (1 - y)),
    "hard_sigmoid": (lambda x: np.clip((x + 3) / 6, 0, 1),
                     lambda x, y: np.where((x > -3) & (x < 3), 1 / 6, 0)),
    "relu": (lambda x: np.maximum(x, 0), lambda x, y: np.where(x > 0, 1, 0)),
    "elu": (lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
            lambda x, y: np.where(x < 0, np.exp(np.minimum(x, 0)), 1)),
    "selu": (lambda x: _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(np.minimum(x, 0))),
             lambda x, y: np.where(x < 0, _SELU_SCALE * _SELU_ALPHA * np.exp(np.minimum(x, 0)),
                                   _SELU_SCALE)),
    "softplus": (lambda x: np.logaddexp(0, x), lambda x, y: expit(x)),
    "softsign": (lambda x: x / (1 + np.abs(x)), lambda x, y: 1 / np.square(1 + np.abs(x))),
    "swish": (lambda x: x * expit(x), lambda x, y: expit(x) * (1 + x * (1 - expit(x)))),
    "exponential": (np.exp, lambda x, y: y),
    # Keras 2's hard_sigmoid
    "legacy_hard_sigmoid": (lambda x: np.clip(0.2 * x + 0.5, 0, 1),
                            lambda x, y: np.where((x > -2.5) & (x < 2.5), 0.2, 0)),
}
ACTIVATIONS["silu"] = ACTIVATIONS["swish"]


def lstm_forward(x, kernel, recurrent_kernel, bias=None, h0=None, c0=None, *, projection=None,
                 mask=None, reverse=False, zero_output_for_mask=False, activation="tanh",
                 recurrent_activation="sigmoid", gate_activations=None, dropout_mask=None,
                 recurrent_dropout_mask=None, training=False, return_sequences=True,
                 time_major=False, lengths=None, padding_side="right"):
    dtype = kernel.dtype
    x = np.asarray(x, dtype=dtype)
    if lengths is not None:
        if mask is not None:
            raise ValueError("Arguments `lengths` and `mask` cannot be used together.")
        return _forward_lengths(
            x, kernel, recurrent_kernel, bias, h0, c0, lengths, padding_side, time_major,
            return_sequences, training, dropout_mask, recurrent_dropout_mask,
            dict(projection=projection, reverse=reverse, activation=activation,
                 recurrent_activation=recurrent_activation, gate_activations=gate_activations))
    if time_major:
        x = x.transpose(1, 0, 2)
        mask = None if mask is None else np.asarray(mask).T
    B, T, _ = x.shape
    H = kernel.shape[1] // 4
    P = recurrent_kernel.shape[0]
    if gate_activations is None:
        gate_activations = [recurrent_activation, recurrent_activation, activation,
                            recurrent_activation, activation]
    acts = [_resolve(a) for a in gate_activations]
    (act_i, _), (act_f, _), (act_g, _), (act_o, _), (act_c, _) = acts
    # One mask per gate i, f, c, o: a single (B, n) mask is the same for all four.
    din = _per_gate(dropout_mask, dtype)
    drec = _per_gate(recurrent_dropout_mask, dtype)

    h = np.zeros((B, P), dtype) if h0 is None else np.array(h0, dtype)
    c = np.zeros((B, H), dtype) if c0 is None else np.array(c0, dtype)
    last_out = np.zeros((B, P), dtype)
    y = np.zeros((B, T, P), dtype)
    steps = []
    order = range(T - 1, -1, -1) if reverse else range(T)
    for t in order:
        z = _gate_product(x[:, t], din, kernel) + _gate_product(h, drec, recurrent_kernel)
        if bias is not None:
            z = z + bias
        i = _apply(act_i, z[:, :H])
        f = _apply(act_f, z[:, H:2 * H])
        g = _apply(act_g, z[:, 2 * H:3 * H])
        o = _apply(act_o, z[:, 3 * H:])
        c_new = f * c + i * g
        m = o * _apply(act_c, c_new)
        h_new = m @ projection if projection is not None else m
        keep = np.ones((B, 1), bool) if mask is None else np.asarray(mask)[:, t:t + 1]
        steps.append(dict(t=t, h_prev=h, c_prev=c, z=z, i=i, f=f, g=g, o=o, c=c_new, m=m,
                          keep=keep))
        h = np.where(keep, h_new, h)
        c = np.where(keep, c_new, c)
        last_out = np.where(keep, h_new, last_out)
        y[:, t] = np.where(keep, h_new, 0 if zero_output_for_mask else last_out)

    out = y if return_sequences else y[:, 0 if reverse else T - 1].copy()
    if return_sequences and time_major:
        out = out.transpose(1, 0, 2).copy()
    cache = None
    if training:
        cache = dict(x=x, steps=steps, kernel=kernel, recurrent_kernel=recurrent_kernel,
                     projection=projection, has_bias=bias is not None, mask=mask,
                     reverse=reverse, zero_output=zero_output_for_mask, acts=acts, din=din,
                     drec=drec, return_sequences=return_sequences, time_major=time_major)
    return out, h, c, cache


def lstm_backward(cache, dy=None, dh_n=None, dc_n=None):
    if "samples" in cache:
        return _backward_lengths(cache, dy, dh_n, dc_n)
    x = cache["x"]
    B, T, D = x.shape
    kernel, recurrent_kernel, projection = (cache["kernel"], cache["recurrent_kernel"],
                                            cache["projection"])
    dtype = kernel.dtype
    H = kernel.shape[1] // 4
    P = recurrent_kernel.shape[0]
    (_, vjp_i), (_, vjp_f), (_, vjp_g), (_, vjp_o), (act_c, vjp_c) = cache["acts"]
    din, drec = cache["din"], cache["drec"]

    # Outputs as a function of the state: y_t is h_t on real steps; on masked steps it is the
    # last real output (or zero), so its gradient flows back to that earlier step.
    dy_full = np.zeros((B, T, P), dtype)
    if dy is not None:
        if cache["return_sequences"]:
            dy_full += dy.transpose(1, 0, 2) if cache["time_major"] else dy
        else:
            dy_full[:, 0 if cache["reverse"] else T - 1] += dy

    dh = np.zeros((B, P), dtype) if dh_n is None else np.array(dh_n, dtype)
    dc = np.zeros((B, H), dtype) if dc_n is None else np.array(dc_n, dtype)
    d_out = np.zeros((B, P), dtype)   # gradient waiting for the last real output
    grads = dict(x=np.zeros((B, T, D), dtype), kernel=np.zeros_like(kernel),
                 recurrent_kernel=np.zeros_like(recurrent_kernel),
                 bias=np.zeros(4 * H, dtype) if cache["has_bias"] else None,
                 projection=None if projection is None else np.zeros_like(projection))
    for s in reversed(cache["steps"]):
        t, keep, z = s["t"], s["keep"], s["z"]
        if cache["zero_output"]:
            d_out = np.where(keep, dy_full[:, t], 0)
        else:
            d_out = d_out + dy_full[:, t]
        dh_t = np.where(keep, dh + d_out, 0)
        d_out = np.where(keep, 0, d_out)
        if projection is not None:
            grads["projection"] += s["m"].T @ dh_t
            dm = dh_t @ projection.T
        else:
            dm = dh_t
        a = _apply(act_c, s["c"])
        dct = np.where(keep, dc, 0) + _cast(vjp_c(s["c"], a, dm * s["o"]), dtype)
        dz = np.concatenate([
            vjp_i(z[:, :H], s["i"], dct * s["g"]),
            vjp_f(z[:, H:2 * H], s["f"], dct * s["c_prev"]),
            vjp_g(z[:, 2 * H:3 * H], s["g"], dct * s["i"]),
            vjp_o(z[:, 3 * H:], s["o"], dm * a),
        ], axis=1).astype(dtype, copy=False)
        dx_t, dkernel = _gate_product_grads(x[:, t], din, kernel, dz)
        dh_prev, drecurrent = _gate_product_grads(s["h_prev"], drec, recurrent_kernel, dz)
        grads["x"][:, t] = dx_t
        grads["kernel"] += dkernel
        grads["recurrent_kernel"] += drecurrent
        if grads["bias"] is not None:
            grads["bias"] += dz.sum(axis=0)
        dh = np.where(keep, dh_prev, dh)
        dc = np.where(keep, dct * s["f"], dc)
    if cache["time_major"]:
        grads["x"] = grads["x"].transpose(1, 0, 2).copy()
    grads["h0"] = dh
    grads["c0"] = dc
    return grads


def _forward_lengths(x, kernel, recurrent_kernel, bias, h0, c0, lengths, padding_side,
                     time_major, return_sequences, training, dropout_mask,
                     recurrent_dropout_mask, options):
    """`lstm_forward` with `lengths`: sample b runs alone on its real steps `[start, stop)`.

    Outputs on padding are zeros; `h_n` / `c_n` are the state after the sample's last
    processed step (its last real step, or its first in `reverse`); without
    `return_sequences` the output is `h_n`.
    """
    dtype = kernel.dtype
    if time_major:
        x = x.transpose(1, 0, 2)
    B, T, _ = x.shape
    H = kernel.shape[1] // 4
    P = recurrent_kernel.shape[0]
    lengths = np.asarray(lengths)
    h0 = np.zeros((B, P), dtype) if h0 is None else np.asarray(h0, dtype)
    c0 = np.zeros((B, H), dtype) if c0 is None else np.asarray(c0, dtype)
    y = np.zeros((B, T, P), dtype)
    h_n = np.empty((B, P), dtype)
    c_n = np.empty((B, H), dtype)
    samples = []
    for b in range(B):
        start = 0 if padding_side == "right" else T - int(lengths[b])
        stop = start + int(lengths[b])
        y_b, h_b, c_b, cache_b = lstm_forward(
            x[b:b + 1, start:stop], kernel, recurrent_kernel, bias, h0[b:b + 1], c0[b:b + 1],
            dropout_mask=_sample_rows(dropout_mask, b),
            recurrent_dropout_mask=_sample_rows(recurrent_dropout_mask, b), training=training,
            **options)
        y[b, start:stop] = y_b[0]
        h_n[b], c_n[b] = h_b[0], c_b[0]
        samples.append(dict(start=start, stop=stop, cache=cache_b))
    if return_sequences:
        out = y.transpose(1, 0, 2).copy() if time_major else y
    else:
        out = h_n.copy()
    cache = None
    if training:
        cache = dict(samples=samples, shape=(B, T) + x.shape[2:], P=P, H=H, dtype=dtype,
                     has_bias=bias is not None, projection=options["projection"],
                     return_sequences=return_sequences, time_major=time_major)
    return out, h_n, c_n, cache


def _backward_lengths(cache, dy, dh_n, dc_n):
    """`lstm_backward` for a `lengths` cache: the per-sample gradients, summed for weights."""
    B, T, D = cache["shape"]
    P, H, dtype = cache["P"], cache["H"], cache["dtype"]
    dh_n = np.zeros((B, P), dtype) if dh_n is None else np.array(dh_n, dtype)
    dc_n = np.zeros((B, H), dtype) if dc_n is None else np.asarray(dc_n, dtype)
    dy_full = None
    if dy is not None:
        if cache["return_sequences"]:
            dy_full = np.asarray(dy, dtype)
            dy_full = dy_full.transpose(1, 0, 2) if cache["time_major"] else dy_full
        else:
            # the last output is h_n
            dh_n += np.asarray(dy, dtype)
    grads = dict(x=np.zeros((B, T, D), dtype), h0=np.empty((B, P), dtype),
                 c0=np.empty((B, H), dtype))
    for b, sample in enumerate(cache["samples"]):
        start, stop = sample["start"], sample["stop"]
        dy_b = None if dy_full is None else dy_full[b:b + 1, start:stop]
        g = lstm_backward(sample["cache"], dy_b, dh_n[b:b + 1], dc_n[b:b + 1])
        grads["x"][b, start:stop] = g["x"][0]
        grads["h0"][b], grads["c0"][b] = g["h0"][0], g["c0"][0]
        for name in ("kernel", "recurrent_kernel", "bias", "projection"):
            if g[name] is not None:
                grads[name] = grads[name] + g[name] if name in grads else g[name]
            else:
                grads[name] = None
    if cache["time_major"]:
        grads["x"] = grads["x"].transpose(1, 0, 2).copy()
    return grads


def _sample_rows(mask, b):
    """Sample b's rows of a `(B, n)` or `(R, B, n)` dropout mask, keeping the batch axis."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    return mask[b:b + 1] if mask.ndim == 2 else mask[:, b:b + 1]


def _per_gate(mask, dtype):
    """A dropout mask as four (B, n) masks, one per gate; None (no dropout) stays None."""
    if mask is None:
        return None
    mask = np.asarray(mask, dtype)
    return np.broadcast_to(mask, (4,) + mask.shape[-2:])


def _gate_product(a, masks, w):
    """`a @ w` (B, 4H), with gate k's columns computed from `a * masks[k]` under dropout."""
    if masks is None:
        return a @ w
    H = w.shape[1] // 4
    return np.concatenate([(a * masks[k]) @ w[:, k * H:(k + 1) * H] for k in range(4)], axis=1)


def _gate_product_grads(a, masks, w, dz):
    """Gradients of `_gate_product(a, masks, w)` with respect to `a` and `w`, given `dz`."""
    if masks is None:
        return dz @ w.T, a.T @ dz
    H = w.shape[1] // 4
    gates = [slice(k * H, (k + 1) * H) for k in range(4)]
    da = sum((dz[:, s] @ w[:, s].T) * masks[k] for k, s in enumerate(gates))
    dw = np.concatenate([(a * masks[k]).T @ dz[:, s] for k, s in enumerate(gates)], axis=1)
    return da, dw


def _resolve(activation):
    """`(f, vjp)` with `vjp(x, y, grad_y) -> grad_x`, for a name or a callable."""
    if activation is None:
        activation = "linear"
    if isinstance(activation, str):
        f, derivative = ACTIVATIONS[activation]
        return f, lambda x, y, grad_y: grad_y * derivative(x, y)
    backward = getattr(activation, "backward", None)
    if callable(backward):
        return activation, backward
    return activation, _central_difference_vjp(activation)


def _central_difference_vjp(f):
    """The vector-Jacobian product of an elementwise `f` by float64 central differences.

    Each entry moves by `cbrt(eps) * max(1, |x|)` (about 6e-6 relative), the step that balances
    truncation and rounding error: about 1e-10 relative error for a smooth `f`.
    """
    def vjp(x, y, grad_y):
        x64 = np.asarray(x, np.float64)
        step = np.cbrt(np.finfo(np.float64).eps) * np.maximum(1.0, np.abs(x64))
        up, down = x64 + step, x64 - step
        slope = (np.asarray(f(up), np.float64) - np.asarray(f(down), np.float64)) / (up - down)
        return grad_y * slope

    return vjp


def _apply(f, z):
    """`f(z)` in `z`'s dtype; an activation must keep the shape (it is elementwise)."""
    y = np.asarray(f(z))
    if y.shape != z.shape:
        raise ValueError(f"Activation {getattr(f, '__name__', f)!r} returned an array of shape "
                         f"{y.shape} for an input of shape {z.shape}; an LSTM activation must "
                         f"return an array of its input's shape.")
    return _cast(y, z.dtype)


def _cast(a, dtype):
    return np.asarray(a).astype(dtype, copy=False)
