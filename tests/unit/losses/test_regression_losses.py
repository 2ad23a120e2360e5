"""`pylstm.losses`' Huber, LogCosh, MAPE, MSLE, KL divergence, Poisson, cosine similarity and
the hinge losses: gradients against central differences in float64, hand-computed values,
Keras's reduction with sample weights and masks, names and configs. Against Keras 3:
parity/keras/test_losses_metrics_parity.py."""

import json

import numpy as np
import pytest

from pylstm import losses

rng = np.random.default_rng(1)


def _numeric_grad(loss, y_true, y_pred, h=1e-6, **kwargs):
    grad = np.zeros_like(y_pred)
    for i in np.ndindex(y_pred.shape):
        p, m = y_pred.copy(), y_pred.copy()
        p[i] += h
        m[i] -= h
        grad[i] = (loss(y_true, p, **kwargs) - loss(y_true, m, **kwargs)) / (2 * h)
    return grad


def _probs(shape):
    e = np.exp(rng.standard_normal(shape))
    return e / e.sum(axis=-1, keepdims=True)


def _signs(shape):
    return rng.choice([-1.0, 1.0], shape)


# Inputs away from the kinks (|e| = delta, margins of 0, clip bounds), where the loss is smooth.
CASES = [
    (losses.Huber(), rng.standard_normal((4, 3)), rng.standard_normal((4, 3)) * 2),
    (losses.Huber(delta=0.3), rng.standard_normal((2, 3, 2)), rng.standard_normal((2, 3, 2))),
    (losses.LogCosh(), rng.standard_normal((4, 3)), rng.standard_normal((4, 3)) * 3),
    (losses.MeanAbsolutePercentageError(), rng.standard_normal((4, 3)),
     rng.standard_normal((4, 3))),
    (losses.MeanSquaredLogarithmicError(), rng.uniform(0, 3, (4, 3)), rng.uniform(0.1, 3, (4, 3))),
    (losses.KLDivergence(), _probs((4, 3)), _probs((4, 3))),
    (losses.Poisson(), rng.poisson(2.0, (4, 3)).astype(float), rng.uniform(0.5, 4, (4, 3))),
    (losses.CosineSimilarity(), rng.standard_normal((4, 3)), rng.standard_normal((4, 3))),
    (losses.CosineSimilarity(axis=1), rng.standard_normal((2, 4, 3)),
     rng.standard_normal((2, 4, 3))),
    (losses.Hinge(), _signs((4, 3)), rng.standard_normal((4, 3)) * 2),
    (losses.Hinge(), rng.integers(0, 2, (4, 3)).astype(float), rng.standard_normal((4, 3)) * 2),
    (losses.SquaredHinge(), _signs((4, 3)), rng.standard_normal((4, 3)) * 2),
    (losses.CategoricalHinge(), np.eye(4)[rng.integers(0, 4, 5)], rng.standard_normal((5, 4))),
]


@pytest.mark.parametrize("loss,y_true,y_pred", CASES, ids=lambda v: repr(v)[:30])
def test_gradient_matches_central_differences(loss, y_true, y_pred):
    grad = loss.gradient(y_true, y_pred)
    assert grad.shape == y_pred.shape and grad.dtype == np.float64
    np.testing.assert_allclose(grad, _numeric_grad(loss, y_true, y_pred), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("loss,y_true,y_pred", CASES[:3] + CASES[7:8] + CASES[12:],
                         ids=lambda v: repr(v)[:30])
def test_weighted_and_masked_gradient_matches_central_differences(loss, y_true, y_pred):
    shape = y_pred.shape[:-1]
    weight = rng.uniform(0.2, 2.0, shape)
    mask = np.ones(shape, bool)
    mask.flat[::3] = False
    kwargs = {"sample_weight": weight, "mask": mask}
    np.testing.assert_allclose(loss.gradient(y_true, y_pred, **kwargs),
                               _numeric_grad(loss, y_true, y_pred, **kwargs),
                               rtol=1e-5, atol=1e-8)


def test_hand_computed_values():
    # Huber, delta 1: 0.5 * 0.5**2 and 1 * 2 - 0.5, averaged.
    assert losses.get("huber")([[0.0, 0.0]], [[0.5, 2.0]]) == pytest.approx((0.125 + 1.5) / 2)
    assert losses.Huber(delta=2.0)([[0.0]], [[3.0]]) == pytest.approx(2 * 3 - 2)
    assert losses.get("log_cosh")([[0.0]], [[1.0]]) == pytest.approx(np.log(np.cosh(1.0)))
    # A huge error does not overflow: log(cosh(x)) ~ |x| - log 2.
    assert losses.LogCosh()([[0.0]], [[1000.0]]) == pytest.approx(1000 - np.log(2))
    assert losses.get("mape")([[2.0, -4.0]], [[1.0, -5.0]]) == pytest.approx(100 * (0.5 + 0.25) / 2)
    # A zero target divides by 1e-7, as Keras's epsilon.
    assert losses.get("mape")([[0.0]], [[1e-7]]) == pytest.approx(100.0)
    assert losses.get("msle")([[0.0]], [[np.e - 1]]) == pytest.approx(1.0, rel=1e-6)
    assert losses.get("kld")([[0.5, 0.5]], [[0.25, 0.75]]) == pytest.approx(
        0.5 * np.log(2) + 0.5 * np.log(2 / 3))
    assert losses.get("kl_divergence")([[1.0, 0.0]], [[1.0, 0.0]]) == pytest.approx(0.0, abs=1e-6)
    assert losses.get("poisson")([[2.0]], [[1.0]]) == pytest.approx(1.0 - 2 * np.log(1 + 1e-7))
    assert losses.get("cosine_similarity")([[1.0, 0.0]], [[2.0, 0.0]]) == pytest.approx(-1.0)
    assert losses.get("cosine_similarity")([[1.0, 0.0]], [[0.0, 0.0]]) == 0.0
    # Labels in {0, 1} become -1 / 1: max(1 - (-1)(0.5), 0) and max(1 - 1 * 2, 0).
    assert losses.get("hinge")([[0.0, 1.0]], [[0.5, 2.0]]) == pytest.approx(1.5 / 2)
    # Labels not all in {0, 1} are taken as they are.
    assert losses.get("hinge")([[2.0, 1.0]], [[0.0, 0.0]]) == pytest.approx(1.0)
    assert losses.get("squared_hinge")([[-1.0]], [[0.5]]) == pytest.approx(2.25)
    # neg = max(0.2, 0.5) = 0.5, pos = 0.3: 0.5 - 0.3 + 1.
    assert losses.get("categorical_hinge")([[0, 1, 0]], [[0.2, 0.3, 0.5]]) == pytest.approx(1.2)


def test_gradients_at_kinks_follow_tensorflow():
    # sign(0) = 0 for |x|; maximum passes its gradient at a tie; max shares it among ties.
    np.testing.assert_array_equal(losses.get("mape").gradient([[1.0]], [[1.0]]), [[0.0]])
    np.testing.assert_array_equal(losses.get("hinge").gradient([[1.0]], [[1.0]]), [[-1.0]])
    grad = losses.get("categorical_hinge").gradient([[1.0, 0.0, 0.0]], [[0.0, 0.5, 0.5]])
    np.testing.assert_allclose(grad, [[-1.0, 0.5, 0.5]])
    np.testing.assert_array_equal(losses.get("kld").gradient([[0.5, 0.5]], [[0.0, 2.0]]),
                                  [[0.0, 0.0]])


def test_reduction_with_sample_weight_and_mask():
    loss = losses.MeanSquaredError()
    y_true, y_pred = np.zeros((2, 3, 1)), np.arange(6.0).reshape(2, 3, 1)
    per_entry = np.arange(6.0).reshape(2, 3) ** 2
    mask = np.array([[True, True, False], [True, False, False]])
    # Keras's apply_mask: the mean over the unmasked entries.
    assert loss(y_true, y_pred, mask=mask) == pytest.approx(per_entry[mask].mean())
    # A bool sample_weight is a mask.
    assert loss(y_true, y_pred, sample_weight=mask) == pytest.approx(per_entry[mask].mean())
    # Sample weights: sum(w * loss) / entries (sum_over_batch_size), not / sum(w).
    w = np.array([[1.0, 2.0, 3.0], [0.5, 0.0, 1.0]])
    assert loss(y_true, y_pred, sample_weight=w) == pytest.approx((w * per_entry).sum() / 6)
    # One weight per sample, over every timestep; with a trailing unit axis too.
    for per_sample in (np.array([2.0, 0.5]), np.array([[2.0], [0.5]])):
        assert loss(y_true, y_pred, sample_weight=per_sample) == pytest.approx(
            (np.array([[2.0], [0.5]]) * per_entry).sum() / 6)
    # Both: the weights times the scaled mask.
    expected = (w * mask * per_entry).sum() * (6 / 3) / 6
    assert loss(y_true, y_pred, sample_weight=w, mask=mask) == pytest.approx(expected)
    # Everything masked: 0, as Keras's divide_no_nan.
    assert loss(y_true, y_pred, mask=np.zeros((2, 3), bool)) == 0.0
    with pytest.raises(ValueError, match="sample_weight"):
        loss(y_true, y_pred, sample_weight=np.ones(4))
    with pytest.raises(ValueError, match="mask"):
        loss(y_true, y_pred, sample_weight=mask, mask=mask)


@pytest.mark.parametrize("alias,cls", [
    ("huber", losses.Huber), ("Huber", losses.Huber), ("log_cosh", losses.LogCosh),
    ("mape", losses.MeanAbsolutePercentageError), ("MAPE", losses.MeanAbsolutePercentageError),
    ("mean_absolute_percentage_error", losses.MeanAbsolutePercentageError),
    ("msle", losses.MeanSquaredLogarithmicError),
    ("mean_squared_logarithmic_error", losses.MeanSquaredLogarithmicError),
    ("kld", losses.KLDivergence), ("kl_divergence", losses.KLDivergence),
    ("KLDivergence", losses.KLDivergence), ("poisson", losses.Poisson),
    ("cosine_similarity", losses.CosineSimilarity), ("hinge", losses.Hinge),
    ("squared_hinge", losses.SquaredHinge), ("categorical_hinge", losses.CategoricalHinge),
    ("bce", losses.BinaryCrossentropy)])
def test_keras_names(alias, cls):
    assert type(losses.get(alias)) is cls


@pytest.mark.parametrize("loss", [losses.Huber(delta=0.25), losses.CosineSimilarity(axis=1),
                                  losses.LogCosh(), losses.KLDivergence(), losses.Hinge()])
def test_config_round_trip_through_json(loss):
    clone = losses.deserialize(json.loads(json.dumps(losses.serialize(loss))))
    assert type(clone) is type(loss) and clone.get_config() == loss.get_config()


def test_argument_errors():
    with pytest.raises(ValueError, match="delta"):
        losses.Huber(delta=-1.0)
    with pytest.raises(ValueError, match="axis"):
        losses.CosineSimilarity(axis=0.5)
    with pytest.raises(ValueError, match="axis"):
        losses.CosineSimilarity(axis=3)(np.ones((2, 3)), np.ones((2, 3)))
