"""Issue-5 benchmark: pylstm against PyTorch CPU, ONNX Runtime and Keras 3, in one process.

Usage (from the repository root, with the extension built in place or the package installed):

    python benchmarks/bench_lstm.py [--quick] [--dtype float32|float64] [--threads 2]
        [--budget 0.5] [--no-onnx] [--no-keras] [--no-memory] [--no-scaling]
        [--cold [--pauses 0.05,0.15]] [--json PATH]

The grid is issue 5's table (`_common.FULL_GRID`; B batch, T timesteps, D input features, H
units): six one-layer sequence shapes, one timestep at batch 1, and a 2-layer bidirectional
LSTM. Every system holds the same weights, taken from one `torch.nn.LSTM` (PyTorch layout;
pylstm's functional core gets `kernel = W_ih.T`, `bias = b_ih + b_hh`; the 2-layer model is
`pylstm.nn.LSTM(num_layers=2, bidirectional=True)` loaded from torch's state dict).

For every shape it first checks correctness, and stops if anything disagrees:
- pylstm's core against its plain-NumPy reference (`pylstm._reference`), outputs and every
  gradient (one-layer shapes);
- pylstm against PyTorch: outputs, final states, and every gradient of a training step;
- ONNX Runtime's and Keras's outputs against PyTorch's.

Then it times, per system (medians after a warm-up, about `--budget` seconds each, 3 calls
at least):
- forward: inference over the whole sequence, outputs at every step. pylstm
  `ops.lstm_forward` (or the `nn.LSTM` in `eval()`), PyTorch under `torch.no_grad()`, ONNX
  Runtime `InferenceSession.run` (one `LSTM` node per layer, opset 17), Keras
  `keras.layers.LSTM(return_sequences=True)` (in `Bidirectional` for the 2-layer model) both
  eagerly and through a `tf.function`; the faster Keras mode is reported;
- training step: forward + backward, loss = sum of outputs (dy = ones), gradients of the
  input, the weights and (pylstm, PyTorch) the initial states. ONNX Runtime is inference
  only; Keras runs a `tf.GradientTape`, eagerly and as a `tf.function`;
- single step (B=1, T=1): also pylstm's streaming `LSTMStepper.step` (no allocation) and
  `torch.nn.LSTMCell`.

With `--cold` it also times calls as an application makes them now and then: for the forward
pass and the training step of every shape, each timed call follows a `time.sleep(pause)` (one
warm-up call first; 5 to 25 calls, about `--budget` seconds with the pauses; median), for each
pause of `--pauses` (seconds; default 50 and 150 ms), every system alike: pylstm, pylstm on one
thread (`pylstm.set_num_threads(1)`, its previous setting restored after; its back-to-back
time too, the floor a cold call is measured against), PyTorch and ONNX Runtime (Keras is left
out). The "Cold calls" table gives each time with pylstm's ratios to the fastest peer after the
same pause and to its own back-to-back time.

The report opens with the machine: CPU model, vendor and family, per-core L1d and L2 and the
L3 size, core count (from `pylstm.show_config(mode="dicts")["cpu"]`: CPUID, else Linux's
sysfs; the model name from /proc/cpuinfo where the build leaves it out), and the parameters pylstm's plan derived from the CPU
(`["tuning"]`).

Beside the median wall time: CPU seconds per call (`time.process_time()`, all threads of this
process, over the timed loop), and spinning after a call returns (`_common.spin_after`: the
CPU this process burns in the 200 ms after the call, and until when more than a quarter of
a core stays busy). Before each measurement the harness waits until the process is idle
(`_common.wait_idle`), so one system's spinning threads do not slow the next one.

Targets (issue 5): forward, time <= max(0.8 x fastest peer, forward FLOPs at 90 % of the
square-sgemm peak measured at the start of this run, `scipy.linalg.blas.sgemm` on 2048^2);
training step <= max(0.8 x PyTorch, 3 x forward FLOPs at 90 % of peak); single step <= 10 us;
no spinning beyond 20 ms; training-step peak memory <= PyTorch's (`bench_memory.py`, fresh
processes). FLOPs count the GEMMs only: 2*B*T*(D+H)*4H per layer and direction.

Threads: `--threads` everywhere (`torch.set_num_threads`, ORT `intra_op_num_threads`, TF
intra-op threads set before TensorFlow starts, SciPy's BLAS through threadpoolctl).
Layouts: batch-major `(B, T, D)` for pylstm, PyTorch and Keras; ONNX Runtime gets its native
`(T, B, D)`, transposed outside the timed region.
"""

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import platform
import sys
import time

import numpy as np
import scipy

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (FULL_GRID, QUICK_GRID, cpu_identity,  # noqa: E402
                     fmt_bytes, fmt_time, make_weights, measure, measure_cold, sgemm_peak)

import pylstm  # noqa: E402
from pylstm import _reference as reference  # noqa: E402
from pylstm.ops import lstm_backward, lstm_forward  # noqa: E402

try:
    import torch
except ImportError:
    sys.exit("This benchmark needs PyTorch (pip install torch==2.13.0, the CPU wheel).")

try:
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper
except ImportError:
    onnx = onnxruntime = None

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:
    threadpool_info = threadpool_limits = None

__all__ = ["make_weights", "machine_report"]  # bench_step.py imports these

# Max abs difference allowed between systems: outputs, and gradients relative to their scale.
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}
# Keras/TF (oneDNN kernels, other summation order) is checked a little looser in float32.
KERAS_TOLERANCE = {"float32": 2e-4, "float64": 1e-8}
STEP_TARGET_S = 10e-6
SPIN_TARGET_MS = 20
PEAK_FRACTION = 0.9

tf = keras = None  # imported in main(), after the thread count is known


def torch_lstm(case, dtype, kernel=None, recurrent_kernel=None, bias=None):
    """`torch.nn.LSTM` (batch-first) for `case`; with one-layer Keras-layout weights given,
    holding them: W_ih = kernel^T, W_hh = recurrent_kernel^T, b_ih = bias, b_hh = 0 (PyTorch's
    gate order i, f, g, o is Keras's i, f, c, o)."""
    torch.manual_seed(0)
    module = torch.nn.LSTM(case.D, case.H, num_layers=case.layers, batch_first=True,
                           bidirectional=case.directions == 2).to(getattr(torch, dtype))
    if kernel is not None:
        with torch.no_grad():
            module.weight_ih_l0.copy_(torch.from_numpy(kernel.T.copy()))
            module.weight_hh_l0.copy_(torch.from_numpy(recurrent_kernel.T.copy()))
            module.bias_ih_l0.copy_(torch.from_numpy(bias))
            module.bias_hh_l0.zero_()
    return module


def _state(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def _suffixes(module):
    return ("", "_reverse") if module.bidirectional else ("",)


def onnx_session(module, threads):
    """ONNX Runtime session of `module`'s weights: one `LSTM` node (opset 17) per layer,
    direction "bidirectional" for a bidirectional module, with a Transpose + Reshape between
    layers to concatenate the directions. Input X `(T, B, D)`; output Y `(T, dirs, B, H)` of the
    last layer (and Y_h, Y_c for one layer).

    Returns None when ONNX Runtime cannot run it (e.g. no kernel for the dtype)."""
    sd = _state(module)
    H, L = module.hidden_size, module.num_layers
    dtype = sd["weight_ih_l0"].dtype
    dirs = _suffixes(module)
    order = [0, 3, 1, 2]  # PyTorch row blocks i, f, g, o -> ONNX i, o, f, c

    def reorder(w):
        blocks = np.split(w, 4, axis=0)
        return np.concatenate([blocks[k] for k in order], axis=0)

    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    nodes, inits = [], []
    inputs = [helper.make_tensor_value_info("X", elem, ["T", "B", module.input_size])]
    layer_in = "X"
    for layer in range(L):
        W = np.stack([reorder(sd[f"weight_ih_l{layer}{s}"]) for s in dirs])   # (dirs, 4H, D)
        R = np.stack([reorder(sd[f"weight_hh_l{layer}{s}"]) for s in dirs])   # (dirs, 4H, H)
        Bias = np.stack([np.concatenate([reorder(sd[f"bias_ih_l{layer}{s}"]),
                                         reorder(sd[f"bias_hh_l{layer}{s}"])]) for s in dirs])
        names = [f"W{layer}", f"R{layer}", f"B{layer}"]
        inits += [numpy_helper.from_array(np.ascontiguousarray(a), n)
                  for a, n in zip((W, R, Bias), names)]
        node_in = [layer_in] + names
        last = layer == L - 1
        outs = ["Y", "Y_h", "Y_c"] if (last and L == 1) else [f"Y{layer}" if not last else "Y"]
        nodes.append(helper.make_node(
            "LSTM", node_in, outs, hidden_size=H,
            direction="bidirectional" if len(dirs) == 2 else "forward"))
        if not last:  # (T, dirs, B, H) -> (T, B, dirs * H)
            inits.append(numpy_helper.from_array(np.array([0, 0, -1], np.int64),
                                                 f"shape{layer}"))
            nodes.append(helper.make_node("Transpose", [f"Y{layer}"], [f"Yt{layer}"],
                                          perm=[0, 2, 1, 3]))
            nodes.append(helper.make_node("Reshape", [f"Yt{layer}", f"shape{layer}"],
                                          [f"X{layer + 1}"]))
            layer_in = f"X{layer + 1}"
    outputs = [helper.make_tensor_value_info("Y", elem, ["T", len(dirs), "B", H])]
    if L == 1:
        outputs += [helper.make_tensor_value_info(n, elem, [len(dirs), "B", H])
                    for n in ("Y_h", "Y_c")]
    graph = helper.make_graph(nodes, "lstm", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # the missing-kernel case is reported below, once
    try:
        session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                               providers=["CPUExecutionProvider"])
        session.run(None, {"X": np.zeros((1, 1, module.input_size), dtype)})
        return session
    except Exception as error:  # ORT reports a missing kernel as a generic runtime error
        print(f"  onnxruntime unavailable for {dtype}: {str(error).splitlines()[0]}",
              file=sys.stderr)
        return None


def keras_model(module, T, dtype):
    """Keras 3 `Sequential` of `keras.layers.LSTM(H, return_sequences=True)` per layer (each in
    `Bidirectional` for a bidirectional module) holding `module`'s weights: kernel = W_ih^T,
    recurrent_kernel = W_hh^T, bias = b_ih + b_hh (same gate order i, f, c, o)."""
    sd = _state(module)
    H = module.hidden_size
    model = keras.Sequential([keras.Input((T, module.input_size), dtype=dtype)])
    for layer in range(module.num_layers):
        lstm = keras.layers.LSTM(H, return_sequences=True, dtype=dtype)
        model.add(keras.layers.Bidirectional(lstm) if module.bidirectional else lstm)
        weights = []
        for s in _suffixes(module):
            weights += [sd[f"weight_ih_l{layer}{s}"].T, sd[f"weight_hh_l{layer}{s}"].T,
                        sd[f"bias_ih_l{layer}{s}"] + sd[f"bias_hh_l{layer}{s}"]]
        model.layers[-1].set_weights(weights)
    return model


class Problem:
    """One case of the grid: the data, every system's callables, and their correctness check."""

    def __init__(self, case, dtype, threads, use_onnx, use_keras, rng):
        self.case = case
        B, T, D, H = case.B, case.T, case.D, case.H
        self.x, kernel, recurrent_kernel, bias = make_weights(B, T, D, H, dtype, rng)
        P = case.directions * H
        self.dy = np.ones((B, T, P), dtype)
        if case.kind == "bidi":
            self.module = torch_lstm(case, dtype)
            sd = _state(self.module)
            self.nn_eval = pylstm.nn.LSTM(D, H, num_layers=2, bidirectional=True,
                                          batch_first=True, dtype=dtype).eval()
            self.nn_train = pylstm.nn.LSTM(D, H, num_layers=2, bidirectional=True,
                                           batch_first=True, dtype=dtype)
            self.nn_eval.load_state_dict(sd)
            self.nn_train.load_state_dict(sd)
        else:
            self.module = torch_lstm(case, dtype, kernel, recurrent_kernel, bias)
        self.kernel, self.recurrent_kernel, self.bias = kernel, recurrent_kernel, bias
        self.x_t = torch.from_numpy(self.x)
        self.dy_t = torch.from_numpy(self.dy)
        self.x_tm = np.ascontiguousarray(self.x.transpose(1, 0, 2))
        self.session = onnx_session(self.module, threads) if use_onnx else None
        self.keras = None
        if use_keras:
            self.keras = keras_model(self.module, T, dtype)
            self.x_tf = tf.constant(self.x)
            self._keras_fwd_fn = tf.function(self._keras_predict, reduce_retracing=True)
            self._keras_train_fn = tf.function(self._keras_grads, reduce_retracing=True)
        if case.kind == "step":
            from pylstm.streaming import LSTMStepper
            self.stepper = LSTMStepper(kernel, recurrent_kernel, bias)
            self.step_state = self.stepper.initial_state(1)
            self.step_out = np.empty((1, H), dtype)
            self.x_step = np.ascontiguousarray(self.x[:, 0])
            self.cell = torch.nn.LSTMCell(D, H).to(getattr(torch, dtype))
            with torch.no_grad():
                for a, b in (("weight_ih", "weight_ih_l0"), ("weight_hh", "weight_hh_l0"),
                             ("bias_ih", "bias_ih_l0"), ("bias_hh", "bias_hh_l0")):
                    getattr(self.cell, a).copy_(getattr(self.module, b))
            self.cell_state = (torch.zeros(1, H, dtype=self.x_t.dtype),
                               torch.zeros(1, H, dtype=self.x_t.dtype))
            self.x_step_t = torch.from_numpy(self.x_step)

    # pylstm ---------------------------------------------------------------------------

    def pylstm_forward(self):
        if self.case.kind == "bidi":
            y, (h_n, c_n) = self.nn_eval(self.x)
            return y, h_n, c_n
        return lstm_forward(self.x, self.kernel, self.recurrent_kernel, self.bias)[:3]

    def pylstm_train(self):
        if self.case.kind == "bidi":
            self.nn_train.zero_grad()
            y, _ = self.nn_train(self.x)
            dx, (dh0, dc0) = self.nn_train.backward(self.dy, return_hx_grad=True)
            return y, {"x": dx, "h0": dh0, "c0": dc0}
        y, h_n, c_n, cache = lstm_forward(self.x, self.kernel, self.recurrent_kernel, self.bias,
                                          training=True)
        return y, lstm_backward(cache, self.dy)

    def pylstm_step(self):
        return self.stepper.step(self.x_step, self.step_state, out=self.step_out,
                                 new_state=self.step_state)

    # peers ----------------------------------------------------------------------------

    def torch_forward(self):
        with torch.no_grad():
            return self.module(self.x_t)

    def torch_train(self):
        n = self.case.layers * self.case.directions
        dtype = self.x_t.dtype
        self.module.zero_grad(set_to_none=True)
        x = self.x_t.detach().requires_grad_(True)
        h0 = torch.zeros((n, self.case.B, self.case.H), dtype=dtype, requires_grad=True)
        c0 = torch.zeros((n, self.case.B, self.case.H), dtype=dtype, requires_grad=True)
        y, _ = self.module(x, (h0, c0))
        y.backward(self.dy_t)
        return y, x, h0, c0

    def torch_cell_step(self):
        with torch.no_grad():
            self.cell_state = self.cell(self.x_step_t, self.cell_state)
        return self.cell_state

    def onnx_forward(self):
        return self.session.run(None, {"X": self.x_tm})

    def keras_eager_forward(self):
        return self.keras(self.x_tf, training=False)

    def keras_function_forward(self):
        return self._keras_fwd_fn(self.x_tf)

    def _keras_predict(self, x):
        return self.keras(x, training=False)

    def _keras_grads(self, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(self.keras(x, training=True))
        return tape.gradient(loss, [x] + self.keras.trainable_variables)

    def keras_eager_train(self):
        return self._keras_grads(self.x_tf)

    def keras_function_train(self):
        return self._keras_train_fn(self.x_tf)

    # correctness ----------------------------------------------------------------------

    def check(self, tol, keras_tol):
        """Asserts that all systems agree; returns the largest differences seen."""
        diffs = {}
        y, h_n, c_n = self.pylstm_forward()
        y_train, grads = self.pylstm_train()
        if self.case.kind != "bidi":
            # The core against its plain-NumPy specification first.
            y_r, h_r, c_r, cache_r = reference.lstm_forward(
                self.x, self.kernel, self.recurrent_kernel, self.bias, training=True)
            grads_r = reference.lstm_backward(cache_r, self.dy)
            diffs["reference fwd+bwd"] = max(
                [_diff(y, y_r), _diff(h_n, h_r), _diff(c_n, c_r)]
                + [_rel(grads[k], grads_r[k])
                   for k in ("x", "kernel", "recurrent_kernel", "bias", "h0", "c0")])
        y_t, (h_t, c_t) = self.torch_forward()
        diffs["torch fwd"] = max(_diff(y, y_t), _diff(h_n, h_t), _diff(c_n, c_t))
        if self.session is not None:
            y_o = self.onnx_forward()[0]                             # (T, dirs, B, H)
            diffs["onnxruntime fwd vs torch"] = _diff(_onnx_batch_major(y_o), y_t)
        if self.keras is not None:
            diffs["keras fwd vs torch"] = max(_diff(self.keras_eager_forward(), y_t),
                                              _diff(self.keras_function_forward(), y_t))
        y_t, x_t, h0_t, c0_t = self.torch_train()
        m = self.module
        pairs = [(y_train, y_t.detach()), (grads["x"], x_t.grad), (grads["h0"], h0_t.grad),
                 (grads["c0"], c0_t.grad)]
        if self.case.kind == "bidi":
            pairs += [(var.grad, getattr(m, name).grad)
                      for name, var in self.nn_train.named_parameters()]
        else:
            pairs += [(grads["kernel"], m.weight_ih_l0.grad.T),
                      (grads["recurrent_kernel"], m.weight_hh_l0.grad.T),
                      (grads["bias"], m.bias_ih_l0.grad), (grads["bias"], m.bias_hh_l0.grad)]
        # Gradients are sums over up to B*T terms: compare relative to their magnitude.
        diffs["torch fwd+bwd"] = max(_rel(a, b) for a, b in pairs)
        if self.case.kind == "step":
            y_s = self.pylstm_step()[0]
            h_c, _ = self.torch_cell_step()
            diffs["step vs torch LSTMCell"] = max(_diff(y_s, y_t[:, 0]), _diff(h_c, y_t[:, 0]))
            self.step_state.reset()
            self.cell_state = tuple(torch.zeros_like(s) for s in self.cell_state)
        for name, diff in diffs.items():
            limit = keras_tol if name.startswith("keras") else tol
            if not diff < limit:
                raise AssertionError(f"{self.case.label}: {name} max abs difference "
                                     f"{diff:.3g} >= {limit:g}")
        return diffs


def _numpy(a):
    if isinstance(a, torch.Tensor):
        return a.detach().numpy()
    return np.asarray(a)


def _diff(a, b):
    a, b = _numpy(a), _numpy(b)
    if a.shape != b.shape and a.size == b.size:
        a = a.reshape(b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


def _rel(a, b):
    return _diff(a, b) / max(1.0, float(np.abs(_numpy(b)).max()))


def _onnx_batch_major(y):
    """ONNX `Y` `(T, dirs, B, H)` -> `(B, T, dirs * H)`, PyTorch's batch-first output."""
    T, dirs, B, H = y.shape
    return y.transpose(2, 0, 1, 3).reshape(B, T, dirs * H)


def kernel_level():
    """The kernel level pylstm runs (`pylstm.show_config`), with why, or "native build" for a
    build from before kernel levels."""
    if not hasattr(pylstm, "show_config"):
        return "native build (no levels)"
    kernels = pylstm.show_config(mode="dicts")["kernels"]
    return f"{kernels['level']} ({kernels['reason']})"


def cpu_record():
    """`(cpu, tuning)`: the CPU as pylstm's `show_config(mode="dicts")["cpu"]` reports it
    ("model_name", "vendor", "family", per-core "l1d_bytes" and "l2_bytes", "l3_bytes": from
    CPUID, else Linux's sysfs), the model name, vendor and family it leaves None (or a build
    without the key leaves out) read from /proc/cpuinfo (`_common.cpu_identity`); and the
    plan's parameters derived from the CPU (`["tuning"]`, None on a build that does not
    report them)."""
    config = pylstm.show_config(mode="dicts") if hasattr(pylstm, "show_config") else {}
    cpu = dict(config.get("cpu") or {})
    for key, value in cpu_identity().items():
        if cpu.get(key) is None:
            cpu[key] = value
    return cpu, config.get("tuning")


def cpu_line(cpu):
    """`CPU: <model> (<vendor>, family <f>); L1d 48 KiB and L2 2 MiB per core, L3 105 MiB`."""
    maker = ", ".join(str(part) for part in (
        cpu.get("vendor"), None if cpu.get("family") is None else f"family {cpu['family']}")
        if part is not None)
    model = cpu.get("model_name") or platform.processor() or "unknown"
    return (f"CPU: {model}" + (f" ({maker})" if maker else "")
            + f"; L1d {fmt_bytes(cpu.get('l1d_bytes'))} and L2 {fmt_bytes(cpu.get('l2_bytes'))}"
            f" per core, L3 {fmt_bytes(cpu.get('l3_bytes'))}")


def machine_report(threads):
    """Markdown lines describing the machine (CPU model, caches, cores, pylstm's tuning), the
    library versions and the load."""
    cpu, tuning = cpu_record()
    if tuning:
        tuning_text = ", ".join(f"{name}={value}" for name, value in tuning.items())
    else:
        tuning_text = "not reported by this build"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    versions = (f"pylstm {pylstm.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
                f"torch {torch.__version__}"
                + (f", onnxruntime {onnxruntime.__version__}" if onnxruntime
                   else ", no onnxruntime")
                + (f", keras {keras.__version__} / tensorflow {tf.__version__}" if keras else ""))
    lines = [
        f"- {cpu_line(cpu)}; {os.cpu_count()} logical cores, {usable} usable by this process",
        f"- Python {platform.python_version()} on {platform.system()} {platform.machine()}",
        f"- {versions}",
        f"- threads per system: {threads}",
        f"- pylstm kernel level: {kernel_level()}",
        f"- pylstm tuning: {tuning_text}",
        "- load average (1, 5, 15 min) now: "
        + ", ".join(f"{v:.2f}" for v in os.getloadavg())
        + f" (this run adds up to {threads}; more means other processes shared the cores)",
    ]
    if threadpool_info is not None:
        blas = [f"{p['internal_api']} {p['version']} ({p['filepath'].split('/')[-1]})"
                for p in threadpool_info() if p["user_api"] == "blas"]
        lines.append(f"- BLAS loaded: {', '.join(blas) or 'none found'}")
    else:
        lines.append("- BLAS threads not limited (threadpoolctl not installed)")
    return "\n".join(lines)


def _best_keras(problem, mode, budget_s):
    """Times both Keras modes; returns `(timing, "eager" or "tf.function")` of the faster."""
    eager = measure(getattr(problem, f"keras_eager_{mode}"), budget_s)
    compiled = measure(getattr(problem, f"keras_function_{mode}"), budget_s)
    return (eager, "eager") if eager.wall < compiled.wall else (compiled, "tf.function")


@contextlib.contextmanager
def pylstm_threads(n):
    """pylstm on `n` threads inside the block; its previous setting (None included) after."""
    previous = pylstm.get_num_threads()
    pylstm.set_num_threads(n)
    try:
        yield
    finally:
        pylstm.set_num_threads(previous)


def time_cold(problem, pauses, budget_s):
    """Calls after a pause (`--cold`): for the forward pass and the training step, pylstm's
    one-thread back-to-back time, then for each pause pylstm, pylstm on one thread and the
    peers (not Keras), each call after `time.sleep(pause)` (`_common.measure_cold`).

    Returns `{mode: {"one thread": Timing, pause: {system: ColdTiming}}}`."""
    calls = {"forward": {"pylstm": problem.pylstm_forward, "torch": problem.torch_forward},
             "train": {"pylstm": problem.pylstm_train, "torch": problem.torch_train}}
    if problem.session is not None:
        calls["forward"]["onnxruntime"] = problem.onnx_forward
    cold = {}
    for mode, systems in calls.items():
        with pylstm_threads(1):
            cold[mode] = {"one thread": measure(systems["pylstm"], budget_s, spin_probes=0)}
        for pause in pauses:
            cells = {}
            for name, fn in systems.items():
                cells[name] = measure_cold(fn, pause, budget_s)
                if name == "pylstm":
                    with pylstm_threads(1):
                        cells["pylstm 1 thread"] = measure_cold(fn, pause, budget_s)
            cold[mode][pause] = cells
    return cold


def run(grid, dtype, threads, budget_s, use_onnx, use_keras, pauses=()):
    """Checks then times every case; returns a list of result dicts, one per case (with
    `pauses`, also the calls after each pause: `time_cold`)."""
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    results = []
    for case in grid:
        print(f"{case.label} ...", file=sys.stderr, flush=True)
        problem = Problem(case, dtype, threads, use_onnx, use_keras, rng)
        diffs = problem.check(TOLERANCE[dtype], KERAS_TOLERANCE[dtype])
        print("  max differences: " + ", ".join(f"{k} {v:.2g}" for k, v in diffs.items()),
              file=sys.stderr, flush=True)
        fwd, train, modes = {}, {}, {}
        fwd["pylstm"] = measure(problem.pylstm_forward, budget_s)
        fwd["torch"] = measure(problem.torch_forward, budget_s)
        if problem.session is not None:
            fwd["onnxruntime"] = measure(problem.onnx_forward, budget_s)
        if problem.keras is not None:
            fwd["keras"], modes["forward"] = _best_keras(problem, "forward", budget_s)
        train["pylstm"] = measure(problem.pylstm_train, budget_s)
        train["torch"] = measure(problem.torch_train, budget_s)
        if problem.keras is not None:
            train["keras"], modes["train"] = _best_keras(problem, "train", budget_s)
        step = {}
        if case.kind == "step":
            step["pylstm LSTMStepper.step"] = measure(problem.pylstm_step, budget_s)
            step["torch LSTMCell"] = measure(problem.torch_cell_step, budget_s)
        cold = time_cold(problem, pauses, budget_s) if pauses else None
        results.append(dict(case=case, forward=fwd, train=train, step=step, modes=modes,
                            diffs=diffs, cold=cold))
        del problem
    return results


PEERS = ("torch", "onnxruntime", "keras")


def _target_row(label, gflop, timings, target_flop_s, peers, mode_note=""):
    """One markdown row: times, ratio to the fastest peer, fraction of peak, target, met."""
    py = timings["pylstm"].wall
    peer_times = {p: timings[p].wall for p in peers if p in timings}
    fastest = min(peer_times, key=peer_times.get)
    target = max(0.8 * peer_times[fastest], target_flop_s)
    cells = [label, f"{gflop:.4g}", fmt_time(py)]
    for p in PEERS:
        cells.append(fmt_time(timings[p].wall) + (mode_note if p == "keras" else "")
                     if p in timings else "-")
    cells += [f"{py / peer_times[fastest]:.2f} ({fastest})", fmt_time(target),
              "yes" if py <= target else "no"]
    return "| " + " | ".join(cells) + " |"


def markdown(results, peak_gflops):
    """The report: forward, training step, single step, CPU and spinning tables."""
    head = ("| shape | GFLOP | pylstm | torch | onnxruntime | keras (best mode) "
            "| pylstm / fastest peer | target | met |")
    rule = "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |"
    peak = peak_gflops * 1e9 * PEAK_FRACTION
    out = [f"Square-sgemm peak measured in this run: {peak_gflops:.1f} GFLOP/s "
           f"(target FLOP rate {PEAK_FRACTION:.0%} of it: {peak / 1e9:.1f} GFLOP/s).", "",
           "### Forward (inference, outputs at every step)", "",
           "Target: <= max(0.8 x fastest peer, forward FLOPs at 90 % of the sgemm peak).", "",
           head, rule]
    for r in results:
        gflop = r["case"].forward_flop() / 1e9
        note = f" ({r['modes']['forward']})" if "forward" in r["modes"] else ""
        out.append(_target_row(r["case"].label, gflop, r["forward"], gflop * 1e9 / peak, PEERS,
                               note))
    fractions = [f"{r['case'].label} "
                 f"{r['case'].forward_flop() / r['forward']['pylstm'].wall / 1e9 / peak_gflops:.0%}"
                 for r in results]
    out += ["", "pylstm's fraction of the sgemm peak (forward GEMM FLOPs / time / peak): "
            + "; ".join(fractions)]
    out += ["", "### Training step (forward + backward, loss = sum of outputs)", "",
            "Target: <= max(0.8 x PyTorch, 3 x forward FLOPs at 90 % of the sgemm peak). "
            "The ratio column is against the fastest peer; the target against PyTorch.", "",
            head, rule]
    for r in results:
        gflop = 3 * r["case"].forward_flop() / 1e9
        note = f" ({r['modes']['train']})" if "train" in r["modes"] else ""
        row = _target_row(r["case"].label, gflop, r["train"], gflop * 1e9 / peak, PEERS, note)
        torch_target = max(0.8 * r["train"]["torch"].wall, gflop * 1e9 / peak)
        cells = row.split(" | ")
        cells[-2] = fmt_time(torch_target)
        cells[-1] = ("yes" if r["train"]["pylstm"].wall <= torch_target else "no") + " |"
        out.append(" | ".join(cells))
    steps = [r for r in results if r["step"]]
    if steps:
        out += ["", "### Single step (B=1, T=1), one call from Python", "",
                f"Target: <= {fmt_time(STEP_TARGET_S)} per call (pylstm's faster entry).", "",
                "| shape | system | wall per call | CPU per call | met |",
                "| --- | --- | ---: | ---: | :---: |"]
        for r in steps:
            rows = {"pylstm lstm_forward (T=1)": r["forward"]["pylstm"], **r["step"]}
            rows.update({f"{p} forward (T=1)": r["forward"][p] for p in PEERS
                         if p in r["forward"]})
            for name, t in rows.items():
                met = ("yes" if t.wall <= STEP_TARGET_S else "no") if name.startswith("pylstm") \
                    else ""
                out.append(f"| {r['case'].label} | {name} | {fmt_time(t.wall)} "
                           f"| {fmt_time(t.cpu)} | {met} |")
    out += ["", "### CPU time and spinning after each call", "",
            "CPU per call: `time.process_time()` (all threads of the process) over the timed "
            "loop / calls; busy cores: that CPU time / the loop's total wall time (above 1: more "
            "than one core busy). Spin: until when "
            "(ms after the call returned, sampled at 20/50/100/200 ms) the process kept over a "
            f"quarter of a core busy; target <= {SPIN_TARGET_MS} ms. CPU in 200 ms: CPU "
            "milliseconds burned while the caller slept for 200 ms after a call.", "",
            "| shape | mode | system | wall | CPU per call | busy cores | spin (ms) "
            "| CPU in 200 ms after (ms) | spin met |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | :---: |"]
    for r in results:
        groups = [("forward", r["forward"]), ("train", r["train"]), ("step", r["step"])]
        for mode, timings in groups:
            for name, t in timings.items():
                met = ("yes" if t.spin_ms <= SPIN_TARGET_MS else "no") \
                    if name.startswith("pylstm") else ""
                out.append(f"| {r['case'].label} | {mode} | {name} | {fmt_time(t.wall)} "
                           f"| {fmt_time(t.cpu)} | {t.cores:.2f} | {t.spin_ms:.0f} "
                           f"| {t.spin_cpu_ms:.1f} | {met} |")
    return "\n".join(out)


def cold_markdown(results, pauses):
    """The "Cold calls" table (`--cold`): per shape and mode, pylstm back to back (on the
    run's threads, then on one), and for each pause the times after it with two ratios."""
    out = ["### Cold calls (a pause before every timed call)", "",
           "Each call is timed right after `time.sleep(pause)`, every system alike, after one "
           "warm-up call; median of 5 to 25 calls (about `--budget` seconds with the pauses). "
           "Back to back: the medians of the tables above; pylstm 1 thread: "
           "`pylstm.set_num_threads(1)` (the peers keep `--threads`). Keras is left out. "
           "Issue 15's target: after a pause, pylstm no slower than pylstm on one thread and "
           "than the fastest peer after the same pause; aim 1.2 x its back-to-back time.", ""]
    head = ["shape", "mode", "pylstm back to back", "pylstm 1 thread back to back"]
    for pause in pauses:
        after = f"after {pause * 1e3:g} ms:"
        head += [f"{after} pylstm", f"{after} pylstm 1 thread", f"{after} torch",
                 f"{after} onnxruntime", f"{after} pylstm / fastest peer",
                 f"{after} pylstm / back to back"]
    out += ["| " + " | ".join(head) + " |",
            "| --- | --- |" + " ---: |" * (len(head) - 2)]
    for r in results:
        for mode in ("forward", "train"):
            cold = r["cold"][mode]
            back_to_back = r[mode]["pylstm"].wall
            cells = [r["case"].label, mode, fmt_time(back_to_back),
                     fmt_time(cold["one thread"].wall)]
            for pause in pauses:
                t = {name: timing.wall for name, timing in cold[pause].items()}
                peers = {p: t[p] for p in ("torch", "onnxruntime") if p in t}
                fastest = min(peers, key=peers.get)
                cells += [fmt_time(t["pylstm"]), fmt_time(t["pylstm 1 thread"]),
                          fmt_time(t["torch"]),
                          fmt_time(t["onnxruntime"]) if "onnxruntime" in t else "-",
                          f"{t['pylstm'] / peers[fastest]:.2f} ({fastest})",
                          f"{t['pylstm'] / back_to_back:.2f}"]
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def json_record(results, peak_gflops, args, used):
    """The run as one JSON-ready dict (`--json`; `benchmarks/plot_benchmarks.py` plots it): the
    command, date, machine and versions, the sgemm peak, and per shape its `Case` fields, GEMM
    FLOPs and, per mode ("forward", "train", "step") and system, the `Timing` fields (seconds;
    NaN, where nothing was probed, as null)."""
    cpu, tuning = cpu_record()

    def timings(cells):
        return {name: {k: None if isinstance(v, float) and math.isnan(v) else v
                       for k, v in dataclasses.asdict(t).items()} for name, t in cells.items()}

    versions = {"pylstm": pylstm.__version__, "numpy": np.__version__,
                "scipy": scipy.__version__, "torch": torch.__version__}
    if onnxruntime is not None:
        versions["onnxruntime"] = onnxruntime.__version__
    if keras is not None:
        versions["keras"] = keras.__version__
    return {
        "command": "python benchmarks/bench_lstm.py " + " ".join(used),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dtype": args.dtype,
        "threads": args.threads,
        "machine": {"cpu": cpu, "tuning": tuning, "logical_cores": os.cpu_count(),
                    "kernel_level": kernel_level(), "load_average": list(os.getloadavg())},
        "versions": versions,
        "sgemm_peak_gflops": peak_gflops,
        "cases": [{"label": r["case"].label, **dataclasses.asdict(r["case"]),
                   "forward_flop": r["case"].forward_flop(), "keras_modes": r["modes"],
                   **{mode: timings(r[mode]) for mode in ("forward", "train", "step")}}
                  for r in results],
    }


def _pauses(text):
    """`--pauses`: comma-separated seconds, each >= 0."""
    try:
        pauses = tuple(float(p) for p in text.split(","))
    except ValueError:
        pauses = ()
    if not pauses or any(not p >= 0 for p in pauses):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated pauses in seconds, each >= 0, received {text!r}")
    return pauses


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="four small cases only")
    parser.add_argument("--dtype", choices=sorted(TOLERANCE), default="float32")
    parser.add_argument("--threads", type=int, default=2, help="threads for every system")
    parser.add_argument("--budget", type=float, default=0.5,
                        help="seconds of repeats per measurement (default 0.5)")
    parser.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime")
    parser.add_argument("--no-keras", action="store_true", help="skip Keras / TensorFlow")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the peak-memory table (bench_memory.py)")
    parser.add_argument("--no-scaling", action="store_true",
                        help="skip the scaling table (bench_scaling.py)")
    parser.add_argument("--cold", action="store_true",
                        help="also time calls that each follow a pause (the Cold calls table)")
    parser.add_argument("--pauses", type=_pauses, default=(0.05, 0.15),
                        help="with --cold: the pauses, comma-separated seconds "
                             "(default 0.05,0.15)")
    parser.add_argument("--json", metavar="PATH",
                        help="also write the timings as JSON (benchmarks/plot_benchmarks.py)")
    args = parser.parse_args(argv)

    global tf, keras
    if not args.no_keras:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        try:
            import tensorflow as tf
            # Must precede any TensorFlow op: the thread pools are created once.
            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
            import keras
        except ImportError:
            tf = keras = None
    use_onnx = onnxruntime is not None and not args.no_onnx
    use_keras = keras is not None
    grid = QUICK_GRID if args.quick else FULL_GRID
    start = time.perf_counter()
    load_before = os.getloadavg()
    limits = (threadpool_limits(limits=args.threads, user_api="blas")
              if threadpool_limits is not None else None)
    peak = sgemm_peak(args.threads)
    print(f"sgemm peak on {args.threads} threads: {peak:.1f} GFLOP/s", file=sys.stderr)
    results = run(grid, args.dtype, args.threads, args.budget, use_onnx, use_keras,
                  args.pauses if args.cold else ())
    scaling_md = memory_md = None
    if not args.no_scaling:
        import bench_scaling
        scaling_md = bench_scaling.markdown(bench_scaling.run(
            args.dtype, args.threads, args.budget, quick=args.quick))
    if limits is not None:
        limits.unregister()
    if not args.no_memory:
        import bench_memory
        memory_md = bench_memory.markdown(bench_memory.run(
            grid, args.dtype, args.threads), grid, args.dtype)
    systems = ["PyTorch"] + (["ONNX Runtime"] if use_onnx else []) + (["Keras 3"] if use_keras
                                                                      else [])
    print(f"## pylstm vs {', '.join(systems)}, {args.dtype}, batch-major input\n")
    used = sys.argv[1:] if argv is None else argv
    print(f"Command: `python benchmarks/bench_lstm.py {' '.join(used)}`\n")
    print(machine_report(args.threads))
    print("- load average before the run: " + ", ".join(f"{v:.2f}" for v in load_before) + "\n")
    print(markdown(results, peak))
    if args.cold:
        print("\n" + cold_markdown(results, args.pauses))
    if scaling_md:
        print("\n" + scaling_md)
    if memory_md:
        print("\n" + memory_md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(json_record(results, peak, args, used), f, indent=1)
            f.write("\n")
    print(f"\nAll outputs and gradients agreed before timing (pylstm vs PyTorch and its "
          f"reference within {TOLERANCE[args.dtype]:g}, ONNX Runtime and Keras outputs vs "
          f"PyTorch). Total run time {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
