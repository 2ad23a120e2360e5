"""`pylstm.layers.Attention` and `AdditiveAttention` against Keras 3's layers of the same names
on the same weights (float32: outputs rtol 1e-5, input and weight gradients rtol 1e-4 against
tf.GradientTape's vector-Jacobian products): both score modes with and without `scale`, with and
without a key, query and value masks, the causal mask, the returned attention scores, the
output mask, output shapes and configs. Oracle-free checks: unit/layers/test_attention.py."""

import itertools

import numpy as np
import pytest

from pylstm.layers import AdditiveAttention, Attention

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

keras, tf = ku.keras, ku.tf

B, TQ, TV, D, DV = 3, 4, 5, 6, 7
RTOL_OUT, ATOL_OUT = 1e-5, 1e-6
RTOL_GRAD, ATOL_GRAD = 1e-4, 1e-6

# (class name, constructor arguments): every score the two layers compute.
CONFIGS = [
    ("Attention", {}),
    ("Attention", {"use_scale": True}),
    ("Attention", {"score_mode": "concat"}),
    ("Attention", {"score_mode": "concat", "use_scale": True}),
    ("AdditiveAttention", {}),
    ("AdditiveAttention", {"use_scale": False}),
]
CONFIG_IDS = ["dot", "dot-scale", "concat", "concat-scale", "additive", "additive-noscale"]
OURS = {"Attention": Attention, "AdditiveAttention": AdditiveAttention}

# Row 2 of the value mask is all False: with the causal mask every query row of that batch entry
# has no allowed step, which Keras's float32 `s - 1e9` turns into a uniform distribution.
QUERY_MASK = np.array([[True, True, False, True], [False, True, True, True], [True] * 4])
VALUE_MASK = np.array([[True, True, True, False, False], [False, True, True, True, True],
                       [False] * 5])


def twins(rng, class_name, kwargs, with_key):
    """Both layers built for the inputs, with the same random (non-default) weights."""
    shapes = [(B, TQ, D), (B, TV, DV if with_key else D)] + ([(B, TV, D)] if with_key else [])
    ours = OURS[class_name](**kwargs)
    theirs = getattr(keras.layers, class_name)(**kwargs)
    ours.build(shapes)
    theirs.build(shapes)
    ours.set_weights([(1.0 + 0.5 * rng.normal(size=w.shape)).astype("float32")
                      for w in ours.get_weights()])
    ku.copy_weights(ours, theirs)
    return ours, theirs


def keras_vjp(layer, x, upstream, **kwargs):
    """Keras's outputs and the gradients of `sum(outputs[k] * upstream[k])` with respect to
    each input and each trainable weight."""
    x = [tf.constant(a) for a in x]
    with tf.GradientTape() as tape:
        for a in x:
            tape.watch(a)
        outputs = ku.as_list(layer(x, **kwargs))
        loss = tf.add_n([tf.reduce_sum(o * g) for o, g in zip(outputs, upstream)])
    grads = tape.gradient(loss, {"inputs": x, "weights": list(layer.trainable_weights)},
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return ([np.asarray(o) for o in outputs], [np.asarray(g) for g in grads["inputs"]],
            [np.asarray(g) for g in grads["weights"]])


def assert_parity(rng, ours, theirs, with_key, mask=None, use_causal_mask=False,
                  return_attention_scores=False):
    q = rng.normal(size=(B, TQ, D)).astype("float32")
    v = rng.normal(size=(B, TV, DV if with_key else D)).astype("float32")
    x = [q, v] + ([rng.normal(size=(B, TV, D)).astype("float32")] if with_key else [])
    kwargs = {"use_causal_mask": use_causal_mask,
              "return_attention_scores": return_attention_scores}
    if mask is not None:
        kwargs["mask"] = mask
    outputs = ku.as_list(ours(x, training=True, **kwargs))
    upstream = [rng.normal(size=o.shape).astype("float32") for o in outputs]
    k_kwargs = dict(kwargs)
    if mask is not None:
        k_kwargs["mask"] = [None if m is None else tf.constant(m) for m in mask]
    k_outputs, k_input_grads, k_weight_grads = keras_vjp(theirs, x, upstream, **k_kwargs)
    assert [o.shape for o in outputs] == [o.shape for o in k_outputs]
    for ours_out, keras_out in zip(outputs, k_outputs):
        np.testing.assert_allclose(ours_out, keras_out, rtol=RTOL_OUT, atol=ATOL_OUT)
    ours.zero_grads()
    grads = ours.backward(upstream if return_attention_scores else upstream[0])
    for ours_g, keras_g in zip(grads, k_input_grads, strict=True):
        np.testing.assert_allclose(ours_g, keras_g, rtol=RTOL_GRAD, atol=ATOL_GRAD)
    for var, keras_g in zip(ours.trainable_variables, k_weight_grads, strict=True):
        np.testing.assert_allclose(var.grad, keras_g, rtol=RTOL_GRAD, atol=ATOL_GRAD,
                                   err_msg=var.name)


@pytest.mark.parametrize("class_name,kwargs", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("with_key,return_attention_scores",
                         list(itertools.product([False, True], [False, True])))
def test_parity_scores(rng, class_name, kwargs, with_key, return_attention_scores):
    ours, theirs = twins(rng, class_name, kwargs, with_key)
    assert_parity(rng, ours, theirs, with_key, return_attention_scores=return_attention_scores)


@pytest.mark.parametrize("class_name,kwargs", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("mask,use_causal_mask", [
    ([QUERY_MASK, None], False),
    ([None, VALUE_MASK[:2].repeat([1, 2], axis=0)], False),
    ([QUERY_MASK, VALUE_MASK], False),
    (None, True),
    ([QUERY_MASK, VALUE_MASK], True),
], ids=["query", "value", "both", "causal", "both-causal"])
def test_parity_masks(rng, class_name, kwargs, mask, use_causal_mask):
    ours, theirs = twins(rng, class_name, kwargs, with_key=True)
    assert_parity(rng, ours, theirs, True, mask=mask, use_causal_mask=use_causal_mask,
                  return_attention_scores=True)


@pytest.mark.parametrize("class_name,kwargs", CONFIGS[::3], ids=CONFIG_IDS[::3])
def test_output_mask_shapes_and_config_match_keras(class_name, kwargs):
    ours, theirs = OURS[class_name](**kwargs), getattr(keras.layers, class_name)(**kwargs)
    x = [np.ones((B, TQ, D), "float32"), np.ones((B, TV, D), "float32")]
    mask = [QUERY_MASK, VALUE_MASK]
    np.testing.assert_array_equal(ours.compute_mask(x, mask),
                                  np.asarray(theirs.compute_mask(x, [tf.constant(m)
                                                                     for m in mask])))
    shapes = [(None, TQ, D), (None, None, DV), (None, None, D)]
    assert ours.compute_output_shape(shapes) == theirs.compute_output_shape(shapes)
    config, keras_config = ours.get_config(), theirs.get_config()
    assert set(config) == set(keras_config)
    assert {k: config[k] for k in config if k not in ("name", "dtype")} == \
        {k: keras_config[k] for k in keras_config if k not in ("name", "dtype")}
