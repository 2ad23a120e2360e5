"""The two directions of a bidirectional LSTM run side by side (`_threads.concurrently`).

Side by side and one after the other must give bitwise the same outputs and gradients, for
`pylstm.nn.LSTM` (dense and packed input) and for the Keras-style `Bidirectional` layer.
"""

import os
import threading
import time

import numpy as np
import pytest

import pylstm
from pylstm import _plan, _threads
from pylstm.nn.utils.rnn import pack_padded_sequence


@pytest.fixture(params=["side by side", "one after the other"])
def mode(request):
    """Forces both modes whatever the size (`_plan.forced`); two threads."""
    pylstm.set_num_threads(2)
    try:
        with _plan.forced(side_by_side=request.param == "side by side"):
            yield request.param
    finally:
        pylstm.set_num_threads(None)


def nn_run(packed):
    rng = np.random.default_rng(3)
    model = pylstm.nn.LSTM(5, 24, num_layers=2, bidirectional=True, batch_first=True,
                           dtype=np.float32, dropout=0.0)
    model.load_state_dict({name: rng.uniform(-0.3, 0.3, value.shape).astype(np.float32)
                           for name, value in model.state_dict().items()})
    x = rng.standard_normal((4, 7, 5)).astype(np.float32)
    model.train()
    if packed:
        lengths = np.array([7, 3, 5, 1])
        out, (h_n, c_n) = model(pack_padded_sequence(x, lengths, batch_first=True,
                                                     enforce_sorted=False))
        y = out.data
    else:
        y, (h_n, c_n) = model(x)
    dx = model.backward(rng.standard_normal(y.shape).astype(np.float32))
    grads = [p.grad.copy() for p in model.parameters()]
    return [y, h_n, c_n, dx] + grads


@pytest.mark.parametrize("packed", [False, True], ids=["dense", "packed"])
def test_nn_lstm_same_bits_side_by_side(mode, packed):
    got = nn_run(packed)
    with _plan.forced(side_by_side=False):
        expected = nn_run(packed)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def keras_run():
    rng = np.random.default_rng(5)
    layer = pylstm.layers.Bidirectional(pylstm.layers.LSTM(12, return_sequences=True, seed=1),
                                        merge_mode="concat")
    x = rng.standard_normal((3, 6, 4)).astype(np.float32)
    layer(x)            # built one after the other (seeded initializers, fixed order)
    y = layer(x, training=True)
    dx = layer.backward(rng.standard_normal(y.shape).astype(np.float32))
    grads = [v.grad.copy() for v in layer.trainable_variables]
    assert len(grads) == 6
    return [y, dx] + grads, [w.copy() for w in layer.get_weights()]


def test_bidirectional_layer_same_bits_side_by_side(mode):
    got, weights = keras_run()
    with _plan.forced(side_by_side=False):
        expected, expected_weights = keras_run()
    for a, b in zip(weights + got, expected_weights + expected):
        np.testing.assert_array_equal(a, b)


def test_concurrently_runs_in_threads_and_raises_the_first_error():
    pylstm.set_num_threads(2)
    try:
        seen = []
        assert not _plan.side_by_side(1)
        assert _plan.side_by_side(_plan._CONCURRENT_MIN_FLOP)
        flop = _plan._CONCURRENT_MIN_FLOP
        results = _threads.concurrently(
            [lambda: seen.append(threading.get_ident()) or 1,
             lambda: seen.append(threading.get_ident()) or 2], flop)
        assert results == [1, 2]
        assert len(set(seen)) == 2

        def fail():
            raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            _threads.concurrently([lambda: 1, fail], flop)
        # Nested calls inside a side-by-side call run one after the other.
        inner = _threads.concurrently(
            [lambda: _threads.concurrently([threading.get_ident, threading.get_ident], flop),
             lambda: None], flop)[0]
        assert inner[0] == inner[1]
    finally:
        pylstm.set_num_threads(None)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux and two CPUs to run on")
def test_calls_side_by_side_run_on_cpus_of_their_own():
    """A thread started for the second call often starts on the caller's CPU, and stays while
    both compute: it moves off (`_cpu.leave_cpus`), leaving its affinity as it was. The
    scheduler may still move a thread back now and then: on a 2-CPU VM the calls ended on
    one CPU in about 1 round of 20 with the move, 14 of 20 without."""
    from pylstm import _cpu, ops

    rng = np.random.default_rng(0)
    args = dict(x=rng.standard_normal((16, 60, 32), dtype=np.float32),
                kernel=rng.uniform(-0.1, 0.1, (32, 512)).astype(np.float32),
                recurrent_kernel=rng.uniform(-0.1, 0.1, (128, 512)).astype(np.float32))
    allowed = os.sched_getaffinity(0)

    def call():
        ops.lstm_forward(**args)
        return _cpu.current_cpu(), os.sched_getaffinity(0)

    pylstm.set_num_threads(2)
    try:
        shared = 0
        with _plan.forced(side_by_side=True):
            for _ in range(16):
                time.sleep(0.02)
                (first, mask_first), (second, mask_second) = _threads.concurrently(
                    [call, call], 1)
                shared += first == second
                assert {first, second} <= allowed
                assert mask_first == mask_second == allowed
        assert shared <= 4
    finally:
        pylstm.set_num_threads(None)
