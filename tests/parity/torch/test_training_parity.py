"""Training parity with PyTorch: `Sequential([LSTM(H), Dense(K)])` and `nn.LSTM` + `nn.Linear`
on the last output, from the same initial weights, trained with SGD (plain, momentum,
Nesterov) on MSE, end with the same weights and per-step losses.

Why the setups agree:
- Keras's MSE is the mean over the last axis, then over the batch: for `(B, K)` that is the mean
  over all elements, which is `nn.MSELoss()`'s default "mean" reduction.
- Keras's momentum SGD, `v = m v - lr g; w += v` (Nesterov: `w += m v - lr g`), and torch's,
  `b = m b + g; w -= lr b` (Nesterov: `w -= lr (g + m b)`), are the same for a constant
  learning rate: by induction `v = -lr b`.
- torch has two LSTM biases, each receiving the full bias gradient, so training both would move
  their sum twice as fast as pylstm's one bias. `bias_hh_l0` is frozen (non-zero) and
  `bias_ih_l0 = bias - bias_hh_l0`.
"""

import numpy as np
import pytest
from pylstm_tests import require

from pylstm import optimizers
from pylstm.layers import LSTM, Dense
from pylstm.models import Sequential

torch = require("torch")


B, T, D, H, K = 20, 7, 3, 8, 2


def make_data(rng):
    x = rng.normal(size=(B, T, D))
    y = np.stack([np.sin(x[:, :, 0].sum(axis=1)), x[:, -1, 1] * 0.5], axis=1)
    return x, y


class TorchModel(torch.nn.Module):
    def __init__(self, dtype):
        super().__init__()
        self.lstm = torch.nn.LSTM(D, H, batch_first=True, dtype=dtype)
        self.dense = torch.nn.Linear(H, K, dtype=dtype)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.dense(out[:, -1])


def twin_models(dtype, rng):
    """A pylstm model and a torch model holding the same (pylstm-initialized) weights."""
    model = Sequential([LSTM(H, seed=3, dtype=dtype, bias_initializer="random_normal"),
                        Dense(K, dtype=dtype, bias_initializer="random_normal")])
    model.build((None, T, D))
    kernel, recurrent_kernel, bias, dense_kernel, dense_bias = model.get_weights()
    tdtype = getattr(torch, dtype)
    twin = TorchModel(tdtype)
    bias_hh = rng.normal(size=4 * H) * 0.1
    as_t = lambda a: torch.tensor(np.ascontiguousarray(a), dtype=tdtype)  # noqa: E731
    with torch.no_grad():
        twin.lstm.weight_ih_l0.copy_(as_t(kernel.T))
        twin.lstm.weight_hh_l0.copy_(as_t(recurrent_kernel.T))
        twin.lstm.bias_hh_l0.copy_(as_t(bias_hh))
        twin.lstm.bias_ih_l0.copy_(as_t(bias.astype(np.float64) - bias_hh))
        twin.dense.weight.copy_(as_t(dense_kernel.T))
        twin.dense.bias.copy_(as_t(dense_bias))
    twin.lstm.bias_hh_l0.requires_grad_(False)
    return model, twin


def torch_weights(twin):
    lstm = twin.lstm
    get = lambda p: p.detach().numpy().astype(np.float64)  # noqa: E731
    return [get(lstm.weight_ih_l0).T, get(lstm.weight_hh_l0).T,
            get(lstm.bias_ih_l0) + get(lstm.bias_hh_l0), get(twin.dense.weight).T,
            get(twin.dense.bias)]


def torch_train(twin, x, y, dtype, batch_size, epochs, lr, momentum, nesterov):
    tdtype = getattr(torch, dtype)
    params = [p for p in twin.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov)
    loss_fn = torch.nn.MSELoss()
    xt, yt = torch.tensor(x, dtype=tdtype), torch.tensor(y, dtype=tdtype)
    epoch_losses = []
    for _ in range(epochs):
        total = 0.0
        for start in range(0, len(x), batch_size):
            xb, yb = xt[start:start + batch_size], yt[start:start + batch_size]
            opt.zero_grad()
            loss = loss_fn(twin(xb), yb)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(xb)
        epoch_losses.append(total / len(x))
    return epoch_losses


@pytest.mark.parametrize("dtype,rtol", [("float32", 1e-5), ("float64", 1e-11)])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
@pytest.mark.parametrize("batch_size,epochs", [(B, 5), (4, 1)], ids=["full_batch", "minibatch"])
def test_sgd_training_matches_torch(dtype, rtol, momentum, nesterov, batch_size, epochs):
    rng = np.random.default_rng(0)
    x, y = make_data(rng)
    model, twin = twin_models(dtype, rng)
    initial = [w.astype(np.float64) for w in model.get_weights()]
    for got, want in zip(initial, torch_weights(twin)):
        np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == "float32" else 1e-15)

    lr = 0.2
    model.compile(optimizer=optimizers.SGD(learning_rate=lr, momentum=momentum,
                                           nesterov=nesterov), loss="mse")
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0)
    want_losses = torch_train(twin, x, y, dtype, batch_size, epochs, lr, momentum, nesterov)

    np.testing.assert_allclose(history.history["loss"], want_losses, rtol=10 * rtol)
    names = ["kernel", "recurrent_kernel", "bias", "dense_kernel", "dense_bias"]
    for name, start, got, want in zip(names, initial, model.get_weights(), torch_weights(twin)):
        # Training must have moved every weight well beyond the tolerance.
        assert np.abs(want - start).max() > 1e3 * rtol * max(1.0, np.abs(want).max()), name
        assert got.dtype == np.dtype(dtype), name
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(1.0, np.abs(want).max()),
                                   err_msg=name)


def test_momentum_formulas_are_equivalent():
    """Keras's `v = m v - lr g; w += v` equals torch's `b = m b + g; w -= lr b` on a fixed
    gradient sequence, step by step (pylstm's SGD against torch.optim.SGD, no model)."""
    from pylstm.layers.layer import Variable

    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(3, 4))
    grads = rng.normal(size=(6, 3, 4))
    for nesterov in (False, True):
        var = Variable("w", w0.copy())
        opt = optimizers.SGD(learning_rate=0.05, momentum=0.8, nesterov=nesterov)
        tw = torch.tensor(w0.copy(), requires_grad=True)
        topt = torch.optim.SGD([tw], lr=0.05, momentum=0.8, nesterov=nesterov)
        for g in grads:
            var.grad[...] = g
            opt.apply([var])
            tw.grad = torch.tensor(g)
            topt.step()
            np.testing.assert_allclose(var.value, tw.detach().numpy(), rtol=1e-13, atol=1e-13)
        assert np.abs(var.value - w0).max() > 0.1
