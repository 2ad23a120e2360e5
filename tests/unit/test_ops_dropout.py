"""Dropout masks in `ops.lstm_forward` (Keras 3 LSTMCell semantics): against the NumPy
reference, float64 central differences with fixed masks, the semantics of each mask, time-major
input and bad input. Keras 3's LSTM with the same masks injected:
parity/keras/test_ops_dropout.py."""

import itertools

import numpy as np
import pytest

from pylstm import _reference as ref
from pylstm import ops

B, T, D, H = 3, 4, 5, 4
NAMES = ["x", "kernel", "recurrent_kernel", "bias", "h0", "c0"]


def make_case(rng, dtype, P=0):
    P_ = P or H
    case = dict(x=rng.normal(size=(B, T, D)), kernel=rng.normal(size=(D, 4 * H)) * 0.5,
                recurrent_kernel=rng.normal(size=(P_, 4 * H)) * 0.5,
                bias=rng.normal(size=4 * H) * 0.5, h0=rng.normal(size=(B, P_)),
                c0=rng.normal(size=(B, H)))
    case = {k: v.astype(dtype) for k, v in case.items()}
    projection = (rng.normal(size=(H, P_)) * 0.5).astype(dtype) if P else None
    return case, projection


def draw_mask(rng, shape, rate, dtype):
    """A Keras-style dropout mask: 0 with probability `rate`, else 1 / (1 - rate)."""
    return ((rng.random(shape) >= rate) / (1 - rate)).astype(dtype)


def mask_of(form, rng, n, dtype):
    shape = {"none": None, "one": (B, n), "four": (4, B, n)}[form]
    return None if shape is None else draw_mask(rng, shape, 0.4, dtype)


FORMS = [(a, b) for a, b in itertools.product(["none", "one", "four"], repeat=2)
         if (a, b) != ("none", "none")]


@pytest.mark.parametrize("input_form,recurrent_form", FORMS)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_dropout_matches_reference(input_form, recurrent_form, dtype, tol):
    rng = np.random.default_rng(1)
    for reverse, P, masked in [(False, 0, False), (True, 2, True), (False, 3, True)]:
        case, projection = make_case(rng, dtype, P)
        kw = dict(projection=projection, reverse=reverse,
                  mask=rng.random((B, T)) > 0.3 if masked else None,
                  dropout_mask=mask_of(input_form, rng, D, dtype),
                  recurrent_dropout_mask=mask_of(recurrent_form, rng, P or H, dtype))
        args = [case[k] for k in NAMES]
        got = ops.lstm_forward(*args, training=True, **kw)
        want = ref.lstm_forward(*args, training=True, **kw)
        for a, b in zip(got[:3], want[:3]):
            assert a.dtype == dtype
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol)
        dy, dh, dc = (rng.normal(size=a.shape).astype(dtype) for a in got[:3])
        g_got = ops.lstm_backward(got[3], dy, dh, dc)
        g_want = ref.lstm_backward(want[3], dy, dh, dc)
        for key, w in g_want.items():
            if w is not None:
                assert g_got[key].dtype == dtype
                scale = max(1.0, float(np.abs(w).max()))
                np.testing.assert_allclose(g_got[key], w, rtol=tol, atol=tol * scale,
                                           err_msg=f"d{key} {kw}")


@pytest.mark.parametrize("input_form,recurrent_form,P,reverse", [
    ("one", "one", 0, False),
    ("four", "four", 0, True),
    ("none", "four", 2, False),
    ("four", "one", 3, True),
])
def test_dropout_central_difference(input_form, recurrent_form, P, reverse, numeric_grad):
    rng = np.random.default_rng(2)
    case, projection = make_case(rng, np.float64, P)
    kw = dict(projection=projection, reverse=reverse, mask=rng.random((B, T)) > 0.2,
              dropout_mask=mask_of(input_form, rng, D, np.float64),
              recurrent_dropout_mask=mask_of(recurrent_form, rng, P or H, np.float64))
    y, h, c, _ = ops.lstm_forward(*[case[k] for k in NAMES], **kw)
    wy, wh, wc = (rng.normal(size=a.shape) for a in (y, h, c))

    def loss():
        y, h, c, _ = ops.lstm_forward(*[case[k] for k in NAMES], **kw)
        return float((wy * y).sum() + (wh * h).sum() + (wc * c).sum())

    cache = ops.lstm_forward(*[case[k] for k in NAMES], training=True, **kw)[3]
    grads = ops.lstm_backward(cache, wy, wh, wc)
    params = dict(case, projection=projection) if P else case
    for name, arr in params.items():
        np.testing.assert_allclose(grads[name], numeric_grad(loss, arr), rtol=1e-5, atol=1e-7,
                                   err_msg=name)


def test_input_mask_is_the_masked_input():
    """x_t * mask before the input GEMM: the same as feeding x * mask; d x picks up the mask."""
    rng = np.random.default_rng(3)
    case, _ = make_case(rng, np.float64)
    m = draw_mask(rng, (B, D), 0.5, np.float64)
    args = [case[k] for k in NAMES[1:]]
    y, h, c, cache = ops.lstm_forward(case["x"], *args, dropout_mask=m, training=True)
    y2, h2, c2, cache2 = ops.lstm_forward(case["x"] * m[:, None], *args, training=True)
    np.testing.assert_allclose(y, y2, rtol=1e-14)
    np.testing.assert_allclose(c, c2, rtol=1e-14)
    dy = rng.normal(size=y.shape)
    g, g2 = ops.lstm_backward(cache, dy), ops.lstm_backward(cache2, dy)
    np.testing.assert_allclose(g["x"], g2["x"] * m[:, None], rtol=1e-13)
    np.testing.assert_allclose(g["kernel"], g2["kernel"], rtol=1e-13)
    assert np.all(g["x"][m[:, None].repeat(T, 1) == 0] == 0)


def test_recurrent_mask_only_touches_the_recurrent_product():
    """An all-zero recurrent mask removes h_{t-1} @ recurrent_kernel and nothing else: the
    same as a zero recurrent_kernel; the carried state (h_n, the outputs) stays unmasked."""
    rng = np.random.default_rng(4)
    case, _ = make_case(rng, np.float64)
    args = [case[k] for k in NAMES]
    zeros = np.zeros((B, H))
    for rmask in (zeros, np.zeros((4, B, H))):
        y, h, c, _ = ops.lstm_forward(*args, recurrent_dropout_mask=rmask)
        no_recurrence = dict(case, recurrent_kernel=np.zeros_like(case["recurrent_kernel"]))
        y2, h2, c2, _ = ops.lstm_forward(*[no_recurrence[k] for k in NAMES])
        np.testing.assert_array_equal(y, y2)
        np.testing.assert_array_equal(c, c2)
        np.testing.assert_array_equal(h, y[:, -1])
        assert np.abs(h).min() > 0
    # Dropping the forget gate's copy of h_{t-1} changes the outputs ...
    only_forget = np.ones((4, B, H))
    only_forget[1] = 0
    y, h, c, _ = ops.lstm_forward(*args, recurrent_dropout_mask=only_forget)
    assert not np.allclose(y, ops.lstm_forward(*args)[0])
    # ... unless the forget gate has no recurrent weights to drop: the masks are per gate.
    rk = case["recurrent_kernel"].copy()
    rk[:, H:2 * H] = 0
    a = ops.lstm_forward(case["x"], case["kernel"], rk, case["bias"], case["h0"], case["c0"],
                         recurrent_dropout_mask=only_forget)[0]
    b = ops.lstm_forward(case["x"], case["kernel"], rk, case["bias"], case["h0"], case["c0"])[0]
    np.testing.assert_allclose(a, b, rtol=1e-13)


def test_ones_masks_and_four_equal_masks():
    rng = np.random.default_rng(5)
    case, _ = make_case(rng, np.float64)
    args = [case[k] for k in NAMES]
    plain = ops.lstm_forward(*args)[0]
    ones = ops.lstm_forward(*args, dropout_mask=np.ones((B, D)),
                            recurrent_dropout_mask=np.ones((B, H)))[0]
    np.testing.assert_array_equal(ones, plain)
    m, r = draw_mask(rng, (B, D), 0.3, np.float64), draw_mask(rng, (B, H), 0.3, np.float64)
    one = ops.lstm_forward(*args, dropout_mask=m, recurrent_dropout_mask=r, training=True)
    four = ops.lstm_forward(*args, dropout_mask=np.stack([m] * 4),
                            recurrent_dropout_mask=np.stack([r] * 4), training=True)
    np.testing.assert_allclose(four[0], one[0], rtol=1e-13)
    dy = rng.normal(size=one[0].shape)
    g1, g4 = ops.lstm_backward(one[3], dy), ops.lstm_backward(four[3], dy)
    for key in ("x", "kernel", "recurrent_kernel", "bias", "h0", "c0"):
        np.testing.assert_allclose(g4[key], g1[key], rtol=1e-12, atol=1e-14, err_msg=key)


def test_time_major_with_masks():
    rng = np.random.default_rng(6)
    case, _ = make_case(rng, np.float64)
    args = [case[k] for k in NAMES[1:]]
    masks = dict(dropout_mask=draw_mask(rng, (4, B, D), 0.3, np.float64),
                 recurrent_dropout_mask=draw_mask(rng, (B, H), 0.3, np.float64))
    y, _, _, cache = ops.lstm_forward(case["x"], *args, training=True, **masks)
    y_t, _, _, cache_t = ops.lstm_forward(case["x"].transpose(1, 0, 2), *args, training=True,
                                          time_major=True, **masks)
    np.testing.assert_allclose(y_t.transpose(1, 0, 2), y, rtol=1e-14)
    dy = rng.normal(size=y.shape)
    g, g_t = ops.lstm_backward(cache, dy), ops.lstm_backward(cache_t, dy.transpose(1, 0, 2))
    np.testing.assert_allclose(g_t["x"].transpose(1, 0, 2), g["x"], rtol=1e-13)
    np.testing.assert_allclose(g_t["recurrent_kernel"], g["recurrent_kernel"], rtol=1e-13)


@pytest.mark.parametrize("name,n", [("dropout_mask", D), ("recurrent_dropout_mask", H)])
def test_bad_masks(name, n):
    rng = np.random.default_rng(7)
    case, _ = make_case(rng, np.float32)
    args = [case[k] for k in NAMES]
    for shape in [(B, n + 1), (B + 1, n), (2, B, n), (n,), (4, B, n, 1)]:
        with pytest.raises(ValueError, match=rf"`{name}` must have shape \({B}, {n}\) or "
                                             rf"\(4, {B}, {n}\).*received shape "
                                             rf"{re_shape(shape)}"):
            ops.lstm_forward(*args, **{name: np.ones(shape, np.float32)})
    with pytest.raises(TypeError, match=rf"`{name}` must be a real floating-point array"):
        ops.lstm_forward(*args, **{name: np.ones((B, n), bool)})
    bad = np.ones((B, n), np.float32)
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match=rf"`{name}` contains 1 NaN or inf"):
        ops.lstm_forward(*args, **{name: bad})


def re_shape(shape):
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


# Keras 3 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("R", [1, 4])
def test_batch_of_one(R):
    """One sample: the recurrent products go through gemv (R = 1) or single-row gemm (R = 4)."""
    rng = np.random.default_rng(9)
    x = rng.normal(size=(1, 6, 2))
    weights = [rng.normal(size=(2, 12)), rng.normal(size=(3, 12)), rng.normal(size=12)]
    lead = () if R == 1 else (4,)
    kw = dict(dropout_mask=draw_mask(rng, lead + (1, 2), 0.3, np.float64),
              recurrent_dropout_mask=draw_mask(rng, lead + (1, 3), 0.3, np.float64),
              reverse=True)
    got = ops.lstm_forward(x, *weights, training=True, **kw)
    want = ref.lstm_forward(x, *weights, training=True, **kw)
    for a, b in zip(got[:3], want[:3]):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    dy = rng.normal(size=got[0].shape)
    g_got, g_want = ops.lstm_backward(got[3], dy), ref.lstm_backward(want[3], dy)
    for key in ("x", "kernel", "recurrent_kernel", "bias", "h0", "c0"):
        np.testing.assert_allclose(g_got[key], g_want[key], rtol=1e-11, atol=1e-12, err_msg=key)
