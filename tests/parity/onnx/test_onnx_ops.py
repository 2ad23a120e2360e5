"""Each operator of pylstm.onnx._ops against ONNX Runtime, one single-node graph per case."""

import numpy as np
import pytest
from pylstm_tests import require

import pylstm.onnx

onnx = require("onnx")
ort = require("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

rng = np.random.default_rng(0)
X = rng.normal(size=(2, 3, 4)).astype(np.float32)
M = rng.normal(size=(4, 5)).astype(np.float32)
I64 = np.int64

# name: (op type, inputs (arrays fed, or ("const", array) stored as initializers), attributes,
# opset)
CASES = {
    "gemm": ("Gemm", [X[0], ("const", M.T.copy()), ("const", M[0])],
             {"alpha": 0.5, "beta": 2.0, "transB": 1}, 17),
    "gemm_transA": ("Gemm", [X[0].T.copy(), ("const", M)], {"transA": 1}, 17),
    "matmul_batched": ("MatMul", [X, ("const", M)], {}, 17),
    "add_broadcast": ("Add", [X, ("const", M[:, 0].copy())], {}, 17),
    "sub": ("Sub", [X, X[:, :1]], {}, 17),
    "mul": ("Mul", [X, ("const", np.float32(3))], {}, 17),
    "div": ("Div", [X, ("const", M[:, 0] + 3)], {}, 17),
    "div_int": ("Div", [np.array([-7, 7, 5], I64), np.array([2, -2, 5], I64)], {}, 17),
    "transpose": ("Transpose", [X], {"perm": [2, 0, 1]}, 17),
    "transpose_default": ("Transpose", [X], {}, 17),
    "squeeze": ("Squeeze", [X[:, :1], ("const", np.array([1], I64))], {}, 17),
    "squeeze_all": ("Squeeze", [X[:1, :1]], {}, 17),
    "squeeze_opset11": ("Squeeze", [X[:, :1]], {"axes": [-2]}, 11),
    "unsqueeze": ("Unsqueeze", [X, ("const", np.array([0, -1], I64))], {}, 17),
    "unsqueeze_opset11": ("Unsqueeze", [X], {"axes": [1, 4]}, 11),
    "reshape": ("Reshape", [X, ("const", np.array([0, -1], I64))], {}, 17),
    "concat": ("Concat", [X, X * 2], {"axis": -1}, 17),
    "slice": ("Slice", [X, ("const", np.array([1, -3], I64)), ("const", np.array([99, -1], I64)),
                        ("const", np.array([1, 2], I64))], {}, 17),
    "slice_negative_step": ("Slice", [X, ("const", np.array([-1], I64)),
                                      ("const", np.array([-(2 ** 63)], I64)),
                                      ("const", np.array([2], I64)),
                                      ("const", np.array([-2], I64))], {}, 17),
    "slice_negative_step_clamped": ("Slice", [X, ("const", np.array([9, -9], I64)),
                                              ("const", np.array([-9, 9], I64)),
                                              ("const", np.array([2, 1], I64)),
                                              ("const", np.array([-1, 1], I64))], {}, 17),
    "slice_empty": ("Slice", [X, ("const", np.array([-9], I64)), ("const", np.array([-9], I64)),
                              ("const", np.array([0], I64)), ("const", np.array([-1], I64))],
                    {}, 17),
    "gather": ("Gather", [X, ("const", np.array([[2, -1], [0, 1]], I64))], {"axis": 2}, 17),
    "gather_scalar": ("Gather", [X, ("const", np.array(-1, I64))], {"axis": 1}, 17),
    "shape": ("Shape", [X], {}, 17),
    "shape_slice": ("Shape", [X], {"start": 1, "end": -1}, 17),
    "constant_of_shape": ("ConstantOfShape", [("const", np.array([2, 3], I64))],
                          {"value": numpy_helper.from_array(np.array([1.5], np.float32))}, 17),
    "identity": ("Identity", [X], {}, 17),
    "cast": ("Cast", [X], {"to": TensorProto.INT64}, 17),
    "softmax": ("Softmax", [X], {"axis": 1}, 17),
    "softmax_opset11": ("Softmax", [X], {"axis": 1}, 11),
    "sigmoid": ("Sigmoid", [X], {}, 17),
    "tanh": ("Tanh", [X], {}, 17),
    "relu": ("Relu", [X], {}, 17),
    # the activations pylstm.onnx.export writes for Dense layers
    "elu": ("Elu", [X], {"alpha": 1.0}, 17),
    "elu_alpha": ("Elu", [X], {"alpha": 0.3}, 17),
    "selu": ("Selu", [X], {}, 17),
    "softplus": ("Softplus", [X * 30], {}, 17),
    "softsign": ("Softsign", [X], {}, 17),
    "exp": ("Exp", [X], {}, 17),
    "hard_sigmoid": ("HardSigmoid", [X * 4], {"alpha": 1.0 / 6.0, "beta": 0.5}, 17),
    "hard_sigmoid_default": ("HardSigmoid", [X * 4], {}, 17),
    "reverse_sequence": ("ReverseSequence", [X, ("const", np.array([1, 3], I64))],
                         {"batch_axis": 0, "time_axis": 1}, 17),
    "reverse_sequence_default": ("ReverseSequence", [X, ("const", np.array([2, 1, 0], I64))],
                                 {}, 17),
    "expand": ("Expand", [X[:, :1], ("const", np.array([3, 1, 1, 4], I64))], {}, 17),
    "where": ("Where", [X > 0, X, ("const", np.float32(-1))], {}, 17),
    "flatten": ("Flatten", [X], {"axis": 2}, 17),
    "flatten_zero": ("Flatten", [X], {"axis": 0}, 17),
    # the comparisons, logic and reductions of pylstm.onnx.export's mask plumbing
    "equal": ("Equal", [np.array([1, 2, 3], I64), ("const", np.array([1, 0, 3], I64))], {}, 17),
    "less": ("Less", [X, ("const", np.float32(0))], {}, 17),
    "greater": ("Greater", [X, X[:, :1]], {}, 17),
    "greater_or_equal": ("GreaterOrEqual", [np.array([[0, 1, 2]], I64),
                                            ("const", np.array([[1], [2]], I64))], {}, 17),
    "and": ("And", [X > 0, X < 0.5], {}, 17),
    "or": ("Or", [X > 0, X < -0.5], {}, 17),
    "xor": ("Xor", [X > 0, X > 0.5], {}, 17),
    "not": ("Not", [X > 0], {}, 17),
    "max": ("Max", [X, X[:, :1], ("const", np.float32(0.1))], {}, 17),
    "min": ("Min", [X, X[:1]], {}, 17),
    "sum": ("Sum", [X, X[:, :1], X[:1]], {}, 17),
    "range": ("Range", [np.array(1, I64), ("const", np.array(8, I64)),
                        ("const", np.array(3, I64))], {}, 17),
    "range_empty": ("Range", [np.array(5, I64), ("const", np.array(1, I64)),
                              ("const", np.array(1, I64))], {}, 17),
    "reduce_sum": ("ReduceSum", [X, ("const", np.array([1], I64))], {"keepdims": 0}, 17),
    "reduce_sum_all": ("ReduceSum", [X], {}, 17),
    "reduce_sum_int": ("ReduceSum", [np.array([[1, 2], [3, 4]], np.int32),
                                     ("const", np.array([-1], I64))], {}, 17),
    "reduce_sum_noop": ("ReduceSum", [X, ("const", np.zeros(0, I64))],
                        {"noop_with_empty_axes": 1}, 17),
    "reduce_sum_opset11": ("ReduceSum", [X], {"axes": [0, 2], "keepdims": 1}, 11),
}


def _model(op_type, inputs, attrs, opset):
    names, graph_inputs, inits, feed = [], [], [], {}
    for k, value in enumerate(inputs):
        name = f"in{k}"
        names.append(name)
        if isinstance(value, tuple):
            inits.append(numpy_helper.from_array(np.asarray(value[1]), name))
        else:
            value = np.asarray(value)
            feed[name] = value
            graph_inputs.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), value.shape))
    node = helper.make_node(op_type, names, ["y"], name="node", **attrs)
    graph = helper.make_graph([node], "g", graph_inputs,
                              [helper.make_empty_tensor_value_info("y")],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString(), feed


@pytest.mark.parametrize("case", sorted(CASES))
def test_operator_against_onnxruntime(case):
    model, feed = _model(*CASES[case])
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    expected = session.run(None, feed)[0]
    got = pylstm.onnx.load(model).run(None, feed)[0]
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_constant_of_shape_refuses_huge_shapes():
    model, feed = _model("ConstantOfShape", [("const", np.array([1 << 20, 1 << 20], I64))], {}, 17)
    with pytest.raises(ValueError, match="node.*ConstantOfShape"):
        pylstm.onnx.load(model).run(None, feed)


def test_range_refuses_huge_lengths():
    model, feed = _model("Range", [np.array(0, I64), ("const", np.array(1 << 40, I64)),
                                   ("const", np.array(1, I64))], {}, 17)
    with pytest.raises(ValueError, match="node.*Range.*exceeds"):
        pylstm.onnx.load(model).run(None, feed)
