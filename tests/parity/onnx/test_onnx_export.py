"""pylstm.onnx.export against ONNX Runtime: each exportable layer and option is exported once,
and pylstm's predictions and ONNX Runtime's on that one file agree within 1e-5 for batch sizes
1 and 3 and time lengths 1 and 7 (dynamic axes); the refused cases raise a clear ValueError."""

import sys

import numpy as np
import pytest
from pylstm_tests import require

import pylstm.onnx
from pylstm import layers
from pylstm.models import Sequential
from pylstm.nn import LSTM as NNLSTM
from pylstm.onnx._export import default_opset

onnx = require("onnx")
ort = require("onnxruntime")

TOL = 1e-5
D, H = 4, 5
SHAPES = [(1, 1), (1, 7), (3, 1), (3, 7)]  # (B, T), all run on one exported file


def _randomize(model, seed=0, scale=0.4):
    """Random weights everywhere, biases included, small enough for unbounded activations."""
    rng = np.random.default_rng(seed)
    model.set_weights([(rng.normal(size=w.shape) * scale).astype(w.dtype)
                       for w in model.get_weights()])
    return model


def _exported(model, tmp_path, **kwargs):
    path = tmp_path / "model.onnx"
    proto = pylstm.onnx.export(model, path, **kwargs)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    return proto, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _assert_sequential_matches(model, tmp_path, vocabulary=None, **kwargs):
    proto, session = _exported(model, tmp_path, **kwargs)
    rng = np.random.default_rng(1)
    for B, T in SHAPES:
        if vocabulary:
            x = rng.integers(0, vocabulary, size=(B, T)).astype(np.int64)
        else:
            x = rng.normal(size=(B, T, D)).astype(np.float32)
        expected = model.predict(x, verbose=0)
        (got,) = session.run(None, {"input": x})
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=TOL, atol=TOL)
    return proto


def _sequential(*stack):
    return _randomize(Sequential([layers.Input((None, D)), *stack]))


def _lstm_nodes(proto):
    return [n for n in proto.graph.node if n.op_type == "LSTM"]


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("use_bias", [False, True])
def test_lstm(tmp_path, return_sequences, go_backwards, use_bias):
    model = _sequential(layers.LSTM(H, return_sequences=return_sequences,
                                    go_backwards=go_backwards, use_bias=use_bias))
    proto = _assert_sequential_matches(model, tmp_path)
    (node,) = _lstm_nodes(proto)
    direction = next(a.s for a in node.attribute if a.name == "direction")
    assert direction == (b"reverse" if go_backwards else b"forward")
    assert len(node.input) == (4 if use_bias else 3)


# Every activation an ONNX LSTM node has, as the candidate/output and as the gate activation.
@pytest.mark.parametrize("activation, recurrent_activation", [
    ("tanh", "sigmoid"), ("relu", "hard_sigmoid"), ("linear", "legacy_hard_sigmoid"),
    ("elu", "softsign"), ("softplus", "tanh"), ("softsign", "relu"),
    ("hard_sigmoid", "linear"), ("legacy_hard_sigmoid", "elu"), ("sigmoid", "softplus")])
def test_lstm_activations(tmp_path, activation, recurrent_activation):
    acts = {"activation": activation, "recurrent_activation": recurrent_activation}
    model = _sequential(layers.LSTM(H, return_sequences=True, **acts),
                        layers.Bidirectional(layers.LSTM(3, **acts)))
    _assert_sequential_matches(model, tmp_path)


def test_keras_hard_sigmoids_are_onnx_hard_sigmoids(tmp_path):
    model = _sequential(layers.LSTM(H, activation="legacy_hard_sigmoid",
                                    recurrent_activation="hard_sigmoid"))
    (node,) = _lstm_nodes(_assert_sequential_matches(model, tmp_path))
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["activations"] == [b"HardSigmoid"] * 3
    np.testing.assert_allclose(attrs["activation_alpha"], [1 / 6, 0.2, 0.2], rtol=1e-7)
    np.testing.assert_allclose(attrs["activation_beta"], [0.5, 0.5, 0.5])


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional(tmp_path, merge_mode, return_sequences):
    model = _sequential(layers.Bidirectional(layers.LSTM(H, return_sequences=return_sequences),
                                             merge_mode=merge_mode))
    (node,) = _lstm_nodes(_assert_sequential_matches(model, tmp_path))
    assert next(a.s for a in node.attribute if a.name == "direction") == b"bidirectional"


def test_bidirectional_with_its_own_backward_layer(tmp_path):
    backward = layers.LSTM(H, go_backwards=True, activation="relu",
                           recurrent_activation="hard_sigmoid")
    model = _sequential(layers.Bidirectional(layers.LSTM(H), backward_layer=backward))
    _assert_sequential_matches(model, tmp_path)


def test_stacked_with_dropout_and_dense(tmp_path):
    model = _sequential(layers.LSTM(H, return_sequences=True, dropout=0.3,
                                    recurrent_dropout=0.2),
                        layers.Dropout(0.5),
                        layers.Bidirectional(layers.LSTM(3, return_sequences=True),
                                             merge_mode="sum"),
                        layers.LSTM(4, go_backwards=True, return_sequences=True),
                        layers.Dense(6, activation="relu"),
                        layers.LSTM(3),
                        layers.Dense(2, activation="softmax"))
    proto = _assert_sequential_matches(model, tmp_path)
    assert len(_lstm_nodes(proto)) == 4


@pytest.mark.parametrize("activation", ["linear", "relu", "sigmoid", "tanh", "softmax", "elu",
                                        "selu", "softplus", "softsign", "exponential",
                                        "hard_sigmoid", "legacy_hard_sigmoid", "swish"])
@pytest.mark.parametrize("use_bias", [False, True])
def test_dense(tmp_path, activation, use_bias):
    model = _sequential(layers.LSTM(H, return_sequences=True),
                        layers.Dense(3, activation=activation, use_bias=use_bias))
    _assert_sequential_matches(model, tmp_path)


def test_embedding(tmp_path):
    model = _randomize(Sequential([layers.Input((None,), dtype="int64"),
                                   layers.Embedding(11, D),
                                   layers.LSTM(H), layers.Dense(2)]))
    proto = _assert_sequential_matches(model, tmp_path, vocabulary=11)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64


def test_dynamic_axes_opset_and_weights_stored_once(tmp_path):
    model = _sequential(layers.Bidirectional(layers.LSTM(H)), layers.Dense(2))
    proto = _assert_sequential_matches(model, tmp_path)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", "time", D]
    assert proto.opset_import[0].version == default_opset()
    floats = [i for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT]
    # W, R, B (bias then the zero recurrent bias), the Dense kernel and bias: nothing twice.
    n_params = sum(w.size for w in model.get_weights())
    n_zero_rb = 2 * 4 * H
    assert sum(np.prod(i.dims) for i in floats) == n_params + n_zero_rb


@pytest.mark.parametrize("opset", [13, 14, 18])
def test_chosen_opset(tmp_path, opset):
    model = _sequential(layers.LSTM(H, return_sequences=True, go_backwards=True),
                        layers.Bidirectional(layers.LSTM(H), merge_mode="ave"),
                        layers.Dense(2, activation="softmax"))
    proto = _assert_sequential_matches(model, tmp_path, opset=opset)
    assert proto.opset_import[0].version == opset


@pytest.mark.parametrize("num_layers, bidirectional, batch_first, bias", [
    (1, False, False, True), (1, True, True, True), (2, False, True, False),
    (3, True, False, True)])
def test_nn_lstm(tmp_path, num_layers, bidirectional, batch_first, bias):
    module = NNLSTM(D, H, num_layers=num_layers, bidirectional=bidirectional,
                    batch_first=batch_first, bias=bias, dropout=0.25 if num_layers > 1 else 0.0,
                    seed=0)
    module.eval()
    proto, session = _exported(module, tmp_path)
    assert len(_lstm_nodes(proto)) == num_layers
    assert sum(np.prod(i.dims) for i in proto.graph.initializer
               if i.data_type == onnx.TensorProto.FLOAT) \
        == sum(p.value.size for _, p in module.named_parameters())
    rng = np.random.default_rng(2)
    for B, T in SHAPES:
        x = rng.normal(size=(B, T, D) if batch_first else (T, B, D)).astype(np.float32)
        output, (h_n, c_n) = module(x)
        got = session.run(None, {"input": x})
        for g, e in zip(got, [output, h_n, c_n]):
            assert g.shape == e.shape
            np.testing.assert_allclose(g, e, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("num_layers, bidirectional, batch_first, bias", [
    (1, False, False, True), (2, True, True, False), (3, True, False, True)])
def test_nn_lstm_initial_state_and_lengths(tmp_path, num_layers, bidirectional, batch_first,
                                           bias):
    module = NNLSTM(D, H, num_layers=num_layers, bidirectional=bidirectional,
                    batch_first=batch_first, bias=bias, seed=0)
    module.eval()
    proto, session = _exported(module, tmp_path, initial_state=True, lengths=True)
    assert [i.name for i in proto.graph.input] == ["input", "h_0", "c_0", "lengths"]
    rng = np.random.default_rng(4)
    states = num_layers * (2 if bidirectional else 1)
    for B, T in SHAPES:
        x = rng.normal(size=(B, T, D) if batch_first else (T, B, D)).astype(np.float32)
        h_0, c_0 = rng.normal(size=(2, states, B, H)).astype(np.float32)
        lengths = rng.integers(1, T + 1, size=B).astype(np.int32)
        output, (h_n, c_n) = module(x, (h_0, c_0), lengths=lengths)
        got = session.run(None, {"input": x, "h_0": h_0, "c_0": c_0, "lengths": lengths})
        for g, e in zip(got, [output, h_n, c_n]):
            assert g.shape == e.shape
            np.testing.assert_allclose(g, e, rtol=TOL, atol=TOL)


def test_names(tmp_path):
    module = NNLSTM(D, H)
    proto = pylstm.onnx.export(module, tmp_path / "m.onnx", input_names=["x"],
                               output_names=["y", "h", "c"])
    assert [i.name for i in proto.graph.input] == ["x"]
    assert [o.name for o in proto.graph.output] == ["y", "h", "c"]
    with pytest.raises(ValueError, match="output_names"):
        pylstm.onnx.export(module, tmp_path / "m.onnx", output_names=["y"])


def test_built_by_a_call_keeps_the_time_axis_dynamic(tmp_path):
    model = Sequential([layers.LSTM(H, return_sequences=True), layers.Dense(2)])
    model.predict(np.zeros((2, 7, D), np.float32), verbose=0)
    _assert_sequential_matches(_randomize(model), tmp_path)


def test_round_trip_through_pylstm_onnx_load(tmp_path):
    model = _sequential(layers.LSTM(H, return_sequences=True, go_backwards=True,
                                    activation="relu", recurrent_activation="hard_sigmoid"),
                        layers.Bidirectional(layers.LSTM(3), merge_mode="ave"),
                        layers.Dense(2, activation="softmax"))
    path = tmp_path / "model.onnx"
    pylstm.onnx.export(model, path)
    x = np.random.default_rng(3).normal(size=(3, 7, D)).astype(np.float32)
    (got,) = pylstm.onnx.load(path).run(None, {"input": x})
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=TOL, atol=TOL)


def _assert_functional_matches(model, tmp_path, feeds):
    proto, session = _exported(model, tmp_path)
    for feed in feeds:
        expected = model.predict(feed if len(feed) > 1 else feed[0], verbose=0)
        expected = expected if isinstance(expected, list) else [expected]
        got = session.run(None, dict(zip(model.input_names, feed)))
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.shape == e.shape
            np.testing.assert_allclose(g, e, rtol=TOL, atol=TOL)
    return proto


def test_functional_merges_states_and_shared_layers(tmp_path):
    from pylstm.models import Model

    tokens = layers.Input((None,), dtype="int64", name="tokens")
    features = layers.Input((None, D), name="features")
    embedded = layers.Embedding(11, D)(tokens)
    shared = layers.LSTM(H, return_sequences=True)
    a, b = shared(embedded), shared(features)
    seq, h, c = layers.LSTM(H, return_sequences=True, return_state=True,
                            go_backwards=True)(layers.Add()(([a, b])))
    both = layers.Bidirectional(layers.LSTM(3, return_state=True))(
        layers.Concatenate()([seq, layers.Subtract()([a, b]), layers.Multiply()([a, b]),
                              layers.Average()([a, b]), layers.Maximum()([a, b]),
                              layers.Minimum()([a, b])]))
    out = layers.Dense(2, activation="softmax", name="out")(
        layers.Concatenate()([both[0], h, c, *both[1:]]))
    model = _randomize(Model([tokens, features], [out, h]))
    rng = np.random.default_rng(5)
    feeds = [[rng.integers(0, 11, size=(B, T)).astype(np.int64),
              rng.normal(size=(B, T, D)).astype(np.float32)] for B, T in SHAPES]
    proto = _assert_functional_matches(model, tmp_path, feeds)
    assert len(_lstm_nodes(proto)) == 4
    n_floats = sum(np.prod(i.dims) for i in proto.graph.initializer
                   if i.data_type == onnx.TensorProto.FLOAT)
    # The shared LSTM's W, R, B stored once; besides the weights, the zero recurrent biases
    # of the three LSTM layers and Average's divisor.
    n_zero_rb = 4 * H + 4 * H + 2 * 4 * 3
    assert n_floats == sum(w.size for w in model.get_weights()) + n_zero_rb + 1


# ---------------------------------------------------------------------------------------------
# Refused: what one ONNX graph cannot express faithfully

def _refused(model, tmp_path, match, **kwargs):
    with pytest.raises(ValueError, match=match):
        pylstm.onnx.export(model, tmp_path / "refused.onnx", **kwargs)
    assert not (tmp_path / "refused.onnx").exists()


@pytest.mark.parametrize("stack, match", [
    (lambda: [layers.LSTM(H, proj_size=2)], "proj_size=2 has no ONNX LSTM equivalent"),
    (lambda: [layers.LSTM(H, return_state=True)], "return_state=True in a Sequential"),
    (lambda: [layers.LSTM(H, activation="selu")], "activation 'selu' has no ONNX LSTM"),
    (lambda: [layers.LSTM(H, recurrent_activation="swish")], "activation 'swish' has no"),
    (lambda: [layers.LSTM(H, activation=lambda x: np.tanh(x))], "has no ONNX LSTM equivalent"),
    (lambda: [layers.Bidirectional(layers.LSTM(H), merge_mode=None)], "merge_mode=None"),
    (lambda: [layers.Bidirectional(layers.LSTM(H, go_backwards=True))], "go_backwards"),
    (lambda: [layers.LSTM(H, return_sequences=True),
              layers.Dense(2, activation=(np.tanh, lambda x, y, grad_y: grad_y))],
     "has no ONNX equivalent"),
])
def test_refused_layers(tmp_path, stack, match):
    model = Sequential([layers.Input((None, D)), *stack()])
    _refused(model, tmp_path, match)


def test_refused_nn_lstm_projection(tmp_path):
    _refused(NNLSTM(D, H, proj_size=2), tmp_path, "proj_size=2")


@pytest.mark.parametrize("opset", [12, 10_000])
def test_refused_opset(tmp_path, opset):
    _refused(_sequential(layers.LSTM(H)), tmp_path, "Argument `opset` must be in", opset=opset)


def test_refused_lengths_for_sequential(tmp_path):
    _refused(_sequential(layers.LSTM(H)), tmp_path, "apply to a pylstm.nn.LSTM only",
             lengths=True)


def test_refused_unbuilt(tmp_path):
    _refused(Sequential([layers.LSTM(H)]), tmp_path, "not built")


def test_missing_onnx_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install pylstm\[onnx\]"):
        pylstm.onnx.export(NNLSTM(D, H), tmp_path / "m.onnx")
