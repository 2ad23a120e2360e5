"""Keras functional model files, both ways: Keras 3 writes `.keras`, `.weights.h5` and legacy
`.h5` files of functional models, pylstm reads them with the same numbers; pylstm writes
`.keras` and `.weights.h5` files that Keras 3 loads and that predict the same. Also: the order
of a functional model's layers (by which Keras addresses its weights) is Keras's, Keras-made
Lambda files are refused, and chars2vec's real Keras 2 weights give Keras 3's numbers.
Without Keras: files/test_keras_functional_files.py."""

import gzip
import io
import json
import os
import pathlib
import warnings
import zipfile
import zlib

import numpy as np
import pytest
from pylstm_tests import require

from pylstm.models import (_keras_graph, keras_io, load_keras, load_keras_weights,
                           save_keras_weights)

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
h5py = require("h5py")
keras = require("keras")

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Layer 'inner' .* does not support masking:UserWarning")]

DATA = pathlib.Path(__file__).resolve().parents[2] / "data"
L = keras.layers
B = 3


def _encoder_decoder():
    """The Keras tutorial's encoder-decoder: the encoder's states start the decoder."""
    encoder_in = keras.Input((5, 3), name="encoder_in")
    decoder_in = keras.Input((4, 2), name="decoder_in")
    _, h, c = L.LSTM(4, return_state=True)(encoder_in)
    decoded = L.LSTM(4, return_sequences=True)(decoder_in, initial_state=[h, c])
    return keras.Model([encoder_in, decoder_in], L.Dense(3, activation="softmax")(decoded))


def _two_inputs():
    """Two inputs, each through its LSTM, merged by a Concatenate; two outputs."""
    a, b = keras.Input((5, 3), name="a"), keras.Input((6, 2), name="b")
    merged = L.Concatenate()([L.LSTM(4)(a), L.LSTM(3, go_backwards=True)(b)])
    return keras.Model([a, b], [L.Dense(1)(merged), L.Dense(2, activation="tanh")(merged)])


def _shared_lstm():
    """One LSTM applied to two inputs (its weights shared), a shared Dense at two depths."""
    a, b = keras.Input((5, 3), name="left"), keras.Input((5, 3), name="right")
    lstm, dense = L.LSTM(4, return_sequences=True), L.Dense(4, activation="tanh")
    left, right = dense(lstm(a)), lstm(b)
    return keras.Model([a, b], L.GlobalAveragePooling1D()(L.Add()([dense(left), right])))


def _nested_sequential():
    """A Sequential (LSTM, Dense) called inside a functional model, on token ids."""
    ids = keras.Input((6,), dtype="int32")
    inner = keras.Sequential([L.LSTM(4, return_sequences=True), L.Dense(3)], name="inner")
    encoded = inner(L.Embedding(9, 3, mask_zero=True)(ids))
    return keras.Model(ids, L.LSTM(2)(encoded))


def _nested_functional():
    """A functional model called twice inside another (shared), and as an output."""
    inner_in = keras.Input((5, 3))
    inner = keras.Model(inner_in, L.LSTM(3)(inner_in), name="encoder")
    a, b = keras.Input((5, 3)), keras.Input((5, 3))
    return keras.Model([a, b], [L.Subtract()([inner(a), inner(b)]), inner(a)])


def _masked():
    """Masks that Keras computes with operations in the graph (a Masking layer's, merged by a
    Concatenate), which pylstm propagates itself."""
    x = keras.Input((6, 3))
    masked = L.Masking(0.0)(x)
    a = L.LSTM(3, return_sequences=True)(masked)
    b = L.Bidirectional(L.LSTM(2, return_sequences=True))(masked)
    return keras.Model(x, L.LSTM(2)(L.Concatenate()([a, b])))


def _masked_merges():
    """Two Dense layers of one shape, one behind a Masking layer, merged by a Concatenate
    (Keras's mask operations make the second deeper in its order of the layers, which names
    their weight groups), then attention over a masked Embedding's sequence."""
    x = keras.Input((6, 3))
    left, right = L.Dense(3)(x), L.Dense(3)(L.Masking(0.0)(x))
    merged = L.LSTM(4, return_sequences=True)(L.Concatenate()([left, right]))
    ids = keras.Input((6,), dtype="int32")
    embedded = L.Embedding(9, 4, mask_zero=True)(ids)
    attended = L.Attention()([merged, embedded])
    pooled = L.GlobalAveragePooling1D()(L.Concatenate()([merged, attended]))
    return keras.Model([x, ids], L.Dense(2)(pooled))


SPECS = {"encoder_decoder": _encoder_decoder, "two_inputs": _two_inputs,
         "shared_lstm": _shared_lstm, "nested_sequential": _nested_sequential,
         "nested_functional": _nested_functional, "masked": _masked,
         "masked_merges": _masked_merges}


def _batch(model, rng):
    xs = []
    for tensor in model.inputs:
        shape = (B,) + tuple(tensor.shape[1:])
        if tensor.dtype == "int32":
            x = rng.integers(1, 9, size=shape)
            x[0, 4:] = 0  # padding, masked by the Embedding
            xs.append(x.astype("int32"))
        else:
            x = rng.normal(size=shape).astype("float32")
            x[0, 3:] = 0  # masked steps where a Masking layer looks
            xs.append(x)
    return xs[0] if len(xs) == 1 else xs


def _listed(y):
    return [np.asarray(a) for a in y] if isinstance(y, (list, tuple)) else [np.asarray(y)]


def _assert_close(got, want):
    got, want = _listed(got), _listed(want)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def _keras_load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Keras's "Skipping variable loading"
        # Keras's own note on a nested Sequential, which drops its input's mask
        warnings.filterwarnings("ignore", "Layer 'inner' .* does not support masking")
        return keras.models.load_model(path)


class KerasFiles:
    """A Keras functional model with random weights, saved as `.keras`, `.weights.h5` and
    legacy `.h5`."""

    def __init__(self, name, directory):
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        self.name = name
        self.model = SPECS[name]()
        self.model.set_weights([rng.normal(scale=0.5, size=w.shape).astype(w.dtype)
                                for w in self.model.get_weights()])
        self.x = _batch(self.model, rng)
        self.y = _listed(self.model(self.x, training=False))
        self.path = directory / f"{name}.keras"
        self.weights_path = directory / f"{name}.weights.h5"
        self.legacy_path = directory / f"{name}.h5"
        self.model.save(self.path)
        self.model.save_weights(self.weights_path)
        self.model.save(self.legacy_path)


@pytest.fixture(scope="module", params=list(SPECS))
def files(request, tmp_path_factory):
    return KerasFiles(request.param, tmp_path_factory.mktemp(request.param))


# Keras -> pylstm ----------------------------------------------------------------------------


def test_keras_file_predicts_as_keras(files):
    model = load_keras(files.path)
    assert sorted((type(layer).__name__, layer.name) for layer in model.layers) == sorted(
        (type(layer).__name__, layer.name) for layer in files.model.layers)
    _assert_close(model.predict(files.x), files.y)


def test_legacy_h5_written_by_keras3(files):
    _assert_close(load_keras(files.legacy_path).predict(files.x), files.y)


def test_weights_file_into_loaded_model(files):
    model = load_keras(files.path)
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    load_keras_weights(model, files.weights_path)
    _assert_close(model.predict(files.x), files.y)


def test_layer_order_is_keras(files):
    """The order Keras gives the layers of the graph, which addresses their weights: from
    Keras's config (its mask operations included), and from the pylstm model alone (its masks
    computed as Keras computes them)."""
    config = json.loads(json.dumps(files.model.get_config()))
    graph = _keras_graph.parse(config, legacy=False, drop_mask_operations=False)
    keras_order = [layer.name for layer in files.model.layers]
    assert [name for name in graph.layer_order()
            if not _keras_graph.is_operation(graph.entries[name])] == keras_order
    model = load_keras(files.path)
    assert [layer.name for layer in keras_io._keras_layers(model)] == keras_order


# pylstm -> Keras ----------------------------------------------------------------------------


def test_pylstm_keras_file_loads_in_keras(files, tmp_path):
    model = load_keras(files.path)
    model.save(tmp_path / "resaved.keras")
    reloaded = _keras_load(tmp_path / "resaved.keras")
    assert [layer.name for layer in reloaded.layers] == [
        layer.name for layer in files.model.layers]
    for got, want in zip(reloaded.get_weights(), files.model.get_weights()):
        np.testing.assert_array_equal(got, want)
    _assert_close(reloaded(files.x, training=False), files.y)


def test_pylstm_weights_file_loads_in_keras(files, tmp_path):
    save_keras_weights(load_keras(files.path), tmp_path / "p.weights.h5")
    target = SPECS[files.name]()
    target.load_weights(tmp_path / "p.weights.h5")
    _assert_close(target(files.x, training=False), files.y)


def test_same_weight_arrays_as_keras(files, tmp_path):
    """pylstm writes each array where Keras writes it for the model."""
    load_keras(files.path).save(tmp_path / "p.keras")

    def arrays(path):
        with zipfile.ZipFile(path) as archive:
            f = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
        found = {}
        f.visititems(lambda name, obj: found.update({name: obj[()]})
                     if isinstance(obj, h5py.Dataset) else None)
        f.close()
        return found

    got, want = arrays(tmp_path / "p.keras"), arrays(files.path)
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value)


def test_compiled_functional_model_resumes_in_keras(tmp_path):
    """A compiled encoder-decoder trained in pylstm: Keras loads its optimizer state and
    continues with the same weights."""
    rng = np.random.default_rng(4)
    keras_model = _encoder_decoder()
    keras_model.save(tmp_path / "k.keras")
    model = load_keras(tmp_path / "k.keras")
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = [rng.normal(size=(8, 5, 3)).astype("float32"), rng.normal(size=(8, 4, 2)).astype(
        "float32")]
    y = np.eye(3, dtype="float32")[rng.integers(0, 3, size=(8, 4))]
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    model.save(tmp_path / "p.keras")
    resumed = _keras_load(tmp_path / "p.keras")
    assert int(resumed.optimizer.iterations.numpy()) == model.optimizer.iterations == 4
    _assert_close(resumed(x, training=False), model.predict(x))


# Refused ------------------------------------------------------------------------------------


def test_keras_lambda_file_is_refused(tmp_path):
    x = keras.Input((5, 3))
    y = L.Lambda(lambda t: 2 * t, name="twice")(L.LSTM(2)(x))
    keras.Model(x, y).save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match=r"layer 'twice' \(Lambda\): a Lambda layer holds "
                                         r"Python code"):
        load_keras(tmp_path / "lambda.keras")


def test_unsupported_layer_is_named(tmp_path):
    x = keras.Input((5, 3))
    keras.Model(x, L.GRU(2, name="my_gru")(x)).save(tmp_path / "gru.keras")
    with pytest.raises(ValueError, match=r"layer 'my_gru' \(GRU\): pylstm does not support the "
                                         r"Keras layer class 'GRU'"):
        load_keras(tmp_path / "gru.keras")


# chars2vec: a real Keras 2 file -------------------------------------------------------------


def test_chars2vec_weights_as_keras3_computes(tmp_path):
    """chars2vec's eng_50 weights (Keras 2.2, legacy layout) loaded by Keras 3 and by pylstm
    into the same architecture (Keras 2's hard_sigmoid gates) give the same embeddings."""
    path = tmp_path / "chars2vec.h5"
    path.write_bytes(gzip.decompress((DATA / "chars2vec_eng_50.weights.h5.gz").read_bytes()))

    def keras2_hard_sigmoid(x):
        return keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)

    x_in = keras.Input((None, 59))
    hidden = L.LSTM(50, return_sequences=True, recurrent_activation=keras2_hard_sigmoid)(x_in)
    keras_model = keras.Model(x_in, L.LSTM(50, recurrent_activation=keras2_hard_sigmoid)(hidden))
    keras_model.load_weights(path)

    from pylstm.layers import LSTM, Input
    from pylstm.models import Model

    p_in = Input((None, 59))
    p_hidden = LSTM(50, return_sequences=True, recurrent_activation="legacy_hard_sigmoid")(p_in)
    model = Model(p_in, LSTM(50, recurrent_activation="legacy_hard_sigmoid")(p_hidden))
    load_keras_weights(model, path)
    rng = np.random.default_rng(0)
    x = np.eye(59, dtype="float32")[rng.integers(0, 59, size=(4, 9))]
    x[1, :3] = 0  # chars2vec pads words at the front with zero vectors
    _assert_close(model.predict(x), keras_model(x, training=False))
