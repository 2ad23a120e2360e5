"""pylstm.models._formats: the one table that picks the file format of a save or a load."""

import pathlib

import numpy as np
import pytest

from pylstm.layers import LSTM, Dense, Input
from pylstm.models import Sequential, _formats, keras_io, load_model, saving


@pytest.mark.parametrize("operation, path, function", [
    ("save_model", "m.keras", keras_io.save_keras),
    ("save_model", pathlib.Path("m.keras"), keras_io.save_keras),
    ("save_model", "m.pylstm", saving._save_pylstm),
    ("save_model", "m.h5", keras_io.save_legacy_h5),
    ("save_model", "m.hdf5", keras_io.save_legacy_h5),
    ("load_model", "m.keras", keras_io.load_keras),
    ("load_model", "m.h5", keras_io.load_keras),
    ("load_model", "m.hdf5", keras_io.load_keras),
    ("load_model", "m.npz", saving._load_pylstm),
    ("save_weights", "w.weights.h5", keras_io.save_keras_weights),
    ("load_weights", "w.keras", keras_io.load_keras_weights),
])
def test_each_path_gets_one_format(operation, path, function):
    assert _formats.find(operation, path) is function


def test_a_single_format_needs_no_path_until_it_runs():
    # so that the saver's own checks (an unbuilt model) come before a path's type
    assert _formats.find("save_weights", None) is keras_io.save_keras_weights
    with pytest.raises(ValueError, match="has no weights yet"):
        Sequential([Dense(1)]).save_weights(None)


def test_register_puts_claimed_endings_before_the_catch_all(monkeypatch):
    monkeypatch.setattr(_formats, "_TABLE", {})
    _formats.register("save_model", "any")
    _formats.register("save_model", "npz", (".npz",))
    assert _formats.find("save_model", "a.npz") == "npz"
    assert _formats.find("save_model", "a.bin") == "any"


def test_model_save_and_load_model_use_the_table(tmp_path, monkeypatch):
    model = Sequential([Input((4, 3)), LSTM(5, seed=0), Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.save(tmp_path / "m.pylstm")
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype("float32")
    loaded = load_model(tmp_path / "m.pylstm")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))

    calls = []
    monkeypatch.setattr(_formats, "_TABLE", {})
    _formats.register("save_model", lambda model, path: calls.append(("save", path)), (".x",))
    _formats.register("load_model", lambda path, max_weight_bytes: calls.append(
        ("load", path, max_weight_bytes)), (".x",))
    model.save("m.x")
    load_model(pathlib.Path("m.x"), max_weight_bytes=7)
    assert calls == [("save", "m.x"), ("load", "m.x", 7)]
