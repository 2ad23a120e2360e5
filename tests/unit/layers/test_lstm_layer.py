"""The `pylstm.layers.LSTM` contract: Keras 3 output shapes, weights and their initialization,
config round trips, dtypes, non-contiguous inputs, and float64 central-difference gradient
checks of `backward`."""

import itertools
import json

import numpy as np
import pytest

from pylstm import initializers, ops, utils
from pylstm._validation import check_lstm_weights
from pylstm.ops import _dense
from pylstm.layers import LSTM

B, T, D, H = 3, 5, 4, 6


def seeded_layer(units=H, seed=0, **kwargs):
    return LSTM(units, seed=seed, bias_initializer=initializers.RandomNormal(seed=seed + 9),
                **kwargs)


def inputs(dtype="float32", shape=(B, T, D), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


# Shapes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("return_sequences,return_state,go_backwards",
                         list(itertools.product([False, True], repeat=3)))
def test_output_shapes(return_sequences, return_state, go_backwards):
    layer = seeded_layer(return_sequences=return_sequences, return_state=return_state,
                         go_backwards=go_backwards)
    result = layer(inputs())
    out_shape = (B, T, H) if return_sequences else (B, H)
    expected = [out_shape, (B, H), (B, H)] if return_state else out_shape
    assert layer.compute_output_shape((B, T, D)) == expected
    if return_state:
        assert isinstance(result, list) and len(result) == 3
        assert [r.shape for r in result] == expected
        assert all(r.dtype == np.float32 for r in result)
    else:
        assert isinstance(result, np.ndarray) and result.shape == expected


def test_go_backwards_returns_sequence_in_processing_order():
    x = inputs()
    forward = seeded_layer(return_sequences=True, return_state=True)
    backward = seeded_layer(return_sequences=True, return_state=True, go_backwards=True)
    y_b, h_b, c_b = backward(x)
    # Keras: go_backwards is the forward layer on the time-flipped input, outputs unflipped.
    y_f, h_f, c_f = forward(x[:, ::-1])
    np.testing.assert_allclose(y_b, y_f, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(h_b, h_f, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(c_b, c_f, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(y_b[:, -1], h_b)
    assert np.abs(y_b - forward(x)[0]).max() > 1e-3
    last = seeded_layer(go_backwards=True)(x)
    np.testing.assert_allclose(last, h_b, rtol=1e-6, atol=1e-6)
    # ... and ops' reverse keeps outputs at their time index, so it is the flip of it.
    k, r, b = backward.get_weights()
    y_r = ops.lstm_forward(x, k, r, b, reverse=True)[0]
    np.testing.assert_allclose(y_b, y_r[:, ::-1], rtol=1e-6, atol=1e-6)


# Weights and initialization ---------------------------------------------------------------------


def test_get_weights_order_and_shapes():
    layer = seeded_layer()
    layer(inputs())
    weights = layer.get_weights()
    assert [w.shape for w in weights] == [(D, 4 * H), (H, 4 * H), (4 * H,)]
    assert all(w.dtype == np.float32 for w in weights)
    assert [v.name.split("/")[-1] for v in layer.weights] == ["kernel", "recurrent_kernel", "bias"]
    assert layer.count_params() == D * 4 * H + H * 4 * H + 4 * H
    # get_weights returns copies; set_weights round-trips.
    weights[0][...] = 0
    assert np.abs(layer.get_weights()[0]).max() > 0
    other = LSTM(H, seed=99)
    other.build((None, T, D))
    other.set_weights(layer.get_weights())
    np.testing.assert_array_equal(other(inputs()), layer(inputs()))


@pytest.mark.parametrize("unit_forget_bias", [True, False])
def test_unit_forget_bias(unit_forget_bias):
    layer = LSTM(H, unit_forget_bias=unit_forget_bias, bias_initializer=initializers.Constant(0.3))
    layer.build((None, T, D))
    bias = layer.bias.value
    expected = np.full(4 * H, 0.3, dtype=np.float32)
    if unit_forget_bias:
        expected[H:2 * H] = 1.0
    np.testing.assert_array_equal(bias, expected)


def test_unit_forget_bias_default_with_zeros():
    layer = LSTM(H)
    layer.build((None, T, D))
    bias = layer.get_weights()[2]
    np.testing.assert_array_equal(bias[H:2 * H], 1.0)
    np.testing.assert_array_equal(np.delete(bias, np.s_[H:2 * H]), 0.0)


def test_use_bias_false():
    layer = seeded_layer(use_bias=False, return_state=True)
    y, h, c = layer(inputs())
    weights = layer.get_weights()
    assert [w.shape for w in weights] == [(D, 4 * H), (H, 4 * H)]
    want = ops.lstm_forward(inputs(), *weights, None)
    np.testing.assert_allclose(y, want[0][:, -1], rtol=1e-6, atol=1e-7)
    x = inputs()
    layer(x, training=True)
    dx = layer.backward([np.ones((B, H), np.float32), None, None])
    assert dx.shape == (B, T, D) and np.abs(dx).max() > 0


def test_recurrent_kernel_is_orthogonal():
    units = 16
    layer = LSTM(units, seed=4)
    layer.build((None, T, D))
    r = layer.recurrent_kernel.value.astype(np.float64)  # (H, 4H): orthonormal rows
    np.testing.assert_allclose(r @ r.T, np.eye(units), atol=1e-5)
    assert np.abs(r.T @ r - np.eye(4 * units)).max() > 0.1  # not square, so not both ways


def test_weights_are_c_contiguous_and_read_in_place(monkeypatch):
    """The core reads weights in C order: a Fortran-ordered one (the orthogonal initializer's
    transposed QR factor, or a custom initializer's) would be copied at every call."""
    fortran = lambda shape, dtype="float32": np.asfortranarray(np.ones(shape, dtype))  # noqa
    layer = LSTM(H, seed=4, kernel_initializer=fortran)
    layer.build((None, T, D))
    assert all(v.value.flags.c_contiguous for v in layer.weights)
    received = []
    forward = _dense.forward

    def spy(x, kernel, recurrent_kernel, bias, *args, **kwargs):
        received.extend([kernel, recurrent_kernel, bias])
        return forward(x, kernel, recurrent_kernel, bias, *args, **kwargs)

    monkeypatch.setattr(_dense, "forward", spy)
    layer(inputs())
    assert [id(w) for w in received] == [id(v.value) for v in layer.weights]
    assert all(check_lstm_weights(*received)[k] is received[k] for k in range(3))


def test_glorot_uniform_kernel_statistics():
    layer = LSTM(100, seed=5)
    layer.build((None, 2, 200))
    kernel = layer.kernel.value.astype(np.float64)  # (200, 400)
    limit = np.sqrt(6.0 / (200 + 400))
    assert np.abs(kernel).max() <= limit
    assert np.abs(kernel).max() > 0.99 * limit
    assert abs(kernel.std() - limit / np.sqrt(3)) < 0.01 * limit / np.sqrt(3)
    assert abs(kernel.mean()) < 0.01 * limit


def test_seeded_layers_are_reproducible():
    a, b, c = LSTM(H, seed=1), LSTM(H, seed=1), LSTM(H, seed=2)
    for layer in (a, b, c):
        layer.build((None, T, D))
    for wa, wb, wc in zip(a.get_weights()[:2], b.get_weights()[:2], c.get_weights()[:2]):
        np.testing.assert_array_equal(wa, wb)
        assert np.abs(wa - wc).max() > 1e-3


def test_global_seed_makes_unseeded_layers_reproducible():
    utils.set_random_seed(11)
    a = LSTM(H)
    a.build((None, T, D))
    utils.set_random_seed(11)
    b = LSTM(H)
    b.build((None, T, D))
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


# Config ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("through_json", [False, True])
def test_config_round_trip(through_json):
    layer = LSTM(5, activation="relu", recurrent_activation="hard_sigmoid", use_bias=True,
                 kernel_initializer=initializers.RandomUniform(-0.3, 0.3),
                 recurrent_initializer=initializers.Orthogonal(gain=0.5),
                 bias_initializer="random_normal", unit_forget_bias=False,
                 return_sequences=True, return_state=True, go_backwards=True, seed=42,
                 dtype="float64", name="my_lstm")
    config = layer.get_config()
    if through_json:
        config = json.loads(json.dumps(config))
    clone = LSTM.from_config(config)
    assert clone.get_config() == layer.get_config()
    assert clone.name == "my_lstm" and clone.dtype == "float64"
    x = inputs("float64")
    for a, b in zip(layer(x), clone(x)):  # seeded: same weights, so the same outputs
        np.testing.assert_array_equal(a, b)
    assert layer(x)[0].shape == (B, T, 5)


def test_default_config_round_trip():
    layer = LSTM(3)
    config = json.loads(json.dumps(layer.get_config()))
    assert LSTM.from_config(config).get_config() == layer.get_config()
    assert config["units"] == 3 and config["activation"] == "tanh"
    assert config["recurrent_activation"] == "sigmoid" and config["unit_forget_bias"] is True


# Dtypes and memory layouts ---------------------------------------------------------------------


def test_float64_layer():
    layer64 = seeded_layer(dtype="float64", return_sequences=True)
    layer32 = seeded_layer(return_sequences=True)
    x = inputs("float64")
    y64 = layer64(x)
    assert y64.dtype == np.float64
    assert all(w.dtype == np.float64 for w in layer64.get_weights())
    layer32.build(x.shape)
    layer32.set_weights([w.astype(np.float32) for w in layer64.get_weights()])
    y32 = layer32(x)
    np.testing.assert_allclose(y32, y64, atol=1e-5)
    assert np.abs(y32 - y64).max() > 0  # they really ran at different precisions


def test_float64_input_to_float32_layer_is_cast():
    layer = seeded_layer(return_state=True)
    x = inputs("float64")
    got = layer(x)
    want = layer(x.astype(np.float32))
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_array_equal(g, w)


def _noncontiguous_views():
    rng = np.random.default_rng(3)
    big = rng.normal(size=(2 * B, 2 * T, 2 * D))
    time_major = rng.normal(size=(T, B, D))
    return {
        "transposed": time_major.transpose(1, 0, 2),
        "strided": big[::2, 1::2, ::2],
        "reversed": big[:B, ::-1, :D][:, :T],
        "fortran": np.asfortranarray(rng.normal(size=(B, T, D))),
        "last_axis_strided": big[:B, :T, ::2],
    }


@pytest.mark.parametrize("kind", list(_noncontiguous_views()))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_noncontiguous_inputs_match_contiguous_copies(kind, dtype):
    x = _noncontiguous_views()[kind].astype(dtype, copy=False)
    if dtype == "float64":
        assert not x.flags.c_contiguous
    layer = seeded_layer(return_sequences=True, return_state=True, dtype=dtype)
    got = layer(x, training=True)
    dy = np.ones_like(got[0])
    dx = layer.backward([dy, None, None])
    grads = [v.grad.copy() for v in layer.weights]
    layer.zero_grads()
    want = layer(np.ascontiguousarray(x), training=True)
    dx_want = layer.backward([dy, None, None])
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    np.testing.assert_array_equal(dx, dx_want)
    for g, v in zip(grads, layer.weights):
        np.testing.assert_array_equal(g, v.grad)


def test_initial_state_and_mask():
    layer = seeded_layer(return_sequences=True, return_state=True)
    x = inputs()
    rng = np.random.default_rng(5)
    h0, c0 = rng.normal(size=(2, B, H)).astype(np.float32)
    y, h, c = layer(x, initial_state=[h0, c0])
    assert np.abs(y - layer(x)[0]).max() > 1e-3
    k, r, b = layer.get_weights()
    want = ops.lstm_forward(x, k, r, b, h0, c0)
    np.testing.assert_allclose(y, want[0], rtol=1e-6, atol=1e-6)
    # A masked step carries the state and repeats the previous output (Keras).
    mask = np.ones((B, T), bool)
    mask[:, 2] = False
    y_m = layer(x, mask=mask)[0]
    np.testing.assert_array_equal(y_m[:, 2], y_m[:, 1])
    np.testing.assert_array_equal(y_m[:, :2], layer(x)[0][:, :2])


def test_backward_accumulates_and_requires_training_call():
    layer = seeded_layer()
    with pytest.raises(RuntimeError, match="training=True"):
        layer.backward(np.ones((B, H), np.float32))
    x = inputs()
    layer(x, training=True)
    layer.backward(np.ones((B, H), np.float32))
    once = layer.kernel.grad.copy()
    layer.backward(np.ones((B, H), np.float32))
    np.testing.assert_allclose(layer.kernel.grad, 2 * once, rtol=1e-6)


# Finite-difference gradients -------------------------------------------------------------------


def _loss(layer, x, initial_state, upstream):
    """`sum(output * upstream)` of a call (all three outputs with return_state)."""
    result = layer(x, initial_state=initial_state)
    outputs = result if layer.return_state else [result]
    return sum(float(np.sum(o * u)) for o, u in zip(outputs, upstream))


@pytest.mark.parametrize("return_sequences,return_state,go_backwards",
                         list(itertools.product([False, True], repeat=3)))
@pytest.mark.parametrize("with_initial_state", [False, True])
def test_backward_matches_finite_differences(return_sequences, return_state, go_backwards,
                                             with_initial_state, numeric_grad):
    b, t, d, h = 2, 3, 2, 3
    rng = np.random.default_rng([return_sequences, return_state, go_backwards, with_initial_state])
    layer = LSTM(h, return_sequences=return_sequences, return_state=return_state,
                 go_backwards=go_backwards, dtype="float64")
    layer.build((None, t, d))
    layer.set_weights([rng.normal(size=w.shape) * 0.7 for w in layer.get_weights()])
    x = rng.normal(size=(b, t, d))
    state = [rng.normal(size=(b, h)), rng.normal(size=(b, h))] if with_initial_state else None
    out_shape = (b, t, h) if return_sequences else (b, h)
    upstream = [rng.normal(size=out_shape)]
    if return_state:
        upstream += [rng.normal(size=(b, h)), rng.normal(size=(b, h))]

    layer(x, training=True, initial_state=state)
    back = layer.backward(upstream if return_state else upstream[0])
    if with_initial_state:
        dx, dstate = back
    else:
        dx, dstate = back, []
    analytic = [dx] + list(dstate) + [v.grad for v in layer.weights]
    params = [x] + (state or []) + [v.value for v in layer.weights]

    for p, g in zip(params, analytic):
        assert g.shape == p.shape
        numeric = numeric_grad(lambda: _loss(layer, x, state, upstream), p)
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-8)
