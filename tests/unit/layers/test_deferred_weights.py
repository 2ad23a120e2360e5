"""`pylstm.layers.layer.deferred_weights`: inside it `add_weight` allocates zeros without running
the initializer, counts the bytes (nested layers included) and refuses, before allocating, a
total over the limit; the flag is per thread."""

import subprocess
import sys
import threading

import numpy as np
import pytest

from pylstm import initializers
from pylstm.layers import LSTM, RNN, Bidirectional, Dense, Embedding, LSTMCell, TimeDistributed
from pylstm.layers.layer import DEFAULT_MAX_WEIGHT_BYTES, WeightLimitError, deferred_weights
from pylstm.models import Sequential


class CountingInitializer(initializers.Initializer):
    """Counts its calls (per instance) and fills with ones."""

    def __init__(self):
        self.calls = 0

    def __call__(self, shape, dtype="float32"):
        self.calls += 1
        return np.ones(shape, dtype)


def lstm_bytes(D, H, itemsize=4):
    return (D * 4 * H + H * 4 * H + 4 * H) * itemsize


def test_default_limit_is_two_gib():
    assert DEFAULT_MAX_WEIGHT_BYTES == 2 ** 31


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_initializer_not_called_and_weights_are_zeros(dtype):
    init = CountingInitializer()
    layer = LSTM(5, kernel_initializer=init, recurrent_initializer=init, bias_initializer=init,
                 dtype=dtype)
    with deferred_weights(10 ** 6) as budget:
        layer.build((2, 3, 4))
    assert init.calls == 0
    assert [w.shape for w in layer.get_weights()] == [(4, 20), (5, 20), (20,)]
    for w in layer.get_weights():
        assert w.dtype == np.dtype(dtype)
        assert not w.any()
    assert budget.nbytes == lstm_bytes(4, 5, np.dtype(dtype).itemsize)
    # Outside the block the initializer runs again.
    other = LSTM(5, kernel_initializer=init, recurrent_initializer=init, bias_initializer=init,
                 unit_forget_bias=False)
    other.build((2, 3, 4))
    assert init.calls == 3
    assert all(w.all() for w in other.get_weights())


def test_orthogonal_initializer_not_run_for_huge_units():
    # The audit's case: units=4000 ran an orthogonal initializer on a 16000 x 4000 matrix.
    with deferred_weights(2 ** 31) as budget:
        layer = LSTM(4000)
        layer.build((1, 1, 3))
    assert budget.nbytes == lstm_bytes(3, 4000)
    assert not layer.recurrent_kernel.value[:4].any()


def test_limit_raises_before_allocating():
    message = r"exceed the limit of 1000 bytes \(max_weight_bytes\).*lstm_big/kernel"
    with pytest.raises(WeightLimitError, match=message):
        with deferred_weights(1000):
            # 10**12 x 4 bytes could never be allocated: the error must come first.
            LSTM(10 ** 6, name="lstm_big").build((1, 1, 10 ** 6))


def test_limit_exact_boundary():
    n = lstm_bytes(3, 2)
    with deferred_weights(n) as budget:
        LSTM(2).build((1, 1, 3))
    assert budget.nbytes == n
    with pytest.raises(ValueError, match=f"{n} bytes exceed the limit of {n - 1} bytes"):
        with deferred_weights(n - 1):
            LSTM(2).build((1, 1, 3))


@pytest.mark.parametrize("make, expected", [
    (lambda: Bidirectional(LSTM(3)), 2 * lstm_bytes(4, 3)),
    (lambda: RNN(LSTMCell(3)), lstm_bytes(4, 3)),
    (lambda: RNN([LSTMCell(3), LSTMCell(2)]), lstm_bytes(4, 3) + lstm_bytes(3, 2)),
    (lambda: TimeDistributed(Dense(7)), (4 * 7 + 7) * 4),
    (lambda: Bidirectional(RNN(LSTMCell(3))), 2 * lstm_bytes(4, 3)),
])
def test_nested_layers_are_counted(make, expected):
    with deferred_weights(10 ** 6) as budget:
        layer = make()
        layer.build((2, 5, 4))
    assert budget.nbytes == expected == sum(w.nbytes for w in layer.get_weights())
    assert not any(w.any() for w in layer.get_weights())


def test_nested_layer_over_the_limit():
    with pytest.raises(ValueError, match="max_weight_bytes"):
        with deferred_weights(lstm_bytes(4, 3) + 1):
            Bidirectional(LSTM(3)).build((2, 5, 4))


def test_sequential_from_config_inside():
    model = Sequential([Embedding(50, 8), LSTM(6), Dense(2)])
    model.build((None, 5))
    config = model.get_config()
    with deferred_weights(10 ** 6) as budget:
        clone = Sequential.from_config(config)
    assert budget.nbytes == sum(w.nbytes for w in model.get_weights())
    clone.set_weights(model.get_weights())
    x = np.arange(10).reshape(2, 5) % 50
    np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))


def test_nested_blocks_have_their_own_totals():
    with deferred_weights(10 ** 6) as outer:
        Dense(2).build((1, 3))
        with deferred_weights(10 ** 6) as inner:
            Dense(4).build((1, 3))
        Dense(2).build((1, 3))
    assert inner.nbytes == 16 * 4
    assert outer.nbytes == 2 * 8 * 4


def test_flag_reset_after_error():
    init = CountingInitializer()
    with pytest.raises(ValueError):
        with deferred_weights(0):
            Dense(2).build((1, 3))
    Dense(2, kernel_initializer=init).build((1, 3))
    assert init.calls == 1


@pytest.mark.parametrize("bad, error", [(1.5, TypeError), ("10", TypeError), (True, TypeError),
                                        (None, TypeError), (-1, ValueError)])
def test_bad_max_bytes(bad, error):
    with pytest.raises(error, match="max_bytes"):
        with deferred_weights(bad):
            pass


def test_other_threads_still_initialize():
    """A thread building a model while another is inside `deferred_weights` runs its
    initializers and is not counted."""
    inside, done = threading.Event(), threading.Event()
    results = {}

    def loader():
        with deferred_weights(10 ** 6) as budget:
            Dense(3).build((1, 2))
            inside.set()
            done.wait(10)
            Dense(3).build((1, 2))
        results["nbytes"] = budget.nbytes

    def builder():
        inside.wait(10)
        init = CountingInitializer()
        layer = Dense(3, kernel_initializer=init, bias_initializer=init)
        layer.build((1, 2))
        results["calls"] = init.calls
        results["weights"] = layer.get_weights()
        done.set()

    threads = [threading.Thread(target=loader), threading.Thread(target=builder)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results["calls"] == 2
    assert all(w.all() for w in results["weights"])
    assert results["nbytes"] == 2 * (2 * 3 + 3) * 4


def test_deferred_weights_touch_no_memory():
    """Values and gradients of a deferred build are untouched zero pages: building a 512 MB
    model (values and gradients) inside the block raises the peak resident memory by far
    less (a child process, so that the peak is this build's)."""
    code = (
        "import resource\n"
        "from pylstm.layers import LSTM\n"
        "from pylstm.layers.layer import deferred_weights\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "with deferred_weights(2 ** 31):\n"
        "    layer = LSTM(4000)\n"
        "    layer.build((1, 1, 3))\n"
        "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "print(grown, layer.recurrent_kernel.grad.nbytes)\n")
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    grown_kib, grad_bytes = int(out[0]), int(out[1])
    assert grad_bytes == 4000 * 16000 * 4
    assert grown_kib < 64 * 1024, grown_kib


def test_nn_lstm_layer_is_deferred_and_counted():
    """`pylstm.nn.LSTM` (behind `LSTMLayer`, which a pylstm file may name) draws no initial
    values inside the block, and its parameters count against the limit."""
    from pylstm.nn import LSTM as NNLSTM
    from pylstm.nn.lstm import LSTMLayer

    with deferred_weights(10 ** 6) as budget:
        module = NNLSTM(3, 4, num_layers=2, bidirectional=True)
    assert budget.nbytes == sum(v.value.nbytes for v in module.parameters())
    assert not any(v.value.any() for v in module.parameters())
    assert NNLSTM(3, 4).weight_ih_l0.value.any()
    with pytest.raises(WeightLimitError, match="weight_hh_l0"):
        with deferred_weights(10 ** 9):
            LSTMLayer(input_size=3, hidden_size=12_000)
