"""SpatialDropout1D: whole channels dropped for every step, scaling, seeds, backward, masks,
errors and config (its config is the one Keras 3 writes)."""

import json

import numpy as np
import pytest

from pylstm import layers
from pylstm.layers import SpatialDropout1D


def test_drops_whole_channels_and_scales_the_rest(rng):
    x = rng.normal(size=(64, 7, 16))
    layer = SpatialDropout1D(0.25, seed=1, dtype="float64")
    y = layer(x, training=True)
    kept = y[:, :1] != 0  # (B, 1, C)
    np.testing.assert_array_equal(y != 0, np.broadcast_to(kept, x.shape))
    np.testing.assert_allclose(y[np.broadcast_to(kept, x.shape)],
                               x[np.broadcast_to(kept, x.shape)] / 0.75)
    assert 0.6 < kept.mean() < 0.9  # 1024 channels, keep probability 0.75


def test_identity_at_inference_and_with_rate_zero(rng):
    x = rng.normal(size=(2, 3, 4)).astype("float32")
    np.testing.assert_array_equal(SpatialDropout1D(0.5)(x), x)
    layer = SpatialDropout1D(0.0)
    np.testing.assert_array_equal(layer(x, training=True), x)
    np.testing.assert_array_equal(layer.backward(x), x)


def test_seeded_layers_repeat_their_sequence_of_masks():
    x = np.ones((4, 5, 6))
    a, b = SpatialDropout1D(0.5, seed=3), SpatialDropout1D(0.5, seed=3)
    first = a(x, training=True)
    np.testing.assert_array_equal(first, b(x, training=True))
    assert not np.array_equal(first, a(x, training=True))  # a new mask on each call


def test_backward_applies_the_same_mask(rng):
    x = rng.normal(size=(3, 4, 5))
    layer = SpatialDropout1D(0.4, seed=0, dtype="float64")
    y = layer(x, training=True)
    g = rng.normal(size=x.shape)
    np.testing.assert_allclose(layer.backward(g), g * np.where(x != 0, y / x, 0.0))


def test_mask_passes_and_shapes(rng):
    layer = SpatialDropout1D(0.3)
    mask = np.ones((2, 4), bool)
    assert layer.compute_mask(np.ones((2, 4, 3)), mask) is mask
    assert layer.compute_output_shape((None, None, 3)) == (None, None, 3)
    with pytest.raises(ValueError, match=r"\(batch, steps, channels\).*\(2, 3\)"):
        layer(np.ones((2, 3)), training=True)
    with pytest.raises(ValueError, match="`rate`"):
        SpatialDropout1D(1.0)


def test_config_has_keras_keys_and_round_trips():
    layer = SpatialDropout1D(0.2, seed=5, name="drop")
    config = layer.get_config()
    assert config == {"name": "drop", "dtype": "float32", "rate": 0.2, "seed": 5}
    clone = layers.deserialize(json.loads(json.dumps(layers.serialize(layer))))
    assert type(clone) is SpatialDropout1D and clone.get_config() == config
    x = np.ones((2, 3, 4))
    np.testing.assert_array_equal(clone(x, training=True), layer(x, training=True))


def test_docstring_examples():
    import doctest

    from pylstm.layers import spatial_dropout

    result = doctest.testmod(spatial_dropout)
    assert result.attempted and not result.failed
