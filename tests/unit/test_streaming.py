"""Streaming inference (pylstm.streaming, pylstm._step): stepping equals the whole-sequence
core; state semantics; in-place buffers; bad input. Against PyTorch's LSTMCell and LSTM:
parity/torch/test_streaming.py."""

import tracemalloc

import numpy as np
import pytest
from pylstm_tests import run_steps, streaming_case

from pylstm._kernels import core as _core
from pylstm.ops import lstm_forward
from pylstm.streaming import LSTMState, LSTMStepper, lstm_step

TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-13)}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("P", [None, 5])
@pytest.mark.parametrize("in_place", [True, False])
def test_steps_equal_lstm_forward(dtype, B, P, in_place):
    w, x, h0, c0 = streaming_case(B, 4, 7, P, dtype)
    y_ref, h_ref, c_ref, _ = lstm_forward(x, h0=h0, c0=c0, **w)
    y, state = run_steps(LSTMStepper(**w), x, h0, c0, in_place)
    np.testing.assert_allclose(y, y_ref, **TOL[dtype])
    np.testing.assert_allclose(state.h, h_ref, **TOL[dtype])
    np.testing.assert_allclose(state.c, c_ref, **TOL[dtype])
    assert y.dtype == state.h.dtype == state.c.dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(_core.ACTIVATION_CODES))
def test_every_activation(dtype, name):
    w, x, h0, c0 = streaming_case(2, 3, 4, 3, dtype, seed=1)
    # Small weights keep "exponential" and "relu" cells finite over six steps.
    w = {k: (v * 0.4 if v is not None else None) for k, v in w.items()}
    for kwargs in ({"activation": name}, {"recurrent_activation": name}):
        y_ref, h_ref, c_ref, _ = lstm_forward(x, h0=h0, c0=c0, **w, **kwargs)
        y, state = run_steps(LSTMStepper(**w, **kwargs), x, h0, c0)
        np.testing.assert_allclose(y, y_ref, **TOL[dtype])
        np.testing.assert_allclose(state.c, c_ref, **TOL[dtype])


def test_gate_activations_and_callable():
    w, x, h0, c0 = streaming_case(2, 3, 4, dtype="float64", seed=2)
    gates = ["hard_sigmoid", "sigmoid", "softsign", "sigmoid", "relu"]
    y_ref, _, c_ref, _ = lstm_forward(x, h0=h0, c0=c0, gate_activations=gates, **w)
    y, state = run_steps(LSTMStepper(gate_activations=gates, **w), x, h0, c0)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-13)
    # A Python callable runs on the NumPy path, with the same result as lstm_forward's.
    y_ref, _, c_ref, _ = lstm_forward(x, h0=h0, c0=c0, activation=np.sin, **w)
    y, state = run_steps(LSTMStepper(activation=np.sin, **w), x, h0, c0)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(state.c, c_ref, rtol=1e-12, atol=1e-13)


def test_lstm_step_function_and_float64_input_cast():
    w, x, h0, c0 = streaming_case(2, 3, 4, dtype="float32", seed=6)
    y_ref, h_ref, c_ref, _ = lstm_forward(x[:, :1], h0=h0, c0=c0, **w)
    y, state = lstm_step(x[:, 0].astype("float64"), LSTMState(h0, c0), **w)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, y_ref[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.c, c_ref, rtol=1e-5, atol=1e-6)


# Buffers and allocation -------------------------------------------------------------------

def test_buffers_are_written_in_place():
    w, x, h0, c0 = streaming_case(3, 4, 6, 5, seed=7)
    stepper = LSTMStepper(**w)
    y_ref, state_ref = stepper.step(x[:, 0], LSTMState(h0, c0))

    state = LSTMState(h0.copy(), c0.copy())
    h_arr, c_arr = state.h, state.c
    out = np.empty((3, 5), "float32")
    y, new = stepper.step(x[:, 0], state, out=out, new_state=state)
    assert y is out and new is state and state.h is h_arr and state.c is c_arr
    np.testing.assert_array_equal(out, y_ref)
    np.testing.assert_array_equal(state.h, state_ref.h)
    np.testing.assert_array_equal(state.c, state_ref.c)

    # Into a separate state, with out aliasing the new h: the old state stays as it was.
    old = LSTMState(h0.copy(), c0.copy())
    target = LSTMState.zeros(3, 6, 5)
    y, new = stepper.step(x[:, 0], old, out=target.h, new_state=target)
    assert y is target.h and new is target
    np.testing.assert_array_equal(target.h, state_ref.h)
    np.testing.assert_array_equal(old.h, h0)
    np.testing.assert_array_equal(old.c, c0)


def test_no_allocation_per_step_with_buffers():
    B, D, H = 4, 32, 256
    w, x, h0, c0 = streaming_case(B, D, H, seed=8, scale=0.05)
    stepper = LSTMStepper(**w)
    state = LSTMState(h0, c0)
    out = np.empty((B, H), "float32")
    x_t = np.ascontiguousarray(x[:, 0])
    stepper.step(x_t, state, out=out, new_state=state)  # the scratch is allocated once here

    def peak_growth(fn):
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            for _ in range(20):
                fn()
            return tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()

    array_bytes = B * H * 4
    # NumPy reports its array allocations to tracemalloc: the allocating form shows them.
    assert peak_growth(lambda: stepper.step(x_t, state)) >= 2 * array_bytes
    assert peak_growth(lambda: stepper.step(x_t, state, out=out, new_state=state)) < 1024


# State ------------------------------------------------------------------------------------

def test_state_copy_reset_and_save(tmp_path):
    state = LSTMState.zeros(3, 4, 2, dtype="float64")
    assert (state.h.shape, state.c.shape, state.dtype) == ((3, 2), (3, 4), np.float64)
    state.h[...] = 1.0
    state.c[...] = 2.0
    copy = state.copy()
    copy.h[...] = 5.0
    assert state.h[0, 0] == 1.0

    state.reset(np.array([True, False, True]))
    np.testing.assert_array_equal(state.h[:, 0], [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(state.c[:, 0], [0.0, 2.0, 0.0])
    state.reset()
    assert not state.h.any() and not state.c.any()

    saved = copy.to_dict()
    np.savez(tmp_path / "state.npz", **saved)
    with np.load(tmp_path / "state.npz") as data:
        loaded = LSTMState.from_dict(data)
    np.testing.assert_array_equal(loaded.h, copy.h)
    np.testing.assert_array_equal(loaded.c, copy.c)
    saved["h"][...] = -1.0  # to_dict returns copies
    assert copy.h[0, 0] == 5.0


def test_reset_one_stream_restarts_it():
    w, x, h0, c0 = streaming_case(2, 3, 4, seed=9)
    stepper = LSTMStepper(**w)
    state = stepper.initial_state(2)
    for t in range(3):
        _, state = stepper.step(x[:, t], state, new_state=state)
    state.reset(np.array([False, True]))
    y, state = stepper.step(x[:, 3], state, new_state=state)
    y_fresh, _, _, _ = lstm_forward(x[1:, 3:4], **w)
    np.testing.assert_allclose(y[1], y_fresh[0, 0], rtol=1e-5, atol=1e-6)


def test_state_errors():
    with pytest.raises(ValueError, match="same batch size"):
        LSTMState(np.zeros((2, 3)), np.zeros((3, 3)))
    with pytest.raises(TypeError, match="`c` must have dtype float64"):
        LSTMState(np.zeros((2, 3)), np.zeros((2, 3), "float32"))
    with pytest.raises(TypeError, match="`h` must be a real floating-point"):
        LSTMState(np.zeros((2, 3), int), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="`h` must be 2-D"):
        LSTMState(np.zeros(3), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="`c` contains 1 NaN"):
        LSTMState(np.zeros((1, 3)), np.array([[0.0, np.nan, 0.0]]))
    with pytest.raises(ValueError, match="`batch_size` must be an integer >= 1"):
        LSTMState.zeros(0, 3)
    state = LSTMState.zeros(2, 3)
    with pytest.raises(ValueError, match=r"`mask` must have shape \(2,\)"):
        state.reset(np.array([True]))
    with pytest.raises(TypeError, match="`mask` must be a boolean array"):
        state.reset(np.array([1, 0]))
    with pytest.raises(ValueError, match=r"exactly the keys \['c', 'h'\], received \['h'\]"):
        LSTMState.from_dict({"h": np.zeros((1, 2))})
    with pytest.raises(AttributeError):
        state.h = np.zeros((2, 3))


# Bad input --------------------------------------------------------------------------------

def test_step_bad_input():
    w, x, h0, c0 = streaming_case(2, 3, 4, seed=10)
    stepper = LSTMStepper(**w)
    state = LSTMState(h0, c0)
    x_t = np.ascontiguousarray(x[:, 0])
    with pytest.raises(ValueError, match=r"`x_t` must have shape \(2, 3\), received shape "
                                         r"\(2, 4\)"):
        stepper.step(np.zeros((2, 4), "float32"), state)
    with pytest.raises(TypeError, match="`x_t` must be a real floating-point array"):
        stepper.step(np.zeros((2, 3), int), state)
    with pytest.raises(TypeError, match="`state` must be an LSTMState, received tuple"):
        stepper.step(x_t, (h0, c0))
    with pytest.raises(ValueError, match=r"`state` must hold h \(3, 4\) and c \(3, 4\)"):
        stepper.step(x_t, LSTMState.zeros(3, 5))
    with pytest.raises(TypeError, match="dtype float32, received .* dtype float64"):
        stepper.step(x_t, LSTMState.zeros(2, 4, dtype="float64"))
    with pytest.raises(ValueError, match="`new_state` must hold"):
        stepper.step(x_t, state, new_state=LSTMState.zeros(1, 4))
    with pytest.raises(ValueError, match=r"`out` must be a writeable C-contiguous array of "
                                         r"shape \(2, 4\), received shape \(2, 5\)"):
        stepper.step(x_t, state, out=np.empty((2, 5), "float32"))
    with pytest.raises(TypeError, match="`out` must have dtype float32"):
        stepper.step(x_t, state, out=np.empty((2, 4)))
    with pytest.raises(ValueError, match="C-contiguous: False"):
        stepper.step(x_t, state, out=np.empty((4, 2), "float32").T)

    bad = x_t.copy()
    bad[1, 2] = np.nan
    before = state.copy()
    with pytest.raises(ValueError, match="`x_t` contains NaN or inf"):
        stepper.step(bad, state, new_state=state)
    np.testing.assert_array_equal(state.h, before.h)  # nothing written
    state.h[0, 0] = np.inf
    with pytest.raises(ValueError, match="`state.h` contains NaN or inf"):
        stepper.step(x_t, state)
    state.h[0, 0] = 0
    state.c[1, 1] = np.nan
    with pytest.raises(ValueError, match="`state.c` contains NaN or inf"):
        stepper.step(x_t, state)


def test_stepper_bad_weights():
    w, _, _, _ = streaming_case(1, 3, 4, seed=11)
    with pytest.raises(ValueError, match=r"`kernel` must have shape \(D, 4\*units\)"):
        LSTMStepper(w["kernel"][:, :15], w["recurrent_kernel"])
    with pytest.raises(ValueError, match=r"`recurrent_kernel` must have shape \(4, 16\) "
                                         r"without a projection"):
        LSTMStepper(w["kernel"], w["recurrent_kernel"][:3])
    with pytest.raises(ValueError, match=r"`projection` must have shape \(4, 3\)"):
        LSTMStepper(w["kernel"], w["recurrent_kernel"][:3], projection=np.zeros((3, 4),
                                                                                  "float32"))
    with pytest.raises(TypeError, match="`recurrent_kernel` must have dtype float32"):
        LSTMStepper(w["kernel"], w["recurrent_kernel"].astype("float64"))
    bias = w["bias"].copy()
    bias[0] = np.inf
    with pytest.raises(ValueError, match="`bias` contains 1 NaN or inf"):
        LSTMStepper(w["kernel"], w["recurrent_kernel"], bias)
    with pytest.raises(ValueError, match="`activation` must be one of"):
        LSTMStepper(w["kernel"], w["recurrent_kernel"], activation="gelu_typo")


def test_doctests():
    import doctest

    from pylstm import streaming

    assert doctest.testmod(streaming).failed == 0
