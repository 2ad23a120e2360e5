"""Writes the Keras 2 fixtures of tests/parity/keras/test_keras_files.py (run once; needs tf_keras).

    pip install --no-deps --target /tmp/tfk tf-keras==2.21.0
    PYTHONPATH=/tmp/tfk python tests/data/make_keras2_fixtures.py

tf_keras is Keras 2, whose "hard_sigmoid" is clip(0.2 x + 0.5, 0, 1). Each model is saved with
`model.save("NAME.h5")` (the legacy HDF5 format) and, where noted, its weights with
`save_weights("NAME.weights.h5")` (Keras 3's layout, which tf_keras writes for that suffix) and
`save_weights("NAME_legacy_weights.h5")` (the legacy layout); `NAME_expected.npz` holds an input
batch `x` and tf_keras's `model.predict(x)` as `y`. The HDF5 files are stored gzipped (mostly
padding, they shrink ~8x); the tests unzip them into a temporary directory.
"""

import gzip
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tf_keras as keras  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def gzipped(path):
    with open(path, "rb") as f:
        data = gzip.compress(f.read(), compresslevel=9, mtime=0)
    with open(path + ".gz", "wb") as g:
        g.write(data)
    os.remove(path)


def save(model, name, x, weights=False):
    files = [f"{name}.h5"]
    model.save(os.path.join(HERE, files[0]))
    if weights:
        files += [f"{name}.weights.h5", f"{name}_legacy_weights.h5"]
        model.save_weights(os.path.join(HERE, files[1]))
        model.save_weights(os.path.join(HERE, files[2]))
    for file in files:
        gzipped(os.path.join(HERE, file))
    y = model.predict(x, verbose=0)
    np.savez(os.path.join(HERE, f"{name}_expected.npz"), x=x, y=y)


def main():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    layers = keras.layers

    # LSTM stack with Keras 2's hard_sigmoid as gate and output activation.
    model = keras.Sequential([
        layers.LSTM(4, recurrent_activation="hard_sigmoid", return_sequences=True,
                    input_shape=(5, 3)),
        layers.LSTM(3, activation="hard_sigmoid", go_backwards=True),
        layers.Dense(2, activation="hard_sigmoid"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    # Large weights push the gates into hard_sigmoid's flat region, where the Keras 2 and 3
    # definitions differ most.
    model.set_weights([3 * w + 0.5 * rng.normal(size=w.shape) for w in model.get_weights()])
    save(model, "keras2_lstm", rng.normal(size=(4, 5, 3)).astype("float32"), weights=True)

    # Token ids with padding, through the wrappers.
    model = keras.Sequential([
        layers.Embedding(9, 3, mask_zero=True, input_shape=(6,)),
        layers.Bidirectional(layers.LSTM(2, return_sequences=True,
                                         recurrent_activation="hard_sigmoid"), merge_mode="sum"),
        layers.TimeDistributed(layers.Dense(3)),
        layers.RNN(layers.LSTMCell(2)),
        layers.Dense(1),
    ])
    model.compile(optimizer="sgd", loss="mse")
    model.set_weights([w + 0.3 * rng.normal(size=w.shape) for w in model.get_weights()])
    x = rng.integers(1, 9, size=(4, 6)).astype("float32")
    x[0, 4:] = 0
    x[2, 1:] = 0
    save(model, "keras2_wrappers", x)


if __name__ == "__main__":
    main()
