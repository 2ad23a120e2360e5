import io
import json
import os
import zipfile

import numpy as np
import pytest

from pylstm import losses, metrics, optimizers, utils
from pylstm.callbacks import Callback
from pylstm.layers import Dense, Dropout, Flatten, Input
from pylstm.models import Sequential, load_model


def _regression_data(n=128, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5]], dtype="float32") + 0.3
    return x, y


def _model(**compile_kwargs):
    model = Sequential([Input((3,)), Dense(8, activation="tanh"), Dense(1)])
    model.compile(**{"optimizer": "adam", "loss": "mse", **compile_kwargs})
    return model


def test_fit_reduces_loss_and_fills_history():
    utils.set_random_seed(0)
    x, y = _regression_data()
    model = _model(optimizer=optimizers.Adam(0.05), metrics=["mae"])
    history = model.fit(x, y, batch_size=16, epochs=15, verbose=0)
    assert sorted(history.history) == ["loss", "mae"]
    assert history.epoch == list(range(15)) and model.history is history
    assert len(history.history["loss"]) == 15
    assert history.history["loss"][-1] < 0.1 * history.history["loss"][0]
    assert all(isinstance(v, float) for v in history.history["mae"])


def test_one_training_step_follows_the_exact_gradient():
    # SGD(lr=1) on the full batch moves each weight by minus d loss / d weight, which is
    # checked against central differences of the model's loss: the whole backward chain.
    utils.set_random_seed(1)
    x, y = _regression_data(10)
    x, y = x.astype("float64"), y.astype("float64")
    model = Sequential([Dense(4, activation="sigmoid", dtype="float64", input_shape=(3,)),
                        Dense(1, dtype="float64")])
    model.compile(optimizer=optimizers.SGD(1.0), loss="mse")
    before = model.get_weights()
    expected = []
    for var in model.weights:
        grad = np.zeros_like(var.value)
        for i in np.ndindex(var.shape):
            old = var.value[i]
            var.value[i] = old + 1e-6
            plus = model.evaluate(x, y, verbose=0)
            var.value[i] = old - 1e-6
            minus = model.evaluate(x, y, verbose=0)
            var.value[i] = old
            grad[i] = (plus - minus) / 2e-6
        expected.append(grad)
    model.fit(x, y, batch_size=10, epochs=1, shuffle=False, verbose=0)
    for b, a, g in zip(before, model.get_weights(), expected):
        np.testing.assert_allclose(b - a, g, rtol=1e-6, atol=1e-9)


def test_validation_split_holds_out_the_last_samples():
    x, y = _regression_data(50)
    model = _model(metrics=["mae"])
    history = model.fit(x, y, epochs=2, validation_split=0.2, verbose=0)
    assert sorted(history.history) == ["loss", "mae", "val_loss", "val_mae"]
    val_loss, val_mae = model.evaluate(x[40:], y[40:], verbose=0)
    assert history.history["val_loss"][-1] == pytest.approx(val_loss, rel=1e-6)
    assert history.history["val_mae"][-1] == pytest.approx(val_mae, rel=1e-6)
    assert model.evaluate(x[:10], y[:10], verbose=0) != pytest.approx(val_loss, rel=1e-3)
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(x, y, validation_split=1.5, verbose=0)


def test_validation_data_and_initial_epoch():
    x, y = _regression_data(40)
    model = _model()
    history = model.fit(x, y, epochs=3, initial_epoch=1, validation_data=(x[:8], y[:8]),
                        verbose=0)
    assert history.epoch == [1, 2]
    assert history.history["val_loss"][-1] == pytest.approx(
        model.evaluate(x[:8], y[:8], verbose=0), rel=1e-6)


def test_seeded_training_is_reproducible():
    x, y = _regression_data(64)
    runs = []
    for _ in range(2):
        utils.set_random_seed(42)
        model = Sequential([Input((3,)), Dense(6, activation="relu"), Dropout(0.3), Dense(1)])
        model.compile("rmsprop", "mse")
        runs.append(model.fit(x, y, batch_size=8, epochs=3, verbose=0).history["loss"])
    assert runs[0] == runs[1]


def test_evaluate_return_forms_and_values():
    x, y = _regression_data(30)
    model = _model(metrics=["mae", "mse"])
    model.build((None, 3))
    pred = model.predict(x)
    loss, mae, mse = model.evaluate(x, y, batch_size=7, verbose=0)
    assert loss == pytest.approx(float(np.mean((pred - y) ** 2)), rel=1e-5)
    assert mae == pytest.approx(float(np.mean(np.abs(pred - y))), rel=1e-5)
    assert mse == pytest.approx(loss, rel=1e-6)
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert list(logs) == ["loss", "mae", "mse"]
    assert isinstance(_model().evaluate(x, y, verbose=0), float)


def test_predict_and_call():
    x, _ = _regression_data(25)
    model = _model()
    out = model.predict(x, batch_size=4)
    assert out.shape == (25, 1) and out.dtype == np.float32
    np.testing.assert_allclose(out, model.predict(x, batch_size=100), rtol=1e-6)
    np.testing.assert_allclose(model(x), out, rtol=1e-6)
    assert model(x.astype("float64")).dtype == np.float32  # cast to the model's dtype


def test_sequences_through_dense_and_flatten():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 5, 2)).astype("float32")
    model = Sequential([Dense(3, activation="tanh", input_shape=(5, 2)), Flatten(), Dense(1)])
    model.compile("sgd", "mse")
    model.fit(x, x.sum(axis=(1, 2))[:, None], epochs=1, verbose=0)
    assert model.predict(x).shape == (16, 1)
    timewise = Sequential([Dense(4, input_shape=(5, 2))])
    assert timewise.predict(x).shape == (16, 5, 4)


def test_classification_with_accuracy():
    utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((240, 2)).astype("float32")
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)  # classes 0, 1, 2
    model = Sequential([Input((2,)), Dense(16, activation="relu"), Dense(3, activation="softmax")])
    model.compile(optimizers.Adam(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, labels, epochs=20, batch_size=32, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    assert model.evaluate(x, labels, verbose=0, return_dict=True)["accuracy"] > 0.9


def test_accuracy_dispatch_like_keras():
    probs = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    np.testing.assert_array_equal(metrics.accuracy(np.array([1, 1, 1]), probs), [1, 0, 1])
    np.testing.assert_array_equal(metrics.accuracy(np.array([[1], [0], [0]]), probs), [1, 1, 0])
    onehot = np.array([[0, 1], [0, 1], [1, 0]])
    np.testing.assert_array_equal(metrics.accuracy(onehot, probs), [1, 0, 0])
    binary = np.array([[0.6], [0.4], [0.5]])
    np.testing.assert_array_equal(metrics.accuracy(np.array([[1], [1], [0]]), binary), [1, 0, 1])
    assert metrics.get("acc")._fn is metrics.accuracy and metrics.get("acc").name == "acc"
    with pytest.raises(ValueError, match="accuracy"):
        metrics.get("acuracy")


def test_regularizer_hook_adds_penalty_and_gradient():
    class L2:
        def __call__(self, w):
            return 0.5 * float(np.sum(w * w))

        def gradient(self, w):
            return w

    x, y = np.ones((4, 2)), np.zeros((4, 1))
    model = Sequential([Dense(1, dtype="float64", input_shape=(2,), kernel_initializer="ones")])
    model.compile(optimizers.SGD(0.1), "mse")
    kernel = model.layers[0].kernel
    kernel.regularizer = L2()
    assert model.evaluate(x, y, verbose=0) == pytest.approx(4.0 + 1.0)
    loss = model.fit(x, y, batch_size=4, verbose=0).history["loss"][0]
    assert loss == pytest.approx(5.0)
    # d mse / d kernel = 2 * (x @ k) * x averaged = [4, 4]; plus the penalty's gradient [1, 1].
    np.testing.assert_allclose(kernel.value, 1 - 0.1 * 5.0)
    kernel.regularizer = lambda w: 0.0
    with pytest.raises(TypeError, match="gradient"):
        model.fit(x, y, verbose=0)


def test_verbose_modes(capsys):
    """Progress goes to stderr as Keras prints it: nothing with verbose 0; with 2 an
    `Epoch i/N` line and a summary line per epoch; with 1 a bar per epoch."""
    x, y = _regression_data(20)
    model = _model(metrics=["mae"])
    model.fit(x, y, epochs=2, verbose=0)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    assert capsys.readouterr() == ("", "")
    model.fit(x, y, batch_size=5, epochs=2, verbose=2, validation_split=0.25)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and len(lines) == 4 and lines[2] == "Epoch 2/2"
    assert lines[3].startswith("3/3 - ") and " - loss: " in lines[3]
    assert " - val_mae: " in lines[3]
    model.fit(x, y, epochs=2, verbose=1)
    assert "Epoch 2/2" in capsys.readouterr().err
    model.evaluate(x, y, batch_size=5, verbose=2)
    assert capsys.readouterr().err.startswith("4/4 - ")


def test_callbacks_can_stop_training():
    class StopAfterTwo(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    x, y = _regression_data(16)
    history = _model().fit(x, y, epochs=10, callbacks=[StopAfterTwo()], verbose=0)
    assert history.epoch == [0, 1]


def test_summary():
    model = Sequential([Input((3,)), Dense(8, name="hidden"), Dense(2, name="out")], name="net")
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert 'Model: "net"' in text
    assert "hidden (Dense)" in text and "(None, 8)" in text and "32" in text
    assert "out (Dense)" in text and "(None, 2)" in text and "18" in text
    assert "Total params: 50 (200.00 B)" in text and "Non-trainable params: 0" in text
    with pytest.raises(ValueError, match="not yet been built"):
        Sequential([Dense(1)]).summary()


def test_save_load_round_trip(tmp_path):
    x, y = _regression_data(32)
    model = _model(optimizer=optimizers.Adam(0.01, amsgrad=True), metrics=["mae"])
    model.fit(x, y, epochs=2, verbose=0)
    path = tmp_path / "model.pylstm"
    model.save(path)
    assert sorted(os.listdir(tmp_path)) == ["model.pylstm"]  # no .npz suffix, no temp file
    with zipfile.ZipFile(path) as archive:
        assert "config.json.npy" in archive.namelist()
    loaded = load_model(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.get_config() == model.get_config()
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert isinstance(loaded.loss, losses.MeanSquaredError)
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0))
    loaded.fit(x, y, epochs=1, verbose=0)  # a reloaded model trains


def test_save_uncompiled_model_built_from_data(tmp_path):
    x, _ = _regression_data(8)
    model = Sequential([Dense(2), Dense(1, activation="sigmoid")])
    model.predict(x)
    model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.optimizer is None
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_damaged_or_foreign_files_raise_value_error(tmp_path):
    model = _model()
    model.build((None, 3))
    path = tmp_path / "good.pylstm"
    model.save(path)
    data = path.read_bytes()
    bad = tmp_path / "bad"
    for content in (data[: len(data) // 2], b"hello, not a model", data[:100]):
        bad.write_bytes(content)
        with pytest.raises(ValueError, match="is not a valid pylstm model file"):
            load_model(bad)
    np.savez(bad.with_suffix(".npz"), a=np.zeros(3))
    with pytest.raises(ValueError, match="no config.json"):
        load_model(bad.with_suffix(".npz"))
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing")


def _rewrite_config(path, edit):
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    config = edit(json.loads(arrays["config.json"].tobytes()))
    arrays["config.json"] = np.frombuffer(json.dumps(config).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def test_unknown_layer_class_and_wrong_weight_count(tmp_path):
    model = _model()
    model.build((None, 3))
    path = tmp_path / "m.pylstm"
    model.save(path)

    def rename(config):
        config["model"]["layers"][1]["class_name"] = "Mystery"
        return config

    _rewrite_config(path, rename)
    with pytest.raises(ValueError, match="Mystery"):
        load_model(path)
    model.save(path)

    def drop_layer(config):
        del config["model"]["layers"][2]
        return config

    _rewrite_config(path, drop_layer)
    with pytest.raises(ValueError, match="is not a valid pylstm model file.*weight arrays"):
        load_model(path)


def test_config_round_trip():
    model = Sequential([Input((4,), name="x_in"), Dense(3, activation="relu"), Dropout(0.2, seed=1),
                        Dense(1)])
    config = json.loads(json.dumps(model.get_config()))
    clone = Sequential.from_config(config)
    assert clone.get_config() == model.get_config()
    assert [type(layer) for layer in clone.layers] == [Dense, Dropout, Dense]
    assert clone.built and clone.count_params() == model.count_params()


@pytest.mark.parametrize("x,y,error,match", [
    (np.array([["a", "b", "c"]] * 4), np.zeros((4, 1)), TypeError, "`x`"),
    (np.array([[object()] * 3] * 4), np.zeros((4, 1)), TypeError, "`x`"),
    (np.full((4, 3), np.nan), np.zeros((4, 1)), ValueError, "`x`.*NaN"),
    (np.zeros((4, 3)), np.array([[np.inf]] * 4), ValueError, "`y`.*infinite"),
    (np.zeros((4, 3)), np.zeros((5, 1)), ValueError, "same number of samples"),
    (np.zeros((0, 3)), np.zeros((0, 1)), ValueError, "at least one sample"),
    (np.zeros((4, 5)), np.zeros((4, 1)), ValueError, "inputs"),
])
def test_bad_inputs_get_clear_errors(x, y, error, match):
    model = _model()
    with pytest.raises(error, match=match):
        model.fit(x, y, verbose=0)
    with pytest.raises(error, match=match):
        model.evaluate(x, y, verbose=0)


def test_predict_input_errors_and_uncompiled_fit():
    model = _model()
    with pytest.raises(TypeError, match="`x`"):
        model.predict(np.array(["1", "2"]))
    with pytest.raises(ValueError, match="`x`"):
        model.predict(np.array([[1e39, 0.0, 0.0]]))  # overflows float32
    with pytest.raises(RuntimeError, match="compile"):
        Sequential([Dense(1)]).fit(np.zeros((2, 1)), np.zeros((2, 1)), verbose=0)
    with pytest.raises(ValueError, match="first layer"):
        Sequential([Dense(1), Input((3,))])
