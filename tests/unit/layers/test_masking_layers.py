"""`pylstm.layers.Embedding`'s backward (rows summed per index) and bad indices, and stateful
models. Embedding, Masking and mask propagation against Keras 3:
parity/keras/test_masking_layers.py."""

import numpy as np
import pytest

from pylstm import layers, models

V, E, H, B, T = 7, 4, 5, 3, 6


def test_embedding_backward_sums_rows_per_index():
    rng = np.random.default_rng(1)
    x = rng.integers(0, V, size=(B, T))
    emb = layers.Embedding(V, E)
    emb(x, training=True)
    g = rng.normal(size=(B, T, E)).astype("float32")
    assert emb.backward(g) is None
    expected = np.zeros((V, E), dtype="float32")
    for b in range(B):
        for t in range(T):
            expected[x[b, t]] += g[b, t]
    np.testing.assert_allclose(emb.embeddings.grad, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bad, error, match", [
    (np.array([[0, 7]]), ValueError, r"indices in \[0, 7\), received values from 0 to 7"),
    (np.array([[-1, 2]]), ValueError, r"indices in \[0, 7\), received values from -1"),
    (np.array([[0.5, 2.0]]), ValueError, "whole numbers"),
    (np.array([["a", "b"]]), TypeError, "integer array, received dtype <U1"),
])
def test_embedding_bad_indices(bad, error, match):
    with pytest.raises(error, match=match):
        layers.Embedding(V, E)(bad)


def test_stateful_model_batch_size_and_resets():
    rng = np.random.default_rng(5)
    model = models.Sequential([layers.Input((T, E), batch_size=2),
                               layers.LSTM(H, stateful=True, seed=0)])
    x = rng.normal(size=(2, T, E)).astype("float32")
    first = model(x)
    second = model(x)
    assert not np.allclose(first, second)  # the state carried over
    model.reset_states()
    np.testing.assert_array_equal(model(x), first)
    model.reset_states(np.array([True, False]))
    again = model(x)
    np.testing.assert_array_equal(again[0], first[0])
    assert not np.allclose(again[1], first[1])
    with pytest.raises(ValueError, match="batches of 2 samples, received a batch of 3"):
        model(rng.normal(size=(3, T, E)).astype("float32"))
    with pytest.raises(ValueError, match=r"must be a \(2,\) boolean array"):
        model.reset_states(np.array([1, 0]))
