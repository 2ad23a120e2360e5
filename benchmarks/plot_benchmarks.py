"""Plots `bench_lstm.py` results: pylstm against PyTorch and ONNX Runtime, per shape.

Usage (from the repository root):

    python benchmarks/bench_lstm.py --json benchmarks/results/bench_lstm.json
    python benchmarks/plot_benchmarks.py [RESULTS] [--output docs/_static/benchmarks.png]

RESULTS is the JSON file of `bench_lstm.py --json`, or the Markdown report `bench_lstm.py`
prints (its "Forward" and "Training step" tables are read, times as printed, three
significant figures), so reports recorded before `--json` existed plot too. By default:
`benchmarks/results/bench_lstm.json` if it exists, else `benchmarks/results/bench_lstm.md`.

The figure has two rows, the forward pass (inference over the whole sequence) and the
training step (forward + backward), and two columns: the median wall time per call of every
system on a log scale, and pylstm's time divided by each peer's, in the peer's colour, also
on a log scale and written on each bar (below 1: pylstm is faster).
Keras appears where the run timed it. The title gives the machine, threads and date of the
run, so a figure is never read apart from where its numbers came from.

Legend: B batch, T timesteps, D input features, H units.
"""

import argparse
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
DEFAULT_RESULTS = next((path for path in (os.path.join(RESULTS, "bench_lstm.json"),
                                          os.path.join(RESULTS, "bench_lstm.md"))
                        if os.path.exists(path)), os.path.join(RESULTS, "bench_lstm.json"))
DEFAULT_OUTPUT = os.path.join(ROOT, "docs", "_static", "benchmarks.png")
SYSTEMS = {"pylstm": ("pylstm", "tab:red"), "torch": ("PyTorch", "tab:blue"),
           "onnxruntime": ("ONNX Runtime", "tab:green"), "keras": ("Keras 3", "tab:purple")}
MODES = {"forward": "Forward (inference)", "train": "Training step (forward + backward)"}
# The report's table headings of each mode, and the systems of its time columns, in order.
REPORT_TABLES = {"forward": "Forward (inference", "train": "Training step"}
REPORT_COLUMNS = ("pylstm", "torch", "onnxruntime", "keras")
UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def parse_time(text):
    """`'403 us'`, `'1.41 ms'`, `'1.08 s (tf.function)'` -> seconds; `'-'` -> None."""
    match = re.match(r"\s*([0-9.]+) (s|ms|us)\b", text)
    return float(match.group(1)) * UNITS[match.group(2)] if match else None


def parse_report(text):
    """The Markdown report of `bench_lstm.py` as a record like `json_record`'s: the command,
    dtype, threads, CPU model and core count, and per shape the forward and training wall
    times of each system (no CPU time or spinning; no date, which the report does not
    print)."""
    lines = text.splitlines()
    field = {"command": r"^Command: `(.*)`", "dtype": r"^## .*\b(float32|float64)\b",
             "threads": r"^- threads per system: (\d+)", "cpu": r"^- CPU: ([^(;]*)",
             "cores": r"(\d+) logical cores"}
    found = {}
    for key, pattern in field.items():
        match = next((m for m in map(re.compile(pattern).search, lines) if m), None)
        found[key] = match.group(1).strip() if match else None
    cases = {}
    for mode, heading in REPORT_TABLES.items():
        start = next(i for i, line in enumerate(lines)
                     if line.startswith("#") and heading in line)
        rows = [line for line in lines[start + 1:] if line.startswith("| ")]
        table = []
        for line in rows[1:]:                      # rows[0] is the header
            if line.startswith("| ---"):
                continue
            if not re.match(r"\| [^|]+ \| [0-9.e-]+ \|", line):
                break                              # the next table
            table.append(line)
        for line in table:
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            case = cases.setdefault(cells[0], {"label": cells[0], "forward": {}, "train": {}})
            for system, cell in zip(REPORT_COLUMNS, cells[2:6]):
                wall = parse_time(cell)
                if wall is not None:
                    case[mode][system] = {"wall": wall}
    return {"command": found["command"], "date": None, "dtype": found["dtype"],
            "threads": int(found["threads"]) if found["threads"] else None,
            "machine": {"cpu": {"model_name": found["cpu"]},
                        "logical_cores": int(found["cores"]) if found["cores"] else None},
            "cases": list(cases.values())}


def load_results(path):
    """Reads a `bench_lstm.py --json` file, or a Markdown report of `bench_lstm.py`.

    Returns:
        dict, the run (see `bench_lstm.json_record` and `parse_report`).

    Raises:
        ValueError: if the file is neither (no cases, or a case without pylstm's forward and
            training times).
    """
    with open(path) as f:
        text = f.read()
    try:
        record = json.loads(text) if path.endswith(".json") else parse_report(text)
    except StopIteration:
        record = None
    cases = record.get("cases") if isinstance(record, dict) else None
    if not cases or any("pylstm" not in case.get(mode, {}) for case in cases for mode in MODES):
        raise ValueError(f"{path} is not the output of `bench_lstm.py` (--json, or its "
                         f"Markdown report): expected pylstm's forward and training times "
                         f"for every shape.")
    return record


def _label(label):
    r"""`'2-layer bidi: B=32 T=100 D=64 H=128'` -> `'2-layer bidi\nB=32 T=100\nD=64 H=128'`."""
    prefix, _, shape = label.rpartition(": ")
    sizes = shape.split()
    return "\n".join(([prefix] if prefix else []) + [" ".join(sizes[:2]), " ".join(sizes[2:])])


def plot(record, path):
    """Draws the 2 x 2 figure of `record` into the PNG `path` (its folder is created). A
    `Figure` of its own, not pyplot's: the caller's backend and figures are left alone."""
    import numpy as np
    from matplotlib import ticker
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    cases = record["cases"]
    labels = [_label(case["label"]) for case in cases]
    x = np.arange(len(cases))
    fig = Figure(figsize=(15, 9))
    axes = fig.subplots(2, 2)
    for row, (mode, title) in enumerate(MODES.items()):
        present = [s for s in SYSTEMS if any(s in case[mode] for case in cases)]
        width = 0.8 / len(present)
        times, ratios = axes[row]
        for k, system in enumerate(present):
            name, color = SYSTEMS[system]
            walls = [case[mode][system]["wall"] if system in case[mode] else np.nan
                     for case in cases]
            times.bar(x + (k - (len(present) - 1) / 2) * width, np.array(walls) * 1e3, width,
                      color=color)
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
            ratios.bar(offset, ratio, width, color=color)
            for xi, value in zip(offset, ratio):
                if np.isfinite(value):
                    ratios.annotate(f"{value:.2f}", (xi, value), ha="center", va="bottom",
                                    fontsize=7)
        ratios.axhline(1.0, color="black", lw=0.8)
        ratios.set_yscale("log")
        ratios.margins(y=0.12)   # room for the numbers above the tallest bars
        ratios.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ratios.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ratios.yaxis.set_minor_formatter(ticker.NullFormatter())
        ratios.set_ylabel("pylstm time / peer time (log; below 1: pylstm faster)")
        ratios.set_title(f"{title}: ratio")
        for ax in (times, ratios):
            ax.set_xticks(x, labels, fontsize=7)
    # One legend for all panels: a ratio bar has its peer's colour.
    shown = [s for s in SYSTEMS if any(s in case[m] for case in cases for m in MODES)]
    fig.legend(handles=[Patch(color=SYSTEMS[s][1], label=SYSTEMS[s][0]) for s in shown],
               loc="upper center", bbox_to_anchor=(0.5, 0.955), ncol=len(shown))
    cpu = record.get("machine", {}).get("cpu", {})
    fig.suptitle(f"pylstm vs PyTorch and ONNX Runtime, {record.get('dtype', '?')}, "
                 f"{record.get('threads', '?')} threads, {cpu.get('model_name', 'unknown CPU')} "
                 f"({record.get('machine', {}).get('logical_cores', '?')} cores)"
                 + (f", {record['date'][:10]}" if record.get("date") else ""))
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", default=DEFAULT_RESULTS,
                        help="the JSON file of `bench_lstm.py --json` or its Markdown report "
                             "(default: %(default)s)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT,
                        help="the PNG to write (default: %(default)s)")
    args = parser.parse_args(argv)
    plot(load_results(args.results), args.output)
    print(f"Wrote {args.output}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
