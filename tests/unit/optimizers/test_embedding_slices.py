"""The bookkeeping of an `Embedding`'s per-occurrence gradient rows (`Variable.grad_slices`,
TensorFlow's `IndexedSlices`) and what the Keras-style optimizers make of them: rows added up
over the calls of a shared layer, cleared between steps and by a dense gradient, per-row sums
of squares and absolute values, clipping per row, and dense variables untouched."""

import numpy as np
import pytest

from pylstm import optimizers
from pylstm.layers import LSTM, Add, Dense, Embedding, Input
from pylstm.models import Model, Sequential
from pylstm.variable import Variable

V, E, T = 5, 3, 4
TOKENS = np.array([[1, 2, 1, 0], [3, 1, 1, 2]])


def _embedding_variable(grads, indices):
    var = Variable("embeddings", np.zeros((V, E), dtype=np.float32))
    var.add_grad_slices(indices, grads)
    return var


def test_add_grad_slices_sums_rows_into_grad_and_keeps_each_occurrence():
    rows = np.arange(12, dtype=np.float32).reshape(4, E)
    var = _embedding_variable(rows, [1, 3, 1, 1])
    np.testing.assert_array_equal(var.grad[1], rows[0] + rows[2] + rows[3])
    np.testing.assert_array_equal(var.grad[3], rows[1])
    var.add_grad_slices([2], rows[:1])
    indices, values = var.grad_slices
    assert indices.tolist() == [1, 3, 1, 1, 2]
    np.testing.assert_array_equal(values, np.concatenate([rows, rows[:1]]))
    var.zero_grad()
    assert var.grad_slices is None and not var.grad.any()


def test_shared_embedding_records_the_rows_of_both_calls():
    a, b = Input((T,), dtype="int32"), Input((T,), dtype="int32")
    embedding = Embedding(V, E)
    summed = Add()([embedding(a), embedding(b)])
    model = Model([a, b], Dense(2)(LSTM(3)(summed)))
    xs = [TOKENS, TOKENS[:, ::-1]]
    for _ in range(2):  # the second pass must not keep the first pass's rows
        for var in model.weights:
            var.zero_grad()
        outputs, _ = model._forward_flat(xs, training=True)
        model._backward_flat([np.ones_like(outputs[0])])
    indices, values = embedding.embeddings.grad_slices
    assert sorted(indices.tolist()) == sorted(np.concatenate([TOKENS.ravel()] * 2).tolist())
    summed_rows = np.zeros((V, E), dtype=np.float32)
    np.add.at(summed_rows, indices, values)
    np.testing.assert_allclose(summed_rows, embedding.embeddings.grad, rtol=1e-6, atol=1e-7)


def test_optimizer_step_consumes_the_rows_and_the_training_loop_clears_them():
    y = np.ones((2, 2), dtype=np.float32)
    weights = []
    for stale in (False, True):
        model = Sequential([Input((T,), dtype="int32"), Embedding(V, E), LSTM(3), Dense(2)])
        if weights:
            model.set_weights(weights)
        weights = model.get_weights()
        model.compile(optimizer=optimizers.Adam(learning_rate=0.1), loss="mse")
        model.train_on_batch(TOKENS, y)
        table = model.layers[0].embeddings
        assert table.grad_slices is None
        if stale:  # rows left by a backward pass that no step used
            table.grad_slices = (np.array([1, 2]), np.ones((2, E), dtype=np.float32))
        model.train_on_batch(TOKENS, y)
        assert table.grad_slices is None
        trained = model.get_weights()
        if stale:
            for got, want in zip(trained, clean):
                np.testing.assert_array_equal(got, want)
        clean = trained


def _adam_step(var, **kwargs):
    optimizers.Adam(learning_rate=0.1, **kwargs).apply([var])
    return var.value


def test_adam_takes_the_sum_of_the_squared_rows():
    rows = np.array([[1.0, 2.0, -1.0], [3.0, -2.0, -1.0]], dtype=np.float32)
    got = _adam_step(_embedding_variable(rows, [2, 2]))
    g, sq = rows.sum(axis=0), np.square(rows).sum(axis=0)
    # t = 1: w -= lr * sqrt(1 - b2) / (1 - b1) * (1 - b1) g / (sqrt((1 - b2) sq) + eps)
    want = -0.1 * g / (np.sqrt(sq) + 1e-7 / np.sqrt(0.001))
    np.testing.assert_allclose(got[2], want, rtol=1e-5)
    assert not got[[0, 1, 3, 4]].any()
    dense = Variable("w", np.zeros((V, E), dtype=np.float32))
    dense.grad[2] = g
    np.testing.assert_allclose(_adam_step(dense)[2], -0.1 * np.sign(g), rtol=1e-5)


def test_adamax_takes_the_sum_of_the_absolute_rows():
    rows = np.array([[1.0, 2.0, -1.0], [-3.0, -2.0, -1.0]], dtype=np.float32)
    var = _embedding_variable(rows, [4, 4])
    optimizers.Adamax(learning_rate=0.1).apply([var])
    # t = 1: w -= lr * (1 - b1) g / ((1 - b1) (max(0, sum |rows|) + epsilon))
    want = -0.1 * rows.sum(axis=0) / (np.abs(rows).sum(axis=0) + 1e-7)
    np.testing.assert_allclose(var.value[4], want, rtol=1e-6)


@pytest.mark.parametrize("clip", [{"clipnorm": 1.0}, {"clipvalue": 1.5},
                                  {"global_clipnorm": 1.0}])
def test_clipping_sees_the_rows(clip):
    rows = np.array([[1.0, 2.0, -1.0], [3.0, -2.0, -1.0]], dtype=np.float32)
    var = _embedding_variable(rows, [1, 1])
    optimizers.SGD(learning_rate=1.0, **clip).apply([var])
    if "clipvalue" in clip:
        want = np.clip(rows, -1.5, 1.5).sum(axis=0)
    else:  # the norm of the rows, not of their sum
        want = rows.sum(axis=0) / np.linalg.norm(rows)
    np.testing.assert_allclose(-var.value[1], want, rtol=1e-6)


def test_a_variable_without_rows_is_updated_as_before():
    grad = np.array([[0.5, -0.25, 2.0]], dtype=np.float32)
    with_rows = _embedding_variable(grad, [0])
    dense = Variable("w", np.zeros((V, E), dtype=np.float32))
    dense.grad[0] = grad[0]
    for var in (with_rows, dense):
        optimizers.Adam(learning_rate=0.1).apply([var])
    # one occurrence per row: the same step, bit for bit
    np.testing.assert_array_equal(with_rows.value, dense.value)
