"""pylstm.onnx.load against ONNX Runtime on the same models and inputs: files written by
torch.onnx.export, hand-built LSTM nodes for each attribute, the ONNX backend test cases for
LSTM, and hostile files."""

import io
import warnings

import numpy as np
import pytest
from pylstm_tests import require

import pylstm.onnx

onnx = require("onnx")
ort = require("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

TOL = 1e-5
B, T, D, H = 3, 5, 4, 6


def _ort_run(model_bytes, feed):
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def _assert_same(model_bytes, feed):
    expected = _ort_run(model_bytes, feed)
    got = pylstm.onnx.load(model_bytes).run(None, feed)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.shape == e.shape
        np.testing.assert_allclose(g, e, atol=TOL, rtol=TOL)


# ---------------------------------------------------------------------------------------------
# Models written by torch.onnx.export

torch = require("torch")


def _export(module, args, input_names, dynamic_axes):
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buffer, input_names=input_names, dynamo=False,
                          output_names=["out"], dynamic_axes=dynamic_axes, opset_version=17)
    return buffer.getvalue()


class _BiLSTMLinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(D, H, num_layers=2, bidirectional=True, batch_first=True)
        self.linear = torch.nn.Linear(2 * H, 3)

    def forward(self, x):
        return self.linear(self.lstm(x)[0])


class _EmbeddingLSTMLinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(20, D)
        self.lstm = torch.nn.LSTM(D, H, num_layers=2, bidirectional=True)
        self.linear = torch.nn.Linear(2 * H, 5)

    def forward(self, tokens):
        y, (h_n, _) = self.lstm(self.embedding(tokens))
        return torch.softmax(self.linear(y[-1]), dim=-1)


class _PackedLSTMLinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(D, H, bidirectional=True, batch_first=True)
        self.linear = torch.nn.Linear(2 * H, 2)

    def forward(self, x, lengths):
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True)
        y, (h_n, _) = self.lstm(packed)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True,
                                                      total_length=x.shape[1])
        return self.linear(y), h_n


def test_torch_two_layer_bidirectional_lstm_linear():
    torch.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(B, T, D)).astype(np.float32)
    model = _export(_BiLSTMLinear().eval(), (torch.tensor(x),), ["x"],
                    {"x": {0: "batch", 1: "time"}})
    _assert_same(model, {"x": x})
    x2 = np.random.default_rng(1).normal(size=(2, 9, D)).astype(np.float32)
    _assert_same(model, {"x": x2})


def test_torch_embedding_lstm_linear_matches_torch_and_ort():
    torch.manual_seed(1)
    module = _EmbeddingLSTMLinear().eval()
    tokens = np.random.default_rng(2).integers(0, 20, size=(T, B)).astype(np.int64)
    model = _export(module, (torch.tensor(tokens),), ["tokens"], {"tokens": {0: "t", 1: "b"}})
    _assert_same(model, {"tokens": tokens})
    with torch.no_grad():
        expected = module(torch.tensor(tokens)).numpy()
    got = pylstm.onnx.load(model)(tokens=tokens)[0]
    np.testing.assert_allclose(got, expected, atol=TOL, rtol=TOL)


def test_torch_packed_sequence_lengths_become_sequence_lens():
    torch.manual_seed(2)
    module = _PackedLSTMLinear().eval()
    x = np.random.default_rng(3).normal(size=(B, T, D)).astype(np.float32)
    lengths = np.array([T, 3, 2])
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.tensor(x), torch.tensor(lengths)), buffer,
                          input_names=["x", "lengths"], output_names=["y", "h_n"], dynamo=False,
                          dynamic_axes={"x": {0: "b", 1: "t"}, "lengths": {0: "b"}},
                          opset_version=17)
    feed = {"x": x, "lengths": lengths}
    _assert_same(buffer.getvalue(), feed)
    with torch.no_grad():
        expected = [t.numpy() for t in module(torch.tensor(x), torch.tensor(lengths))]
    for got, want in zip(pylstm.onnx.load(buffer.getvalue()).run(None, feed), expected):
        np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)


# ---------------------------------------------------------------------------------------------
# Hand-built LSTM nodes, one per attribute

def _lstm_model(dirs=1, layout=0, lengths=False, states=False, peepholes=False, **attrs):
    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array(rng.normal(scale=0.5, size=(dirs, 4 * H, D))
                                     .astype(np.float32), "W"),
             numpy_helper.from_array(rng.normal(scale=0.5, size=(dirs, 4 * H, H))
                                     .astype(np.float32), "R"),
             numpy_helper.from_array(rng.normal(scale=0.5, size=(dirs, 8 * H))
                                     .astype(np.float32), "B")]
    inputs = ["X", "W", "R", "B", "", "", "", ""]
    x_shape = [B, T, D] if layout else [T, B, D]
    state_shape = [B, dirs, H] if layout else [dirs, B, H]
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)]
    feed = {"X": rng.normal(size=x_shape).astype(np.float32)}
    if lengths:
        inputs[4] = "L"
        graph_inputs.append(helper.make_tensor_value_info("L", TensorProto.INT32, [B]))
        feed["L"] = np.array([T, 2, 4] if lengths is True else lengths, dtype=np.int32)
    if states:
        inputs[5], inputs[6] = "h0", "c0"
        for name in ("h0", "c0"):
            graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                              state_shape))
            feed[name] = rng.normal(size=state_shape).astype(np.float32)
    if peepholes:
        inputs[7] = "P"
        inits.append(numpy_helper.from_array(rng.normal(size=(dirs, 3 * H)).astype(np.float32),
                                             "P"))
    while inputs[-1] == "":
        inputs.pop()
    direction = {1: attrs.pop("direction", "forward"), 2: "bidirectional"}[dirs]
    node = helper.make_node("LSTM", inputs, ["Y", "Y_h", "Y_c"], name="lstm", hidden_size=H,
                            direction=direction, layout=layout, **attrs)
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
               for n in ("Y", "Y_h", "Y_c")]
    graph = helper.make_graph([node], "g", graph_inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    return model.SerializeToString(), feed


CASES = {
    "forward": {},
    "reverse": {"direction": "reverse"},
    "bidirectional": {"dirs": 2},
    "layout1": {"dirs": 2, "layout": 1, "states": True},
    "sequence_lens": {"lengths": True},
    "sequence_lens_bidirectional": {"dirs": 2, "lengths": True, "states": True},
    "sequence_lens_reverse_layout1": {"direction": "reverse", "lengths": True, "layout": 1},
    "sequence_lens_zero": {"dirs": 2, "lengths": [T, 0, 3], "states": True},
    "initial_states": {"states": True},
    "activations_core": {"activations": ["Relu", "Softsign", "Softplus"]},
    "activations_hard_sigmoid": {"activations": ["HardSigmoid", "Tanh", "Tanh"]},
    # float32 attributes as exporters write them: Keras 2's and Keras 3's hard sigmoids
    "activations_hard_sigmoid_float32": {"dirs": 2, "activations": ["HardSigmoid", "Tanh",
                                                                     "Tanh"] * 2,
                                         "activation_alpha": [0.2, 1 / 6],
                                         "activation_beta": [0.5, 0.5]},
    "activations_alpha_beta": {"dirs": 2, "activations": ["HardSigmoid", "ScaledTanh", "Elu",
                                                          "Sigmoid", "LeakyRelu", "Tanh"],
                               "activation_alpha": [0.3, 0.8, 0.7, 0.1],
                               "activation_beta": [0.4, 1.2]},
    "activations_affine": {"activations": ["Sigmoid", "Affine", "ThresholdedRelu"],
                           "activation_alpha": [0.5, 0.2], "activation_beta": [0.1]},
    "clip": {"clip": 0.7, "dirs": 2},
    "input_forget": {"input_forget": 1, "states": True},
    "peepholes": {"peepholes": True, "states": True, "lengths": True, "dirs": 2},
    "peepholes_clip_input_forget": {"peepholes": True, "states": True, "clip": 0.5,
                                    "input_forget": 1, "direction": "reverse"},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_lstm_attribute_against_onnxruntime(case):
    options = CASES[case]
    model, feed = _lstm_model(**options)
    numpy_route = {"clip", "input_forget", "peepholes", "activations_alpha_beta",
                   "activations_affine", "peepholes_clip_input_forget"}
    route = pylstm.onnx.load(model).explain()
    assert ("NumPy loop" in route) == (case in numpy_route), route
    if not options.get("layout"):
        _assert_same(model, feed)
        return
    # ONNX Runtime's CPU LSTM refuses layout 1: its oracle is the same node in layout 0.
    model0, _ = _lstm_model(**{**options, "layout": 0})
    feed0 = {k: v if k == "L" else np.ascontiguousarray(np.swapaxes(v, 0, 1))
             for k, v in feed.items()}
    y, y_h, y_c = _ort_run(model0, feed0)
    expected = [y.transpose(2, 0, 1, 3), np.swapaxes(y_h, 0, 1), np.swapaxes(y_c, 0, 1)]
    got = pylstm.onnx.load(model).run(None, feed)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=TOL, rtol=TOL)


def _lstm_weights(model):
    return [attrs["weights"] for op, *_, attrs in model._nodes if op == "LSTM"]


def test_stored_weights_converted_once_and_reused():
    data, feed = _lstm_model(dirs=2)
    model = pylstm.onnx.load(data)
    (weights,) = _lstm_weights(model)
    first = model.run(None, feed)
    converted = {key: [id(a) for a in arrays] for key, arrays in weights._core.items()}
    assert len(converted) == 2  # one entry per direction
    second = model.run(None, {"X": feed["X"][:, :2]})
    assert {key: [id(a) for a in arrays] for key, arrays in weights._core.items()} == converted
    _assert_same(data, feed)
    np.testing.assert_allclose(second[0], first[0][:, :, :2], atol=TOL, rtol=TOL)


def test_weights_computed_at_run_time():
    """W, R and B that a node computes (here an Identity, and a weight fed as an input) take
    the per-run path, with the stored-weight answer."""
    data, feed = _lstm_model(dirs=2, peepholes=True)
    proto = onnx.load_from_string(data)
    graph = proto.graph
    for k, name in enumerate(("W", "R")):
        graph.node.insert(0, helper.make_node("Identity", [name], [f"{name}_run"], name=f"id{k}"))
        lstm = [n for n in graph.node if n.op_type == "LSTM"][0]
        lstm.input[1 + k] = f"{name}_run"
    bias = [t for t in graph.initializer if t.name == "B"][0]
    graph.initializer.remove(bias)
    graph.input.append(helper.make_tensor_value_info("B", TensorProto.FLOAT, [2, 8 * H]))
    feed["B"] = numpy_helper.to_array(bias)
    changed = proto.SerializeToString()
    model = pylstm.onnx.load(changed)
    assert _lstm_weights(model) == [None]
    assert _lstm_weights(pylstm.onnx.load(data)) != [None]
    _assert_same(changed, feed)
    expected = pylstm.onnx.load(data).run(None, {k: v for k, v in feed.items() if k != "B"})
    for g, e in zip(model.run(None, feed), expected):
        np.testing.assert_array_equal(g, e)


# ---------------------------------------------------------------------------------------------
# The backend test cases for LSTM shipped in the onnx package

def _backend_cases():
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [c for c in collect_testcases("LSTM") if c.name.startswith("test_lstm")]


@pytest.mark.parametrize("case", _backend_cases(), ids=lambda c: c.name)
def test_onnx_backend_lstm_case(case):
    model = pylstm.onnx.load(case.model.SerializeToString())
    for inputs, outputs in case.data_sets:
        got = model.run(None, dict(zip(model.input_names, inputs)))
        for g, e in zip(got, outputs):
            np.testing.assert_allclose(g, e, atol=TOL, rtol=TOL)


# ---------------------------------------------------------------------------------------------
# Hostile and unsupported files

def test_truncated_file_raises():
    model, _ = _lstm_model()
    with pytest.raises(ValueError):
        pylstm.onnx.load(model[:len(model) // 2])


def test_unknown_operator_names_op_and_node():
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv_1")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, None)],
                              [helper.make_tensor_value_info("y", 1, None)],
                              initializer=[numpy_helper.from_array(np.ones(1, np.float32), "w")])
    with pytest.raises(ValueError, match=r"conv_1.*Conv"):
        pylstm.onnx.load(helper.make_model(graph).SerializeToString())


def test_huge_declared_initializer_raises():
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 20, 1 << 20])
    tensor.raw_data = b"\0" * 16
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", 1, None)], initializer=[tensor])
    with pytest.raises(ValueError, match="declares .* elements"):
        pylstm.onnx.load(helper.make_model(graph).SerializeToString())


def test_external_data_refused():
    tensor = numpy_helper.from_array(np.ones(4, np.float32), "w")
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="/etc/passwd")
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [],
                              [helper.make_tensor_value_info("y", 1, None)], initializer=[tensor])
    with pytest.raises(ValueError, match="external"):
        pylstm.onnx.load(helper.make_model(graph).SerializeToString())


def test_cycle_and_undefined_inputs_raise():
    nodes = [helper.make_node("Relu", ["b"], ["a"], name="n1"),
             helper.make_node("Relu", ["a"], ["b"], name="n2")]
    graph = helper.make_graph(nodes, "g", [], [helper.make_tensor_value_info("b", 1, None)])
    with pytest.raises(ValueError, match="n1.*undefined"):
        pylstm.onnx.load(helper.make_model(graph).SerializeToString())


def test_redefined_tensor_raises():
    nodes = [helper.make_node("Relu", ["x"], ["x"], name="n1")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", 1, None)],
                              [helper.make_tensor_value_info("x", 1, None)])
    with pytest.raises(ValueError, match="n1.*redefines"):
        pylstm.onnx.load(helper.make_model(graph).SerializeToString())


def test_bad_lstm_shape_raises_naming_node():
    model, feed = _lstm_model()
    feed["X"] = feed["X"][..., :2]
    with pytest.raises(ValueError, match="lstm.*W"):
        pylstm.onnx.load(model).run(None, feed)



# ---------------------------------------------------------------------------------------------
# Shape-only nodes run once per input shape; zero initial states run as omitted states


def _state_from_shape_graph(fill):
    """x `(T, B, D)` -> LSTM with `initial_h` and `initial_c` from `ConstantOfShape([1, B, H],
    fill)`, the way exporters write zero states; outputs Y_h and the shape `[1, B, H]`."""
    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
             for n, s in (("W", (1, 4 * H, D)), ("R", (1, 4 * H, H)), ("B", (1, 8 * H)))]
    inits += [numpy_helper.from_array(np.array(v, np.int64), n)
              for n, v in (("one", [1]), ("hidden", [H]), ("batch_axis", 1))]
    nodes = [
        helper.make_node("Shape", ["x"], ["x_shape"]),
        helper.make_node("Gather", ["x_shape", "batch_axis"], ["batch"]),
        helper.make_node("Unsqueeze", ["batch", "one_axis"], ["batch_1"]),
        helper.make_node("Concat", ["one", "batch_1", "hidden"], ["state_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["state_shape"], ["zeros"],
                         value=numpy_helper.from_array(np.array([fill], np.float32))),
        helper.make_node("LSTM", ["x", "W", "R", "B", "", "zeros", "zeros"],
                         ["", "Y_h"], hidden_size=H),
    ]
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "one_axis"))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", "B", D])],
        [helper.make_empty_tensor_value_info("Y_h"),
         helper.make_empty_tensor_value_info("state_shape")], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.mark.parametrize("fill", [0.0, -0.0, 0.5])
def test_states_computed_from_shapes_across_changing_shapes(fill):
    """One loaded model run on changing batch sizes gives ONNX Runtime's answer each time
    (the shape-only nodes' kept results follow the input's shape; only a zero fill runs as
    omitted states: 0.5 must not)."""
    model_bytes = _state_from_shape_graph(fill)
    loaded = pylstm.onnx.load(model_bytes)
    rng = np.random.default_rng(8)
    for batch in (2, 3, 2, 1, 3):
        x = rng.normal(size=(T, batch, D)).astype(np.float32)
        expected = _ort_run(model_bytes, {"x": x})
        got = loaded.run(None, {"x": x})
        np.testing.assert_allclose(got[0], expected[0], atol=TOL, rtol=TOL)
        np.testing.assert_array_equal(got[1], [1, batch, H])
        np.testing.assert_array_equal(got[0], pylstm.onnx.load(model_bytes).run(
            None, {"x": x})[0])   # as a fresh load: nothing kept changes the numbers


def test_a_kept_shape_value_returned_to_the_caller_is_its_own():
    loaded = pylstm.onnx.load(_state_from_shape_graph(0.0))
    x = np.zeros((T, 2, D), np.float32)
    shape = loaded.run(["state_shape"], {"x": x})[0]
    shape[...] = 99   # the caller's array: writing it changes nothing kept
    np.testing.assert_array_equal(loaded.run(["state_shape"], {"x": x})[0], [1, 2, H])
