"""RepeatVector, Reshape and Permute against Keras 3 on the same inputs (outputs within 1e-5,
input gradients within 1e-4 relative via `keras_call`'s vector-Jacobian product, masks as Keras
drops them), and Keras-saved Sequential files holding them loaded with `load_keras`. Oracle-free
checks: unit/layers/test_reshaping.py."""

import numpy as np
import pytest

from pylstm import layers
from pylstm.models import load_keras

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

keras = ku.keras

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

B, T, D = 3, 6, 4
RTOL_OUT, ATOL_OUT = 1e-5, 1e-6
RTOL_GRAD, ATOL_GRAD = 1e-4, 1e-6

CASES = [
    ("RepeatVector", {"n": 3}, (B, D)),
    ("Reshape", {"target_shape": (-1, 2)}, (B, T, D)),
    ("Reshape", {"target_shape": (2, 3, 4)}, (B, T, D)),
    ("Reshape", {"target_shape": (T * D,)}, (B, T, D)),
    ("Permute", {"dims": (2, 1)}, (B, T, D)),
    ("Permute", {"dims": (3, 1, 2)}, (B, T, 2, D)),
]


@pytest.mark.parametrize("name,kwargs,shape", CASES)
def test_parity(name, kwargs, shape):
    rng = np.random.default_rng(0)
    ours, theirs = getattr(layers, name)(**kwargs), getattr(keras.layers, name)(**kwargs)
    x = rng.normal(size=shape).astype("float32")
    y = ours(x, training=True)
    upstream = rng.normal(size=y.shape).astype("float32")
    (k_y,), k_grads = ku.keras_call(theirs, x, [upstream])
    np.testing.assert_allclose(y, k_y, rtol=RTOL_OUT, atol=ATOL_OUT)
    np.testing.assert_allclose(ours.backward(upstream), k_grads["inputs"], rtol=RTOL_GRAD,
                               atol=ATOL_GRAD)
    none_shape = (None,) + shape[1:]
    assert ours.compute_output_shape(none_shape) == tuple(theirs.compute_output_shape(none_shape))
    config = theirs.get_config()
    assert set(ours.get_config()) == set(config)
    clone = type(ours).from_config(dict(config, dtype="float32"))
    np.testing.assert_array_equal(clone(x), y)


@pytest.mark.parametrize("name,kwargs,shape", [c for c in CASES if len(c[2]) == 3])
def test_masks_dropped_like_keras(name, kwargs, shape):
    """Keras 3's reshaping layers do not support masking: the mask stops there."""
    theirs = getattr(keras.layers, name)(**kwargs)
    assert not theirs.supports_masking
    ours = getattr(layers, name)(**kwargs)
    assert not ours.supports_masking
    assert ours.compute_mask(np.zeros(shape), np.ones(shape[:2], bool)) is None


def test_unknown_dims_like_keras():
    for name, kwargs, shape in [("Reshape", {"target_shape": (-1, 2)}, (None, None, 4)),
                                ("Reshape", {"target_shape": (3, 8)}, (None, None, 4)),
                                ("Permute", {"dims": (2, 1)}, (None, None, 4)),
                                ("RepeatVector", {"n": 2}, (None, None))]:
        ours, theirs = getattr(layers, name)(**kwargs), getattr(keras.layers, name)(**kwargs)
        assert ours.compute_output_shape(shape) == tuple(theirs.compute_output_shape(shape))


# Keras files --------------------------------------------------------------------------------

L = keras.layers

FILE_SPECS = {
    "repeat_vector": lambda: [keras.Input((T, D)), L.LSTM(5), L.RepeatVector(3),
                              L.LSTM(2, return_sequences=True)],
    "reshape": lambda: [keras.Input((T, D)), L.Reshape((-1, 2)), L.LSTM(3), L.Dense(2)],
    "permute": lambda: [keras.Input((T, D)), L.Permute((2, 1)), L.LSTM(3),
                        L.Reshape((3, 1)), L.Permute((2, 1))],
}


@pytest.mark.parametrize("name", list(FILE_SPECS))
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_file_loads_and_predicts_as_keras_and_back(name, suffix, tmp_path):
    rng = np.random.default_rng(1)
    model = keras.Sequential(FILE_SPECS[name]())
    model.set_weights([rng.normal(scale=0.5, size=w.shape).astype(w.dtype)
                       for w in model.get_weights()])
    x = rng.normal(size=(B, T, D)).astype("float32")
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
