"""
Loading a PyTorch state_dict
============================

A model trained in PyTorch can be served by pylstm without PyTorch: :class:`pylstm.nn.LSTM`
has ``torch.nn.LSTM``'s arguments, parameter names and shapes, and ``load_state_dict`` reads
a dict of tensors or arrays, a ``.safetensors`` file (with the ``safetensors`` package), or a
``.pt`` file of ``torch.save`` (read with ``torch.load(weights_only=True)``).

Here PyTorch trains a small sunspot forecaster (a 2-layer LSTM and a linear head) and saves
its ``state_dict`` both ways; pylstm loads the files, rebuilds the forecaster as a Keras-style
``Sequential`` and predicts the same numbers.
"""

# %%
# Training in PyTorch
# -------------------
# The windows are those of the sunspots example (``pylstm.examples.sunspots``): 48 months
# of history, the next month as target. PyTorch is only needed for this part; without it the
# example writes the same file from a pylstm module (untrained) so that the loading part still
# runs.
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np

from pylstm import nn
from pylstm.datasets import load_sunspots
from pylstm.examples.sunspots import SCALE, make_windows
from pylstm.layers import Dense, Input
from pylstm.models import Sequential

try:
    import torch
except ImportError:
    torch = None

# PYLSTM_DOCS_FAST=1 (the documentation's CI): 1 epoch on the first 640 training windows
# instead of 4 epochs on all of them.
FAST = os.environ.get("PYLSTM_DOCS_FAST") == "1"
EPOCHS = 1 if FAST else 4
WINDOW, UNITS, LAYERS = 48, 32, 2

series = (load_sunspots().data / SCALE).astype("float32")
x, y = make_windows(series, WINDOW)
n_test = len(x) // 10
x_train, y_train, x_test, y_test = x[:-n_test], y[:-n_test], x[-n_test:], y[-n_test:]
if FAST:
    x_train, y_train = x_train[:640], y_train[:640]
folder = tempfile.mkdtemp()

if torch is not None:
    class Forecaster(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(1, UNITS, num_layers=LAYERS, batch_first=True)
            self.head = torch.nn.Linear(UNITS, 1)

        def forward(self, x):
            output, _ = self.lstm(x)
            return self.head(output[:, -1])

    torch.manual_seed(0)
    torch.set_num_threads(1)   # a model this small trains fastest on one thread
    forecaster = Forecaster()
    optimizer = torch.optim.Adam(forecaster.parameters(), lr=0.005)
    order = np.random.default_rng(0)
    for epoch in range(EPOCHS):
        for batch in np.array_split(order.permutation(len(x_train)), len(x_train) // 32):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(forecaster(torch.from_numpy(x_train[batch])),
                                                torch.from_numpy(y_train[batch]))
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch + 1}: last batch loss {loss.item():.4f}")
    forecaster.eval()
    with torch.no_grad():
        torch_pred = forecaster(torch.from_numpy(x_test)).numpy()
    state_dict = forecaster.state_dict()
    torch.save(state_dict, os.path.join(folder, "forecaster.pt"))
    from safetensors.torch import save_file
    save_file(state_dict, os.path.join(folder, "forecaster.safetensors"))
else:
    print("PyTorch is not installed: the file is written from an untrained pylstm module "
          "with the same parameter names instead.")
    torch_pred = None
    stand_in = nn.LSTM(1, UNITS, num_layers=LAYERS, batch_first=True, seed=0)
    names = {f"lstm.{k}": v for k, v in stand_in.state_dict().items()}
    rng = np.random.default_rng(0)
    names["head.weight"] = rng.uniform(-0.2, 0.2, (1, UNITS)).astype("float32")
    names["head.bias"] = np.zeros(1, dtype="float32")
    nn.save_state_dict_file(names, os.path.join(folder, "forecaster.safetensors"))
print(sorted(os.listdir(folder)))

# %%
# Loading the file into pylstm
# ----------------------------
# :func:`pylstm.nn.load_state_dict_file` reads the file into NumPy arrays under PyTorch's
# names. The forecaster's ``state_dict`` prefixes the LSTM's parameters with ``lstm.`` (the
# attribute's name): strip it, and ``load_state_dict`` checks every name and shape (strict, as
# in PyTorch). The head is a ``Dense`` layer, whose kernel is the transpose of
# ``torch.nn.Linear``'s weight.
arrays = nn.load_state_dict_file(os.path.join(folder, "forecaster.safetensors"))
for name, value in arrays.items():
    print(f"{name:22s} {value.shape}")
lstm = nn.LSTM(1, UNITS, num_layers=LAYERS, batch_first=True)
print(lstm.load_state_dict({name[len("lstm."):]: value for name, value in arrays.items()
                            if name.startswith("lstm.")}))
lstm.eval()
model = Sequential([Input((WINDOW, 1)), lstm.as_layer(return_sequences=False), Dense(1)])
model.layers[-1].set_weights([arrays["head.weight"].T, arrays["head.bias"]])
pred = model.predict(x_test, verbose=0)

if torch is not None:
    from_pt = nn.load_state_dict_file(os.path.join(folder, "forecaster.pt"))
    print("the .pt and .safetensors files hold the same arrays:",
          all(np.array_equal(from_pt[k], arrays[k]) for k in arrays))
    print(f"largest difference between pylstm's and PyTorch's forecasts: "
          f"{np.abs(pred - torch_pred).max():.1e} (sunspots / {SCALE:g})")

# %%
# The same forecasts
# ------------------
# pylstm's forecasts lie on PyTorch's (the two differ by float32 rounding only); the right
# panel shows the difference, in sunspots.
when = np.arange(len(y_test))
fig, (forecasts, difference) = plt.subplots(1, 2, figsize=(12, 4), width_ratios=(3, 2))
forecasts.plot(when, y_test * SCALE, color="black", lw=1, label="observed")
if torch_pred is not None:
    forecasts.plot(when, torch_pred * SCALE, color="tab:blue", lw=3, alpha=0.5,
                   label="PyTorch")
forecasts.plot(when, pred * SCALE, color="tab:red", lw=1, label="pylstm, loaded from the file")
forecasts.set_xlabel("test month")
forecasts.set_ylabel("sunspot number")
forecasts.set_title("One-month-ahead forecasts on the last 26 years")
forecasts.legend()
if torch_pred is not None:
    difference.plot(when, (pred - torch_pred)[:, 0] * SCALE, color="tab:purple", lw=0.8)
    difference.set_title("pylstm - PyTorch")
    difference.set_ylabel("sunspots")
else:
    difference.text(0.5, 0.5, "PyTorch not installed:\nno comparison", ha="center",
                    va="center", transform=difference.transAxes)
difference.set_xlabel("test month")
fig.tight_layout()
plt.show()
