"""Thread safety: eight threads calling ONE layer, module, stepper or set of weights at once,
each with its own inputs, get bitwise the results of the same calls made one after another.

Every public inference call is covered (the Keras-style layers and `Sequential.predict`, the
PyTorch-style modules in eval and train mode, `LSTMStepper.step`, and `ops.lstm_forward` /
`ops.lstm_backward` with shared weights), and the step paths both with fresh outputs and with
`out` / `new_state` given (the allocation-free path, whose scratch buffers are per thread).
The steps release the GIL, so the threads really overlap there; elsewhere the interleaving
comes from the GIL switching between threads, made frequent here (`sys.setswitchinterval`).
"""

import sys
import threading

import numpy as np
import pytest

import pylstm
from pylstm import layers, models, nn, ops
from pylstm.streaming import LSTMStepper

THREADS = 8
D, H = 5, 16


@pytest.fixture(autouse=True)
def frequent_switches():
    """Lets the GIL change hands often, so that Python-level steps interleave."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def data(seed, shape, dtype="float32"):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def run_concurrently(work, rounds, before_threads=None):
    """Runs `work(k)` (which returns a list of arrays) `rounds` times in each of THREADS
    threads at once, k the thread's index, and checks every result against a serial run of
    `work(k)` (then `before_threads()`, if given). Returns the number of results compared."""
    expected = [[a.copy() for a in work(k)] for k in range(THREADS)]
    if before_threads is not None:
        before_threads()
    start = threading.Barrier(THREADS)
    mismatches = []
    errors = []

    def run(k):
        try:
            start.wait()
            for r in range(rounds):
                got = work(k)
                if len(got) != len(expected[k]) or not all(
                        a.shape == b.shape and np.array_equal(a, b)
                        for a, b in zip(got, expected[k])):
                    mismatches.append((k, r))
        except BaseException as error:  # reported below, in the main thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"
    if errors:
        raise errors[0]
    assert not mismatches, (f"{len(mismatches)} of {THREADS * rounds} concurrent results "
                            f"differ from the serial ones, e.g. (thread, round) "
                            f"{mismatches[:5]}")
    return THREADS * rounds


def stepped(step, xs, state, out, copy=True):
    """Steps through `xs` with `step(x_t, state, out)`; the outputs and the final state."""
    ys = []
    for x_t in xs:
        y, state = step(x_t, state, out)
        ys.append(y.copy() if copy else y)
    return ys, state


# Step paths: one shared object, per-thread states ---------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("projection", [False, True], ids=["", "projection"])
@pytest.mark.parametrize("buffers", [False, True], ids=["fresh", "out+new_state"])
def test_stepper_step(dtype, projection, buffers):
    rng = np.random.default_rng(0)
    P = 7 if projection else H
    stepper = LSTMStepper(rng.uniform(-0.5, 0.5, (D, 4 * H)).astype(dtype),
                          rng.uniform(-0.5, 0.5, (P, 4 * H)).astype(dtype),
                          rng.uniform(-0.5, 0.5, 4 * H).astype(dtype),
                          projection=(rng.uniform(-0.5, 0.5, (H, P)).astype(dtype)
                                      if projection else None))
    # The same batch size in every thread: the scratch buffers of one size were shared.
    xs = [data(k, (12, 3, D), dtype) for k in range(THREADS)]

    def work(k):
        state = stepper.initial_state(3)
        if buffers:
            out = np.empty((3, P), dtype)
            ys, state = stepped(lambda x, s, o: stepper.step(x, s, out=o, new_state=s),
                                xs[k], state, out)
        else:
            ys, state = stepped(lambda x, s, o: stepper.step(x, s), xs[k], state, None)
        return ys + [state.h, state.c]

    run_concurrently(work, rounds=60)


@pytest.mark.parametrize("buffers", [False, True], ids=["fresh", "out"])
def test_layers_lstm_step(buffers):
    layer = layers.LSTM(H, seed=0)
    layer.build((None, None, D))
    xs = [data(k, (12, 2, D)) for k in range(THREADS)]

    def work(k):
        state = layer.initial_state(2)
        out = np.empty((2, H), "float32") if buffers else None
        ys, state = stepped(lambda x, s, o: layer.step(x, s, out=o), xs[k], state, out)
        return ys + [state.h, state.c]

    run_concurrently(work, rounds=60)


def test_layers_lstm_step_while_the_weights_are_rebound():
    """A thread that rebinds the layer's weights (with equal values) makes the others rebuild
    the cached stepper mid-stream: their results do not change."""
    layer = layers.LSTM(H, seed=0)
    layer.build((None, None, D))
    xs = [data(k, (10, 2, D)) for k in range(THREADS)]

    def work(k):
        if k == 0:
            layer.kernel.value = layer.kernel.value.copy()
        ys, state = stepped(lambda x, s, o: layer.step(x, s), xs[k], None, None)
        return ys + [state.h, state.c]

    run_concurrently(work, rounds=40)


@pytest.mark.parametrize("proj_size", [0, 3])
@pytest.mark.parametrize("buffers", [False, True], ids=["fresh", "out+new_state"])
def test_nn_lstm_step(proj_size, buffers):
    model = nn.LSTM(D, H, num_layers=2, proj_size=proj_size, seed=0).eval()
    P = proj_size or H
    xs = [data(k, (12, 3, D)) for k in range(THREADS)]

    def work(k):
        state = model.initial_state(3)
        if buffers:
            out = np.empty((3, P), "float32")
            ys, state = stepped(lambda x, s, o: model.step(x, s, out=o, new_state=s), xs[k],
                                state, out)
        else:
            ys, state = stepped(lambda x, s, o: model.step(x, s), xs[k], state, None)
        return ys + [layer.h for layer in state.layers] + [layer.c for layer in state.layers]

    run_concurrently(work, rounds=40)


def test_nn_lstm_cell_eval():
    cell = nn.LSTMCell(D, H, seed=0).eval()
    xs = [data(k, (12, 3, D)) for k in range(THREADS)]

    def work(k):
        hx = None
        ys = []
        for x_t in xs[k]:
            hx = cell(x_t, hx)
            ys += [hx[0], hx[1]]
        return ys

    run_concurrently(work, rounds=40)


def test_nn_lstm_cell_train_mode_forward():
    """In train mode each call keeps its cache for `backward` (the last call's, per module);
    the results of the calls themselves do not depend on other threads."""
    cell = nn.LSTMCell(D, H, seed=0)
    xs = [data(k, (6, 3, D)) for k in range(THREADS)]

    def work(k):
        hx = None
        ys = []
        for x_t in xs[k]:
            hx = cell(x_t, hx)
            ys += [hx[0], hx[1]]
        return ys

    run_concurrently(work, rounds=20)


# Whole-sequence calls: one shared layer / model, per-thread inputs ------------------------------

def test_layers_lstm_call_and_predict():
    layer = layers.LSTM(H, return_sequences=True, seed=0)
    model = models.Sequential([layers.Input((None, D)), layers.LSTM(H, seed=1),
                               layers.Dense(3)])
    xs = [data(k, (3, 9 + k, D)) for k in range(THREADS)]

    def work(k):
        return [layer(xs[k]), model.predict(xs[k], batch_size=2)]

    layer(xs[0])   # built before the threads start
    run_concurrently(work, rounds=20)


def test_layers_lstm_cell_rnn_and_bidirectional():
    cell = layers.LSTMCell(H, seed=0)
    rnn = layers.RNN(layers.LSTMCell(H, seed=1), return_sequences=True)
    bidirectional = layers.Bidirectional(layers.LSTM(H, return_sequences=True, seed=2))
    xs = [data(k, (2, 8, D)) for k in range(THREADS)]
    for layer, x in ((cell, xs[0][:, 0]), (rnn, xs[0]), (bidirectional, xs[0])):
        layer(x)   # built before the threads start

    def work(k):
        h, states = cell(xs[k][:, 0])
        return [h, *states, rnn(xs[k]), bidirectional(xs[k])]

    run_concurrently(work, rounds=20)


def test_nn_lstm_forward_eval():
    model = nn.LSTM(D, H, num_layers=2, bidirectional=True, seed=0).eval()
    xs = [data(k, (7 + k, 3, D)) for k in range(THREADS)]

    def work(k):
        output, (h_n, c_n) = model(xs[k])
        return [output, h_n, c_n]

    run_concurrently(work, rounds=20)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_ops_forward_and_backward_with_shared_weights(dtype):
    rng = np.random.default_rng(0)
    kernel = rng.uniform(-0.5, 0.5, (D, 4 * H)).astype(dtype)
    recurrent_kernel = rng.uniform(-0.5, 0.5, (H, 4 * H)).astype(dtype)
    bias = rng.uniform(-0.5, 0.5, 4 * H).astype(dtype)
    xs = [data(k, (4, 10, D), dtype) for k in range(THREADS)]
    lengths = np.array([10, 3, 7, 1])

    def work(k):
        y, h_n, c_n, cache = ops.lstm_forward(xs[k], kernel, recurrent_kernel, bias,
                                              training=True)
        grads = ops.lstm_backward(cache, np.ones_like(y))
        y_len, _, _, cache = ops.lstm_forward(xs[k], kernel, recurrent_kernel, bias,
                                              lengths=lengths, training=True)
        grads_len = ops.lstm_backward(cache, np.ones_like(y_len))
        inference = ops.lstm_forward(xs[k], kernel, recurrent_kernel, bias)[0]
        return ([y, h_n, c_n, y_len, inference]
                + [grads[name] for name in sorted(grads) if grads[name] is not None]
                + [grads_len[name] for name in sorted(grads_len)
                   if grads_len[name] is not None])

    run_concurrently(work, rounds=15)


def test_concurrent_calls_leave_the_blas_setting_alone():
    """Threads that interleave calls changing the BLAS thread counts (a one-thread time loop,
    a set thread count, small calls whose core switches the counts itself) leave the caller's
    setting: the last call in flight restores it."""
    from threadpoolctl import threadpool_info

    def counts():
        return [info["num_threads"] for info in threadpool_info()
                if info["user_api"] == "blas"]

    before = counts()
    rng = np.random.default_rng(0)
    kernel = rng.uniform(-0.5, 0.5, (D, 4 * H)).astype("float64")
    recurrent_kernel = rng.uniform(-0.5, 0.5, (H, 4 * H)).astype("float64")
    xs = [data(k, (4, 10, D), "float64") for k in range(THREADS)]

    def work(k):
        y, _, _, cache = ops.lstm_forward(xs[k], kernel, recurrent_kernel, training=True)
        small = ops.lstm_forward(xs[k][:1, :3], kernel, recurrent_kernel)[0]
        return [y, small, ops.lstm_backward(cache, np.ones_like(y))["kernel"]]

    pylstm.set_num_threads(2)
    try:
        run_concurrently(work, rounds=15)
    finally:
        pylstm.set_num_threads(None)
    assert counts() == before


def test_first_multithreaded_calls_at_once(monkeypatch):
    """The first call on several BLAS threads restarts OpenBLAS's pools (a shorter busy-wait,
    see pylstm._threads): threads whose calls start meanwhile wait for it."""
    from pylstm import _threads
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    rng = np.random.default_rng(0)
    kernel = rng.uniform(-0.5, 0.5, (40, 4 * 64)).astype("float32")
    recurrent_kernel = rng.uniform(-0.5, 0.5, (64, 4 * 64)).astype("float32")
    xs = [data(k, (16, 6, 40)) for k in range(THREADS)]

    def work(k):
        y, _, _, cache = ops.lstm_forward(xs[k], kernel, recurrent_kernel, training=True)
        return [y, ops.lstm_backward(cache, np.ones_like(y))["kernel"]]

    pylstm.set_num_threads(2)
    try:
        run_concurrently(work, rounds=3,
                         before_threads=lambda: monkeypatch.setattr(_threads, "_timeout_set",
                                                                    False))
    finally:
        pylstm.set_num_threads(None)
    assert _threads._timeout_set
