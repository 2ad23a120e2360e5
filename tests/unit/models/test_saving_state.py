"""Saving by extension, beyond the formats' layouts: the optimizer state in pylstm's own format
(training resumes as if never saved), and the errors of saving into a missing folder or onto a
folder, for every saver. Legacy `.h5` files against Keras: parity/keras/test_legacy_h5_save.py."""

import io
import json
import zipfile

import numpy as np
import pytest

import pylstm
from pylstm import optimizers
from pylstm.layers import LSTM, Dense, Input
from pylstm.models import Model, Sequential, load_model

RNG = np.random.default_rng(0)
X = RNG.normal(size=(16, 5, 3)).astype("float32")
Y = RNG.normal(size=(16, 2)).astype("float32")


def _sequential():
    return Sequential([Input((5, 3)), LSTM(4, seed=0), Dense(2)])


def _functional():
    inputs = Input((5, 3))
    return Model(inputs, Dense(2)(LSTM(4, return_sequences=False, seed=1)(inputs)))


def _fit(model, epochs):
    return model.fit(X, Y, epochs=epochs, batch_size=4, shuffle=False, verbose=0).history["loss"]


@pytest.mark.parametrize("make", [_sequential, _functional])
@pytest.mark.parametrize("optimizer", [
    lambda: optimizers.Adam(learning_rate=0.02),
    lambda: optimizers.Adam(learning_rate=0.02, amsgrad=True),
    lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9),
    lambda: optimizers.RMSprop(learning_rate=0.01, momentum=0.5, centered=True),
    lambda: optimizers.Nadam(learning_rate=0.01),
    lambda: optimizers.AdamW(learning_rate=0.01, weight_decay=0.1),
    lambda: optimizers.Adagrad(learning_rate=0.05),
    lambda: optimizers.Lion(learning_rate=0.005),
    lambda: optimizers.Adam(learning_rate=0.01, use_ema=True, ema_overwrite_frequency=3),
    lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9, gradient_accumulation_steps=3),
    lambda: optimizers.Adam(learning_rate=optimizers.schedules.ExponentialDecay(0.05, 3, 0.5)),
])
def test_training_resumes_from_a_pylstm_file_as_if_never_saved(tmp_path, make, optimizer):
    model = make()
    model.compile(optimizer=optimizer(), loss="mse")
    _fit(model, 2)
    model.save(tmp_path / "model.pylstm")
    restored = load_model(tmp_path / "model.pylstm")
    assert restored.optimizer._iterations == model.optimizer._iterations == 8
    assert restored.optimizer.get_config() == model.optimizer.get_config()
    next_epoch = _fit(model, 1)
    assert _fit(restored, 1) == next_epoch
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))
    # Without its state the optimizer would take other steps: the check above has teeth.
    fresh = load_model(tmp_path / "model.pylstm")
    fresh.compile(optimizer=optimizer(), loss="mse")
    assert _fit(fresh, 1) != next_epoch


def test_a_model_compiled_but_not_trained_saves_no_slots(tmp_path):
    model = _sequential()
    model.compile(optimizer="adam", loss="mse")
    model.save(tmp_path / "model.pylstm")
    with zipfile.ZipFile(tmp_path / "model.pylstm") as archive:
        assert not [n for n in archive.namelist() if n.startswith("optimizer_")]
    restored = load_model(tmp_path / "model.pylstm")
    assert restored.optimizer._iterations == 0 and restored.optimizer._slots == {}
    assert _fit(restored, 1) == _fit(model, 1)


def _rewrite_config(path, edit):
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    config = json.loads(np.lib.format.read_array(
        io.BytesIO(members["config.json.npy"])).tobytes())
    edit(config, members)
    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(json.dumps(config).encode(), dtype=np.uint8))
    members["config.json.npy"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.mark.parametrize("edit, match", [
    (lambda c, m: c["optimizer_state"].update(iterations=-1), "iterations must be an int >= 0"),
    (lambda c, m: c["optimizer_state"].update(slots=["m"]), r"slots \['m'\] are not those"),
    (lambda c, m: c["optimizer_state"].pop("slots"), "optimizer_state must be a dict"),
    (lambda c, m: c.update(compile_config=None), "saved with a compile_config"),
    (lambda c, m: m.pop("optimizer_0003.npy"), "it holds 9 optimizer arrays, expected none or 10"),
])
def test_damaged_optimizer_state_is_refused_naming_the_file(tmp_path, edit, match):
    model = _sequential()
    model.compile(optimizer="adam", loss="mse")
    _fit(model, 1)
    path = tmp_path / "model.pylstm"
    model.save(path)
    _rewrite_config(path, edit)
    with pytest.raises(ValueError, match=f"is not a valid pylstm model file: .*{match}"):
        load_model(path)


def test_a_slot_of_the_wrong_shape_is_refused(tmp_path):
    model = _sequential()
    model.compile(optimizer="adam", loss="mse")
    _fit(model, 1)
    path = tmp_path / "model.pylstm"
    model.save(path)

    def swap(config, members):
        members["optimizer_0000.npy"], members["optimizer_0002.npy"] = (
            members["optimizer_0002.npy"], members["optimizer_0000.npy"])

    _rewrite_config(path, swap)
    with pytest.raises(ValueError, match="weight array optimizer_0000 has shape"):
        load_model(path)


@pytest.mark.parametrize("name, save", [
    ("model.pylstm", lambda m, p: m.save(p)),
    ("model.keras", lambda m, p: m.save(p)),
    ("model.weights.h5", lambda m, p: m.save_weights(p)),
    ("model.pylstm", lambda m, p: pylstm.models.save_model(m, p)),
    ("state.pt", lambda m, p: pylstm.nn.LSTM(3, 4).save_state_dict(p)),
])
def test_saving_into_a_missing_folder_names_the_path(tmp_path, name, save):
    model = _sequential()
    path = tmp_path / "missing" / name
    with pytest.raises(FileNotFoundError, match=f"Cannot save to '{path}': the folder "
                                                f"'{tmp_path / 'missing'}' does not exist"):
        save(model, path)
    assert not (tmp_path / "missing").exists()
    folder = tmp_path / name
    folder.mkdir()
    with pytest.raises(IsADirectoryError, match=f"Cannot save to '{folder}': it is a folder"):
        save(model, folder)
