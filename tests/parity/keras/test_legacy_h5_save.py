"""`model.save("x.h5")`: pylstm writes Keras 3's legacy HDF5 format, which Keras 3
(`keras.saving.load_model`) and pylstm (`load_model`) read back predicting the same numbers;
Keras restores the optimizer state; what Keras lacks is refused with a clear message."""

import json
import os

import numpy as np
import pytest
import pylstm_tests_keras_util as ku
from pylstm_tests import require

import pylstm
from pylstm.layers import (LSTM, Add, Bidirectional, Concatenate, Dense, Dropout, Embedding,
                           GlobalAveragePooling1D, Input, LayerNormalization, Masking,
                           TimeDistributed)
from pylstm.models import Model, Sequential, load_model, save_model

keras = ku.keras
h5py = require("h5py")
RNG = np.random.default_rng(0)
X = RNG.normal(size=(4, 6, 3)).astype("float32")
IDS = np.array([[3, 1, 4, 0, 0, 0], [5, 9, 2, 6, 5, 0], [1, 0, 0, 0, 0, 0], [7, 7, 7, 7, 7, 7]])


def _randomize(model):
    model.set_weights([RNG.normal(scale=0.4, size=w.shape).astype(w.dtype)
                       for w in model.get_weights()])
    return model


def _sequential():
    return Sequential([Input((6, 3)), Bidirectional(LSTM(4, return_sequences=True)),
                       TimeDistributed(Dense(3, activation="tanh")), Dropout(0.2),
                       LSTM(5), LayerNormalization(), Dense(2)]), X


def _masked_sequential():
    return Sequential([Input((6,)), Embedding(10, 4, mask_zero=True), LSTM(3), Dense(1)]), IDS


def _functional():
    ids = Input((6,), dtype="int32", name="ids")
    embedded = Embedding(10, 4, mask_zero=True)(ids)
    sequences = LSTM(5, return_sequences=True)(embedded)
    pooled = GlobalAveragePooling1D()(sequences)
    last = LSTM(5)(embedded)
    shared = Dense(3)
    merged = Concatenate()([Add()([shared(pooled), shared(last)]), pooled])
    return Model(ids, [Dense(2, activation="softmax")(merged), Dense(1)(last)]), IDS


def _nested():
    inputs = Input((6, 3))
    inner = Sequential([Input((6, 3)), Masking(0.0), LSTM(4), Dense(3)], name="inner")
    return Model(inputs, Dense(1)(inner(inputs))), X


MODELS = {"sequential": _sequential, "masked_sequential": _masked_sequential,
          "functional": _functional, "nested": _nested}


def _outputs(outputs):
    return [np.asarray(o) for o in (outputs if isinstance(outputs, list) else [outputs])]


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("ending", [".h5", ".hdf5"])
def test_keras_and_pylstm_read_a_pylstm_h5_file(tmp_path, name, ending):
    model, x = MODELS[name]()
    _randomize(model)
    path = tmp_path / f"model{ending}"
    model.save(path)
    with h5py.File(path) as f:
        assert json.loads(f.attrs["model_config"])["class_name"] in ("Sequential", "Functional")
        assert "optimizer_weights" not in f and "training_config" not in f.attrs
    expected = _outputs(model.predict(x))
    theirs = keras.saving.load_model(path)
    for got, want in zip(_outputs(theirs.predict(x, verbose=0)), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    ours = load_model(path)
    assert type(ours) is type(model)
    for got, want in zip(_outputs(ours.predict(x)), expected):
        np.testing.assert_array_equal(got, want)


def test_layer_names_and_weight_order_are_keras_own(tmp_path):
    """Keras writes a Keras model of the same architecture with the same layer groups (named
    after its own layers) and arrays, in the same order."""
    model, _ = _sequential()
    _randomize(model)
    K = keras.layers
    twin = keras.Sequential([keras.Input((6, 3)), K.Bidirectional(K.LSTM(4, return_sequences=True)),
                             K.TimeDistributed(K.Dense(3, activation="tanh")), K.Dropout(0.2),
                             K.LSTM(5), K.LayerNormalization(), K.Dense(2)])
    ku.copy_weights(model, twin)
    model.save(tmp_path / "ours.h5")
    twin.save(tmp_path / "theirs.h5")
    with h5py.File(tmp_path / "ours.h5") as ours, h5py.File(tmp_path / "theirs.h5") as theirs:
        names = list(ours["model_weights"].attrs["layer_names"])
        keras_names = list(theirs["model_weights"].attrs["layer_names"])
        assert names == [layer.name for layer in model.layers]
        assert len(names) == len(keras_names)
        for layer, keras_layer in zip(names, keras_names):
            a, b = ours["model_weights"][layer], theirs["model_weights"][keras_layer]
            arrays = [np.asarray(a[n]) for n in a.attrs["weight_names"]]
            assert [x.shape for x in arrays] == [
                b[n].shape for n in b.attrs["weight_names"]]
            for x, n in zip(arrays, b.attrs["weight_names"]):
                np.testing.assert_array_equal(x, b[n])


@pytest.mark.parametrize("optimizer", [
    lambda: pylstm.optimizers.Adam(learning_rate=0.01),
    lambda: pylstm.optimizers.SGD(learning_rate=0.05, momentum=0.9),
    lambda: pylstm.optimizers.RMSprop(learning_rate=0.01),
])
def test_keras_restores_the_compile_config_and_iterations(tmp_path, optimizer):
    model, x = _sequential()
    _randomize(model)
    model.compile(optimizer=optimizer(), loss="mse", metrics=["mae"])
    y = RNG.normal(size=(4, 2)).astype("float32")
    model.fit(x, y, epochs=3, batch_size=2, shuffle=False, verbose=0)
    save_model(model, tmp_path / "model.h5")
    theirs = keras.saving.load_model(tmp_path / "model.h5")
    assert type(theirs.optimizer).__name__ == type(model.optimizer).__name__
    assert int(theirs.optimizer.iterations) == model.optimizer.iterations == 6
    assert "mean_squared_error" in str(theirs.loss)
    # Keras 3.15 builds the restored optimizer over no variables (`model._trainable_variables`
    # of a Sequential), so `fit` cannot go on in Keras; with its own files neither (its
    # `loss="mse"` does not even deserialize). The restored state is compared instead.
    np.testing.assert_allclose(np.asarray(theirs.optimizer.learning_rate),
                               model.optimizer.learning_rate, rtol=1e-6)
    restored = load_model(tmp_path / "model.h5")
    assert type(restored.optimizer).__name__ == type(model.optimizer).__name__
    assert restored.optimizer._iterations == 6
    # pylstm restores the optimizer state too: training resumes as if never saved (the same
    # dropout masks drawn).
    pylstm.utils.set_random_seed(5)
    resumed = restored.fit(x, y, epochs=1, batch_size=2, shuffle=False, verbose=0)
    pylstm.utils.set_random_seed(5)
    again = model.fit(x, y, epochs=1, batch_size=2, shuffle=False, verbose=0)
    assert resumed.history == again.history


def test_pylstm_restores_the_optimizer_state_of_a_keras_h5_file(tmp_path):
    twin = keras.Sequential([keras.Input((6, 3)), keras.layers.LSTM(4), keras.layers.Dense(2)])
    twin.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mean_squared_error")
    y = RNG.normal(size=(4, 2)).astype("float32")
    twin.fit(X, y, epochs=2, batch_size=2, shuffle=False, verbose=0)
    twin.save(tmp_path / "keras.h5")
    ours = load_model(tmp_path / "keras.h5")
    assert ours.optimizer._iterations == int(twin.optimizer.iterations) == 4
    keras_slots = [np.asarray(v) for v in twin.optimizer.variables[2:]]
    our_slots = [ours.optimizer._slots[var][slot]
                 for var in ours.trainable_variables for slot in ("m", "v")]
    assert len(our_slots) == len(keras_slots) == 10
    for got, want in zip(our_slots, keras_slots):
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_what_keras_lacks_is_refused(tmp_path):
    model = Sequential([Input((6, 3)), LSTM(4, recurrent_activation="legacy_hard_sigmoid")])
    with pytest.raises(ValueError, match="Cannot write model .* in the Keras format: .*Keras 3 "
                                         "has no activation 'legacy_hard_sigmoid'"):
        model.save(tmp_path / "model.h5")
    unbuilt = Sequential([LSTM(4)])
    with pytest.raises(ValueError, match="legacy Keras HDF5 file: it is not built"):
        unbuilt.save(tmp_path / "model.h5")
    assert not os.listdir(tmp_path)
