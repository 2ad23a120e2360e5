"""pylstm.onnx.export of masked models against ONNX Runtime: Embedding(mask_zero=True) and
Masking before LSTM and Bidirectional layers in Sequential and functional models, on batches
that mix right-padded, left-padded, unpadded and all-masked samples; a sample whose mask has a
hole gets NaN from the exported graph (one ONNX LSTM node cannot express it). Also the layers
given an `initial_state` (the encoder-decoder pattern) and stateful models, whose state the
graph takes and returns."""

import numpy as np
import pytest
from pylstm_tests import require

import pylstm.onnx
from pylstm import layers
from pylstm.models import Model, Sequential

onnx = require("onnx")
ort = require("onnxruntime")

TOL = 1e-5
D, H, V = 4, 5, 9

# One row per kind of sample: right padded, left padded (Keras's pad_sequences default),
# unpadded, all masked, one real step at the end, one at the start.
MASK = np.array([[1, 1, 1, 0, 0, 0],
                 [0, 0, 1, 1, 1, 1],
                 [1, 1, 1, 1, 1, 1],
                 [0, 0, 0, 0, 0, 0],
                 [0, 0, 0, 0, 0, 1],
                 [1, 0, 0, 0, 0, 0]], bool)
MASKS = [MASK, MASK[1:2], MASK[:2, :1], np.ones((1, 1), bool), np.zeros((2, 1), bool)]
HOLED = np.array([[1, 0, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0], [0, 1, 1, 0, 1, 1]], bool)


def _randomize(model, seed=0, scale=0.5):
    rng = np.random.default_rng(seed)
    model.set_weights([(rng.normal(size=w.shape) * scale).astype(w.dtype)
                       for w in model.get_weights()])
    return model


def _session(model, tmp_path):
    tmp_path.mkdir(exist_ok=True)
    path = tmp_path / "model.onnx"
    proto = pylstm.onnx.export(model, path)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    return proto, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _tokens(mask, seed=0):
    """int64 tokens in [1, V) on real steps, 0 (Embedding's mask_zero padding) elsewhere."""
    tokens = np.random.default_rng(seed).integers(1, V, size=mask.shape)
    return np.where(mask, tokens, 0).astype(np.int64)


def _features(mask, seed=0):
    """float32 features, all 0.0 (Masking's default mask_value) on masked steps."""
    x = np.random.default_rng(seed).normal(size=mask.shape + (D,)).astype(np.float32)
    return np.where(mask[..., None], x, np.float32(0))


def _front(kind):
    if kind == "embedding":
        return [layers.Input((None,), dtype="int64"), layers.Embedding(V, D, mask_zero=True)]
    return [layers.Input((None, D)), layers.Masking()]


def _data(kind, mask, seed=0):
    return (_tokens if kind == "embedding" else _features)(mask, seed)


def _assert_matches(model, tmp_path, kind, masks=MASKS):
    """ONNX Runtime and `pylstm.onnx.load` run the exported file as pylstm runs the model."""
    proto, session = _session(model, tmp_path)
    loaded = pylstm.onnx.load(tmp_path / "model.onnx")
    name = session.get_inputs()[0].name
    for k, mask in enumerate(masks):
        x = _data(kind, mask, k)
        expected = model.predict(x, verbose=0)
        (got,) = session.run(None, {name: x})
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(loaded.run(None, {name: x})[0], expected, rtol=TOL,
                                   atol=TOL)
    return proto, session


@pytest.mark.parametrize("kind", ["embedding", "masking"])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_masked_lstm(tmp_path, kind, return_sequences, go_backwards, zero_output_for_mask):
    model = _randomize(Sequential(_front(kind) + [layers.LSTM(
        H, return_sequences=return_sequences, go_backwards=go_backwards,
        zero_output_for_mask=zero_output_for_mask)]))
    proto, _ = _assert_matches(model, tmp_path, kind)
    assert [n.op_type for n in proto.graph.node].count("LSTM") == 1


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_masked_bidirectional(tmp_path, merge_mode, return_sequences):
    model = _randomize(Sequential(_front("embedding") + [layers.Bidirectional(
        layers.LSTM(H, return_sequences=return_sequences), merge_mode=merge_mode)]))
    proto, _ = _assert_matches(model, tmp_path, "embedding")
    (node,) = [n for n in proto.graph.node if n.op_type == "LSTM"]
    assert next(a.s for a in node.attribute if a.name == "direction") == b"bidirectional"


@pytest.mark.parametrize("kind", ["embedding", "masking"])
def test_masked_stack(tmp_path, kind):
    """The mask passes through Dropout, Dense and sequence-returning LSTMs to the last LSTM."""
    model = _randomize(Sequential(_front(kind) + [
        layers.LSTM(H, return_sequences=True),
        layers.Dropout(0.5),
        layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode="sum"),
        layers.Dense(6, activation="tanh"),
        layers.LSTM(4, go_backwards=True, return_sequences=True),
        layers.LSTM(3, go_backwards=True),
        layers.Dense(2, activation="softmax")]))
    _assert_matches(model, tmp_path, kind)


def test_left_padded_batch(tmp_path):
    """pad_sequences' default: every sample left padded."""
    model = _randomize(Sequential(_front("embedding") + [
        layers.LSTM(H, return_sequences=True), layers.LSTM(H)]))
    lengths = [1, 3, 6, 2]
    mask = np.arange(6)[None, :] >= 6 - np.array(lengths)[:, None]
    _assert_matches(model, tmp_path, "embedding", [mask])


@pytest.mark.parametrize("kind", ["embedding", "masking"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_holed_mask_gives_nan(tmp_path, kind, return_sequences):
    model = _randomize(Sequential(_front(kind) + [
        layers.Bidirectional(layers.LSTM(H, return_sequences=True)),
        layers.LSTM(H, return_sequences=return_sequences)]))
    _, session = _session(model, tmp_path)
    x = _data(kind, HOLED)
    feed = {session.get_inputs()[0].name: x}
    holed = [0, 2]
    for (got,) in (session.run(None, feed), pylstm.onnx.load(tmp_path / "model.onnx").run(
            None, feed)):
        assert np.isnan(got[holed]).all()
        np.testing.assert_allclose(got[1], model.predict(x, verbose=0)[1], rtol=TOL, atol=TOL)


def _assert_functional_matches(model, tmp_path, feeds):
    """ONNX Runtime and `pylstm.onnx.load` run the exported file as pylstm runs the model."""
    proto, session = _session(model, tmp_path)
    loaded = pylstm.onnx.load(tmp_path / "model.onnx")
    for feed in feeds:
        expected = model.predict(feed if len(feed) > 1 else feed[0], verbose=0)
        expected = expected if isinstance(expected, list) else [expected]
        named = dict(zip(model.input_names, feed))
        for got in (session.run(None, named), loaded.run(None, named)):
            assert len(got) == len(expected)
            for g, e in zip(got, expected):
                assert g.shape == e.shape
                np.testing.assert_allclose(g, e, rtol=TOL, atol=TOL)
    return proto


def test_functional_masks_through_merges_and_states(tmp_path):
    """Two masked inputs: merges that compute with the masks (Multiply, Maximum, Minimum),
    merges that only pass them on, Concatenate's mask, and masked return_state."""
    tokens = layers.Input((None,), dtype="int64", name="tokens")
    features = layers.Input((None, D), name="features")
    a = layers.LSTM(H, return_sequences=True)(layers.Embedding(V, D, mask_zero=True)(tokens))
    b = layers.LSTM(H, return_sequences=True, go_backwards=True)(layers.Masking()(features))
    merged = layers.Concatenate()([layers.Add()([a, b]), layers.Multiply()([a, b]),
                                   layers.Maximum()([a, b]), layers.Minimum()([a, b]),
                                   layers.Average()([a, b]), layers.Subtract()([a, b])])
    seq, h, c = layers.LSTM(H, return_sequences=True, return_state=True)(merged)
    both = layers.Bidirectional(layers.LSTM(3, return_state=True))(seq)
    out = layers.Dense(2, name="out")(layers.Concatenate()([both[0], h, c, *both[1:]]))
    model = _randomize(Model([tokens, features], [out, seq]))
    # Each sample padded on the same side in both inputs, so that the merged masks (their OR)
    # are padded too; the LSTMs before the merges see different masks.
    other = np.array([[1, 1, 1, 1, 0, 0],
                      [0, 0, 0, 1, 1, 1],
                      [0, 0, 0, 0, 0, 0],
                      [0, 0, 0, 0, 0, 0],
                      [0, 0, 0, 0, 1, 1],
                      [1, 1, 1, 1, 1, 1]], bool)
    feeds = [[_tokens(ma, k), _features(mb, k)] for k, (ma, mb) in enumerate(
        [(MASK, other), (other, MASK), (MASK, MASK), (MASK[:2, :1], MASK[2:4, :1])])]
    _assert_functional_matches(model, tmp_path, feeds)


def test_functional_mask_with_an_unmasked_input(tmp_path):
    """Merges of a masked and an unmasked input: Multiply and Maximum use the one mask, Add's
    output has none, Concatenate's counts the unmasked input as all True."""
    tokens = layers.Input((None,), dtype="int64", name="tokens")
    features = layers.Input((None, D), name="features")
    a = layers.LSTM(H, return_sequences=True)(layers.Embedding(V, D, mask_zero=True)(tokens))
    b = layers.Dense(H)(features)
    merged = layers.Concatenate()([layers.Multiply()([a, b]), layers.Maximum()([b, a]),
                                   layers.Minimum()([a, b])])
    out1 = layers.LSTM(3)(merged)
    out2 = layers.LSTM(3, return_sequences=True)(layers.Add()([a, b]))
    model = _randomize(Model([tokens, features], [out1, out2]))
    rng = np.random.default_rng(3)
    feeds = [[_tokens(m, k), rng.normal(size=m.shape + (D,)).astype(np.float32)]
             for k, m in enumerate([MASK, MASK[:2, :1]])]
    _assert_functional_matches(model, tmp_path, feeds)


# ---------------------------------------------------------------------------------------------
# initial_state: the encoder-decoder pattern

def test_seq2seq_example_models(tmp_path):
    """The seq2seq example's training model (the decoder LSTM starts from the masked
    encoder's states) and its inference encoder and decoder."""
    from pylstm.examples.seq2seq import build_models

    training, encoder, decoder = build_models(embedding_dim=D, units=H, seed=0)
    _randomize(training)
    typed = [_tokens(MASK, 0), _tokens(MASK[:2, :1], 1)]
    so_far = [_tokens(MASK[::-1], 2), _tokens(np.ones((2, 3), bool), 3)]
    _assert_functional_matches(training, tmp_path / "training",
                               [[t, s] for t, s in zip(typed, so_far)])
    _assert_functional_matches(encoder, tmp_path / "encoder", [[t] for t in typed])
    rng = np.random.default_rng(4)
    feeds = [[s] + list(rng.normal(size=(2, len(s), H)).astype(np.float32)) for s in so_far]
    proto = _assert_functional_matches(decoder, tmp_path / "decoder", feeds)
    (node,) = [n for n in proto.graph.node if n.op_type == "LSTM"]
    assert node.input[5] and node.input[6]  # initial_h, initial_c


@pytest.mark.parametrize("go_backwards", [False, True])
def test_initial_state_runs_unmasked_and_passes_the_mask_on(tmp_path, go_backwards):
    """Keras 3: a layer given `initial_state` runs unmasked; its sequence output carries the
    input's mask to the next LSTM."""
    tokens = layers.Input((None,), dtype="int64", name="tokens")
    h = layers.Input((H,), name="h")
    c = layers.Input((H,), name="c")
    embedded = layers.Embedding(V, D, mask_zero=True)(tokens)
    seq = layers.LSTM(H, return_sequences=True, go_backwards=go_backwards)(
        embedded, initial_state=[h, c])
    both = layers.Bidirectional(layers.LSTM(H, return_sequences=True), merge_mode="sum")(
        seq, initial_state=[h, c, c, h])
    out = layers.LSTM(3)(layers.Add()([seq, both]))
    model = _randomize(Model([tokens, h, c], [out, both]))
    rng = np.random.default_rng(5)
    feeds = [[_tokens(m, k)] + list(rng.normal(size=(2, len(m), H)).astype(np.float32))
             for k, m in enumerate([MASK, MASK[:2, :1]])]
    _assert_functional_matches(model, tmp_path, feeds)


# ---------------------------------------------------------------------------------------------
# stateful: the state as graph inputs and outputs

def _run_chunks(model, session, chunks):
    """Feeds each chunk to pylstm's stateful model and to ONNX Runtime with the state
    outputs fed back (zeros first), comparing every output."""
    names = [i.name for i in session.get_inputs()]
    out_names = [o.name for o in session.get_outputs()]
    states = {n: np.zeros((chunks[0].shape[0], i.shape[-1]), np.float32)
              for n, i in zip(names[1:], session.get_inputs()[1:])}
    for chunk in chunks:
        expected = model.predict(chunk, batch_size=chunk.shape[0], verbose=0)
        got = dict(zip(out_names, session.run(None, {names[0]: chunk, **states})))
        np.testing.assert_allclose(got[out_names[0]], expected, rtol=TOL, atol=TOL)
        states = {n: got[f"{n}_out"] for n in states}
    return names, out_names


def test_stateful_chunks(tmp_path):
    B = 3
    model = _randomize(Sequential([
        layers.Input((None, D), batch_size=B),
        layers.LSTM(H, return_sequences=True, stateful=True, name="first"),
        layers.Bidirectional(layers.LSTM(3, return_sequences=True, stateful=True,
                                         name="both")),
        layers.LSTM(4, stateful=True, go_backwards=True, name="last"),
        layers.Dense(2)]))
    _, session = _session(model, tmp_path)
    rng = np.random.default_rng(6)
    chunks = [rng.normal(size=(B, T, D)).astype(np.float32) for T in (4, 1, 6)]
    names, out_names = _run_chunks(model, session, chunks)
    lstms = ["first", "forward_both", "backward_both", "last"]
    assert names == ["input"] + [f"{n}_{w}" for n in lstms for w in "hc"]
    assert out_names == ["output"] + [f"{n}_{w}_out" for n in lstms for w in "hc"]


@pytest.mark.parametrize("return_sequences", [False, True])
def test_stateful_masked_chunks(tmp_path, return_sequences):
    """A masked stateful LSTM carries the state of each sample's last real step; an
    all-masked sample carries its state through the chunk."""
    model = _randomize(Sequential([
        layers.Input((None,), dtype="int64", batch_size=len(MASK)),
        layers.Embedding(V, D, mask_zero=True),
        layers.LSTM(H, return_sequences=return_sequences, stateful=True, name="lstm")]))
    _, session = _session(model, tmp_path)
    chunks = [_tokens(MASK, 0), _tokens(MASK[::-1], 1), _tokens(np.ones_like(MASK), 2)]
    _run_chunks(model, session, chunks)


def test_stateful_functional_chunks(tmp_path):
    B = 2
    x = layers.Input((None, D), batch_size=B, name="x")
    seq = layers.LSTM(H, return_sequences=True, stateful=True, name="enc")(x)
    out = layers.Dense(3, name="y")(layers.LSTM(H, stateful=True, name="dec")(seq))
    model = _randomize(Model(x, out))
    _, session = _session(model, tmp_path)
    rng = np.random.default_rng(7)
    names, out_names = _run_chunks(model, session, [rng.normal(size=(B, T, D)).astype(
        np.float32) for T in (3, 5)])
    assert names == ["x", "enc_h", "enc_c", "dec_h", "dec_c"]
    assert out_names == ["y", "enc_h_out", "enc_c_out", "dec_h_out", "dec_c_out"]


def test_refused_stateful_layer_called_twice(tmp_path):
    x = layers.Input((None, D), batch_size=2)
    shared = layers.LSTM(H, return_sequences=True, stateful=True, name="shared")
    model = Model(x, shared(shared(layers.Dense(H)(x))))
    with pytest.raises(ValueError, match="'shared' is stateful and called more than once"):
        pylstm.onnx.export(model, tmp_path / "refused.onnx")


def test_refused_names_of_the_state(tmp_path):
    model = Sequential([layers.Input((None, D), batch_size=2),
                        layers.LSTM(H, stateful=True, name="lstm")])
    with pytest.raises(ValueError, match=r"state names \['lstm_h_out'\]"):
        pylstm.onnx.export(model, tmp_path / "refused.onnx", output_names=["lstm_h_out"])


def test_masking_value(tmp_path):
    model = _randomize(Sequential([layers.Input((None, D)), layers.Masking(mask_value=2.5),
                                   layers.LSTM(H, return_sequences=True)]))
    _, session = _session(model, tmp_path)
    x = np.where(MASK[..., None], _features(MASK), np.float32(2.5))
    x[0, 0, 0] = 2.5  # one feature equal to the value does not mask the step
    (got,) = session.run(None, {"input": x})
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=TOL, atol=TOL)


def test_concatenate_in_time_concatenates_the_masks(tmp_path):
    """Left-padded steps then unpadded ones, or unpadded then right-padded: the joined mask
    is padded on the same side."""
    first = layers.Input((None,), dtype="int64", name="first")
    second = layers.Input((None,), dtype="int64", name="second")
    embedding = layers.Embedding(V, D, mask_zero=True)
    joined = layers.Concatenate(axis=1)([embedding(first), embedding(second)])
    model = _randomize(Model([first, second], layers.LSTM(H, return_sequences=True)(joined)))
    padded = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1]], bool)
    full = np.ones((4, 2), bool)
    feeds = [[_tokens(full, 0), _tokens(padded, 1)],
             [_tokens(padded[:, ::-1], 2), _tokens(full, 3)]]
    _assert_functional_matches(model, tmp_path, feeds)
