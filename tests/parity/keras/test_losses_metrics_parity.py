"""`pylstm.losses` and `pylstm.metrics` against Keras 3 (TensorFlow backend, float32).

- Every new loss: values and gradients d loss / d y_pred (under a `GradientTape`) on random and
  edge inputs (zeros, exact ties at the kinks, labels in {0, 1} for the hinges), without and
  with sample weights and the output's mask (Keras reads it from `y_pred`), values within 1e-5
  and gradients within 1e-4 relative.
- Every metric: the result accumulated over three batches of random and edge inputs (ties at
  the thresholds, all labels of one class for `AUC`/`Precision`/`Recall`, zeros), with and
  without sample weights, and masked sequences for the means of per-sample values.
- Models compiled with these metrics (as names and as objects) give Keras's per-epoch logs,
  `val_` logs included, over 3 epochs (rtol 1e-4), and the same `evaluate`.

Legend: B batch, T timesteps, K units of the last axis.
"""

import re

import numpy as np
import pytest
from keras.src import backend as keras_backend

from pylstm import layers, losses, metrics, optimizers
from pylstm.models import Sequential

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

keras, tf = ku.keras, ku.tf
B, T, K = 4, 5, 3


def _masked(y_pred, mask):
    """`y_pred` as a tensor carrying Keras's mask, as a masked layer's output does."""
    tensor = tf.identity(y_pred)
    if mask is not None:
        keras_backend.set_keras_mask(tensor, tf.constant(mask))
    return tensor


def keras_loss(loss, y_true, y_pred, sample_weight=None, mask=None):
    variable = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        value = loss(tf.constant(y_true), _masked(variable, mask), sample_weight=(
            None if sample_weight is None else tf.constant(sample_weight)))
    return float(value), tape.gradient(value, variable).numpy()


def _inputs(kind, rng):
    """`(y_true, y_pred)` float32 `(B, T, K)` for a loss of `kind`."""
    shape = (B, T, K)
    if kind == "probabilities":
        y_true = rng.dirichlet(np.ones(K), (B, T))
        y_pred = rng.dirichlet(np.ones(K), (B, T))
        y_pred[0, 0] = [0.0, 1.0, 0.0]  # clipped at both ends
        y_true[0, 1] = [1.0, 0.0, 0.0]
    elif kind == "positive":
        y_true = rng.poisson(1.5, shape).astype(float)
        y_pred = rng.uniform(0.05, 3.0, shape)
        y_true[0, 0] = 0.0
        y_pred[0, 1] = y_true[0, 1]
    elif kind == "binary":
        y_true = rng.integers(0, 2, shape).astype(float)
        y_pred = rng.normal(size=shape)
        y_pred[0, 0] = 2 * y_true[0, 0] - 1  # a margin of exactly 0
    elif kind == "signs":
        y_true = rng.choice([-1.0, 1.0], shape)
        y_pred = rng.normal(size=shape) * 1.5
    elif kind == "onehot":
        y_true = np.eye(K)[rng.integers(0, K, (B, T))]
        y_pred = rng.normal(size=shape)
        y_pred[0, 0] = [0.5, 0.5, 0.5]  # a tie for the max
    else:
        y_true = rng.normal(size=shape)
        y_pred = rng.normal(size=shape) * 2
        y_pred[0, 0] = y_true[0, 0]  # zero errors
        y_true[0, 1] = 0.0
        y_pred[1, 1] = y_true[1, 1] + 1.0  # |e| = delta for Huber(1.0)
        y_pred[1, 2] = 0.0  # a zero vector for the cosine
    return y_true.astype("float32"), y_pred.astype("float32")


LOSSES = {
    "huber": (losses.Huber(), keras.losses.Huber(), "real"),
    "huber_delta": (losses.Huber(0.4), keras.losses.Huber(delta=0.4), "real"),
    "log_cosh": (losses.LogCosh(), keras.losses.LogCosh(), "real"),
    "mape": (losses.get("mape"), keras.losses.MeanAbsolutePercentageError(), "real"),
    "msle": (losses.get("msle"), keras.losses.MeanSquaredLogarithmicError(), "positive"),
    "msle_negative": (losses.get("msle"), keras.losses.MeanSquaredLogarithmicError(), "real"),
    "kld": (losses.get("kld"), keras.losses.KLDivergence(), "probabilities"),
    "poisson": (losses.get("poisson"), keras.losses.Poisson(), "positive"),
    "cosine": (losses.get("cosine_similarity"), keras.losses.CosineSimilarity(), "real"),
    "cosine_axis": (losses.CosineSimilarity(axis=1), keras.losses.CosineSimilarity(axis=1),
                    "real"),
    "hinge": (losses.get("hinge"), keras.losses.Hinge(), "binary"),
    "hinge_signs": (losses.Hinge(), keras.losses.Hinge(), "signs"),
    "squared_hinge": (losses.get("squared_hinge"), keras.losses.SquaredHinge(), "binary"),
    "categorical_hinge": (losses.get("categorical_hinge"), keras.losses.CategoricalHinge(),
                          "onehot"),
}


@pytest.mark.parametrize("weighting", ["none", "sample_weight", "mask", "both"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_value_and_gradient_match_keras(name, weighting):
    ours, theirs, kind = LOSSES[name]
    rng = np.random.default_rng(sorted(LOSSES).index(name))
    y_true, y_pred = _inputs(kind, rng)
    per_sample = (B, K) if name == "cosine_axis" else (B, T)
    weight = rng.uniform(0, 2, per_sample).astype("float32")
    weight[0, 2] = 0.0
    mask = rng.uniform(size=per_sample) > 0.3
    kwargs = {"sample_weight": weight if weighting in ("sample_weight", "both") else None,
              "mask": mask if weighting in ("mask", "both") else None}
    want_value, want_grad = keras_loss(theirs, y_true, y_pred, **kwargs)
    value, grad = ours.value_and_gradient(y_true, y_pred, **kwargs)
    assert grad.dtype == np.float32
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    scale = float(np.abs(want_grad).max())
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6 * scale)


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_configs_read_by_keras(name):
    """Keras builds the same loss from pylstm's config (`delta`, `axis` included, which
    Keras's own `get_config` of `Huber` leaves out)."""
    ours, theirs, kind = LOSSES[name]
    rebuilt = keras.losses.deserialize(losses.serialize(ours))
    assert type(rebuilt) is type(theirs)
    y_true, y_pred = _inputs(kind, np.random.default_rng(5))
    np.testing.assert_allclose(float(rebuilt(y_true, y_pred)), ours(y_true, y_pred), rtol=1e-5)


# Metrics ----------------------------------------------------------------------------------


def _batches(kind, rng, n=3):
    """Three `(y_true, y_pred, sample_weight)` batches for a metric of `kind`."""
    out = []
    for i in range(n):
        if kind == "binary":
            y_true = rng.integers(0, 2, (8, 1)).astype("float32")
            y_pred = rng.uniform(size=(8, 1)).astype("float32")
            # Ties at the thresholds and at the ends of [0, 1].
            y_pred[:4, 0] = [0.5, 0.0, 1.0, 0.25]
            if i == 2:
                y_true[:] = 1.0  # one class only in this batch
        elif kind == "binary_one_class":
            y_true = np.zeros((8, 1), "float32")
            y_pred = rng.uniform(size=(8, 1)).astype("float32")
        elif kind == "multilabel":
            y_true = rng.integers(0, 2, (8, K)).astype("float32")
            y_pred = rng.uniform(size=(8, K)).astype("float32")
        elif kind == "logits":
            y_true = rng.integers(0, 2, (8, 1)).astype("float32")
            y_pred = rng.normal(size=(8, 1)).astype("float32") * 2
        elif kind == "onehot":
            y_true = np.eye(5, dtype="float32")[rng.integers(0, 5, 8)]
            y_pred = rng.dirichlet(np.ones(5), 8).astype("float32")
            y_pred[0] = 0.2  # all tied
        elif kind == "sparse":
            y_true = rng.integers(0, 5, (8, 1)).astype("int32")
            y_pred = rng.dirichlet(np.ones(5), 8).astype("float32")
            y_pred[0] = 0.2
        elif kind == "regression":
            y_true = rng.normal(size=(8, 2)).astype("float32")
            y_pred = (y_true + rng.normal(size=(8, 2)) * 0.5).astype("float32")
            y_pred[0] = y_true[0]
        elif kind == "positive":
            y_true = rng.poisson(2.0, (8, 2)).astype("float32")
            y_pred = rng.uniform(0.1, 3, (8, 2)).astype("float32")
        else:  # "exact": few distinct values, so that some are equal
            y_true = rng.integers(0, 3, (8, 2)).astype("float32")
            y_pred = rng.integers(0, 3, (8, 2)).astype("float32")
        weight = rng.uniform(0, 2, len(y_true)).astype("float32")
        weight[1] = 0.0
        out.append((y_true, y_pred, weight))
    return out


METRICS = {
    "mean_squared_error": (metrics.MeanSquaredError, keras.metrics.MeanSquaredError, {},
                           "regression"),
    "mean_absolute_error": (metrics.MeanAbsoluteError, keras.metrics.MeanAbsoluteError, {},
                            "regression"),
    "rmse": (metrics.RootMeanSquaredError, keras.metrics.RootMeanSquaredError, {},
             "regression"),
    "r2": (metrics.R2Score, keras.metrics.R2Score, {}, "regression"),
    "r2_variance_weighted": (metrics.R2Score, keras.metrics.R2Score,
                             {"class_aggregation": "variance_weighted_average"}, "regression"),
    "r2_adjusted": (metrics.R2Score, keras.metrics.R2Score, {"num_regressors": 2},
                    "regression"),
    "mape": (metrics.MeanAbsolutePercentageError, keras.metrics.MeanAbsolutePercentageError, {},
             "regression"),
    "msle": (metrics.MeanSquaredLogarithmicError, keras.metrics.MeanSquaredLogarithmicError, {},
             "positive"),
    "logcosh": (metrics.LogCoshError, keras.metrics.LogCoshError, {}, "regression"),
    "cosine": (metrics.CosineSimilarity, keras.metrics.CosineSimilarity, {}, "regression"),
    "poisson": (metrics.Poisson, keras.metrics.Poisson, {}, "positive"),
    "kld": (metrics.KLDivergence, keras.metrics.KLDivergence, {}, "onehot"),
    "hinge": (metrics.Hinge, keras.metrics.Hinge, {}, "binary"),
    "squared_hinge": (metrics.SquaredHinge, keras.metrics.SquaredHinge, {}, "binary"),
    "categorical_hinge": (metrics.CategoricalHinge, keras.metrics.CategoricalHinge, {},
                          "onehot"),
    "bce": (metrics.BinaryCrossentropy, keras.metrics.BinaryCrossentropy, {}, "binary"),
    "bce_logits": (metrics.BinaryCrossentropy, keras.metrics.BinaryCrossentropy,
                   {"from_logits": True}, "logits"),
    "cce": (metrics.CategoricalCrossentropy, keras.metrics.CategoricalCrossentropy, {},
            "onehot"),
    "scce": (metrics.SparseCategoricalCrossentropy, keras.metrics.SparseCategoricalCrossentropy,
             {}, "sparse"),
    "accuracy": (metrics.Accuracy, keras.metrics.Accuracy, {}, "exact"),
    "binary_accuracy": (metrics.BinaryAccuracy, keras.metrics.BinaryAccuracy, {}, "binary"),
    "binary_accuracy_threshold": (metrics.BinaryAccuracy, keras.metrics.BinaryAccuracy,
                                  {"threshold": 0.25}, "binary"),
    "categorical_accuracy": (metrics.CategoricalAccuracy, keras.metrics.CategoricalAccuracy, {},
                             "onehot"),
    "sparse_categorical_accuracy": (metrics.SparseCategoricalAccuracy,
                                    keras.metrics.SparseCategoricalAccuracy, {}, "sparse"),
    "top_k": (metrics.TopKCategoricalAccuracy, keras.metrics.TopKCategoricalAccuracy, {"k": 2},
              "onehot"),
    "sparse_top_k": (metrics.SparseTopKCategoricalAccuracy,
                     keras.metrics.SparseTopKCategoricalAccuracy, {"k": 2}, "sparse"),
    "precision": (metrics.Precision, keras.metrics.Precision, {}, "binary"),
    "precision_thresholds": (metrics.Precision, keras.metrics.Precision,
                             {"thresholds": [0.0, 0.25, 0.5, 0.75, 1.0]}, "binary"),
    "precision_one_class": (metrics.Precision, keras.metrics.Precision, {}, "binary_one_class"),
    "precision_top_k": (metrics.Precision, keras.metrics.Precision, {"top_k": 2}, "multilabel"),
    "precision_class_id": (metrics.Precision, keras.metrics.Precision, {"class_id": 1},
                           "multilabel"),
    "recall": (metrics.Recall, keras.metrics.Recall, {}, "binary"),
    "recall_thresholds": (metrics.Recall, keras.metrics.Recall, {"thresholds": [0.3, 0.5]},
                          "binary"),
    "recall_one_class": (metrics.Recall, keras.metrics.Recall, {}, "binary_one_class"),
    "auc": (metrics.AUC, keras.metrics.AUC, {}, "binary"),
    "auc_one_class": (metrics.AUC, keras.metrics.AUC, {}, "binary_one_class"),
    "auc_pr": (metrics.AUC, keras.metrics.AUC, {"curve": "PR"}, "binary"),
    "auc_pr_one_class": (metrics.AUC, keras.metrics.AUC, {"curve": "PR"}, "binary_one_class"),
    "auc_thresholds": (metrics.AUC, keras.metrics.AUC, {"num_thresholds": 7}, "binary"),
    "auc_given_thresholds": (metrics.AUC, keras.metrics.AUC,
                             {"thresholds": [0.1, 0.5, 0.9]}, "binary"),
    "auc_minoring": (metrics.AUC, keras.metrics.AUC, {"summation_method": "minoring"},
                     "binary"),
    "auc_pr_majoring": (metrics.AUC, keras.metrics.AUC,
                        {"curve": "PR", "summation_method": "majoring"}, "binary"),
    "auc_prgain": (metrics.AUC, keras.metrics.AUC, {"curve": "PRGAIN"}, "binary"),
    "auc_logits": (metrics.AUC, keras.metrics.AUC, {"from_logits": True}, "logits"),
    "auc_multi_label": (metrics.AUC, keras.metrics.AUC, {"multi_label": True}, "multilabel"),
    "auc_label_weights": (metrics.AUC, keras.metrics.AUC,
                          {"multi_label": True, "label_weights": [0.5, 1.0, 2.0]},
                          "multilabel"),
}


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name", list(METRICS))
def test_metric_accumulates_as_keras(name, weighted):
    ours_cls, theirs_cls, kwargs, kind = METRICS[name]
    ours, theirs = ours_cls(**kwargs), theirs_cls(**kwargs)
    rng = np.random.default_rng(sorted(METRICS).index(name))
    for y_true, y_pred, weight in _batches(kind, rng):
        sample_weight = weight if weighted else None
        ours.update_state(y_true, y_pred, sample_weight=sample_weight)
        theirs.update_state(y_true, y_pred, sample_weight=sample_weight)
        np.testing.assert_allclose(ours.result(), np.asarray(theirs.result()), rtol=1e-4,
                                   atol=1e-6, err_msg=name)
    ours.reset_state()
    theirs.reset_state()
    y_true, y_pred, _ = _batches(kind, rng, 1)[0]
    ours.update_state(y_true, y_pred)
    theirs.update_state(y_true, y_pred)
    np.testing.assert_allclose(ours.result(), np.asarray(theirs.result()), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", list(METRICS))
def test_metric_names_and_configs_as_keras(name):
    ours_cls, theirs_cls, kwargs, _ = METRICS[name]
    ours = ours_cls(**kwargs)
    theirs = theirs_cls(**kwargs)
    assert ours._direction == theirs._direction
    want = {k: v for k, v in theirs.get_config().items() if k != "dtype"}
    got = ours.get_config()
    if ours_cls is not metrics.R2Score:  # Keras's default metric names are made unique
        assert re.sub(r"_\d+$", "", want.pop("name")) == got.pop("name")
    if want.get("label_weights") is not None:
        want["label_weights"] = np.asarray(want["label_weights"]).tolist()
    # Keras's extra keys are arguments pylstm leaves at their defaults (`label_smoothing`);
    # Keras's `CosineSimilarity` metric leaves its `axis` out of its config.
    assert {k: want[k] for k in want.keys() & got.keys()} == \
        {k: got[k] for k in want.keys() & got.keys()}
    assert set(got) - set(want) <= {"axis"}
    # Keras builds the same metric from pylstm's config.
    rebuilt = theirs_cls.from_config({**ours.get_config(), "dtype": "float32"})
    rebuilt_config = rebuilt.get_config()
    if rebuilt_config.get("label_weights") is not None:
        rebuilt_config["label_weights"] = np.asarray(rebuilt_config["label_weights"]).tolist()
    full = ours.get_config()
    assert {k: rebuilt_config[k] for k in rebuilt_config.keys() & full.keys()} == \
        {k: full[k] for k in rebuilt_config.keys() & full.keys()}


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name", ["mean_squared_error", "mean_absolute_error", "accuracy",
                                  "binary_accuracy", "hinge", "top_k"])
def test_masked_sequences_as_keras(name, weighted):
    """A mean of per-sample values on `(B, T, K)` outputs with the output's mask (and per-
    timestep sample weights): masked timesteps count for nothing."""
    ours_cls, theirs_cls, kwargs, _ = METRICS[name]
    ours, theirs = ours_cls(**kwargs), theirs_cls(**kwargs)
    rng = np.random.default_rng(3)
    for _ in range(3):
        if name == "top_k":
            y_true = np.eye(K, dtype="float32")[rng.integers(0, K, (B, T))]
        else:
            y_true = rng.integers(0, 2, (B, T, K)).astype("float32")
        y_pred = rng.uniform(size=(B, T, K)).astype("float32")
        mask = rng.uniform(size=(B, T)) > 0.4
        weight = rng.uniform(0, 2, (B, T)).astype("float32") if weighted else None
        ours.update_state(y_true, y_pred, sample_weight=weight, mask=mask)
        theirs.update_state(y_true, _masked(y_pred, mask), sample_weight=weight)
    np.testing.assert_allclose(ours.result(), float(theirs.result()), rtol=1e-5)


# Models compiled with the metrics ---------------------------------------------------------

H = 4


def _models(head_units, activation, masked=False):
    def build(lib, stack):
        return stack([lib.Input((T, 2)), *([lib.Masking(0.0)] if masked else []),
                      lib.LSTM(H, return_sequences=masked),
                      lib.Dense(head_units, activation=activation)])

    keras.utils.set_random_seed(0)
    theirs = build(keras.layers, keras.Sequential)
    ours = build(layers, Sequential)
    ku.copy_weights(theirs, ours)
    return ours, theirs


FITS = {
    "binary": (1, "sigmoid", "binary_crossentropy",
               lambda: ["accuracy", "auc", "precision", "recall"],
               lambda lib: [lib.AUC(curve="PR", name="pr"), lib.Precision(thresholds=0.3),
                            lib.BinaryAccuracy(threshold=0.6), lib.Recall(thresholds=0.4)]),
    "regression": (2, None, "huber",
                   lambda: ["mae", "root_mean_squared_error", "r2_score", "mape"],
                   lambda lib: [lib.RootMeanSquaredError(name="rmse"), lib.R2Score(),
                                lib.MeanSquaredLogarithmicError(), lib.LogCoshError()]),
    "categorical": (K, "softmax", "categorical_crossentropy",
                    lambda: ["accuracy", "top_k_categorical_accuracy", "categorical_accuracy"],
                    lambda lib: [lib.TopKCategoricalAccuracy(k=2, name="top2"),
                                 lib.AUC(multi_label=True, name="mauc"),
                                 lib.KLDivergence()]),
}


def _without_numbers(history):
    """Keras's logs with the session-wide numbers of its default metric names taken off
    (`"recall_3"` -> `"recall"`; pylstm numbers only repeats within one model)."""
    return {re.sub(r"_\d+$", "", name): values for name, values in history.items()}


def _fit_data(kind):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, T, 2)).astype("float32")
    s = x.sum(axis=(1, 2))
    if kind == "binary":
        y = (s > 0).astype("float32")[:, None]
    elif kind == "regression":
        y = np.stack([np.tanh(s), np.abs(x[:, 0, 0]) + 0.5], axis=1).astype("float32")
    else:
        y = np.eye(K, dtype="float32")[np.digitize(s, [-1.0, 1.0])]
    return x, y


@pytest.mark.parametrize("as_objects", [False, True])
@pytest.mark.parametrize("kind", list(FITS))
def test_model_logs_match_keras(kind, as_objects):
    units, activation, loss, names, objects = FITS[kind]
    ours, theirs = _models(units, activation)
    x, y = _fit_data(kind)
    fit = dict(batch_size=6, epochs=3, shuffle=False, verbose=0, validation_split=0.25)
    theirs.compile(optimizer=keras.optimizers.SGD(0.2), loss=loss,
                   metrics=objects(keras.metrics) if as_objects else names())
    ours.compile(optimizer=optimizers.SGD(0.2), loss=loss,
                 metrics=objects(metrics) if as_objects else names())
    want = _without_numbers(theirs.fit(x, y, **fit).history)
    got = ours.fit(x, y, **fit).history
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0),
                               rtol=1e-4, atol=1e-6)


def test_masked_sequence_model_logs_match_keras():
    """A masked per-timestep output: the means of per-sample values leave the padded steps out,
    `Precision`/`AUC` count them, as Keras's."""
    ours, theirs = _models(1, "sigmoid", masked=True)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, T, 2)).astype("float32")
    x[::3, T - 2:] = 0.0
    y = (np.cumsum(x[..., :1], axis=1) > 0).astype("float32")
    fit = dict(batch_size=4, epochs=3, shuffle=False, verbose=0)
    for model, lib, sgd in ((theirs, keras.metrics, keras.optimizers.SGD),
                            (ours, metrics, optimizers.SGD)):
        model.compile(optimizer=sgd(0.3), loss="binary_crossentropy",
                      metrics=["accuracy", "mse", lib.Precision(name="p"), lib.AUC(name="a")])
    want = theirs.fit(x, y, **fit).history
    got = ours.fit(x, y, **fit).history
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, err_msg=name)


def test_keras_loads_a_model_compiled_with_metric_objects(tmp_path):
    """A `.keras` file of a model compiled with metric objects: Keras compiles the loaded
    model with the same metrics, and evaluates as pylstm does."""
    ours, _ = _models(1, "sigmoid")
    ours.compile(optimizer=optimizers.Adam(0.01), loss="binary_crossentropy",
                 metrics=["accuracy", metrics.AUC(curve="PR", num_thresholds=50, name="pr"),
                          metrics.Precision(thresholds=0.4, name="p"), metrics.R2Score()])
    x, y = _fit_data("binary")
    path = tmp_path / "m.keras"
    ours.save(path)
    theirs = keras.saving.load_model(path)
    want = _without_numbers(theirs.evaluate(x, y, verbose=0, return_dict=True))
    got = ours.evaluate(x, y, verbose=0, return_dict=True)
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-6, err_msg=name)
