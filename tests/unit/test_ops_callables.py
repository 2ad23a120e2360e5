"""Python callables as LSTM activations: `ops.lstm_forward` runs them on the NumPy path
(`pylstm._reference`), with the same arguments, results, cache and gradients as the core."""

import itertools

import numpy as np
import pytest
from scipy.special import expit

from pylstm import activations, ops

B, T, D, H = 3, 4, 2, 3
NAMES = ["x", "kernel", "recurrent_kernel", "bias", "h0", "c0"]

# The core's tanh and sigmoid, as callables the core does not know.
TANH_PAIR = activations.get((np.tanh, lambda x, y, g: g * (1 - y * y)))
SIGMOID_PAIR = activations.get((expit, lambda x, y, g: g * y * (1 - y)))


def plain_tanh(x):
    return np.tanh(x)


def plain_sigmoid(x):
    return expit(x)


def make_case(rng, dtype=np.float64, P=0):
    P_ = P or H
    case = dict(x=rng.normal(size=(B, T, D)), kernel=rng.normal(size=(D, 4 * H)) * 0.5,
                recurrent_kernel=rng.normal(size=(P_, 4 * H)) * 0.5,
                bias=rng.normal(size=4 * H) * 0.5, h0=rng.normal(size=(B, P_)),
                c0=rng.normal(size=(B, H)))
    case = {k: v.astype(dtype) for k, v in case.items()}
    projection = (rng.normal(size=(H, P_)) * 0.5).astype(dtype) if P else None
    return case, projection


def options(rng, P, dtype=np.float64):
    """Every option of lstm_forward, drawn at random."""
    for reverse, masked, time_major, return_sequences, zero_output, dropout in \
            itertools.product([False, True], repeat=6):
        kw = dict(reverse=reverse, time_major=time_major, return_sequences=return_sequences,
                  zero_output_for_mask=zero_output)
        if masked:
            mask = rng.random((B, T)) > 0.3
            kw["mask"] = mask.T if time_major else mask
        if dropout:
            kw["dropout_mask"] = (rng.random((4, B, D)) > 0.3).astype(dtype) / 0.7
            kw["recurrent_dropout_mask"] = (rng.random((B, P or H)) > 0.3).astype(dtype) / 0.7
        yield kw


def run(case, projection, kw, dy_seed, **acts):
    x = case["x"].transpose(1, 0, 2) if kw["time_major"] else case["x"]
    y, h, c, cache = ops.lstm_forward(x, *[case[k] for k in NAMES[1:]], projection=projection,
                                      training=True, **kw, **acts)
    rng = np.random.default_rng(dy_seed)
    dy, dh, dc = (rng.normal(size=a.shape).astype(a.dtype) for a in (y, h, c))
    return (y, h, c), cache, ops.lstm_backward(cache, dy, dh, dc)


@pytest.mark.parametrize("P", [0, 2])
def test_callables_with_backward_match_the_core(P):
    """Every option (masks, reverse, projection, initial state, dropout masks, time-major,
    last output only, zero_output_for_mask): same outputs, layouts and gradients."""
    rng = np.random.default_rng(P)
    case, projection = make_case(rng, P=P)
    for n, kw in enumerate(options(rng, P)):
        want, cache_core, g_want = run(case, projection, kw, n)
        got, cache, g_got = run(case, projection, kw, n, activation=TANH_PAIR,
                                recurrent_activation=SIGMOID_PAIR)
        assert cache.reference is not None and cache_core.reference is None
        for a, b in zip(got, want):
            assert a.shape == b.shape and a.flags.c_contiguous
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=str(kw))
        assert g_got.keys() == g_want.keys()
        for key, w in g_want.items():
            if w is None:
                assert g_got[key] is None
                continue
            assert g_got[key].shape == w.shape and g_got[key].flags.c_contiguous, key
            np.testing.assert_allclose(g_got[key], w, rtol=1e-10, atol=1e-12,
                                       err_msg=f"d{key} {kw}")


def test_plain_callables_use_central_differences():
    """No backward: the derivative comes from float64 central differences (about 1e-10)."""
    rng = np.random.default_rng(3)
    case, projection = make_case(rng, P=2)
    kw = dict(reverse=True, time_major=False, return_sequences=True, zero_output_for_mask=False,
              mask=rng.random((B, T)) > 0.3)
    want, _, g_want = run(case, projection, kw, 0)
    got, _, g_got = run(case, projection, kw, 0,
                        gate_activations=[plain_sigmoid, "sigmoid", plain_tanh, SIGMOID_PAIR,
                                          plain_tanh])
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    for key, w in g_want.items():
        if w is not None:
            np.testing.assert_allclose(g_got[key], w, rtol=1e-8, atol=1e-10, err_msg=key)


def test_new_activation_gradients_central_difference(numeric_grad):
    """An activation the core lacks (sin), end to end against central differences of the
    whole LSTM."""
    rng = np.random.default_rng(4)
    case, projection = make_case(rng, P=2)
    kw = dict(projection=projection, mask=rng.random((B, T)) > 0.2, activation=np.sin,
              recurrent_activation=lambda z: 0.5 * np.tanh(z) + 0.5,
              dropout_mask=(rng.random((B, D)) > 0.5) * 2.0)
    y, h, c, _ = ops.lstm_forward(*[case[k] for k in NAMES], **kw)
    wy, wh, wc = (rng.normal(size=a.shape) for a in (y, h, c))

    def loss():
        y, h, c, _ = ops.lstm_forward(*[case[k] for k in NAMES], **kw)
        return float((wy * y).sum() + (wh * h).sum() + (wc * c).sum())

    cache = ops.lstm_forward(*[case[k] for k in NAMES], training=True, **kw)[3]
    grads = ops.lstm_backward(cache, wy, wh, wc)
    for name, arr in dict(case, projection=projection).items():
        np.testing.assert_allclose(grads[name], numeric_grad(loss, arr), rtol=1e-5,
                                   atol=1e-7, err_msg=name)


def test_builtin_activation_functions_run_in_the_core():
    rng = np.random.default_rng(5)
    case, _ = make_case(rng, np.float32)
    args = [case[k] for k in NAMES]
    by_name = ops.lstm_forward(*args, activation="swish", recurrent_activation="hard_sigmoid",
                               training=True)
    by_function = ops.lstm_forward(*args, activation=activations.swish,
                                   recurrent_activation=activations.get("hard_sigmoid"),
                                   training=True)
    assert by_function[3].reference is None
    np.testing.assert_array_equal(by_function[0], by_name[0])


def test_inference_calls_only_the_forward():
    calls = []

    def counted_tanh(x):
        calls.append(x.shape)
        return np.tanh(x)

    rng = np.random.default_rng(6)
    case, _ = make_case(rng)
    args = [case[k] for k in NAMES]
    y, h, c, cache = ops.lstm_forward(*args, activation=counted_tanh)
    assert cache is None
    assert calls == [(B, H)] * (2 * T)   # the candidate and the cell output, every step
    np.testing.assert_allclose(y, ops.lstm_forward(*args)[0], rtol=1e-14)


def test_float32_stays_float32():
    rng = np.random.default_rng(7)
    case, _ = make_case(rng, np.float32)
    args = [case[k] for k in NAMES]
    y, h, c, cache = ops.lstm_forward(*args, activation=lambda z: np.tanh(z.astype(np.float64)),
                                      training=True)
    want = ops.lstm_forward(*args)
    for a, b in zip((y, h, c), want[:3]):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    grads = ops.lstm_backward(cache, np.ones_like(y))
    assert all(g.dtype == np.float32 for g in grads.values() if g is not None)


def test_bad_callables():
    rng = np.random.default_rng(8)
    case, _ = make_case(rng)
    args = [case[k] for k in NAMES]
    with pytest.raises(ValueError, match=r"returned an array of shape \(3,\) for an input of "
                                         r"shape \(3, 3\)"):
        ops.lstm_forward(*args, activation=lambda z: z.sum(axis=1))
    with pytest.raises(ValueError, match=r"`recurrent_activation` must be an activation name, "
                                         r"None or a callable, received 1.5"):
        ops.lstm_forward(*args, recurrent_activation=1.5)
