"""Bad input fails with a clear `TypeError` / `ValueError` naming the argument, the expected and
the received value; non-contiguous input works; damaged model files raise `ValueError`; random
small problems through `pylstm.ops` match the NumPy reference and never crash."""

import json
import re
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pylstm import _reference as ref
from pylstm import ops
from pylstm.layers import LSTM, Dense, Input
from pylstm.models import Sequential, load_model

B, T, D, H = 2, 3, 4, 5
DTYPE_ERRORS = [  # (array, dtype in the message)
    pytest.param(np.zeros((B, T, D), np.int64), "int64", id="int"),
    pytest.param(np.zeros((B, T, D), np.uint8), "uint8", id="uint8"),
    pytest.param(np.zeros((B, T, D), bool), "bool", id="bool"),
    pytest.param(np.zeros((B, T, D), object), "object", id="object"),
    pytest.param(np.full((B, T, D), "a"), "<U1", id="str"),
    pytest.param(np.zeros((B, T, D), np.complex128), "complex128", id="complex"),
]
NONFINITE = [np.nan, np.inf, -np.inf]


def weights(dtype=np.float32, d=D, h=H, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=s) * 0.5).astype(dtype) for s in ((d, 4 * h), (h, 4 * h), (4 * h,))]


def built_layer(**kwargs):
    layer = LSTM(H, seed=0, **kwargs)
    layer.build((None, T, D))
    return layer


def x_of(shape=(B, T, D), dtype=np.float32, seed=1):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


# Layer calls ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(T, D), (1, B, T, D)], ids=["2d", "4d"])
def test_layer_wrong_ndim(shape):
    x = np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match=rf"`inputs` must be 3-D, received a {len(shape)}-D"):
        built_layer()(x)
    with pytest.raises(ValueError, match=r"\(batch, timesteps, features\).*received input "
                                         rf"shape {re_shape(shape)}"):
        LSTM(H)(x)  # unbuilt: build rejects the shape


def test_layer_wrong_features_after_build():
    layer = built_layer()
    with pytest.raises(ValueError, match=rf"`inputs` must have {D} features.*received shape "
                                         rf"{re_shape((B, T, D + 1))}"):
        layer(np.zeros((B, T, D + 1), np.float32))


@pytest.mark.parametrize("x,dtype_name", DTYPE_ERRORS)
@pytest.mark.parametrize("built", [False, True])
def test_layer_non_float_dtype(x, dtype_name, built):
    layer = built_layer() if built else LSTM(H)
    with pytest.raises(TypeError, match=rf"`inputs` must be a real floating-point array.*"
                                        rf"received dtype {re.escape(dtype_name)}"):
        layer(x)


@pytest.mark.parametrize("value", NONFINITE, ids=["nan", "+inf", "-inf"])
def test_layer_nonfinite_input(value):
    x = x_of()
    x[1, 2, 3] = value
    with pytest.raises(ValueError, match=r"`inputs` contains 1 NaN or inf value"):
        built_layer()(x)


@pytest.mark.parametrize("shape,what", [((0, T, D), "empty batch"), ((B, 0, D), "zero timesteps")])
def test_layer_empty_batch_or_sequence(shape, what):
    with pytest.raises(ValueError, match=rf"`inputs` has (an )?{what} \(shape "
                                         rf"{re_shape(shape)}\)"):
        built_layer()(np.zeros(shape, np.float32))


@pytest.mark.parametrize("state,match", [
    ([np.zeros((B, H))], r"`initial_state` must be a list \[h_0 \(2, 5\), c_0 \(2, 5\)\]"),
    (np.zeros((2, B, H)), r"`initial_state` must be a list"),
    ([np.zeros((B, H + 1)), np.zeros((B, H))],
     r"`initial_state\[0\]` must have shape \(2, 5\), received shape \(2, 6\)"),
    ([np.zeros((B, H)), np.zeros((B + 1, H))],
     r"`initial_state\[1\]` must have shape \(2, 5\), received shape \(3, 5\)"),
    ([np.zeros((B, H)), np.zeros((B, H, 1))],
     r"`initial_state\[1\]` must have shape \(2, 5\), received shape \(2, 5, 1\)"),
], ids=["one_state", "array", "h_shape", "c_shape", "c_ndim"])
def test_layer_bad_initial_state(state, match):
    with pytest.raises(ValueError, match=match):
        built_layer()(x_of(), initial_state=state)


def test_layer_initial_state_dtype_and_nonfinite():
    layer = built_layer()
    with pytest.raises(TypeError, match=r"`initial_state\[0\]` must be a real floating.*int64"):
        layer(x_of(), initial_state=[np.zeros((B, H), np.int64), np.zeros((B, H))])
    # Names ops' `h0`/`c0` rather than `initial_state[i]`.
    with pytest.raises(ValueError, match=r"`(h0|initial_state\[0\])` contains 1 NaN or inf"):
        h0 = np.zeros((B, H))
        h0[0, 0] = np.nan
        layer(x_of(), initial_state=[h0, np.zeros((B, H))])
    with pytest.raises(ValueError, match=r"`(c0|initial_state\[1\])` contains 1 NaN or inf"):
        c0 = np.zeros((B, H))
        c0[0, 0] = -np.inf
        layer(x_of(), initial_state=[np.zeros((B, H)), c0])


@pytest.mark.parametrize("mask,error,match", [
    (np.ones((B, T + 1), bool), ValueError,
     r"`mask` must have shape \(2, 3\), received shape \(2, 4\)"),
    (np.ones((T, B), bool), ValueError,
     r"`mask` must have shape \(2, 3\), received shape \(3, 2\)"),
    (np.ones((B, T), np.float32), TypeError, r"`mask` must be a boolean array.*float32"),
    (np.ones((B, T), np.int64), TypeError, r"`mask` must be a boolean array.*int64"),
    (np.ones((B, T), object), TypeError, r"`mask` must be a boolean array.*object"),
], ids=["long", "transposed", "float", "int", "object"])
def test_layer_bad_mask(mask, error, match):
    with pytest.raises(error, match=match):
        built_layer()(x_of(), mask=mask)


@pytest.mark.parametrize("units", [0, -1, 2.5, "4", True, None, np.float64(3.0)])
def test_layer_bad_units(units):
    with pytest.raises(ValueError, match=rf"`units` must be a positive int, received "
                                         rf"{re.escape(repr(units))}"):
        LSTM(units)


@pytest.mark.parametrize("arg", ["activation", "recurrent_activation"])
@pytest.mark.parametrize("value", ["softmax", "Tanh", "", 3])
def test_layer_unknown_activation(arg, value):
    expected = r"one of \[.*'tanh'.*\], None" if isinstance(value, str) else "an activation name"
    with pytest.raises(ValueError, match=rf"`{arg}` must be {expected}.* or a callable, "
                                         rf"received {re.escape(repr(value))}"):
        LSTM(H, **{arg: value})


def test_layer_bad_dtype_and_initializer():
    with pytest.raises(ValueError, match=r"`dtype` must be 'float32' or 'float64', received "
                                         r"'int32'"):
        LSTM(H, dtype="int32")
    with pytest.raises(ValueError, match=r"[Uu]nknown initializer 'nope'"):
        LSTM(H, kernel_initializer="nope")


def test_layer_ragged_list_names_inputs():
    with pytest.raises((TypeError, ValueError), match="`inputs`"):
        LSTM(H)([[[1.0], [2.0, 3.0]]])


def test_layer_backward_bad_gradient_shape():
    layer = built_layer()
    layer(x_of(), training=True)
    with pytest.raises(ValueError, match=r"`dy` must have shape \(2, 5\), received shape "
                                         r"\(2, 6\)"):
        layer.backward(np.zeros((B, H + 1)))


# ops.lstm_forward -----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(T, D), (1, B, T, D)], ids=["2d", "4d"])
def test_ops_wrong_ndim(shape):
    with pytest.raises(ValueError, match=rf"`x` must be 3-D, received a {len(shape)}-D array "
                                         rf"of shape {re_shape(shape)}"):
        ops.lstm_forward(np.zeros(shape, np.float32), *weights())


def test_ops_wrong_features():
    with pytest.raises(ValueError, match=rf"`x` must have {D} features.*`kernel` has {D} rows; "
                                         rf"received shape {re_shape((B, T, D + 2))}"):
        ops.lstm_forward(np.zeros((B, T, D + 2), np.float32), *weights())


@pytest.mark.parametrize("x,dtype_name", DTYPE_ERRORS)
def test_ops_non_float_dtype(x, dtype_name):
    with pytest.raises(TypeError, match=rf"`x` must be a real floating-point array.*received "
                                        rf"dtype {re.escape(dtype_name)}"):
        ops.lstm_forward(x, *weights())


@pytest.mark.parametrize("value", NONFINITE, ids=["nan", "+inf", "-inf"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ops_nonfinite_input(value, dtype):
    x = x_of(dtype=dtype)
    x[0, 0, 0] = value
    x[1, 2, 3] = value
    with pytest.raises(ValueError, match=r"`x` contains 2 NaN or inf value"):
        ops.lstm_forward(x, *weights(dtype))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_ops_float64_overflowing_float32_is_rejected():
    x = x_of(dtype=np.float64)
    x[0, 0, 0] = 1e300  # finite in float64, inf once cast to the float32 weights
    with pytest.raises(ValueError, match=r"`x` contains 1 NaN or inf"):
        ops.lstm_forward(x, *weights(np.float32))


@pytest.mark.parametrize("shape,what", [((0, T, D), "an empty batch"),
                                        ((B, 0, D), "zero timesteps"),
                                        ((0, 0, D), "an empty batch")])
def test_ops_empty(shape, what):
    with pytest.raises(ValueError, match=rf"`x` has {what} \(shape {re_shape(shape)}\)"):
        ops.lstm_forward(np.zeros(shape, np.float32), *weights())


@pytest.mark.parametrize("name,shape", [("h0", (B, H + 1)), ("h0", (B + 1, H)), ("h0", (H,)),
                                        ("c0", (B, H - 1)), ("c0", (1, B, H))])
def test_ops_bad_initial_state(name, shape):
    with pytest.raises(ValueError, match=rf"`{name}` must have shape \(2, 5\), received shape "
                                         rf"{re_shape(shape)}"):
        ops.lstm_forward(x_of(), *weights(), **{name: np.zeros(shape, np.float32)})


def test_ops_bad_mask():
    with pytest.raises(ValueError, match=r"`mask` must have shape \(2, 3\), received shape "
                                         r"\(3, 2\)"):
        ops.lstm_forward(x_of(), *weights(), mask=np.ones((T, B), bool))
    with pytest.raises(ValueError, match=r"`mask` must have shape \(3, 2\), received shape "
                                         r"\(2, 3\)"):
        ops.lstm_forward(x_of().transpose(1, 0, 2), *weights(), mask=np.ones((B, T), bool),
                         time_major=True)
    with pytest.raises(TypeError, match=r"`mask` must be a boolean array, received dtype uint8"):
        ops.lstm_forward(x_of(), *weights(), mask=np.ones((B, T), np.uint8))


def test_ops_bad_weights():
    k, r, b = weights()
    x = x_of()
    with pytest.raises(ValueError, match=r"`kernel` must have shape \(D, 4\*units\).*"
                                         r"received shape \(4, 7\)"):
        ops.lstm_forward(x, k[:, :7], r, b)
    with pytest.raises(ValueError, match=r"`recurrent_kernel` must have shape \(5, 20\).*"
                                         r"received shape \(4, 20\)"):
        ops.lstm_forward(x, k, r[:4], b)
    with pytest.raises(ValueError, match=r"`bias` must have shape \(20,\), received shape "
                                         r"\(19,\)"):
        ops.lstm_forward(x, k, r, b[:19])
    with pytest.raises(TypeError, match=r"`recurrent_kernel` must have dtype float32 like "
                                        r"`kernel`, received dtype float64"):
        ops.lstm_forward(x, k, r.astype(np.float64), b)
    with pytest.raises(TypeError, match=r"`kernel` must be float32 or float64, received dtype "
                                        r"float16"):
        ops.lstm_forward(x, k.astype(np.float16), r.astype(np.float16))
    with pytest.raises(TypeError, match=r"`kernel` must be a real floating-point array.*int64"):
        ops.lstm_forward(x, k.astype(np.int64), r)
    bad = k.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"`kernel` contains 1 NaN or inf"):
        ops.lstm_forward(x, bad, r, b)
    with pytest.raises(ValueError, match=r"`projection` must have shape \(5, 3\), received "
                                         r"shape \(5, 4\)"):
        ops.lstm_forward(x, k, np.zeros((3, 20), np.float32), b,
                         projection=np.zeros((H, 4), np.float32))
    with pytest.raises(ValueError, match=r"`activation` must be one of .* received 'gelu'"):
        ops.lstm_forward(x, k, r, b, activation="gelu")


def test_ops_backward_bad_arguments():
    k, r, b = weights()
    y, _, _, cache = ops.lstm_forward(x_of(), k, r, b, training=True)
    with pytest.raises(TypeError, match=r"`cache` must be the LSTMCache.*received NoneType"):
        ops.lstm_backward(ops.lstm_forward(x_of(), k, r, b)[3], np.ones_like(y))
    with pytest.raises(ValueError, match=r"`dy` must have shape \(2, 3, 5\), received shape "
                                         r"\(2, 3, 4\)"):
        ops.lstm_backward(cache, np.ones((B, T, H - 1), np.float32))
    with pytest.raises(ValueError, match=r"`dh_n` must have shape \(2, 5\)"):
        ops.lstm_backward(cache, None, np.ones((B, H + 1), np.float32))
    dy = np.ones_like(y)
    dy[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"`dy` contains 1 NaN or inf"):
        ops.lstm_backward(cache, dy)


# Non-contiguous arrays work -------------------------------------------------------------------


def _layouts(a):
    """`a`'s values in non-contiguous layouts: Fortran order, a strided view of a larger array,
    a negative-stride view, and (for 3-D) a transposed time-major array."""
    big = np.zeros(tuple(2 * n for n in a.shape), a.dtype)
    strided = big[tuple(slice(None, None, 2) for _ in a.shape)]
    strided[...] = a
    flipped = np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    out = {"fortran": np.asfortranarray(a), "strided": strided, "negative_stride": flipped}
    if a.ndim == 3:
        out["transposed"] = np.ascontiguousarray(a.transpose(1, 0, 2)).transpose(1, 0, 2)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["fortran", "strided", "negative_stride", "transposed"])
def test_ops_noncontiguous_arguments_work(dtype, layout):
    rng = np.random.default_rng(2)
    x = x_of(dtype=dtype)
    k, r, b = weights(dtype)
    h0, c0 = rng.normal(size=(2, B, H)).astype(dtype)
    mask = np.array([[True, False, True], [True, True, False]])
    args = dict(x=x, kernel=k, recurrent_kernel=r, bias=b, h0=h0, c0=c0, mask=mask)
    want = ops.lstm_forward(**args, training=True)
    dy = np.ones_like(want[0])
    grads_want = ops.lstm_backward(want[3], dy)
    for name, value in args.items():
        views = _layouts(value)
        if layout not in views:
            continue
        view = views[layout]
        if not (value.ndim == 1 and layout == "fortran"):
            assert not view.flags.c_contiguous, (name, layout)
        np.testing.assert_array_equal(view, value)
        got = ops.lstm_forward(**{**args, name: view}, training=True)
        for g, w in zip(got[:3], want[:3]):
            np.testing.assert_array_equal(g, w, err_msg=f"{name} {layout}")
        grads = ops.lstm_backward(got[3], _layouts(dy).get(layout, dy))
        for key, w in grads_want.items():
            if w is not None:
                np.testing.assert_array_equal(grads[key], w, err_msg=f"d{key} {name} {layout}")


# Sequential -----------------------------------------------------------------------------------


@pytest.fixture
def model():
    model = Sequential([LSTM(3, seed=0), Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.build((None, T, D))
    return model


def test_fit_and_predict_nonfinite(model):
    x, y = x_of((6, T, D)), np.zeros((6, 1), np.float32)
    bad = x.copy()
    bad[2, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"`x` contains NaN or inf"):
        model.fit(bad, y, verbose=0)
    with pytest.raises(ValueError, match=r"`y` contains NaN or inf"):
        model.fit(x, y + np.inf, verbose=0)
    with pytest.raises(ValueError, match=r"`x` contains NaN or inf"):
        model.predict(bad)
    with pytest.raises(ValueError, match=r"`x` contains NaN or inf"):
        model.evaluate(x - np.inf, y, verbose=0)


def test_fit_mismatched_lengths(model):
    x, y = x_of((6, T, D)), np.zeros((5, 1), np.float32)
    with pytest.raises(ValueError, match=r"`x` and `y` must have the same number of samples, "
                                         r"received 6 and 5"):
        model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match=r"received 6 and 5"):
        model.evaluate(x, y, verbose=0)


@pytest.mark.parametrize("dtype", [object, np.complex64, "U3"])
def test_fit_and_predict_non_numeric(model, dtype):
    x = np.zeros((6, T, D)).astype(dtype)
    y = np.zeros((6, 1), np.float32)
    with pytest.raises(TypeError, match=r"`x` must be a numeric array, received dtype"):
        model.fit(x, y, verbose=0)
    with pytest.raises(TypeError, match=r"`x` must be a numeric array, received dtype"):
        model.predict(x)
    with pytest.raises(TypeError, match=r"`y` must be a numeric array, received dtype"):
        model.fit(np.zeros((6, T, D)), y.astype(dtype), verbose=0)


def test_fit_and_predict_wrong_shapes(model):
    with pytest.raises(ValueError, match=rf"`inputs` must have {D} features"):
        model.fit(np.zeros((6, T, D + 1)), np.zeros((6, 1)), verbose=0)
    with pytest.raises(ValueError, match=r"`inputs` must be 3-D, received a 2-D array"):
        model.predict(np.zeros((T, D)))
    with pytest.raises(ValueError, match=r"`x` must hold at least one sample, received shape "
                                         r"\(0, 3, 4\)"):
        model.predict(np.zeros((0, T, D)))
    with pytest.raises(ValueError, match=r"`y_true` and `y_pred` must have the same shape"):
        model.fit(np.zeros((6, T, D)), np.zeros((6, 2)), verbose=0)


# load_model on damaged files ------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path, model):
    path = tmp_path / "model.pylstm"
    model.save(path)
    return path, path.read_bytes()


def _write(tmp_path, data, name="damaged"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_load_model_round_trip_sanity(saved, model):
    path, _ = saved
    x = x_of((4, T, D))
    np.testing.assert_array_equal(load_model(path).predict(x), model.predict(x))


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_load_model_truncated(tmp_path, saved, fraction):
    _, data = saved
    path = _write(tmp_path, data[:int(len(data) * fraction)])
    with pytest.raises(ValueError, match="is not a valid pylstm model file"):
        load_model(path)


@pytest.mark.parametrize("seed", range(5))
def test_load_model_random_bytes(tmp_path, seed):
    data = np.random.default_rng(seed).bytes(2000)
    for prefix in (b"", b"PK\x03\x04", b"\x93NUMPY"):  # also pretend to be a zip or a .npy
        with pytest.raises(ValueError, match="is not a valid pylstm model file"):
            load_model(_write(tmp_path, prefix + data))


def test_load_model_corrupted_payload(tmp_path, saved):
    _, data = saved
    damaged = bytearray(data)
    start = len(data) // 3
    damaged[start:start + 40] = bytes(b ^ 0xFF for b in damaged[start:start + 40])
    with pytest.raises(ValueError, match="is not a valid pylstm model file"):
        load_model(_write(tmp_path, bytes(damaged)))


def test_load_model_zip_without_config(tmp_path, model):
    path = tmp_path / "noconfig.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("weight_0000.npy", b"not an array")
    with pytest.raises(ValueError, match="no config.json"):
        load_model(path)
    arrays = {f"weight_{i:04d}": w for i, w in enumerate(model.get_weights())}
    np.savez(tmp_path / "weights_only.npz", **arrays)
    with pytest.raises(ValueError, match="no config.json"):
        load_model(tmp_path / "weights_only.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single NumPy array"):
        load_model(tmp_path / "single.npy")


def _rewrite(tmp_path, path, edit_config=None, edit_arrays=None):
    """A copy of the saved model at `path` with its config and/or arrays edited."""
    with np.load(path) as archive:
        arrays = {n: archive[n] for n in archive.files}
    config = json.loads(arrays.pop("config.json").tobytes())
    if edit_config:
        edit_config(config)
    if edit_arrays:
        edit_arrays(arrays)
    out = tmp_path / "edited.npz"
    np.savez(out, **arrays, **{"config.json": np.frombuffer(json.dumps(config).encode(),
                                                             np.uint8)})
    return out


def _set(keys, value):
    def edit(config):
        node = config
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return edit


@pytest.mark.parametrize("edit,match", [
    (_set(["format"], "keras"), "does not declare the pylstm format"),
    (_set(["format_version"], 99), "unsupported format_version 99"),
    (_set(["model"], [1, 2]), "model config is malformed"),
    (_set(["model", "layers", 0, "config", "bogus"], 1), "model config is malformed"),
    (_set(["model", "layers", 0, "config", "units"], 7), r"expects shape \(4, 28\)"),
    (_set(["model", "layers", 0, "config", "units"], -3), r"`units` must be a positive int"),
    (_set(["model", "layers", 0, "class_name"], "Nope"), "Unknown layer class 'Nope'"),
    (_set(["compile_config", "optimizer"], "nope"), "Unknown optimizer 'nope'"),
], ids=["format", "version", "model_type", "unknown_kwarg", "units_shape", "units_negative",
        "class", "optimizer"])
def test_load_model_bad_config(tmp_path, saved, edit, match):
    with pytest.raises(ValueError, match=match):
        load_model(_rewrite(tmp_path, saved[0], edit_config=edit))


def test_load_model_bad_json_and_missing_weight(tmp_path, saved):
    np.savez(tmp_path / "badjson.npz", **{"config.json": np.frombuffer(b"{oops", np.uint8)})
    with pytest.raises(ValueError, match="config.json is not valid JSON.*JSONDecodeError"):
        load_model(tmp_path / "badjson.npz")
    path = _rewrite(tmp_path, saved[0], edit_arrays=lambda a: a.pop("weight_0004"))
    with pytest.raises(ValueError, match=r"expects 5 weight arrays, received 4"):
        load_model(path)


def _patch_central_directory(data, offset, value):
    """Sets a 2-byte little-endian field of every central-directory entry of a zip."""
    damaged = bytearray(data)
    at = damaged.find(b"PK\x01\x02")
    while at != -1:
        damaged[at + offset:at + offset + 2] = value.to_bytes(2, "little")
        at = damaged.find(b"PK\x01\x02", at + 4)
    return bytes(damaged)


@pytest.mark.parametrize("offset,value", [(10, 99), (8, 1)], ids=["compression", "encrypted"])
def test_load_model_damaged_zip_header(tmp_path, saved, offset, value):
    path = _write(tmp_path, _patch_central_directory(saved[1], offset, value))
    with pytest.raises(ValueError, match="is not a valid pylstm model file"):
        load_model(path)


# Property test: ops == reference, never a crash ------------------------------------------------


@st.composite
def problems(draw, max_abs):
    sizes = st.integers(1, 5)
    b, t, d, h = draw(sizes), draw(sizes), draw(sizes), draw(sizes)
    floats = st.floats(-max_abs, max_abs, allow_nan=False, allow_infinity=False, width=64)
    x = np.array(draw(st.lists(floats, min_size=b * t * d, max_size=b * t * d))).reshape(b, t, d)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    k = rng.normal(size=(d, 4 * h))
    r = rng.normal(size=(h, 4 * h))
    bias = rng.normal(size=4 * h)
    h0, c0 = rng.normal(size=(2, b, h))
    mask = rng.random((b, t)) > 0.3 if draw(st.booleans()) else None
    options = dict(reverse=draw(st.booleans()), return_sequences=draw(st.booleans()), mask=mask)
    return (x, k, r, bias, h0, c0), options


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(problems(max_abs=1e3))
def test_ops_matches_reference_on_random_problems(problem):
    args, options = problem
    got = ops.lstm_forward(*args, training=True, **options)
    want = ref.lstm_forward(*args, training=True, **options)
    for g, w in zip(got[:3], want[:3]):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10)
    dy = np.ones_like(got[0])
    grads = ops.lstm_backward(got[3], dy)
    grads_want = ref.lstm_backward(want[3], dy)
    for key, w in grads_want.items():
        if w is not None:
            scale = max(1.0, float(np.abs(w).max()))
            np.testing.assert_allclose(grads[key], w, rtol=1e-9, atol=1e-9 * scale, err_msg=key)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(problems(max_abs=1e308), st.sampled_from([np.float32, np.float64]))
def test_ops_never_crashes_on_finite_input(problem, dtype):
    (x, *weights_), options = problem
    weights_ = [w.astype(dtype) for w in weights_]
    try:
        y, h_n, c_n, _ = ops.lstm_forward(x, *weights_, **options)
    except ValueError as e:  # huge float64 values overflow to inf in float32
        assert dtype is np.float32 and "`x` contains" in str(e)
        return
    B_, T_, _ = x.shape
    H_ = weights_[1].shape[0]
    assert y.shape == ((B_, T_, H_) if options["return_sequences"] else (B_, H_))
    assert h_n.shape == c_n.shape == (B_, H_)
    # Gates in [0, 1] bound the states: |c| <= T + |c0| and |h| <= 1, or h0 where masked
    # throughout. NaN-tolerant: inf - inf in an overflowing x @ kernel is IEEE's NaN.
    h0, c0 = weights_[3], weights_[4]
    assert not np.any(np.abs(h_n) > max(1.0, np.abs(h0).max()))
    assert not np.any(np.abs(c_n) > T_ + np.abs(c0).max() + 1e-6)


def re_shape(shape):
    """A regex matching `shape`'s repr, e.g. `\\(2, 3\\)`."""
    return re.escape(str(tuple(shape)))



@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
@pytest.mark.parametrize("batch_size", [0, -3, 2.5, "8"])
def test_model_bad_batch_size(method, batch_size):
    model = Sequential([Input((T, D)), LSTM(H), Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = x_of(), np.zeros((B, 1), np.float32)
    args = (x,) if method == "predict" else (x, y)
    with pytest.raises(ValueError, match=rf"`batch_size` must be a positive int, received "
                                         rf"{re.escape(repr(batch_size))}"):
        getattr(model, method)(*args, batch_size=batch_size, verbose=0)
