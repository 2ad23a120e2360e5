"""
Where the model looks: attention weights
========================================

A functional model (:class:`Model <pylstm.models.Functional>`) with an
:class:`~pylstm.layers.Attention` layer, and a second model sharing its layers that returns
the attention distribution, drawn as a heatmap.

The task needs attention: each sample is 20 months of sunspot numbers
(:func:`pylstm.datasets.load_sunspots`) with one month marked by a second input channel, and
the target is the marked month's value. An LSTM reads the sequence; its outputs are the
attention's keys, its final state makes the query, and the values are the raw inputs, so the
only way to the marked value is to put the attention's weight on the marked month.
"""

# %%
# The data: a marked month in each window
# ---------------------------------------
import os

import matplotlib.pyplot as plt
import numpy as np

import pylstm
from pylstm.datasets import load_sunspots
from pylstm.layers import LSTM, Attention, Dense, Flatten, Input, Reshape
from pylstm.models import Model

# PYLSTM_DOCS_FAST=1 (the documentation's CI): 4 epochs instead of 12.
FAST = os.environ.get("PYLSTM_DOCS_FAST") == "1"
EPOCHS = 4 if FAST else 12
T, UNITS, SEED = 20, 32, 0

pylstm.utils.set_random_seed(SEED)
rng = np.random.default_rng(SEED)
series = (load_sunspots().data / 100.0).astype("float32")
starts = rng.integers(0, len(series) - T, size=3000)
marked = rng.integers(0, T, size=len(starts))
x = np.zeros((len(starts), T, 2), dtype="float32")
x[..., 0] = series[starts[:, None] + np.arange(T)]
x[np.arange(len(starts)), marked, 1] = 1.0
y = x[np.arange(len(starts)), marked, :1]
x_train, y_train, x_test, y_test = x[:2500], y[:2500], x[2500:], y[2500:]

# %%
# The model, and a twin that shows its attention
# ----------------------------------------------
# ``Attention([query, value, key], return_attention_scores=True)`` returns the weighted sum
# of the values and the ``(batch, query steps, value steps)`` distribution. The training
# model uses the first; the second model, built from the same layer calls, returns the
# second, so it shows the trained weights without any copying.
inputs = Input((T, 2), name="months")
sequence, h, _ = LSTM(UNITS, return_sequences=True, return_state=True, seed=SEED)(inputs)
query = Reshape((1, UNITS))(Dense(UNITS)(h))
context, weights = Attention()([query, inputs, sequence], return_attention_scores=True)
output = Dense(1)(Flatten()(context))
model = Model(inputs, output, name="marked_value")
attention = Model(inputs, weights, name="attention_weights")
model.compile(optimizer=pylstm.optimizers.Adam(learning_rate=0.01), loss="mse")
model.summary()
untrained = attention.predict(x_test, verbose=0)[:, 0, :]       # (windows, T)
history = model.fit(x_train, y_train, batch_size=32, epochs=EPOCHS, validation_split=0.1,
                    verbose=0)
test_rmse = float(np.sqrt(np.mean((model.predict(x_test, verbose=0) - y_test) ** 2))) * 100
guess_mean = float(np.sqrt(np.mean((y_test - y_train.mean()) ** 2))) * 100
print(f"Test RMSE: {test_rmse:.1f} sunspots (always answering the mean: {guess_mean:.1f})")

# %%
# The attention weights
# ---------------------
# One row per test window (every 8th), sorted by the marked month; the red dots are the
# marks. Before training the weights are spread over the window; after, nearly all of each
# row's weight sits on its marked month, the diagonal. The right panel counts the test
# windows by the weight on their marked month, before and after training.
scores = attention.predict(x_test, verbose=0)[:, 0, :]          # (windows, T)
rows = np.argsort(marked[2500:], kind="stable")[::8]
on_mark = scores[np.arange(len(scores)), marked[2500:]]
on_mark_untrained = untrained[np.arange(len(scores)), marked[2500:]]
print(f"Mean attention weight on the marked month: {on_mark.mean():.2f} after training, "
      f"{on_mark_untrained.mean():.2f} before (uniform attention: {1 / T:.2f})")

fig, (before, after, share) = plt.subplots(1, 3, figsize=(13, 4.5), width_ratios=(2, 2, 1.4))
for heatmap, values, title in ((before, untrained, "before training"),
                               (after, scores, f"after {EPOCHS} epochs")):
    image = heatmap.imshow(values[rows], aspect="auto", cmap="magma", vmin=0, vmax=1)
    heatmap.plot(marked[2500:][rows], np.arange(len(rows)), ".", color="tab:red",
                 markersize=3, label="marked month")
    heatmap.set_xlabel("month in the window (value step)")
    heatmap.set_title(f"Attention weights, {title}")
before.set_ylabel("test window (sorted by the marked month)")
before.legend(loc="upper right", fontsize=8)
fig.colorbar(image, ax=after, label="weight")
share.hist([on_mark_untrained, on_mark], bins=20, range=(0, 1),
           color=["tab:gray", "tab:purple"], label=["before training", "after"])
share.axvline(1 / T, color="black", ls="--", label="uniform")
share.set_xlabel("weight on the marked month")
share.set_ylabel("test windows")
share.set_title(f"Test RMSE {test_rmse:.1f} sunspots")
share.legend()
fig.tight_layout()
plt.show()
