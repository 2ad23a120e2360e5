"""Training-mode dropout of `pylstm.layers.LSTM`, checked by its structure (the masks cannot be
shared with Keras): the dropped fraction is `rate`, each call draws new masks, drawn once per
call (one per gate with recurrent dropout, as Keras's cell) and reused at every timestep,
scaled by `1 / (1 - rate)`, reproducible from `seed`."""

import numpy as np
from pylstm_tests import lstm_weights

from pylstm.layers import LSTM

B, T, D, H = 3, 5, 4, 6


def make_inputs(rng, batch=B, features=D):
    return (rng.normal(size=(batch, T, features)) * 0.5).astype("float32")


def numpy_lstm(x, kernel, recurrent_kernel, bias, input_masks, recurrent_masks):
    """Keras's `LSTMCell` loop in float64 with fixed dropout masks, one per gate as Keras's
    cell draws them with recurrent dropout: gate k's pre-activation is
    `(x_t * input_masks[k]) @ kernel_k + (h_{t-1} * recurrent_masks[k]) @ recurrent_kernel_k
    + bias_k`, and the carried `h` is not masked. Returns the output sequence `(B, T, H)`."""
    kernels, recurrent_kernels, biases = (np.split(np.asarray(w, dtype=np.float64), 4, axis=-1)
                                          for w in (kernel, recurrent_kernel, bias))
    sigmoid = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    h = np.zeros((x.shape[0], recurrent_kernel.shape[0]))
    c = np.zeros_like(h)
    outputs = []
    for t in range(x.shape[1]):
        i, f, g, o = ((x[:, t] * input_masks[k]) @ kernels[k]
                      + (h * recurrent_masks[k]) @ recurrent_kernels[k] + biases[k]
                      for k in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1)


def test_input_dropout_mask_is_shared_across_timesteps(rng):
    """With `dropout` only, each (sample, feature) is dropped at every step or at none: the
    input gradient is exactly zero on whole `(b, :, d)` columns, and the call equals a plain
    LSTM on `x * mask` with `mask` in `{0, 1 / (1 - rate)}` (Keras's inverted dropout)."""
    rate, batch, features = 0.5, 8, 16
    layer = LSTM(H, dropout=rate, return_sequences=True, seed=7)
    plain = LSTM(H, return_sequences=True)
    for lay in (layer, plain):
        lay.build((batch, T, features))
        lay.set_weights(lstm_weights(np.random.default_rng(1), features, H))
    x = make_inputs(rng, batch, features)
    upstream = rng.normal(size=(batch, T, H)).astype("float32")
    y = layer(x, training=True)
    dx = layer.backward(upstream)

    dropped = (dx == 0).all(axis=1)                                   # (B, D)
    assert ((dx != 0).all(axis=1) | dropped).all(), "a feature was dropped at some steps only"
    assert 0 < dropped.sum() < dropped.size
    scale = np.where(dropped, 0.0, 1.0 / (1.0 - rate)).astype("float32")[:, None, :]
    np.testing.assert_allclose(y, plain(x * scale, training=True), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dx, plain.backward(upstream) * scale, rtol=1e-5, atol=1e-7)
    for ours, want in zip(layer.trainable_variables, plain.trainable_variables):
        np.testing.assert_allclose(ours.grad, want.grad, rtol=1e-5, atol=1e-6, err_msg=ours.name)


def test_recurrent_dropout_masks_are_shared_across_timesteps(rng):
    """With recurrent dropout Keras's cell draws four input masks and four state masks, one
    per gate, reused at every step. On one sample, a feature dropped for gate k zeroes a whole
    row of gate k's block of the kernel's gradient, and a dropped unit a whole row of the
    recurrent kernel's; the outputs equal Keras's cell loop with those masks, scaled by
    `1 / (1 - rate)`, where only the recurrent product sees the masked state."""
    rate, recurrent_rate, features, units = 0.25, 0.5, 16, 16
    layer = LSTM(units, dropout=rate, recurrent_dropout=recurrent_rate, return_sequences=True,
                 seed=5)
    layer.build((1, T, features))
    weights = lstm_weights(np.random.default_rng(2), features, units)
    layer.set_weights(weights)
    x = make_inputs(rng, 1, features)
    y = layer(x, training=True)
    layer.backward(rng.normal(size=(1, T, units)).astype("float32"))

    masks = []
    for grad, r in ((layer.kernel.grad, rate), (layer.recurrent_kernel.grad, recurrent_rate)):
        blocks = np.stack(np.split(grad, 4, axis=1))                    # (4, D or H, H)
        dropped = (blocks == 0).all(axis=2)                             # (4, n)
        assert not (blocks[~dropped] == 0).any(), "a row was dropped for some units only"
        assert 0 < dropped.sum() < dropped.size
        assert (dropped != dropped[:1]).any(), "the four gates share one mask"
        masks.append(np.where(dropped, 0.0, 1.0 / (1.0 - r)))
    np.testing.assert_allclose(y, numpy_lstm(x, *weights, *masks), rtol=1e-5, atol=1e-6)


def test_dropout_is_reproducible_with_seed(rng):
    x = make_inputs(rng)
    weights = lstm_weights(rng, D, H)

    def two_calls(seed):
        layer = LSTM(H, dropout=0.4, recurrent_dropout=0.4, seed=seed, return_sequences=True)
        layer.build((B, T, D))
        layer.set_weights(weights)
        return [layer(x, training=True) for _ in range(2)]

    first, again, other = two_calls(5), two_calls(5), two_calls(6)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(first[0], first[1])
    assert not np.allclose(first[0], other[0])


def test_dropout_rate_and_a_fresh_mask_per_call(rng):
    """The dropped fraction is `rate` (2048 Bernoulli draws: 5 standard deviations is 0.05),
    and each call draws a new mask, as Keras does."""
    rate, batch, steps, features = 0.3, 64, 5, 32
    layer = LSTM(4, dropout=rate, seed=11)
    layer.build((batch, steps, features))
    x = (rng.normal(size=(batch, steps, features)) * 0.5).astype("float32")
    upstream = rng.normal(size=(batch, 4)).astype("float32")
    masks = []
    for _ in range(2):
        layer(x, training=True)
        masks.append((layer.backward(upstream) == 0).all(axis=1))
        assert abs(masks[-1].mean() - rate) < 0.05
    assert (masks[0] != masks[1]).any()
