"""`pylstm.layers.Bidirectional` without an oracle: the `weights` argument and the input shape
taken from the layer, the output mask, float64 central differences of each merge mode's
backward, the config protocol, the doctests and bad arguments. Parity with Keras:
parity/keras/test_bidirectional.py."""

import doctest
import json

import numpy as np
import pytest
from pylstm_tests import MASKS, as_list

import pylstm.layers.bidirectional as bidirectional_module
from pylstm.layers import LSTM, Dense, deserialize, serialize
from pylstm.layers.bidirectional import Bidirectional
from pylstm.layers.rnn import RNN, LSTMCell
from pylstm.models import Sequential


B, T, D, H = 3, 5, 4, 6
MERGE_MODES = ["concat", "sum", "mul", "ave", None]


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


def test_compute_mask():
    mask = MASKS["holes"]
    x = np.zeros((B, T, D), "float32")
    seq = Bidirectional(LSTM(H, return_sequences=True))
    np.testing.assert_array_equal(seq.compute_mask(x, mask), mask)
    assert Bidirectional(LSTM(H)).compute_mask(x, mask) is None
    both = Bidirectional(LSTM(H, return_sequences=True), merge_mode=None).compute_mask(x, mask)
    assert len(both) == 2 and all(m is mask for m in both)
    with_state = Bidirectional(LSTM(H, return_state=True)).compute_mask(x, mask)
    assert with_state == [None] * 5


@pytest.mark.parametrize("merge_mode", MERGE_MODES)
def test_backward_central_differences(numeric_grad, merge_mode):
    rng = np.random.default_rng(3)
    layer = Bidirectional(LSTM(3, return_sequences=True, dtype="float64"), merge_mode=merge_mode)
    assert layer.dtype == "float64"
    x = rng.normal(size=(2, 4, 3))
    layer.build(x.shape)
    layer.set_weights([rng.normal(size=w.shape) * 0.5 for w in layer.get_weights()])
    outputs = as_list(layer(x))
    upstream = [rng.normal(size=o.shape) for o in outputs]

    def loss():
        return sum(float(np.sum(o * g)) for o, g in zip(as_list(layer(x)), upstream))

    layer(x, training=True)
    layer.zero_grads()
    dx = layer.backward(upstream if merge_mode is None else upstream[0])
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    for var in layer.weights:
        np.testing.assert_allclose(var.grad, numeric_grad(loss, var.value), rtol=1e-6,
                                   atol=1e-8, err_msg=var.name)


@pytest.mark.parametrize("inner", ["lstm", "rnn"])
def test_config_round_trip(rng, inner):
    if inner == "lstm":
        layer = LSTM(H, return_sequences=True, name="enc")
    else:
        layer = RNN(LSTMCell(H), return_sequences=True, name="enc")
    bi = Bidirectional(layer, merge_mode="mul", name="bi")
    assert (bi.forward_layer.name, bi.backward_layer.name) == ("forward_enc", "backward_enc")
    x = rng.normal(size=(B, T, D)).astype("float32")
    bi.build(x.shape)
    bi.set_weights(random_weights(rng, bi))
    config = json.loads(json.dumps(serialize(bi)))
    assert config["config"]["layer"]["config"]["go_backwards"] is False
    assert config["config"]["backward_layer"]["config"]["go_backwards"] is True
    clone = deserialize(config)
    assert isinstance(clone, Bidirectional)
    assert json.loads(json.dumps(clone.get_config())) == config["config"]
    clone.build(x.shape)
    clone.set_weights(bi.get_weights())
    np.testing.assert_array_equal(clone(x, mask=MASKS["holes"]), bi(x, mask=MASKS["holes"]))
