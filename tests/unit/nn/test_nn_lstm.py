"""`pylstm.nn.LSTM` without an oracle: dropout gradients by central differences, gradients that
accumulate until `zero_grad`, the `Sequential` adapter and its config, bad constructor and call
arguments, torch's warnings and the doctests. Against torch.nn.LSTM:
parity/torch/test_nn_lstm.py."""

import doctest
import warnings

import numpy as np
import pytest

from pylstm import layers, optimizers
from pylstm import nn as pnn
from pylstm.models import Sequential
from pylstm.nn import LSTM
from pylstm.nn import lstm as lstm_module


def data(shape, seed, dtype="float32"):
    return np.random.default_rng(seed).normal(size=shape).astype(dtype)


def test_dropout_gradient_by_central_differences(numeric_grad):
    model = LSTM(2, 3, num_layers=2, dropout=0.4, bidirectional=True, dtype="float64", seed=0)
    x = data((4, 2, 2), 1, "float64")
    gy = data((4, 2, 6), 2, "float64")

    def loss():
        model._dropout_rng = np.random.default_rng(11)  # the same masks on every call
        return float(np.sum(model(x)[0] * gy))

    loss()
    dx = model.backward(gy)
    analytic = {name: var.grad.copy() for name, var in model.named_parameters()}
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    weight = model.weight_ih_l1_reverse.value
    np.testing.assert_allclose(analytic["weight_ih_l1_reverse"], numeric_grad(loss, weight),
                               rtol=1e-6, atol=1e-8)


def test_gradients_accumulate_and_zero_grad():
    model = LSTM(2, 3, seed=0)
    x = data((3, 1, 2), 0)
    model(x)
    model.backward(np.ones((3, 1, 3), "float32"))
    once = model.weight_hh_l0.grad.copy()
    model(x)
    model.backward(np.ones((3, 1, 3), "float32"))
    np.testing.assert_allclose(model.weight_hh_l0.grad, 2 * once, rtol=1e-6)
    model.zero_grad()
    assert all(not v.grad.any() for v in model.parameters())


def test_sequential_fit_config_round_trip():
    seq = Sequential([LSTM(2, 6, num_layers=2, seed=0).as_layer(return_sequences=False),
                      layers.Dense(1)])
    seq.compile(optimizer=optimizers.Adam(learning_rate=0.02), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 5, 2)).astype("float32")
    y = x.sum(axis=(1, 2))[:, None] / 4
    history = seq.fit(x, y, epochs=15, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    config = layers.serialize(seq.layers[0])
    assert config["class_name"] == "LSTMLayer"
    clone = layers.deserialize(config)
    assert clone.module.get_config() == dict(seq.layers[0].module.get_config(),
                                             batch_first=False)
    clone.build((None, 5, 2))
    clone.set_weights(seq.layers[0].get_weights())
    np.testing.assert_array_equal(clone(x), seq.layers[0](x))


# Bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(input_size=0, hidden_size=3), "input_size"),
    (dict(input_size=2, hidden_size=3.0), "hidden_size"),
    (dict(input_size=2, hidden_size=3, num_layers=0), "num_layers"),
    (dict(input_size=2, hidden_size=3, proj_size=3), "proj_size"),
    (dict(input_size=2, hidden_size=3, dropout=1.5), "dropout"),
    (dict(input_size=2, hidden_size=3, dtype="int32"), "dtype"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LSTM(**kwargs)


def test_dropout_with_one_layer_warns_like_torch():
    with pytest.warns(UserWarning, match="num_layers=1"):
        LSTM(2, 3, dropout=0.2)


def test_bad_call_arguments():
    model = LSTM(3, 4, num_layers=2, bidirectional=True)
    x = np.zeros((5, 2, 3), "float32")
    with pytest.raises(ValueError, match=r"3 features \(input_size\).*received 2"):
        model(np.zeros((5, 2, 2), "float32"))
    with pytest.raises(ValueError, match="2-D.*3-D.*received shape"):
        model(np.zeros((1, 5, 2, 3), "float32"))
    with pytest.raises(TypeError, match="`input`.*int64"):
        model(np.zeros((5, 2, 3), "int64"))
    with pytest.raises(ValueError, match=r"`hx\[0\]`.*\(4, 2, 4\).*received shape \(2, 2, 4\)"):
        model(x, (np.zeros((2, 2, 4), "float32"), np.zeros((4, 2, 4), "float32")))
    with pytest.raises(ValueError, match=r"`hx\[1\]`.*\(4, 2, 4\).*received shape \(4, 3, 4\)"):
        model(x, (np.zeros((4, 2, 4), "float32"), np.zeros((4, 3, 4), "float32")))
    with pytest.raises(ValueError, match=r"`hx\[0\]`.*\(4, 4\)"):  # unbatched needs 2-D hx
        model(x[:, 0], (np.zeros((4, 2, 4), "float32"), np.zeros((4, 2, 4), "float32")))
    with pytest.raises(TypeError, match="pair"):
        model(x, np.zeros((4, 2, 4), "float32"))
    model(x)
    with pytest.raises(ValueError, match=r"`grad_output`.*\(5, 2, 8\)"):
        model.backward(np.zeros((5, 2, 4), "float32"))
    model.eval()(x)
    with pytest.raises(RuntimeError, match="training mode"):
        model.backward(np.zeros((5, 2, 8), "float32"))


def test_as_layer_rejects_wrong_input_size():
    with pytest.raises(ValueError, match=r"\(batch, steps, 3\)"):
        Sequential([LSTM(3, 4).as_layer(), layers.Dense(1)]).build((None, 5, 2))


def test_doctests():
    for module in (pnn, lstm_module):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


def test_torch_warning_filters_do_not_hide_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LSTM(2, 3, num_layers=2, dropout=0.2)
