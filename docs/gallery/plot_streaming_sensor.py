"""
Streaming a sensor signal step by step
======================================

An instrument delivers one reading at a time, and a forecast is wanted after each, not after
a whole sequence. Here the "sensor" is the monthly sunspot number
(:func:`pylstm.datasets.load_sunspots`), replayed month by month. A Keras-style model is
trained on whole sequences; its weights then go into a
:class:`pylstm.streaming.LSTMStepper`, which validates them once and runs each new reading
through one compiled step, allocating nothing. The streamed forecasts equal the model's
forecasts on the whole sequence, and each step takes microseconds.
"""

# %%
# A model that forecasts at every step
# ------------------------------------
# ``LSTM(return_sequences=True)`` followed by ``Dense(1)`` forecasts next month's number after
# every month it reads. It trains on 10-year stretches of the first 80 % of the record.
import os
import time

import matplotlib.pyplot as plt
import numpy as np

import pylstm
from pylstm.datasets import load_sunspots
from pylstm.layers import LSTM, Dense, Input
from pylstm.models import Sequential
from pylstm.streaming import LSTMStepper

# PYLSTM_DOCS_FAST=1 (the documentation's CI): 3 epochs instead of 30.
FAST = os.environ.get("PYLSTM_DOCS_FAST") == "1"
EPOCHS = 3 if FAST else 30
SPAN, UNITS, SEED = 120, 32, 0

pylstm.utils.set_random_seed(SEED)
sunspots = load_sunspots()
series = (sunspots.data / 100.0).astype("float32")
split = int(0.8 * len(series))
starts = np.arange(0, split - SPAN - 1, 12)
x_train = np.stack([series[s:s + SPAN] for s in starts])[..., None]
y_train = np.stack([series[s + 1:s + SPAN + 1] for s in starts])[..., None]

model = Sequential([Input((None, 1)), LSTM(UNITS, return_sequences=True, seed=SEED), Dense(1)])
model.compile(optimizer=pylstm.optimizers.Adam(learning_rate=0.01), loss="mse")
model.fit(x_train, y_train, batch_size=16, epochs=EPOCHS, verbose=0)

# %%
# From the trained layers to a stepper
# ------------------------------------
# The LSTM's weights are in Keras's layout and gate order, which ``LSTMStepper`` takes as they
# are; the ``Dense`` layer is one matrix product, done here in NumPy. The state, the output
# buffer and the forecast buffer are allocated once, before the stream starts.
kernel, recurrent_kernel, bias = model.layers[0].get_weights()
dense_kernel, dense_bias = model.layers[1].get_weights()
stepper = LSTMStepper(kernel, recurrent_kernel, bias)
state = stepper.initial_state(batch_size=1)
h = np.empty((1, UNITS), dtype="float32")
forecast = np.empty((1, 1), dtype="float32")

# %%
# The stream
# ----------
# The test stretch (the last 20 % of the record, from 1957) arrives one month at a time, after
# the state has been warmed up on the preceding months. Each step is timed from the reading's
# arrival to the forecast.
stream = series[split:]
for reading in series[:split]:
    h, state = stepper.step(reading.reshape(1, 1), state, out=h, new_state=state)
forecasts, latencies = [], []
for reading in stream:
    x_t = reading.reshape(1, 1)
    start = time.perf_counter()
    h, state = stepper.step(x_t, state, out=h, new_state=state)
    np.matmul(h, dense_kernel, out=forecast)
    forecast += dense_bias
    latencies.append(time.perf_counter() - start)
    forecasts.append(float(forecast[0, 0]))
forecasts, latencies = np.array(forecasts), np.array(latencies) * 1e6

whole = model.predict(series[None, :, None], verbose=0)[0, split:, 0]
print(f"Streamed {len(stream)} months; largest difference from the model on the whole "
      f"sequence: {np.abs(forecasts - whole).max():.1e}")
print(f"Latency per step (LSTM step + Dense): median {np.median(latencies):.1f} us, "
      f"99th percentile {np.percentile(latencies, 99):.1f} us, max {latencies.max():.0f} us")
rmse = np.sqrt(np.mean((forecasts[:-1] - stream[1:]) ** 2)) * 100
persistence = np.sqrt(np.mean((stream[:-1] - stream[1:]) ** 2)) * 100
print(f"One-month-ahead RMSE: streamed LSTM {rmse:.1f}, persistence {persistence:.1f} sunspots")

# %%
# Forecasts and latency
# ---------------------
# The latency is wall time on whatever else the machine is doing: the spikes are other
# processes taking the core, not the step. The median is the step's own cost.
when = sunspots.years[split:] + (sunspots.months[split:] - 0.5) / 12
fig, (signal, timing) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True,
                                     height_ratios=(3, 2))
signal.plot(when[1:], stream[1:] * 100, color="black", lw=1, label="observed")
signal.plot(when[1:], forecasts[:-1] * 100, color="tab:red", lw=1,
            label=f"streamed forecast, one month ahead (RMSE {rmse:.1f})")
signal.set_ylabel("sunspot number")
signal.set_title("Sunspots streamed month by month through LSTMStepper")
signal.legend()
timing.plot(when, latencies, ".", markersize=3, color="tab:blue")
timing.axhline(np.median(latencies), color="tab:red",
               label=f"median {np.median(latencies):.1f} us")
timing.set_yscale("log")
timing.set_ylabel("latency per step (us, log)")
timing.set_xlabel("year of the reading")
timing.legend()
fig.tight_layout()
plt.show()
