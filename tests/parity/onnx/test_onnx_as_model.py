"""pylstm.onnx.load(path, as_model=True): plain stacks written by torch.onnx.export and
pylstm.onnx.export are rebuilt as trainable Sequential models that compute what the file
computes (against PyTorch, ONNX Runtime and the original pylstm model); what a Sequential
cannot express is refused naming the node or attribute."""

import io
import warnings

import numpy as np
import pytest
from pylstm_tests import require

import pylstm.onnx
from pylstm.layers import LSTM, Bidirectional, Dense, Dropout, Embedding, Input
from pylstm.models import Sequential

onnx = require("onnx")
ort = require("onnxruntime")
torch = require("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

TOL = 1e-5
V, D, H = 20, 4, 6


def _ort(model_bytes, x):
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _torch_export(module, x, batch_first=True):
    buffer = io.BytesIO()
    axes = {0: "batch", 1: "time"} if batch_first else {0: "time", 1: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.tensor(x),), buffer, input_names=["x"], dynamo=False,
                          output_names=["out"], dynamic_axes={"x": axes}, opset_version=17)
    return buffer.getvalue()


class _Stack(torch.nn.Module):
    """(Embedding +) 2-layer LSTM + Linear; `read`: "sequence" (every step), "h_n" (the last
    layer's final states, both directions) or "last" (`out[:, -1]`)."""

    def __init__(self, embedding, bidirectional, read, batch_first=True):
        super().__init__()
        self.embedding = torch.nn.Embedding(V, D) if embedding else None
        self.lstm = torch.nn.LSTM(D, H, num_layers=2, bidirectional=bidirectional,
                                  batch_first=batch_first)
        self.linear = torch.nn.Linear(2 * H if bidirectional else H, 3)
        self.read = read

    def forward(self, x):
        if self.embedding is not None:
            x = self.embedding(x)
        y, (h_n, _) = self.lstm(x)
        if self.read == "sequence":
            return self.linear(y)
        if self.read == "last":
            return self.linear(y[:, -1])
        final = torch.cat([h_n[-2], h_n[-1]], dim=1) if self.lstm.bidirectional else h_n[-1]
        return torch.softmax(self.linear(final), dim=-1)


def _inputs(embedding, shape, seed):
    rng = np.random.default_rng(seed)
    if embedding:
        return rng.integers(0, V, size=shape).astype(np.int64)
    return rng.normal(size=shape + (D,)).astype(np.float32)


@pytest.mark.parametrize("embedding", [False, True])
@pytest.mark.parametrize("read", ["sequence", "h_n"])
def test_torch_two_layer_bidirectional_stack_rebuilt(embedding, read):
    torch.manual_seed(0)
    module = _Stack(embedding, True, read).eval()
    data = _torch_export(module, _inputs(embedding, (3, 5), 0))
    model = pylstm.onnx.load(data, as_model=True)
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["Embedding"] * embedding + ["Bidirectional"] * 2 + ["Dense"]
    assert model.layers[-2].forward_layer.return_sequences == (read == "sequence")
    assert model.layers[-1].activation.__name__ == ("softmax" if read == "h_n" else "linear")
    for shape, seed in (((3, 5), 1), ((1, 9), 2), ((4, 1), 3)):
        x = _inputs(embedding, shape, seed)
        with torch.no_grad():
            expected = module(torch.tensor(x)).numpy()
        got = model.predict_on_batch(x)
        np.testing.assert_allclose(got, expected, atol=TOL, rtol=TOL)
        np.testing.assert_allclose(got, _ort(data, x), atol=TOL, rtol=TOL)


def test_torch_unidirectional_last_step_is_return_sequences_false():
    torch.manual_seed(1)
    module = _Stack(False, False, "last").eval()
    model = pylstm.onnx.load(_torch_export(module, _inputs(False, (2, 4), 0)), as_model=True)
    assert [type(layer).__name__ for layer in model.layers] == ["LSTM", "LSTM", "Dense"]
    assert [layer.return_sequences for layer in model.layers[:2]] == [True, False]
    x = _inputs(False, (3, 7), 1)
    with torch.no_grad():
        expected = module(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model.predict_on_batch(x), expected, atol=TOL, rtol=TOL)


def test_torch_bidirectional_last_step_refused():
    """`out[:, -1]` of a bidirectional LSTM holds the backward direction after one step: no
    Bidirectional layer returns that, and the probe finds it."""
    torch.manual_seed(2)
    data = _torch_export(_Stack(False, True, "last").eval(), _inputs(False, (2, 4), 0))
    with pytest.raises(ValueError, match=r"not a plain stack: the output of node "
                                         r"'/lstm/LSTM_1' .*Gemm.*Y_h"):
        pylstm.onnx.load(data, as_model=True)
    pylstm.onnx.load(data)  # still runs as a graph


def test_torch_time_major_refused():
    torch.manual_seed(3)
    module = _Stack(False, True, "sequence", batch_first=False).eval()
    data = _torch_export(module, _inputs(False, (5, 3), 0), batch_first=False)
    with pytest.raises(ValueError, match="not a plain stack: .*time-major.*batch_first=True"):
        pylstm.onnx.load(data, as_model=True)


# ---------------------------------------------------------------------------------------------
# pylstm.onnx.export -> load(as_model=True)

def _round_trip(model, tmp_path):
    path = tmp_path / "model.onnx"
    pylstm.onnx.export(model, path)
    return pylstm.onnx.load(path, as_model=True), path


def test_pylstm_round_trip_equals_original(tmp_path):
    original = Sequential([
        Input((None,), dtype="int64"), Embedding(V, D),
        Bidirectional(LSTM(H, return_sequences=True, activation="softsign",
                           recurrent_activation="hard_sigmoid", seed=1)),
        Dropout(0.3), LSTM(5, go_backwards=True, return_sequences=True, seed=2),
        LSTM(4, recurrent_activation="legacy_hard_sigmoid", use_bias=False, seed=3),
        Dense(3, activation="softmax")])
    rebuilt, path = _round_trip(original, tmp_path)
    assert [type(layer).__name__ for layer in rebuilt.layers] == [
        "Embedding", "Bidirectional", "LSTM", "LSTM", "Dense"]  # Dropout: identity at inference
    config = rebuilt.layers[1].forward_layer.get_config()
    assert (config["return_sequences"], config["activation"],
            config["recurrent_activation"]) == (True, "softsign", "hard_sigmoid")
    assert (rebuilt.layers[2].go_backwards, rebuilt.layers[2].return_sequences) == (True, True)
    config = rebuilt.layers[3].get_config()
    assert (config["use_bias"], config["recurrent_activation"]) == \
        (False, "legacy_hard_sigmoid")
    for got, want in zip(rebuilt.get_weights(), original.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
    for shape, seed in (((3, 6), 0), ((1, 1), 1)):
        x = _inputs(True, shape, seed)
        np.testing.assert_allclose(rebuilt.predict_on_batch(x), original.predict_on_batch(x),
                                   atol=TOL, rtol=TOL)
        np.testing.assert_allclose(rebuilt.predict_on_batch(x), _ort(path.read_bytes(), x),
                                   atol=TOL, rtol=TOL)


def test_pylstm_round_trip_float64_dense_activations(tmp_path):
    original = Sequential([Input((None, D), dtype="float64"),
                           LSTM(H, return_sequences=False, dtype="float64", seed=0),
                           Dense(5, activation="relu", dtype="float64"),
                           Dense(2, activation="tanh", dtype="float64")])
    rebuilt, _ = _round_trip(original, tmp_path)
    assert [np.dtype(layer.dtype) for layer in rebuilt.layers] == [np.float64] * 3
    x = np.random.default_rng(0).normal(size=(3, 4, D))
    np.testing.assert_allclose(rebuilt.predict_on_batch(x), original.predict_on_batch(x),
                               atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "mul", "ave"])
def test_pylstm_round_trip_merge_modes(merge_mode, tmp_path):
    original = Sequential([
        Input((None, D)),
        Bidirectional(LSTM(H, return_sequences=True, seed=0), merge_mode=merge_mode),
        Bidirectional(LSTM(3, seed=1), merge_mode=merge_mode), Dense(2)])
    rebuilt, _ = _round_trip(original, tmp_path)
    assert [layer.merge_mode for layer in rebuilt.layers[:2]] == [merge_mode] * 2
    x = np.random.default_rng(0).normal(size=(3, 5, D)).astype(np.float32)
    np.testing.assert_allclose(rebuilt.predict_on_batch(x), original.predict_on_batch(x),
                               atol=TOL, rtol=TOL)


DENSE_ACTIVATIONS = ["linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "softplus",
                     "softsign", "exponential", "hard_sigmoid", "legacy_hard_sigmoid", "swish"]


@pytest.mark.parametrize("activation", DENSE_ACTIVATIONS)
def test_pylstm_round_trip_dense_activation(activation, tmp_path):
    original = Sequential([Input((None, D)), LSTM(H, return_sequences=True, seed=0),
                           Dense(5, activation=activation)])
    rebuilt, _ = _round_trip(original, tmp_path)
    assert rebuilt.layers[-1].get_config()["activation"] == activation
    x = 3 * np.random.default_rng(0).normal(size=(2, 3, D)).astype(np.float32)
    np.testing.assert_allclose(rebuilt.predict_on_batch(x), original.predict_on_batch(x),
                               atol=TOL, rtol=TOL)


def test_rebuilt_model_trains(tmp_path):
    torch.manual_seed(4)
    data = _torch_export(_Stack(True, True, "h_n").eval(), _inputs(True, (3, 5), 0))
    model = pylstm.onnx.load(data, as_model=True)
    before = model.get_weights()
    x = _inputs(True, (8, 5), 1)
    y = np.random.default_rng(2).integers(0, 3, size=8)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = model.get_weights()
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))
    # The trained model is still the graph's function of its (new) weights: export agrees.
    path = tmp_path / "trained.onnx"
    pylstm.onnx.export(model, path)
    np.testing.assert_allclose(_ort(path.read_bytes(), x), model.predict_on_batch(x),
                               atol=TOL, rtol=TOL)


# ---------------------------------------------------------------------------------------------
# Hand-built graphs: layout 1 accepted; what a Sequential cannot express refused

B, T = 3, 5


def _graph(dirs=2, layout=0, extra_inputs=(), lstm_inputs=None, pre_nodes=(), extra_nodes=(),
           outputs=1, inits=(), **attrs):
    """X (B, T, D) -> [Transpose] -> LSTM -> Y -> (B, T, dirs * H) -> out."""
    rng = np.random.default_rng(7)
    weights = [numpy_helper.from_array(rng.normal(scale=0.5, size=shape).astype(np.float32),
                                       name)
               for name, shape in (("W", (dirs, 4 * H, D)), ("R", (dirs, 4 * H, H)),
                                   ("B", (dirs, 8 * H)))]
    nodes = list(pre_nodes)
    if not layout:
        nodes.append(helper.make_node("Transpose", ["x"], ["x_t"], perm=[1, 0, 2]))
    x_in = "x" if layout else "x_t"
    direction = "bidirectional" if dirs == 2 else attrs.pop("direction", "forward")
    nodes.append(helper.make_node("LSTM", [x_in] + list(lstm_inputs or ["W", "R", "B"]),
                                  ["Y", "Y_h", "Y_c"], name="lstm", hidden_size=H,
                                  direction=direction, layout=layout, **attrs))
    perm = [0, 1, 2, 3] if layout else [2, 0, 1, 3]
    nodes += [helper.make_node("Transpose", ["Y"], ["Y_b"], perm=perm),
              helper.make_node("Reshape", ["Y_b", "shape"], ["seq"], name="merge")]
    nodes += list(extra_nodes) or [helper.make_node("Identity", ["seq"], ["out"])]
    weights.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64), "shape"))
    graph_inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", D])]
    graph_inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                     for n in extra_inputs]
    names = ["out", "Y_h"][:outputs]
    graph = helper.make_graph(nodes, "g", graph_inputs,
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
                               for n in names], initializer=weights + list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_layout_1_bidirectional_node_rebuilt():
    data = _graph(layout=1)
    model = pylstm.onnx.load(data, as_model=True)
    assert [type(layer).__name__ for layer in model.layers] == ["Bidirectional"]
    x = np.random.default_rng(0).normal(size=(B, T, D)).astype(np.float32)
    expected = pylstm.onnx.load(data)(x=x)[0]
    np.testing.assert_allclose(model.predict_on_batch(x), expected, atol=TOL, rtol=TOL)


def _zeros(name, shape=(2, 1, H)):
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def _int64(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


# h0 (2, B, H) = ones expanded to the input's batch size, computed from Shape as exporters do.
_ONES_STATE = [helper.make_node("Shape", ["x"], ["x_shape"]),
               helper.make_node("Gather", ["x_shape", "zero"], ["batch"], axis=0),
               helper.make_node("Concat", ["two", "batch", "units"], ["state_shape"], axis=0),
               helper.make_node("Expand", ["ones", "state_shape"], ["h0"])]
_ONES_INITS = [_int64("zero", [0]), _int64("two", [2]), _int64("units", [H]),
               numpy_helper.from_array(np.ones((2, 1, H), np.float32), "ones")]


REFUSED = {
    "clip": ({"clip": 0.5}, r"'lstm' \(LSTM\) has attribute clip=0.5"),
    "input_forget": ({"input_forget": 1}, "'lstm' .*input_forget=1"),
    "peepholes": ({"lstm_inputs": ["W", "R", "B", "", "", "", "P"],
                   "inits": [_zeros("P", (2, 3 * H))]}, "'lstm' .*peepholes"),
    "sequence_lens": ({"lstm_inputs": ["W", "R", "B", "L"],
                       "inits": [numpy_helper.from_array(np.full(B, T, np.int32), "L")]},
                      "'lstm' .*sequence_lens"),
    "initial_state_input": ({"lstm_inputs": ["W", "R", "B", "", "h0"],
                             "extra_inputs": ["h0"]}, r"inputs \['x', 'h0'\]"),
    "initial_state_non_zero": ({"lstm_inputs": ["W", "R", "B", "", "h0"],
                                "pre_nodes": _ONES_STATE, "inits": _ONES_INITS},
                               "'lstm' .*non-zero initial_h"),
    "activation": ({"activations": ["Sigmoid", "Tanh", "Tanh", "ThresholdedRelu", "Tanh",
                                    "Tanh"]}, "'lstm' .*activations: thresholdedrelu"),
    "cell_output_activation": ({"activations": ["Sigmoid", "Tanh", "Relu"] * 2},
                               r"candidate \(tanh\) and cell-output \(relu\)"),
    "two_outputs": ({"outputs": 2}, r"outputs \['out', 'Y_h'\]"),
    "sub_on_data": ({"extra_nodes": [helper.make_node("Sub", ["seq", "seq"], ["out"],
                                                      name="zero")]},
                    r"node 'zero' \(Sub\) computes on the input's values"),
    # A Mul of the LSTM's output by itself is taken for merge_mode="mul"; the probe refuses it.
    "square_is_no_merge": ({"extra_nodes": [helper.make_node("Mul", ["seq", "seq"], ["out"],
                                                             name="square")]},
                           r"differently from what Bidirectional\(.*merge_mode='mul'\)"),
    "elu_alpha": ({"extra_nodes": [helper.make_node("Elu", ["seq"], ["out"], name="elu",
                                                    alpha=0.3)]},
                  r"node 'elu' \(Elu\) has alpha=0.3"),
    "hard_sigmoid_alpha": ({"extra_nodes": [helper.make_node("HardSigmoid", ["seq"], ["out"],
                                                             name="hs", alpha=0.3)]},
                           r"node 'hs' \(HardSigmoid\) has alpha=0.3"),
    "unreversed_go_backwards": ({"dirs": 1, "direction": "reverse"},
                                r"node 'lstm' \(LSTM\) reaches the graph output 'out' "
                                r"differently from what LSTM\(6, return_sequences=True, "
                                r"go_backwards=True\)"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused(case):
    options, message = REFUSED[case]
    data = _graph(**options)
    with pytest.raises(ValueError, match="not a plain stack: " + ".*" + message):
        pylstm.onnx.load(data, as_model=True)
