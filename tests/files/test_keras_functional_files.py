"""Keras functional model files without Keras: Keras 2 files (fixtures with Keras 3's outputs
recorded beside them, and chars2vec's real Keras 2.2 weights: tests/data/README.md), pylstm's own
functional `.keras` files read back, the weight groups Keras expects, and the graph reader of
`pylstm.models._keras_graph`. Against Keras 3 itself: parity/keras/test_functional_files.py;
hostile graphs: test_keras_hostile.py."""

import gzip
import io
import json
import pathlib
import zipfile

import numpy as np
import pytest
from pylstm_tests import require

from pylstm.layers import LSTM, Concatenate, Dense, Embedding, Input, InputLayer
from pylstm.models import (Model, Sequential, _keras_graph, load_keras, load_keras_weights,
                           save_keras_weights)

h5py = require("h5py")
require("pyfive")

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"


def _fixture(tmp_path, name):
    """Unzips tests/data/NAME.gz into tmp_path and returns its path."""
    path = tmp_path / name
    path.write_bytes(gzip.decompress((DATA / f"{name}.gz").read_bytes()))
    return path


# Keras 2 files ------------------------------------------------------------------------------


def test_keras2_seq2seq(tmp_path):
    """Keras 2.1's encoder-decoder: the decoder's call takes the encoder's states as extra
    inputs, which become its `initial_state`; "hard_sigmoid" is Keras 2's."""
    expected = np.load(DATA / "keras2_seq2seq_expected.npz")
    model = load_keras(_fixture(tmp_path, "keras2_seq2seq.h5"))
    assert isinstance(model, Model)
    assert [layer.name for layer in model.layers] == [
        "input_1", "input_2", "lstm_1", "lstm_2", "dense_1"]
    assert model.get_layer("lstm_2").recurrent_activation == "legacy_hard_sigmoid"
    decoder_call = model.get_config()["layers"][3]["inbound_nodes"][0]
    assert [t["config"]["keras_history"] for t in decoder_call["kwargs"]["initial_state"]] == [
        ["lstm_1", 0, 1], ["lstm_1", 0, 2]]
    y = model.predict([expected["x0"], expected["x1"]])
    np.testing.assert_allclose(y, expected["y0"], rtol=1e-5, atol=1e-6)


def test_keras2_nested_models_and_shared_layer(tmp_path):
    """tf_keras 2.x: a shared LSTM on two inputs, a nested Sequential and a nested Functional
    (whose calls Keras 2 numbers from 1), two outputs."""
    expected = np.load(DATA / "keras2_functional_expected.npz")
    model = load_keras(_fixture(tmp_path, "keras2_functional.h5"))
    assert [layer.name for layer in model.layers] == [
        "a", "b", "lstm", "concatenate", "head", "proj"]
    assert isinstance(model.get_layer("head"), Sequential)
    assert isinstance(model.get_layer("proj"), Model)
    assert len(model.get_config()["layers"][2]["inbound_nodes"]) == 2
    ys = model.predict([expected["x0"], expected["x1"]])
    assert len(ys) == 2
    for y, name in zip(ys, ("y0", "y1")):
        np.testing.assert_allclose(y, expected[name], rtol=1e-5, atol=1e-6)


def test_keras2_legacy_weights_into_functional_model(tmp_path):
    """A legacy file's weights go by layer name into a functional model that has the file's
    layers, whatever their order, and by order otherwise (as Keras)."""
    expected = np.load(DATA / "keras2_seq2seq_expected.npz")
    path = _fixture(tmp_path, "keras2_seq2seq.h5")
    model = load_keras(path)
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    load_keras_weights(model, path)
    np.testing.assert_allclose(model.predict([expected["x0"], expected["x1"]]), expected["y0"],
                               rtol=1e-5, atol=1e-6)


# chars2vec: a real Keras 2.2 file -----------------------------------------------------------

# chars2vec's 59 characters, in the order of its example_training.py (tests/data/README.md).
CHARS = "!\"#$%&'()*+,-./0123456789:;<=>?@_abcdefghijklmnopqrstuvwxyz"


def _one_hot(words):
    """Words as chars2vec feeds them: lowercase one-hot characters, padded at the front."""
    steps = max(map(len, words))
    x = np.zeros((len(words), steps, len(CHARS)), "float32")
    for n, word in enumerate(words):
        for t, char in enumerate(word.lower()):
            x[n, steps - len(word) + t, CHARS.index(char)] = 1
    return x


def _reference_lstm(x, kernel, recurrent_kernel, bias, return_sequences):
    """Keras 2.2's LSTM in NumPy (gates i, f, c, o; Keras 2's hard_sigmoid)."""
    def hard_sigmoid(z):
        return np.clip(0.2 * z + 0.5, 0.0, 1.0)

    units = recurrent_kernel.shape[0]
    h = c = np.zeros((x.shape[0], units))
    outputs = []
    for t in range(x.shape[1]):
        z = x[:, t] @ kernel + h @ recurrent_kernel + bias
        i, f, g, o = np.split(z, 4, axis=1)
        c = hard_sigmoid(f) * c + hard_sigmoid(i) * np.tanh(g)
        h = hard_sigmoid(o) * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1) if return_sequences else h


def _chars2vec(names=(None, None)):
    """chars2vec's embedding model in pylstm."""
    x = Input((None, len(CHARS)))
    y = LSTM(50, return_sequences=True, recurrent_activation="legacy_hard_sigmoid",
             name=names[0])(x)
    return Model(x, LSTM(50, recurrent_activation="legacy_hard_sigmoid", name=names[1])(y))


WORDS = ["Natural", "Naturael", "Motural", "Language", "Longuge", "Lamnguoge",
         "Understanding", "Updderctundjing", "Unddertandink"]


@pytest.mark.parametrize("names", [(None, None), ("lstm_1", "lstm_2")],
                         ids=["by_order", "by_name"])
def test_chars2vec_weights(tmp_path, names):
    """chars2vec's published eng_50 model (Keras 2.2's `save_weights`) loads into the same
    architecture (layer by layer in order, or by the file's layer names) and computes what its
    LSTMs compute in NumPy; its misspellings land nearer their word than other words do."""
    path = _fixture(tmp_path, "chars2vec_eng_50.weights.h5")
    model = _chars2vec(names)
    load_keras_weights(model, path)
    with h5py.File(path, "r") as f:
        weights = [[f[f"{layer}/{layer}/{w}:0"][()] for w in ("kernel", "recurrent_kernel",
                                                              "bias")]
                   for layer in ("lstm_1", "lstm_2")]
    x = _one_hot(WORDS)
    expected = _reference_lstm(_reference_lstm(x.astype("float64"), *weights[0], True),
                               *weights[1], False)
    embeddings = model.predict(x)
    np.testing.assert_allclose(embeddings, expected, rtol=1e-4, atol=1e-5)
    distance = {(a, b): np.linalg.norm(embeddings[WORDS.index(a)] - embeddings[WORDS.index(b)])
                for a in WORDS for b in WORDS}
    for word, misspelt in [("Natural", "Naturael"), ("Language", "Longuge"),
                           ("Understanding", "Unddertandink")]:
        others = [w for w in ("Natural", "Language", "Understanding") if w != word]
        assert all(distance[word, misspelt] < distance[word, other] for other in others)


def test_legacy_weights_go_by_name(tmp_path):
    """With the file's layer names on the other layers, the weights go by name (and do not
    fit), where by order they would load."""
    path = _fixture(tmp_path, "chars2vec_eng_50.weights.h5")
    with pytest.raises(ValueError, match=r"do not fit layer 'lstm_1': 'lstm_1/lstm_1/kernel:0' "
                                         r"expects shape \(50, 200\), received shape \(59, 200\)"):
        load_keras_weights(_chars2vec(("lstm_2", "lstm_1")), path)


def test_chars2vec_weights_into_sequential(tmp_path):
    model = Sequential([Input((None, len(CHARS))),
                        LSTM(50, return_sequences=True, recurrent_activation="legacy_hard_sigmoid"),
                        LSTM(50, recurrent_activation="legacy_hard_sigmoid")])
    load_keras_weights(model, _fixture(tmp_path, "chars2vec_eng_50.weights.h5"))
    functional = _chars2vec()
    load_keras_weights(functional, tmp_path / "chars2vec_eng_50.weights.h5")
    x = _one_hot(WORDS)
    np.testing.assert_array_equal(model.predict(x), functional.predict(x))


# pylstm's functional files ------------------------------------------------------------------


def _encoder_decoder():
    encoder_in, decoder_in = Input((5, 3), name="enc"), Input((4, 2), name="dec")
    _, h, c = LSTM(4, return_state=True)(encoder_in)
    decoded = LSTM(4, return_sequences=True)(decoder_in, initial_state=[h, c])
    return Model([encoder_in, decoder_in], Dense(3, activation="softmax")(decoded))


def _nested():
    """Token ids through an Embedding, a nested Sequential and a nested Functional, a shared
    Dense."""
    ids = Input((6,), dtype="int32", name="ids")
    inner_in = Input((6, 4))
    inner = Model(inner_in, LSTM(3)(inner_in), name="inner")
    head = Sequential([Input((3,)), Dense(3, activation="tanh")], name="head")
    shared = Dense(3, name="shared")
    encoded = inner(Embedding(9, 4, mask_zero=True)(ids))
    return Model(ids, Concatenate()([shared(encoded), shared(head(encoded))]))


def _inputs(model, rng):
    xs = [rng.integers(0, 9, size=(3,) + t.shape[1:]).astype(t.dtype) if t.dtype == "int32"
          else rng.normal(size=(3,) + t.shape[1:]).astype(t.dtype) for t in model.inputs]
    return xs[0] if len(xs) == 1 else xs


@pytest.mark.parametrize("make", [_encoder_decoder, _nested], ids=["encoder_decoder", "nested"])
def test_functional_keras_round_trip(tmp_path, make):
    model = make()
    model.compile(optimizer="adam", loss="mse")
    x = _inputs(model, np.random.default_rng(0))
    model.save(tmp_path / "m.keras")
    back = load_keras(tmp_path / "m.keras")
    assert back.get_config() == model.get_config()
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
    assert type(back.optimizer).__name__ == "Adam"
    back.set_weights([np.zeros_like(w) for w in back.get_weights()])
    save_keras_weights(model, tmp_path / "m.weights.h5")
    load_keras_weights(back, tmp_path / "m.weights.h5")
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


def test_functional_weight_groups(tmp_path):
    """Keras's groups: the layers of the graph in Keras's order, InputLayers included, named by
    class and numbered; a nested model's layers under its own group; a shared layer once."""
    _nested().save(tmp_path / "nested.keras")
    with zipfile.ZipFile(tmp_path / "nested.keras") as archive:
        config = json.loads(archive.read("config.json"))
        weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
    groups = []
    weights.visititems(lambda name, obj: groups.append(name) if name.endswith("vars") else None)
    weights.close()
    assert config["class_name"] == "Functional"
    layers = [entry for entry in config["config"]["layers"]
              if not entry["module"].startswith("keras.src.ops")]
    assert [entry["class_name"] for entry in layers] == [
        "InputLayer", "Embedding", "Functional", "Sequential", "Dense", "Concatenate"]
    # The Embedding's mask, as Keras writes it: an operation, given to the call that takes it.
    mask = next(entry for entry in config["config"]["layers"] if entry["name"] == "not_equal")
    assert mask["class_name"] == "NotEqual" and mask["inbound_nodes"][0]["args"][1] == 0
    inner_call = next(entry for entry in layers if entry["name"] == "inner")["inbound_nodes"][0]
    assert inner_call["kwargs"]["mask"]["config"]["keras_history"] == ["not_equal", 0, 0]
    assert sorted(groups) == sorted([
        "layers/input_layer/vars", "layers/embedding/vars", "layers/functional/vars",
        "layers/functional/layers/input_layer/vars", "layers/functional/layers/lstm/vars",
        "layers/functional/layers/lstm/cell/vars", "layers/sequential/vars",
        "layers/sequential/layers/dense/vars", "layers/dense/vars", "layers/concatenate/vars",
        "vars"])


def test_keras2_lambda_is_refused(tmp_path):
    """A Keras 2 Lambda layer (its function as marshalled bytecode) is refused before anything
    is built; so is one in a Sequential."""
    path = _fixture(tmp_path, "keras2_seq2seq.h5")
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        config["config"]["layers"][4].update(class_name="Lambda", config={
            "name": "dense_1", "function": ["4wEAAAAAAAAAAQAAAAIAAABDAAAA", None, None],
            "function_type": "lambda", "output_shape": None, "arguments": {}})
        f.attrs["model_config"] = json.dumps(config)
    with pytest.raises(ValueError, match=r"layer 'dense_1' \(Lambda\): a Lambda layer holds "
                                         r"Python code .* loading a file never runs code"):
        load_keras(path)


# The graph reader ---------------------------------------------------------------------------


def _keras2_ref(name, node=0, tensor=0):
    return [name, node, tensor, {}]


def _keras2_entry(class_name, name, *nodes):
    return {"class_name": class_name, "name": name, "config": {"name": name},
            "inbound_nodes": [list(node) for node in nodes]}


def test_keras2_nodes_become_calls():
    """An RNN layer's extra inputs are its initial states; another layer called on several
    tensors takes them as a list; one-item input and output lists are one tensor; a nested
    model's calls count from 0."""
    graph = _keras_graph.parse({
        "layers": [
            _keras2_entry("InputLayer", "x"), _keras2_entry("InputLayer", "s"),
            _keras2_entry("LSTM", "lstm", [_keras2_ref("x"), _keras2_ref("s"), _keras2_ref("s")]),
            _keras2_entry("Add", "add", [_keras2_ref("lstm"), _keras2_ref("s")]),
            {"class_name": "Functional", "name": "inner", "config": {},
             "inbound_nodes": [[_keras2_ref("add")], [_keras2_ref("s")]]},
        ],
        "input_layers": [["x", 0, 0], ["s", 0, 0]], "output_layers": [["inner", 1, 0]]},
        legacy=True)
    Ref = _keras_graph.Ref
    assert graph.nodes["lstm"] == [_keras_graph.Node(
        [Ref("x", 0, 0)], {"initial_state": [Ref("s", 0, 0), Ref("s", 0, 0)]})]
    assert graph.nodes["add"][0].args == [[Ref("lstm", 0, 0), Ref("s", 0, 0)]]
    assert graph.outputs == Ref("inner", 0, 0)
    assert graph.inputs == [Ref("x", 0, 0), Ref("s", 0, 0)]
    assert graph.layer_order() == ["x", "s", "lstm", "add", "inner"]
    assert graph.call_order.index(("inner", 0)) < graph.call_order.index(("inner", 1))


def test_layer_order_is_keras_map_graph():
    """Layers by decreasing depth from the outputs, ties in first-visit order; a shared layer
    at its greatest depth; an input no output uses first."""
    def call(*refs):
        return {"args": [[_tensor(r) for r in refs] if len(refs) > 1 else _tensor(refs[0])],
                "kwargs": {}}

    def _tensor(ref):
        return {"class_name": "__keras_tensor__", "config": {"keras_history": list(ref)}}

    def entry(class_name, name, *calls):
        return {"class_name": class_name, "name": name, "config": {}, "inbound_nodes":
                list(calls)}

    graph = _keras_graph.parse({
        "layers": [
            entry("InputLayer", "x"), entry("InputLayer", "unused"),
            entry("Dense", "d1", call(("x", 0, 0)), call(("d2", 0, 0))),
            entry("Dense", "d2", call(("d1", 0, 0))),
            entry("Add", "add", call(("d1", 1, 0), ("d1", 0, 0))),
            entry("Concatenate", "cat", call(("add", 0, 0), ("x", 0, 0))),
        ],
        "input_layers": [["unused", 0, 0], ["x", 0, 0]],
        "output_layers": [["cat", 0, 0], ["d2", 0, 0]]}, legacy=False)
    assert graph.layer_order() == ["x", "d1", "d2", "add", "unused", "cat"]


def test_input_layers_as_loaded():
    """Each InputLayer of a loaded functional model keeps its dtype (token ids stay int32)."""
    model = _nested()
    config = model.get_config()
    assert isinstance(model.layers[0], InputLayer) and model.layers[0].dtype == "int32"
    assert config["input_layers"] == [["ids", 0, 0]] or config["input_layers"] == ["ids", 0, 0]


def test_unused_keras2_input_is_kept(tmp_path):
    """An input no output uses stays an input (Keras 2's InputLayer config has no
    `trainable`, like the operations Keras 3's legacy files hold)."""
    path = _fixture(tmp_path, "keras2_seq2seq.h5")
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        layers = config["config"]["layers"]
        layers.insert(2, {"class_name": "InputLayer", "name": "spare", "inbound_nodes": [],
                          "config": {"batch_input_shape": [None, 2], "dtype": "float32",
                                     "sparse": False, "name": "spare"}})
        config["config"]["input_layers"].append(["spare", 0, 0])
        f.attrs["model_config"] = json.dumps(config)
    model = load_keras(path)
    expected = np.load(DATA / "keras2_seq2seq_expected.npz")
    assert [t.name for t in model.inputs] == ["input_1", "input_2", "spare"]
    y = model.predict([expected["x0"], expected["x1"], np.zeros((4, 2), "float32")])
    np.testing.assert_allclose(y, expected["y0"], rtol=1e-5, atol=1e-6)
