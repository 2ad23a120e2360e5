import json
import math

import numpy as np
import pytest

from pylstm import initializers, utils


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (4, 8, 16), (50, 50)])
def test_orthogonal_rows_or_columns_are_orthonormal(shape):
    w = initializers.Orthogonal(seed=1)(shape, dtype="float64")
    assert w.flags.c_contiguous
    flat = w.reshape(-1, shape[-1])
    small = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
    np.testing.assert_allclose(small, np.eye(len(small)), atol=1e-12)


def test_orthogonal_gain_and_rank_check():
    w = initializers.Orthogonal(gain=2.0, seed=0)((10, 10), dtype="float64")
    np.testing.assert_allclose(w.T @ w, 4.0 * np.eye(10), atol=1e-12)
    with pytest.raises(ValueError, match="rank >= 2"):
        initializers.Orthogonal()((5,))


def test_glorot_uniform_limit_and_variance():
    fan_in, fan_out = 300, 200
    w = initializers.GlorotUniform(seed=0)((fan_in, fan_out), dtype="float64")
    limit = np.sqrt(6 / (fan_in + fan_out))
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.99 * limit
    np.testing.assert_allclose(w.var(), 2 / (fan_in + fan_out), rtol=0.02)


def test_glorot_normal_is_truncated_with_glorot_variance():
    fan_in, fan_out = 400, 300
    w = initializers.GlorotNormal(seed=0)((fan_in, fan_out), dtype="float64")
    stddev = np.sqrt(2 / (fan_in + fan_out)) / 0.87962566103423978
    assert np.abs(w).max() <= 2 * stddev
    # Truncation at 2 sigma with Keras's correction factor restores the Glorot variance.
    np.testing.assert_allclose(w.std(), np.sqrt(2 / (fan_in + fan_out)), rtol=0.02)


def test_random_normal_and_uniform_statistics():
    w = initializers.RandomNormal(mean=1.0, stddev=0.5, seed=3)((500, 400), dtype="float64")
    np.testing.assert_allclose([w.mean(), w.std()], [1.0, 0.5], rtol=0.01)
    u = initializers.RandomUniform(minval=2.0, maxval=3.0, seed=3)((1000,), dtype="float64")
    assert u.min() >= 2.0 and u.max() < 3.0 and abs(u.mean() - 2.5) < 0.05


def test_constant_initializers_hard_coded():
    assert initializers.get("zeros")((2, 2)).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    assert initializers.get("ones")((3,), dtype="float64").tolist() == [1.0, 1.0, 1.0]
    c = initializers.Constant(2.5)((2,))
    assert c.dtype == np.float32 and c.tolist() == [2.5, 2.5]


@pytest.mark.parametrize("cls", [initializers.GlorotUniform, initializers.GlorotNormal,
                                 initializers.Orthogonal, initializers.RandomNormal,
                                 initializers.RandomUniform])
def test_seeds_reproducible_and_distinct(cls):
    a = cls(seed=7)((6, 5))
    np.testing.assert_array_equal(a, cls(seed=7)((6, 5)))
    np.testing.assert_array_equal(a, cls(seed=7)((6, 5)))  # a seeded instance repeats, as Keras
    assert not np.array_equal(a, cls(seed=8)((6, 5)))
    assert a.dtype == np.float32


def test_set_random_seed_makes_unseeded_draws_reproducible():
    utils.set_random_seed(123)
    a = initializers.GlorotUniform()((4, 4))
    b = initializers.GlorotUniform()((4, 4))
    utils.set_random_seed(123)
    np.testing.assert_array_equal(a, initializers.GlorotUniform()((4, 4)))
    np.testing.assert_array_equal(b, initializers.GlorotUniform()((4, 4)))
    assert not np.array_equal(a, b)
    with pytest.raises(ValueError, match="seed"):
        utils.set_random_seed(-1)


def test_compute_fans():
    assert initializers.compute_fans((3, 5)) == (3, 5)
    assert initializers.compute_fans((7,)) == (7, 7)
    assert initializers.compute_fans((2, 3, 4, 5)) == (24, 30)


@pytest.mark.parametrize("obj", [initializers.Zeros(), initializers.Ones(),
                                 initializers.Constant(0.3), initializers.RandomNormal(0.1, 2.0, 5),
                                 initializers.RandomUniform(-1.0, 2.0, 4),
                                 initializers.GlorotUniform(9), initializers.GlorotNormal(None),
                                 initializers.Orthogonal(gain=1.5, seed=2)])
def test_config_round_trip_through_json(obj):
    config = json.loads(json.dumps(initializers.serialize(obj)))
    clone = initializers.deserialize(config)
    assert type(clone) is type(obj) and clone.get_config() == obj.get_config()
    assert type(obj).from_config(obj.get_config()).get_config() == obj.get_config()
    if obj.get_config().get("seed") is not None:
        np.testing.assert_array_equal(clone((3, 4)), obj((3, 4)))


@pytest.mark.parametrize("name,cls", [("glorot_uniform", initializers.GlorotUniform),
                                      ("GlorotNormal", initializers.GlorotNormal),
                                      ("orthogonal", initializers.Orthogonal),
                                      ("random_uniform", initializers.RandomUniform)])
def test_get_by_name(name, cls):
    assert type(initializers.get(name)) is cls


def test_get_passes_instances_and_callables_through_and_rejects_bad_names():
    init = initializers.Ones()
    assert initializers.get(init) is init
    fn = lambda shape, dtype="float32": np.full(shape, 4, dtype)  # noqa: E731
    assert initializers.get(fn) is fn
    assert initializers.get(None) is None
    with pytest.raises(ValueError, match="glorot_uniform"):
        initializers.get("glorot_uniformm")
    with pytest.raises(ValueError):
        initializers.deserialize({"config": {}})


@pytest.mark.parametrize("name, scale, mode, distribution", [
    ("he_normal", 2.0, "fan_in", "truncated_normal"),
    ("he_uniform", 2.0, "fan_in", "uniform"),
    ("lecun_normal", 1.0, "fan_in", "truncated_normal"),
    ("lecun_uniform", 1.0, "fan_in", "uniform"),
    ("variance_scaling", 1.0, "fan_in", "truncated_normal"),
])
def test_variance_scaling_family_variance_and_support(name, scale, mode, distribution):
    shape = (200, 300)
    w = initializers.get(name)(shape)
    variance = scale / shape[0]
    assert w.dtype == np.float32 and w.shape == shape
    np.testing.assert_allclose(w.var(), variance, rtol=0.05)
    bound = math.sqrt(3 * variance) if distribution == "uniform" else \
        2 * math.sqrt(variance) / 0.87962566103423978
    assert np.abs(w).max() <= bound * (1 + 1e-6)


def test_variance_scaling_modes_and_errors():
    w = initializers.VarianceScaling(3.0, "fan_out", "untruncated_normal", seed=1)((400, 100))
    np.testing.assert_allclose(w.var(), 3.0 / 100, rtol=0.05)
    assert np.abs(w).max() > 2 * math.sqrt(3.0 / 100)  # not truncated
    with pytest.raises(ValueError, match="`mode` must be one of"):
        initializers.VarianceScaling(mode="fan")
    with pytest.raises(ValueError, match="`distribution` must be one of"):
        initializers.VarianceScaling(distribution="cauchy")
    with pytest.raises(ValueError, match="`scale` must be positive"):
        initializers.VarianceScaling(scale=0)


def test_truncated_normal_and_identity():
    w = initializers.TruncatedNormal(mean=1.0, stddev=0.1, seed=3)((300, 300))
    assert np.abs(w - 1.0).max() <= 0.2 + 1e-6
    np.testing.assert_allclose(w.mean(), 1.0, atol=0.002)
    np.testing.assert_array_equal(initializers.Identity(2.0)((2, 3)),
                                  [[2, 0, 0], [0, 2, 0]])
    with pytest.raises(ValueError, match="2-D shape"):
        initializers.Identity()((3,))
