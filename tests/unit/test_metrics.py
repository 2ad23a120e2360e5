"""`pylstm.metrics`: hand-computed values, the stateful protocol (batches accumulate to the
result of one big batch, `reset_state`, `__call__`), sample weights and masks, names, configs
and `get`, and models compiled with metric objects (logs, saving). Against Keras 3:
parity/keras/test_losses_metrics_parity.py."""

import json

import numpy as np
import pytest

from pylstm import layers, metrics
from pylstm.models import Model, Sequential, load_model

rng = np.random.default_rng(0)


def test_hand_computed_values():
    y_true = np.array([[1.0], [0.0], [1.0], [0.0]])
    y_pred = np.array([[0.9], [0.6], [0.4], [0.1]])
    # At 0.5: TP 1 (0.9), FP 1 (0.6), FN 1 (0.4), TN 1 (0.1).
    assert metrics.Precision()(y_true, y_pred) == pytest.approx(0.5)
    assert metrics.Recall()(y_true, y_pred) == pytest.approx(0.5)
    np.testing.assert_allclose(metrics.Precision(thresholds=[0.3, 0.95])(y_true, y_pred),
                               [2 / 3, 0.0])
    # Pairs (positive, negative) ranked right: (0.9 > 0.6), (0.9 > 0.1), (0.4 > 0.1); 3 of 4.
    assert metrics.AUC(num_thresholds=1000)(y_true, y_pred) == pytest.approx(0.75, abs=2e-3)
    assert metrics.RootMeanSquaredError()([[0.0, 0.0]], [[3.0, 4.0]]) == pytest.approx(
        np.sqrt(12.5))
    # R2 of a column with mean 2: SS_tot = 2, SS_res = 0.5.
    assert metrics.R2Score()([[1.0], [2.0], [3.0]], [[1.5], [2.0], [2.5]]) == pytest.approx(0.75)
    assert metrics.TopKCategoricalAccuracy(k=2)(
        [[0, 0, 1], [1, 0, 0]], [[0.5, 0.2, 0.3], [0.1, 0.5, 0.4]]) == pytest.approx(0.5)
    assert metrics.SparseTopKCategoricalAccuracy(k=1)([2, 0], [[0, 0, 1], [0, 1, 0]]) == 0.5
    # Ties with the k-th score count as in (TensorFlow's in_top_k).
    assert metrics.SparseTopKCategoricalAccuracy(k=1)([1], [[0.5, 0.5, 0.0]]) == 1.0
    assert metrics.SparseTopKCategoricalAccuracy(k=2, from_sorted_ids=True)(
        [3, 1], [[3, 0, 1], [0, 2, 1]]) == 0.5
    assert metrics.Accuracy()([[1, 2], [3, 4]], [[1, 0], [3, 4]]) == pytest.approx(0.75)
    assert metrics.BinaryAccuracy(threshold=0.7)([[1], [0]], [[0.6], [0.2]]) == 0.5
    assert metrics.CosineSimilarity()([[1.0, 0.0]], [[2.0, 0.0]]) == pytest.approx(1.0)


def test_one_class_and_empty_results_are_zero_not_nan():
    ones = np.ones((4, 1))
    assert metrics.Precision()(np.zeros((4, 1)), np.full((4, 1), 0.2)) == 0.0
    assert metrics.Recall()(np.zeros((4, 1)), np.full((4, 1), 0.9)) == 0.0
    # No negatives: the false positive rate is 0 everywhere, the ROC area is 0 (as Keras).
    assert metrics.AUC()(ones, rng.uniform(size=(4, 1))) == 0.0
    for cls in (metrics.Mean, metrics.Precision, metrics.AUC, metrics.R2Score):
        assert cls().result() == 0.0


BATCHED = [
    (metrics.MeanSquaredError(), "regression"), (metrics.MeanAbsoluteError(), "regression"),
    (metrics.RootMeanSquaredError(), "regression"), (metrics.R2Score(), "regression"),
    (metrics.R2Score(class_aggregation=None), "regression"),
    (metrics.Precision(thresholds=[0.2, 0.5]), "binary"), (metrics.Recall(), "binary"),
    (metrics.AUC(), "binary"), (metrics.AUC(curve="PR"), "binary"),
    (metrics.AUC(multi_label=True), "multilabel"), (metrics.BinaryAccuracy(), "binary"),
    (metrics.CategoricalAccuracy(), "onehot"), (metrics.TopKCategoricalAccuracy(k=2), "onehot"),
    (metrics.SparseTopKCategoricalAccuracy(k=2), "sparse"),
    (metrics.SparseCategoricalAccuracy(), "sparse"), (metrics.get("accuracy"), "sparse"),
    (metrics.Poisson(), "regression"), (metrics.LogCoshError(), "regression"),
]


def _data(kind, n):
    if kind == "binary":
        return rng.integers(0, 2, (n, 1)).astype(float), rng.uniform(size=(n, 1))
    if kind == "multilabel":
        return rng.integers(0, 2, (n, 3)).astype(float), rng.uniform(size=(n, 3))
    if kind == "onehot":
        return np.eye(4)[rng.integers(0, 4, n)], rng.dirichlet(np.ones(4), n)
    if kind == "sparse":
        return rng.integers(0, 4, n), rng.dirichlet(np.ones(4), n)
    y_true = rng.uniform(0.1, 2, (n, 2))
    return y_true, np.abs(y_true + rng.normal(size=(n, 2)) * 0.3)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("metric,kind", BATCHED, ids=lambda v: getattr(v, "name", v))
def test_batches_accumulate_to_one_big_batch_and_reset(metric, kind, weighted):
    y_true, y_pred = _data(kind, 12)
    weight = rng.uniform(0, 2, 12) if weighted else None
    metric.reset_state()
    metric.update_state(y_true, y_pred, sample_weight=weight)
    whole = metric.result()
    metric.reset_state()
    for part in (slice(0, 5), slice(5, 7), slice(7, 12)):
        metric.update_state(y_true[part], y_pred[part],
                            sample_weight=None if weight is None else weight[part])
    np.testing.assert_allclose(metric.result(), whole, rtol=1e-12)
    metric.reset_state()
    metric.update_state(y_true[:3], y_pred[:3])
    fresh = metrics.clone(metric)
    assert np.all(np.asarray(fresh.result()) == 0)
    fresh.update_state(y_true[:3], y_pred[:3])
    np.testing.assert_allclose(fresh.result(), metric.result())


def test_mean_metric_wrapper_weights_and_masks():
    values = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mean = metrics.Mean()
    mean.update_state(values)
    assert mean.result() == pytest.approx(3.5)
    mean.reset_state()
    # One weight per sample weighs that sample's mean.
    mean.update_state(values, sample_weight=[1.0, 3.0])
    assert mean.result() == pytest.approx((2.0 + 3 * 5.0) / 4)

    wrapper = metrics.MeanMetricWrapper(lambda y_true, y_pred: y_pred[..., 0], name="first")
    mask = np.array([[True, True, False], [True, False, False]])
    wrapper.update_state(None, values[..., None], mask=mask)
    assert wrapper.name == "first"
    assert wrapper.result() == pytest.approx((1 + 2 + 4) / 3)
    # Per-sample weights over the mask.
    wrapper.reset_state()
    wrapper.update_state(None, values[..., None], sample_weight=[1.0, 2.0], mask=mask)
    assert wrapper.result() == pytest.approx((1 + 2 + 2 * 4) / 4)


@pytest.mark.parametrize("name,cls,default", [
    ("mse", metrics.MeanSquaredError, "mean_squared_error"),
    ("mae", metrics.MeanAbsoluteError, "mean_absolute_error"),
    ("root_mean_squared_error", metrics.RootMeanSquaredError, "root_mean_squared_error"),
    ("r2_score", metrics.R2Score, "r2_score"), ("auc", metrics.AUC, "auc"),
    ("AUC", metrics.AUC, "auc"), ("precision", metrics.Precision, "precision"),
    ("recall", metrics.Recall, "recall"),
    ("top_k_categorical_accuracy", metrics.TopKCategoricalAccuracy, "top_k_categorical_accuracy"),
    ("sparse_top_k_categorical_accuracy", metrics.SparseTopKCategoricalAccuracy,
     "sparse_top_k_categorical_accuracy"),
    ("binary_accuracy", metrics.BinaryAccuracy, "binary_accuracy"),
    ("mape", metrics.MeanAbsolutePercentageError, "mean_absolute_percentage_error"),
    ("kl_divergence", metrics.KLDivergence, "kl_divergence"),
    ("log_cosh_error", metrics.LogCoshError, "logcosh")])
def test_keras_names(name, cls, default):
    metric = metrics.get(name)
    assert type(metric) is cls and metric.name == name
    assert cls().name == default
    assert metrics.made_from_name(name, metric)
    assert metrics.get("acc").name == "acc" and metrics.get("acc")._direction == "up"


@pytest.mark.parametrize("metric", [
    metrics.AUC(num_thresholds=50, curve="PR", summation_method="minoring", name="pr"),
    metrics.AUC(thresholds=[0.2, 0.6], multi_label=True, label_weights=[1.0, 2.0]),
    metrics.Precision(thresholds=[0.1, 0.9], class_id=2), metrics.Recall(top_k=3),
    metrics.R2Score(class_aggregation="variance_weighted_average", num_regressors=1),
    metrics.BinaryAccuracy(threshold=0.3), metrics.SparseTopKCategoricalAccuracy(
        k=3, from_sorted_ids=True), metrics.CosineSimilarity(axis=1),
    metrics.BinaryCrossentropy(from_logits=True), metrics.get("accuracy"),
    metrics.MeanMetricWrapper(metrics.categorical_accuracy, name="c")])
def test_config_round_trip_through_json(metric):
    clone = metrics.deserialize(json.loads(json.dumps(metrics.serialize(metric))))
    assert type(clone) is type(metric) and clone.get_config() == metric.get_config()


def test_errors():
    with pytest.raises(ValueError, match="acuracy"):
        metrics.get("acuracy")
    with pytest.raises(TypeError, match="metric"):
        metrics.get(3)
    with pytest.raises(ValueError, match="custom metric"):
        metrics.serialize(metrics.MeanMetricWrapper(lambda y_true, y_pred: y_pred))
    with pytest.raises(ValueError, match="thresholds"):
        metrics.Precision(thresholds=1.5)
    with pytest.raises(ValueError, match="num_thresholds"):
        metrics.AUC(num_thresholds=1)
    with pytest.raises(ValueError, match="curve"):
        metrics.AUC(curve="DET")
    with pytest.raises(ValueError, match="num_labels"):
        metrics.AUC(num_labels=3)
    with pytest.raises(ValueError, match="class_aggregation"):
        metrics.R2Score(class_aggregation="mean")
    with pytest.raises(ValueError, match="2-D"):
        metrics.R2Score()(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="`k`"):
        metrics.TopKCategoricalAccuracy(k=0)
    with pytest.raises(TypeError, match="name"):
        metrics.Mean(name=3)


def _model():
    model = Sequential([layers.Input((4,)), layers.Dense(1, activation="sigmoid")])
    x = rng.normal(size=(24, 4))
    y = (x[:, :1] > 0).astype(float)
    return model, x, y


def test_compiled_metric_objects_and_functions_are_accumulated_per_epoch():
    model, x, y = _model()
    auc = metrics.AUC(name="roc")

    def my_error(y_true, y_pred):
        return np.abs(y_true - y_pred)[..., 0]

    model.compile("sgd", "binary_crossentropy", metrics=[auc, "precision", my_error])
    history = model.fit(x, y, batch_size=5, epochs=2, shuffle=False, verbose=0).history
    assert list(history) == ["loss", "roc", "precision", "my_error"]
    # The logged values are those of the whole epoch: evaluate gives the same on fixed weights.
    logs = model.evaluate(x, y, batch_size=5, verbose=0, return_dict=True)
    whole = metrics.AUC()
    whole.update_state(y, model.predict(x, verbose=0))
    assert logs["roc"] == pytest.approx(whole.result())
    error = np.abs(y - model.predict(x, verbose=0)).mean()
    assert logs["my_error"] == pytest.approx(error)
    assert auc.result() == pytest.approx(logs["roc"])  # the user's object holds the state


def test_two_outputs_get_their_own_metric_objects():
    inputs = layers.Input((3,))
    model = Model(inputs, [layers.Dense(1, name="a")(inputs), layers.Dense(1, name="b")(inputs)])
    shared = metrics.RootMeanSquaredError()
    model.compile("sgd", "mse", metrics=[[shared], [shared]])
    x = rng.normal(size=(10, 3))
    ya, yb = rng.normal(size=(10, 1)), rng.normal(size=(10, 1)) * 10
    logs = model.evaluate(x, [ya, yb], verbose=0, return_dict=True)
    pa, pb = model.predict(x, verbose=0)
    assert logs["a_root_mean_squared_error"] == pytest.approx(np.sqrt(np.mean((pa - ya) ** 2)))
    assert logs["b_root_mean_squared_error"] == pytest.approx(np.sqrt(np.mean((pb - yb) ** 2)))


def test_saved_model_keeps_its_metric_objects(tmp_path):
    # in pylstm's format; a .keras file's (h5py): tests/files/test_keras_files.py
    suffix = ".npz"
    model, x, y = _model()
    model.compile("adam", "binary_crossentropy",
                  metrics=["mae", metrics.AUC(curve="PR", name="pr"), metrics.Recall(0.3)])
    path = tmp_path / f"m{suffix}"
    model.save(path)
    loaded = load_model(path)
    assert [(name, metric.get_config()) for name, metric in loaded._metrics] == [
        (name, metric.get_config()) for name, metric in model._metrics]
    np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0))


def test_user_metric_objects_are_not_saved_as_builtins(tmp_path):
    class Always(metrics.Mean):
        def update_state(self, y_true, y_pred, sample_weight=None):
            super().update_state(np.ones(len(y_pred)))

    model, _, _ = _model()
    model.compile("sgd", "mse", metrics=[Always(name="always")])
    with pytest.raises(ValueError, match="always"):
        model.save(tmp_path / "m.npz")


def test_doctests():
    import doctest

    result = doctest.testmod(metrics)
    assert result.attempted and not result.failed
