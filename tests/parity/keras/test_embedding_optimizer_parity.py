"""Optimizer parity with Keras 3 (TensorFlow backend, float32) on an `Embedding`'s table,
whose gradient TensorFlow gives as `tf.IndexedSlices`, one row per token occurrence: Keras's
optimizers square (Adam, AdamW, Nadam, RMSprop, Adagrad, Adadelta) or take the absolute value
of (Adamax) each occurrence's row before the duplicates are summed, and `clipnorm`,
`clipvalue` and `global_clipnorm` see the rows (see `pylstm.optimizers.optimizer`). The same
`Embedding(mask_zero=True) + LSTM + Dense` model, fed tokens from a small vocabulary (each
batch repeats most of them), from the same initial weights and without shuffling, is trained
3 epochs by `fit` in Keras and in pylstm: the per-epoch losses agree (rtol 1e-4), and so do
the final weights, the embedding table included; likewise with a regularized table (whose
gradient TensorFlow makes dense) and with one table shared by two inputs (whose two calls'
slices TensorFlow concatenates).

Legend: N samples, T timesteps, V vocabulary size, E embedding size, H units, K classes.
"""

import numpy as np
import pytest

import pylstm.layers
import pylstm.models
from pylstm import optimizers
from pylstm.layers import LSTM, Dense, Embedding, Input
from pylstm.models import Sequential

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

keras = ku.keras
KO = keras.optimizers

N, T, V, E, H, K = 16, 8, 6, 4, 5, 3
BATCH_SIZE, EPOCHS = 4, 3  # 4 updates per epoch, 12 in all


def _data():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, T + 1, size=N)
    x = np.zeros((N, T), dtype="int32")  # 0 pads (mask_zero)
    for row, length in zip(x, lengths):
        row[:length] = rng.integers(1, V, size=length)
    y = (x.sum(axis=1) % K).astype("int32")
    return x, y


def _models(regularizer=None):
    keras.utils.set_random_seed(0)
    theirs = keras.Sequential([keras.Input((T,), dtype="int32"),
                               keras.layers.Embedding(V, E, mask_zero=True,
                                                      embeddings_regularizer=regularizer),
                               keras.layers.LSTM(H), keras.layers.Dense(K, activation="softmax")])
    ours = Sequential([Input((T,), dtype="int32"),
                       Embedding(V, E, mask_zero=True, embeddings_regularizer=regularizer),
                       LSTM(H), Dense(K, activation="softmax")])
    ku.copy_weights(theirs, ours)
    return ours, theirs


# name -> optimizer from the module O (pylstm's or Keras's), the same arguments by name
CASES = {
    "adam": lambda O: O.Adam(learning_rate=0.02),
    "adam-amsgrad": lambda O: O.Adam(learning_rate=0.02, amsgrad=True),
    "adamw": lambda O: O.AdamW(learning_rate=0.02, weight_decay=0.1),
    "rmsprop": lambda O: O.RMSprop(learning_rate=0.01),
    "rmsprop-centered-momentum": lambda O: O.RMSprop(learning_rate=0.01, centered=True,
                                                     momentum=0.5),
    "adagrad": lambda O: O.Adagrad(learning_rate=0.1),
    "adadelta": lambda O: O.Adadelta(learning_rate=1.0, rho=0.9),
    "adamax": lambda O: O.Adamax(learning_rate=0.02),
    "nadam": lambda O: O.Nadam(learning_rate=0.02),
    "lion": lambda O: O.Lion(learning_rate=0.003),
    "sgd-momentum": lambda O: O.SGD(learning_rate=0.5, momentum=0.5),
    "adam-clipnorm": lambda O: O.Adam(learning_rate=0.02, clipnorm=0.05),
    "adam-global-clipnorm": lambda O: O.Adam(learning_rate=0.02, global_clipnorm=0.1),
    "adam-clipvalue": lambda O: O.Adam(learning_rate=0.02, clipvalue=0.004),
    "adam-accumulation-ema": lambda O: O.Adam(learning_rate=0.02, gradient_accumulation_steps=2,
                                              use_ema=True, ema_momentum=0.5),
}


def _train_both(make_optimizer, regularizer=None):
    x, y = _data()
    ours, theirs = _models(regularizer)
    initial = theirs.get_weights()
    ours.compile(optimizer=make_optimizer(optimizers), loss="sparse_categorical_crossentropy")
    got = ours.fit(x, y, batch_size=BATCH_SIZE, epochs=EPOCHS, shuffle=False, verbose=0)
    want = ku.keras_fit(theirs, x, y, make_optimizer(KO), "sparse_categorical_crossentropy",
                        EPOCHS, BATCH_SIZE)
    np.testing.assert_allclose(got.history["loss"], want, rtol=1e-4)
    for k, (w0, a, b) in enumerate(zip(initial, ours.get_weights(), theirs.get_weights())):
        atol = 1e-4 * float(np.abs(b).max())
        assert not np.allclose(w0, b, rtol=1e-3, atol=10 * atol), f"weight {k} barely moved"
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=atol, err_msg=f"weight {k}")



@pytest.mark.parametrize("case", CASES)
def test_embedding_training_matches_keras(case):
    _train_both(CASES[case])


def test_regularized_table_takes_a_dense_gradient_as_in_keras():
    """A regularizer's dense gradient added to the slices makes TensorFlow's sum dense, and
    Adam squares the summed gradient."""
    _train_both(CASES["adam"], regularizer="l2")


def _shared_models():
    def build(L, M):
        a, b = L.Input((T,), dtype="int32"), L.Input((T,), dtype="int32")
        embedding = L.Embedding(V, E)
        summed = L.Add()([embedding(a), embedding(b)])
        return M.Model([a, b], L.Dense(K, activation="softmax")(L.LSTM(H)(summed)))

    keras.utils.set_random_seed(0)
    theirs = build(keras.layers, keras)
    ours = build(pylstm.layers, pylstm.models)
    ku.copy_weights(theirs, ours)
    return ours, theirs


def test_shared_embedding_matches_keras():
    """An Embedding called twice in a step: TensorFlow concatenates the two calls' slices."""
    x, y = _data()
    xs = [x, x[:, ::-1].copy()]
    ours, theirs = _shared_models()
    ours.compile(optimizer=optimizers.Adam(learning_rate=0.02),
                 loss="sparse_categorical_crossentropy")
    got = ours.fit(xs, y, batch_size=BATCH_SIZE, epochs=EPOCHS, shuffle=False, verbose=0)
    want = ku.keras_fit(theirs, xs, y, KO.Adam(learning_rate=0.02),
                        "sparse_categorical_crossentropy", EPOCHS, BATCH_SIZE)
    np.testing.assert_allclose(got.history["loss"], want, rtol=1e-4)
    for k, (a, b) in enumerate(zip(ours.get_weights(), theirs.get_weights())):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * float(np.abs(b).max()),
                                   err_msg=f"weight {k}")
