"""`pylstm.layers.Bidirectional` without an oracle: the `weights` argument and the input shape
taken from the layer, the doctests and bad arguments. Parity with Keras:
parity/keras/test_bidirectional.py."""

import doctest

import numpy as np
import pytest

import pylstm.layers.bidirectional as bidirectional_module
from pylstm.layers import LSTM, Dense
from pylstm.layers.bidirectional import Bidirectional
from pylstm.models import Sequential


B, T, D, H = 3, 5, 4, 6


def random_weights(rng, layer):
    return [(rng.normal(size=w.shape) * 0.4).astype(w.dtype) for w in layer.get_weights()]


# Config ---------------------------------------------------------------------------------------


def test_weights_argument_and_input_shape_from_layer(rng):
    source = Bidirectional(LSTM(H))
    source.build((B, T, D))
    weights = random_weights(rng, source)
    bi = Bidirectional(LSTM(H, input_shape=(T, D)), weights=weights)
    model = Sequential([bi])  # builds from the inner layer's input_shape
    assert model.built
    for ours, want in zip(bi.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(ours, want)


def test_doctests():
    assert doctest.testmod(bidirectional_module).failed == 0


# Bad input ------------------------------------------------------------------------------------


def test_rejects_non_layer():
    with pytest.raises(TypeError, match="`layer` must be a pylstm Layer.*list"):
        Bidirectional([LSTM(H)])
    with pytest.raises(TypeError, match="`backward_layer` must be a pylstm Layer"):
        Bidirectional(LSTM(H), backward_layer="lstm")


def test_rejects_non_recurrent_layer():
    with pytest.raises(ValueError, match="recurrent layer.*Dense.*go_backwards"):
        Bidirectional(Dense(3))


@pytest.mark.parametrize("merge_mode", ["max", "Concat", ""])
def test_rejects_unknown_merge_mode(merge_mode):
    with pytest.raises(ValueError, match=r"`merge_mode` must be one of .*'concat'.*received"):
        Bidirectional(LSTM(H), merge_mode=merge_mode)


def test_rejects_mismatched_backward_layer():
    with pytest.raises(ValueError, match="same `return_sequences`, received True .* False"):
        Bidirectional(LSTM(H, return_sequences=True), backward_layer=LSTM(H, go_backwards=True))
    with pytest.raises(ValueError, match="same `return_state`"):
        Bidirectional(LSTM(H), backward_layer=LSTM(H, go_backwards=True, return_state=True))
    with pytest.raises(ValueError, match="differ in `go_backwards`"):
        Bidirectional(LSTM(H), backward_layer=LSTM(H))
    with pytest.raises(ValueError, match="same units; received 6 and 4"):
        Bidirectional(LSTM(H), merge_mode="sum", backward_layer=LSTM(4, go_backwards=True))


def test_rejects_bad_initial_state_and_backward_before_call():
    bi = Bidirectional(LSTM(H))
    x = np.zeros((B, T, D), "float32")
    with pytest.raises(ValueError, match="`initial_state` must be a list .* even count"):
        bi(x, initial_state=[np.zeros((B, H), "float32")] * 3)
    with pytest.raises(ValueError, match=r"initial_state\[1\]` must have shape \(3, 6\)"):
        bi(x, initial_state=[np.zeros((B, H), "float32"), np.zeros((B, 2), "float32")] * 2)
    with pytest.raises(RuntimeError, match="training=True before backward"):
        Bidirectional(LSTM(H)).backward(np.zeros((B, 2 * H), "float32"))
    bi(x, training=True)
    with pytest.raises(ValueError, match=r"output's shape \(3, 12\), received shape \(3, 6\)"):
        bi.backward(np.zeros((B, H), "float32"))
