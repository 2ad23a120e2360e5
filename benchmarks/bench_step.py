"""Per-step latency of streaming LSTM inference at batch 1: pylstm, PyTorch, ONNX Runtime.

Usage (from the repository root, with the extensions built in place or the package installed):

    python benchmarks/bench_step.py [--sizes 64 128 256 512] [--threads 1] [--dtype float32]

An application that receives one timestep at a time calls the LSTM once per step and carries
the state itself. For each hidden size H (input size D = H, batch 1) this times one such call
from Python:

- pylstm: `LSTMStepper.step(x_t, state, out=y, new_state=state)` (weights validated once,
  nothing allocated per step); also `StepKernel.run` alone (the compiled step, without the
  Python-side checks) to show where the time goes;
- PyTorch: `torch.nn.LSTMCell` under `torch.no_grad()`, `(h, c) = cell(x_t, (h, c))`;
- ONNX Runtime: an `LSTM` node (opset 17) run on a sequence of length 1 with `initial_h` and
  `initial_c` as inputs, `Y_h` and `Y_c` fed back: `InferenceSession.run`.

Before timing, all three run the same 8 steps on the same weights and must agree within 1e-5
(float32). Every system uses `--threads` threads (`torch.set_num_threads`, ORT
`intra_op_num_threads`, SciPy's BLAS through threadpoolctl). A timing is the median over
`--repeats` batches of `--calls` consecutive calls, divided by `--calls`, after a warm-up. The
"GB/s" column is pylstm's weight bytes read per step ((D + H) * 4H * itemsize) over its time:
at batch 1 a step is two matrix-vector products, bound by how fast the weights stream from
cache.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_lstm import machine_report, make_weights  # noqa: E402  (also imports torch)

import torch  # noqa: E402

from pylstm.streaming import LSTMState, LSTMStepper  # noqa: E402

try:
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper
except ImportError:
    onnx = onnxruntime = None

try:
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None

CHECK_STEPS = 8
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}


def torch_cell(kernel, recurrent_kernel, bias):
    """`torch.nn.LSTMCell` with the same weights: W_ih = kernel^T, W_hh = recurrent_kernel^T,
    b_ih = bias, b_hh = 0 (PyTorch's gate order i, f, g, o is Keras's i, f, c, o)."""
    D, G = kernel.shape
    cell = torch.nn.LSTMCell(D, G // 4).to(torch.from_numpy(kernel).dtype)
    with torch.no_grad():
        cell.weight_ih.copy_(torch.from_numpy(kernel.T.copy()))
        cell.weight_hh.copy_(torch.from_numpy(recurrent_kernel.T.copy()))
        cell.bias_ih.copy_(torch.from_numpy(bias))
        cell.bias_hh.zero_()
    return cell


def onnx_step_session(kernel, recurrent_kernel, bias, threads):
    """ONNX Runtime session of one `LSTM` node over a length-1 sequence, state in and out."""
    D, G = kernel.shape
    H = G // 4
    dtype = kernel.dtype
    order = [0, 3, 1, 2]  # Keras blocks i, f, c, o -> ONNX blocks i, o, f, c

    def reorder(w):  # (..., 4H) columns in Keras order -> (4H, ...) rows in ONNX order
        blocks = np.split(np.asarray(w).T, 4, axis=0)
        return np.ascontiguousarray(np.concatenate([blocks[k] for k in order], axis=0))

    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    graph = helper.make_graph(
        [helper.make_node("LSTM", ["X", "W", "R", "B", "", "initial_h", "initial_c"],
                          ["Y", "Y_h", "Y_c"], hidden_size=H)],
        "lstm_step",
        [helper.make_tensor_value_info("X", elem, [1, "B", D]),
         helper.make_tensor_value_info("initial_h", elem, [1, "B", H]),
         helper.make_tensor_value_info("initial_c", elem, [1, "B", H])],
        [helper.make_tensor_value_info("Y", elem, [1, 1, "B", H]),
         helper.make_tensor_value_info("Y_h", elem, [1, "B", H]),
         helper.make_tensor_value_info("Y_c", elem, [1, "B", H])],
        initializer=[
            numpy_helper.from_array(reorder(kernel)[None], "W"),            # (1, 4H, D)
            numpy_helper.from_array(reorder(recurrent_kernel)[None], "R"),  # (1, 4H, H)
            numpy_helper.from_array(
                np.concatenate([reorder(bias[None])[:, 0], np.zeros(G, dtype)])[None], "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 4
    try:
        session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                               providers=["CPUExecutionProvider"])
        zeros = np.zeros((1, 1, H), dtype)
        session.run(None, {"X": np.zeros((1, 1, D), dtype), "initial_h": zeros,
                           "initial_c": zeros})
    except Exception as error:  # ORT reports a missing kernel as a generic runtime error
        print(f"  onnxruntime unavailable for {dtype}: {str(error).splitlines()[0]}",
              file=sys.stderr)
        return None
    return session


class Systems:
    """The three systems on one hidden size: each a `step()` closure over its own state."""

    def __init__(self, H, dtype, threads, use_onnx, rng):
        xs, kernel, recurrent_kernel, bias = make_weights(1, CHECK_STEPS, H, H, dtype, rng)
        self.xs = np.ascontiguousarray(xs.transpose(1, 0, 2))  # (T, 1, D), one row per step
        self.weight_bytes = kernel.nbytes + recurrent_kernel.nbytes
        self.stepper = LSTMStepper(kernel, recurrent_kernel, bias)
        self.cell = torch_cell(kernel, recurrent_kernel, bias)
        self.session = (onnx_step_session(kernel, recurrent_kernel, bias, threads)
                        if use_onnx else None)
        self.H, self.dtype = H, dtype

    def pylstm(self):
        state = self.stepper.initial_state(1)
        y = np.empty((1, self.H), self.dtype)
        stepper = self.stepper

        def step(x_t):
            return stepper.step(x_t, state, out=y, new_state=state)[0]
        return step

    def pylstm_kernel(self):
        """The compiled step alone: what `LSTMStepper.step` adds is its Python-side checks."""
        state = self.stepper.initial_state(1)
        self.stepper.step(self.xs[0], state)  # allocates this thread's scratch
        z, m = self.stepper._local.scratch[1]
        run, h, c = self.stepper._kernel_step.run, state.h, state.c

        def step(x_t):
            run(x_t, h, c, h, c, None, z, m)
            return h
        return step

    def torch(self):
        cell = self.cell
        hc = [torch.zeros((1, self.H), dtype=cell.weight_ih.dtype)] * 2

        def step(x_t):
            with torch.no_grad():
                hc[:] = cell(torch.from_numpy(x_t), tuple(hc))
            return hc[0].numpy()
        return step

    def onnx(self):
        run = self.session.run
        feed = {"initial_h": np.zeros((1, 1, self.H), self.dtype),
                "initial_c": np.zeros((1, 1, self.H), self.dtype)}

        def step(x_t):
            feed["X"] = x_t[None]
            _, feed["initial_h"], feed["initial_c"] = run(None, feed)
            return feed["initial_h"][0]
        return step

    def check(self, tol):
        """Runs CHECK_STEPS steps on every system; returns the largest difference to pylstm."""
        steps = {"pylstm kernel": self.pylstm_kernel(), "torch": self.torch()}
        if self.session is not None:
            steps["onnxruntime"] = self.onnx()
        ours = self.pylstm()
        diffs = dict.fromkeys(steps, 0.0)
        for x_t in self.xs:
            y = ours(x_t).astype(np.float64)
            for name, step in steps.items():
                diffs[name] = max(diffs[name], float(np.abs(step(x_t) - y).max()))
        for name, diff in diffs.items():
            if not diff < tol:
                raise AssertionError(f"H={self.H}: pylstm vs {name} max abs difference "
                                     f"{diff:.3g} >= {tol:g}")
        return diffs


def median_us_per_call(step, x_t, calls, repeats):
    """Median over `repeats` batches of `calls` consecutive calls, in microseconds per call."""
    for _ in range(max(10, calls // 10)):
        step(x_t)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            step(x_t)
        times.append((time.perf_counter() - start) / calls)
    return 1e6 * statistics.median(times)


def run(sizes, dtype, threads, calls, repeats, use_onnx):
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    rows = []
    for H in sizes:
        print(f"H={H} ...", file=sys.stderr, flush=True)
        systems = Systems(H, dtype, threads, use_onnx, rng)
        diffs = systems.check(TOLERANCE[dtype])
        print("  max differences: " + ", ".join(f"{k} {v:.2g}" for k, v in diffs.items()),
              file=sys.stderr, flush=True)
        x_t = systems.xs[0]
        times = {"pylstm": median_us_per_call(systems.pylstm(), x_t, calls, repeats),
                 "kernel": median_us_per_call(systems.pylstm_kernel(), x_t, calls, repeats),
                 "torch": median_us_per_call(systems.torch(), x_t, calls, repeats)}
        if systems.session is not None:
            times["onnx"] = median_us_per_call(systems.onnx(), x_t, calls, repeats)
        times["gbs"] = systems.weight_bytes / (times["kernel"] * 1e-6) / 1e9
        rows.append((H, times))
    return rows


def markdown(rows):
    lines = ["| H (= D), B=1 | pylstm step (us) | of which compiled step (us) | GB/s | "
             "torch LSTMCell (us) | ONNX Runtime (us) | torch / pylstm | ORT / pylstm |",
             "|---|---|---|---|---|---|---|---|"]
    for H, t in rows:
        onnx_us = t.get("onnx")
        lines.append(
            f"| {H} | {t['pylstm']:.1f} | {t['kernel']:.1f} | {t['gbs']:.0f} | "
            f"{t['torch']:.1f} | " + (f"{onnx_us:.1f}" if onnx_us else "-") + " | "
            f"{t['torch'] / t['pylstm']:.2f} | "
            + (f"{onnx_us / t['pylstm']:.2f}" if onnx_us else "-") + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--dtype", choices=sorted(TOLERANCE), default="float32")
    parser.add_argument("--threads", type=int, default=1, help="threads for every system")
    parser.add_argument("--calls", type=int, default=200, help="calls per timed batch")
    parser.add_argument("--repeats", type=int, default=25, help="timed batches per system")
    parser.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime")
    args = parser.parse_args(argv)

    use_onnx = onnxruntime is not None and not args.no_onnx
    start = time.perf_counter()
    if threadpool_limits is not None:
        with threadpool_limits(limits=args.threads, user_api="blas"):
            rows = run(args.sizes, args.dtype, args.threads, args.calls, args.repeats, use_onnx)
    else:
        rows = run(args.sizes, args.dtype, args.threads, args.calls, args.repeats, use_onnx)
    print(f"## Streaming: one LSTM step per call at batch 1, {args.dtype}\n")
    print(machine_report(args.threads) + "\n")
    print(markdown(rows))
    print(f"\nAll systems agreed within {TOLERANCE[args.dtype]:g} over {CHECK_STEPS} steps "
          f"before timing. Median of {args.repeats} x {args.calls} calls. Total run time "
          f"{time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
