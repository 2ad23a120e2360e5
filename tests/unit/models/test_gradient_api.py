"""`Model.compute_gradients` / `apply_gradients`: the two halves of `train_on_batch`, the
sharded sums of `global_batch_size`, and `fit`'s gradient seam (`_gradient_fn`)."""

import numpy as np
import pytest

from pylstm import optimizers
from pylstm.layers import LSTM, Concatenate, Dense, Embedding, Input, Masking
from pylstm.models import Model, Sequential
from pylstm.variable import SlicedGradient, add_gradients

F64 = "float64"


def _sequential(dtype=F64, optimizer="adam", masking=False, **lstm):
    layers = [Input((5, 2), dtype=dtype)]
    if masking:
        layers.append(Masking(0.0, dtype=dtype))
    layers += [LSTM(3, return_sequences=True, dtype=dtype, seed=1, kernel_regularizer="l2",
                    activity_regularizer="l1", **lstm),
               Dense(1, dtype=dtype, bias_regularizer="l2")]
    model = Sequential(layers)
    model.compile(optimizer, "mse")
    return model


def _functional(optimizer="adam"):
    a, b = Input((5, 2), dtype=F64, name="a"), Input((5, 2), dtype=F64, name="b")
    seq = LSTM(3, return_sequences=True, dtype=F64, seed=2, kernel_regularizer="l2")(a)
    last = LSTM(2, dtype=F64, seed=3, activity_regularizer="l2")(b)
    merged = Concatenate(dtype=F64)([LSTM(2, dtype=F64, seed=4)(seq), last])
    model = Model([a, b], [Dense(1, dtype=F64, name="steps")(seq),
                           Dense(3, dtype=F64, name="end")(merged)])
    model.compile(optimizer, loss={"steps": "mse", "end": "mae"},
                  loss_weights={"steps": 0.5, "end": 2.0})
    return model


def _same(first, *others):
    """`others` given `first`'s weights (Dense layers draw theirs unseeded)."""
    for other in others:
        other.set_weights(first.get_weights())
    return (first,) + others


def _data(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 5, 2)), rng.normal(size=(n, 5, 1))


def _functional_data(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return ([rng.normal(size=(n, 5, 2)), rng.normal(size=(n, 5, 2))],
            [rng.normal(size=(n, 5, 1)), rng.normal(size=(n, 3))])


def _rows(structure, rows):
    if structure is None:
        return None
    if isinstance(structure, dict):
        return {k: _rows(v, rows) for k, v in structure.items()}
    if isinstance(structure, list):
        return [_rows(v, rows) for v in structure]
    return structure[rows]


def _sharded(model, x, y, sample_weight, cuts):
    """The summed gradients and logs of `compute_gradients` over the shards `cuts` split."""
    n = len(y if not isinstance(y, list) else y[0])
    total, logs = None, {}
    for rows in np.split(np.arange(n), cuts):
        grads, shard_logs = model.compute_gradients(
            _rows(x, rows), _rows(y, rows), _rows(sample_weight, rows), global_batch_size=n)
        total = grads if total is None else [t + g for t, g in zip(total, grads)]
        for k, v in shard_logs.items():
            logs[k] = logs.get(k, 0.0) + v
    return total, logs


def _assert_close(got, want, atol=1e-6):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=0, atol=atol)


# The two halves of train_on_batch ---------------------------------------------------------


@pytest.mark.parametrize("optimizer", [
    lambda: optimizers.Adam(0.01),
    lambda: optimizers.SGD(0.1, momentum=0.9, clipnorm=0.5),
    lambda: optimizers.RMSprop(0.01, loss_scale_factor=8.0, use_ema=True,
                               ema_overwrite_frequency=2),
])
def test_compute_then_apply_is_train_on_batch_bitwise(optimizer):
    x, y = _data()
    trained, split = _same(_sequential(optimizer=optimizer()),
                           _sequential(optimizer=optimizer()))
    for step in range(3):
        want = trained.train_on_batch(x, y, return_dict=True)
        grads, logs = split.compute_gradients(x, y)
        assert [g.shape for g in grads] == [v.shape for v in split.trainable_variables]
        assert split.apply_gradients(grads) == step + 1
        assert logs == pytest.approx(want, rel=1e-15)   # want: a running mean, as below
    for a, b in zip(trained.get_weights(), split.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_compute_gradients_leaves_weights_and_optimizer_alone():
    x, y = _data()
    model = _sequential()
    before = model.get_weights()
    first, _ = model.compute_gradients(x, y)
    again, _ = model.compute_gradients(x, y)
    assert model.optimizer.iterations == 0
    for a, b, g, h in zip(before, model.get_weights(), first, again):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(g, h)
    # the returned arrays are the caller's: the next step does not overwrite them
    kept = [g.copy() for g in first]
    model.train_on_batch(x, 2 * y)
    _assert_close(first, kept, atol=0)


def test_functional_multi_output_logs_and_apply():
    x, y = _functional_data()
    trained, split = _same(_functional(), _functional())
    want = trained.train_on_batch(x, y, return_dict=True)
    grads, logs = split.compute_gradients(x, y)
    split.apply_gradients(grads)
    assert set(logs) == {"loss", "steps_loss", "end_loss"}
    # train_on_batch logs the batch's running mean (value * B / B, as Keras's `Mean`), whose
    # last bit may differ
    assert logs == pytest.approx(want, rel=1e-15)
    for a, b in zip(trained.get_weights(), split.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_optimizer_apply_gradients_takes_pairs():
    x, y = _data()
    by_model, by_optimizer = _same(_sequential(), _sequential())
    grads, _ = by_model.compute_gradients(x, y)
    by_model.apply_gradients(grads)
    variables = by_optimizer.trainable_variables
    assert by_optimizer.optimizer.apply_gradients(zip(grads, variables)) == 1
    for a, b in zip(by_model.get_weights(), by_optimizer.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="grads_and_vars"):
        by_optimizer.optimizer.apply_gradients([(grads[0], variables[1])])


# Shards sum to the whole batch ------------------------------------------------------------


@pytest.mark.parametrize("cuts", [[3], [1, 4], [2, 3, 5]])
def test_shards_sum_to_the_batch(cuts):
    x, y = _data()
    model = _sequential()
    want, want_logs = model.compute_gradients(x, y)
    got, logs = _sharded(model, x, y, None, cuts)
    _assert_close(got, want)
    assert logs["loss"] == pytest.approx(want_logs["loss"], abs=1e-12)


@pytest.mark.parametrize("shape", [(6,), (6, 5)])
def test_sample_weighted_shards_sum_to_the_batch(shape):
    x, y = _data()
    weights = np.random.default_rng(5).uniform(0, 2, size=shape)
    model = _sequential()
    want, want_logs = model.compute_gradients(x, y, weights)
    got, logs = _sharded(model, x, y, weights, [2, 5])
    _assert_close(got, want)
    assert logs["loss"] == pytest.approx(want_logs["loss"], abs=1e-12)


def _masked_tail(x, counts):
    x = x.copy()
    for row, count in enumerate(counts):
        x[row, x.shape[1] - count:] = 0.0
    return x


def test_masked_shards_sum_to_the_batch_with_equal_shares_of_unmasked_steps():
    x, y = _data()
    model = _sequential(masking=True)
    # 6 masked steps in rows 0-2 and 6 in rows 3-5: each shard keeps half the unmasked steps
    equal = _masked_tail(x, [2, 1, 3, 3, 2, 1])
    assert model._forward_flat([equal], training=False)[1][0].sum() == 30 - 12
    want, want_logs = model.compute_gradients(equal, y)
    got, logs = _sharded(model, equal, y, None, [3])
    _assert_close(got, want)
    assert logs["loss"] == pytest.approx(want_logs["loss"], abs=1e-12)
    # 6 and 2: each shard's mean over its own unmasked steps (Keras's per replica) differs
    unequal = _masked_tail(x, [2, 1, 3, 0, 1, 1])
    want, _ = model.compute_gradients(unequal, y)
    got, _ = _sharded(model, unequal, y, None, [3])
    assert max(np.abs(g - w).max() for g, w in zip(got, want)) > 1e-6


def test_functional_shards_sum_to_the_batch():
    x, y = _functional_data()
    weights = {"steps": np.random.default_rng(1).uniform(0, 2, (6, 5)),
               "end": np.random.default_rng(2).uniform(0, 2, (6,))}
    model = _functional()
    want, want_logs = model.compute_gradients(x, y, weights)
    got, logs = _sharded(model, x, y, weights, [2, 5])
    _assert_close(got, want)
    for key, value in want_logs.items():
        assert logs[key] == pytest.approx(value, abs=1e-12)


def test_a_loss_scale_factor_scales_the_gradients_once():
    x, y = _data()
    plain, scaled = _same(_sequential(optimizer=optimizers.SGD(0.1)),
                          _sequential(optimizer=optimizers.SGD(0.1, loss_scale_factor=4.0)))
    grads, logs = plain.compute_gradients(x, y)
    scaled_grads, scaled_logs = scaled.compute_gradients(x, y)
    assert logs == scaled_logs
    _assert_close(scaled_grads, [4.0 * g for g in grads], atol=1e-12)
    plain.apply_gradients(grads)
    scaled.apply_gradients(scaled_grads)
    _assert_close(scaled.get_weights(), plain.get_weights(), atol=1e-12)


# fit's gradient seam ----------------------------------------------------------------------


def _two_shard_gradient_fn(worker):
    """A seam that computes each batch on `worker` (a copy of the model) in two shards, as a
    distributed trainer does."""
    def gradient_fn(targets, xs, ys, sample_weights, class_weight):
        n = len(xs[0])
        total, logs, preds, masks = None, {}, [], []
        for rows in np.array_split(np.arange(n), 2):
            grads, shard_logs, shard_preds, shard_masks = worker._shard_gradients(
                [a[rows] for a in xs], [a[rows] for a in ys],
                [None if w is None else w[rows] for w in sample_weights], class_weight, n)
            total = grads if total is None else [add_gradients(t, g)
                                                 for t, g in zip(total, grads)]
            for k, v in shard_logs.items():
                logs[k] = logs.get(k, 0.0) + v
            preds.append(shard_preds)
            masks.append(shard_masks)
        preds = [np.concatenate(p) for p in zip(*preds)]
        masks = [None if m[0] is None else np.concatenate(m) for m in zip(*masks)]
        return total, logs, preds, masks
    return gradient_fn


def test_fit_runs_through_the_seam():
    x, y = _data(12)
    plain, seamed, worker = _same(_sequential(), _sequential(), _sequential())
    calls = []

    def gradient_fn(targets, xs, ys, sample_weights, class_weight):
        calls.append(len(xs[0]))
        worker.set_weights(seamed.get_weights())
        return _two_shard_gradient_fn(worker)(targets, xs, ys, sample_weights, class_weight)

    want = plain.fit(x, y, batch_size=5, epochs=2, shuffle=False, verbose=0,
                     validation_data=(x, y))
    seamed._gradient_fn = gradient_fn
    got = seamed.fit(x, y, batch_size=5, epochs=2, shuffle=False, verbose=0,
                     validation_data=(x, y))
    assert calls == [5, 5, 2] * 2
    for key, values in want.history.items():
        np.testing.assert_allclose(got.history[key], values, rtol=1e-9)
    _assert_close(seamed.get_weights(), plain.get_weights(), atol=1e-9)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "adagrad"])
def test_shards_keep_an_embeddings_rows(optimizer):
    """Repeated tokens: the table's gradient travels as `SlicedGradient` rows, so a fit
    through two shards squares the rows as the local fit does (Keras on TensorFlow)."""
    def model():
        m = Sequential([Input((5,), dtype="int32"), Embedding(4, 3), LSTM(2, seed=1),
                        Dense(1)])
        m.compile(optimizer, "mse")
        return m

    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, size=(8, 5)).astype("int32")
    y = rng.normal(size=(8, 1))
    local, sharded, worker = model(), model(), model()
    sharded.set_weights(local.get_weights())
    grads = worker._shard_gradients([x], [y], [None], None, 8)[0]
    assert isinstance(grads[0], SlicedGradient) and len(grads[0].indices) == x.size
    sharded._gradient_fn = _two_shard_gradient_fn(worker)
    for _ in range(3):
        worker.set_weights(sharded.get_weights())
        local.train_on_batch(x, y)
        sharded.train_on_batch(x, y)
    _assert_close(sharded.get_weights(), local.get_weights())


def test_the_local_seam_leaves_fit_unchanged():
    x, y = _data(12)
    plain, seamed = _same(_sequential(), _sequential())
    seamed._gradient_fn = seamed._local_gradients
    want = plain.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    got = seamed.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert got.history == want.history
    for a, b in zip(plain.get_weights(), seamed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_seam_that_skips_logs_nan_and_makes_no_update():
    x, y = _data()
    model = _sequential()
    before = model.get_weights()

    def gradient_fn(targets, xs, ys, sample_weights, class_weight):
        _, logs, preds, masks = model._local_gradients(targets, xs, ys, sample_weights,
                                                       class_weight)
        return None, logs, preds, masks

    model._gradient_fn = gradient_fn
    assert np.isnan(model.train_on_batch(x, y))
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


# Divergence and errors --------------------------------------------------------------------


def test_a_non_finite_loss_gives_nan_gradients_that_apply_refuses():
    x, y = _data()
    model = _sequential()
    model.layers[-1].kernel.assign(np.full((3, 1), 1e200))
    with np.errstate(over="ignore"):  # the squares overflow, as they do in fit
        grads, logs = model.compute_gradients(x, y)
    assert not np.isfinite(logs["loss"]) and all(np.isnan(g).all() for g in grads)
    with pytest.raises(ValueError, match=r"`gradients\[0\]`.*finite"):
        model.apply_gradients(grads)
    before = model.get_weights()
    with np.errstate(over="ignore"):
        assert not np.isfinite(model.train_on_batch(x, y))  # fit's rule: no update
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_apply_gradients_checks_its_argument():
    x, y = _data()
    model = _sequential()
    grads, _ = model.compute_gradients(x, y)
    with pytest.raises(ValueError, match=r"`gradients` must be a list of 5 arrays.*4 items"):
        model.apply_gradients(grads[:-1])
    with pytest.raises(ValueError, match="`gradients` must be a list.*generator"):
        model.apply_gradients(g for g in grads)
    with pytest.raises(ValueError, match=r"`gradients\[1\]` must have the shape \(3, 12\)"):
        model.apply_gradients([grads[0], grads[1].T] + grads[2:])
    assert model.optimizer.iterations == 0
    with pytest.raises(RuntimeError, match="compile"):
        Sequential([Input((5, 2)), Dense(1)]).apply_gradients([])


def test_compute_gradients_checks_its_arguments():
    x, y = _data()
    model = _sequential()
    with pytest.raises(ValueError, match="`global_batch_size` must be at least.*6 samples"):
        model.compute_gradients(x, y, global_batch_size=5)
    with pytest.raises(ValueError, match="`global_batch_size` must be a positive int"):
        model.compute_gradients(x, y, global_batch_size=6.0)
    with pytest.raises(ValueError, match="same time"):
        model.compute_gradients(x, y, np.ones(6), class_weight={0: 1.0})
    uncompiled = Sequential([Input((5, 2)), Dense(1)])
    with pytest.raises(RuntimeError, match="compile"):
        uncompiled.compute_gradients(x, y)


def test_the_docstring_example_runs():
    import doctest

    from pylstm.models import _training

    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    tests = finder.find(_training.Trainer.compute_gradients, "compute_gradients",
                        globs={})
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0
