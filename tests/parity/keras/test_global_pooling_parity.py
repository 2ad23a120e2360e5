"""GlobalAveragePooling1D and GlobalMaxPooling1D against Keras 3 on the same inputs (outputs
within 1e-5, input gradients within 1e-4 relative via `keras_call`'s vector-Jacobian product;
the masked mean; ties), and Keras-saved Sequential files holding them (a masked mean after an
Embedding among them) loaded with `load_keras`. Oracle-free checks:
unit/layers/test_global_pooling.py."""

import numpy as np
import pytest

from pylstm import layers
from pylstm.models import load_keras

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

keras = ku.keras

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

B, T, D = 4, 6, 3
RTOL_OUT, ATOL_OUT = 1e-5, 1e-6
RTOL_GRAD, ATOL_GRAD = 1e-4, 1e-6
MASK = np.array([[True, True, True, False, False, False], [False, False, True, True, True, True],
                 [True, False, True, False, True, True], [True] * T])


def check(name, kwargs, x, mask=None, exact=False):
    rng = np.random.default_rng(5)
    ours, theirs = getattr(layers, name)(**kwargs), getattr(keras.layers, name)(**kwargs)
    y = ours(x, training=True, mask=mask)
    upstream = rng.normal(size=y.shape).astype("float32")
    (k_y,), k_grads = ku.keras_call(theirs, x, [upstream], mask=mask)
    tol = {"rtol": 0, "atol": 0} if exact else {"rtol": RTOL_OUT, "atol": ATOL_OUT}
    np.testing.assert_allclose(y, k_y, **tol)
    np.testing.assert_allclose(ours.backward(upstream), k_grads["inputs"], rtol=RTOL_GRAD,
                               atol=ATOL_GRAD)
    none_shape = (None,) + x.shape[1:]
    assert ours.compute_output_shape(none_shape) == tuple(theirs.compute_output_shape(none_shape))
    assert ours.compute_mask(x, mask) is None
    config = theirs.get_config()
    assert set(ours.get_config()) == set(config)
    assert type(ours).from_config(dict(config, dtype="float32")).get_config() == \
        dict(config, dtype="float32")


@pytest.mark.parametrize("name", ["GlobalAveragePooling1D", "GlobalMaxPooling1D"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_parity(name, data_format, keepdims):
    shape = (B, T, D) if data_format == "channels_last" else (B, D, T)
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    check(name, {"data_format": data_format, "keepdims": keepdims}, x)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_masked_mean_parity(data_format, keepdims):
    shape = (B, T, D) if data_format == "channels_last" else (B, D, T)
    x = np.random.default_rng(1).normal(size=shape).astype("float32")
    check("GlobalAveragePooling1D", {"data_format": data_format, "keepdims": keepdims}, x,
          mask=MASK)


def test_max_ties_parity():
    x = np.random.default_rng(2).integers(0, 3, size=(B, T, D)).astype("float32")
    check("GlobalMaxPooling1D", {}, x, exact=True)


def test_fully_masked_sample_like_keras():
    x = np.random.default_rng(3).normal(size=(B, T, D)).astype("float32")
    mask = MASK.copy()
    mask[0] = False
    y = layers.GlobalAveragePooling1D()(x, mask=mask)
    (k_y,), _ = ku.keras_call(keras.layers.GlobalAveragePooling1D(), x, [np.ones_like(y)],
                              mask=mask)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(k_y))
    np.testing.assert_allclose(y[1:], k_y[1:], rtol=RTOL_OUT, atol=ATOL_OUT)


# Keras files --------------------------------------------------------------------------------

L = keras.layers

FILE_SPECS = {
    "average_masked": lambda: [keras.Input((T,), dtype="int32"),
                               L.Embedding(7, D, mask_zero=True),
                               L.LSTM(4, return_sequences=True), L.GlobalAveragePooling1D(),
                               L.Dense(2)],
    "average_channels_first": lambda: [keras.Input((T, D)), L.Conv1D(4, 2),
                                       L.GlobalAveragePooling1D(data_format="channels_first",
                                                                keepdims=True), L.Flatten()],
    "max": lambda: [keras.Input((T, D)), L.LSTM(4, return_sequences=True),
                    L.GlobalMaxPooling1D(keepdims=True), L.LSTM(2)],
}


def _inputs(name, rng):
    if name == "average_masked":
        x = rng.integers(1, 7, size=(B, T))
        x[0, 3:] = 0
        x[1, :2] = 0
        x[2, [1, 3]] = 0
        return x.astype("int32")
    return rng.normal(size=(B, T, D)).astype("float32")


@pytest.mark.parametrize("name", list(FILE_SPECS))
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_file_loads_and_predicts_as_keras_and_back(name, suffix, tmp_path):
    rng = np.random.default_rng(4)
    model = keras.Sequential(FILE_SPECS[name]())
    model.set_weights([rng.normal(scale=0.5, size=w.shape).astype(w.dtype)
                       for w in model.get_weights()])
    x = _inputs(name, rng)
    path = tmp_path / f"{name}{suffix}"
    model.save(path)
    ours = load_keras(path)
    assert [type(layer).__name__ for layer in ours.layers] == [
        type(layer).__name__ for layer in model.layers]
    np.testing.assert_allclose(ours.predict(x), np.asarray(model(x)), rtol=RTOL_OUT,
                               atol=ATOL_OUT)
    # and back: the file pylstm writes loads in Keras
    ours.save(tmp_path / "back.keras")
    back = keras.models.load_model(tmp_path / "back.keras")
    np.testing.assert_allclose(np.asarray(back(x)), np.asarray(model(x)), rtol=RTOL_OUT,
                               atol=ATOL_OUT)
