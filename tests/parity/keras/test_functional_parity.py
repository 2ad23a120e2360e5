"""The functional graph itself against Keras 3: the config a graph writes (layer order, nodes,
`keras_history` triples, `input_layers` / `output_layers`), and what the whole-model suite
(`test_functional_models_parity.py`) leaves out: gradients with respect to the inputs through
`initial_state`, outputs that are an LSTM's states (with no gradient for some outputs), dict
inputs and outputs, and models nested in models (a `Functional` called twice, a `Sequential`).
Float32; outputs within rtol 1e-5, gradients within rtol 1e-4.
"""

import numpy as np
import pytest

import pylstm.layers
import pylstm.models

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

keras, tf = ku.keras, ku.tf

B, T, D, H = 3, 5, 4, 3
RTOL_OUT, ATOL_OUT = 1e-5, 1e-6
RTOL_GRAD, ATOL_GRAD = 1e-4, 1e-6


def seq2seq_with_states(L, Model, S):
    """Encoder-decoder whose outputs include the encoder's states; dict inputs and outputs."""
    source = L.Input((T, D), name="source")
    target = L.Input((T - 1, D), name="target")
    _, h, c = L.LSTM(H, return_state=True, name="encoder")(source)
    decoded = L.LSTM(H, return_sequences=True, name="decoder")(target, initial_state=[h, c])
    return Model({"source": source, "target": target},
                 {"probs": L.Dense(2, activation="softmax", name="probs")(decoded), "h": h})


def nested(L, Model, S):
    """A functional encoder called on two inputs, then a Sequential head."""
    x = L.Input((T, D), name="x")
    encoder = Model(x, L.LSTM(H, return_sequences=True, name="inner_lstm")(x), name="encoder")
    head = S([L.LSTM(2, name="seq_lstm"), L.Dense(1, name="seq_dense")], name="head")
    left, right = L.Input((T, D), name="left"), L.Input((T, D), name="right")
    return Model([left, right], [head(encoder(left)), encoder(right)], name="outer")


CASES = {"seq2seq_with_states": seq2seq_with_states, "nested": nested}


def _build(case, rng):
    theirs = CASES[case](keras.layers, keras.Model, keras.Sequential)
    ours = CASES[case](pylstm.layers, pylstm.models.Model, pylstm.models.Sequential)
    weights = [w + (0.3 * rng.normal(size=w.shape)).astype(w.dtype)
               for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    return ours, theirs


def _inputs(rng, model):
    return [(rng.normal(size=(B,) + t.shape[1:]) * 0.5).astype("float32") for t in model.inputs]


def _keras_gradients(model, xs, upstream):
    """Keras's outputs (flat, sorted keys), and the gradients of `sum(outputs * upstream)`
    (no term for an output whose upstream is None) for the inputs and the weights."""
    inputs = [tf.constant(x) for x in xs]
    names = sorted(model.input) if isinstance(model.input, dict) else None
    with tf.GradientTape(persistent=True) as tape:
        for x in inputs:
            tape.watch(x)
        result = model(dict(zip(names, inputs)) if names else inputs, training=True)
        outputs = [result[k] for k in sorted(result)] if isinstance(result, dict) else \
            ku.as_list(result)
        loss = tf.add_n([tf.reduce_sum(o * g) for o, g in zip(outputs, upstream)
                         if g is not None])
    d_inputs = tape.gradient(loss, inputs)
    weights = model.trainable_weights
    # None where nothing depends on it: zeros for a weight, None for an input (as pylstm).
    d_weights = [np.zeros(w.shape, "float32") if g is None else np.asarray(g)
                 for w, g in zip(weights, tape.gradient(loss, weights))]
    return ([np.asarray(o) for o in outputs],
            [None if g is None else np.asarray(g) for g in d_inputs], d_weights)


@pytest.mark.parametrize("case", sorted(CASES))
def test_outputs_and_gradients_match_keras(rng, case):
    ours, theirs = _build(case, rng)
    xs = _inputs(rng, ours)
    outputs, _ = ours._forward_flat(xs, training=True)
    upstream = [rng.normal(size=o.shape).astype("float32") for o in outputs]
    upstream[0] = None  # an output without a loss: no gradient flows from it
    k_outputs, k_inputs, k_weights = _keras_gradients(theirs, xs, upstream)
    for o, k in zip(outputs, k_outputs, strict=True):
        np.testing.assert_allclose(o, k, rtol=RTOL_OUT, atol=ATOL_OUT)
    for var in ours.weights:
        var.grad[...] = 0
    d_inputs = ours._backward_flat(upstream)
    for g, k in zip(d_inputs, k_inputs, strict=True):
        if k is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, k, rtol=RTOL_GRAD, atol=ATOL_GRAD)
    assert [v.shape for v in ours.trainable_variables] == [tuple(w.shape) for w in k_weights]
    for var, k in zip(ours.trainable_variables, k_weights, strict=True):
        np.testing.assert_allclose(var.grad, k, rtol=RTOL_GRAD, atol=ATOL_GRAD,
                                   err_msg=var.name)


def _graph(config):
    """What a functional config says about the graph: each layer's name, class and calls
    (every tensor argument as its `keras_history`, the `initial_state` ones included), and
    the model's input and output triples."""
    def tensors(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            return [value["config"]["keras_history"]]
        if isinstance(value, dict):
            return [t for k in sorted(value) for t in tensors(value[k])]
        if isinstance(value, (list, tuple)):
            return [t for v in value for t in tensors(v)]
        return []

    layers = [(entry["name"], entry["class_name"],
               [tensors(node["args"]) + tensors(node["kwargs"])
                for node in entry["inbound_nodes"]]) for entry in config["layers"]]
    return layers, config["input_layers"], config["output_layers"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_describes_the_graph_as_keras_does(rng, case):
    ours, theirs = _build(case, rng)
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]
    assert _graph(ours.get_config()) == _graph(theirs.get_config())


def masked_decoder(L, Model, S):
    """Token ids padded with 0 into an Embedding(mask_zero=True) and a decoder LSTM started from
    an encoder's states: Keras runs a layer given tensors by keyword (`initial_state`) without
    the inputs' mask, and still hands that mask to its outputs (and so to the loss)."""
    source = L.Input((T,), dtype="int32", name="source")
    target = L.Input((T,), dtype="int32", name="target")
    _, h, c = L.LSTM(H, return_state=True, name="encoder")(
        L.Embedding(7, D, mask_zero=True, name="source_embedding")(source))
    decoded = L.LSTM(H, return_sequences=True, name="decoder")(
        L.Embedding(7, D, mask_zero=True, name="target_embedding")(target),
        initial_state=[h, c])
    return Model([source, target], L.Dense(7, activation="softmax", name="next")(decoded))


def test_a_layer_given_states_runs_unmasked_and_passes_the_mask_on_as_keras(rng):
    theirs = masked_decoder(keras.layers, keras.Model, keras.Sequential)
    ours = masked_decoder(pylstm.layers, pylstm.models.Model, pylstm.models.Sequential)
    ours.set_weights(theirs.get_weights())
    ids = rng.integers(1, 7, size=(2, B, T)).astype("int32")
    ids[:, 0, 3:] = 0
    ids[:, 1, 1:] = 0
    target = rng.integers(0, 7, size=(B, T)).astype("int32")
    np.testing.assert_allclose(ours.predict(list(ids)), theirs.predict(list(ids), verbose=0),
                               rtol=RTOL_OUT, atol=ATOL_OUT)
    for model in (ours, theirs):
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    np.testing.assert_allclose(ours.evaluate(list(ids), target, verbose=0),
                               theirs.evaluate(list(ids), target, verbose=0), rtol=1e-5)
