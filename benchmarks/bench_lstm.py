"""Benchmark of pylstm's functional LSTM against PyTorch CPU and ONNX Runtime, in one process.

Usage (from the repository root, with the extension built in place or the package installed):

    python benchmarks/bench_lstm.py [--quick] [--dtype float32|float64] [--threads 2]

For every shape (B batch, T timesteps, D input features, H units) it first checks the core
against its plain-NumPy reference (`pylstm._reference`: outputs and every gradient) and that
all systems agree on the same weights (outputs and, against PyTorch, every gradient), then
times:

- forward: inference over the whole sequence, `return_sequences=True` (pylstm `training=False`,
  PyTorch under `torch.no_grad()`, ONNX Runtime `InferenceSession.run`);
- forward+backward: one training step with loss = sum of all outputs (dy = ones), pylstm
  `lstm_forward(training=True)` + `lstm_backward`, PyTorch autograd `backward`. ONNX Runtime
  has no training here.

Every system runs on the same number of threads (`--threads`): `torch.set_num_threads`,
ONNX Runtime `intra_op_num_threads`, and the BLAS under SciPy through threadpoolctl when it is
installed. Each timing is the median over an adaptive number of repeats (about `--budget`
seconds, at least 3) after a warm-up; the script sleeps between systems so that spinning BLAS
threads go idle. GFLOP counts only the GEMMs: forward 2*B*T*(D+H)*4H, backward twice that.

Layouts: pylstm and PyTorch take batch-major `(B, T, D)`; ONNX Runtime gets its native
sequence-major `(T, B, D)`, transposed outside the timed region. Gate order: pylstm (Keras)
and PyTorch i, f, c, o; ONNX i, o, f, c.
"""

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
import scipy

import pylstm
from pylstm import _reference as reference
from pylstm.ops import lstm_backward, lstm_forward

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

# (B, T, D, H): batch 1..256, timesteps 1..200, units 64..1024.
FULL_GRID = [
    (1, 100, 32, 64),
    (1, 100, 128, 256),
    (32, 100, 64, 128),
    (64, 50, 128, 256),
    (128, 100, 256, 512),
    (256, 20, 512, 1024),
    (1, 1, 64, 128),
    (16, 200, 64, 64),
    (8, 1, 32, 64),
]
QUICK_GRID = [(1, 100, 32, 64), (32, 100, 64, 128), (8, 1, 32, 64)]

# Max abs difference allowed between systems: outputs, and gradients relative to their scale.
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}
IDLE_S = 0.2  # pause between systems: lets spinning BLAS / OpenMP threads go to sleep


def make_weights(B, T, D, H, dtype, rng):
    """Random problem in pylstm's (Keras) layout, scaled like PyTorch's default init."""
    scale = 1.0 / np.sqrt(H)
    x = rng.standard_normal((B, T, D)).astype(dtype)
    kernel = rng.uniform(-scale, scale, (D, 4 * H)).astype(dtype)
    recurrent_kernel = rng.uniform(-scale, scale, (H, 4 * H)).astype(dtype)
    bias = rng.uniform(-scale, scale, (4 * H,)).astype(dtype)
    return x, kernel, recurrent_kernel, bias


def torch_lstm(kernel, recurrent_kernel, bias):
    """`torch.nn.LSTM` holding the same weights: W_ih = kernel^T, W_hh = recurrent_kernel^T,
    b_ih = bias, b_hh = 0 (PyTorch's gate order i, f, g, o is Keras's i, f, c, o)."""
    D, G = kernel.shape
    module = torch.nn.LSTM(D, G // 4, batch_first=True).to(torch.from_numpy(kernel).dtype)
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(kernel.T.copy()))
        module.weight_hh_l0.copy_(torch.from_numpy(recurrent_kernel.T.copy()))
        module.bias_ih_l0.copy_(torch.from_numpy(bias))
        module.bias_hh_l0.zero_()
    return module


def onnx_session(kernel, recurrent_kernel, bias, threads):
    """ONNX Runtime session of a single-op model, `LSTM` (opset 17) with the same weights.

    Returns None when ONNX Runtime cannot run it (e.g. no kernel for the dtype)."""
    D, G = kernel.shape
    H = G // 4
    dtype = kernel.dtype
    # Keras blocks i, f, c, o -> ONNX blocks i, o, f, c.
    order = [0, 3, 1, 2]

    def reorder(w):  # (..., 4H) columns in Keras order -> (4H, ...) rows in ONNX order
        blocks = np.split(np.asarray(w).T, 4, axis=0)
        return np.concatenate([blocks[k] for k in order], axis=0)

    W = reorder(kernel)[None]                                    # (1, 4H, D)
    R = reorder(recurrent_kernel)[None]                          # (1, 4H, H)
    Bias = np.concatenate([reorder(bias[None])[:, 0], np.zeros(G, dtype)])[None]  # (1, 8H)
    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    graph = helper.make_graph(
        [helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y", "Y_h", "Y_c"], hidden_size=H)],
        "lstm",
        [helper.make_tensor_value_info("X", elem, ["T", "B", D])],
        [
            helper.make_tensor_value_info("Y", elem, ["T", 1, "B", H]),
            helper.make_tensor_value_info("Y_h", elem, [1, "B", H]),
            helper.make_tensor_value_info("Y_c", elem, [1, "B", H]),
        ],
        initializer=[
            numpy_helper.from_array(np.ascontiguousarray(W), "W"),
            numpy_helper.from_array(np.ascontiguousarray(R), "R"),
            numpy_helper.from_array(np.ascontiguousarray(Bias), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # the missing-kernel case is reported below, once
    try:
        session = onnxruntime.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        session.run(None, {"X": np.zeros((1, 1, D), dtype)})
    except Exception as error:  # ORT reports a missing kernel as a generic runtime error
        print(f"  onnxruntime unavailable for {dtype}: {str(error).splitlines()[0]}",
              file=sys.stderr)
        return None
    return session


class Problem:
    """One shape: the data, the three systems' callables, and their correctness check."""

    def __init__(self, B, T, D, H, dtype, threads, use_onnx, rng):
        self.shape = (B, T, D, H)
        self.x, self.kernel, self.recurrent_kernel, self.bias = make_weights(B, T, D, H, dtype,
                                                                             rng)
        self.dy = np.ones((B, T, H), dtype)
        self.module = torch_lstm(self.kernel, self.recurrent_kernel, self.bias)
        self.x_t = torch.from_numpy(self.x)
        self.dy_t = torch.from_numpy(self.dy)
        self.x_tm = np.ascontiguousarray(self.x.transpose(1, 0, 2))
        self.session = (onnx_session(self.kernel, self.recurrent_kernel, self.bias, threads)
                        if use_onnx else None)

    def pylstm_forward(self):
        return lstm_forward(self.x, self.kernel, self.recurrent_kernel, self.bias)

    def pylstm_train(self):
        y, h_n, c_n, cache = lstm_forward(self.x, self.kernel, self.recurrent_kernel, self.bias,
                                          training=True)
        return y, lstm_backward(cache, self.dy)

    def torch_forward(self):
        with torch.no_grad():
            return self.module(self.x_t)

    def torch_train(self):
        B, _, _, H = self.shape
        dtype = self.x_t.dtype
        self.module.zero_grad(set_to_none=True)
        x = self.x_t.detach().requires_grad_(True)
        h0 = torch.zeros((1, B, H), dtype=dtype, requires_grad=True)
        c0 = torch.zeros((1, B, H), dtype=dtype, requires_grad=True)
        y, _ = self.module(x, (h0, c0))
        y.backward(self.dy_t)
        return y, x, h0, c0

    def onnx_forward(self):
        return self.session.run(None, {"X": self.x_tm})

    def check(self, tol):
        """Asserts that all systems agree; returns the largest differences seen."""
        y, h_n, c_n, _ = self.pylstm_forward()
        y_train, grads = self.pylstm_train()
        # The core against its plain-NumPy specification first.
        y_r, h_r, c_r, cache_r = reference.lstm_forward(
            self.x, self.kernel, self.recurrent_kernel, self.bias, training=True)
        grads_r = reference.lstm_backward(cache_r, self.dy)
        diffs = {"reference fwd+bwd": max(
            [_diff(y, y_r), _diff(h_n, h_r), _diff(c_n, c_r)]
            + [_diff(grads[k], grads_r[k]) / max(1.0, float(np.abs(grads_r[k]).max()))
               for k in ("x", "kernel", "recurrent_kernel", "bias", "h0", "c0")])}
        y_t, (h_t, c_t) = self.torch_forward()
        diffs["torch fwd"] = max(_diff(y, y_t), _diff(h_n, h_t[0]), _diff(c_n, c_t[0]))
        if self.session is not None:
            y_o, h_o, c_o = self.onnx_forward()
            diffs["onnxruntime fwd"] = max(_diff(y, y_o[:, 0].transpose(1, 0, 2)),
                                           _diff(h_n, h_o[0]), _diff(c_n, c_o[0]))
        y_t, x_t, h0_t, c0_t = self.torch_train()
        m = self.module
        pairs = [
            (y_train, y_t.detach()),
            (grads["x"], x_t.grad),
            (grads["kernel"], m.weight_ih_l0.grad.T),
            (grads["recurrent_kernel"], m.weight_hh_l0.grad.T),
            (grads["bias"], m.bias_ih_l0.grad),
            (grads["bias"], m.bias_hh_l0.grad),
            (grads["h0"], h0_t.grad[0]),
            (grads["c0"], c0_t.grad[0]),
        ]
        # Gradients are sums over up to B*T terms: compare relative to their magnitude.
        diffs["torch fwd+bwd"] = max(
            _diff(a, b) / max(1.0, float(np.abs(b.numpy()).max())) for a, b in pairs)
        for name, diff in diffs.items():
            if not diff < tol:
                raise AssertionError(f"{self.shape}: pylstm vs {name} max abs difference "
                                     f"{diff:.3g} >= {tol:g}")
        return diffs


def _diff(a, b):
    b = b.numpy() if isinstance(b, torch.Tensor) else b
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).max())


def median_ms(fn, budget_s):
    """Median wall time of `fn()` in ms: one warm-up call, then about `budget_s` of repeats
    (3 at least, 200 at most)."""
    time.sleep(IDLE_S)
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    repeats = int(min(200, max(3, budget_s / max(first, 1e-6))))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def machine_report(threads):
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    lines = [
        f"- CPU: {cpu}; {os.cpu_count()} logical cores, {usable} usable by this process",
        f"- Python {platform.python_version()} on {platform.system()} {platform.machine()}",
        f"- pylstm {pylstm.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"torch {torch.__version__}"
        + (f", onnxruntime {onnxruntime.__version__}" if onnxruntime else ", no onnxruntime"),
        f"- threads per system: {threads}",
        "- load average (1, 5, 15 min) at the end: "
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


def shape_label(B, T, D, H):
    return f"B={B} T={T} D={D} H={H}"


def run(grid, dtype, threads, budget_s, use_onnx):
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    forward_rows, train_rows = [], []
    for B, T, D, H in grid:
        print(f"{shape_label(B, T, D, H)} ...", file=sys.stderr, flush=True)
        problem = Problem(B, T, D, H, dtype, threads, use_onnx, rng)
        diffs = problem.check(TOLERANCE[dtype])
        print("  max differences: " + ", ".join(f"{k} {v:.2g}" for k, v in diffs.items()),
              file=sys.stderr, flush=True)
        gflop = 2 * B * T * (D + H) * 4 * H / 1e9
        py_f = median_ms(problem.pylstm_forward, budget_s)
        th_f = median_ms(problem.torch_forward, budget_s)
        ort_f = median_ms(problem.onnx_forward, budget_s) if problem.session else None
        py_t = median_ms(problem.pylstm_train, budget_s)
        th_t = median_ms(problem.torch_train, budget_s)
        forward_rows.append((shape_label(B, T, D, H), gflop, py_f, th_f, ort_f))
        train_rows.append((shape_label(B, T, D, H), 3 * gflop, py_t, th_t))
    return forward_rows, train_rows


def markdown(forward_rows, train_rows):
    out = ["### Forward (inference, return_sequences=True)", "",
           "| shape | GFLOP | pylstm ms | pylstm GFLOP/s | torch ms | pylstm/torch "
           "| onnxruntime ms | pylstm/onnxruntime |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, gflop, py, th, ort in forward_rows:
        ort_cells = f"{ort:.3f} | {py / ort:.2f}" if ort is not None else "- | -"
        out.append(f"| {label} | {gflop:.4g} | {py:.3f} | {gflop / py * 1e3:.1f} | {th:.3f} "
                   f"| {py / th:.2f} | {ort_cells} |")
    out += ["", "### Forward + backward (training step, loss = sum of outputs)", "",
            "| shape | GFLOP | pylstm ms | pylstm GFLOP/s | torch ms | pylstm/torch |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for label, gflop, py, th in train_rows:
        out.append(f"| {label} | {gflop:.4g} | {py:.3f} | {gflop / py * 1e3:.1f} | {th:.3f} "
                   f"| {py / th:.2f} |")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three small shapes only")
    parser.add_argument("--dtype", choices=sorted(TOLERANCE), default="float32")
    parser.add_argument("--threads", type=int, default=2, help="threads for every system")
    parser.add_argument("--budget", type=float, default=0.5,
                        help="seconds of repeats per measurement (default 0.5)")
    parser.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime")
    args = parser.parse_args(argv)

    use_onnx = onnxruntime is not None and not args.no_onnx
    grid = QUICK_GRID if args.quick else FULL_GRID
    start = time.perf_counter()
    if threadpool_limits is not None:
        with threadpool_limits(limits=args.threads, user_api="blas"):
            forward_rows, train_rows = run(grid, args.dtype, args.threads, args.budget, use_onnx)
    else:
        forward_rows, train_rows = run(grid, args.dtype, args.threads, args.budget, use_onnx)
    print(f"## pylstm vs PyTorch{' vs ONNX Runtime' if use_onnx else ''}, {args.dtype}, "
          f"batch-major input\n")
    print(machine_report(args.threads) + "\n")
    print(markdown(forward_rows, train_rows))
    print(f"\nAll outputs and gradients agreed within {TOLERANCE[args.dtype]:g} before timing. "
          f"Total run time {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
