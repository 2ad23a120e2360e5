"""Plots `bench_lstm.py --json` results: pylstm against PyTorch and ONNX Runtime, per shape.

Usage (from the repository root):

    python benchmarks/bench_lstm.py --json benchmarks/results/bench_lstm.json
    python benchmarks/plot_benchmarks.py [benchmarks/results/bench_lstm.json]
        [--output docs/_static/benchmarks.png]

The figure has two rows, the forward pass (inference over the whole sequence) and the
training step (forward + backward), and two columns: the median wall time per call of every
system on a log scale, and pylstm's time divided by each peer's, also on a log scale and
written on each bar (below 1: pylstm is faster).
Keras appears where the run timed it. The title gives the machine, threads and date of the
run, so a figure is never read apart from where its numbers came from.

Legend: B batch, T timesteps, D input features, H units.
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RESULTS = os.path.join(ROOT, "benchmarks", "results", "bench_lstm.json")
DEFAULT_OUTPUT = os.path.join(ROOT, "docs", "_static", "benchmarks.png")
SYSTEMS = {"pylstm": ("pylstm", "tab:red"), "torch": ("PyTorch", "tab:blue"),
           "onnxruntime": ("ONNX Runtime", "tab:green"), "keras": ("Keras 3", "tab:purple")}
MODES = {"forward": "Forward (inference)", "train": "Training step (forward + backward)"}


def load_results(path):
    """Reads a `bench_lstm.py --json` file.

    Returns:
        dict, the run (see `bench_lstm.json_record`).

    Raises:
        ValueError: if the file is not such a record (no "cases", or a case without
            pylstm's forward and training times).
    """
    with open(path) as f:
        record = json.load(f)
    cases = record.get("cases") if isinstance(record, dict) else None
    if not cases or any("pylstm" not in case.get(mode, {}) for case in cases for mode in MODES):
        raise ValueError(f"{path} is not the output of `bench_lstm.py --json`: expected a "
                         f"'cases' list with pylstm's forward and train timings.")
    return record


def plot(record, path):
    """Draws the 2 x 2 figure of `record` into the PNG `path` (its folder is created)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib import ticker

    cases = record["cases"]
    labels = [case["label"].replace(": ", ":\n").replace(" T=", "\nT=") for case in cases]
    x = np.arange(len(cases))
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    for row, (mode, title) in enumerate(MODES.items()):
        present = [s for s in SYSTEMS if any(s in case[mode] for case in cases)]
        width = 0.8 / len(present)
        times, ratios = axes[row]
        for k, system in enumerate(present):
            name, color = SYSTEMS[system]
            walls = [case[mode][system]["wall"] if system in case[mode] else np.nan
                     for case in cases]
            times.bar(x + (k - (len(present) - 1) / 2) * width, np.array(walls) * 1e3, width,
                      label=name, color=color)
        times.set_yscale("log")
        times.set_ylabel("median time per call (ms, log scale)")
        times.set_title(title)
        peers = [s for s in present if s != "pylstm"]
        width = 0.8 / max(len(peers), 1)
        for k, system in enumerate(peers):
            name, color = SYSTEMS[system]
            ratio = [case[mode]["pylstm"]["wall"] / case[mode][system]["wall"]
                     if system in case[mode] else np.nan for case in cases]
            offset = x + (k - (len(peers) - 1) / 2) * width
            ratios.bar(offset, ratio, width, label=f"pylstm / {name}", color=color)
            for xi, value in zip(offset, ratio):
                if np.isfinite(value):
                    ratios.annotate(f"{value:.2f}", (xi, value), ha="center", va="bottom",
                                    fontsize=7)
        ratios.axhline(1.0, color="black", lw=0.8)
        ratios.set_yscale("log")
        ratios.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ratios.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ratios.yaxis.set_minor_formatter(ticker.NullFormatter())
        ratios.set_ylabel("pylstm time / peer time (log; below 1: pylstm faster)")
        ratios.set_title(f"{title}: ratio")
        for ax in (times, ratios):
            ax.set_xticks(x, labels, fontsize=7.5)
            ax.legend(fontsize=8)
    cpu = record.get("machine", {}).get("cpu", {})
    fig.suptitle(f"pylstm vs PyTorch and ONNX Runtime, {record.get('dtype', '?')}, "
                 f"{record.get('threads', '?')} threads, {cpu.get('model_name', 'unknown CPU')} "
                 f"({record.get('machine', {}).get('logical_cores', '?')} cores), "
                 f"{record.get('date', 'undated')[:10]}")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default=DEFAULT_RESULTS,
                        help="the JSON file of `bench_lstm.py --json` (default: %(default)s)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT,
                        help="the PNG to write (default: %(default)s)")
    args = parser.parse_args(argv)
    plot(load_results(args.results), args.output)
    print(f"Wrote {args.output}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
