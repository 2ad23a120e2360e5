"""Optimizer parity with Keras 3 (TensorFlow backend, float32): the same `LSTM + Dense` model,
from the same initial weights and without shuffling, trained 3 epochs by `fit` in Keras and in
pylstm, gives the same per-epoch losses (rtol 1e-4) and final weights, for each optimizer Keras
has (AdamW, Adagrad, Adadelta, Adamax, Nadam, Lion), weight decay with variables excluded, the
moving average of the weights (`use_ema`, with and without overwriting), gradient
accumulation, and each learning-rate schedule; and the optimizer state of a `.keras` file
(iterations, slots, Nadam's momentum product, a schedule in the compile config) carries
training on from where the other library left it, both ways.

Legend: N samples, T timesteps, D input features, H units, K outputs.
"""

import numpy as np
import pytest

from pylstm import models, optimizers
from pylstm.layers import LSTM, Dense, Input
from pylstm.models import Sequential

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

keras = ku.keras
KO = keras.optimizers
KS = keras.optimizers.schedules
S = optimizers.schedules

N, T, D, H, K = 16, 5, 3, 4, 2
BATCH_SIZE, EPOCHS = 4, 3  # 4 updates per epoch, 12 in all


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, T, D)).astype("float32")
    y = np.stack([np.sin(x[:, :, 0].sum(axis=1)), np.tanh(x[:, 0, 2])], axis=1).astype("float32")
    return x, y


def _models():
    keras.utils.set_random_seed(0)
    theirs = keras.Sequential([keras.Input((T, D)), keras.layers.LSTM(H), keras.layers.Dense(K)])
    ours = Sequential([Input((T, D)), LSTM(H), Dense(K)])
    ku.copy_weights(theirs, ours)
    return ours, theirs


def _exclude_bias(optimizer):
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    return optimizer


# name -> (pylstm optimizer, Keras optimizer): the same arguments, by the same names
CASES = {
    "adamw": lambda O: O.AdamW(learning_rate=0.02, weight_decay=0.1),
    "adamw-amsgrad-exclude-bias": lambda O: _exclude_bias(
        O.AdamW(learning_rate=0.02, weight_decay=0.5, amsgrad=True)),
    "adagrad": lambda O: O.Adagrad(learning_rate=0.1),
    "adadelta": lambda O: O.Adadelta(learning_rate=1.0, rho=0.9),
    "adamax": lambda O: O.Adamax(learning_rate=0.02),
    "nadam": lambda O: O.Nadam(learning_rate=0.02),
    "lion": lambda O: O.Lion(learning_rate=0.003),
    "sgd-weight-decay": lambda O: O.SGD(learning_rate=0.3, momentum=0.5, weight_decay=0.2),
    "rmsprop-clipnorm-weight-decay": lambda O: O.RMSprop(learning_rate=0.01, weight_decay=0.1,
                                                         clipnorm=0.5),
    "adam-ema": lambda O: O.Adam(learning_rate=0.02, use_ema=True, ema_momentum=0.9),
    "sgd-ema-overwrite": lambda O: O.SGD(learning_rate=0.3, use_ema=True, ema_momentum=0.5,
                                         ema_overwrite_frequency=3),
    "nadam-accumulation": lambda O: O.Nadam(learning_rate=0.02, gradient_accumulation_steps=3),
    "adam-accumulation-ema-decay": lambda O: O.Adam(
        learning_rate=0.02, gradient_accumulation_steps=2, use_ema=True, weight_decay=0.1),
}

# name -> (pylstm schedule, Keras schedule), driving Adam; steps run 0..11
SCHEDULES = {
    "exponential": lambda s: s.ExponentialDecay(0.05, decay_steps=3, decay_rate=0.5),
    "exponential-staircase": lambda s: s.ExponentialDecay(0.05, 4, 0.3, staircase=True),
    "piecewise": lambda s: s.PiecewiseConstantDecay([3, 7], [0.05, 0.01, 0.002]),
    "polynomial": lambda s: s.PolynomialDecay(0.05, decay_steps=8, end_learning_rate=0.001,
                                              power=2.0),
    "polynomial-cycle": lambda s: s.PolynomialDecay(0.05, 5, 0.001, cycle=True),
    "inverse-time": lambda s: s.InverseTimeDecay(0.05, decay_steps=2, decay_rate=0.7),
    "cosine": lambda s: s.CosineDecay(0.05, decay_steps=10, alpha=0.1),
    "cosine-warmup": lambda s: s.CosineDecay(0.0, decay_steps=6, warmup_target=0.05,
                                             warmup_steps=4),
    "cosine-restarts": lambda s: s.CosineDecayRestarts(0.05, first_decay_steps=3, t_mul=1.5,
                                                       m_mul=0.7, alpha=0.05),
}


def _train_both(ours_optimizer, keras_optimizer):
    x, y = _data()
    ours, theirs = _models()
    initial = theirs.get_weights()
    ours.compile(optimizer=ours_optimizer, loss="mse")
    got = ours.fit(x, y, batch_size=BATCH_SIZE, epochs=EPOCHS, shuffle=False, verbose=0)
    # Keras's fit ends with it; idempotent if pylstm's fit called it too.
    ours.optimizer.finalize_variable_values(ours.trainable_variables)
    want = ku.keras_fit(theirs, x, y, keras_optimizer, "mse", EPOCHS, BATCH_SIZE)
    np.testing.assert_allclose(got.history["loss"], want, rtol=1e-4)
    for k, (w0, a, b) in enumerate(zip(initial, ours.get_weights(), theirs.get_weights())):
        atol = 1e-4 * float(np.abs(b).max())
        assert not np.allclose(w0, b, rtol=1e-3, atol=10 * atol), f"weight {k} barely moved"
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=atol, err_msg=f"weight {k}")
    return ours, theirs


@pytest.mark.parametrize("case", CASES)
def test_optimizer_matches_keras(case):
    _train_both(CASES[case](optimizers), CASES[case](KO))


@pytest.mark.parametrize("case", SCHEDULES)
def test_schedule_matches_keras(case):
    ours_schedule, keras_schedule = SCHEDULES[case](S), SCHEDULES[case](KS)
    for step in (0, 1, 3, 4, 7, 11, 25):
        np.testing.assert_allclose(ours_schedule(step), float(keras_schedule(step)), rtol=1e-6,
                                   atol=1e-9, err_msg=f"step {step}")
    ours, theirs = _train_both(optimizers.Adam(ours_schedule), KO.Adam(keras_schedule))
    assert ours.optimizer.iterations == int(theirs.optimizer.iterations) == EPOCHS * N // BATCH_SIZE
    assert ours.optimizer.learning_rate == pytest.approx(float(theirs.optimizer.learning_rate),
                                                         rel=1e-6)


def test_callable_learning_rate_matches_keras():
    ours_opt = optimizers.SGD(lambda: 0.2, momentum=0.5)
    _train_both(ours_opt, KO.SGD(lambda: 0.2, momentum=0.5))
    assert ours_opt.learning_rate == 0.2


STATE_CASES = {
    "nadam-ema-accumulation": lambda O: O.Nadam(learning_rate=0.02, use_ema=True,
                                                gradient_accumulation_steps=3),
    "adam-schedule-amsgrad": lambda O: O.Adam(
        O.schedules.ExponentialDecay(0.05, 3, 0.5), amsgrad=True),
    "adamw": lambda O: O.AdamW(learning_rate=0.02, weight_decay=0.1),
    "adagrad": lambda O: O.Adagrad(learning_rate=0.1),
    "adadelta": lambda O: O.Adadelta(learning_rate=1.0),
    "adamax": lambda O: O.Adamax(learning_rate=0.02),
    "lion": lambda O: O.Lion(learning_rate=0.003),
}


def _fit(model, x, y, epochs):
    history = model.fit(x, y, batch_size=BATCH_SIZE, epochs=epochs, shuffle=False, verbose=0)
    if isinstance(model, Sequential):  # as Keras's fit ends (idempotent)
        model.optimizer.finalize_variable_values(model.trainable_variables)
    return history.history["loss"]


@pytest.mark.parametrize("case", STATE_CASES)
@pytest.mark.parametrize("direction", ["keras-to-pylstm", "pylstm-to-keras"])
def test_keras_file_carries_the_optimizer_state(case, direction, tmp_path):
    """One library trains 2 epochs (8 updates, not a multiple of the accumulation steps) and
    saves; the other loads the file and trains 1 more epoch; the first trains on too: the
    same losses and weights."""
    x, y = _data()
    ours, theirs = _models()
    path = tmp_path / "model.keras"
    ours.compile(optimizer=STATE_CASES[case](optimizers), loss="mse")
    theirs.compile(optimizer=STATE_CASES[case](KO), loss="mse")
    first_keras = direction == "keras-to-pylstm"
    first = theirs if first_keras else ours
    _fit(first, x, y, epochs=2)
    first.save(path)
    second = models.load_model(path) if first_keras else keras.saving.load_model(path)
    assert type(second.optimizer).__name__ == type(first.optimizer).__name__
    want = _fit(first, x, y, epochs=1)
    got = _fit(second, x, y, epochs=1)
    np.testing.assert_allclose(got, want, rtol=1e-4)
    for k, (a, b) in enumerate(zip(second.get_weights(), first.get_weights())):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * float(np.abs(b).max()),
                                   err_msg=f"weight {k}")
