"""Merge layers without an oracle: shapes (None dims, broadcasting), errors, masks, config round
trips, and backward against central differences in float64. Keras parity:
parity/keras/test_merging_parity.py."""

import doctest

import numpy as np
import pytest

from pylstm import layers
from pylstm.layers import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply,
                           Subtract, merging)

B, T, D = 2, 3, 4
ELEMENTWISE = [Add, Subtract, Multiply, Average, Maximum, Minimum]


def test_doctests():
    assert doctest.testmod(merging).failed == 0


def _check_gradients(layer, xs, numeric_grad, mask=None):
    """backward() against central differences of `sum(g * layer(xs))`, for every input."""
    rng = np.random.default_rng(9)
    y = layer(xs, training=True, mask=mask)
    g = rng.standard_normal(y.shape)
    grads = layer.backward(g)
    assert isinstance(grads, list) and len(grads) == len(xs)

    def objective():
        return float(np.sum(g * layer.call(xs, mask=mask)))

    for i, (x, grad) in enumerate(zip(xs, grads)):
        assert grad.shape == x.shape and grad.dtype == np.float64
        np.testing.assert_allclose(grad, numeric_grad(objective, x), rtol=1e-6, atol=1e-8,
                                   err_msg=f"input {i}")


@pytest.mark.parametrize("cls", ELEMENTWISE)
@pytest.mark.parametrize("shapes", [[(B, T, D), (B, T, D)], [(B, T, D), (B, 1, D)],
                                    [(B, T, D), (B, D)], [(B, 1, D), (B, T, 1)]],
                         ids=["same", "size1", "lower_rank", "both_broadcast"])
def test_elementwise_gradients_by_central_differences(cls, shapes, numeric_grad):
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(s) for s in shapes]
    layer = cls(dtype="float64")
    y = layer(xs)
    assert y.shape == np.broadcast_shapes((B, T, D), *[s[:1] + (1,) * (3 - len(s)) + s[1:]
                                                       for s in shapes])
    assert layer.compute_output_shape(shapes) == y.shape
    _check_gradients(layer, xs, numeric_grad)


@pytest.mark.parametrize("cls", [Add, Multiply, Average, Maximum, Minimum])
def test_three_inputs_gradients(cls, numeric_grad):
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((B, T, D)) for _ in range(3)]
    _check_gradients(cls(dtype="float64"), xs, numeric_grad)


def test_elementwise_values():
    rng = np.random.default_rng(2)
    a, b, c = (rng.standard_normal((B, T, D)).astype("float32") for _ in range(3))
    np.testing.assert_allclose(Add()([a, b, c]), a + b + c, rtol=1e-6)
    np.testing.assert_allclose(Subtract()([a, b]), a - b, rtol=1e-6)
    np.testing.assert_allclose(Multiply()([a, b, c]), a * b * c, rtol=1e-6)
    np.testing.assert_allclose(Average()([a, b, c]), (a + b + c) / 3, rtol=1e-6)
    np.testing.assert_array_equal(Maximum()([a, b, c]), np.maximum(np.maximum(a, b), c))
    np.testing.assert_array_equal(Minimum()([a, b, c]), np.minimum(np.minimum(a, b), c))
    assert Add()([a, b]).dtype == np.float32


def test_compute_output_shape_with_unknown_dims():
    assert Add().compute_output_shape([(None, 5, 3), (None, 5, 3)]) == (None, 5, 3)
    assert Add().compute_output_shape([(None, None, 3), (None, 5, 3)]) == (None, None, 3)
    assert Add().compute_output_shape([(None, 1, 3), (4, 5, 1)]) == (4, 5, 3)
    assert Add().compute_output_shape([(None, 3), (None, 5, 3)]) == (None, 5, 3)
    assert Concatenate().compute_output_shape([(None, 5, 3), (None, 5, 2)]) == (None, 5, 5)
    assert Concatenate().compute_output_shape([(None, 5, None), (None, 5, 2)]) == (None, 5, None)
    assert Concatenate(axis=1).compute_output_shape([(None, None, 3), (None, 4, 3)]) == \
        (None, None, 3)
    assert Concatenate(axis=1).compute_output_shape([(None, 2, None), (8, 4, 3)]) == (8, 6, 3)
    assert Dot(axes=(2, 2)).compute_output_shape([(None, 5, 3), (None, 7, 3)]) == (None, 5, 7)
    assert Dot(axes=1).compute_output_shape([(None, 3), (None, 3)]) == (None, 1)
    assert Dot(axes=-1).compute_output_shape([(None, None, 3), (None, 3)]) == (None, None)


def test_call_builds_from_the_list_of_shapes():
    layer = Concatenate()
    layer([np.zeros((B, T, 2)), np.zeros((B, T, 3))])
    assert layer.built and layer.input_shape == ((B, T, 2), (B, T, 3))


@pytest.mark.parametrize("cls", ELEMENTWISE)
def test_incompatible_shapes_raise_naming_layer_and_shapes(cls):
    layer = cls(name="merge_me")
    with pytest.raises(ValueError, match=r"merge_me.*\(2, 3, 4\).*\(2, 3, 5\)"):
        layer.compute_output_shape([(2, 3, 4), (2, 3, 5)])
    with pytest.raises(ValueError, match=r"merge_me.*\(2, 3, 4\).*\(2, 3, 5\)"):
        cls(name="merge_me")([np.zeros((2, 3, 4)), np.zeros((2, 3, 5))])
    with pytest.raises(ValueError, match="merge_me.*batch sizes"):
        layer.compute_output_shape([(2, 3, 4), (3, 3, 4)])
    with pytest.raises(ValueError, match="merge_me.*list"):
        layer.call(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="merge_me.*list"):
        layer.build((2, 3, 4))


def test_subtract_needs_two_inputs():
    with pytest.raises(ValueError, match="exactly 2 inputs"):
        Subtract().build([(2, 3)] * 3)
    with pytest.raises(ValueError, match="exactly 2 inputs"):
        Subtract().build([(2, 3)])


def test_concatenate_values_gradients_and_errors(numeric_grad):
    rng = np.random.default_rng(3)
    for axis, shapes in [(-1, [(B, T, 2), (B, T, 3), (B, T, 1)]), (1, [(B, 2, D), (B, 3, D)]),
                         (2, [(B, T, 1), (B, T, 2)])]:
        xs = [rng.standard_normal(s) for s in shapes]
        layer = Concatenate(axis=axis, dtype="float64")
        np.testing.assert_array_equal(layer(xs), np.concatenate(xs, axis=axis))
        assert layer.compute_output_shape(shapes) == layer(xs).shape
        _check_gradients(layer, xs, numeric_grad)
    with pytest.raises(ValueError, match=r"concat_1.*\(2, 3, 2\).*\(2, 4, 3\)"):
        Concatenate(name="concat_1").build([(2, 3, 2), (2, 4, 3)])
    with pytest.raises(ValueError, match="concat_2.*matching shapes"):
        Concatenate(name="concat_2").build([(2, 3, 2), (2, 3)])
    with pytest.raises(ValueError, match="concat_3.*out of range"):
        Concatenate(axis=3, name="concat_3").build([(2, 3, 2), (2, 3, 2)])
    with pytest.raises(TypeError, match="axis"):
        Concatenate(axis="1")
    Concatenate().build([(None, None, 2), (None, 3, 2)])  # None matches anything


@pytest.mark.parametrize("axes,shapes", [
    (1, [(B, D), (B, D)]), (-1, [(B, T, D), (B, 5, D)]), ((1, 2), [(B, T, D), (B, 5, T)]),
    ((2, 1), [(B, T, D), (B, D)]), ((1, 1), [(B, D), (B, D, 5)]),
    ((1, 2), [(B, T, 5, D), (B, 6, T)]), ([2, 3], [(B, T, D, 5), (B, 6, 2, D)])])
@pytest.mark.parametrize("normalize", [False, True])
def test_dot_values_and_gradients(axes, shapes, normalize, numeric_grad):
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal(s) for s in shapes]
    layer = Dot(axes=axes, normalize=normalize, dtype="float64")
    y = layer(xs)
    assert y.shape == layer.compute_output_shape(shapes)
    a0, a1 = (axes, axes) if isinstance(axes, int) else axes
    a0, a1 = a0 % len(shapes[0]), a1 % len(shapes[1])
    x, z = xs
    if normalize:
        x = x / np.linalg.norm(x, axis=a0, keepdims=True)
        z = z / np.linalg.norm(z, axis=a1, keepdims=True)
    want = np.stack([np.tensordot(x[n], z[n], axes=(a0 - 1, a1 - 1)) for n in range(B)])
    np.testing.assert_allclose(y, want.reshape(y.shape), rtol=1e-10, atol=1e-12)
    _check_gradients(layer, xs, numeric_grad)


def test_dot_normalize_of_a_zero_vector_stays_finite():
    layer = Dot(axes=1, normalize=True, dtype="float64")
    x, z = np.zeros((1, 3)), np.ones((1, 3))
    assert layer([x, z], training=True).tolist() == [[0.0]]
    gx, gz = layer.backward(np.ones((1, 1)))
    np.testing.assert_allclose(gx, z / np.sqrt(3) * 1e7)
    np.testing.assert_array_equal(gz, 0.0)


def test_dot_errors():
    with pytest.raises(TypeError, match="axes"):
        Dot(axes="1")
    with pytest.raises(ValueError, match="axes"):
        Dot(axes=(1, 2, 3))
    with pytest.raises(ValueError, match="axes"):
        Dot(axes=(1, 1.5))
    with pytest.raises(ValueError, match="dot_a.*batch axis"):
        Dot(axes=0, name="dot_a").build([(2, 3), (2, 3)])
    with pytest.raises(ValueError, match="dot_b.*batch axis"):
        Dot(axes=(1, 3), name="dot_b").build([(2, 3), (2, 3)])
    with pytest.raises(ValueError, match=r"dot_c.*\(2, 3\).*\(2, 4\)"):
        Dot(axes=1, name="dot_c").build([(2, 3), (2, 4)])
    with pytest.raises(ValueError, match="dot_d.*exactly 2"):
        Dot(axes=1, name="dot_d").build([(2, 3)] * 3)
    with pytest.raises(ValueError, match="dot_e.*rank"):
        Dot(axes=1, name="dot_e").build([(2,), (2,)])
    with pytest.raises(ValueError, match="dot_f.*batch sizes"):
        Dot(axes=1, name="dot_f").build([(2, 3), (4, 3)])
    Dot(axes=-1).build([(None, None, 3), (None, None)])  # unknown sizes match


@pytest.mark.parametrize("cls,first_wins", [(Maximum, True), (Minimum, True)])
def test_extremum_ties_send_the_gradient_to_the_first_input(cls, first_wins):
    """tf.maximum / tf.minimum send a tie's gradient to their first argument."""
    a = np.array([[1.0, 2.0, 3.0]])
    b = np.array([[1.0, 0.0, 3.0]])
    c = np.array([[1.0, 2.0, 5.0]])
    layer = cls(dtype="float64")
    layer([a, b, c], training=True)
    ga, gb, gc = layer.backward(np.ones((1, 3)))
    assert (ga + gb + gc).tolist() == [[1.0, 1.0, 1.0]]
    assert ga[0, 0] == 1.0  # a three-way tie goes to the first input
    if cls is Maximum:
        assert ga.tolist() == [[1.0, 1.0, 0.0]] and gc.tolist() == [[0.0, 0.0, 1.0]]
    else:
        assert ga.tolist() == [[1.0, 0.0, 1.0]] and gb.tolist() == [[0.0, 1.0, 0.0]]


def _masks():
    m1 = np.array([[True, True, False], [False, True, True]])
    m2 = np.array([[True, False, False], [True, True, False]])
    return m1, m2


def test_merge_masks_or_and_none():
    m1, m2 = _masks()
    xs = [np.zeros((B, T, D))] * 2
    for cls in ELEMENTWISE:
        layer = cls()
        assert layer.supports_masking
        np.testing.assert_array_equal(layer.compute_mask(xs, [m1, m2]), m1 | m2)
        assert layer.compute_mask(xs, [m1, None]) is None
        np.testing.assert_array_equal(layer.compute_mask(xs, [m1, m2[:, :1]]), m1 | m2[:, :1])
        assert layer.compute_mask(xs, None) is None
        with pytest.raises(ValueError, match="mask"):
            layer.compute_mask(xs, m1)
        with pytest.raises(ValueError, match="mask"):
            layer.compute_mask(xs, [m1])
    assert Dot(axes=2).compute_mask(xs, [m1, m2]) is None


def test_concatenate_masks():
    m1, m2 = _masks()
    xs = [np.zeros((B, T, 2)), np.zeros((B, T, 3))]
    np.testing.assert_array_equal(Concatenate().compute_mask(xs, [m1, m2]), m1 | m2)
    np.testing.assert_array_equal(Concatenate().compute_mask(xs, [m1, None]),
                                  np.ones((B, T), bool))
    assert Concatenate().compute_mask(xs, [None, None]) is None
    assert Concatenate().compute_mask(xs, None) is None
    # along time, the masks follow their steps
    xs = [np.zeros((B, T, D)), np.zeros((B, 2, D))]
    got = Concatenate(axis=1).compute_mask(xs, [m1, None])
    np.testing.assert_array_equal(got, np.concatenate([m1, np.ones((B, 2), bool)], axis=1))


def test_masked_multiply_maximum_minimum():
    """Keras's masked merges: masked entries count as 1 in a product, are left out of an
    extremum; entries masked everywhere are 0 (product) or the first input's (extremum)."""
    m1, m2 = _masks()
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((B, T, D)), rng.standard_normal((B, T, D))
    k1, k2 = m1[..., None], m2[..., None]
    np.testing.assert_allclose(
        Multiply(dtype="float64")([a, b], mask=[m1, m2]),
        np.where(k1 | k2, np.where(k1, a, 1) * np.where(k2, b, 1), 0))
    np.testing.assert_allclose(Multiply(dtype="float64")([a, b], mask=[m1, None]),
                               np.where(k1, a, 1) * b)
    np.testing.assert_allclose(
        Maximum(dtype="float64")([a, b], mask=[m1, m2]),
        np.where(k1 & k2, np.maximum(a, b), np.where(k1, a, np.where(k2, b, a))))
    np.testing.assert_allclose(
        Minimum(dtype="float64")([a, b], mask=[None, m2]),
        np.where(k2, np.minimum(a, b), a))
    np.testing.assert_allclose(
        Minimum(dtype="float64")([a, b], mask=[m1, None]),
        np.where(k1, np.minimum(a, b), b))
    # masks leave Add alone
    np.testing.assert_allclose(Add(dtype="float64")([a, b], mask=[m1, m2]), a + b)


@pytest.mark.parametrize("cls", [Multiply, Maximum, Minimum])
@pytest.mark.parametrize("which", ["both", "first", "second"])
def test_masked_gradients_by_central_differences(cls, which, numeric_grad):
    m1, m2 = _masks()
    mask = {"both": [m1, m2], "first": [m1, None], "second": [None, m2]}[which]
    rng = np.random.default_rng(6)
    xs = [rng.standard_normal((B, T, D)) for _ in range(2)]
    _check_gradients(cls(dtype="float64"), xs, numeric_grad, mask=mask)


def test_masks_are_not_used_with_different_ranks():
    """Keras expands lower-rank inputs into new tensors that carry no mask."""
    m1, m2 = _masks()
    a, b = np.full((B, T, D), 2.0), np.full((B, D), 3.0)
    np.testing.assert_array_equal(Multiply()([a, b], mask=[m1, m2]), np.full((B, T, D), 6.0))


@pytest.mark.parametrize("layer", [Add(), Subtract(name="sub"), Multiply(), Average(),
                                   Maximum(), Minimum(), Concatenate(axis=1, trainable=False),
                                   Dot(axes=(1, 2), normalize=True, dtype="float64"),
                                   Dot(axes=-1)])
def test_config_round_trip(layer):
    config = layer.get_config()
    assert {"name", "trainable", "dtype"} <= set(config)
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    again = layers.deserialize(layers.serialize(layer))
    assert type(again) is type(layer) and again.get_config() == config
    if isinstance(layer, Concatenate):
        assert config["axis"] == 1
    if isinstance(layer, Dot):
        assert set(config) >= {"axes", "normalize"}


@pytest.mark.parametrize("cls", ELEMENTWISE + [Concatenate])
def test_backward_needs_a_training_call(cls):
    layer = cls()
    xs = [np.ones((B, D), "float32")] * 2
    layer(xs)
    with pytest.raises(RuntimeError, match="training=True"):
        layer.backward(np.ones((B, D), "float32"))


def test_each_training_call_keeps_its_own_cache():
    """A later call replaces the cache with new objects: an earlier snapshot stays valid."""
    layer = Multiply(dtype="float64")
    a, b = np.full((1, 2), 2.0), np.full((1, 2), 5.0)
    layer([a, b], training=True)
    first = layer._cache
    layer([b, b], training=True)
    layer._cache = first
    ga, gb = layer.backward(np.ones((1, 2)))
    assert ga.tolist() == [[5.0, 5.0]] and gb.tolist() == [[2.0, 2.0]]


def test_functional_forms_as_keras():
    """`layers.concatenate([a, b])` and friends build the layer and call it, on arrays and on
    symbolic inputs alike."""
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((B, T, D)), rng.standard_normal((B, T, D))
    pairs = [(layers.concatenate, {"axis": 1}, Concatenate(axis=1)), (layers.add, {}, Add()),
             (layers.subtract, {}, Subtract()), (layers.multiply, {}, Multiply()),
             (layers.average, {}, Average()), (layers.maximum, {}, Maximum()),
             (layers.minimum, {}, Minimum()), (layers.dot, {"axes": 2}, Dot(axes=2))]
    for function, kwargs, layer in pairs:
        np.testing.assert_array_equal(function([a, b], **kwargs), layer([a, b]),
                                      err_msg=function.__name__)
        symbolic = function([layers.Input((T, D)), layers.Input((T, D))],
                            name=f"f_{function.__name__}", **kwargs)
        assert isinstance(symbolic, layers.KerasTensor)
        assert symbolic.shape == layer.compute_output_shape([(None, T, D)] * 2)
    assert layers.dot([a, b], axes=2, normalize=True).shape == (B, T, T)


@pytest.mark.parametrize("cls", [Add, Average, Subtract])
def test_each_input_gets_its_own_writable_gradient(cls):
    layer = cls(dtype="float64")
    g = np.ones((B, D))
    layer([np.ones((B, D)), np.ones((B, D))], training=True)
    ga, gb = layer.backward(g)
    ga += 1.0
    assert gb.flags.writeable and not np.shares_memory(ga, gb)
    np.testing.assert_array_equal(g, 1.0)
    np.testing.assert_array_equal(np.abs(gb), 1.0 / (2 if cls is Average else 1))
