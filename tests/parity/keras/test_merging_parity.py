"""Merge layers (`Concatenate`, `Add`, `Subtract`, `Multiply`, `Average`, `Maximum`, `Minimum`,
`Dot`) against Keras 3 on the same inputs: outputs within 1e-5, input gradients (the
vector-Jacobian product under `tf.GradientTape`) within 1e-4 relative, output masks as Keras
sets them, broadcasting, ties, and Keras's masked merges (Keras reads the masks attached to its
input tensors; pylstm takes them as the `mask` argument); a masked functional model trained as
Keras trains it; functional `.keras` / `.h5` files holding every merge layer, both ways.
Oracle-free checks: unit/layers/test_merging.py."""

import numpy as np
import pytest

from pylstm import layers

# tests/support/keras_util.py, registered by conftest.py.
import pylstm_tests_keras_util as ku

keras, tf = ku.keras, ku.tf
# Keras 3 keeps a tensor's mask in an attribute; these read and set it as its layers do.
from keras.src.backend import get_keras_mask, set_keras_mask  # noqa: E402

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

B, T, D = 3, 4, 5
RTOL_OUT, ATOL_OUT = 1e-5, 1e-6
RTOL_GRAD, ATOL_GRAD = 1e-4, 1e-6
ELEMENTWISE = ["Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"]


def keras_merge_call(layer, xs, upstream, masks=None):
    """Calls a Keras merge layer on `xs` (with `masks` attached to the tensors, as a Keras
    graph carries them) under a GradientTape; returns `(output, output mask or None, [d sum(
    output * upstream) / d x for x in xs])`."""
    tensors = [tf.constant(x) for x in xs]
    for t, m in zip(tensors, masks or [None] * len(xs)):
        if m is not None:
            set_keras_mask(t, tf.constant(m))
    with tf.GradientTape() as tape:
        for t in tensors:
            tape.watch(t)
        y = layer(tensors)
        loss = tf.reduce_sum(y * upstream)
    grads = tape.gradient(loss, tensors, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    mask = get_keras_mask(y)
    return (np.asarray(y), None if mask is None else np.asarray(mask),
            [np.asarray(g) for g in grads])


def check_parity(ours, theirs, xs, masks=None, exact=False):
    rng = np.random.default_rng(7)
    y = ours(xs, training=True, mask=masks)
    upstream = rng.normal(size=y.shape).astype("float32")
    k_y, k_mask, k_grads = keras_merge_call(theirs, xs, upstream, masks)
    assert y.shape == k_y.shape and y.dtype == np.float32
    tol_out = {"rtol": 0, "atol": 0} if exact else {"rtol": RTOL_OUT, "atol": ATOL_OUT}
    np.testing.assert_allclose(y, k_y, **tol_out)
    grads = ours.backward(upstream)
    assert len(grads) == len(xs)
    for i, (g, k_g) in enumerate(zip(grads, k_grads)):
        assert g.shape == xs[i].shape
        np.testing.assert_allclose(g, k_g, rtol=RTOL_GRAD, atol=ATOL_GRAD, err_msg=f"input {i}")
    mask = ours.compute_mask(xs, masks)
    if k_mask is None:
        # Keras attaches no mask when compute_mask gives None
        assert mask is None
    else:
        np.testing.assert_array_equal(mask, k_mask)
    if masks is not None:
        k_computed = theirs.compute_mask([tf.constant(x) for x in xs],
                                         [None if m is None else tf.constant(m) for m in masks])
        if k_computed is None:
            assert mask is None
        else:
            np.testing.assert_array_equal(mask, np.asarray(k_computed))
    return grads


def twins(class_name, **kwargs):
    return getattr(layers, class_name)(**kwargs), getattr(keras.layers, class_name)(**kwargs)


def random_inputs(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=s).astype("float32") for s in shapes]


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("shapes", [
    [(B, T, D), (B, T, D)], [(B, T, D), (B, 1, D)], [(B, 1, D), (B, T, 1)],
    [(B, T, D), (B, D)], [(B, D), (B, D)]],
    ids=["same", "size1", "both_broadcast", "lower_rank", "2d"])
def test_elementwise_parity(name, shapes):
    ours, theirs = twins(name)
    xs = random_inputs(shapes)
    theirs.build([x.shape for x in xs])
    check_parity(ours, theirs, xs)
    assert ours.compute_output_shape([(None,) + s[1:] for s in shapes]) == tuple(
        theirs.compute_output_shape([(None,) + s[1:] for s in shapes]))


@pytest.mark.parametrize("name", [n for n in ELEMENTWISE if n != "Subtract"])
def test_three_inputs_parity(name):
    ours, theirs = twins(name)
    check_parity(ours, theirs, random_inputs([(B, T, D)] * 3, seed=1))


@pytest.mark.parametrize("name", ["Maximum", "Minimum"])
def test_ties_parity(name):
    """Ties between inputs: the gradient goes where TensorFlow's does."""
    rng = np.random.default_rng(2)
    xs = [rng.integers(0, 2, size=(B, T, D)).astype("float32") for _ in range(3)]
    ours, theirs = twins(name)
    check_parity(ours, theirs, xs, exact=True)


MASK_CASES = {
    "both": lambda m1, m2: [m1, m2],
    "first": lambda m1, m2: [m1, None],
    "second": lambda m1, m2: [None, m2],
}


def masks_for(case):
    m1 = np.array([[True, True, False, False], [False, True, True, True],
                   [True, False, False, True]])
    m2 = np.array([[True, False, True, False], [True, True, False, False],
                   [False, False, False, True]])
    return MASK_CASES[case](m1, m2)


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("case", list(MASK_CASES))
def test_masked_elementwise_parity(name, case):
    ours, theirs = twins(name)
    xs = random_inputs([(B, T, D)] * 2, seed=3)
    check_parity(ours, theirs, xs, masks=masks_for(case))


@pytest.mark.parametrize("name", ["Multiply", "Maximum", "Minimum"])
def test_masked_three_inputs_parity(name):
    ours, theirs = twins(name)
    xs = random_inputs([(B, T, D)] * 3, seed=4)
    m1, m2 = masks_for("both")
    check_parity(ours, theirs, xs, masks=[m1, m2, m1 & ~m2])


@pytest.mark.parametrize("axis,shapes", [
    (-1, [(B, T, 2), (B, T, 3)]), (1, [(B, T, D), (B, 2, D)]), (2, [(B, T, 1), (B, T, D)]),
    (1, [(B, 2), (B, 3), (B, 1)])])
def test_concatenate_parity(axis, shapes):
    ours, theirs = twins("Concatenate", axis=axis)
    check_parity(ours, theirs, random_inputs(shapes, seed=5))
    none_shapes = [(None,) + s[1:] for s in shapes]
    assert ours.compute_output_shape(none_shapes) == tuple(
        theirs.compute_output_shape(none_shapes))


@pytest.mark.parametrize("axis", [-1, 2])
@pytest.mark.parametrize("case", list(MASK_CASES))
def test_masked_concatenate_parity(axis, case):
    ours, theirs = twins("Concatenate", axis=axis)
    xs = random_inputs([(B, T, 2), (B, T, 3)], seed=5)
    check_parity(ours, theirs, xs, masks=masks_for(case))


def test_concatenate_time_axis_masks_parity():
    """Joining sequences along time: each step keeps its own input's mask entry."""
    ours, theirs = twins("Concatenate", axis=1)
    xs = random_inputs([(B, T, D), (B, T, D)], seed=6)
    check_parity(ours, theirs, xs, masks=masks_for("first"))


@pytest.mark.parametrize("axes,shapes", [
    (1, [(B, D), (B, D)]), (-1, [(B, T, D), (B, 2, D)]), ((1, 2), [(B, T, D), (B, 2, T)]),
    ((2, 1), [(B, T, D), (B, D)]), ((1, 1), [(B, D), (B, D, 2)]),
    ((1, 2), [(B, T, 2, D), (B, 3, T)])])
@pytest.mark.parametrize("normalize", [False, True])
def test_dot_parity(axes, shapes, normalize):
    ours, theirs = twins("Dot", axes=axes, normalize=normalize)
    xs = random_inputs(shapes, seed=7)
    theirs.build([x.shape for x in xs])
    check_parity(ours, theirs, xs)
    none_shapes = [(None,) + s[1:] for s in shapes]
    assert ours.compute_output_shape(none_shapes) == tuple(
        theirs.compute_output_shape(none_shapes))


def test_dot_drops_masks_like_keras():
    ours, theirs = twins("Dot", axes=2)
    xs = random_inputs([(B, T, D), (B, T, D)], seed=8)
    check_parity(ours, theirs, xs, masks=masks_for("both"))


@pytest.mark.parametrize("name", ELEMENTWISE + ["Concatenate"])
def test_config_matches_keras(name):
    ours, theirs = twins(name, name="merge_x")
    assert set(ours.get_config()) == set(theirs.get_config())
    keras_config = dict(theirs.get_config(), dtype="float32")
    assert type(ours).from_config(keras_config).get_config() == ours.get_config()


def test_dot_config_matches_keras():
    ours, theirs = twins("Dot", axes=[1, 2], normalize=True, name="dot_x")
    config = theirs.get_config()
    assert set(ours.get_config()) == set(config)
    clone = layers.Dot.from_config(dict(config, dtype="float32"))
    assert clone.axes == [1, 2] and clone.normalize is True


# In a functional model -----------------------------------------------------------------------

STEPS = 6


def masked_two_input_model(lib, model_class, merge):
    """Two masked token sequences merged by `merge` (masks as Keras propagates them through
    the merge), then every other layer of this suite: GlobalAveragePooling1D over the masked
    steps, RepeatVector, Reshape, Permute, Concatenate, Dot (with and without normalize) and
    GlobalMaxPooling1D."""
    L = lib
    a, b = L.Input((STEPS,), dtype="int32"), L.Input((STEPS,), dtype="int32")
    ha = L.LSTM(5, return_sequences=True)(L.Embedding(9, 4, mask_zero=True)(a))
    hb = L.LSTM(5, return_sequences=True)(L.Embedding(9, 4, mask_zero=True)(b))
    merged = getattr(L, merge)()([ha, hb])
    p = L.GlobalAveragePooling1D()(L.LSTM(3, return_sequences=True)(merged))
    r = L.Permute((2, 1))(L.Reshape((3, 2))(L.RepeatVector(2)(p)))
    c = L.Concatenate(axis=1)([r, L.Reshape((2, 3))(L.Dense(6)(p))])
    d = L.Dot(axes=(2, 2))([c, r])
    n = L.Dot(axes=2, normalize=True)([c, L.Dense(3)(c)])
    pooled = L.Concatenate()([L.GlobalMaxPooling1D()(d), L.GlobalMaxPooling1D()(n)])
    return model_class([a, b], L.Dense(2)(pooled))


def padded_pair(rng):
    xa = rng.integers(1, 9, size=(4, STEPS))
    xa[0, 3:] = 0
    xa[1, :2] = 0
    xb = rng.integers(1, 9, size=(4, STEPS))
    xb[0, 4:] = 0
    xb[2, [1, 3]] = 0
    xb[3, :] = 0
    return xa, xb


def twin_models(merge, rng):
    from pylstm.models import Model

    theirs = masked_two_input_model(keras.layers, keras.Model, merge)
    ours = masked_two_input_model(layers, Model, merge)
    weights = [rng.normal(scale=0.5, size=w.shape).astype("float32")
               for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    return ours, theirs


@pytest.mark.parametrize("merge", ["Add", "Minimum", "Concatenate"])
def test_masked_functional_model_predicts_like_keras(merge):
    rng = np.random.default_rng(11)
    ours, theirs = twin_models(merge, rng)
    xa, xb = padded_pair(rng)
    np.testing.assert_allclose(ours.predict([xa, xb]), np.asarray(theirs([xa, xb])),
                               rtol=RTOL_OUT, atol=ATOL_OUT)


@pytest.mark.parametrize("merge", ["Multiply", "Maximum"])
def test_masked_functional_model_trains_like_keras(merge):
    """An SGD loss curve and the trained weights, through the masked merges' backward and
    every other layer of the suite."""
    rng = np.random.default_rng(12)
    ours, theirs = twin_models(merge, rng)
    xa, xb = padded_pair(rng)
    y = rng.normal(size=(4, 2)).astype("float32")
    theirs.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    ours.compile(optimizer={"class_name": "SGD", "config": {"learning_rate": 0.5}}, loss="mse")
    fit = {"batch_size": 4, "epochs": 3, "shuffle": False, "verbose": 0}
    k_loss = theirs.fit([xa, xb], y, **fit).history["loss"]
    loss = ours.fit([xa, xb], y, **fit).history["loss"]
    np.testing.assert_allclose(loss, k_loss, rtol=1e-4)
    for w, k_w in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(w, k_w, rtol=RTOL_GRAD, atol=1e-5)


# Keras files ---------------------------------------------------------------------------------


def every_merge_model(lib, model_class):
    """A functional model holding every merge layer (none fits in a Sequential)."""
    L = lib
    a, b = L.Input((T, D)), L.Input((T, D))
    da, db = L.Dense(D)(a), L.Dense(D)(b)
    joined = L.Concatenate(axis=1)([L.Maximum()([da, db]), L.Subtract()([da, b])])
    product = L.Add()([L.Multiply()([a, db]), L.Average()([a, b, da]), L.Minimum()([da, b])])
    normalized = L.Dot(axes=(1, 1), normalize=True)([joined, L.Concatenate(axis=1)([a, b])])
    return model_class([a, b], [normalized, L.Dot(axes=2)([product, da])])


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_file_loads_and_predicts_as_keras(suffix, tmp_path):
    from pylstm.models import load_keras

    rng = np.random.default_rng(13)
    model = every_merge_model(keras.layers, keras.Model)
    model.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32")
                       for w in model.get_weights()])
    xs = random_inputs([(B, T, D), (B, T, D)], seed=14)
    model.save(tmp_path / f"merges{suffix}")
    ours = load_keras(tmp_path / f"merges{suffix}")
    assert sorted(type(layer).__name__ for layer in ours.layers) == sorted(
        type(layer).__name__ for layer in model.layers)
    for y, k_y in zip(ours.predict(xs), model(xs)):
        np.testing.assert_allclose(y, np.asarray(k_y), rtol=RTOL_OUT, atol=ATOL_OUT)


def test_saved_keras_file_loads_in_keras(tmp_path):
    from pylstm.models import Model

    rng = np.random.default_rng(15)
    ours = every_merge_model(layers, Model)
    ours.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32")
                      for w in ours.get_weights()])
    ours.save(tmp_path / "merges.keras")
    theirs = keras.models.load_model(tmp_path / "merges.keras")
    xs = random_inputs([(B, T, D), (B, T, D)], seed=16)
    for y, k_y in zip(ours.predict(xs), theirs(xs)):
        np.testing.assert_allclose(y, np.asarray(k_y), rtol=RTOL_OUT, atol=ATOL_OUT)
