"""Keras model files without Keras: Keras 2 files (fixtures written by tf_keras, their
predictions recorded beside them: tests/data/README.md) read with pyfive, `.keras` and `.h5`
files written with h5py, the save and load dispatch on extensions, what cannot be saved for
Keras 3, random bytes, and the doctests. Against Keras 3 itself:
parity/keras/test_keras_files.py."""

import doctest
import gzip
import json
import pathlib
import zipfile

import numpy as np
import pytest
from pylstm_tests import require

import pylstm
from pylstm.layers import LSTM, Dense, Dropout, Input, Layer
from pylstm.models import Sequential, keras_io, load_keras, load_keras_weights, load_model

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"
B, T, D = 5, 6, 3

require("h5py")
require("pyfive")


# pylstm -> Keras ----------------------------------------------------------------------------


def _pylstm_model():
    pylstm.utils.set_random_seed(3)
    model = Sequential([Input((T, D)), LSTM(4, return_sequences=True, go_backwards=True),
                        Dropout(0.2), LSTM(3, use_bias=False), Dense(2, activation="tanh")])
    model.compile(optimizer=pylstm.optimizers.Adam(0.02), loss="mse", metrics=["mae"])
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, T, D)), rng.normal(size=(8, 2))
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    return model, x.astype("float32")


def test_doctests():
    assert doctest.testmod(keras_io).failed == 0


def test_load_model_and_save_dispatch_on_extension(tmp_path):
    model, x = _pylstm_model()
    model.save(tmp_path / "m.keras")
    assert zipfile.ZipFile(tmp_path / "m.keras").read("metadata.json")
    np.testing.assert_array_equal(load_model(tmp_path / "m.keras").predict(x), model.predict(x))
    model.save(tmp_path / "m.pylstm")
    assert "config.json.npy" in zipfile.ZipFile(tmp_path / "m.pylstm").namelist()


# Keras 2 files (fixtures written by tf_keras) -----------------------------------------------


def _fixture(tmp_path, name):
    """Unzips tests/data/NAME.gz into tmp_path and returns its path."""
    path = tmp_path / name
    path.write_bytes(gzip.decompress((DATA / f"{name}.gz").read_bytes()))
    return path


def test_keras2_hard_sigmoid_is_the_legacy_one(tmp_path):
    expected = np.load(DATA / "keras2_lstm_expected.npz")
    path = _fixture(tmp_path, "keras2_lstm.h5")
    model = load_keras(path)
    assert model.layers[0].recurrent_activation == "legacy_hard_sigmoid"
    assert model.layers[1].activation == "legacy_hard_sigmoid"
    np.testing.assert_allclose(model.predict(expected["x"]), expected["y"], rtol=1e-5, atol=1e-6)
    assert isinstance(model.optimizer, pylstm.optimizers.Adam)
    assert model.optimizer.learning_rate == pytest.approx(0.01)
    assert [name for name, _ in model._metrics] == ["mae"]
    # With Keras 3's hard_sigmoid instead, the numbers differ.
    config = json.loads(json.dumps(model.get_config()).replace("legacy_hard_sigmoid",
                                                               "hard_sigmoid"))
    keras3 = Sequential.from_config(config)
    keras3.set_weights(model.get_weights())
    assert not np.allclose(keras3.predict(expected["x"]), expected["y"], rtol=1e-3)


@pytest.mark.parametrize("name", ["keras2_lstm.weights.h5", "keras2_lstm_legacy_weights.h5"])
def test_keras2_weights_files(tmp_path, name):
    expected = np.load(DATA / "keras2_lstm_expected.npz")
    model = load_keras(_fixture(tmp_path, "keras2_lstm.h5"))
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    load_keras_weights(model, _fixture(tmp_path, name))
    np.testing.assert_allclose(model.predict(expected["x"]), expected["y"], rtol=1e-5, atol=1e-6)


def test_keras2_wrappers_with_mask(tmp_path):
    expected = np.load(DATA / "keras2_wrappers_expected.npz")
    model = load_keras(_fixture(tmp_path, "keras2_wrappers.h5"))
    assert [type(layer).__name__ for layer in model.layers] == [
        "Embedding", "Bidirectional", "TimeDistributed", "RNN", "Dense"]
    np.testing.assert_allclose(model.predict(expected["x"]), expected["y"], rtol=1e-5, atol=1e-6)
    assert isinstance(model.optimizer, pylstm.optimizers.SGD)


def test_legacy_activation_cannot_be_saved_for_keras3(tmp_path):
    model = load_keras(_fixture(tmp_path, "keras2_lstm.h5"))
    with pytest.raises(ValueError, match=r"layer 'lstm' \(LSTM\).*Keras 3 has no activation "
                                         r"'legacy_hard_sigmoid'"):
        model.save(tmp_path / "out.keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keras2_lstm.h5"]


# Bad files and unsupported models -----------------------------------------------------------


@pytest.mark.parametrize("prefix", [b"", b"PK\x03\x04", b"\x89HDF\r\n\x1a\n"])
def test_random_bytes(tmp_path, prefix):
    path = tmp_path / "noise.keras"
    path.write_bytes(prefix + np.random.default_rng(0).bytes(3000))
    with pytest.raises(ValueError, match="is not a valid Keras file"):
        load_keras(path)


def test_custom_layer_cannot_be_saved_as_keras(tmp_path):
    class Doubler(Layer):
        def call(self, inputs, training=False):
            return 2 * np.asarray(inputs)

    model = Sequential([Input((T, D)), LSTM(2), Doubler(name="twice")])
    with pytest.raises(ValueError, match=r"layer 'twice' \(Doubler\) has no Keras equivalent"):
        model.save(tmp_path / "custom.keras")
    assert list(tmp_path.iterdir()) == []


def test_a_keras_file_keeps_compiled_metric_objects(tmp_path):
    from pylstm import metrics

    model = Sequential([Input((4,)), Dense(1, activation="sigmoid")])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 4))
    y = (x[:, :1] > 0).astype(float)
    model.compile("adam", "binary_crossentropy",
                  metrics=["mae", metrics.AUC(curve="PR", name="pr"), metrics.Recall(0.3)])
    model.save(tmp_path / "m.keras")
    loaded = load_model(tmp_path / "m.keras")
    assert [(name, metric.get_config()) for name, metric in loaded._metrics] == [
        (name, metric.get_config()) for name, metric in model._metrics]
    np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0))
