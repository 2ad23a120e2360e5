"""The functional API: KerasTensors, Model(inputs, outputs), its backward, configs and files."""

import copy
import doctest
import json

import numpy as np
import pytest

from pylstm.layers import (LSTM, Attention, Dense, Embedding, Input, InputLayer, KerasTensor,
                           Masking)
from pylstm.layers import core as core_module
from pylstm.models import Model, Sequential, load_model
from pylstm.models import functional as functional_module

F64 = "float64"


def _rng(seed=0):
    return np.random.default_rng(seed)


# Tracing -------------------------------------------------------------------------------------


def test_a_layer_called_on_an_input_gives_a_keras_tensor():
    y = LSTM(4)(Input((5, 3)))
    assert isinstance(y, KerasTensor) and y.shape == (None, 4) and y.dtype == "float32"
    seq, h, c = LSTM(4, return_sequences=True, return_state=True)(Input((None, 3), batch_size=2))
    assert (seq.shape, h.shape, c.shape) == ((2, None, 4), (2, 4), (2, 4))
    assert seq._keras_history.tensor_index == 0 and c._keras_history.tensor_index == 2


def test_input_keeps_integer_ids_and_declares_sequential_inputs():
    ids = Input((7,), dtype="int32", name="ids")
    layer = ids._keras_history.layer
    assert isinstance(layer, InputLayer) and layer.dtype == "int32" and ids.name == "ids"
    assert Embedding(10, 3)(ids).shape == (None, 7, 3)
    with pytest.raises(ValueError, match="`dtype`"):
        Input((3,), dtype="complex64")
    model = Sequential([Input((3,)), Dense(2)])
    assert model.built and model.predict(np.ones((4, 3))).shape == (4, 2)
    model = Sequential([InputLayer((3,)), Dense(2)])
    model.add(Dense(1))
    assert model.predict(np.ones((4, 3))).shape == (4, 1)


def test_mixing_arrays_and_keras_tensors_names_the_layer():
    x = Input((5, 3))
    with pytest.raises(TypeError, match="'mixer'"):
        Dense(2, name="mixer")([x, np.ones((1, 5, 3))])
    with pytest.raises(TypeError, match="'decoder'.*initial_state"):
        LSTM(2, name="decoder")(x, initial_state=[np.zeros((1, 2)), np.zeros((1, 2))])
    with pytest.raises(TypeError, match="symbolic"):
        np.asarray(x)


def test_masks_are_traced_symbolically():
    tokens = Input((6,), dtype="int32")
    embedded = Embedding(10, 3, mask_zero=True)(tokens)
    assert embedded._has_mask
    assert LSTM(2, return_sequences=True)(embedded)._has_mask
    assert not LSTM(2)(embedded)._has_mask
    assert not Dense(2)(Input((6, 3)))._has_mask
    assert Masking()(Input((6, 3)))._has_mask


# Forward -------------------------------------------------------------------------------------


def _two_input_model():
    a, b = Input((5, 3), name="a"), Input((4,), name="b")
    lstm, head, side = LSTM(4, name="lstm", seed=1), Dense(2, name="head"), Dense(3, name="side")
    out = head(lstm(a))
    return Model([a, b], [out, side(b)], name="two"), (lstm, head, side)


def test_multi_input_output_forward_matches_the_layers():
    model, (lstm, head, side) = _two_input_model()
    xa = _rng().normal(size=(2, 5, 3)).astype("float32")
    xb = _rng(1).normal(size=(2, 4)).astype("float32")
    out, aux = model([xa, xb])
    np.testing.assert_allclose(out, head(lstm(xa)), rtol=1e-6)
    np.testing.assert_allclose(aux, side(xb), rtol=1e-6)
    assert model.input_names == ["a", "b"] and model.output_names == ["head", "side"]
    # Keras's order: by depth from the outputs, then by first visit.
    assert [layer.name for layer in model.layers] == ["a", "lstm", "b", "head", "side"]


def test_dict_inputs_and_outputs():
    a, b = Input((3,), name="a"), Input((2,), name="b")
    left, right = Dense(1, name="left"), Dense(1, name="right")
    model = Model({"b": b, "a": a}, {"y": left(a), "z": right(b)})
    xa, xb = np.ones((2, 3), dtype="float32"), np.full((2, 2), 2.0, dtype="float32")
    out = model({"a": xa, "b": xb})
    assert sorted(out) == ["y", "z"]
    np.testing.assert_allclose(out["y"], left(xa))
    np.testing.assert_allclose(out["z"], right(xb))
    assert model.input_names == ["a", "b"] and model.output_names == ["y", "z"]


def test_one_output_in_a_list_comes_back_alone():
    # Keras 3 unpacks a single output given as a list in calls, predict and output_shape.
    x = Input((5, 3))
    model = Model([x], [LSTM(2)(x)])
    data = np.ones((4, 5, 3), dtype="float32")
    assert isinstance(model.predict(data), np.ndarray) and model.predict(data).shape == (4, 2)
    assert model(data).shape == (4, 2) and model.output_shape == (None, 2)
    assert isinstance(model(Input((5, 3))), KerasTensor)


def test_call_arguments_that_change_the_outputs_are_traced():
    query, value = Input((4, 3)), Input((5, 3))
    out, scores = Attention()([query, value], return_attention_scores=True)
    assert (out.shape, scores.shape) == ((None, 4, 3), (None, 4, 5))
    model = Model([query, value], [out, scores])
    got = model.predict([_rng().normal(size=(2, 4, 3)), _rng(1).normal(size=(2, 5, 3))])
    assert [a.shape for a in got] == [(2, 4, 3), (2, 4, 5)]
    np.testing.assert_allclose(got[1].sum(axis=-1), 1.0, rtol=1e-6)
    assert Model([query, value], out)([Input((4, 3)), Input((5, 3))]).shape == (None, 4, 3)


def test_an_output_needing_a_missing_input_is_refused():
    a, b = Input((3,), name="a"), Input((3,), name="b_in")
    merged = Dense(2)(b)
    with pytest.raises(ValueError, match="b_in"):
        Model(a, [Dense(1)(a), merged])
    with pytest.raises(ValueError, match="KerasTensor"):
        Model(a, np.ones(3))


def test_a_model_starting_from_an_intermediate_tensor():
    x = Input((3,))
    hidden = Dense(4, name="hidden")(x)
    top = Dense(2, name="top")
    model = Model(hidden, top(hidden))
    h = np.ones((2, 4), dtype="float32")
    np.testing.assert_allclose(model(h), top(h))
    assert [layer.name for layer in model.layers] == ["top"]


# Backward ------------------------------------------------------------------------------------


def _numeric_weight_grads(model, xs, weights_out, picks=4, eps=1e-6):
    """Central differences of sum(w * y) for a few entries of each variable."""
    def loss():
        ys, _ = model._forward_flat(xs, training=False)
        return sum(float(np.sum(w * y)) for w, y in zip(weights_out, ys) if w is not None)

    result = []
    for var in model.weights:
        flat = var.value.reshape(-1)
        idx = _rng(len(result)).choice(flat.size, size=min(picks, flat.size), replace=False)
        grads = []
        for i in idx:
            old = flat[i]
            flat[i] = old + eps
            up = loss()
            flat[i] = old - eps
            down = loss()
            flat[i] = old
            grads.append((up - down) / (2 * eps))
        result.append((idx, np.array(grads)))
    return result


def _check_gradients(model, xs, seed=3):
    ys, _ = model._forward_flat(xs, training=True)
    weights_out = [_rng(seed + i).normal(size=y.shape) for i, y in enumerate(ys)]
    for var in model.weights:
        var.grad[...] = 0
    d_inputs = model._backward_flat(weights_out)
    numeric = _numeric_weight_grads(model, xs, weights_out)
    for var, (idx, want) in zip(model.weights, numeric):
        np.testing.assert_allclose(var.grad.reshape(-1)[idx], want, rtol=1e-5, atol=1e-8,
                                   err_msg=var.name)
    return d_inputs, weights_out


def _encoder_decoder(dtype=F64, units=3):
    enc_in = Input((5, 2), dtype=dtype, name="enc_in")
    dec_in = Input((4, 3), dtype=dtype, name="dec_in")
    _, h, c = LSTM(units, return_state=True, dtype=dtype, seed=1, name="encoder")(enc_in)
    seq = LSTM(units, return_sequences=True, dtype=dtype, seed=2, name="decoder")(
        dec_in, initial_state=[h, c])
    out = Dense(2, activation="softmax", dtype=dtype, name="probs")(seq)
    return Model([enc_in, dec_in], out)


def test_encoder_decoder_gradients_match_finite_differences():
    model = _encoder_decoder()
    xs = [_rng(1).normal(size=(2, 5, 2)), _rng(2).normal(size=(2, 4, 3))]
    d_inputs, w = _check_gradients(model, xs)
    eps = 1e-6
    x = xs[0].copy()

    def loss(x0):
        return float(np.sum(w[0] * model._forward_flat([x0, xs[1]], False)[0][0]))

    for index in [(0, 0, 0), (1, 4, 1), (0, 2, 1)]:
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        np.testing.assert_allclose(d_inputs[0][index], (loss(up) - loss(down)) / (2 * eps),
                                   rtol=1e-5)


def test_unused_state_outputs_and_return_state_outputs_get_gradients():
    x = Input((4, 2), dtype=F64)
    seq, h, c = LSTM(3, return_sequences=True, return_state=True, dtype=F64, seed=0)(x)
    model = Model(x, [Dense(1, dtype=F64)(seq), c])
    _check_gradients(model, [_rng(5).normal(size=(3, 4, 2))])


def test_a_shared_layer_adds_both_calls_gradients():
    a, b = Input((4, 2), dtype=F64, name="a"), Input((4, 2), dtype=F64, name="b")
    shared = LSTM(3, dtype=F64, seed=4, name="shared")
    head = Dense(1, dtype=F64, name="head")
    model = Model([a, b], [head(shared(a)), shared(b)])
    xs = [_rng(1).normal(size=(2, 4, 2)), _rng(2).normal(size=(2, 4, 2))]
    _check_gradients(model, xs)
    # Against two separate copies of the layer with the same weights.
    first = LSTM(3, dtype=F64, name="first")
    second = LSTM(3, dtype=F64, name="second")
    first(xs[0])
    second(xs[1])
    first.set_weights(shared.get_weights())
    second.set_weights(shared.get_weights())
    head_copy = Dense(1, dtype=F64)
    head_copy(np.zeros((1, 3)))
    head_copy.set_weights(head.get_weights())
    g_out = [_rng(7).normal(size=(2, 1)), _rng(8).normal(size=(2, 3))]
    for var in model.weights:
        var.grad[...] = 0
    model._forward_flat(xs, training=True)
    model._backward_flat(g_out)
    y1 = first(xs[0], training=True)
    head_copy(y1, training=True)
    first.backward(head_copy.backward(g_out[0]))
    second(xs[1], training=True)
    second.backward(g_out[1])
    for v, v1, v2 in zip(shared.weights, first.weights, second.weights):
        np.testing.assert_allclose(v.grad, v1.grad + v2.grad, rtol=1e-10, err_msg=v.name)


def test_masks_flow_from_embedding_through_the_graph():
    tokens = Input((5,), dtype="int32", name="tokens")
    embedding = Embedding(8, 3, mask_zero=True, dtype=F64, name="emb")
    lstm = LSTM(2, return_sequences=True, dtype=F64, seed=0, name="lstm")
    top = LSTM(2, dtype=F64, seed=1, name="top")
    seq = lstm(embedding(tokens))
    model = Model(tokens, [top(seq), seq])
    ids = np.array([[3, 1, 2, 0, 0], [4, 0, 0, 0, 0]])
    (last, seq_out), masks = model._forward_flat([ids], training=False)
    mask = ids != 0
    np.testing.assert_array_equal(masks[1], mask)
    assert masks[0] is None
    want = top(lstm(embedding(ids), mask=mask), mask=mask)
    np.testing.assert_allclose(last, want, rtol=1e-12)
    assert not np.allclose(last, top(lstm(embedding(ids))))
    _check_gradients(model, [ids])


def test_models_nest_as_layers():
    x = Input((4, 2), dtype=F64, name="x")
    inner_lstm = LSTM(3, dtype=F64, seed=0, name="inner_lstm")
    inner = Model(x, inner_lstm(x), name="inner")
    stack = Sequential([Dense(2, dtype=F64, name="seq_dense")], name="stack")
    a, b = Input((4, 2), dtype=F64, name="a"), Input((4, 2), dtype=F64, name="b")
    outer = Model([a, b], [stack(inner(a)), inner(b)], name="outer")
    assert outer.get_layer("inner") is inner
    assert outer.count_params() == inner_lstm.count_params() + 8
    xs = [_rng(1).normal(size=(2, 4, 2)), _rng(2).normal(size=(2, 4, 2))]
    y_a, y_b = outer(xs)
    np.testing.assert_allclose(y_a, stack(inner_lstm(xs[0])), rtol=1e-12)
    np.testing.assert_allclose(y_b, inner_lstm(xs[1]), rtol=1e-12)
    _check_gradients(outer, xs)


def test_weights_summary_and_get_layer():
    model, (lstm, head, side) = _two_input_model()
    assert [v.name for v in model.weights] == [v.name for v in
                                               lstm.weights + head.weights + side.weights]
    assert model.get_layer("head") is head and model.get_layer(index=1) is lstm
    with pytest.raises(ValueError, match="No such layer"):
        model.get_layer("nope")
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in text and "lstm[0][0]" in text and "Total params: " in text
    weights = [w + 1 for w in model.get_weights()]
    model.set_weights(weights)
    np.testing.assert_array_equal(model.get_weights()[0], weights[0])


def test_fit_trains_a_functional_model():
    model, _ = _two_input_model()
    model.compile("adam", loss=["mse", "mse"])
    xa = _rng().normal(size=(16, 5, 3)).astype("float32")
    xb = _rng(1).normal(size=(16, 4)).astype("float32")
    ya, yb = np.ones((16, 2), dtype="float32"), np.zeros((16, 3), dtype="float32")
    history = model.fit([xa, xb], [ya, yb], epochs=5, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


# Config and files ----------------------------------------------------------------------------


def _assert_same_predictions(model, clone, xs):
    clone.set_weights(model.get_weights())
    for got, want in zip(clone._forward_flat(xs, False)[0], model._forward_flat(xs, False)[0]):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_config_round_trip_in_keras_3_format():
    model = _encoder_decoder(dtype="float32")
    config = model.get_config()
    decoder = next(entry for entry in config["layers"] if entry["name"] == "decoder")
    states = decoder["inbound_nodes"][0]["kwargs"]["initial_state"]
    assert states[1] == {"class_name": "__keras_tensor__", "config": {
        "shape": [None, 3], "dtype": "float32", "keras_history": ["encoder", 0, 2]}}
    assert config["input_layers"] == [["enc_in", 0, 0], ["dec_in", 0, 0]]
    assert config["output_layers"] == ["probs", 0, 0]  # one output: one triple, as Keras
    clone = Model.from_config(json.loads(json.dumps(config)))
    assert json.dumps(clone.get_config()) == json.dumps(config)
    xs = [np.ones((2, 5, 2), dtype="float32"), np.ones((2, 4, 3), dtype="float32")]
    _assert_same_predictions(model, clone, xs)


def test_layer_entries_in_any_order_rebuild_the_graph():
    model = _encoder_decoder(dtype="float32")
    config = json.loads(json.dumps(model.get_config()))
    config["layers"].reverse()
    clone = Model.from_config(config)
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    xs = [np.ones((2, 5, 2), dtype="float32"), np.ones((2, 4, 3), dtype="float32")]
    _assert_same_predictions(model, clone, xs)


def test_config_round_trip_of_shared_and_nested_models():
    x = Input((3,), name="x")
    inner = Model(x, Dense(2, name="inner_dense")(x), name="inner")
    a, b = Input((3,), name="a"), Input((3,), name="b")
    shared = Dense(3, name="shared")
    outer = Model({"a": a, "b": b}, [inner(shared(a)), inner(shared(b))], name="outer")
    config = outer.get_config()
    assert config["output_layers"] == [["inner", 1, 0], ["inner", 2, 0]]
    clone = Model.from_config(json.loads(json.dumps(config)))
    assert json.dumps(clone.get_config()) == json.dumps(config)
    xs = [np.ones((2, 3), dtype="float32"), np.full((2, 3), -1.0, dtype="float32")]
    _assert_same_predictions(outer, clone, xs)


def test_save_and_load_in_pylstm_format(tmp_path):
    model = _encoder_decoder(dtype="float32")
    model.compile("sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    path = tmp_path / "model.pylstm"
    model.save(path)
    loaded = load_model(path)
    assert isinstance(loaded, Model) and loaded.optimizer is not None
    xs = [np.ones((2, 5, 2), dtype="float32"), np.ones((2, 4, 3), dtype="float32")]
    np.testing.assert_array_equal(loaded.predict(xs), model.predict(xs))


def _bad_configs():
    good = _encoder_decoder(dtype="float32").get_config()

    def edit(function):
        config = copy.deepcopy(good)
        function(config)
        return config

    def node(config, name):
        return next(e for e in config["layers"] if e["name"] == name)["inbound_nodes"]

    return {
        "not a dict": [],
        "no layers": edit(lambda c: c.pop("layers")),
        "layers not a list": edit(lambda c: c.update(layers={"a": 1})),
        "layer not a dict": edit(lambda c: c["layers"].append(3)),
        "repeated name": edit(lambda c: c["layers"].append(copy.deepcopy(c["layers"][-1]))),
        "unknown class": edit(lambda c: c["layers"][-1].update(class_name="Nope")),
        "name mismatch": edit(lambda c: c["layers"][-1].update(name="other")),
        "bad inbound nodes": edit(lambda c: c["layers"][-1].update(inbound_nodes="x")),
        "node not a dict": edit(lambda c: node(c, "probs").__setitem__(0, 5)),
        "two positional args": edit(lambda c: node(c, "probs")[0]["args"].append(1)),
        "unknown source layer": edit(lambda c: node(c, "probs")[0]["args"][0]["config"].update(
            keras_history=["ghost", 0, 0])),
        "bad history": edit(lambda c: node(c, "probs")[0]["args"][0]["config"].update(
            keras_history=["decoder", "0", 0])),
        "tensor index out of range": edit(lambda c: node(c, "probs")[0]["args"][0][
            "config"].update(keras_history=["encoder", 0, 7])),
        "negative index": edit(lambda c: node(c, "probs")[0]["args"][0]["config"].update(
            keras_history=["encoder", -1, 0])),
        "loop": edit(lambda c: node(c, "encoder")[0]["args"][0]["config"].update(
            keras_history=["probs", 0, 0])),
        "unknown kwarg": edit(lambda c: node(c, "probs")[0]["kwargs"].update(foo=1)),
        "object kwarg": edit(lambda c: node(c, "probs")[0]["kwargs"].update(foo=object())),
        "bad output_layers": edit(lambda c: c.update(output_layers=["probs", 0])),
        "missing output tensor": edit(lambda c: c.update(output_layers=[["probs", 3, 0]])),
        "unknown output layer": edit(lambda c: c.update(output_layers=[["ghost", 0, 0]])),
        "bad name": edit(lambda c: c.update(name=5)),
        "bad trainable": edit(lambda c: c.update(trainable="yes")),
    }


@pytest.mark.parametrize("case", sorted(_bad_configs()))
def test_bad_configs_raise_value_error(case):
    with pytest.raises(ValueError):
        Model.from_config(_bad_configs()[case])


def test_a_stateful_layer_in_a_graph_keeps_its_latest_state():
    x = Input((3, 2), batch_size=2, dtype=F64)
    lstm = LSTM(2, stateful=True, dtype=F64, seed=0)
    model = Model(x, Dense(1, dtype=F64)(lstm(x)))
    xs = _rng().normal(size=(2, 6, 2))
    first = model(xs[:, :3])
    second = model(xs[:, 3:])
    whole = LSTM(2, dtype=F64)
    whole(xs)
    whole.set_weights(lstm.get_weights())
    np.testing.assert_allclose(lstm.states[0], whole(xs), rtol=1e-12)
    model.reset_states()
    np.testing.assert_allclose(model(xs[:, :3]), first, rtol=1e-12)
    assert not np.allclose(first, second)


def test_a_shared_layer_counts_the_penalty_of_each_call():
    a, b = Input((2,), name="a"), Input((2,), name="b")
    shared = Dense(1, activity_regularizer="l2", kernel_initializer="ones", name="shared")
    model = Model([a, b], [shared(a), shared(b)])
    xa, xb = np.ones((1, 2), dtype="float32"), np.full((1, 2), 2.0, dtype="float32")
    model([xa, xb])
    # Keras's default L2 factor is 0.01: 0.01 * 2**2 and 0.01 * 4**2.
    np.testing.assert_allclose(sorted(model.losses), [0.04, 0.16], rtol=1e-6)


def test_a_model_made_from_an_intermediate_tensor_cannot_be_saved():
    x = Input((3,))
    hidden = Dense(4)(x)
    with pytest.raises(ValueError, match="not made by `Input`"):
        Model(hidden, Dense(2)(hidden)).get_config()


def test_doctests():
    assert doctest.testmod(functional_module).failed == 0
    assert doctest.testmod(core_module).failed == 0
