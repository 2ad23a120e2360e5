"""Plain-NumPy LSTM forward and backward: the readable specification and the test oracle.

Same arguments, results and semantics as `pylstm.ops.lstm_forward` / `lstm_backward`, written
for clarity, not speed: batch-major, one loop over time, no validation. See `pylstm.ops` for
the equations and argument shapes.
"""

import numpy as np
from scipy.special import expit

ACTIVATIONS = {
    "linear": (lambda x: x, lambda y: np.ones_like(y)),
    "tanh": (np.tanh, lambda y: 1 - y * y),
    "sigmoid": (expit, lambda y: y * (1 - y)),
    "hard_sigmoid": (lambda x: np.clip((x + 3) / 6, 0, 1),
                     lambda y: np.where((y > 0) & (y < 1), 1 / 6, 0).astype(y.dtype)),
    "relu": (lambda x: np.maximum(x, 0), lambda y: (y > 0).astype(y.dtype)),
}


def lstm_forward(x, kernel, recurrent_kernel, bias=None, h0=None, c0=None, *, projection=None,
                 mask=None, reverse=False, zero_output_for_mask=False, activation="tanh",
                 recurrent_activation="sigmoid", gate_activations=None, training=False,
                 return_sequences=True, time_major=False):
    dtype = kernel.dtype
    x = np.asarray(x, dtype=dtype)
    if time_major:
        x = x.transpose(1, 0, 2)
        mask = None if mask is None else np.asarray(mask).T
    B, T, _ = x.shape
    H = kernel.shape[1] // 4
    P = recurrent_kernel.shape[0]
    if gate_activations is None:
        gate_activations = [recurrent_activation, recurrent_activation, activation,
                             recurrent_activation, activation]
    act_i, act_f, act_g, act_o, act_c = (ACTIVATIONS[a or "linear"][0] for a in gate_activations)

    h = np.zeros((B, P), dtype) if h0 is None else np.array(h0, dtype)
    c = np.zeros((B, H), dtype) if c0 is None else np.array(c0, dtype)
    last_out = np.zeros((B, P), dtype)
    y = np.zeros((B, T, P), dtype)
    steps = []
    order = range(T - 1, -1, -1) if reverse else range(T)
    for t in order:
        z = x[:, t] @ kernel + h @ recurrent_kernel
        if bias is not None:
            z = z + bias
        i = act_i(z[:, :H])
        f = act_f(z[:, H:2 * H])
        g = act_g(z[:, 2 * H:3 * H])
        o = act_o(z[:, 3 * H:])
        c_new = f * c + i * g
        m = o * act_c(c_new)
        h_new = m @ projection if projection is not None else m
        keep = np.ones((B, 1), bool) if mask is None else np.asarray(mask)[:, t:t + 1]
        steps.append(dict(t=t, h_prev=h, c_prev=c, i=i, f=f, g=g, o=o, c=c_new, m=m,
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
                     reverse=reverse, zero_output=zero_output_for_mask,
                     gate_activations=gate_activations,
                     return_sequences=return_sequences, time_major=time_major)
    return out, h, c, cache


def lstm_backward(cache, dy=None, dh_n=None, dc_n=None):
    x = cache["x"]
    B, T, D = x.shape
    kernel, recurrent_kernel, projection = (cache["kernel"], cache["recurrent_kernel"],
                                            cache["projection"])
    dtype = kernel.dtype
    H = kernel.shape[1] // 4
    P = recurrent_kernel.shape[0]
    (_, d_i), (_, d_f), (_, d_g), (_, d_o), (act_c, d_c) = (
        ACTIVATIONS[a or "linear"] for a in cache["gate_activations"])

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
    grads = dict(x=np.zeros_like(x), kernel=np.zeros_like(kernel),
                 recurrent_kernel=np.zeros_like(recurrent_kernel),
                 bias=np.zeros(4 * H, dtype) if cache["has_bias"] else None,
                 projection=None if projection is None else np.zeros_like(projection))
    for s in reversed(cache["steps"]):
        t, keep = s["t"], s["keep"]
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
        a = act_c(s["c"])
        dct = np.where(keep, dc, 0) + dm * s["o"] * d_c(a)
        dz = np.concatenate([
            dct * s["g"] * d_i(s["i"]),
            dct * s["c_prev"] * d_f(s["f"]),
            dct * s["i"] * d_g(s["g"]),
            dm * a * d_o(s["o"]),
        ], axis=1)
        grads["x"][:, t] = dz @ kernel.T
        grads["kernel"] += x[:, t].T @ dz
        grads["recurrent_kernel"] += s["h_prev"].T @ dz
        if grads["bias"] is not None:
            grads["bias"] += dz.sum(axis=0)
        dh = np.where(keep, dz @ recurrent_kernel.T, dh)
        dc = np.where(keep, dct * s["f"], dc)
    if cache["time_major"]:
        grads["x"] = grads["x"].transpose(1, 0, 2).copy()
    grads["h0"] = dh
    grads["c0"] = dc
    return grads
