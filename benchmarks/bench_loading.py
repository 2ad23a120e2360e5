"""Load time and peak memory of model files: a large valid model, and a small file whose config
declares a large model (what a loader may spend before the file's weights are checked).

Each load runs in a fresh child process (its peak RSS is the child's `ru_maxrss`, imports
included, from Linux's VmHWM; the `import` row is that baseline). Medians of `--repeats` loads.

    python -P benchmarks/bench_loading.py [--repeats 5] [--units 1024]

Legend: D input features, H units.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
import pylstm.models
path, fn = sys.argv[1], sys.argv[2]
t = time.perf_counter()
error = None
if fn != "import":
    try:
        getattr(pylstm.models, fn)(path)
    except ValueError as e:
        error = str(e)[:120]
seconds = time.perf_counter() - t
# VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's peak
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"s": seconds, "error": error, "rss_mib": int(hwm.split()[1]) / 1024}))
"""


def _child(path, fn):
    out = subprocess.run([sys.executable, "-P", "-c", CHILD, path, fn], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def _files(folder, units):
    import numpy as np

    from pylstm.layers import LSTM, Dense, Input
    from pylstm.models import Sequential

    D = units // 2
    model = Sequential([Input((20, D)), LSTM(units), Dense(10)])
    model.compile(optimizer="adam", loss="mse")
    model.train_on_batch(np.zeros((2, 20, D), "float32"), np.zeros((2, 10), "float32"))
    files = {}
    for ext in ("pylstm", "keras"):
        files[f"LSTM({units}) D={D} + Dense, Adam state (.{ext})"] = (
            os.path.join(folder, f"big.{ext}"))
        model.save(files[f"LSTM({units}) D={D} + Dense, Adam state (.{ext})"])
    # A small file declaring a large model: LSTM(4000) on 4000 features.
    small = Sequential([Input((5, 3)), LSTM(4), Dense(1)])
    config = small.get_config()
    config["layers"][1]["config"]["units"] = 4000
    config["build_input_shape"] = [None, 5, 4000]
    # The file holds LSTM(4)'s weights, so the load ends in a ValueError once they are read.
    from pylstm.models.saving import FORMAT, FORMAT_VERSION

    path = os.path.join(folder, "units4000.pylstm")
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": config,
              "compile_config": None}
    with open(path, "wb") as f:
        np.savez(f, **{"config.json": np.frombuffer(json.dumps(header).encode(), np.uint8)},
                 **{f"weight_{i:04d}": w for i, w in enumerate(small.get_weights())})
    files["units=4000 in a small file (.pylstm)"] = path
    return files


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--units", type=int, default=1024)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = [("import", _child("", "import"), 0)]
        for label, path in _files(folder, args.units).items():
            fn = "load_keras" if path.endswith(".keras") else "load_model"
            runs = [_child(path, fn) for _ in range(args.repeats)]
            rows.append((label, runs, os.path.getsize(path)))
        print(f"{'file':48s} {'size':>10s} {'load (median)':>14s} {'peak RSS':>10s}  outcome")
        for label, runs, size in rows:
            runs = runs if isinstance(runs, list) else [runs]
            s = statistics.median(r["s"] for r in runs)
            rss = statistics.median(r["rss_mib"] for r in runs)
            outcome = runs[0]["error"] or ("loaded" if size else "-")
            print(f"{label:48s} {size / 2**20:8.2f} MiB {s * 1e3:11.1f} ms {rss:7.0f} MiB  "
                  f"{outcome}")


if __name__ == "__main__":
    main()
