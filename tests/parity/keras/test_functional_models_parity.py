"""Functional models of `pylstm.models.Model` against the same models built in Keras 3 (issue
16, section 4): an encoder-decoder passing the encoder's states to the decoder, two inputs
merged by `Concatenate`, a CNN-LSTM, attention over a bidirectional LSTM (with and without a
mask flowing from an `Embedding`), and one LSTM shared by two inputs. Each model is written once
and built with both libraries; the Keras weights are copied layer by layer by name; float32
outputs match within rtol 1e-5, and the gradients of `sum(outputs * upstream)` with respect to
every input and weight (tf.GradientTape in Keras, the model's backward pass in pylstm) within
rtol 1e-4. Attention layers in Keras files: loaded from Keras's `.keras` and legacy `.h5`, saved
back for Keras.
"""

import numpy as np
import pytest

import pylstm.layers
import pylstm.models

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

keras, tf = ku.keras, ku.tf

B, T, D, H, V = 3, 6, 4, 5, 7
RTOL_OUT, ATOL_OUT = 1e-5, 1e-6
RTOL_GRAD, ATOL_GRAD = 1e-4, 1e-6


# The models, each written once for both libraries: `L` is `keras.layers` or `pylstm.layers`,
# `Model` is `keras.Model` or `pylstm.models.Model`. Layer names are given so that weights are
# copied by name.

def encoder_decoder(L, Model):
    encoder_inputs = L.Input((T, V), name="encoder_inputs")
    _, h, c = L.LSTM(H, return_state=True, name="encoder")(encoder_inputs)
    decoder_inputs = L.Input((T - 2, V), name="decoder_inputs")
    decoded = L.LSTM(H, return_sequences=True, name="decoder")(decoder_inputs,
                                                               initial_state=[h, c])
    outputs = L.Dense(V, activation="softmax", name="next_char")(decoded)
    return Model([encoder_inputs, decoder_inputs], outputs)


def two_inputs_concatenated(L, Model):
    sequence = L.Input((T, D), name="sequence")
    features = L.Input((3,), name="features")
    summary = L.LSTM(H, name="lstm")(sequence)
    static = L.Dense(4, activation="tanh", name="static")(features)
    merged = L.Concatenate(name="merge")([summary, static])
    return Model([sequence, features], L.Dense(2, name="head")(merged))


def cnn_lstm(L, Model):
    inputs = L.Input((T + 2, D), name="signal")
    x = L.Conv1D(6, 3, activation="relu", name="conv")(inputs)
    x = L.MaxPooling1D(2, name="pool")(x)
    x = L.LSTM(H, name="lstm")(x)
    return Model(inputs, L.Dense(1, name="head")(x))


def attention_over_bilstm(L, Model):
    inputs = L.Input((T, D), name="sequence")
    states = L.Bidirectional(L.LSTM(H, return_sequences=True), name="bilstm")(inputs)
    attended = L.Attention(use_scale=True, name="attention")([states, states])
    pooled = L.GlobalAveragePooling1D(name="pool")(attended)
    return Model(inputs, L.Dense(3, activation="softmax", name="head")(pooled))


def masked_attention_over_bilstm(L, Model):
    tokens = L.Input((T,), dtype="int32", name="tokens")
    embedded = L.Embedding(V, D, mask_zero=True, name="embedding")(tokens)
    states = L.Bidirectional(L.LSTM(H, return_sequences=True), name="bilstm")(embedded)
    attended = L.Attention(score_mode="concat", name="attention")([states, states])
    pooled = L.GlobalAveragePooling1D(name="pool")(attended)
    return Model(tokens, L.Dense(2, name="head")(pooled))


def shared_lstm(L, Model):
    left = L.Input((T, D), name="left")
    right = L.Input((T, D), name="right")
    encoder = L.LSTM(H, name="shared")
    merged = L.Concatenate(name="merge")([encoder(left), encoder(right)])
    return Model([left, right], L.Dense(1, activation="sigmoid", name="head")(merged))


def tokens(rng):
    """Token ids with 0 as padding: a full row, right padding, a hole."""
    x = rng.integers(1, V, size=(B, T))
    x[1, 4:] = 0
    x[2, 2] = 0
    return x.astype("int32")


def floats(rng, *shape):
    return (rng.normal(size=shape) * 0.5).astype("float32")


CASES = {
    "encoder_decoder": (encoder_decoder,
                        lambda rng: [floats(rng, B, T, V), floats(rng, B, T - 2, V)]),
    "two_inputs_concatenated": (two_inputs_concatenated,
                                lambda rng: [floats(rng, B, T, D), floats(rng, B, 3)]),
    "cnn_lstm": (cnn_lstm, lambda rng: [floats(rng, B, T + 2, D)]),
    "attention_over_bilstm": (attention_over_bilstm, lambda rng: [floats(rng, B, T, D)]),
    "masked_attention_over_bilstm": (masked_attention_over_bilstm, lambda rng: [tokens(rng)]),
    "shared_lstm": (shared_lstm, lambda rng: [floats(rng, B, T, D), floats(rng, B, T, D)]),
}


def twins(rng, build):
    """The model built with each library; Keras's weights, made non-trivial (its zero biases
    and unit attention scale replaced by random values), are copied into pylstm's by layer
    name."""
    theirs = build(keras.layers, keras.Model)
    ours = build(pylstm.layers, pylstm.models.Model)
    for layer in theirs.layers:
        if layer.weights:
            layer.set_weights([w + (0.3 * rng.normal(size=w.shape)).astype(w.dtype)
                               for w in layer.get_weights()])
            ku.copy_weights(layer, ours.get_layer(layer.name))
    return ours, theirs


def keras_vjp(model, xs, upstream):
    """Keras's outputs and the gradients of `sum(outputs * upstream)` with respect to each float
    input (None for token ids) and each trainable weight, by layer name (each layer's
    `trainable_weights` order)."""
    tensors = [tf.constant(x) for x in xs]
    with tf.GradientTape() as tape:
        for t in tensors:
            tape.watch(t)
        outputs = ku.as_list(model(tensors if len(xs) > 1 else tensors[0], training=True))
        loss = tf.add_n([tf.reduce_sum(o * g) for o, g in zip(outputs, upstream)])
    layers = [layer for layer in model.layers if layer.trainable_weights]
    input_grads, grads = tape.gradient(
        loss, ([t for t in tensors if t.dtype.is_floating],
               [layer.trainable_weights for layer in layers]))
    input_grads = iter(input_grads)
    return ([np.asarray(o) for o in outputs],
            [np.asarray(next(input_grads)) if t.dtype.is_floating else None for t in tensors],
            # An Embedding's gradient comes as tf.IndexedSlices: made dense.
            {layer.name: [np.asarray(tf.convert_to_tensor(g)) for g in layer_grads]
             for layer, layer_grads in zip(layers, grads)})


@pytest.mark.parametrize("case", sorted(CASES))
def test_functional_model_matches_keras(rng, case):
    build, make_inputs = CASES[case]
    ours, theirs = twins(rng, build)
    xs = make_inputs(rng)
    want = ku.as_list(theirs.predict(xs if len(xs) > 1 else xs[0], verbose=0))
    got = ku.as_list(ours.predict(xs if len(xs) > 1 else xs[0]))
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=RTOL_OUT, atol=ATOL_OUT)

    upstream = [rng.normal(size=w.shape).astype("float32") for w in want]
    k_outputs, k_input_grads, k_grads = keras_vjp(theirs, xs, upstream)
    for var in ours.weights:
        var.grad[...] = 0
    outputs, _ = ours._forward_flat(xs, training=True)
    for o, k in zip(outputs, k_outputs, strict=True):
        np.testing.assert_allclose(o, k, rtol=RTOL_OUT, atol=ATOL_OUT)
    input_grads = ours._backward_flat(upstream)
    for g, keras_g in zip(input_grads, k_input_grads, strict=True):
        if keras_g is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, keras_g, rtol=RTOL_GRAD, atol=ATOL_GRAD)
    assert set(k_grads) == {layer.name for layer in ours.layers if layer.trainable_variables}
    for name, keras_grads in k_grads.items():
        variables = ours.get_layer(name).trainable_variables
        for var, keras_g in zip(variables, keras_grads, strict=True):
            np.testing.assert_allclose(var.grad, keras_g, rtol=RTOL_GRAD, atol=ATOL_GRAD,
                                       err_msg=var.name)



def attention_variants(L, Model):
    """Every weight form of the two attention layers: `Attention`'s scalar `scale` and
    `concat_score_weight`, `AdditiveAttention`'s `(D,)` scale, and a layer without weights."""
    query = L.Input((T, D), name="query")
    value = L.Input((T + 1, D), name="value")
    dot = L.Attention(use_scale=True, name="dot")([query, value])
    concat = L.Attention(use_scale=True, score_mode="concat", name="concat")([query, value])
    additive = L.AdditiveAttention(name="additive")([query, value, value])
    plain = L.AdditiveAttention(use_scale=False, name="plain")([query, value])
    merged = L.Concatenate(name="merge")([dot, concat, additive, plain])
    return Model([query, value], L.Dense(2, name="head")(merged))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_attention_layers_in_keras_files(rng, tmp_path, suffix):
    """A Keras file of the attention layers loads with their weights and predicts as Keras;
    pylstm's `.keras` file of it loads in Keras and predicts the same."""
    _, theirs = twins(rng, attention_variants)
    xs = [floats(rng, B, T, D), floats(rng, B, T + 1, D)]
    want = theirs.predict(xs, verbose=0)
    path = tmp_path / f"attention{suffix}"
    theirs.save(path)
    ours = pylstm.models.load_keras(path)
    assert [type(ours.get_layer(n)).__name__ for n in ("dot", "concat", "additive", "plain")] \
        == ["Attention", "Attention", "AdditiveAttention", "AdditiveAttention"]
    for layer in theirs.layers:
        for a, b in zip(ours.get_layer(layer.name).get_weights(), layer.get_weights(),
                        strict=True):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(ours.predict(xs), want, rtol=RTOL_OUT, atol=ATOL_OUT)
    back = tmp_path / "pylstm.keras"
    ours.save(back)
    np.testing.assert_allclose(keras.models.load_model(back).predict(xs, verbose=0), want,
                               rtol=RTOL_OUT, atol=ATOL_OUT)
