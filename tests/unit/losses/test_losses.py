"""`pylstm.losses`: gradients against central differences, hand-computed values and Keras's
clipping, stability from logits, float32 gradients and shape errors, aliases, config round
trips, `get`. Against PyTorch's losses: parity/torch/test_losses.py."""

import json

import numpy as np
import pytest

from pylstm import losses

rng = np.random.default_rng(0)


def _numeric_grad(loss, y_true, y_pred, h=1e-6):
    grad = np.zeros_like(y_pred)
    for i in np.ndindex(y_pred.shape):
        p, m = y_pred.copy(), y_pred.copy()
        p[i] += h
        m[i] -= h
        grad[i] = (loss(y_true, p) - loss(y_true, m)) / (2 * h)
    return grad


def _probs(shape):
    e = np.exp(rng.standard_normal(shape))
    return e / e.sum(axis=-1, keepdims=True)


def _onehot(labels, n):
    return np.eye(n)[labels]


CASES = [
    (losses.MeanSquaredError(), rng.standard_normal((4, 3)), rng.standard_normal((4, 3))),
    (losses.MeanSquaredError(), rng.standard_normal((2, 5, 3)), rng.standard_normal((2, 5, 3))),
    (losses.MeanAbsoluteError(), rng.standard_normal((4, 3)), rng.standard_normal((4, 3))),
    (losses.BinaryCrossentropy(), rng.integers(0, 2, (5, 2)).astype(float),
     rng.uniform(0.05, 0.95, (5, 2))),
    (losses.BinaryCrossentropy(from_logits=True), rng.uniform(0, 1, (5, 2)),
     rng.standard_normal((5, 2)) * 3),
    (losses.CategoricalCrossentropy(), _onehot(rng.integers(0, 4, 6), 4), _probs((6, 4))),
    # Unnormalised probabilities exercise Keras's renormalisation in the gradient.
    (losses.CategoricalCrossentropy(), _onehot(rng.integers(0, 4, 6), 4),
     rng.uniform(0.1, 1.0, (6, 4))),
    (losses.CategoricalCrossentropy(from_logits=True), _probs((3, 2, 4)),
     rng.standard_normal((3, 2, 4))),
    (losses.SparseCategoricalCrossentropy(), rng.integers(0, 5, 6), _probs((6, 5))),
    (losses.SparseCategoricalCrossentropy(from_logits=True), rng.integers(0, 5, (6, 1)),
     rng.standard_normal((6, 5))),
]


@pytest.mark.parametrize("loss,y_true,y_pred", CASES, ids=lambda v: repr(v)[:30])
def test_gradient_matches_central_differences(loss, y_true, y_pred):
    grad = loss.gradient(y_true, y_pred)
    assert grad.shape == y_pred.shape and grad.dtype == np.float64
    np.testing.assert_allclose(grad, _numeric_grad(loss, y_true, y_pred), rtol=1e-5, atol=1e-9)


def test_hand_computed_values_and_keras_clipping():
    assert losses.get("mse")([[0.0, 1.0]], [[1.0, 3.0]]) == pytest.approx(2.5)
    assert losses.get("mae")([[0.0, 1.0]], [[1.0, 3.0]]) == pytest.approx(1.5)
    # p = 0 is clipped to 1e-7 (Keras's epsilon): -log(1e-7), averaged over the last axis.
    assert losses.get("binary_crossentropy")([[1.0, 1.0]], [[0.0, 1.0]]) == pytest.approx(
        -np.log(1e-7) / 2, rel=1e-6)
    np.testing.assert_array_equal(
        losses.get("binary_crossentropy").gradient([[1.0]], [[0.0]]), [[0.0]])
    assert losses.get("categorical_crossentropy")([[0, 1]], [[0.2, 0.8]]) == pytest.approx(
        -np.log(0.8))
    # Targets without the trailing unit axis are expanded, as Keras does.
    assert losses.get("mse")([1.0, 2.0], [[1.5], [2.0]]) == pytest.approx(0.125)


def test_from_logits_is_stable_for_large_logits():
    big = np.array([[1000.0, -1000.0]])
    assert np.isfinite(losses.BinaryCrossentropy(from_logits=True)([[0.0, 1.0]], big))
    value = losses.SparseCategoricalCrossentropy(from_logits=True)([1], big)
    assert value == pytest.approx(2000.0)


def test_float32_gradient_dtype_and_shape_errors():
    g = losses.get("mse").gradient(np.ones((2, 3), "float32"), np.zeros((2, 3), "float32"))
    assert g.dtype == np.float32
    with pytest.raises(ValueError, match="y_true"):
        losses.get("mse")(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        losses.get("sparse_categorical_crossentropy")([0, 3], _probs((2, 3)))
    with pytest.raises(ValueError, match="y_true"):
        losses.get("sparse_categorical_crossentropy")([0, 1, 2], _probs((2, 3)))


@pytest.mark.parametrize("alias,cls", [
    ("mse", losses.MeanSquaredError), ("mean_squared_error", losses.MeanSquaredError),
    ("mae", losses.MeanAbsoluteError), ("MeanAbsoluteError", losses.MeanAbsoluteError),
    ("binary_crossentropy", losses.BinaryCrossentropy),
    ("categorical_crossentropy", losses.CategoricalCrossentropy),
    ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy)])
def test_aliases(alias, cls):
    assert type(losses.get(alias)) is cls


@pytest.mark.parametrize("loss", [losses.MeanSquaredError(), losses.MeanAbsoluteError(),
                                  losses.BinaryCrossentropy(from_logits=True),
                                  losses.CategoricalCrossentropy(),
                                  losses.SparseCategoricalCrossentropy(from_logits=True)])
def test_config_round_trip_through_json(loss):
    clone = losses.deserialize(json.loads(json.dumps(losses.serialize(loss))))
    assert type(clone) is type(loss) and clone.get_config() == loss.get_config()
    assert losses.get(losses.serialize(loss)).get_config() == loss.get_config()


def test_get_rejects_unknown_and_gradientless():
    with pytest.raises(ValueError, match="mse"):
        losses.get("msee")
    with pytest.raises(ValueError, match="gradient"):
        losses.get(lambda y_true, y_pred: 0.0)
