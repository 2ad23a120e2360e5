"""The Cython core (through pylstm.ops) against the plain-NumPy reference, and float64
central-difference gradient checks of every gradient."""

import itertools

import numpy as np
import pytest

from pylstm import _plan, ops
from pylstm._kernels import core as _core
from pylstm import _reference as ref

ACTIVATION_PAIRS = [("tanh", "sigmoid"), ("relu", "hard_sigmoid"), ("linear", "tanh"),
                    ("sigmoid", "linear")]


def make_case(rng, dtype, B, T, D, H, P=0, masked=False, scale=0.5):
    P_ = P or H
    case = dict(
        x=rng.normal(size=(B, T, D)).astype(dtype),
        kernel=(rng.normal(size=(D, 4 * H)) * scale).astype(dtype),
        recurrent_kernel=(rng.normal(size=(P_, 4 * H)) * scale).astype(dtype),
        bias=(rng.normal(size=4 * H) * scale).astype(dtype),
        h0=rng.normal(size=(B, P_)).astype(dtype),
        c0=rng.normal(size=(B, H)).astype(dtype),
    )
    kw = dict(projection=(rng.normal(size=(H, P_)) * scale).astype(dtype) if P else None,
              mask=(rng.random((B, T)) > 0.4) if masked else None)
    return case, kw


def run_both(case, kw, rng, training=True):
    """pylstm.ops and the reference on one case; with `training`, their gradients too."""
    args = [case[k] for k in ("x", "kernel", "recurrent_kernel", "bias", "h0", "c0")]
    got = ops.lstm_forward(*args, training=training, **kw)
    want = ref.lstm_forward(*args, training=True, **kw)
    if not training:
        return got, want, None, None
    B, P = case["h0"].shape
    H = case["c0"].shape[1]
    dtype = case["x"].dtype
    dy = rng.normal(size=got[0].shape).astype(dtype)
    dh = rng.normal(size=(B, P)).astype(dtype)
    dc = rng.normal(size=(B, H)).astype(dtype)
    return got, want, ops.lstm_backward(got[3], dy, dh, dc), ref.lstm_backward(want[3], dy, dh, dc)


# Every route the plan can choose (pylstm._plan), with the time loop's recurrent product
# packed or on BLAS where the route has the choice: (route, packing) for `_plan.forced`.
ROUTES = [(_plan.GEMM_TRAINING, False), (_plan.GEMM_TRAINING, True), (_plan.FUSED_TRAINING, None),
          (_plan.CHUNKED_INFERENCE, False), (_plan.CHUNKED_INFERENCE, True),
          (_plan.FUSED_INFERENCE, None), (_plan.SMALL, None), (_plan.REFERENCE, None)]
# (B, T, D, H, P): (16, 5, 8, 32, 0) has 80 rows, over the 64 from which float32 packs by
# default (the route users run).
SHAPES = [(1, 1, 1, 1, 0), (1, 7, 3, 4, 0), (4, 6, 5, 3, 0), (3, 5, 2, 4, 2), (8, 3, 4, 16, 0),
          (16, 5, 8, 32, 0)]


def _can_run(route, packing, dtype, B, T, P):
    """Whether `route` (and packing) can run some case of this dtype and shape."""
    packs = route in (_plan.FUSED_TRAINING, _plan.FUSED_INFERENCE) or packing
    return ((not packs or (dtype == np.float32 and not P))
            and (route != _plan.SMALL or ((B == 1 or T == 1) and not P)))


ROUTE_CASES = [(route, packing, dtype, tol, shape) for route, packing in ROUTES
               for dtype, tol in [(np.float64, 1e-10), (np.float32, 2e-4)] for shape in SHAPES
               if _can_run(route, packing, dtype, shape[0], shape[1], shape[4])]


@pytest.mark.parametrize("route, packing, dtype, tol, shape", ROUTE_CASES,
                         ids=[f"{r}-{'packed' if k else 'BLAS' if k is False else ''}-"
                              f"{np.dtype(d).name}-{'x'.join(map(str, sh))}"
                              for r, k, d, _, sh in ROUTE_CASES])
def test_core_matches_reference(route, packing, dtype, tol, shape):
    """Every route against the NumPy reference: outputs, and gradients after the training
    routes, over directions, masks, outputs and activations (the combinations a route
    cannot run, such as a mask on the small-call route, are left out)."""
    B, T, D, H, P = shape
    training = route in (_plan.GEMM_TRAINING, _plan.FUSED_TRAINING, _plan.REFERENCE)
    rng = np.random.default_rng(B * 100 + T * 10 + H)
    ran = 0
    scale = 0.5 if H < 32 else 0.2      # linear activations grow with H
    for reverse, masked, zero_output, return_sequences, acts in itertools.product(
            [False, True], [False, True], [False, True], [False, True], ACTIVATION_PAIRS):
        case, kw = make_case(rng, dtype, B, T, D, H, P, masked, scale)
        kw.update(reverse=reverse, zero_output_for_mask=zero_output,
                  return_sequences=return_sequences, activation=acts[0],
                  recurrent_activation=acts[1])
        with _plan.forced(route=route, packing=packing):
            try:
                plan = ops.explain((B, T, D), H, dtype=dtype, projection_size=P or None,
                                   mask=masked, training=training)
            except ValueError:
                continue          # a combination this route cannot run
            assert plan.route == route
            if packing is not None:
                assert plan.recurrent == ("packed" if packing else "BLAS"), plan
            got, want, g_got, g_want = run_both(case, kw, rng, training)
        ran += 1
        for name, a, b in zip(("y", "h_n", "c_n"), got[:3], want[:3]):
            assert_close(a, b, tol, f"{name} {kw}")
            assert a.dtype == dtype
        for name, want_grad in (g_want or {}).items():
            if want_grad is None:
                assert g_got[name] is None, name
                continue
            assert g_got[name].dtype == dtype
            assert_close(g_got[name], want_grad, tol, f"d{name} {kw}")
    assert ran


def assert_close(got, want, tol, msg):
    """Max error relative to the array's scale (float32 sums of large terms round)."""
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got.astype(np.float64) - want).max())
    assert err <= tol * scale, f"{msg}: max error {err:.3g} at scale {scale:.3g}"


def test_time_major_matches_batch_major():
    rng = np.random.default_rng(1)
    case, kw = make_case(rng, np.float64, 3, 4, 2, 5, masked=True)
    args = [case[k] for k in ("kernel", "recurrent_kernel", "bias", "h0", "c0")]
    y_b, h_b, c_b, cache_b = ops.lstm_forward(case["x"], *args, training=True, **kw)
    y_t, h_t, c_t, cache_t = ops.lstm_forward(case["x"].transpose(1, 0, 2), *args,
                                              projection=None, mask=kw["mask"].T,
                                              training=True, time_major=True)
    np.testing.assert_allclose(y_t.transpose(1, 0, 2), y_b)
    np.testing.assert_allclose(h_t, h_b)
    dy = rng.normal(size=y_b.shape)
    g_b = ops.lstm_backward(cache_b, dy)
    g_t = ops.lstm_backward(cache_t, dy.transpose(1, 0, 2))
    np.testing.assert_allclose(g_t["x"].transpose(1, 0, 2), g_b["x"])
    np.testing.assert_allclose(g_t["kernel"], g_b["kernel"])


def test_inference_equals_training_forward():
    """Inference keeps two state slots; training keeps all T+1: same numbers either way."""
    rng = np.random.default_rng(2)
    for T, reverse in itertools.product([1, 2, 5], [False, True]):
        case, kw = make_case(rng, np.float64, 2, T, 3, 4, P=3, masked=True)
        args = [case[k] for k in ("x", "kernel", "recurrent_kernel", "bias", "h0", "c0")]
        a = ops.lstm_forward(*args, reverse=reverse, training=False, **kw)
        b = ops.lstm_forward(*args, reverse=reverse, training=True, **kw)
        assert a[3] is None
        for u, v in zip(a[:3], b[:3]):
            np.testing.assert_array_equal(u, v)


def test_masked_steps_carry_state_and_output():
    rng = np.random.default_rng(3)
    case, kw = make_case(rng, np.float64, 2, 4, 3, 2)
    mask = np.array([[True, False, True, False], [False, False, True, True]])
    args = [case[k] for k in ("x", "kernel", "recurrent_kernel", "bias", "h0", "c0")]
    y, h, c, _ = ops.lstm_forward(*args, mask=mask)
    np.testing.assert_array_equal(y[0, 1], y[0, 0])   # repeats the previous output
    np.testing.assert_array_equal(y[0, 3], y[0, 2])
    np.testing.assert_array_equal(y[1, :2], 0)         # no real output yet: zeros
    np.testing.assert_array_equal(h[0], y[0, 2])       # state carried past the masked end
    y0, *_ = ops.lstm_forward(*args, mask=mask, zero_output_for_mask=True)
    np.testing.assert_array_equal(y0[0, 1], 0)
    np.testing.assert_array_equal(y0[0, 2], y[0, 2])
    # A fully masked row keeps its initial state.
    y, h, c, _ = ops.lstm_forward(*args, mask=np.zeros((2, 4), bool))
    np.testing.assert_array_equal(h, case["h0"])
    np.testing.assert_array_equal(c, case["c0"])


# Central differences ---------------------------------------------------------------------

@pytest.mark.parametrize("P,reverse,masked,return_sequences,acts", [
    (0, False, False, True, ("tanh", "sigmoid")),
    (0, True, True, False, ("tanh", "sigmoid")),
    (2, False, True, True, ("tanh", "sigmoid")),
    (3, True, False, True, ("relu", "sigmoid")),
    (0, False, True, True, ("linear", "hard_sigmoid")),
])
def test_gradients_central_difference(P, reverse, masked, return_sequences, acts,
                                      numeric_grad):
    rng = np.random.default_rng(7)
    case, kw = make_case(rng, np.float64, 3, 4, 2, 3, P, masked)
    if masked:
        kw["mask"][:, 0] = True   # keep relu/hard_sigmoid away from no-gradient corners
    kw.update(reverse=reverse, return_sequences=return_sequences, activation=acts[0],
              recurrent_activation=acts[1])
    names = ["x", "kernel", "recurrent_kernel", "bias", "h0", "c0"]
    y, h, c, _ = ops.lstm_forward(*[case[k] for k in names], **kw)
    wy, wh, wc = (rng.normal(size=a.shape) for a in (y, h, c))

    def loss():
        y, h, c, _ = ops.lstm_forward(*[case[k] for k in names], **kw)
        return float((wy * y).sum() + (wh * h).sum() + (wc * c).sum())

    _, _, _, cache = ops.lstm_forward(*[case[k] for k in names], training=True, **kw)
    grads = ops.lstm_backward(cache, wy, wh, wc)
    params = dict(case)
    if P:
        params["projection"] = kw["projection"]
    for name, arr in params.items():
        np.testing.assert_allclose(grads[name], numeric_grad(loss, arr), rtol=1e-5,
                                   atol=1e-7, err_msg=name)


@pytest.mark.parametrize("gates", [
    ("sigmoid", "hard_sigmoid", "relu", "tanh", "linear"),
    ("hard_sigmoid", "sigmoid", "tanh", "relu", "sigmoid"),
])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_per_gate_activations_match_reference(gates, dtype, tol):
    rng = np.random.default_rng(11)
    case, kw = make_case(rng, dtype, 3, 5, 2, 4, P=3, masked=True)
    kw["gate_activations"] = gates
    got, want, g_got, g_want = run_both(case, kw, rng)
    for a, b in zip(got[:3], want[:3]):
        assert_close(a, b, tol, f"forward {gates}")
    for name, want_grad in g_want.items():
        assert_close(g_got[name], want_grad, tol, f"d{name} {gates}")


def test_gate_activations_override_the_pair():
    rng = np.random.default_rng(12)
    case, kw = make_case(rng, np.float64, 2, 3, 2, 3)
    args = [case[k] for k in ("x", "kernel", "recurrent_kernel", "bias", "h0", "c0")]
    pair = ops.lstm_forward(*args, activation="relu", recurrent_activation="hard_sigmoid")
    per_gate = ops.lstm_forward(*args, gate_activations=["hard_sigmoid"] * 2 + ["relu"] +
                                ["hard_sigmoid", "relu"])
    np.testing.assert_array_equal(pair[0], per_gate[0])
    other = ops.lstm_forward(*args, gate_activations=["sigmoid"] * 5)
    assert not np.allclose(other[0], pair[0])


@pytest.mark.parametrize("bad,match", [
    (["tanh"] * 4, r"`gate_activations` must be five activations"),
    ("tanh", r"`gate_activations` must be five activations"),
    (["tanh"] * 4 + ["softmax"], r"`gate_activations\[4\]` must be one of .*, None or a "
                                 r"callable, received 'softmax'"),
    (["tanh"] * 4 + [3], r"`gate_activations\[4\]` must be an activation name, None or a "
                         r"callable, received 3"),
])
def test_bad_gate_activations(bad, match):
    rng = np.random.default_rng(13)
    case, _ = make_case(rng, np.float64, 1, 2, 2, 2)
    with pytest.raises(ValueError, match=match):
        ops.lstm_forward(case["x"], case["kernel"], case["recurrent_kernel"],
                         gate_activations=bad)


# Every core activation, in each role --------------------------------------------------------

ALL_ACTIVATIONS = sorted(_core.ACTIVATION_CODES)
# Where the activation goes in gate_activations (i, f, g, o, cell); the others are Keras's.
ROLES = {
    "gates_ifo": lambda a: [a, a, "tanh", a, "tanh"],
    "candidate": lambda a: ["sigmoid", "sigmoid", a, "sigmoid", "tanh"],
    "cell_output": lambda a: ["sigmoid", "sigmoid", "tanh", "sigmoid", a],
}


@pytest.mark.parametrize("role", sorted(ROLES))
@pytest.mark.parametrize("name", ALL_ACTIVATIONS)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_every_activation_matches_reference(name, role, dtype, tol):
    rng = np.random.default_rng(len(name) * 7 + len(role))
    for reverse, P in [(False, 0), (True, 3)]:
        case, kw = make_case(rng, dtype, 3, 5, 2, 4, P=P, masked=True)
        kw.update(gate_activations=ROLES[role](name), reverse=reverse)
        got, want, g_got, g_want = run_both(case, kw, rng)
        for label, a, b in zip(("y", "h_n", "c_n"), got[:3], want[:3]):
            assert a.dtype == dtype
            assert_close(a, b, tol, f"{label} {name} {role} reverse={reverse}")
        for key, want_grad in g_want.items():
            if want_grad is not None:
                assert g_got[key].dtype == dtype
                assert_close(g_got[key], want_grad, tol, f"d{key} {name} {role} reverse={reverse}")


@pytest.mark.parametrize("role", sorted(ROLES))
@pytest.mark.parametrize("name", ALL_ACTIVATIONS)
def test_every_activation_central_difference(name, role, numeric_grad):
    rng = np.random.default_rng(5)
    case, kw = make_case(rng, np.float64, 2, 3, 2, 3, P=2, masked=True)
    kw["mask"][:, 1] = True
    kw.update(gate_activations=ROLES[role](name), reverse=role == "candidate")
    check_gradients(case, kw, rng, numeric_grad)


def check_gradients(case, kw, rng, numeric_grad, rtol=1e-5, atol=1e-7):
    """Every gradient of a random linear function of (y, h_n, c_n) against central
    differences, in float64."""
    names = ["x", "kernel", "recurrent_kernel", "bias", "h0", "c0"]
    y, h, c, _ = ops.lstm_forward(*[case[k] for k in names], **kw)
    wy, wh, wc = (rng.normal(size=a.shape) for a in (y, h, c))

    def loss():
        y, h, c, _ = ops.lstm_forward(*[case[k] for k in names], **kw)
        return float((wy * y).sum() + (wh * h).sum() + (wc * c).sum())

    _, _, _, cache = ops.lstm_forward(*[case[k] for k in names], training=True, **kw)
    grads = ops.lstm_backward(cache, wy, wh, wc)
    params = dict(case)
    if kw.get("projection") is not None:
        params["projection"] = kw["projection"]
    for name, arr in params.items():
        np.testing.assert_allclose(grads[name], numeric_grad(loss, arr), rtol=rtol, atol=atol,
                                   err_msg=f"d{name}")
    return grads


def test_swish_gates_keep_pre_activations_only_when_needed():
    """swish' needs x: a gate using it makes training keep z (T, B, 4H); nothing else does."""
    rng = np.random.default_rng(6)
    case, kw = make_case(rng, np.float32, 2, 3, 2, 3)
    args = [case[k] for k in ("x", "kernel", "recurrent_kernel", "bias", "h0", "c0")]
    for gates, kept in [(["sigmoid", "swish", "tanh", "sigmoid", "tanh"], True),
                        (["sigmoid", "sigmoid", "tanh", "sigmoid", "swish"], False),
                        (["elu", "selu", "softplus", "softsign", "exponential"], False)]:
        cache = ops.lstm_forward(*args, gate_activations=gates, training=True)[3]
        assert (cache.zs is not None) == kept, gates
        if kept:
            assert cache.zs.shape == (3, 2, 12) and cache.zs.dtype == np.float32


def test_silu_is_swish_and_legacy_hard_sigmoid_is_keras_2():
    rng = np.random.default_rng(8)
    case, _ = make_case(rng, np.float64, 2, 3, 2, 3)
    args = [case[k] for k in ("x", "kernel", "recurrent_kernel", "bias", "h0", "c0")]
    np.testing.assert_array_equal(ops.lstm_forward(*args, activation="silu")[0],
                                  ops.lstm_forward(*args, activation="swish")[0])
    # clip(0.2 z + 0.5, 0, 1) on the gates, by one step of plain NumPy
    x, kernel, rk, bias, h0, c0 = (a[:, :1] if a.ndim == 3 else a for a in args)
    z = x[:, 0] @ kernel + h0 @ rk + bias
    i, f, g, o = np.split(z, 4, axis=1)
    hard = [np.clip(0.2 * v + 0.5, 0, 1) for v in (i, f, o)]
    c = hard[1] * c0 + hard[0] * np.tanh(g)
    y = ops.lstm_forward(x, kernel, rk, bias, h0, c0,
                         recurrent_activation="legacy_hard_sigmoid")[0]
    np.testing.assert_allclose(y[:, 0], hard[2] * np.tanh(c), rtol=1e-14)


# Mask patterns --------------------------------------------------------------------------

B_MASK, T_MASK = 4, 5
MASK_PATTERNS = {
    "right_padding": np.arange(T_MASK) < np.array([5, 3, 1, 4])[:, None],
    "left_padding": np.arange(T_MASK) >= np.array([0, 2, 4, 1])[:, None],
    "holes": np.array([[1, 0, 1, 0, 1], [0, 1, 1, 0, 0], [1, 1, 0, 1, 1], [0, 0, 0, 0, 1]], bool),
    "fully_masked_rows": np.array([[1, 1, 1, 1, 1], [0] * 5, [1, 0, 0, 1, 1], [0] * 5], bool),
    "all_masked": np.zeros((B_MASK, T_MASK), bool),
}


@pytest.mark.parametrize("pattern", sorted(MASK_PATTERNS))
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_mask_patterns_match_reference(pattern, dtype, tol):
    rng = np.random.default_rng(21)
    for reverse, zero_output, return_sequences, P in itertools.product(
            [False, True], [False, True], [True, False], [0, 2]):
        case, kw = make_case(rng, dtype, B_MASK, T_MASK, 3, 3, P=P)
        kw.update(mask=MASK_PATTERNS[pattern], reverse=reverse, zero_output_for_mask=zero_output,
                  return_sequences=return_sequences)
        got, want, g_got, g_want = run_both(case, kw, rng)
        for label, a, b in zip(("y", "h_n", "c_n"), got[:3], want[:3]):
            assert_close(a, b, tol, f"{label} {pattern} {kw}")
        for key, want_grad in g_want.items():
            if want_grad is not None:
                assert_close(g_got[key], want_grad, tol, f"d{key} {pattern} {kw}")


@pytest.mark.parametrize("pattern", sorted(MASK_PATTERNS))
@pytest.mark.parametrize("reverse,zero_output", [(False, False), (True, True), (True, False)])
def test_mask_patterns_central_difference(pattern, reverse, zero_output, numeric_grad):
    rng = np.random.default_rng(22)
    case, kw = make_case(rng, np.float64, B_MASK, T_MASK, 2, 2)
    kw.update(mask=MASK_PATTERNS[pattern], reverse=reverse, zero_output_for_mask=zero_output)
    check_gradients(case, kw, rng, numeric_grad)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("zero_output", [False, True])
def test_fully_masked_rows_keep_initial_state(reverse, zero_output):
    """A sample masked at every step outputs zeros, keeps its initial state, and passes the
    state gradients straight to its initial state (Keras's masking semantics)."""
    rng = np.random.default_rng(23)
    mask = MASK_PATTERNS["fully_masked_rows"]
    dead = ~mask.any(axis=1)
    case, kw = make_case(rng, np.float64, B_MASK, T_MASK, 3, 3, P=2)
    kw.update(mask=mask, reverse=reverse, zero_output_for_mask=zero_output)
    args = [case[k] for k in ("x", "kernel", "recurrent_kernel", "bias", "h0", "c0")]
    y, h, c, cache = ops.lstm_forward(*args, training=True, **kw)
    np.testing.assert_array_equal(y[dead], 0)
    np.testing.assert_array_equal(h[dead], case["h0"][dead])
    np.testing.assert_array_equal(c[dead], case["c0"][dead])
    dh, dc = rng.normal(size=h.shape), rng.normal(size=c.shape)
    grads = ops.lstm_backward(cache, rng.normal(size=y.shape), dh, dc)
    np.testing.assert_array_equal(grads["h0"][dead], dh[dead])
    np.testing.assert_array_equal(grads["c0"][dead], dc[dead])
    np.testing.assert_array_equal(grads["x"][dead], 0)
    assert np.abs(grads["x"][~dead]).max() > 0


def test_left_padding_equals_the_unpadded_sequence():
    """Masked leading steps change nothing: a left-padded sample gives the outputs of its
    real steps alone (and reverse gives those of the reversed real steps)."""
    rng = np.random.default_rng(24)
    case, _ = make_case(rng, np.float64, 1, 5, 3, 4)
    args = [case[k] for k in ("kernel", "recurrent_kernel", "bias", "h0", "c0")]
    mask = np.array([[False, False, True, True, True]])
    for reverse in (False, True):
        y, h, c, _ = ops.lstm_forward(case["x"], *args, mask=mask, reverse=reverse,
                                      zero_output_for_mask=True)
        y_real, h_real, c_real, _ = ops.lstm_forward(case["x"][:, 2:], *args, reverse=reverse)
        np.testing.assert_allclose(y[:, 2:], y_real, rtol=1e-13)
        np.testing.assert_allclose(h, h_real, rtol=1e-13)
        np.testing.assert_allclose(c, c_real, rtol=1e-13)
        np.testing.assert_array_equal(y[:, :2], 0)
