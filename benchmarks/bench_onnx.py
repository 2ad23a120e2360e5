"""Issue-18 benchmark: ONNX both ways, pylstm against ONNX Runtime on the same file, in one
process.

Usage (from the repository root, with the package installed or the extension built in
place):

    python benchmarks/bench_onnx.py [--quick] [--threads 2] [--budget 0.5]
        [--cold [--pauses 0.05,0.15]]

The grid is `bench_lstm.py`'s (`_common.FULL_GRID`, `--quick`: `QUICK_GRID`; B batch, T
timesteps, D input features, H units), float32 (ONNX Runtime's CPU LSTM has no float64
kernel). Every shape holds one set of weights, taken as in `bench_lstm.py`: `make_weights`
for the one-layer shapes (PyTorch's `torch.nn.LSTM` loaded with them), PyTorch's own
initialisation for the 2-layer bidirectional stack. Two comparisons:

- **export**: a pylstm `Sequential([Input((None, D)), LSTM(H, return_sequences=True)])`
  (`Bidirectional(LSTM(...))` twice for the 2-layer shape) holding those weights, written by
  `pylstm.onnx.export`; ONNX Runtime runs that file (`InferenceSession.run`) against pylstm
  running the model (`model.predict_on_batch(x)`).
- **import**: the `torch.nn.LSTM` (batch first, outputs at every step) written by
  `torch.onnx.export` (opset 17, dynamic batch and time); pylstm runs the file
  (`pylstm.onnx.load(path).run`, its LSTM nodes on pylstm's compiled core) against ONNX
  Runtime running the same file.

Before timing a shape it checks that all four agree with PyTorch's output (max abs difference
< 1e-4), and stops if one does not. Every input is batch-major `(B, T, D)`, the layout of
both files. Timings are medians after a warm-up (`_common.measure`, about `--budget` seconds,
at least 5 calls), back to back; with `--cold`, also each call right after a
`time.sleep(pause)` for each pause of `--pauses` (`_common.measure_cold`), every system alike.

Threads: `--threads` for every system: `pylstm.set_num_threads`, ONNX Runtime's
`intra_op_num_threads` (`inter_op_num_threads` 1, sequential execution), PyTorch's
`torch.set_num_threads` (used only to write and check), and the BLAS that NumPy and SciPy call
(threadpoolctl), which the non-LSTM nodes of an imported graph use.
"""

import argparse
import io
import os
import sys
import tempfile
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (FULL_GRID, QUICK_GRID, fmt_time, make_weights, measure,  # noqa: E402
                     measure_cold)
from bench_lstm import (_diff, _pauses, machine_report, pylstm_threads,  # noqa: E402
                        threadpool_limits, torch, torch_lstm)

import pylstm  # noqa: E402
import pylstm.onnx  # noqa: E402
from pylstm.layers import LSTM, Bidirectional, Input  # noqa: E402
from pylstm.models import Sequential  # noqa: E402

try:
    import onnxruntime
except ImportError:
    sys.exit("This benchmark needs onnx and onnxruntime (pip install pylstm[onnx] "
             "onnxruntime).")

DTYPE = "float32"
TOLERANCE = 1e-4
SYSTEMS = {"export": ("pylstm model", "ONNX Runtime"),
           "import": ("pylstm OnnxModel", "ONNX Runtime")}


def pylstm_model(case, module, kernel, recurrent_kernel, bias):
    """The pylstm `Sequential` of `case` holding `module`'s weights (one-layer shapes: the
    Keras-layout arrays it was loaded with; the 2-layer stack: `W_ih^T`, `W_hh^T`,
    `b_ih + b_hh` per layer and direction)."""
    model = Sequential([Input((None, case.D), dtype=DTYPE)])
    if case.kind != "bidi":
        model.add(LSTM(case.H, return_sequences=True, dtype=DTYPE))
        model.layers[-1].set_weights([kernel, recurrent_kernel, bias])
        return model
    state = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    for layer in range(case.layers):
        model.add(Bidirectional(LSTM(case.H, return_sequences=True, dtype=DTYPE)))
        weights = []
        for suffix in ("", "_reverse"):
            weights += [state[f"weight_ih_l{layer}{suffix}"].T,
                        state[f"weight_hh_l{layer}{suffix}"].T,
                        state[f"bias_ih_l{layer}{suffix}"] + state[f"bias_hh_l{layer}{suffix}"]]
        model.layers[-1].set_weights(weights)
    return model


class _Sequence(torch.nn.Module):
    """The LSTM's output at every step alone: the graph `torch.onnx.export` writes for it."""

    def __init__(self, lstm):
        super().__init__()
        self.lstm = lstm

    def forward(self, x):
        return self.lstm(x)[0]


def torch_export(module, x, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Sequence(module).eval(), (torch.from_numpy(x),), path,
                          input_names=["x"], output_names=["y"], dynamo=False,
                          dynamic_axes={"x": {0: "batch", 1: "time"}}, opset_version=17)


def ort_session(path, threads):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


class Problem:
    """One shape: the weights, the two files, and the four callables timed."""

    def __init__(self, case, threads, folder, rng):
        self.case = case
        self.x, kernel, recurrent_kernel, bias = make_weights(case.B, case.T, case.D, case.H,
                                                              DTYPE, rng)
        if case.kind == "bidi":
            self.module = torch_lstm(case, DTYPE)
        else:
            self.module = torch_lstm(case, DTYPE, kernel, recurrent_kernel, bias)
        self.module.eval()
        self.model = pylstm_model(case, self.module, kernel, recurrent_kernel, bias)
        exported = os.path.join(folder, "pylstm_export.onnx")
        pylstm.onnx.export(self.model, exported)
        self.exported = ort_session(exported, threads)
        imported = os.path.join(folder, "torch_export.onnx")
        torch_export(self.module, self.x, imported)
        with open(imported, "rb") as f:
            self.onnx_model = pylstm.onnx.load(f.read())
        self.imported = ort_session(imported, threads)

    def calls(self):
        """`{comparison: {system: callable}}` in `SYSTEMS`' order."""
        x = self.x
        return {"export": {"pylstm model": lambda: self.model.predict_on_batch(x),
                           "ONNX Runtime": lambda: self.exported.run(None, {"input": x})[0]},
                "import": {"pylstm OnnxModel": lambda: self.onnx_model.run(None, {"x": x})[0],
                           "ONNX Runtime": lambda: self.imported.run(None, {"x": x})[0]}}

    def check(self):
        """Asserts that every callable gives PyTorch's output; returns the differences."""
        with torch.no_grad():
            expected = self.module(torch.from_numpy(self.x))[0].numpy()
        diffs = {}
        for comparison, systems in self.calls().items():
            for system, call in systems.items():
                diffs[f"{comparison}: {system}"] = _diff(call(), expected)
        bad = {k: v for k, v in diffs.items() if not v < TOLERANCE}
        if bad:
            raise AssertionError(f"{self.case.label}: max abs difference from PyTorch >= "
                                 f"{TOLERANCE:g}: {bad}")
        return diffs


def run(grid, threads, budget_s, pauses=()):
    """Checks then times every shape; returns one dict per shape: the back-to-back `Timing`s
    and, for each pause, the `ColdTiming`s, by comparison and system."""
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    results = []
    for case in grid:
        print(f"{case.label} ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as folder:
            problem = Problem(case, threads, folder, rng)
            diffs = problem.check()
        print("  max differences from torch: "
              + ", ".join(f"{k} {v:.2g}" for k, v in diffs.items()), file=sys.stderr,
              flush=True)
        warm, cold = {}, {pause: {} for pause in pauses}
        for comparison, systems in problem.calls().items():
            warm[comparison] = {s: measure(call, budget_s, spin_probes=0)
                                for s, call in systems.items()}
            for pause in pauses:
                cold[pause][comparison] = {s: measure_cold(call, pause, budget_s)
                                           for s, call in systems.items()}
        results.append(dict(case=case, warm=warm, cold=cold))
        del problem
    return results


def markdown(results, pauses):
    """One table per comparison: each system's median, the ratio, and the same after each
    pause."""
    out = []
    titles = {"export": "Export: pylstm running a model against ONNX Runtime running the "
                        "file `pylstm.onnx.export` writes for it",
              "import": "Import: pylstm running the file `torch.onnx.export` writes "
                        "(`pylstm.onnx.load`) against ONNX Runtime running it"}
    for comparison, (ours, peer) in SYSTEMS.items():
        head = ["shape", ours, peer, f"{ours} / {peer}"]
        for pause in pauses:
            after = f"after {pause * 1e3:g} ms:"
            head += [f"{after} {ours}", f"{after} {peer}", f"{after} ratio"]
        out += [f"### {titles[comparison]}", "",
                "| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
        for r in results:
            warm = r["warm"][comparison]
            cells = [r["case"].label, fmt_time(warm[ours].wall), fmt_time(warm[peer].wall),
                     f"{warm[ours].wall / warm[peer].wall:.2f}"]
            for pause in pauses:
                cold = r["cold"][pause][comparison]
                cells += [fmt_time(cold[ours].wall), fmt_time(cold[peer].wall),
                          f"{cold[ours].wall / cold[peer].wall:.2f}"]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="bench_lstm's four small cases")
    parser.add_argument("--threads", type=int, default=2, help="threads for every system")
    parser.add_argument("--budget", type=float, default=0.5,
                        help="seconds of repeats per measurement (default 0.5)")
    parser.add_argument("--cold", action="store_true",
                        help="also time calls that each follow a pause")
    parser.add_argument("--pauses", type=_pauses, default=(0.05, 0.15),
                        help="with --cold: the pauses, comma-separated seconds "
                             "(default 0.05,0.15)")
    args = parser.parse_args(argv)
    pauses = args.pauses if args.cold else ()
    start = time.perf_counter()
    load_before = os.getloadavg()
    limits = (threadpool_limits(limits=args.threads, user_api="blas")
              if threadpool_limits is not None else None)
    with pylstm_threads(args.threads):
        results = run(QUICK_GRID if args.quick else FULL_GRID, args.threads, args.budget,
                      pauses)
    if limits is not None:
        limits.unregister()
    used = sys.argv[1:] if argv is None else argv
    print(f"## pylstm vs ONNX Runtime on ONNX files, {DTYPE}, batch-major input\n")
    print(f"Command: `python benchmarks/bench_onnx.py {' '.join(used)}`\n")
    print(machine_report(args.threads))
    print("- load average before the run: " + ", ".join(f"{v:.2f}" for v in load_before)
          + "\n")
    print("Median wall time per call, back to back"
          + (" and after each pause (`--cold`)" if pauses else "")
          + "; a ratio above 1 means pylstm is slower.\n")
    print(markdown(results, pauses))
    print(f"All outputs agreed with PyTorch's within {TOLERANCE:g} before timing. Total run "
          f"time {time.perf_counter() - start:.0f} s.")


if __name__ == "__main__":
    main()
