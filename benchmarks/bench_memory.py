"""Peak memory of a training step and of inference: pylstm against PyTorch, each measurement in
a fresh process.

Usage (from the repository root, with the extension built in place or the package installed):

    python benchmarks/bench_memory.py [--quick] [--threads 2] [--dtype float32]

For every case of issue 5's grid (`_common.FULL_GRID`; B batch, T timesteps, D input
features, H units) and each of pylstm and PyTorch, a child process imports only its system,
creates the weights, the input `(B, T, D)` and `dy = ones`, runs one tiny call (B=1, T=1) so
that thread pools and lazy initialization are not counted, resets the kernel's peak-RSS mark
to the current resident set size (the baseline; `/proc/self/clear_refs`), runs one call, and
reports how far the peak (`VmHWM` in /proc/self/status) rose over the baseline. Without
/proc the fallback is `resource.getrusage(RUSAGE_SELF).ru_maxrss`, which Linux carries over
fork and exec from the parent, so that it under-reports under a large parent:

- train: forward + backward with loss = sum of outputs (pylstm `ops.lstm_forward(training=True)`
  + `ops.lstm_backward`, or `pylstm.nn.LSTM(num_layers=2, bidirectional=True)` and its
  `backward`; PyTorch autograd with the input requiring grad);
- inference: the forward pass alone (pylstm `training=False` / `eval()`, PyTorch under
  `torch.no_grad()`). pylstm keeps no per-timestep cache at inference and runs the sequence
  in time chunks, so this should stay near the output's size plus about 1 MiB of chunk
  buffers.

The peak is a high-water mark of the whole process, so each (system, case, mode) needs its own
process. The target of issue 5: pylstm's training-step peak no larger than PyTorch's.
"""

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import FULL_GRID, QUICK_GRID, Case, make_weights  # noqa: E402

MIB = 1024 * 1024


def _status_bytes(field):
    """`VmRSS` / `VmHWM` of this process from /proc/self/status, bytes; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak():
    """Resets the kernel's peak-RSS mark to the current RSS (Linux >= 4.0: "5" written to
    /proc/self/clear_refs). Returns the baseline in bytes and how the peak will be read.

    `ru_maxrss` alone cannot serve here: Linux carries it across fork and exec, so a child of
    a large parent (the benchmark holds torch, TensorFlow and ONNX Runtime) starts with the
    parent's peak and never exceeds it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_bytes("VmRSS"), "VmHWM"
    except OSError:
        hwm = _status_bytes("VmHWM")
        if hwm is not None:
            return hwm, "VmHWM"
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "ru_maxrss"


def _peak_bytes(source):
    if source == "VmHWM":
        return _status_bytes("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def child(system, mode, case, dtype, threads):
    """Runs in the child process: returns `{"delta": bytes, "baseline": bytes}`."""
    rng = np.random.default_rng(0)
    x, kernel, recurrent_kernel, bias = make_weights(case.B, case.T, case.D, case.H, dtype, rng)
    dy = np.ones((case.B, case.T, case.directions * case.H), dtype)
    tiny = np.ascontiguousarray(x[:1, :1])
    tiny_dy = np.ascontiguousarray(dy[:1, :1])
    if system == "pylstm":
        try:
            from threadpoolctl import threadpool_limits
            threadpool_limits(limits=threads, user_api="blas")
        except ImportError:
            pass
        if case.kind == "bidi":
            import pylstm.nn
            module = pylstm.nn.LSTM(case.D, case.H, num_layers=2, bidirectional=True,
                                    batch_first=True, dtype=dtype, seed=0)
            if mode == "train":
                def call(inp, grad):
                    module(inp)
                    module.backward(grad)
            else:
                module.eval()

                def call(inp, grad):
                    module(inp)
        else:
            from pylstm.ops import lstm_backward, lstm_forward

            def call(inp, grad):
                out = lstm_forward(inp, kernel, recurrent_kernel, bias, training=mode == "train")
                if mode == "train":
                    lstm_backward(out[3], grad)
    else:
        import torch
        torch.set_num_threads(threads)
        module = torch.nn.LSTM(case.D, case.H, num_layers=case.layers, batch_first=True,
                               bidirectional=case.directions == 2).to(getattr(torch, dtype))

        def call(inp, grad):
            if mode == "train":
                inp = torch.from_numpy(inp).requires_grad_(True)
                y, _ = module(inp)
                y.backward(torch.from_numpy(grad))
                module.zero_grad(set_to_none=False)
            else:
                with torch.no_grad():
                    module(torch.from_numpy(inp))
    call(tiny, tiny_dy)
    gc.collect()
    baseline, source = _reset_peak()
    call(x, dy)
    return {"delta": _peak_bytes(source) - baseline, "baseline": baseline, "source": source}


def measure_one(system, mode, case, dtype, threads):
    """Runs `child` in a fresh interpreter; returns its result dict."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", system, mode, case.kind,
           str(case.B), str(case.T), str(case.D), str(case.H), dtype, str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    if done.returncode != 0:
        raise RuntimeError(f"memory child {system} {mode} {case.label} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(grid, dtype, threads, jobs=2):
    """Returns `{(case, system, mode): bytes}` of peak growth for every case. Runs `jobs`
    children at a time: each one's peak is its own, so they do not disturb each other."""
    keys = [(case, system, mode) for case in grid for system in ("pylstm", "torch")
            for mode in ("train", "inference")]
    print(f"memory: {len(keys)} child processes, {jobs} at a time ...", file=sys.stderr,
          flush=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        deltas = pool.map(lambda k: measure_one(k[1], k[2], k[0], dtype, threads)["delta"], keys)
        return dict(zip(keys, deltas))


def markdown(results, grid, dtype="float32"):
    """The memory table: MiB of peak growth per case, system and mode."""
    item = np.dtype(dtype).itemsize
    out = ["### Peak memory (rise of the peak RSS over the RSS before the call, fresh "
           "process each)", "",
           "Target: pylstm's training step <= PyTorch's. `output`: size of the returned "
           "sequence `(B, T, dirs * H)`, for scale.", "",
           "| shape | output MiB | pylstm train MiB | torch train MiB | pylstm / torch train "
           "| met | pylstm inference MiB | torch inference MiB |",
           "| --- | ---: | ---: | ---: | ---: | :---: | ---: | ---: |"]
    for case in grid:
        out_mib = case.B * case.T * case.directions * case.H * item / MIB
        p_t, t_t = results[(case, "pylstm", "train")], results[(case, "torch", "train")]
        p_i, t_i = results[(case, "pylstm", "inference")], results[(case, "torch", "inference")]
        ratio = f"{p_t / t_t:.2f}" if t_t > 0 else "-"
        out.append(f"| {case.label} | {out_mib:.2f} | {p_t / MIB:.2f} | {t_t / MIB:.2f} | {ratio} "
                   f"| {'yes' if p_t <= t_t else 'no'} | {p_i / MIB:.2f} | {t_i / MIB:.2f} |")
    out += ["", "Resolution: the peak RSS grows by pages; growth under ~0.1 MiB reads as "
            "noise. The call runs after one tiny warm-up call (B=1, T=1)."]
    return "\n".join(out)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        system, mode, kind, B, T, D, H, dtype, threads = argv[1:]
        case = Case(kind, int(B), int(T), int(D), int(H))
        print(json.dumps(child(system, mode, case, dtype, int(threads))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the quick grid")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--threads", type=int, default=2, help="threads inside each child")
    parser.add_argument("--jobs", type=int, default=2, help="children run at a time")
    args = parser.parse_args(argv)
    grid = QUICK_GRID if args.quick else FULL_GRID
    print(markdown(run(grid, args.dtype, args.threads, args.jobs), grid, args.dtype))


if __name__ == "__main__":
    main()
