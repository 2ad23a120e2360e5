"""A Keras training script for a sequence model runs on pylstm with only its imports changed
(issue 17), and gives Keras's numbers: the script below is run twice, once after Keras's
imports and once after pylstm's. `START(model)`, the one line that is not a Keras user's,
records each model's initial weights in the Keras run and sets them in the pylstm run."""

import numpy as np

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

KERAS_IMPORTS = """
import keras
from keras import layers
from keras.callbacks import EarlyStopping, ModelCheckpoint, ReduceLROnPlateau
from keras.optimizers import Adam, AdamW
from keras.optimizers.schedules import ExponentialDecay
from keras.utils import pad_sequences, timeseries_dataset_from_array
"""

PYLSTM_IMPORTS = """
import pylstm as keras
from pylstm import layers
from pylstm.callbacks import EarlyStopping, ModelCheckpoint, ReduceLROnPlateau
from pylstm.optimizers import Adam, AdamW
from pylstm.optimizers.schedules import ExponentialDecay
from pylstm.utils import pad_sequences, timeseries_dataset_from_array
"""

# What a Keras user writes: a forecaster fed by timeseries_dataset_from_array, trained with a
# learning-rate schedule, early stopping and a checkpoint of the best model; then a classifier
# of padded token sequences with class weights, a plateau schedule and a validation split.
SCRIPT = """
series = np.sin(np.arange(300) * 0.2).astype("float32") + 0.1 * NOISE
train = timeseries_dataset_from_array(series[:200], series[10:210], sequence_length=10,
                                      batch_size=16)
val = timeseries_dataset_from_array(series[200:-10], series[210:], sequence_length=10,
                                    batch_size=16)
inputs = keras.Input((10,))
outputs = layers.Dense(1)(layers.LSTM(8)(layers.Reshape((10, 1))(inputs)))
forecaster = keras.Model(inputs, outputs)
START(forecaster)
schedule = ExponentialDecay(0.05, decay_steps=10, decay_rate=0.8)
forecaster.compile(optimizer=Adam(learning_rate=schedule), loss="mse", metrics=["mae"])
stop = EarlyStopping(monitor="val_loss", min_delta=0.002, patience=2,
                     restore_best_weights=True)
best = ModelCheckpoint(CHECKPOINT, monitor="val_loss", save_best_only=True)
forecast_history = forecaster.fit(train, validation_data=val, epochs=12, verbose=0,
                                  callbacks=[stop, best])
forecast = forecaster.predict(val, verbose=0)

tokens = pad_sequences(TOKENS, maxlen=12, padding="post")
classifier = keras.Sequential([
    keras.Input((12,), dtype="int32"),
    layers.Embedding(20, 6, mask_zero=True),
    layers.LSTM(8, return_sequences=True),
    layers.GlobalAveragePooling1D(),
    layers.Dense(3, activation="softmax"),
])
START(classifier)
classifier.compile(optimizer=AdamW(learning_rate=0.01, weight_decay=0.01),
                   loss="sparse_categorical_crossentropy", metrics=["accuracy"])
plateau = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1)
class_history = classifier.fit(tokens, LABELS, batch_size=8, epochs=6, shuffle=False,
                               validation_split=0.25, class_weight={0: 1.0, 1: 2.0, 2: 0.5},
                               callbacks=[plateau], verbose=0)
"""


def _run(imports, namespace):
    scope = dict(namespace, np=np)
    exec(compile(imports + SCRIPT, "keras_script", "exec"), scope)
    return scope


def test_a_keras_script_with_pylstm_imports_gives_keras_numbers(tmp_path):
    rng = np.random.default_rng(0)
    tokens = [list(rng.integers(1, 20, size=rng.integers(3, 15))) for _ in range(48)]
    data = {"NOISE": rng.normal(size=300).astype("float32"), "TOKENS": tokens,
            "LABELS": np.array([len(t) % 3 for t in tokens])}
    initial = []
    ku.keras.utils.set_random_seed(0)
    theirs = _run(KERAS_IMPORTS, dict(data, CHECKPOINT=str(tmp_path / "keras_best.keras"),
                                      START=lambda model: initial.append(model.get_weights())))
    ours = _run(PYLSTM_IMPORTS, dict(data, CHECKPOINT=str(tmp_path / "pylstm_best.keras"),
                                     START=lambda model: model.set_weights(initial.pop(0))))

    for name in ("forecast_history", "class_history"):
        want, got = theirs[name].history, ours[name].history
        assert sorted(got) == sorted(want), name
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-6,
                                       err_msg=f"{name}[{key!r}]")
    # early stopping stopped before the last epoch, where Keras stopped, with Keras's weights
    assert len(ours["forecast_history"].history["loss"]) < 12
    np.testing.assert_allclose(ours["forecast"], theirs["forecast"], rtol=1e-4, atol=1e-5)
    # the checkpoints of the best epoch predict alike
    from pylstm.models import load_model

    ours_best = load_model(str(tmp_path / "pylstm_best.keras")).predict(ours["val"], verbose=0)
    theirs_best = ku.keras.saving.load_model(str(tmp_path / "keras_best.keras")).predict(
        theirs["val"], verbose=0)
    np.testing.assert_allclose(ours_best, theirs_best, rtol=1e-4, atol=1e-5)
