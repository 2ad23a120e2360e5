"""
ONNX both ways: export, run in ONNX Runtime, load back
======================================================

:func:`pylstm.onnx.export` writes a model as an ONNX graph, with one ONNX ``LSTM`` node per
LSTM, that ONNX Runtime (or any ONNX runtime) serves with pylstm's numbers;
:func:`pylstm.onnx.load` reads ONNX LSTM graphs, pylstm's or another exporter's, and runs them
with NumPy, the LSTM nodes on pylstm's compiled core. Both need the ``onnx`` package
(``pip install pylstm[onnx]``); ONNX Runtime is only needed to run the graph there.
"""

# %%
# A trained model to export
# -------------------------
# A sunspot forecaster (``pylstm.examples.sunspots``'s windows): a bidirectional LSTM,
# an LSTM and a ``Dense`` head, briefly trained.
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import onnx

import pylstm
import pylstm.onnx
from pylstm.datasets import load_sunspots
from pylstm.examples.sunspots import SCALE, make_windows
from pylstm.layers import LSTM, Bidirectional, Dense, Input
from pylstm.models import Sequential

# PYLSTM_DOCS_FAST=1 (the documentation's CI): 1 epoch instead of 10.
FAST = os.environ.get("PYLSTM_DOCS_FAST") == "1"
EPOCHS = 1 if FAST else 10
WINDOW = 48

pylstm.utils.set_random_seed(0)
series = (load_sunspots().data / SCALE).astype("float32")
x, y = make_windows(series, WINDOW)
n_test = len(x) // 10
model = Sequential([Input((WINDOW, 1)),
                    Bidirectional(LSTM(16, return_sequences=True, seed=0)),
                    LSTM(16, seed=1),
                    Dense(1)])
model.compile(optimizer=pylstm.optimizers.Adam(learning_rate=0.005), loss="mse")
model.fit(x[:-n_test], y[:-n_test], batch_size=32, epochs=EPOCHS, verbose=0)
x_test, y_test = x[-n_test:], y[-n_test:]
expected = model.predict(x_test, verbose=0)

# %%
# Export
# ------
# The graph's batch and time axes are dynamic; the bidirectional layer becomes one node with
# ``direction="bidirectional"``.
path = os.path.join(tempfile.mkdtemp(), "sunspots.onnx")
pylstm.onnx.export(model, path)
graph = onnx.load(path).graph
print(f"{os.path.getsize(path):,} bytes; nodes:", [node.op_type for node in graph.node])
print("inputs:", [(i.name, [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim])
                  for i in graph.input])

# %%
# Run it in ONNX Runtime, and load it back into pylstm
# ----------------------------------------------------
# ``pylstm.onnx.load`` returns an :class:`~pylstm.onnx.OnnxModel` with ONNX Runtime's
# ``run(output_names, feed)`` calling convention; ``explain()`` lists what it will run.
runtimes = {"pylstm (the model)": expected}
try:
    import onnxruntime
except ImportError:
    onnxruntime = None
    print("ONNX Runtime is not installed: skipping it.")
if onnxruntime is not None:
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    runtimes["ONNX Runtime"] = session.run(None, {session.get_inputs()[0].name: x_test})[0]
loaded = pylstm.onnx.load(path)
print(loaded.explain())
runtimes["pylstm.onnx.load"] = loaded.run(None, {loaded.input_names[0]: x_test})[0]
for name, got in runtimes.items():
    print(f"{name:20s} largest difference from the model: {np.abs(got - expected).max():.1e}")

# %%
# The same forecasts from three runtimes
# --------------------------------------
# The right panel shows the largest difference from the pylstm model: ONNX Runtime's is
# float32 rounding (it sums in another order); ``pylstm.onnx.load`` runs the same kernels on
# the same weights as the model and gives the same numbers bit for bit.
fig, (forecasts, differences) = plt.subplots(1, 2, figsize=(12, 4), width_ratios=(3, 1))
forecasts.plot(y_test * SCALE, color="black", lw=1, label="observed")
styles = {"pylstm (the model)": ("tab:red", 4, 0.4), "ONNX Runtime": ("tab:green", 2, 0.8),
          "pylstm.onnx.load": ("tab:blue", 1, 1.0)}
for name, got in runtimes.items():
    color, width, alpha = styles[name]
    forecasts.plot(got * SCALE, color=color, lw=width, alpha=alpha, label=name)
forecasts.set_xlabel("test month")
forecasts.set_ylabel("sunspot number")
forecasts.set_title("One-month-ahead forecasts")
forecasts.legend()
others = [name for name in runtimes if name != "pylstm (the model)"]
for k, name in enumerate(others):
    gap = np.abs(runtimes[name] - expected).max() * SCALE
    if gap > 0:
        differences.bar(k, gap, color=styles[name][0])
        differences.annotate(f"{gap:.1e}", (k, gap), ha="center", va="bottom")
    else:
        differences.annotate("0\n(bitwise\nequal)", (k, 1e-9), ha="center", va="bottom")
differences.set_xticks(range(len(others)), [n.replace(".", ".\n", 1) for n in others])
differences.set_xlim(-0.6, len(others) - 0.4)
differences.set_yscale("log")
differences.set_ylim(1e-9, 1e-2)
differences.set_ylabel("largest difference (sunspots, log)")
differences.set_title("Against the model")
fig.tight_layout()
plt.show()
