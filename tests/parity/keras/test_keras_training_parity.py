"""Training parity with Keras 3 (TensorFlow backend, float32): small Sequential models with the
same initial weights, trained for 3 epochs by SGD and by Adam (no shuffling, a fixed batch size
that splits each epoch into several updates), give the same per-epoch losses (rtol 1e-4) and
the same final weights (rtol 1e-3) in pylstm and in Keras.

Models:
- "lstm_dense": `LSTM + Dense` on real-valued sequences, MSE.
- "embedding_masked": `Embedding(mask_zero=True) + LSTM + Dense(softmax)` on zero-padded integer
  sequences (right and left padding, one row of padding only), sparse categorical
  crossentropy: the embedding's mask reaches the LSTM.
- "embedding_stacked": the same with `LSTM(return_sequences=True)` before the last LSTM, which
  must pass the mask on.
- "masking": `Masking(0.0) + LSTM + Dense` on real-valued sequences with zeroed (padded)
  timesteps, MSE.

Legend: N samples, T timesteps, D input features, V vocabulary, E embedding size, H units,
K outputs.
"""

import numpy as np
import pytest

from pylstm import optimizers
from pylstm.layers import LSTM, Dense, Embedding, Input, Masking
from pylstm.models import Sequential

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

keras = ku.keras

N, T, D, V, E, H, K = 16, 7, 3, 12, 4, 5, 3
BATCH_SIZE, EPOCHS = 4, 3


def real_sequences(rng):
    """`x (N, T, D)` float32 and a smooth regression target `y (N, K)`."""
    x = rng.normal(size=(N, T, D)).astype("float32")
    y = np.stack([np.sin(x[:, :, 0].sum(axis=1)), 0.5 * x[:, -1, 1], np.tanh(x[:, 0, 2])],
                 axis=1).astype("float32")
    return x, y


def zero_padded_sequences(rng):
    """`real_sequences` with whole timesteps zeroed: right, left and inner padding."""
    x, y = real_sequences(rng)
    x[0::3, T - 2:] = 0
    x[1::3, :3] = 0
    x[2::3, 2:4] = 0
    return x, y


def padded_sequences(rng):
    """`x (N, T)` int32 token ids in `[1, V)` padded with 0 (even rows on the right, odd rows on
    the left, the last row all padding) and class labels `y (N,)` in `[0, K)`."""
    lengths = rng.integers(1, T + 1, size=N)
    lengths[-1] = 0
    x = np.zeros((N, T), dtype="int32")
    for n, length in enumerate(lengths):
        tokens = rng.integers(1, V, size=length)
        if n % 2 == 0:
            x[n, :length] = tokens
        else:
            x[n, T - length:] = tokens
    y = (x.sum(axis=1) % K).astype("int32")
    return x, y


def build(kind):
    """`(pylstm model, Keras model, loss)` for a model kind, layer for layer the same; Keras's
    initializers are seeded, and their weights are copied into pylstm's model."""
    keras.utils.set_random_seed(0)
    if kind in ("lstm_dense", "masking"):
        ours = [Input((T, D)), LSTM(H), Dense(K)]
        theirs = [keras.Input((T, D)), keras.layers.LSTM(H), keras.layers.Dense(K)]
        if kind == "masking":
            ours.insert(1, Masking(0.0))
            theirs.insert(1, keras.layers.Masking(0.0))
        return Sequential(ours), keras.Sequential(theirs), "mse"
    ours = [Input((T,)), Embedding(V, E, mask_zero=True)]
    theirs = [keras.Input((T,), dtype="int32"), keras.layers.Embedding(V, E, mask_zero=True)]
    if kind == "embedding_stacked":
        ours.append(LSTM(H, return_sequences=True))
        theirs.append(keras.layers.LSTM(H, return_sequences=True))
    ours += [LSTM(H), Dense(K, activation="softmax")]
    theirs += [keras.layers.LSTM(H), keras.layers.Dense(K, activation="softmax")]
    return Sequential(ours), keras.Sequential(theirs), "sparse_categorical_crossentropy"


OPTIMIZERS = {
    # name -> (pylstm optimizer, Keras optimizer), both with Keras's defaults otherwise
    "sgd": (lambda: optimizers.SGD(learning_rate=0.5),
            lambda: keras.optimizers.SGD(learning_rate=0.5)),
    "adam": (lambda: optimizers.Adam(learning_rate=0.02),
             lambda: keras.optimizers.Adam(learning_rate=0.02)),
}


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("kind", ["lstm_dense", "embedding_masked", "embedding_stacked",
                                  "masking"])
def test_training_matches_keras(kind, optimizer):
    rng = np.random.default_rng(0)
    data = {"lstm_dense": real_sequences, "masking": zero_padded_sequences}
    x, y = data.get(kind, padded_sequences)(rng)
    ours, theirs, loss = build(kind)
    ku.copy_weights(theirs, ours)
    initial = theirs.get_weights()

    make_ours, make_theirs = OPTIMIZERS[optimizer]
    ours.compile(optimizer=make_ours(), loss=loss)
    got = ours.fit(x, y, batch_size=BATCH_SIZE, epochs=EPOCHS, shuffle=False, verbose=0)
    want = ku.keras_fit(theirs, x, y, make_theirs(), loss, EPOCHS, BATCH_SIZE)

    np.testing.assert_allclose(got.history["loss"], want, rtol=1e-4)
    assert want[-1] < want[0], "training should lower the loss"
    for k, (w0, a, b) in enumerate(zip(initial, ours.get_weights(), theirs.get_weights())):
        atol = 1e-4 * float(np.abs(b).max())
        # Untrained weights would fail: training moved each well beyond the tolerance.
        assert (np.abs(b - w0) / (1e-3 * np.abs(b) + atol)).max() > 5, f"weight {k} barely moved"
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=atol, err_msg=f"weight {k}")
