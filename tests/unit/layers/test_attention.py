"""`pylstm.layers.Attention` and `AdditiveAttention` without an oracle framework: shapes, the
forward pass against loops written from the papers' formulas, masks, the causal mask, dropout,
backward against central differences in float64, config round trips and bad arguments.
Parity with Keras 3: parity/keras/test_attention_parity.py."""

import numpy as np
import pytest

from pylstm import layers, utils
from pylstm.layers import AdditiveAttention, Attention

B, TQ, TV, D, DV = 2, 3, 4, 5, 6

# (class, constructor arguments, weights set before use): every score a layer can compute.
CONFIGS = [
    (Attention, {}, []),
    (Attention, {"use_scale": True}, [0.7]),
    (Attention, {"score_mode": "concat"}, [1.3]),
    (Attention, {"score_mode": "concat", "use_scale": True}, [0.7, 1.3]),
    (AdditiveAttention, {}, [[0.5, -0.3, 0.8, 0.2, -0.6]]),
    (AdditiveAttention, {"use_scale": False}, []),
]
CONFIG_IDS = ["dot", "dot-scale", "concat", "concat-scale", "additive", "additive-noscale"]


def make(cls, kwargs, weights, with_key, dtype="float64"):
    layer = cls(dtype=dtype, **kwargs)
    shapes = [(B, TQ, D), (B, TV, DV if with_key else D)]
    if with_key:
        shapes.append((B, TV, D))
    layer.build(shapes)
    layer.set_weights([np.asarray(w, dtype=dtype) for w in weights])
    return layer


def inputs(rng, with_key, dtype="float64"):
    q = rng.normal(size=(B, TQ, D)).astype(dtype)
    if not with_key:
        return [q, rng.normal(size=(B, TV, D)).astype(dtype)]
    value, key = rng.normal(size=(B, TV, DV)), rng.normal(size=(B, TV, D))
    return [q, value.astype(dtype), key.astype(dtype)]


def reference_scores(cls, kwargs, weights, q, k):
    """Score of each (b, i, j) by loops: Luong's dot product, Keras's "concat" and Bahdanau's
    additive score."""
    scores = np.zeros((q.shape[0], q.shape[1], k.shape[1]))
    for b, i, j in np.ndindex(scores.shape):
        if cls is AdditiveAttention:
            scale = np.asarray(weights[0]) if weights else 1.0
            scores[b, i, j] = np.sum(scale * np.tanh(q[b, i] + k[b, j]))
        elif kwargs.get("score_mode") == "concat":
            scale = weights[0] if kwargs.get("use_scale") else 1.0
            scores[b, i, j] = weights[-1] * np.sum(np.tanh(scale * (q[b, i] + k[b, j])))
        else:
            scale = weights[0] if kwargs.get("use_scale") else 1.0
            scores[b, i, j] = scale * np.dot(q[b, i], k[b, j])
    return scores


@pytest.mark.parametrize("cls,kwargs,weights", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("with_key", [False, True])
def test_forward_matches_loops(rng, cls, kwargs, weights, with_key):
    layer = make(cls, kwargs, weights, with_key)
    x = inputs(rng, with_key)
    out, dist = layer(x, return_attention_scores=True)
    scores = reference_scores(cls, kwargs, weights, x[0], x[-1])
    want_dist = np.exp(scores) / np.exp(scores).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-12)
    np.testing.assert_allclose(out, want_dist @ x[1], rtol=1e-12)
    assert out.shape == (B, TQ, x[1].shape[-1]) and out.dtype == np.float64
    np.testing.assert_array_equal(layer(x), out)


def test_shapes_and_dtype():
    layer = Attention()
    q = np.ones((2, 3, 4), dtype="float32")
    v, k = np.ones((2, 7, 6), dtype="float32"), np.ones((2, 7, 4), dtype="float32")
    out, dist = layer([q, v, k], return_attention_scores=True)
    assert out.shape == (2, 3, 6) and dist.shape == (2, 3, 7)
    assert out.dtype == np.float32 and dist.dtype == np.float32
    assert layer.compute_output_shape([(None, 3, 4), (None, 7, 6), (None, 7, 4)]) == (None, 3, 6)
    assert layer.compute_output_shape([(None, None, 4), (None, None, 4)]) == (None, None, 4)
    assert layer.compute_output_shape([(None, None, 4), (None, 9, 6), (None, None, None)],
                                      return_attention_scores=True) == [(None, None, 6),
                                                                         (None, None, 9)]
    assert AdditiveAttention().compute_output_shape([(None, 3, 4), (None, None, 4)]) == \
        (None, 3, 4)


def test_weights_names_order_and_initial_values():
    layer = Attention(use_scale=True, score_mode="concat", name="att")
    layer.build([(None, 3, 4), (None, 5, 4)])
    assert [v.name for v in layer.weights] == ["att/scale", "att/concat_score_weight"]
    assert [w.shape for w in layer.get_weights()] == [(), ()]
    assert [float(w) for w in layer.get_weights()] == [1.0, 1.0]
    additive = AdditiveAttention(name="add")
    additive.build([(None, 3, 4), (None, 5, 4)])
    assert [v.name for v in additive.weights] == ["add/scale"]
    assert additive.scale.shape == (4,) and np.any(additive.scale.value != 0)
    for plain in (Attention(), AdditiveAttention(use_scale=False)):
        plain.build([(None, 3, 4), (None, 5, 4)])
        assert plain.weights == []


def test_value_mask_takes_steps_out_and_query_mask_zeroes_output(rng):
    layer = Attention(dtype="float64")
    x = inputs(rng, with_key=False)
    query_mask = np.array([[True, False, True], [True, True, True]])
    value_mask = np.array([[True, True, False, False], [True, False, True, True]])
    out, dist = layer(x, mask=[query_mask, value_mask], return_attention_scores=True)
    assert np.all(dist[~np.broadcast_to(value_mask[:, None, :], dist.shape)] == 0)
    np.testing.assert_allclose(dist.sum(axis=-1), 1.0)
    assert np.all(out[0, 1] == 0)
    # A masked value step does not change the output; the attended steps are a softmax of
    # their own scores.
    moved = [x[0], x[1].copy()]
    moved[1][0, 2:] += 10.0
    np.testing.assert_allclose(layer(moved, mask=[query_mask, value_mask]), out)
    kept = dist[1, 0, value_mask[1]]
    scores = x[0][1, 0] @ x[1][1, value_mask[1]].T
    np.testing.assert_allclose(kept, np.exp(scores) / np.exp(scores).sum())
    # A mask list may hold None entries, and a third (key) entry is ignored, as in Keras.
    np.testing.assert_array_equal(layer(x, mask=[None, value_mask, None]),
                                  layer(x, mask=[np.ones((B, TQ), bool), value_mask]))


def test_compute_mask_is_the_query_mask(rng):
    layer = Attention()
    x = inputs(rng, with_key=False, dtype="float32")
    query_mask = np.array([[True, False, True], [True, True, False]])
    np.testing.assert_array_equal(layer.compute_mask(x, [query_mask, None]), query_mask)
    assert layer.compute_mask(x, None) is None
    assert layer.compute_mask(x, [None, np.ones((B, TV), bool)]) is None


@pytest.mark.parametrize("cls,kwargs,weights", CONFIGS[::2], ids=CONFIG_IDS[::2])
def test_causal_mask_hides_later_steps(rng, cls, kwargs, weights):
    layer = make(cls, kwargs, weights, with_key=False)
    q = rng.normal(size=(B, TV, D))
    v = rng.normal(size=(B, TV, D))
    out, dist = layer([q, v], use_causal_mask=True, return_attention_scores=True)
    assert np.all(np.triu(np.ones((TV, TV), bool), 1)[None] <= (dist == 0))
    np.testing.assert_allclose(dist.sum(axis=-1), 1.0)
    # Step i's output depends on value steps j <= i only.
    for i in range(TV):
        later = v.copy()
        later[:, i + 1:] += 5.0
        np.testing.assert_allclose(layer([q, later], use_causal_mask=True)[:, :i + 1],
                                   out[:, :i + 1])
    # A value mask joins the causal one: batch 0's later rows leave step 0 out, batch 1 is
    # unchanged.
    value_mask = np.ones((B, TV), bool)
    value_mask[0, 0] = False
    out_m, dist_m = layer([q, v], mask=[None, value_mask], use_causal_mask=True,
                          return_attention_scores=True)
    assert np.all(dist_m[1] == dist[1]) and np.all(dist_m[0, 1:, 0] == 0)


@pytest.mark.parametrize("cls,kwargs,weights", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("with_key", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_gradients_by_central_differences_float64(rng, numeric_grad, cls, kwargs, weights,
                                                  with_key, masked):
    layer = make(cls, kwargs, weights, with_key)
    x = inputs(rng, with_key)
    call_kwargs = {}
    if masked:
        # No row left without an allowed step: float64 keeps s - 1e9 only to ~1e-7.
        call_kwargs = {"mask": [np.array([[True, True, False], [False, True, True]]),
                                np.array([[True, True, True, False], [True, False, True, True]])],
                       "use_causal_mask": True}
    g_out = rng.normal(size=(B, TQ, x[1].shape[-1]))
    g_dist = rng.normal(size=(B, TQ, TV))

    def objective():
        out, dist = layer.call(x, return_attention_scores=True, **call_kwargs)
        return float(np.sum(g_out * out) + np.sum(g_dist * dist))

    layer.zero_grads()
    layer(x, training=True, return_attention_scores=True, **call_kwargs)
    grads = layer.backward([g_out, g_dist])
    assert len(grads) == len(x)
    for arr, grad in zip(x, grads):
        np.testing.assert_allclose(grad, numeric_grad(objective, arr), rtol=1e-6, atol=1e-8)
    for var in layer.weights:
        np.testing.assert_allclose(var.grad, numeric_grad(objective, var.value), rtol=1e-6,
                                   atol=1e-8, err_msg=var.name)


def test_backward_of_output_only_and_accumulation(rng):
    layer = make(Attention, {"use_scale": True}, [0.7], with_key=False)
    x = inputs(rng, with_key=False)
    g = rng.normal(size=(B, TQ, D))
    layer(x, training=True)
    first = layer.backward(g)
    scale_grad = layer.scale.grad.copy()
    layer(x, training=True, return_attention_scores=True)
    second = layer.backward([g, None])
    for a, b in zip(first, second):
        np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(layer.scale.grad, 2 * scale_grad)


def test_backward_needs_a_training_call(rng):
    layer = Attention()
    layer(inputs(rng, with_key=False, dtype="float32"))
    with pytest.raises(RuntimeError, match="training=True"):
        layer.backward(np.ones((B, TQ, D), "float32"))


def test_dropout_on_the_distribution(rng, numeric_grad):
    layer = AdditiveAttention(dropout=0.5, dtype="float64")
    x = inputs(rng, with_key=False)
    out, dist = layer(x, return_attention_scores=True)
    np.testing.assert_allclose(dist.sum(axis=-1), 1.0)  # inference: no dropout
    utils.set_random_seed(3)
    out_t, dist_t = layer(x, training=True, return_attention_scores=True)
    dropped = dist_t == 0
    assert dropped.any() and (~dropped).any()
    np.testing.assert_allclose(dist_t[~dropped], 2.0 * dist[~dropped])
    np.testing.assert_allclose(out_t, dist_t @ x[1])
    g = rng.normal(size=out.shape)

    def objective():
        utils.set_random_seed(3)  # the same dropout mask at every evaluation
        return float(np.sum(g * layer.call(x, training=True)))

    layer.zero_grads()
    utils.set_random_seed(3)
    layer(x, training=True)
    grads = layer.backward(g)
    np.testing.assert_allclose(grads[0], numeric_grad(objective, x[0]), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(layer.scale.grad, numeric_grad(objective, layer.scale.value),
                               rtol=1e-6, atol=1e-8)


def test_seeded_dropout_is_reproducible(rng):
    x = inputs(rng, with_key=False, dtype="float32")
    first = Attention(dropout=0.3, seed=7)
    second = Attention(dropout=0.3, seed=7)
    a = [first(x, training=True) for _ in range(2)]
    b = [second(x, training=True) for _ in range(2)]
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], a[1])


@pytest.mark.parametrize("layer,keys", [
    (Attention(use_scale=True, score_mode="concat", dropout=0.25, seed=3, name="a"),
     {"name", "trainable", "dtype", "use_scale", "score_mode", "dropout", "seed"}),
    (AdditiveAttention(use_scale=False, dropout=0.1, name="b"),
     {"name", "trainable", "dtype", "use_scale", "dropout", "seed"}),
])
def test_config_round_trip(rng, layer, keys):
    config = layer.get_config()
    assert set(config) == keys  # Keras 3.15's keys
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    again = layers.deserialize(layers.serialize(layer))
    assert type(again) is type(layer) and again.get_config() == config
    x = inputs(rng, with_key=False, dtype="float32")
    layer(x)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x), layer(x))


@pytest.mark.parametrize("kwargs,match", [
    ({"score_mode": "general"}, "score_mode"),
    ({"dropout": 1.0}, "dropout"),
    ({"dropout": -0.1}, "dropout"),
    ({"dropout": "0.5"}, "dropout"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Attention(**kwargs)


@pytest.mark.parametrize("shapes,match", [
    ([(2, 3, 4)], "list"),
    ([(2, 3, 4), (2, 5, 4), (2, 5, 4), (2, 5, 4)], "list"),
    ([(2, 3, 4), (2, 5)], "rank 3"),
    ([(2, 3, 4), (3, 5, 4)], "batch size"),
    ([(2, 3, 4), (2, 5, 6)], "feature size 4"),
    ([(2, 3, 4), (2, 5, 6), (2, 6, 4)], "as many steps"),
])
def test_bad_inputs(shapes, match):
    with pytest.raises(ValueError, match=match):
        Attention()([np.ones(s, "float32") for s in shapes])


def test_bad_calls(rng):
    layer = Attention()
    x = inputs(rng, with_key=False, dtype="float32")
    with pytest.raises(ValueError, match="list"):
        layer(x[0])
    with pytest.raises(ValueError, match="mask"):
        layer(x, mask=np.ones((B, TQ), bool))
    with pytest.raises(ValueError, match="value_mask"):
        layer(x, mask=[None, np.ones((B, TQ), bool)])
    with pytest.raises(ValueError, match="last dimension"):
        AdditiveAttention().build([(None, 3, None), (None, 5, None)])
