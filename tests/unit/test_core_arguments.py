"""The argument classes of the compiled core (`Steps`, `RecurrentWeights`, `ForwardArrays`,
`BackwardArrays`, `TeamGradients`) and the checks of `forward` and `backward`: valid
arguments built as `pylstm.ops` builds them run and match `ops.lstm_forward`; breaking one
thing at a time raises a TypeError or ValueError that names the argument, before any kernel
reads or writes outside an array."""

import numpy as np
import pytest

from pylstm import ops
from pylstm._kernels import core as _core

T, B, D, H = 5, 3, 4, 8
G = 4 * H
N = T * B
STANDARD = ("sigmoid", "sigmoid", "tanh", "sigmoid", "tanh")


def _acts(names=STANDARD):
    return np.array([_core.ACTIVATION_CODES[name] for name in names], dtype=np.intc)


def _weights(dtype, seed=0, P=H):
    rng = np.random.default_rng(seed)
    return dict(x=rng.normal(size=(T, B, D)).astype(dtype),
                kernel=(0.3 * rng.normal(size=(D, G))).astype(dtype),
                recurrent_kernel=(0.3 * rng.normal(size=(P, G))).astype(dtype),
                bias=(0.1 * rng.normal(size=(G,))).astype(dtype))


def _training_forward(dtype=np.float64, acts=None, keep_zs=False):
    """The arguments of a dense training forward on the GEMM route (`ops._routes._training`):
    gates = bias + x @ kernel for all rows, then the time loop with one BLAS product a step.
    Returns `(arrays, weights, steps, w)`, `w` the weights and input."""
    w = _weights(dtype)
    gates = np.empty((N, G), dtype)
    gates[...] = w["bias"]
    _core.matmul_acc(w["x"].reshape(N, D), w["kernel"], gates, False, False, 1.0)
    zs = np.empty((N, G), dtype) if keep_zs else None
    arrays = _core.ForwardArrays(gates, np.empty((N + B, H), dtype), np.empty((N + B, H), dtype),
                                 np.zeros((B, H), dtype), np.zeros((B, H), dtype),
                                 np.zeros((B, H), dtype), zs=zs, y=np.empty((N, H), dtype))
    weights = _core.RecurrentWeights(w["recurrent_kernel"])
    steps = _core.Steps(np.full(T, B, np.intc), _acts() if acts is None else acts,
                        training=True)
    return arrays, weights, steps, w


def _fused_inference(**changes):
    """The arguments of `ops._routes.fused_inference` (float32, the core's input product on
    both packed kernels) for dense batch-major input read in place, with `changes` to the
    keyword arguments of `ForwardArrays`."""
    w = _weights(np.float32)
    x_bm = np.ascontiguousarray(w["x"].transpose(1, 0, 2))      # (B, T, D)
    y = np.empty((B, T, H), np.float32)
    hs = np.empty((3 * B, H), np.float32)
    cs = np.empty((3 * B, H), np.float32)
    hs[2 * B:] = 0
    cs[2 * B:] = 0
    kwargs = dict(y=y.reshape(B * T, H), x=x_bm.reshape(-1), ldx=T * D, x_step=D,
                  ldy=T * H, y_step=H)
    kwargs.update(changes)
    arrays = _core.ForwardArrays(np.empty((B, G), np.float32), hs, cs, hs[2 * B:], cs[2 * B:],
                                 np.zeros((B, H), np.float32), **kwargs)
    weights = _core.RecurrentWeights(
        w["recurrent_kernel"], packed=np.empty(_core.packed_size(H, H), np.float32),
        kernel=w["kernel"], packed_kernel=np.empty(_core.packed_size(H, D), np.float32),
        bias=w["bias"])
    steps = _core.Steps(np.full(T, B, np.intc), _acts())
    return arrays, weights, steps, w, y


def _backward_arrays(forward_arrays, dtype=np.float64, **changes):
    """`BackwardArrays` of a training forward as `ops._backward._core_backward` builds them,
    with `changes` to its arguments."""
    kwargs = dict(dz=np.empty((N, G), dtype), dh=np.zeros((B, H), dtype),
                  dc=np.zeros((B, H), dtype), dy_carry=np.zeros((B, H), dtype),
                  g=np.empty((B, H), dtype), a=np.empty((H,), dtype),
                  gates=forward_arrays.gates, cs=forward_arrays.cs, zs=forward_arrays.zs,
                  dy=np.ones((N, H), dtype))
    kwargs.update(changes)
    return _core.BackwardArrays(**kwargs)


# Valid calls -------------------------------------------------------------------------------

def test_a_training_forward_and_backward_match_ops():
    arrays, weights, steps, w = _training_forward()
    _core.forward(arrays, weights, steps)
    y, h_n, c_n, cache = ops.lstm_forward(w["x"], w["kernel"], w["recurrent_kernel"], w["bias"],
                                          time_major=True, training=True)
    np.testing.assert_allclose(arrays.y.reshape(T, B, H), y, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(arrays.hs[N:], h_n, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(arrays.cs[N:], c_n, rtol=1e-12, atol=1e-14)

    back = _backward_arrays(arrays)
    _core.backward(back, weights, steps)
    grads = ops.lstm_backward(cache, np.ones((T, B, H)))
    np.testing.assert_allclose(back.dh, grads["h0"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(back.dc, grads["c0"], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("team, team_if_awake", [(1, False), (2, False), (2, True), (64, False)])
def test_a_fused_inference_matches_ops_on_any_team(team, team_if_awake):
    arrays, weights, steps, w, y = _fused_inference()
    _core.forward(arrays, weights, steps, team, team_if_awake)
    expected, h_n, c_n, _ = ops.lstm_forward(np.ascontiguousarray(w["x"].transpose(1, 0, 2)),
                                             w["kernel"], w["recurrent_kernel"], w["bias"])
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(arrays.hs[2 * B:], h_n, rtol=1e-5, atol=1e-6)
    reference = y.copy()
    arrays, weights, steps, w, y = _fused_inference()
    _core.forward(arrays, weights, steps)
    np.testing.assert_array_equal(y, reference)        # the same bits on any team


# Steps -------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_sizes, error, match", [
    (np.full(T, B, np.int64), TypeError, "`batch_sizes` must have dtype intc"),
    ([B] * T, TypeError, "`batch_sizes` must be a NumPy array"),
    (np.full((T, 1), B, np.intc), ValueError, "`batch_sizes` must have 1 dimensions"),
    (np.zeros(0, np.intc), ValueError, "`batch_sizes` must have at least one step"),
])
def test_steps_check_batch_sizes(batch_sizes, error, match):
    with pytest.raises(error, match=match):
        _core.Steps(batch_sizes, _acts())


def test_steps_check_activations_and_mask():
    sizes = np.full(T, B, np.intc)
    with pytest.raises(ValueError, match=r"`activations` must have shape \(5,\)"):
        _core.Steps(sizes, _acts()[:4])
    with pytest.raises(TypeError, match="`activations` must have dtype intc"):
        _core.Steps(sizes, _acts().astype(np.int64))
    with pytest.raises(TypeError, match="`mask` must have dtype uint8"):
        _core.Steps(sizes, _acts(), mask=np.ones((T, B), bool))
    with pytest.raises(ValueError, match=rf"`mask` must have shape \({T}, any\)"):
        _core.Steps(sizes, _acts(), mask=np.ones((T + 1, B), np.uint8))


def test_batch_sizes_and_mask_must_fit_the_arrays():
    arrays, weights, _, _ = _training_forward()
    with pytest.raises(ValueError, match=f"`mask` must have {B} samples, received {B + 1}"):
        _core.forward(arrays, weights, _core.Steps(np.full(T, B, np.intc), _acts(),
                                                   mask=np.ones((T, B + 1), np.uint8),
                                                   training=True))
    with pytest.raises(ValueError, match=f"`batch_sizes` must not exceed the batch {B}"):
        _core.forward(arrays, weights, _core.Steps(np.full(T, B + 1, np.intc), _acts(),
                                                   training=True))
    # one more step than the gates hold: rows and state slots both fall short
    with pytest.raises(ValueError, match="`hs` and `cs` must have"):
        _core.forward(arrays, weights, _core.Steps(np.full(T + 1, B, np.intc), _acts(),
                                                   training=True))
    fewer = np.full(T, B, np.intc)
    fewer[-1] = 1                  # N - B + 1 rows: state slots no longer N + B
    with pytest.raises(ValueError, match=f"must have {N - B + 1 + B} rows"):
        _core.forward(arrays, weights, _core.Steps(fewer, _acts(), training=True))


def test_gate_rows_must_cover_the_steps():
    arrays, weights, steps, _ = _training_forward()
    short = _core.ForwardArrays(arrays.gates[:N - 1], arrays.hs, arrays.cs, arrays.h0,
                                arrays.c0, arrays.y_prev)
    with pytest.raises(ValueError, match=f"`gates \\(rows\\)` must hold at least {N}"):
        _core.forward(short, weights, steps)


# RecurrentWeights --------------------------------------------------------------------------

def test_recurrent_weights_check_their_shapes():
    rk = np.zeros((H, G))
    with pytest.raises(ValueError, match=r"`recurrent_kernel` must have shape \(any, 32\)"):
        _core.RecurrentWeights(np.zeros((H, G + 2)))
    with pytest.raises(ValueError, match="`recurrent_kernel` must have 2 dimensions"):
        _core.RecurrentWeights(np.zeros(G))
    with pytest.raises(TypeError, match="`recurrent_kernel` must be a NumPy array"):
        _core.RecurrentWeights(rk.tolist())
    with pytest.raises(ValueError, match="`recurrent_kernel` must be C-contiguous"):
        _core.RecurrentWeights(np.asfortranarray(rk))
    with pytest.raises(ValueError, match=r"`projection` must have shape \(8, 8\)"):
        _core.RecurrentWeights(rk, projection=np.zeros((H, H + 1)))
    with pytest.raises(TypeError, match="`projection` must have dtype float64"):
        _core.RecurrentWeights(rk, projection=np.zeros((H, H), np.float32))
    with pytest.raises(ValueError, match="`recurrent_dropout_mask` must have shape"):
        _core.RecurrentWeights(rk, recurrent_dropout_mask=np.ones((2, B, H)))
    with pytest.raises(ValueError, match="`recurrent_dropout_mask` must have shape"):
        _core.RecurrentWeights(rk, recurrent_dropout_mask=np.ones((1, B, H + 1)))


def test_packed_needs_float32_weights_of_its_dtype():
    rk32 = np.zeros((H, G), np.float32)
    with pytest.raises(TypeError, match="`packed` must have dtype float32, received float64"):
        _core.RecurrentWeights(rk32, packed=np.empty(_core.packed_size(H, H)))
    with pytest.raises(ValueError, match="`packed` needs float32 weights"):
        _core.RecurrentWeights(rk32.astype(np.float64),
                               packed=np.empty(_core.packed_size(H, H), np.float32))
    with pytest.raises(ValueError, match="`packed` needs float32 weights without projection"):
        _core.RecurrentWeights(rk32, projection=np.zeros((H, H), np.float32),
                               packed=np.empty(_core.packed_size(H, H), np.float32))
    with pytest.raises(ValueError, match="`packed` must be writable"):
        packed = np.empty(_core.packed_size(H, H), np.float32)
        packed.flags.writeable = False
        _core.RecurrentWeights(rk32, packed=packed)


def test_the_input_product_weights_go_together():
    rk32 = np.zeros((H, G), np.float32)
    packed = np.empty(_core.packed_size(H, H), np.float32)
    kernel = np.zeros((D, G), np.float32)
    with pytest.raises(ValueError, match="`kernel` and `packed_kernel` go together"):
        _core.RecurrentWeights(rk32, packed=packed, kernel=kernel)
    with pytest.raises(ValueError, match="`kernel` and `packed_kernel` go together"):
        _core.RecurrentWeights(rk32, kernel=kernel,
                               packed_kernel=np.empty(_core.packed_size(H, D), np.float32))
    with pytest.raises(ValueError, match="`packed_kernel` must hold at least"):
        _core.RecurrentWeights(rk32, packed=packed, kernel=kernel,
                               packed_kernel=np.empty(_core.packed_size(H, D) - 1, np.float32))
    with pytest.raises(ValueError, match=r"`kernel` must have shape \(any, 32\)"):
        _core.RecurrentWeights(rk32, packed=packed, kernel=np.zeros((D, G - 4), np.float32),
                               packed_kernel=np.empty(_core.packed_size(H, D), np.float32))
    with pytest.raises(ValueError, match=r"`bias` must have shape \(32,\)"):
        _core.RecurrentWeights(rk32, packed=packed, kernel=kernel,
                               packed_kernel=np.empty(_core.packed_size(H, D), np.float32),
                               bias=np.zeros(G + 1, np.float32))


def test_packed_of_the_wrong_size():
    arrays, weights, steps, w, y = _fused_inference()
    small = _core.RecurrentWeights(
        w["recurrent_kernel"], packed=np.empty(_core.packed_size(H, H) - 1, np.float32),
        kernel=w["kernel"], packed_kernel=weights.packed_kernel, bias=w["bias"])
    with pytest.raises(ValueError, match=f"`packed` must hold at least "
                                         f"{_core.packed_size(H, H)} elements"):
        _core.forward(arrays, small, steps)


def test_weights_must_fit_the_arrays():
    arrays, _, steps, _ = _training_forward()
    with pytest.raises(ValueError, match=r"`recurrent_kernel` must have shape \(8, 32\) to fit"):
        _core.forward(arrays, _core.RecurrentWeights(np.zeros((H + 4, G + 16))), steps)
    with pytest.raises(ValueError, match=f"`recurrent_dropout_mask` must have {B} samples"):
        _core.forward(arrays, _core.RecurrentWeights(
            np.zeros((H, G)), recurrent_dropout_mask=np.ones((1, B + 1, H))), steps)
    with pytest.raises(ValueError, match="A recurrent dropout mask needs `hm`"):
        _core.forward(arrays, _core.RecurrentWeights(
            np.zeros((H, G)), recurrent_dropout_mask=np.ones((1, B, H))), steps)


# ForwardArrays -----------------------------------------------------------------------------

def _forward_args(dtype=np.float64):
    arrays, _, _, _ = _training_forward(dtype)
    return dict(gates=arrays.gates, hs=arrays.hs, cs=arrays.cs, h0=arrays.h0, c0=arrays.c0,
                y_prev=arrays.y_prev)


@pytest.mark.parametrize("name, bad, error, match", [
    ("hs", np.empty((N + B, H, 1)), ValueError, r"`hs` must have 2 dimensions"),
    ("hs", np.empty((N + B, 2 * H))[:, ::2], ValueError, "`hs` must be C-contiguous"),
    ("hs", None, TypeError, "`hs` must be an array, received None"),
    ("hs", np.empty((N + B, H), np.float32), TypeError, "`hs` must have dtype float64"),
    ("cs", np.empty((N + B - 1, H)), ValueError, r"`cs` must have shape \(18, 8\)"),
    ("h0", np.zeros((B, H), np.float32), TypeError, "`h0` must have dtype float64"),
    ("h0", np.zeros((B, H + 1)), ValueError, r"`h0` must have shape \(3, 8\)"),
    ("c0", np.zeros((B + 1, H)), ValueError, r"`c0` must have shape \(3, 8\)"),
    ("y_prev", np.zeros((B, H - 1)), ValueError, r"`y_prev` must have shape \(3, 8\)"),
    ("gates", np.empty((N, G - 1)), ValueError, r"`gates` must have shape \(any, 28\)"),
])
def test_forward_arrays_check_each_array(name, bad, error, match):
    args = _forward_args()
    args[name] = bad
    with pytest.raises(error, match=match):
        _core.ForwardArrays(**args)


def test_forward_arrays_check_the_arrays_they_write_are_writable():
    args = _forward_args()
    args["hs"] = args["hs"].copy()
    args["hs"].flags.writeable = False
    with pytest.raises(ValueError, match="`hs` must be writable"):
        _core.ForwardArrays(**args)
    args = _forward_args()
    args["h0"] = args["h0"].copy()
    args["h0"].flags.writeable = False
    _core.ForwardArrays(**args)                  # read only: fine


@pytest.mark.parametrize("name, bad, match", [
    ("zs", np.empty((N, G + 4)), r"`zs` must have shape \(any, 32\)"),
    ("ms", np.empty((N, H + 1)), r"`ms` must have shape \(any, 8\)"),
    ("m", np.empty((B + 1, H)), r"`m` must have shape \(3, 8\)"),
    ("y", np.empty((N, H + 1)), r"`y` must have shape \(any, 8\)"),
    ("hm", np.empty((B, H - 1)), r"`hm` must have shape \(3, 8\)"),
])
def test_forward_arrays_check_optional_arrays(name, bad, match):
    with pytest.raises(ValueError, match=match):
        _core.ForwardArrays(**_forward_args(), **{name: bad})


def test_the_arrays_and_the_weights_have_one_dtype():
    arrays, _, steps, _ = _training_forward(np.float32)
    with pytest.raises(TypeError, match="one dtype, received float32 arrays and float64 weights"):
        _core.forward(arrays, _core.RecurrentWeights(np.zeros((H, G))), steps)
    back = _backward_arrays(_training_forward()[0])
    with pytest.raises(TypeError, match="one dtype, received float64 arrays and float32 weights"):
        _core.backward(back, _core.RecurrentWeights(np.zeros((H, G), np.float32)),
                       _core.Steps(np.full(T, B, np.intc), _acts(), training=True))


def test_training_rows_must_cover_the_steps():
    arrays, weights, steps, _ = _training_forward(keep_zs=True)
    args = _forward_args()
    with pytest.raises(ValueError, match=f"`zs \\(rows\\)` must hold at least {N}"):
        _core.forward(_core.ForwardArrays(**args, zs=np.empty((N - 1, G))), weights, steps)
    with pytest.raises(ValueError, match="`hs` and `cs` must have 18 rows"):
        _core.forward(_core.ForwardArrays(args["gates"], np.empty((3 * B, H)),
                                          np.empty((3 * B, H)), args["h0"], args["c0"],
                                          args["y_prev"]), weights, steps)


def test_a_projection_needs_its_buffers():
    rng = np.random.default_rng(1)
    P = 5
    weights = _core.RecurrentWeights(rng.normal(size=(P, G)), projection=np.eye(H, P))
    steps = _core.Steps(np.full(T, B, np.intc), _acts(), training=True)
    gates = rng.normal(size=(N, G))
    base = (gates, np.empty((N + B, P)), np.empty((N + B, H)), np.zeros((B, P)),
            np.zeros((B, H)), np.zeros((B, P)))
    with pytest.raises(ValueError, match=r"A projection needs `m` \(and in training `ms`\)"):
        _core.forward(_core.ForwardArrays(*base), weights, steps)
    with pytest.raises(ValueError, match=r"A projection needs `m` \(and in training `ms`\)"):
        _core.forward(_core.ForwardArrays(*base, m=np.empty((B, H))), weights, steps)
    with pytest.raises(ValueError, match=f"`ms \\(rows\\)` must hold at least {N}"):
        _core.forward(_core.ForwardArrays(*base, m=np.empty((B, H)), ms=np.empty((N - 1, H))),
                      weights, steps)
    _core.forward(_core.ForwardArrays(*base, m=np.empty((B, H)), ms=np.empty((N, H))), weights,
                  steps)


# Strided x and y ---------------------------------------------------------------------------

@pytest.mark.parametrize("changes", [
    dict(ldy=T * H + 1),                         # rows one element further apart
    dict(y_step=H + 1),
    dict(ldy=T * H, y_step=H, y=np.empty((B * T - 1, H), np.float32)),
])
def test_strided_y_must_not_reach_past_the_array(changes):
    arrays, weights, steps, _, _ = _fused_inference(**changes)
    with pytest.raises(ValueError, match="`y` must hold at least"):
        _core.forward(arrays, weights, steps)


@pytest.mark.parametrize("changes", [
    dict(ldx=T * D + 1),
    dict(x_step=D + 1),
    dict(x=np.zeros(B * T * D - 1, np.float32)),
    dict(ldx=D, x_step=0, x=np.zeros(N * D - 1, np.float32), ldy=0, y_step=0,
         y=np.empty((N, H), np.float32)),        # packed rows
])
def test_strided_x_must_not_reach_past_the_array(changes):
    arrays, weights, steps, _, _ = _fused_inference(**changes)
    with pytest.raises(ValueError, match="`x` must hold at least"):
        _core.forward(arrays, weights, steps)


def test_x_needs_float32_and_the_input_weights():
    args = _forward_args()
    with pytest.raises(TypeError, match="`x` must have dtype float32"):
        _core.ForwardArrays(**args, x=np.zeros(N * D))
    with pytest.raises(TypeError, match=r"`x` \(the core's input product\) needs float32"):
        _core.ForwardArrays(**args, x=np.zeros(N * D, np.float32))
    arrays, weights, steps, w, _ = _fused_inference()
    with pytest.raises(ValueError, match=r"`x` \(the core's input product\) needs `kernel`"):
        _core.forward(arrays, _core.RecurrentWeights(w["recurrent_kernel"],
                                                     packed=weights.packed), steps)


def test_inference_scratch_rows():
    arrays, weights, steps, _, _ = _fused_inference()
    short = _core.ForwardArrays(arrays.gates[:B - 1], arrays.hs, arrays.cs, arrays.h0,
                                arrays.c0, arrays.y_prev, y=arrays.y, x=arrays.x,
                                ldx=T * D, x_step=D, ldy=T * H, y_step=H)
    with pytest.raises(ValueError, match=f"`gates \\(rows\\)` must hold at least {B}"):
        _core.forward(short, weights, steps)


# team and team_if_awake --------------------------------------------------------------------

@pytest.mark.parametrize("team", [0, -1, -(2 ** 31)])
def test_team_must_be_at_least_one(team):
    arrays, weights, steps, _, y = _fused_inference()
    y[...] = 7
    with pytest.raises(ValueError, match=f"`team` must be at least 1, received {team}"):
        _core.forward(arrays, weights, steps, team)
    assert (y == 7).all()                        # refused before running
    arrays, weights, steps, _ = _training_forward()
    with pytest.raises(ValueError, match=f"`team` must be at least 1, received {team}"):
        _core.forward(arrays, weights, steps, team=team, team_if_awake=True)
    with pytest.raises(ValueError, match=f"`team` must be at least 1, received {team}"):
        _core.backward(_backward_arrays(arrays), weights, steps, team)


def test_team_must_be_an_int():
    arrays, weights, steps, _, _ = _fused_inference()
    with pytest.raises(TypeError):
        _core.forward(arrays, weights, steps, "2")
    with pytest.raises(OverflowError):
        _core.forward(arrays, weights, steps, 2 ** 40)


def test_arguments_must_be_the_argument_classes():
    arrays, weights, steps, _ = _training_forward()
    with pytest.raises(TypeError, match="arrays"):
        _core.forward(None, weights, steps)
    with pytest.raises(TypeError):
        _core.forward(weights, arrays, steps)
    with pytest.raises(TypeError, match="steps"):
        _core.backward(_backward_arrays(arrays), weights, None)
    with pytest.raises(TypeError):
        _core.backward(arrays, weights, steps)


# BackwardArrays and TeamGradients ----------------------------------------------------------

@pytest.mark.parametrize("name, bad, error, match", [
    ("dz", np.empty((N, G), np.float32), TypeError, None),       # sets the dtype: dh differs
    ("dh", np.zeros((B, H), np.float32), TypeError, "`dh` must have dtype float64"),
    ("dc", np.zeros((B + 1, H)), ValueError, r"`dc` must have shape \(3, 8\)"),
    ("dy_carry", np.zeros((B, H + 1)), ValueError, r"`dy_carry` must have shape \(3, 8\)"),
    ("g", np.zeros((B - 1, H)), ValueError, r"`g` must have shape \(3, 8\)"),
    ("a", np.zeros((H + 1,)), ValueError, r"`a` must have shape \(8,\)"),
    ("gates", np.zeros((N - 1, G)), ValueError, r"`gates` must have shape \(15, 32\)"),
    ("cs", np.zeros((N + B, H + 1)), ValueError, r"`cs` must have shape \(any, 8\)"),
    ("zs", np.zeros((N, G - 4)), ValueError, r"`zs` must have shape \(15, 32\)"),
    ("dy", np.zeros((N, H + 1)), ValueError, r"`dy` must have shape \(any, 8\)"),
    ("dhs", np.zeros((N + 1, H)), ValueError, r"`dhs` must have shape \(15, 8\)"),
    ("dm", np.zeros((B, H + 1)), ValueError, r"`dm` must have shape \(3, 8\)"),
    ("hm", np.zeros((B, H - 1)), ValueError, r"`hm` must have shape \(3, 8\)"),
])
def test_backward_arrays_check_each_array(name, bad, error, match):
    arrays = _training_forward()[0]
    with pytest.raises(error, match=match if match else "`dh` must have dtype float32"):
        _backward_arrays(arrays, **{name: bad})


def test_backward_checks_the_arrays_against_the_steps():
    arrays, weights, steps, _ = _training_forward()
    _core.forward(arrays, weights, steps)
    inference = _core.Steps(np.full(T, B, np.intc), _acts())
    with pytest.raises(ValueError, match=r"`steps` must be the training forward's"):
        _core.backward(_backward_arrays(arrays), weights, inference)
    other = _core.Steps(np.full(T - 1, B, np.intc), _acts(), training=True)
    with pytest.raises(ValueError, match=f"`dz` must have {N - B} rows"):
        _core.backward(_backward_arrays(arrays), weights, other)
    back = _backward_arrays(arrays, cs=arrays.cs[:N])
    with pytest.raises(ValueError, match=f"`cs` must have {N + B} rows"):
        _core.backward(back, weights, steps)
    with pytest.raises(ValueError, match="`dy` must hold at least"):
        _core.backward(_backward_arrays(arrays, dy=np.ones((N - 1, H))), weights, steps)
    with pytest.raises(ValueError, match="`dy` must hold at least"):
        # a batch-major (B, T, P) gradient read in place, one step too many
        _core.backward(_backward_arrays(arrays, dy=np.ones((N, H)), lddy=T * H,
                                        dy_step=H + 1), weights, steps)
    with pytest.raises(ValueError, match=f"`mask` must have {B} samples"):
        _core.backward(_backward_arrays(arrays), weights,
                       _core.Steps(np.full(T, B, np.intc), _acts(), training=True,
                                   mask=np.ones((T, B - 1), np.uint8)))


def test_backward_needs_the_buffers_of_its_weights():
    arrays, _, steps, _ = _training_forward()
    projected = _core.RecurrentWeights(np.zeros((H, G)), projection=np.eye(H))
    with pytest.raises(ValueError, match="A projection needs `dhs` and `dm`"):
        _core.backward(_backward_arrays(arrays), projected, steps)
    four = _core.RecurrentWeights(np.zeros((H, G)), recurrent_dropout_mask=np.ones((4, B, H)))
    with pytest.raises(ValueError, match="Four recurrent dropout masks need `hm`"):
        _core.backward(_backward_arrays(arrays), four, steps)


def _packed_backward():
    """A float32 training forward run on the packed path, and the arguments of its packed
    backward whose team adds the weight gradients (`ops._backward._core_backward`)."""
    arrays, _, steps, w = _training_forward(np.float32)
    rk = w["recurrent_kernel"]
    _core.forward(arrays, _core.RecurrentWeights(
        rk, packed=np.empty(_core.packed_size(H, H), np.float32)), steps)
    weights = _core.RecurrentWeights(rk, packed=np.empty(_core.packed_t_size(H, H), np.float32))
    sums = dict(dw=np.empty((D, G), np.float32), du=np.empty((H, G), np.float32),
                x=w["x"].reshape(N, D), h_prev=arrays.hs[:N], db=np.empty(G, np.float32))
    return _backward_arrays(arrays, np.float32), weights, steps, sums


def test_a_packed_backward_with_team_gradients_runs():
    back, weights, steps, sums = _packed_backward()
    _core.backward(back, weights, steps, 2, False, _core.TeamGradients(**sums))
    np.testing.assert_allclose(sums["db"], back.dz.sum(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sums["du"], sums["h_prev"].T @ back.dz, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, bad, error, match", [
    ("dw", np.empty((D, G)), TypeError, "`dw` must have dtype float32"),
    ("du", np.empty((H, G + 4), np.float32), ValueError, r"`du` must have shape \(any, 32\)"),
    ("x", np.empty((N, D + 1), np.float32), ValueError, r"`x` must have shape \(any, 4\)"),
    ("h_prev", np.empty((N - 1, H), np.float32), ValueError,
     r"`h_prev` must have shape \(15, 8\)"),
    ("db", np.empty(G - 1, np.float32), ValueError, r"`db` must have shape \(32,\)"),
])
def test_team_gradients_check_each_array(name, bad, error, match):
    sums = _packed_backward()[3]
    sums[name] = bad
    with pytest.raises(error, match=match):
        _core.TeamGradients(**sums)


def test_team_gradients_must_fit_the_call():
    back, weights, steps, sums = _packed_backward()
    with pytest.raises(ValueError, match="`sums` needs the packed path"):
        _core.backward(back, _core.RecurrentWeights(weights.recurrent_kernel), steps, 1, False,
                       _core.TeamGradients(**sums))
    fewer = dict(sums, x=sums["x"][:N - 1], h_prev=sums["h_prev"][:N - 1])
    with pytest.raises(ValueError, match=r"`sums` must hold dw \(D, 32\)"):
        _core.backward(back, weights, steps, 1, False, _core.TeamGradients(**fewer))


def test_backward_packed_of_the_wrong_size():
    back, weights, steps, _ = _packed_backward()
    forward_sized = _core.RecurrentWeights(
        weights.recurrent_kernel, packed=np.empty(_core.packed_t_size(H, H) - 1, np.float32))
    with pytest.raises(ValueError, match=f"`packed` must hold at least "
                                         f"{_core.packed_t_size(H, H)} elements"):
        _core.backward(back, forward_sized, steps)


# Arguments that would read or write outside an array -------------------------------------

@pytest.mark.parametrize("batch_sizes, match", [
    ([1, 2, B], "received 2 at step 1 after 1"),       # grows past the first step's batch
    ([B, -1, B], "received -1 at step 1 after 3"),
    ([-1], "received -1 at step 0"),
])
def test_batch_sizes_must_be_non_negative_and_non_increasing(batch_sizes, match):
    with pytest.raises(ValueError, match=f"`batch_sizes` must be non-negative and "
                                         f"non-increasing, {match}"):
        _core.Steps(np.array(batch_sizes, np.intc), _acts())


def test_recurrent_kernel_without_projection_has_h_rows():
    with pytest.raises(ValueError, match=r"`recurrent_kernel` must have shape \(8, 32\) "
                                         r"without a projection, received \(4, 32\)"):
        _core.RecurrentWeights(np.zeros((H // 2, G)))
    _core.RecurrentWeights(np.zeros((H // 2, G)), projection=np.zeros((H, H // 2)))


@pytest.mark.parametrize("name", ["ldx", "x_step", "ldy", "y_step"])
def test_forward_strides_must_not_be_negative(name):
    with pytest.raises(ValueError, match=f"`{name}` must be >= 0, received -1"):
        _fused_inference(**{name: -1})


@pytest.mark.parametrize("name", ["lddy", "dy_step"])
def test_backward_strides_must_not_be_negative(name):
    with pytest.raises(ValueError, match=f"`{name}` must be >= 0, received -1"):
        _backward_arrays(_training_forward()[0], **{name: -1})


def test_training_reads_x_as_packed_rows():
    """A training forward of a small batch computes every row's input product at once, rows
    `ldx` apart: dense steps `x_step` apart would be read past the array."""
    _, weights, _, w, _ = _fused_inference()
    args = _forward_args(np.float32)
    x = np.ascontiguousarray(w["x"].transpose(1, 0, 2)).reshape(-1)
    arrays = _core.ForwardArrays(**args, x=x, ldx=T * D, x_step=D)
    steps = _core.Steps(np.full(T, B, np.intc), _acts(), training=True)
    with pytest.raises(ValueError, match="`x_step` must be 0 in training"):
        _core.forward(arrays, weights, steps)


def test_a_swish_gate_backward_needs_zs():
    swish = _acts(("swish",) + STANDARD[1:])
    arrays, weights, steps, _ = _training_forward(acts=swish, keep_zs=True)
    _core.forward(arrays, weights, steps)
    with pytest.raises(ValueError, match="`zs` must be given"):
        _core.backward(_backward_arrays(arrays, zs=None), weights, steps)
    _core.backward(_backward_arrays(arrays), weights, steps)
    cell_swish = _acts(STANDARD[:4] + ("swish",))     # the cell output's input is c_t, kept
    arrays, weights, steps, _ = _training_forward(acts=cell_swish)
    _core.forward(arrays, weights, steps)
    _core.backward(_backward_arrays(arrays), weights, steps)
