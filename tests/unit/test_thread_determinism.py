"""Results bitwise the same on one and two threads, where pylstm claims it (pylstm/_threads.py):
every float32 path (the packed core, and the BLAS path of projections, dropout masks, recurrent
dropout, masks, lengths, large batches, sums over more than 256 terms), forward, backward and
inference, `LSTMStepper.step`, and the plain-NumPy path of Python-callable activations in float32
and float64. The thread count is varied both ways: `pylstm.set_num_threads` and, with pylstm at
its default, the caller's BLAS setting (threadpoolctl).

The shapes make OpenBLAS run its multi-threaded drivers (products of well over 2**18
multiply-adds, per-step products over `_threads._LOOP_MIN_FLOP`) and sum over lengths between
its block sizes (D = 300, 4H = 600: the case that used to differ between thread counts)."""

import numpy as np
import pytest
import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's BLAS before threadpoolctl looks)
from threadpoolctl import threadpool_limits

from pylstm import ops
from pylstm.streaming import LSTMStepper


@pytest.fixture(autouse=True)
def default_threads():
    ops.set_num_threads(None)
    yield
    ops.set_num_threads(None)


def problem(B, T, D, H, P=None, dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    scale = 1 / np.sqrt(H)
    P = P or H
    args = dict(x=rng.standard_normal((B, T, D)).astype(dtype),
                kernel=rng.uniform(-scale, scale, (D, 4 * H)).astype(dtype),
                recurrent_kernel=rng.uniform(-scale, scale, (P, 4 * H)).astype(dtype),
                bias=rng.uniform(-scale, scale, 4 * H).astype(dtype),
                h0=rng.standard_normal((B, P)).astype(dtype),
                c0=rng.standard_normal((B, H)).astype(dtype))
    if P != H:
        args["projection"] = rng.uniform(-scale, scale, (H, P)).astype(dtype)
    return args


def options(name, B, T, D, P, dtype):
    rng = np.random.default_rng(1)

    def dropout(shape):
        return ((rng.random(shape) > 0.25) / 0.75).astype(dtype)

    return {
        "plain": {},
        "reverse": dict(reverse=True),
        "mask": dict(mask=rng.random((B, T)) < 0.8, zero_output_for_mask=True),
        "lengths": dict(lengths=rng.integers(1, T + 1, B)),
        "lengths, reverse": dict(lengths=rng.integers(1, T + 1, B), reverse=True),
        "dropout": dict(dropout_mask=dropout((B, D))),
        "4 dropout masks": dict(dropout_mask=dropout((4, B, D)),
                                recurrent_dropout_mask=dropout((4, B, P))),
        "recurrent dropout": dict(recurrent_dropout_mask=dropout((B, P))),
        "recurrent dropout, lengths": dict(recurrent_dropout_mask=dropout((B, P)),
                                           lengths=rng.integers(1, T + 1, B)),
        "callable": dict(activation=lambda z: np.tanh(z)),
    }[name]


def outputs(args, kwargs):
    """Every output and gradient of a training step, and the inference output."""
    y, h_n, c_n, cache = ops.lstm_forward(**args, **kwargs, training=True)
    rng = np.random.default_rng(2)
    grads = ops.lstm_backward(cache, rng.standard_normal(y.shape).astype(y.dtype),
                              rng.standard_normal(h_n.shape).astype(y.dtype),
                              rng.standard_normal(c_n.shape).astype(y.dtype))
    result = dict(y=y, h_n=h_n, c_n=c_n, inference=ops.lstm_forward(**args, **kwargs)[0])
    result.update({f"d_{name}": g for name, g in grads.items() if g is not None})
    return result


def assert_same(one, two):
    assert one.keys() == two.keys()
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)


FLOAT32_SHAPES = [
    # B, T, D, H, P: sums over D = 300 and 4H = 600 terms (between OpenBLAS's block sizes)
    (32, 8, 300, 150, None),
    (32, 8, 300, 150, 100),     # projection
    (96, 4, 40, 64, None),      # a large batch, short
    (1, 12, 300, 64, 48),       # batch 1 with a projection (one-row products)
]
FLOAT32_OPTIONS = ["plain", "reverse", "mask", "lengths", "lengths, reverse", "dropout",
                   "4 dropout masks", "recurrent dropout", "recurrent dropout, lengths",
                   "callable"]


@pytest.mark.parametrize("shape", FLOAT32_SHAPES, ids=lambda s: "B%d T%d D%d H%d P%s" % s)
def test_float32_paths_on_one_and_two_threads(shape):
    B, T, D, H, P = shape
    args = problem(B, T, D, H, P)
    for name in FLOAT32_OPTIONS:
        if name == "callable" and B > 1:
            continue   # the NumPy path is slow; one shape covers it
        kwargs = options(name, B, T, D, P or H, "float32")
        results = []
        for n in (1, 2):
            ops.set_num_threads(n)
            results.append(outputs(args, kwargs))
        try:
            assert_same(*results)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None


def test_float32_callers_blas_setting():
    """pylstm at its default takes the caller's BLAS thread count: 1 and 2 give the same."""
    args = problem(32, 8, 300, 150, 100)
    kwargs = options("recurrent dropout, lengths", 32, 8, 300, 100, "float32")
    results = []
    for n in (1, 2):
        with threadpool_limits(limits=n, user_api="blas"):
            results.append(outputs(args, kwargs))
    assert_same(*results)


def test_float64_callable_activation_path():
    """The plain-NumPy path runs its BLAS products on one thread, so float64 is bitwise the
    same there too."""
    args = problem(16, 6, 300, 100, dtype="float64")
    kwargs = options("callable", 16, 6, 300, 100, "float64")
    results = []
    for n in (1, 2):
        ops.set_num_threads(n)
        results.append(outputs(args, kwargs))
    assert_same(*results)


@pytest.mark.parametrize("projection", [False, True], ids=["", "projection"])
def test_float32_stepper_on_one_and_two_blas_threads(projection):
    """`LSTMStepper.step` uses the caller's BLAS threads: batches of several samples (GEMMs
    summing over D = 500 terms, more than OpenBLAS's block) give the same bits on 1 and 2."""
    B, D, H = 16, 500, 150
    P = 100 if projection else H
    args = problem(B, 5, D, H, P if projection else None)
    stepper = LSTMStepper(args["kernel"], args["recurrent_kernel"], args["bias"],
                          projection=args.get("projection"))
    results = []
    for n in (1, 2):
        with threadpool_limits(limits=n, user_api="blas"):
            state = stepper.initial_state(B)
            ys = []
            for x_t in args["x"].transpose(1, 0, 2):
                y, state = stepper.step(np.ascontiguousarray(x_t), state)
                ys.append(y)
            results.append(dict(y=np.stack(ys), h=state.h, c=state.c))
    assert_same(*results)


def test_float64_pinned_to_one_thread_ignores_the_callers_setting():
    """float64's BLAS products round by their thread count; `set_num_threads(1)` makes them
    the same whatever the caller's BLAS setting (the machine's core count by default)."""
    args = problem(32, 8, 300, 150, 100, dtype="float64")
    kwargs = options("recurrent dropout, lengths", 32, 8, 300, 100, "float64")
    ops.set_num_threads(1)
    results = []
    for n in (1, 2):
        with threadpool_limits(limits=n, user_api="blas"):
            results.append(outputs(args, kwargs))
    assert_same(*results)
