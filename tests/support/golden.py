"""Golden outputs: what pylstm computes on a fixed grid, saved so that a refactor can show it
reproduces them bitwise.

Every case runs public entry points (`ops.lstm_forward`/`lstm_backward`, `lstm_forward_packed`,
`nn.LSTM` with its backward and `step`, `nn.LSTMCell`, `layers.LSTM`/`Bidirectional`,
`LSTMStepper`) on seeded inputs: both dtypes; masks; lengths with right and left padding;
reverse; projection; input and recurrent dropout; bidirectional and stacked; non-default and
Python-callable activations; batch 1 to 64 and 1 to 100 steps, enough rows and units to reach
each route of the core (small calls, BLAS per step, packed with and without a thread team,
fused inference, chunked inference). For each result array the fixture keeps its SHA-256, its
shape and dtype, and 16 of its values.

`tests/data/golden.json` also records the machine that wrote it (`signature()`): the compiled
kernels round differently at each kernel level and the BLAS on different CPUs, so the bitwise
check runs on the same CPU, kernel level and libraries, and elsewhere the 16 values are
compared to a tolerance.

float32 runs on the default thread count (its results are the same on any count); float64 runs
on one thread (its BLAS products round by how they are shared between threads).

Regenerate (only for a deliberate change of results, saying why in the commit):
`python -P tests/support/golden.py tests/data/golden.json`.
"""

import hashlib
import json
import platform
import sys

import numpy as np

import pylstm
from pylstm import _kernels, layers, nn, ops

FIXTURE = "golden.json"
SAMPLES = 16


def signature():
    """What the results depend on beyond pylstm's code: CPU model and flags, library versions,
    the kernel level (`PYLSTM_CPU_LEVEL`)."""
    import scipy
    model, flags = platform.processor(), ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = " ".join(sorted(value.split()))
                    break
    except OSError:
        pass
    return {"cpu": model, "flags": hashlib.sha256(flags.encode()).hexdigest()[:16],
            "machine": platform.machine(), "numpy": np.__version__, "scipy": scipy.__version__,
            "kernel_level": _kernels.level.name}


def digest(a):
    a = np.ascontiguousarray(a)
    flat = a.reshape(-1)
    idx = np.unique(np.linspace(0, flat.size - 1, SAMPLES).astype(np.int64)) if flat.size else []
    return {"sha256": hashlib.sha256(a.tobytes()).hexdigest(), "shape": list(a.shape),
            "dtype": str(a.dtype), "samples": [float(flat[i]) for i in idx]}


def _num(v):
    return int(hashlib.sha256(repr(v).encode()).hexdigest()[:8], 16)


def _weights(rng, D, H, P, dtype, bias=True, projection=False):
    s = 1 / np.sqrt(H)
    w = {"kernel": rng.uniform(-s, s, (D, 4 * H)).astype(dtype),
         "recurrent_kernel": rng.uniform(-s, s, (P, 4 * H)).astype(dtype),
         "bias": rng.uniform(-s, s, 4 * H).astype(dtype) if bias else None}
    if projection:
        w["projection"] = rng.uniform(-s, s, (H, P)).astype(dtype)
    return w


# (B, T, D, H): one step, batch 1 short and long, few rows, 64 rows in one step, large enough
# for a thread team at small batch, and at batch 64.
SHAPES = [(1, 1, 3, 8), (1, 100, 3, 8), (3, 7, 5, 8), (64, 1, 5, 16), (8, 100, 32, 64),
          (64, 100, 5, 16)]

VARIANTS = {
    "plain": {},
    "no_bias": {"bias": False},
    "mask": {"mask": True},
    "mask_zero_last": {"mask": True, "zero_output_for_mask": True, "return_sequences": False},
    "reverse_mask": {"mask": True, "reverse": True},
    "time_major": {"time_major": True},
    "last": {"return_sequences": False},
    "reverse": {"reverse": True},
    "projection": {"projection": True},
    "dropout1": {"dropout": 1},
    "dropout4": {"dropout": 4},
    "lengths_right": {"lengths": "right"},
    "lengths_left_reverse": {"lengths": "left", "reverse": True},
    "lengths_projection": {"lengths": "right", "projection": True},
    "activations": {"activation": "swish", "recurrent_activation": "hard_sigmoid"},
    "gate_activations": {"gate_activations": ("sigmoid", "elu", "softsign", "sigmoid",
                                              "selu")},
    "initial_state": {"state": True},
}


def _lstm_ops_case(dtype, shape, name, opts):
    B, T, D, H = shape
    rng = np.random.default_rng([_num(dtype), *shape, _num(name)])
    P = H // 2 if opts.get("projection") else H
    w = _weights(rng, D, H, P, dtype, opts.get("bias", True), opts.get("projection", False))
    time_major = opts.get("time_major", False)
    x = rng.standard_normal((T, B, D) if time_major else (B, T, D)).astype(dtype)
    kw = {k: opts[k] for k in ("reverse", "zero_output_for_mask", "return_sequences",
                               "activation", "recurrent_activation", "gate_activations")
          if k in opts}
    kw["time_major"] = time_major
    if opts.get("mask"):
        mask = rng.random((B, T)) > 0.3
        mask[:, 0] = True
        kw["mask"] = mask.T.copy() if time_major else mask
    if opts.get("lengths"):
        kw["lengths"] = rng.integers(1, T + 1, B)
        kw["padding_side"] = opts["lengths"]
    if opts.get("dropout"):
        R = opts["dropout"]
        lead = (R,) if R == 4 else ()
        kw["dropout_mask"] = ((rng.random(lead + (B, D)) > 0.25) / 0.75).astype(dtype)
        kw["recurrent_dropout_mask"] = ((rng.random(lead + (B, P)) > 0.25) / 0.75).astype(dtype)
    if opts.get("state"):
        kw["h0"] = rng.standard_normal((B, P)).astype(dtype)
        kw["c0"] = rng.standard_normal((B, H)).astype(dtype)
    out = {}
    y, h, c, _ = ops.lstm_forward(x, **w, **kw)
    out.update(infer_y=y, infer_h=h, infer_c=c)
    y, h, c, cache = ops.lstm_forward(x, **w, **kw, training=True)
    out.update(train_y=y, train_h=h, train_c=c)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dh = rng.standard_normal(h.shape).astype(dtype)
    dc = rng.standard_normal(c.shape).astype(dtype)
    grads = ops.lstm_backward(cache, dy, dh, dc)
    out.update({f"grad_{k}": v for k, v in grads.items() if v is not None})
    return out


def _callable_case(dtype):
    rng = np.random.default_rng([_num(dtype), _num("callable")])
    B, T, D, H = 3, 6, 4, 5
    w = _weights(rng, D, H, H, dtype)
    x = rng.standard_normal((B, T, D)).astype(dtype)
    act = pylstm.activations.get("tanh")
    y, h, c, cache = ops.lstm_forward(x, **w, activation=lambda v: np.tanh(v),
                                      recurrent_activation=act, training=True)
    grads = ops.lstm_backward(cache, rng.standard_normal(y.shape).astype(dtype))
    return {"y": y, "h": h, "c": c, **{f"grad_{k}": v for k, v in grads.items()
                                       if v is not None}}


def _packed_case(dtype):
    rng = np.random.default_rng([_num(dtype), _num("packed")])
    batch_sizes = np.array([6, 6, 5, 3, 3, 1, 1], dtype=np.int64)
    D, H = 4, 8
    w = _weights(rng, D, H, H, dtype)
    data = rng.standard_normal((int(batch_sizes.sum()), D)).astype(dtype)
    y, h, c, cache = ops.lstm_forward_packed(data, batch_sizes, **w, training=True)
    grads = ops.lstm_backward(cache, rng.standard_normal(y.shape).astype(dtype))
    return {"y": y, "h": h, "c": c, **{f"grad_{k}": v for k, v in grads.items()
                                       if v is not None}}


def _nn_case(dtype, B, T, bidirectional, proj_size, lengths):
    rng = np.random.default_rng([_num(dtype), B, T, int(bidirectional), proj_size, int(lengths)])
    lstm = nn.LSTM(6, 12, num_layers=2, batch_first=True, bidirectional=bidirectional,
                   proj_size=proj_size, dtype=dtype, seed=_num((dtype, B, T)) % 1000)
    x = rng.standard_normal((B, T, 6)).astype(dtype)
    kw = {"lengths": rng.integers(1, T + 1, B)} if lengths else {}
    out = {}
    y, (h, c) = lstm.eval()(x, **kw)
    out.update(infer_y=y, infer_h=h, infer_c=c)
    y, (h, c) = lstm.train()(x, **kw)
    out.update(train_y=y, train_h=h, train_c=c)
    dx, (dh0, dc0) = lstm.backward(rng.standard_normal(y.shape).astype(dtype),
                                   rng.standard_normal(h.shape).astype(dtype),
                                   return_hx_grad=True)
    out.update(grad_x=dx, grad_h0=dh0, grad_c0=dc0)
    for name, p in lstm.named_parameters():
        out["grad_" + name] = p.grad
    if not bidirectional:
        lstm.eval()
        state = lstm.initial_state(B)
        steps = []
        for t in range(min(T, 5)):
            y_t, state = lstm.step(x[:, t], state)
            steps.append(y_t)
        out["step_y"] = np.stack(steps, 1)
    return out


def _cell_case(dtype):
    rng = np.random.default_rng([_num(dtype), _num("cell")])
    cell = nn.LSTMCell(5, 7, dtype=dtype, seed=3)
    x = rng.standard_normal((4, 5)).astype(dtype)
    hx = (rng.standard_normal((4, 7)).astype(dtype), rng.standard_normal((4, 7)).astype(dtype))
    out = {}
    h, c = cell.eval()(x, hx)
    out.update(eval_h=h, eval_c=c)
    h, c = cell.train()(x, hx)
    out.update(train_h=h, train_c=c)
    grads = cell.backward(rng.standard_normal(h.shape).astype(dtype),
                          rng.standard_normal(c.shape).astype(dtype))
    out["grad_x"] = grads[0] if isinstance(grads, tuple) else grads
    for name, p in cell.named_parameters():
        out["grad_" + name] = p.grad
    w = _weights(rng, 5, 7, 3, dtype, projection=True)
    stepper = pylstm.streaming.LSTMStepper(**w)
    state = stepper.initial_state(4)
    for t in range(3):
        y_t, state = stepper.step(x * (t + 1), state)
    out.update(stepper_y=y_t, stepper_h=state.h, stepper_c=state.c)
    return out


def _layers_case(dtype):
    rng = np.random.default_rng([_num(dtype), _num("layers")])
    x = rng.standard_normal((5, 9, 4)).astype(dtype)
    layer = layers.Bidirectional(layers.LSTM(6, return_sequences=True, dtype=dtype,
                                             kernel_initializer="glorot_uniform"),
                                 merge_mode="concat")
    layer.build(x.shape)
    for v in layer.weights:
        v.value[...] = rng.uniform(-0.4, 0.4, v.shape)
    mask = rng.random((5, 9)) > 0.2
    mask[:, 0] = True
    out = {"infer_y": layer(x, mask=mask)}
    y = layer(x, mask=mask, training=True)
    out["train_y"] = y
    dx = layer.backward(rng.standard_normal(y.shape).astype(dtype))
    out["grad_x"] = dx[0] if isinstance(dx, (tuple, list)) else dx
    for i, v in enumerate(layer.weights):
        out[f"grad_{i}_{v.name}"] = v.grad
    cell_layer = layers.LSTM(6, dtype=dtype)
    cell_layer.build((5, 9, 4))
    for v in cell_layer.weights:
        v.value[...] = rng.uniform(-0.4, 0.4, v.shape)
    state = cell_layer.initial_state(5)
    for t in range(4):
        y_t, state = cell_layer.step(x[:, t], state)
    out["step_y"] = y_t
    return out


def cases():
    """Yields `(case name, dict of result arrays)` over the whole grid."""
    for dtype in ("float32", "float64"):
        threads = None if dtype == "float32" else 1
        previous = ops.get_num_threads()
        ops.set_num_threads(threads)
        try:
            for shape in SHAPES:
                for name, opts in VARIANTS.items():
                    yield f"{dtype}/ops/{'x'.join(map(str, shape))}/{name}", \
                        _lstm_ops_case(dtype, shape, name, opts)
            yield f"{dtype}/ops/callable", _callable_case(dtype)
            yield f"{dtype}/ops/packed", _packed_case(dtype)
            for B, T in ((1, 1), (3, 17), (64, 100)):
                for bidirectional in (False, True):
                    for proj_size in (0, 5):
                        for lengths in (False, True):
                            yield (f"{dtype}/nn/{B}x{T}/bi{int(bidirectional)}/p{proj_size}/"
                                   f"len{int(lengths)}",
                                   _nn_case(dtype, B, T, bidirectional, proj_size, lengths))
            yield f"{dtype}/nn/cell", _cell_case(dtype)
            yield f"{dtype}/layers", _layers_case(dtype)
        finally:
            ops.set_num_threads(previous)


def compute():
    return {name: {k: digest(v) for k, v in sorted(arrays.items())} for name, arrays in cases()}


def main(path):
    results = compute()
    with open(path, "w") as f:
        json.dump({"signature": signature(), "cases": results}, f, indent=0, sort_keys=True)
    print(f"{len(results)} cases, {sum(map(len, results.values()))} arrays -> {path}")


if __name__ == "__main__":
    main(sys.argv[1])
