"""Property-based fuzzing (hypothesis) of every public entry point and every loader, each
example run in an isolated worker process (`tests/support/isolated.py`'s `Worker`, its address space
capped): an example must end in a valid result or a ValueError/TypeError; a crash
(a signal), a hang, a MemoryError or any other exception fails the test with the example's
recipe, which reproduces it in-process:
`python -P tests/files/test_fuzz_api.py TARGET 'RECIPE_JSON'`.

Entry points: `pylstm.ops.lstm_forward` / `lstm_forward_packed` / `lstm_backward`,
`pylstm.streaming` (`lstm_step`, `LSTMStepper`, `LSTMState`), the layers (`LSTM` call and
step, `Bidirectional`, `RNN(LSTMCell)`, `Dense`, `Embedding`, `Masking`, `TimeDistributed`),
`pylstm.models.Sequential` (predict, fit, evaluate), `pylstm.nn` (`LSTM` call, backward and
step, `LSTMCell`, `LSTMStepState.from_dict`, the `PackedSequence` utilities); the loaders get
byte-flipped, truncated and spliced copies of a small valid file of each format.

Arguments are drawn as recipes (shapes, dtypes with both byte orders, NaN/inf/huge fills,
Fortran/strided/read-only/broadcast layouts, wrong types), mostly valid so that the deep paths
run. CI runs `PYLSTM_FUZZ_EXAMPLES` examples per test (default 30); a longer run:
`PYLSTM_HOSTILE_FLIPS=2000 PYLSTM_FUZZ_EXAMPLES=20000 python -P -m pytest -q
--import-mode=importlib tests/files/test_fuzz_api.py tests/files/test_hostile_files.py`.
Hypothesis keeps its examples database in `.hypothesis/` (git-ignored).
"""

import importlib.util
import io
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import pytest
from pylstm_tests import require
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

# The optional packages that the fuzzed loaders read with and the workers preload.
require("h5py")
require("pyfive")
require("safetensors")
require("torch")

TESTS = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("pylstm_tests_hostile_files",
                                               TESTS / "support" / "hostile_files.py")
hf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hf)
_spec = importlib.util.spec_from_file_location("pylstm_tests_isolated",
                                               TESTS / "support" / "isolated.py")
isolated = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(isolated)

EXAMPLES = int(os.environ.get("PYLSTM_FUZZ_EXAMPLES", 30))
TIMEOUT = 60.0  # seconds per example: a hang guard (an example takes milliseconds)
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize="CI" in os.environ,
                suppress_health_check=list(HealthCheck), print_blob=True)

# Recipes -------------------------------------------------------------------------------------

GOOD_DTYPES = ["float32", "float32", "float32", "float64", ">f4", ">f8"]
BAD_DTYPES = ["float16", "int32", "int64", "uint8", "bool", "complex64", "object", "U3", "V4"]
GOOD_FILLS = ["normal"] * 6 + ["zeros", "ones", "tiny", "int_like"]
BAD_FILLS = ["nan", "inf", "-inf", "huge"]
LAYOUTS = ["c"] * 6 + ["fortran", "strided", "readonly", "broadcast", "list"]
ACTIVATIONS = ["tanh", "sigmoid", "relu", "linear", "hard_sigmoid", "legacy_hard_sigmoid",
               "elu", "selu", "softplus", "softsign", "swish", "exponential", None, "nope", 5]


@st.composite
def arrays(draw, shape, dtypes=None, odd_one_in=12):
    """A recipe for an array of `shape`: a float dtype of either byte order (or one of
    `dtypes`), any memory layout (a nested list only without `dtypes`: a list becomes float64);
    one time in `odd_one_in + 1` (never with 0) something wrong: the shape, dtype or values,
    or not an array at all."""
    shape = list(shape)
    layouts = LAYOUTS if dtypes is None else [x for x in LAYOUTS if x != "list"]
    spec = {"a": shape, "dt": draw(st.sampled_from(dtypes or GOOD_DTYPES)),
            "fill": draw(st.sampled_from(GOOD_FILLS)), "lay": draw(st.sampled_from(layouts)),
            "seed": draw(st.integers(0, 2**16))}
    if not odd_one_in or not draw(st.sampled_from([False] * odd_one_in + [True])):
        return spec
    what = draw(st.sampled_from(["none", "scalar", "string", "shape", "shape", "dtype",
                                 "dtype", "fill", "fill"]))
    if what == "none":
        return None
    if what == "scalar":
        return {"py": draw(st.sampled_from([0, 1.5, -1, True]))}
    if what == "string":
        return {"py": "abc"}
    if what == "dtype":
        spec["dt"] = draw(st.sampled_from(BAD_DTYPES + GOOD_DTYPES))
    elif what == "fill":
        spec["fill"] = draw(st.sampled_from(BAD_FILLS))
    else:
        change = draw(st.sampled_from(["bump", "zero", "drop", "add"]))
        if change == "bump" and shape:
            k = draw(st.integers(0, len(shape) - 1))
            shape[k] = max(shape[k] + draw(st.sampled_from([-1, 1])), 0)
        elif change == "zero" and shape:
            shape[draw(st.integers(0, len(shape) - 1))] = 0
        elif change == "drop" and shape:
            shape.pop()
        else:
            shape.append(draw(st.integers(1, 2)))
    return spec


def _make(spec):
    """The array (or value) a recipe describes."""
    if spec is None:
        return None
    if "py" in spec:
        return spec["py"]
    rng = np.random.default_rng(spec["seed"])
    shape, fill = tuple(spec["a"]), spec["fill"]
    base = {"zeros": np.zeros(shape), "ones": np.ones(shape), "nan": np.full(shape, np.nan),
            "inf": np.full(shape, np.inf), "-inf": np.full(shape, -np.inf),
            "huge": np.full(shape, 3e38), "tiny": np.full(shape, 1e-40),
            "int_like": rng.integers(-3, 10, size=shape).astype(float)}.get(
        fill, rng.normal(scale=0.5, size=shape))
    if fill in ("nan", "inf") and base.size > 1:  # one bad value among good ones
        good = rng.normal(scale=0.5, size=shape)
        good.flat[rng.integers(base.size)] = base.flat[0]
        base = good
    dtype = spec["dt"]
    if dtype == "object":
        arr = base.astype(object)
    elif dtype == "U3":
        arr = base.astype("U3")
    elif dtype == "V4":
        arr = base.astype("<f4").view("V4")
    else:
        with np.errstate(all="ignore"):
            arr = base.astype(dtype)
    lay = spec["lay"]
    if lay == "fortran":
        arr = np.asfortranarray(arr)
    elif lay == "strided" and arr.ndim:
        big = np.repeat(arr, 2, axis=-1)
        arr = big[..., ::2]
    elif lay == "readonly":
        arr = arr.copy()
        arr.flags.writeable = False
    elif lay == "broadcast" and arr.ndim and arr.size:
        arr = np.broadcast_to(arr[..., :1], arr.shape)
    elif lay == "list":
        arr = arr.tolist()
    return arr


def maybe(strategy, one_in=3):
    """`strategy`'s value one time in `one_in`, else None (optional arguments mostly left out,
    so that the plain paths run too)."""
    return st.sampled_from([True] + [False] * (one_in - 1)).flatmap(
        lambda present: strategy if present else st.none())


def weight_dtypes(draw):
    """The dtype of one example's weights (and states): one precision, one byte order."""
    return [draw(st.sampled_from([">f4", "float32", ">f8", "float64"]))]


@st.composite
def sizes(draw):
    """`(B, T, D, H)`: mostly small positive sizes, sometimes zero."""
    return (draw(st.sampled_from([1, 1, 2, 3, 5] * 3 + [0])),
            draw(st.sampled_from([1, 2, 3, 7] * 3 + [0])),
            draw(st.sampled_from([1, 2, 4])), draw(st.sampled_from([1, 2, 3, 5])))


@st.composite
def lengths(draw, B, T):
    kind = draw(st.sampled_from(["none"] * 5 + ["valid", "odd"]))
    if kind == "none":
        return None
    if kind == "valid":
        return {"py": [draw(st.integers(0, T)) for _ in range(B)]}
    return {"py": draw(st.lists(st.integers(-2, T + 2), min_size=0, max_size=B + 1))}


@st.composite
def forward_recipes(draw):
    B, T, D, H = draw(sizes())
    P = draw(st.sampled_from([None, None, None, 1, 2]))
    Pout = P or H
    time_major = draw(st.booleans())
    x_shape = (T, B, D) if time_major else (B, T, D)
    wd = weight_dtypes(draw)
    r = {"B": B, "T": T, "D": D, "H": H,
         "x": draw(arrays(x_shape)), "kernel": draw(arrays((D, 4 * H), wd)),
         "recurrent_kernel": draw(arrays((Pout, 4 * H), wd)),
         "bias": draw(st.one_of(st.none(), arrays((4 * H,), wd))),
         "h0": draw(maybe(arrays((B, Pout), wd))),
         "c0": draw(maybe(arrays((B, H), wd))),
         "projection": None if P is None else draw(arrays((H, P), wd)),
         "mask": draw(maybe(arrays(x_shape[:2], dtypes=["bool"]), 4)),
         "lengths": draw(lengths(B, T)),
         "dropout_mask": draw(maybe(st.one_of(arrays((B, D)), arrays((4, B, D))), 4)),
         "recurrent_dropout_mask": draw(maybe(arrays((B, Pout)), 4)),
         "kw": {"reverse": draw(st.booleans()), "time_major": time_major,
                "return_sequences": draw(st.booleans()),
                "zero_output_for_mask": draw(st.booleans()),
                "training": draw(st.sampled_from([False, False, True])),
                "padding_side": draw(st.sampled_from(["right", "right", "left", "middle"])),
                "activation": draw(st.sampled_from(ACTIVATIONS[:4] * 3 + ACTIVATIONS)),
                "recurrent_activation": draw(st.sampled_from(["sigmoid"] * 6 + ACTIVATIONS))},
         "dy": draw(st.sampled_from(["ones"] * 6 + ["none", "wrong"])),
         }
    return r


@st.composite
def packed_recipes(draw):
    B, T, D, H = draw(sizes())
    kind = draw(st.sampled_from(["valid"] * 4 + ["any", "empty", "zeros", "increasing"]))
    if kind == "valid":
        lens = sorted((draw(st.integers(1, max(T, 1))) for _ in range(max(B, 1))),
                      reverse=True)
        batch_sizes = [sum(1 for n in lens if n > t) for t in range(lens[0])]
    elif kind == "any":
        batch_sizes = draw(st.lists(st.integers(-2, 6), min_size=0, max_size=5))
    elif kind == "empty":
        batch_sizes = []
    elif kind == "zeros":
        batch_sizes = [2, 0, 1]
    else:
        batch_sizes = [1, 2, 3]
    N = max(sum(b for b in batch_sizes if b > 0), 0)
    B0 = batch_sizes[0] if batch_sizes and batch_sizes[0] > 0 else 1
    wd = weight_dtypes(draw)
    return {"data": draw(arrays((N, D))), "batch_sizes": {"py": batch_sizes},
            "bs_dtype": draw(st.sampled_from(["int64", "int64", "int32", "float64", ">i8"])),
            "kernel": draw(arrays((D, 4 * H), wd, odd_one_in=0)),
            "recurrent_kernel": draw(arrays((H, 4 * H), wd, odd_one_in=0)),
            "bias": draw(st.one_of(st.none(), arrays((4 * H,), wd))),
            "h0": draw(st.one_of(st.none(), arrays((B0, H), wd))),
            "c0": draw(st.one_of(st.none(), arrays((B0, H), wd))),
            "reverse": draw(st.booleans()), "training": draw(st.booleans())}


@st.composite
def streaming_recipes(draw):
    B, _, D, H = draw(sizes())
    wd = weight_dtypes(draw)
    return {"x": draw(arrays((B, D))), "h": draw(arrays((B, H), wd)),
            "c": draw(arrays((B, H), wd)),
            "kernel": draw(arrays((D, 4 * H), wd)),
            "recurrent_kernel": draw(arrays((H, 4 * H), wd)),
            "bias": draw(st.one_of(st.none(), arrays((4 * H,), wd))),
            "out": draw(st.one_of(st.none(), arrays((B, H), wd[:1]))),
            "reset_mask": draw(st.one_of(st.none(), arrays((B,), dtypes=["bool"]))),
            "in_place": draw(st.booleans()), "steps": draw(st.integers(1, 3)),
            "activation": draw(st.sampled_from(["tanh"] * 4 + ACTIVATIONS))}


@st.composite
def layer_recipes(draw):
    B, T, D, H = draw(sizes())
    kind = draw(st.sampled_from(["lstm", "lstm", "bidirectional", "rnn_cell", "stacked",
                                 "dense", "embedding", "masking", "time_distributed"]))
    units = draw(st.sampled_from([H] * 18 + [0, -1, 2.5, "3", None, True]))
    config = {"units": units,
              "return_sequences": draw(st.booleans()), "return_state": draw(st.booleans()),
              "go_backwards": draw(st.booleans()),
              "dropout": draw(st.sampled_from([0.0] * 6 + [0.3, 1.0, -0.1, float("nan")])),
              "recurrent_dropout": draw(st.sampled_from([0.0] * 6 + [0.2, 2.0])),
              "activation": draw(st.sampled_from(["tanh"] * 4 + ACTIVATIONS)),
              "use_bias": draw(st.booleans()), "seed": 0,
              "proj_size": draw(st.sampled_from([None] * 4 + [1, 0, H, H + 1]))}
    return {"kind": kind, "config": config, "B": B, "T": T, "D": D,
            "x": draw(arrays((B, T, D))),
            "ids": draw(arrays((B, T), dtypes=["int32", "int64", "float32"])),
            "input_dim": draw(st.sampled_from([1, 4, 9, 0, -1])),
            "mask": draw(st.one_of(st.none(), arrays((B, T), dtypes=["bool"]))),
            "lengths": draw(lengths(B, T)),
            "initial_state": draw(st.one_of(st.none(), st.lists(arrays((B, H)), max_size=3))),
            "training": draw(st.booleans()), "step": draw(st.booleans()),
            "merge_mode": draw(st.sampled_from(["concat", "sum", "mul", "ave", None, "x"]))}


@st.composite
def model_recipes(draw):
    B, T, D, H = draw(sizes())
    out = draw(st.sampled_from([1, 2]))
    return_sequences = draw(st.booleans())
    return {"T": T, "D": D, "H": H, "out": out, "return_sequences": return_sequences,
            "x": draw(arrays((B, T, D))),
            "y": draw(arrays((B, T, out) if return_sequences else (B, out))),
            "batch_size": draw(st.sampled_from([1, 2, 32] * 5 + [0, -1, None])),
            "validation_split": draw(st.sampled_from([0.0] * 6 + [0.5, 1.0, -0.5])),
            "loss": draw(st.sampled_from(["mse", "mae", "binary_crossentropy"] * 3 + ["nope"])),
            "optimizer": draw(st.sampled_from(["adam", "sgd", "rmsprop"] * 5 + ["nope", 5])),
            "bidirectional": draw(st.booleans()), "masking": draw(st.booleans())}


@st.composite
def nn_recipes(draw):
    B, T, D, H = draw(sizes())
    num_layers = draw(st.sampled_from([1] * 6 + [2] * 3 + [0]))
    bidirectional = draw(st.booleans())
    proj = draw(st.sampled_from([0] * 8 + [1, H, -1]))
    P = proj if 0 < proj < H else H
    dirs = 2 if bidirectional else 1
    batch_first = draw(st.booleans())
    x_shape = (B, T, D) if batch_first else (T, B, D)
    if draw(st.booleans()):
        x_shape = x_shape[1:] if batch_first else (T, D)  # unbatched
    return {"D": D, "H": H, "num_layers": num_layers, "bidirectional": bidirectional,
            "proj": proj, "batch_first": batch_first,
            "dropout": draw(st.sampled_from([0.0] * 8 + [0.5, 1.5])),
            "dtype": draw(st.sampled_from(["float32", "float64"] * 3 + ["float16"])),
            "x": draw(arrays(x_shape)),
            "h0": draw(st.one_of(st.none(), arrays((max(num_layers, 1) * dirs, B, P)))),
            "c0": draw(st.one_of(st.none(), arrays((max(num_layers, 1) * dirs, B, H)))),
            "lengths": draw(lengths(B, T)), "train": draw(st.booleans()),
            "grad": draw(st.booleans()), "step": draw(st.booleans())}


@st.composite
def packing_recipes(draw):
    B, T, D, _ = draw(sizes())
    H = 2
    index_kind = draw(st.sampled_from(["none", "valid", "duplicate", "out_of_range", "empty",
                                       "float", "2d"]))
    return {"x": draw(arrays((T, B, D))), "D": D, "H": H,
            "lengths": draw(lengths(B, T)) or {"py": [T] * B},
            "batch_first": draw(st.booleans()), "enforce_sorted": draw(st.booleans()),
            "total_length": draw(st.sampled_from([None, None, 0, T, T + 2, -1, 2.5])),
            "padding_value": draw(st.sampled_from([0.0, -1.0, float("nan"), "x"])),
            "seqs": draw(st.lists(arrays((draw(st.integers(0, 4)), D)), min_size=0,
                                  max_size=4)),
            "padding_side": draw(st.sampled_from(["right", "left", "up"])),
            "packed": {"data": draw(arrays((draw(st.integers(0, 6)), D))),
                       "batch_sizes": {"py": draw(st.lists(st.integers(-1, 4), max_size=4))},
                       "index_kind": index_kind, "seed": draw(st.integers(0, 100))},
            "state_dict": draw(st.sampled_from(["valid", "missing", "extra", "wrong_shape",
                                                "not_dict", "nan", "bad_dtype"]))}


@st.composite
def load_recipes(draw):
    fmt = draw(st.sampled_from(list(hf.SUFFIX)))
    size = {"pylstm": 3900, "keras": 25400, "weights.h5": 22100, "h5": 22100, "pt": 2800,
            "safetensors": 870}[fmt]  # about the valid files' sizes
    flips = draw(st.lists(st.tuples(st.integers(0, size), st.integers(1, 255)), min_size=0,
                          max_size=4))
    return {"fmt": fmt, "loader": draw(st.sampled_from(hf.LOADERS[fmt])), "flips": flips,
            "member": draw(st.one_of(st.none(), st.integers(0, 7))),
            "cut": draw(st.one_of(st.none(), st.integers(0, size))),
            "splice": draw(st.one_of(st.none(), st.tuples(st.integers(0, size),
                                                          st.binary(max_size=64).map(bytes.hex))))}


# Targets: run in the worker; each returns normally or raises ---------------------------------


def t_ops_forward(r):
    from pylstm import ops

    arrays_ = {k: _make(r[k]) for k in ("x", "kernel", "recurrent_kernel", "bias", "h0", "c0",
                                        "projection", "mask", "dropout_mask",
                                        "recurrent_dropout_mask")}
    kw = dict(r["kw"])
    lens = _make(r["lengths"])
    if lens is None:
        del kw["padding_side"]
    else:
        kw["lengths"] = lens
    y, h, c, cache = ops.lstm_forward(**arrays_, **kw)
    if cache is not None and r["dy"] != "none":
        dy = np.ones_like(y) if r["dy"] == "ones" else np.ones(y.shape + (1,), y.dtype)
        grads = ops.lstm_backward(cache, dy=dy, dh_n=np.ones_like(h), dc_n=None)
        return [y, h, c] + [g for _, g in sorted(grads.items()) if g is not None]
    return [y, h, c]


def t_ops_packed(r):
    from pylstm import ops

    batch_sizes = np.asarray(r["batch_sizes"]["py"]).astype(r["bs_dtype"])
    y, h, c, cache = ops.lstm_forward_packed(
        _make(r["data"]), batch_sizes, _make(r["kernel"]), _make(r["recurrent_kernel"]),
        _make(r["bias"]), _make(r["h0"]), _make(r["c0"]), reverse=r["reverse"],
        training=r["training"])
    if cache is not None:
        grads = ops.lstm_backward(cache, dy=np.ones_like(y))
        return [y, h, c] + [g for _, g in sorted(grads.items()) if g is not None]
    return [y, h, c]


def t_streaming(r):
    from pylstm import streaming

    state = streaming.LSTMState(_make(r["h"]), _make(r["c"]))
    kernel, rk, bias = _make(r["kernel"]), _make(r["recurrent_kernel"]), _make(r["bias"])
    out = _make(r["out"])
    y, state2 = streaming.lstm_step(_make(r["x"]), state, kernel, rk, bias,
                                    activation=r["activation"], out=out)
    stepper = streaming.LSTMStepper(kernel, rk, bias, activation=r["activation"])
    for _ in range(r["steps"]):
        y, state2 = stepper.step(_make(r["x"]), state2, out=out if r["in_place"] else None,
                                 new_state=state2 if r["in_place"] else None)
    outputs = [y.copy(), state2.h.copy(), state2.c.copy()]
    state2.copy().reset(_make(r["reset_mask"]))
    streaming.LSTMState.from_dict({"h": _make(r["h"]), "c": _make(r["c"])})
    return outputs


def t_layers(r):
    from pylstm import layers

    cfg = dict(r["config"])
    kind = r["kind"]
    proj = cfg.pop("proj_size")
    if proj is not None:
        cfg["proj_size"] = proj
    x = _make(r["x"])
    call_kw = {"training": r["training"]}
    if kind in ("lstm", "bidirectional", "rnn_cell", "stacked"):
        for key in ("mask", "initial_state", "lengths"):
            value = r[key]
            if value is not None:
                call_kw[key] = ([_make(v) for v in value] if key == "initial_state"
                                else _make(value))
    if kind == "lstm":
        layer = layers.LSTM(**cfg)
    elif kind == "bidirectional":
        layer = layers.Bidirectional(layers.LSTM(**cfg), merge_mode=r["merge_mode"])
        call_kw.pop("lengths", None)
    elif kind in ("rnn_cell", "stacked"):
        cell_cfg = {k: cfg[k] for k in ("units", "activation", "use_bias", "dropout",
                                        "recurrent_dropout", "seed")}
        cell = layers.LSTMCell(**cell_cfg)
        if kind == "stacked":
            cell = layers.StackedRNNCells([cell, layers.LSTMCell(2, seed=0)])
        layer = layers.RNN(cell, return_sequences=cfg["return_sequences"],
                           return_state=cfg["return_state"], go_backwards=cfg["go_backwards"])
        call_kw.pop("lengths", None)
    elif kind == "dense":
        layer = layers.Dense(cfg["units"], activation=cfg["activation"],
                             use_bias=cfg["use_bias"])
    elif kind == "embedding":
        layer = layers.Embedding(r["input_dim"], cfg["units"], mask_zero=cfg["go_backwards"])
        x = _make(r["ids"])
    elif kind == "masking":
        layer = layers.Masking(mask_value=0.0)
    else:
        layer = layers.TimeDistributed(layers.Dense(cfg["units"], activation=cfg["activation"]))
    outputs = layer(x, **call_kw)
    if kind == "lstm" and r["step"] and layer.built:
        xs = np.asarray(x, dtype=layer.dtype)
        if xs.ndim == 3 and xs.shape[1]:
            layer.step(xs[:, 0], layer.initial_state(xs.shape[0]))
    if hasattr(layer, "backward") and r["training"] and layer.built:
        grads = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        layer.backward(np.ones_like(grads[0]) if len(grads) == 1 else
                       [np.ones_like(g) for g in grads])


def t_sequential(r):
    from pylstm.layers import LSTM, Bidirectional, Dense, Input, Masking
    from pylstm.models import Sequential

    stack = [Input((r["T"], r["D"]))]
    if r["masking"]:
        stack.append(Masking())
    lstm = LSTM(r["H"], return_sequences=r["return_sequences"], seed=0)
    stack.append(Bidirectional(lstm) if r["bidirectional"] else lstm)
    stack.append(Dense(r["out"]))
    model = Sequential(stack)
    x, y = _make(r["x"]), _make(r["y"])
    model.predict(x, batch_size=r["batch_size"], verbose=0)
    model.compile(optimizer=r["optimizer"], loss=r["loss"])
    model.fit(x, y, batch_size=r["batch_size"], epochs=1, verbose=0,
              validation_split=r["validation_split"])
    model.evaluate(x, y, batch_size=r["batch_size"], verbose=0)


def t_nn(r):
    from pylstm import nn

    lstm = nn.LSTM(r["D"], r["H"], num_layers=r["num_layers"], bidirectional=r["bidirectional"],
                   proj_size=r["proj"], batch_first=r["batch_first"], dropout=r["dropout"],
                   dtype=r["dtype"], seed=0)
    lstm.train(r["train"])
    h0, c0 = _make(r["h0"]), _make(r["c0"])
    hx = None if h0 is None and c0 is None else (h0, c0)
    lens = _make(r["lengths"])
    x = _make(r["x"])
    output, (h_n, c_n) = lstm(x, hx, lengths=lens) if lens is not None else lstm(x, hx)
    results = [np.array(output), np.array(h_n), np.array(c_n)]
    if r["grad"] and r["train"]:
        lstm.backward(np.ones_like(output))
    if r["step"] and not r["bidirectional"]:
        xs = np.asarray(x, dtype=lstm.dtype)
        if xs.ndim == 3 and xs.shape[0] and xs.shape[1]:
            step_in = xs[:, 0] if r["batch_first"] else xs[0]
            state = lstm.initial_state(step_in.shape[0])
            lstm.step(step_in, state)
            nn.LSTMStepState.from_dict(state.to_dict())
    cell = nn.LSTMCell(r["D"], r["H"], dtype=r["dtype"], seed=0)
    if np.ndim(x) == 3 and np.shape(x)[0]:
        cell(np.asarray(x)[0])
    return None if r["train"] else results  # training draws dropout masks


def _packed_sequence(p):
    from pylstm.nn.utils.rnn import PackedSequence

    rng = np.random.default_rng(p["seed"])
    bs = np.asarray(p["batch_sizes"]["py"], dtype=np.int64)
    B = int(bs[0]) if bs.size and bs[0] > 0 else 1
    sorted_indices = unsorted = None
    kind = p["index_kind"]
    if kind == "valid":
        sorted_indices = rng.permutation(B)
        unsorted = np.argsort(sorted_indices)
    elif kind == "duplicate":
        sorted_indices = np.zeros(B, np.int64)
    elif kind == "out_of_range":
        sorted_indices = np.arange(B) + 5
    elif kind == "empty":
        sorted_indices = np.zeros(0, np.int64)
    elif kind == "float":
        sorted_indices = np.arange(B, dtype=float)
    elif kind == "2d":
        sorted_indices = np.arange(B)[None]
    return PackedSequence(_make(p["data"]), bs, sorted_indices, unsorted)


def t_packing(r):
    from pylstm import nn
    from pylstm.nn.utils import rnn

    lstm = nn.LSTM(r["D"], r["H"], seed=0)
    for step in ("pack", "pad", "pad_sequence", "pack_sequence", "lstm_packed", "state_dict"):
        try:
            if step == "pack":
                packed = rnn.pack_padded_sequence(_make(r["x"]), _make(r["lengths"]),
                                                  batch_first=r["batch_first"],
                                                  enforce_sorted=r["enforce_sorted"])
                rnn.pad_packed_sequence(packed, batch_first=r["batch_first"],
                                        padding_value=r["padding_value"],
                                        total_length=r["total_length"])
                lstm(packed)
            elif step == "pad":
                rnn.pad_packed_sequence(_packed_sequence(r["packed"]),
                                        total_length=r["total_length"])
            elif step == "pad_sequence":
                rnn.pad_sequence([_make(s) for s in r["seqs"]], batch_first=r["batch_first"],
                                 padding_side=r["padding_side"])
            elif step == "pack_sequence":
                rnn.pack_sequence([_make(s) for s in r["seqs"]],
                                  enforce_sorted=r["enforce_sorted"])
            elif step == "lstm_packed":
                lstm(_packed_sequence(r["packed"]))
            else:
                state = {k: np.asarray(v) for k, v in lstm.state_dict().items()}
                kind = r["state_dict"]
                if kind == "missing":
                    state.pop("bias_ih_l0")
                elif kind == "extra":
                    state["weight_ih_l9"] = np.zeros(3)
                elif kind == "wrong_shape":
                    state["weight_hh_l0"] = state["weight_hh_l0"].T.copy()
                elif kind == "not_dict":
                    state = list(state.values())
                elif kind == "nan":
                    state["bias_hh_l0"] = state["bias_hh_l0"] * np.nan
                elif kind == "bad_dtype":
                    state["bias_hh_l0"] = state["bias_hh_l0"].astype(">i4")
                lstm.load_state_dict(state)
        except (ValueError, TypeError):
            continue  # each step is checked on its own


def _damage(data, r):
    data = bytearray(data)
    for offset, value in r["flips"]:
        if data:
            data[offset % len(data)] ^= value
    if r["splice"] is not None:
        at, blob = r["splice"]
        data[at:at] = bytes.fromhex(blob)
    if r["cut"] is not None:
        del data[r["cut"] % (len(data) + 1):]
    return bytes(data)


def t_load(r):
    """Loads a damaged copy of the valid file of `r["fmt"]` (in `r["corpus"]`) and checks the
    outcome as the hostile corpus does (a load, or a ValueError/TypeError naming the file, and
    never an external file's bytes)."""
    corpus = r["corpus"]
    suffix = hf.SUFFIX[r["fmt"]]
    data = Path(corpus, f"valid{suffix}").read_bytes()
    if r["member"] is not None and data.startswith(b"PK"):
        # Damage one member of the zip, and zip it again with valid checksums.
        members = hf._members(io.BytesIO(data))
        k = r["member"] % len(members)
        members[k] = (members[k][0], _damage(members[k][1], r))
        data = hf._zip(members)
    else:
        data = _damage(data, r)
    name = f"fuzz/damaged{suffix}"
    Path(corpus, "fuzz").mkdir(exist_ok=True)
    Path(corpus, name).write_bytes(bytes(data))
    entry = {"name": name, "format": r["fmt"], "expect": hf.ERROR_OR_LOADS}
    result = hf.run_entry(corpus, entry, r["loader"])
    failure = hf.judge(entry, r["loader"], result)
    if failure is not None:
        raise _Failure(failure)


class _Failure(Exception):
    """A loader outcome that breaks the contract (reported as a failure, not an error)."""


def _native(recipe):
    """`recipe` with every big-endian dtype made native (same values, same layouts)."""
    if isinstance(recipe, dict):
        return {k: ({">f4": "float32", ">f8": "float64", ">i8": "int64"}.get(v, v)
                    if k in ("dt", "bs_dtype") else _native(v)) for k, v in recipe.items()}
    if isinstance(recipe, list):
        return [_native(v) for v in recipe]
    return recipe


def _same(a, b):
    return len(a) == len(b) and all(
        np.asarray(x).shape == np.asarray(y).shape
        and np.array_equal(np.asarray(x), np.asarray(y), equal_nan=True) for x, y in zip(a, b))


def run(target, recipe):
    """Runs `t_<target>(recipe)`; returns `{"outcome": "ok"}` or what was raised. A target
    that returns its results is run again with every big-endian array made native: the
    results must be bitwise the same (no silent wrong answer from the byte order)."""
    try:
        results = globals()[f"t_{target}"](recipe)
        native = _native(recipe)
        if results is not None and native != recipe:
            if not _same(results, globals()[f"t_{target}"](native)):
                raise _Failure("big-endian inputs gave results different from the same "
                               "values in native byte order")
        return {"outcome": "ok"}
    except BaseException as e:  # noqa: B036 - every exception is the data here
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        return {"outcome": "raised", "type": f"{type(e).__module__}.{type(e).__qualname__}",
                "allowed": isinstance(e, (ValueError, TypeError)) and not isinstance(e, _Failure),
                "message": str(e)[:500],
                "where": "".join(traceback.format_tb(e.__traceback__)[-3:])[-1500:]}


# Tests -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker():
    w = isolated.Worker(preload=["h5py"])
    yield w
    w.close()


@pytest.fixture(scope="module")
def load_worker(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("fuzz_corpus")
    hf.write_valid(corpus)
    w = isolated.Worker(preload=["torch", "h5py"], cwd=corpus)
    yield w, str(corpus)
    w.close()


def check(worker, target, recipe):
    status, value = worker.call(__file__, "run", target, recipe, timeout=TIMEOUT)
    reproduce = (f"reproduce: python -P tests/files/test_fuzz_api.py {target} "
                 f"'{json.dumps(recipe)}'")
    event(status if status != "ok" else value["outcome"])
    if status != "ok":
        pytest.fail(f"{target}: {status}: {value}\n{reproduce}", pytrace=False)
    if value["outcome"] == "raised" and not value["allowed"]:
        pytest.fail(f"{target} raised {value['type']}: {value['message']}\n{value['where']}\n"
                    f"{reproduce}", pytrace=False)


@FUZZ
@given(forward_recipes())
def test_ops_forward_backward(worker, recipe):
    check(worker, "ops_forward", recipe)


@FUZZ
@given(packed_recipes())
def test_ops_packed(worker, recipe):
    check(worker, "ops_packed", recipe)


@FUZZ
@given(streaming_recipes())
def test_streaming(worker, recipe):
    check(worker, "streaming", recipe)


@FUZZ
@given(layer_recipes())
def test_layers(worker, recipe):
    check(worker, "layers", recipe)


@FUZZ
@given(model_recipes())
def test_sequential(worker, recipe):
    check(worker, "sequential", recipe)


@FUZZ
@given(nn_recipes())
def test_nn_lstm_and_cell(worker, recipe):
    check(worker, "nn", recipe)


@FUZZ
@given(packing_recipes())
def test_nn_packed_sequences_and_state_dicts(worker, recipe):
    check(worker, "packing", recipe)


@settings(FUZZ, max_examples=2 * EXAMPLES)
@given(load_recipes())
def test_loaders_on_damaged_files(load_worker, recipe):
    worker, corpus = load_worker
    check(worker, "load", dict(recipe, corpus=corpus))


def test_worker_reports_crashes_and_hangs():
    """The isolation itself: a segfault and a hang in the worker come back as failures, and
    the next call runs in a fresh worker; an exception comes back described."""
    w = isolated.Worker()
    try:
        status, value = w.call(__file__, "raise_for_test", timeout=TIMEOUT)
        assert status == "raised" and value["type"] == "json.decoder.JSONDecodeError"
        assert "ValueError" in value["mro"] and "Expecting value" in value["message"]
        status, value = w.call(__file__, "crash_for_test", timeout=TIMEOUT)
        assert status == "crash" and value.startswith("SIGSEGV")
        status, value = w.call(__file__, "hang_for_test", timeout=2)
        assert status == "hang"
        assert w.call(__file__, "run", "streaming", _VALID_STREAMING) == ("ok", {"outcome": "ok"})
    finally:
        w.close()


_VALID_STREAMING = {
    "x": {"a": [1, 2], "dt": "float32", "fill": "normal", "lay": "c", "seed": 0},
    "h": {"a": [1, 3], "dt": "float32", "fill": "normal", "lay": "c", "seed": 1},
    "c": {"a": [1, 3], "dt": "float32", "fill": "normal", "lay": "c", "seed": 2},
    "kernel": {"a": [2, 12], "dt": "float32", "fill": "normal", "lay": "c", "seed": 3},
    "recurrent_kernel": {"a": [3, 12], "dt": "float32", "fill": "normal", "lay": "c", "seed": 4},
    "bias": None, "out": None, "reset_mask": None, "in_place": True, "steps": 2,
    "activation": "tanh"}


def raise_for_test():
    json.loads("")


def crash_for_test():
    import ctypes

    ctypes.string_at(0)


def hang_for_test():
    import time

    time.sleep(60)


if __name__ == "__main__":
    target, recipe = sys.argv[1], json.loads(sys.argv[2])
    if target == "load" and not Path(recipe["corpus"], "reference.npz").exists():
        recipe["corpus"] = tempfile.mkdtemp()
        hf.write_valid(recipe["corpus"])
    globals()[f"t_{target}"](recipe)
    print("no exception")
