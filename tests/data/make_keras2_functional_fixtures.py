"""Writes the Keras 2 functional model fixtures of tests/files/test_keras_functional_files.py
(run once; needs h5py and Keras 3).

    KERAS_BACKEND=tensorflow python tests/data/make_keras2_functional_fixtures.py

Keras 2 (tf_keras) cannot be installed beside Keras 3, so the files are written here with h5py,
in the legacy HDF5 layout of Keras 2's `model.save("NAME.h5")`: the root attributes
`keras_version`, `backend` and `model_config`, and a `model_weights` group with `layer_names`,
one group per layer with `weight_names`, each array at `<layer>/<weight name>`. The configs
follow what Keras 2 wrote (as in tests/data/keras2_lstm.h5, written by tf_keras 2.21, and the
Keras 2.1 config of Keras's lstm_seq2seq example): nodes as lists of `[layer, node, tensor,
kwargs]`, an RNN's `initial_state` as extra inputs, a nested model's calls numbered from 1.

`NAME_expected.npz` holds the input batches (`x0`, `x1`, ...) and the outputs (`y0`, ...) that
Keras 3 computes for the same architecture built in code with the same weights (Keras 2's
`hard_sigmoid`, `clip(0.2 x + 0.5, 0, 1)`, as a custom activation).
"""

import gzip
import json
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
L = keras.layers


def keras2_hard_sigmoid(x):
    return keras.ops.clip(0.2 * x + 0.5, 0.0, 1.0)


def initializer(class_name, **config):
    return {"module": "keras.initializers", "class_name": class_name, "config": config,
            "registered_name": None}


def lstm_config(name, units, **options):
    """An LSTM's config as Keras 2 wrote it (tf_keras 2.x keys)."""
    return {"name": name, "trainable": True, "dtype": "float32", "return_sequences": False,
            "return_state": False, "go_backwards": False, "stateful": False, "unroll": False,
            "time_major": False, "units": units, "activation": "tanh",
            "recurrent_activation": "sigmoid", "use_bias": True,
            "kernel_initializer": initializer("GlorotUniform", seed=None),
            "recurrent_initializer": initializer("Orthogonal", gain=1.0, seed=None),
            "bias_initializer": initializer("Zeros"), "unit_forget_bias": True,
            "kernel_regularizer": None, "recurrent_regularizer": None,
            "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
            "recurrent_constraint": None, "bias_constraint": None, "dropout": 0.0,
            "recurrent_dropout": 0.0, "implementation": 2, **options}


def keras21_lstm_config(name, units, **options):
    """An LSTM's config as Keras 2.1 wrote it (the keys and initializers of its
    lstm_seq2seq example's file)."""
    glorot = {"class_name": "VarianceScaling", "config": {
        "scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "seed": None}}
    return {"units": units, "activation": "tanh", "recurrent_activation": "hard_sigmoid",
            "use_bias": True, "kernel_initializer": glorot,
            "recurrent_initializer": {"class_name": "Orthogonal",
                                      "config": {"gain": 1.0, "seed": None}},
            "bias_initializer": {"class_name": "Zeros", "config": {}},
            "unit_forget_bias": True, "kernel_regularizer": None, "recurrent_regularizer": None,
            "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
            "recurrent_constraint": None, "bias_constraint": None, "dropout": 0.0,
            "recurrent_dropout": 0.0, "implementation": 1, "return_sequences": False,
            "return_state": False, "go_backwards": False, "stateful": False, "unroll": False,
            "name": name, "trainable": True, **options}


def dense_config(name, units, activation="linear"):
    return {"name": name, "trainable": True, "dtype": "float32", "units": units,
            "activation": activation, "use_bias": True,
            "kernel_initializer": initializer("GlorotUniform", seed=None),
            "bias_initializer": initializer("Zeros"), "kernel_regularizer": None,
            "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
            "bias_constraint": None}


def input_config(name, batch_shape):
    return {"batch_input_shape": batch_shape, "dtype": "float32", "sparse": False,
            "ragged": False, "name": name}


def entry(class_name, config, *nodes):
    """A functional model's layer entry; each node a list of `(layer, node, tensor)`."""
    return {"class_name": class_name, "config": config, "name": config["name"],
            "inbound_nodes": [[[*ref, {}] for ref in node] for node in nodes]}


def write(name, version, model_config, weights):
    """Writes NAME.h5.gz: `weights` is `[(layer name, [(weight name, array)])]` in the
    order of Keras 2's `model.layers`."""
    path = os.path.join(HERE, f"{name}.h5")
    with h5py.File(path, "w") as f:
        f.attrs["backend"] = "tensorflow"
        f.attrs["keras_version"] = version
        f.attrs["model_config"] = json.dumps(model_config)
        group = f.create_group("model_weights")
        group.attrs["backend"] = "tensorflow"
        group.attrs["keras_version"] = version
        group.attrs["layer_names"] = [layer.encode() for layer, _ in weights]
        for layer, arrays in weights:
            layer_group = group.create_group(layer)
            layer_group.attrs["weight_names"] = [w.encode() for w, _ in arrays]
            for weight_name, value in arrays:
                layer_group.create_dataset(weight_name, data=value)
    with open(path, "rb") as f:
        data = gzip.compress(f.read(), compresslevel=9, mtime=0)
    with open(path + ".gz", "wb") as g:
        g.write(data)
    os.remove(path)


def lstm_weights(prefix, layer):
    kernel, recurrent_kernel, bias = layer.get_weights()
    return [(f"{prefix}/kernel:0", kernel), (f"{prefix}/recurrent_kernel:0", recurrent_kernel),
            (f"{prefix}/bias:0", bias)]


def dense_weights(prefix, layer):
    kernel, bias = layer.get_weights()
    return [(f"{prefix}/kernel:0", kernel), (f"{prefix}/bias:0", bias)]


def randomize(model, rng, scale):
    model.set_weights([rng.normal(scale=scale, size=w.shape).astype("float32")
                       for w in model.get_weights()])


def save_expected(name, xs, ys):
    np.savez(os.path.join(HERE, f"{name}_expected.npz"),
             **{f"x{i}": x for i, x in enumerate(xs)}, **{f"y{i}": y for i, y in enumerate(ys)})


def seq2seq(rng):
    """Keras 2.1's lstm_seq2seq: the encoder's states start the decoder (states as extra
    inputs of the decoder's call), Keras 2's hard_sigmoid gates, the class name "Model"."""
    encoder_in = keras.Input((None, 7), name="input_1")
    decoder_in = keras.Input((None, 5), name="input_2")
    encoder = L.LSTM(6, return_state=True, recurrent_activation=keras2_hard_sigmoid,
                     name="lstm_1")
    decoder = L.LSTM(6, return_sequences=True, recurrent_activation=keras2_hard_sigmoid,
                     name="lstm_2")
    dense = L.Dense(5, activation="softmax", name="dense_1")
    _, h, c = encoder(encoder_in)
    model = keras.Model([encoder_in, decoder_in],
                        dense(decoder(decoder_in, initial_state=[h, c])))
    randomize(model, rng, 1.0)
    config = {"class_name": "Model", "config": {"name": "model_1", "layers": [
        entry("InputLayer", input_config("input_1", [None, None, 7])),
        entry("InputLayer", input_config("input_2", [None, None, 5])),
        entry("LSTM", keras21_lstm_config("lstm_1", 6, return_state=True), [("input_1", 0, 0)]),
        entry("LSTM", keras21_lstm_config("lstm_2", 6, return_sequences=True),
              [("input_2", 0, 0), ("lstm_1", 0, 1), ("lstm_1", 0, 2)]),
        entry("Dense", dense_config("dense_1", 5, "softmax"), [("lstm_2", 0, 0)]),
    ], "input_layers": [["input_1", 0, 0], ["input_2", 0, 0]],
        "output_layers": [["dense_1", 0, 0]]}}
    # Keras 2.1 named the LSTM's arrays without its cell.
    write("keras2_seq2seq", "2.1.2", config, [
        ("input_1", []), ("input_2", []),
        ("lstm_1", lstm_weights("lstm_1", encoder)), ("lstm_2", lstm_weights("lstm_2", decoder)),
        ("dense_1", dense_weights("dense_1", dense))])
    xs = [rng.normal(size=(4, 6, 7)).astype("float32"),
          rng.normal(size=(4, 5, 5)).astype("float32")]
    save_expected("keras2_seq2seq", xs, [model.predict(xs, verbose=0)])


def nested(rng):
    """tf_keras 2.x: a shared LSTM on two inputs, Concatenate, a nested Sequential (built with
    an InputLayer) and a nested Functional, two outputs."""
    a, b = keras.Input((5, 3), name="a"), keras.Input((4, 3), name="b")
    shared = L.LSTM(4, name="lstm")
    concatenate = L.Concatenate(name="concatenate")
    head = keras.Sequential([keras.Input((8,), name="head_input"),
                             L.Dense(6, activation="relu", name="dense")], name="head")
    proj_in = keras.Input((6,), name="proj_input")
    proj = keras.Model(proj_in, L.Dense(2, activation="tanh", name="dense_1")(proj_in),
                       name="proj")
    merged = concatenate([shared(a), shared(b)])
    model = keras.Model([a, b], [proj(head(merged)), merged])
    randomize(model, rng, 0.6)
    sequential = {"class_name": "Sequential", "config": {"name": "head", "layers": [
        {"class_name": "InputLayer", "config": input_config("head_input", [None, 8])},
        {"class_name": "Dense", "config": dense_config("dense", 6, "relu")}]},
        "name": "head", "inbound_nodes": [[["concatenate", 0, 0, {}]]]}
    functional = {"class_name": "Functional", "config": {"name": "proj", "layers": [
        entry("InputLayer", input_config("proj_input", [None, 6])),
        entry("Dense", dense_config("dense_1", 2, "tanh"), [("proj_input", 0, 0)])],
        "input_layers": [["proj_input", 0, 0]], "output_layers": [["dense_1", 0, 0]]},
        "name": "proj", "inbound_nodes": [[["head", 1, 0, {}]]]}
    config = {"class_name": "Functional", "config": {"name": "model", "layers": [
        entry("InputLayer", input_config("a", [None, 5, 3])),
        entry("InputLayer", input_config("b", [None, 4, 3])),
        entry("LSTM", lstm_config("lstm", 4), [("a", 0, 0)], [("b", 0, 0)]),
        entry("Concatenate", {"name": "concatenate", "trainable": True, "dtype": "float32",
                              "axis": -1}, [("lstm", 0, 0), ("lstm", 1, 0)]),
        sequential, functional,
    ], "input_layers": [["a", 0, 0], ["b", 0, 0]],
        "output_layers": [["proj", 1, 0], ["concatenate", 0, 0]]}}
    write("keras2_functional", "2.15.0", config, [
        ("a", []), ("b", []), ("lstm", lstm_weights("lstm/lstm_cell", shared)),
        ("concatenate", []), ("head", dense_weights("dense", head.layers[0])),
        ("proj", dense_weights("dense_1", proj.layers[1]))])
    xs = [rng.normal(size=(4, 5, 3)).astype("float32"),
          rng.normal(size=(4, 4, 3)).astype("float32")]
    save_expected("keras2_functional", xs, model.predict(xs, verbose=0))


def main():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    seq2seq(rng)
    nested(rng)


if __name__ == "__main__":
    main()
