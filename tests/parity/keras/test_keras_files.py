"""Keras model files: Keras writes, pylstm reads (and the reverse), with the same numbers.

Oracles: Keras 3 itself (TensorFlow backend) for `.keras`, `.weights.h5` and Keras 3's legacy
`.h5`; for Keras 2 files, fixtures written by tf_keras with its predictions recorded beside
them (tests/data/README.md), since Keras 2 cannot be installed beside Keras 3. The checks that
need no Keras (Keras 2 weights files and wrappers, dispatch, refusals, random bytes):
files/test_keras_files.py.
"""

import gzip
import io
import json
import os
import pathlib
import subprocess
import sys
import warnings
import zipfile
import zlib

import numpy as np
import pytest
from pylstm_tests import require

import pylstm
from pylstm.layers import LSTM, Dense, Dropout, Input
from pylstm.models import Sequential, load_keras, load_keras_weights, save_keras_weights

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
h5py = require("h5py")
keras = require("keras")

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


DATA = pathlib.Path(__file__).resolve().parents[2] / "data"
B, T, D = 5, 6, 3
L = keras.layers


def _lstm_options():
    return [keras.Input((T, D)),
            L.LSTM(4, return_sequences=True, go_backwards=True, dropout=0.2, recurrent_dropout=0.1,
                   unroll=True, kernel_initializer=keras.initializers.GlorotNormal(seed=3),
                   kernel_regularizer=keras.regularizers.L2(0.01),
                   recurrent_constraint=keras.constraints.MaxNorm(2.0)),
            L.LSTM(3, activation="relu", recurrent_activation="hard_sigmoid", use_bias=False,
                   unit_forget_bias=False, return_sequences=True, trainable=False),
            L.Flatten(), L.Dropout(0.3),
            L.Dense(3, activation="tanh", kernel_regularizer=keras.regularizers.L1L2(0.01, 0.02),
                    bias_constraint="non_neg", activity_regularizer=keras.regularizers.L1(0.01)),
            L.Activation("softmax")]


def _activations():
    pairs = [("elu", "softsign"), ("softplus", "hard_sigmoid"), ("selu", "sigmoid"),
             ("swish", "softplus"), ("exponential", "sigmoid"), ("softsign", "linear")]
    return [keras.Input((T, D))] + [
        L.LSTM(3, activation=a, recurrent_activation=r, return_sequences=True) for a, r in pairs
    ] + [L.LSTM(2, activation="linear", recurrent_activation="tanh")]


def _embedding_mask():
    return [keras.Input((T,), dtype="int32"), L.Embedding(9, 4, mask_zero=True),
            L.LSTM(3, return_sequences=True), L.LSTM(3, go_backwards=True), L.Dense(1)]


def _masking():
    return [keras.Input((T, D)), L.Masking(0.0),
            L.LSTM(3, return_sequences=True, zero_output_for_mask=True), L.LSTM(2), L.Dense(2)]


def _bidirectional(merge_mode):
    def layers():
        if merge_mode == "sum":  # masked, through an Embedding
            first = [keras.Input((T,), dtype="int32"), L.Embedding(9, D, mask_zero=True)]
        else:
            first = [keras.Input((T, D))]
        backward = (L.LSTM(3, return_sequences=True, go_backwards=True, activation="relu")
                    if merge_mode == "concat" else None)
        return first + [
            L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode=merge_mode,
                            backward_layer=backward),
            L.Bidirectional(L.LSTM(2), merge_mode=merge_mode), L.Dense(1)]
    return layers


def _time_distributed():
    return [keras.Input((T, D)), L.LSTM(4, return_sequences=True),
            L.TimeDistributed(L.Dense(2, activation="relu")), L.TimeDistributed(L.Dense(1))]


def _rnn_cells():
    return [keras.Input((T, D)),
            L.RNN(L.LSTMCell(3), return_sequences=True, go_backwards=True),
            L.RNN([L.LSTMCell(3), L.LSTMCell(2, use_bias=False)]), L.Dense(1)]


def _float64():
    return [keras.Input((T, D), dtype="float64"), L.LSTM(3, dtype="float64"),
            L.Dense(2, dtype="float64")]


SPECS = {
    "lstm_options": _lstm_options, "activations": _activations,
    "embedding_mask": _embedding_mask, "masking": _masking,
    "bidirectional_concat": _bidirectional("concat"), "bidirectional_sum": _bidirectional("sum"),
    "bidirectional_mul": _bidirectional("mul"), "bidirectional_ave": _bidirectional("ave"),
    "time_distributed": _time_distributed, "rnn_cells": _rnn_cells, "float64": _float64,
}


def _inputs(model, rng):
    """A batch for `model`: padded token ids (every mask pattern) or real sequences with
    all-zero (masked) steps."""
    if model.inputs[0].dtype == "int32":
        x = rng.integers(1, 9, size=(B, T))
        x[0, 4:] = 0      # right padding
        x[1, :2] = 0      # left padding
        x[2, [1, 3]] = 0  # holes
        x[3, :] = 0       # nothing real
        return x.astype("int32")
    x = rng.normal(size=(B, T, D)).astype(model.inputs[0].dtype)
    x[0, 4:] = 0
    x[2, [1, 3]] = 0
    return x


def _predict(keras_model, x):
    return np.asarray(keras_model(x, training=False))


class KerasFile:
    """A Keras model with random weights, saved as `.keras`, `.weights.h5` and legacy `.h5`."""

    def __init__(self, name, directory):
        self.name = name
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        self.model = keras.Sequential(SPECS[name]())
        scale = 0.2 if name == "activations" else 0.4  # keeps exponential and linear tame
        self.model.set_weights([rng.normal(scale=scale, size=w.shape).astype(w.dtype)
                                for w in self.model.get_weights()])
        self.x = _inputs(self.model, rng)
        self.y = _predict(self.model, self.x)
        assert np.isfinite(self.y).all()
        self.path = directory / f"{name}.keras"
        self.weights_path = directory / f"{name}.weights.h5"
        self.legacy_path = directory / f"{name}.h5"
        self.model.save(self.path)
        self.model.save_weights(self.weights_path)
        self.model.save(self.legacy_path)


@pytest.fixture(scope="module", params=list(SPECS))
def keras_file(request, tmp_path_factory):
    return KerasFile(request.param, tmp_path_factory.mktemp(request.param))


def _tolerance(y):
    return {"rtol": 1e-10, "atol": 1e-12} if y.dtype == np.float64 else {"rtol": 1e-5,
                                                                           "atol": 1e-6}


def _keras_load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Keras's "Skipping variable loading"
        return keras.models.load_model(path)


# Keras -> pylstm ----------------------------------------------------------------------------


def test_load_keras_predicts_as_keras(keras_file):
    model = load_keras(keras_file.path)
    assert [type(layer).__name__ for layer in model.layers] == [
        type(layer).__name__ for layer in keras_file.model.layers]
    assert [(layer.name, layer.trainable) for layer in model.layers] == [
        (layer.name, layer.trainable) for layer in keras_file.model.layers]
    y = model.predict(keras_file.x)
    assert y.dtype == keras_file.y.dtype
    np.testing.assert_allclose(y, keras_file.y, **_tolerance(keras_file.y))


def test_load_legacy_h5_written_by_keras3(keras_file):
    model = load_keras(keras_file.legacy_path)
    np.testing.assert_allclose(model.predict(keras_file.x), keras_file.y,
                               **_tolerance(keras_file.y))


def test_load_keras_weights_h5(keras_file):
    model = load_keras(keras_file.path)
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    load_keras_weights(model, keras_file.weights_path)
    np.testing.assert_allclose(model.predict(keras_file.x), keras_file.y,
                               **_tolerance(keras_file.y))


# pylstm -> Keras ----------------------------------------------------------------------------


def test_save_keras_loads_in_keras(keras_file, tmp_path):
    model = load_keras(keras_file.path)
    model.save(tmp_path / "resaved.keras")
    reloaded = _keras_load(tmp_path / "resaved.keras")
    assert [type(layer).__name__ for layer in reloaded.layers] == [
        type(layer).__name__ for layer in keras_file.model.layers]
    for got, want in zip(reloaded.get_weights(), keras_file.model.get_weights()):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(_predict(reloaded, keras_file.x), keras_file.y,
                               **_tolerance(keras_file.y))


def test_save_keras_weights_loads_in_keras(keras_file, tmp_path):
    model = load_keras(keras_file.path)
    save_keras_weights(model, tmp_path / "p.weights.h5")
    target = keras.Sequential(SPECS[keras_file.name]())
    target.load_weights(tmp_path / "p.weights.h5")
    np.testing.assert_allclose(_predict(target, keras_file.x), keras_file.y,
                               **_tolerance(keras_file.y))


def _pylstm_model():
    pylstm.utils.set_random_seed(3)
    model = Sequential([Input((T, D)), LSTM(4, return_sequences=True, go_backwards=True),
                        Dropout(0.2), LSTM(3, use_bias=False), Dense(2, activation="tanh")])
    model.compile(optimizer=pylstm.optimizers.Adam(0.02), loss="mse", metrics=["mae"])
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, T, D)), rng.normal(size=(8, 2))
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    return model, x.astype("float32")


def test_round_trip_pylstm_keras_pylstm(tmp_path):
    model, x = _pylstm_model()
    model.save(tmp_path / "p.keras")
    keras_model = _keras_load(tmp_path / "p.keras")
    assert keras_model.optimizer.iterations.numpy() == model.optimizer.iterations == 4
    assert keras_model.loss == "mean_squared_error" or isinstance(
        keras_model.loss, keras.losses.MeanSquaredError)
    np.testing.assert_allclose(_predict(keras_model, x), model.predict(x), rtol=1e-5, atol=1e-6)
    keras_model.save(tmp_path / "k.keras")
    back = load_keras(tmp_path / "k.keras")
    for got, want in zip(back.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert back.get_config() == model.get_config()
    assert back.optimizer.get_config() == pytest.approx(model.optimizer.get_config())  # float32
    assert back.optimizer.iterations == 4
    assert type(back.loss) is type(model.loss)
    assert [name for name, _ in back._metrics] == ["mae"]
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


def test_lstm_arguments_carried_over(tmp_path):
    model = load_keras(KerasFile("lstm_options", tmp_path).path)
    lstm, dense = model.layers[0], model.layers[4]
    assert (lstm.dropout, lstm.recurrent_dropout, lstm.go_backwards) == (0.2, 0.1, True)
    assert type(lstm.kernel_initializer).__name__ == "GlorotNormal"
    assert lstm.kernel_initializer.seed == 3
    assert type(lstm.kernel_regularizer).__name__ == "L2"
    assert lstm.kernel_regularizer.l2 == pytest.approx(0.01)
    assert type(lstm.recurrent_constraint).__name__ == "MaxNorm"
    assert type(dense.kernel_regularizer).__name__ == "L1L2"
    assert type(dense.bias_constraint).__name__ == "NonNeg"
    assert type(dense.activity_regularizer).__name__ == "L1"
    assert not model.layers[1].trainable


def test_unbuilt_model_round_trip(tmp_path):
    model = Sequential([LSTM(2, return_sequences=True), LSTM(2), Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.save(tmp_path / "unbuilt.keras")
    keras_model = _keras_load(tmp_path / "unbuilt.keras")
    assert not keras_model.built and [type(layer).__name__ for layer in keras_model.layers] == [
        "LSTM", "LSTM", "Dense"]
    back = load_keras(tmp_path / "unbuilt.keras")
    assert not back.built and back.get_weights() == []
    assert back.predict(np.ones((2, T, D))).shape == (2, 1)


def test_keras_model_built_without_input(tmp_path):
    keras_model = keras.Sequential([L.LSTM(2, return_sequences=True), L.LSTM(3), L.Dense(1)])
    keras_model.build((None, T, D))
    keras_model.save(tmp_path / "built.keras")
    x = np.random.default_rng(2).normal(size=(B, T, D)).astype("float32")
    model = load_keras(tmp_path / "built.keras")
    np.testing.assert_allclose(model.predict(x), _predict(keras_model, x), rtol=1e-5, atol=1e-6)


def test_loading_imports_no_tensorflow(small_file, tmp_path):
    code = ("import sys; from pylstm.models import load_keras; "
            f"model = load_keras({str(small_file)!r}); model.save('again.keras'); "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-P", "-c", code], cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_keras_archive_layout(tmp_path):
    model, _ = _pylstm_model()
    model.save(tmp_path / "p.keras")
    with zipfile.ZipFile(tmp_path / "p.keras") as archive:
        assert sorted(archive.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        config = json.loads(archive.read("config.json"))
        metadata = json.loads(archive.read("metadata.json"))
        weights = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
    assert metadata["keras_version"].startswith("3.")
    assert {"module", "class_name", "config", "registered_name", "build_config",
            "compile_config"} <= set(config)
    assert [(entry["module"], entry["class_name"]) for entry in config["config"]["layers"]] == [
        ("keras.layers", c) for c in ("InputLayer", "LSTM", "Dropout", "LSTM", "Dense")]
    assert config["config"]["layers"][1]["config"]["dtype"]["class_name"] == "DTypePolicy"
    assert sorted(weights["layers"]) == ["dense", "dropout", "lstm", "lstm_1"]
    assert weights["layers/lstm_1/cell/vars/1"].shape == (3, 12)
    # iterations, learning rate, then m and v of each of the 7 variables
    assert len(weights["optimizer/vars"]) == 2 + 2 * 7
    weights.close()


# Training resumes where it stopped, across the two libraries --------------------------------


@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    lambda: keras.optimizers.Adam(0.01, amsgrad=True),
    lambda: keras.optimizers.RMSprop(0.01, momentum=0.5, centered=True),
], ids=["sgd", "adam", "rmsprop"])
def test_training_resumes_with_optimizer_state(optimizer, tmp_path):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(8, T, D)).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")
    original = keras.Sequential([keras.Input((T, D)), L.LSTM(3, return_sequences=True),
                                 L.LSTM(3, trainable=False), L.Dense(2)])
    original.compile(optimizer=optimizer(), loss="mse", metrics=["mae"])
    fit = dict(batch_size=8, shuffle=False, verbose=0)
    original.fit(x, y, epochs=1, **fit)
    original.save(tmp_path / "k.keras")

    model = load_keras(tmp_path / "k.keras")
    assert type(model.optimizer).__name__ == type(original.optimizer).__name__
    assert model.optimizer.iterations == 1
    assert [name for name, _ in model._metrics] == ["mae"]
    model.fit(x, y, epochs=1, **fit)
    model.save(tmp_path / "p.keras")
    original.fit(x, y, epochs=1, **fit)
    for got, want in zip(model.get_weights(), original.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)

    resumed = _keras_load(tmp_path / "p.keras")
    resumed.fit(x, y, epochs=1, **fit)
    model.fit(x, y, epochs=1, **fit)
    for got, want in zip(model.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_compile_without_pylstm_equivalent_is_skipped(tmp_path):
    model = keras.Sequential([keras.Input((T, D)), L.LSTM(2), L.Dense(1)])
    model.compile(optimizer=keras.optimizers.Ftrl(0.01), loss="huber")
    model.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_keras(tmp_path / "k.keras")
    assert loaded.optimizer is None and loaded.loss is None
    model.compile(optimizer="adam", loss="mse")
    model.save(tmp_path / "k2.keras")
    assert load_keras(tmp_path / "k2.keras", compile=False).optimizer is None
    assert isinstance(load_keras(tmp_path / "k2.keras").optimizer, pylstm.optimizers.Adam)


# Keras 2 files (fixtures written by tf_keras) -----------------------------------------------


def _fixture(tmp_path, name):
    """Unzips tests/data/NAME.gz into tmp_path and returns its path."""
    path = tmp_path / name
    path.write_bytes(gzip.decompress((DATA / f"{name}.gz").read_bytes()))
    return path


def test_keras2_config_forms(tmp_path):
    """Older Keras 2 files: no InputLayer (the first layer's `batch_input_shape` declares the
    input), and Keras 2.0's bare list of layers as the Sequential's config."""
    expected = np.load(DATA / "keras2_lstm_expected.npz")
    path = _fixture(tmp_path, "keras2_lstm.h5")
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        layers = config["config"]["layers"]
        assert layers[0]["class_name"] == "InputLayer" and "batch_input_shape" in layers[1][
            "config"]
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": layers[1:]})
    model = load_keras(path)
    assert model.built and [type(layer).__name__ for layer in model.layers] == [
        "LSTM", "LSTM", "Dense"]
    np.testing.assert_allclose(model.predict(expected["x"]), expected["y"], rtol=1e-5, atol=1e-6)


# Bad files and unsupported models -----------------------------------------------------------


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    model = keras.Sequential([keras.Input((T, D)), L.LSTM(2, name="lstm"), L.Dense(1)])
    path = tmp_path_factory.mktemp("small") / "small.keras"
    model.save(path)
    return path


def _rewrite(src, dst, config=None, weights=None, drop=()):
    """Copies the .keras archive `src` to `dst`, editing config.json with `config(dict)` and
    model.weights.h5 with `weights(h5py.File)`, and leaving out the members in `drop`."""
    with zipfile.ZipFile(src) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    if config is not None:
        data = json.loads(members["config.json"])
        config(data)
        members["config.json"] = json.dumps(data).encode()
    if weights is not None:
        buffer = io.BytesIO(members["model.weights.h5"])
        with h5py.File(buffer, "r+") as f:
            weights(f)
        members["model.weights.h5"] = buffer.getvalue()
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in members.items():
            if name not in drop:
                archive.writestr(name, data)
    return dst


def _lstm_config(config):
    return config["config"]["layers"][1]["config"]


def _replace(name, value):
    def edit(f):
        del f[name]
        f[name] = value
    return edit


@pytest.mark.parametrize("edit,match", [
    (dict(drop=["config.json"]), "the archive has no config.json"),
    (dict(drop=["model.weights.h5"]), "the archive has no model.weights.h5"),
    (dict(config=lambda c: c.update(class_name="MyModel")),
     "loads Keras Sequential and functional models, this file holds a 'MyModel' model"),
    (dict(config=lambda c: _lstm_config(c).update(time_major=True)),
     r"layer 'lstm' \(LSTM\): pylstm's LSTM has no argument `time_major`"),
    (dict(config=lambda c: _lstm_config(c)["dtype"]["config"].update(name="mixed_float16")),
     r"layer 'lstm' \(LSTM\).*dtype policy is 'mixed_float16'"),
    (dict(config=lambda c: _lstm_config(c).update(activation="gelu")),
     r"layer 'lstm' \(LSTM\): pylstm has no activation 'gelu'"),
    (dict(config=lambda c: _lstm_config(c).update(units=3)),
     r"do not fit layer 'lstm'.*expects shape \(3, 12\), received shape \(3, 8\)"),
    (dict(weights=_replace("layers/lstm/cell/vars/1", np.zeros((2, 9), "float32"))),
     r"do not fit layer 'lstm'.*\(2, 8\), received shape \(2, 9\)"),
    (dict(weights=_replace("layers/lstm/cell/vars/2", np.arange(8))),
     "'layers/lstm/cell/vars/2' is not finite floating-point data"),
    (dict(weights=lambda f: f.__delitem__("layers/dense/vars/1")),
     r"'layers/dense/vars' holds the arrays \['0'\], expected 2"),
    (dict(weights=lambda f: f.__delitem__("layers/lstm")),
     "it has no weights group 'layers/lstm/cell/vars'"),
    (dict(weights=lambda f: f.create_dataset("layers/dense_1/vars/0", data=np.ones(2))),
     "holds weights the model has no layer for.*layers/dense_1/vars/0"),
], ids=["no_config", "no_weights", "subclassed", "unknown_argument", "dtype_policy",
        "activation", "units", "shape", "integer_weights", "missing_array", "missing_group",
        "extra_layer"])
def test_bad_keras_archive(small_file, tmp_path, edit, match):
    path = _rewrite(small_file, tmp_path / "bad.keras", **edit)
    with pytest.raises(ValueError, match=match):
        load_keras(path)


def test_unsupported_layer_is_named(tmp_path):
    model = keras.Sequential([keras.Input((T, D)), L.GRU(2, name="my_gru"), L.Dense(1)])
    model.save(tmp_path / "gru.keras")
    with pytest.raises(ValueError, match=r"layer 'my_gru' \(GRU\): pylstm does not support the "
                                         r"Keras layer class 'GRU'; supported: .*LSTM"):
        load_keras(tmp_path / "gru.keras")


def test_unsupported_layer_argument_is_named(tmp_path):
    model = keras.Sequential([keras.Input((T, D)), L.LSTM(2, return_sequences=True),
                              L.Dropout(0.5, noise_shape=(None, 1, 2), name="drop")])
    model.save(tmp_path / "noise.keras")
    with pytest.raises(ValueError, match=r"layer 'drop' \(Dropout\): pylstm's Dropout has no "
                                         r"argument `noise_shape`"):
        load_keras(tmp_path / "noise.keras")


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.3, 0.6, 0.9, 0.99])
def test_truncated_keras_archive(small_file, tmp_path, fraction):
    data = small_file.read_bytes()
    path = tmp_path / "cut.keras"
    path.write_bytes(data[:int(len(data) * fraction)])
    with pytest.raises(ValueError, match="is not a valid Keras file"):
        load_keras(path)


def test_damaged_members(small_file, tmp_path):
    path = _rewrite(small_file, tmp_path / "json.keras",
                    config=lambda c: c.update(config="x"))
    with pytest.raises(ValueError, match="the model config has no list of layers"):
        load_keras(path)
    with zipfile.ZipFile(small_file) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["config.json"] = b"{not json"
    members["model.weights.h5"] = b"\x00" * 64 + members["model.weights.h5"][64:]
    for broken in ("config.json", "model.weights.h5"):
        path = tmp_path / f"broken_{broken}.keras"
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in members.items():
                archive.writestr(name, data if name == broken else
                                 zipfile.ZipFile(small_file).read(name))
        with pytest.raises(ValueError, match=f"is not a valid Keras file: .*{broken}"):
            load_keras(path)
    # A flipped byte in a stored member fails the zip's CRC check.
    data = bytearray(small_file.read_bytes())
    offset = data.index(b"\x89HDF") + 2000
    data[offset] ^= 0xFF
    (tmp_path / "crc.keras").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="zip archive is damaged.*CRC"):
        load_keras(tmp_path / "crc.keras")


def test_damaged_hdf5_raises_value_error(small_file, tmp_path):
    """Random byte flips in model.weights.h5 (the zip's checksums kept valid) either load or
    raise a ValueError; the HDF5 reader's own errors never escape."""
    with zipfile.ZipFile(small_file) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    rng = np.random.default_rng(0)
    failures = 0
    for trial in range(60):
        data = bytearray(members["model.weights.h5"])
        for offset in rng.integers(0, len(data), size=3):
            data[offset] ^= int(rng.integers(1, 256))
        path = tmp_path / f"flipped{trial}.keras"
        with zipfile.ZipFile(path, "w") as archive:
            for name, content in members.items():
                archive.writestr(name, bytes(data) if name == "model.weights.h5" else content)
        try:
            load_keras(path)
        except ValueError as e:
            assert "is not a valid Keras file" in str(e)
            failures += 1
    assert failures > 10  # the flips did hit the file's structure


def test_missing_file_and_hdf5_without_model(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_keras(tmp_path / "absent.keras")
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f.attrs["keras_version"] = "2.15.0"
    with pytest.raises(ValueError, match="no `model_config` attribute"):
        load_keras(tmp_path / "empty.h5")


def test_weights_into_wrong_or_unbuilt_model(small_file, tmp_path):
    other = Sequential([Input((T, D)), LSTM(2), Dense(1), Dense(1)])
    with pytest.raises(ValueError, match=r"no weights group 'layers/dense_1/vars'"):
        load_keras_weights(other, small_file)
    legacy = _fixture(tmp_path, "keras2_lstm_legacy_weights.h5")
    with pytest.raises(ValueError, match=r"holds weights for 3 layers \(lstm, lstm_1, dense\), "
                                         r"model '\w+' has 2 layers with weights"):
        load_keras_weights(Sequential([Input((T, D)), LSTM(2), Dense(1)]), legacy)
    with pytest.raises(ValueError, match="must be built before loading weights"):
        load_keras_weights(Sequential([LSTM(2)]), small_file)
