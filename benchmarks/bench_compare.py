"""Two builds of pylstm side by side: bench_lstm's pylstm cells, interleaved, in child processes.

Usage (each tree a source tree with its compiled extensions built in place):

    python benchmarks/bench_compare.py --base /path/to/old/tree --new /path/to/new/tree
        [--quick] [--dtype float32|float64] [--rounds 5] [--threads 2] [--budget 0.3]

A change that should leave speed alone is checked by timing the build before it and the build
after it on the same machine at the same time: timings on a shared machine drift by more than
the differences looked for, so the two builds alternate cell by cell, and each cell is read as
a ratio of medians.

Each round starts one child process per build (`python -P`, `PYTHONPATH` set to that tree
alone; a child stops unless `pylstm` and its compiled core come from the tree it was given).
For each case of bench_lstm's grid (`_common.FULL_GRID`, or `QUICK_GRID` with `--quick`), both
children set up the same data (bench_lstm's `Problem`, seeded by the case), then time each
cell in turn, one build right after the other, base first or new first alternately: pylstm's
forward (inference) and training step (forward + backward) on every shape, and
`LSTMStepper.step` on the one-step shape, each with `_common.measure` (a warm-up call, then
about `--budget` seconds of calls, median). In the first round each child also runs
bench_lstm's correctness check (pylstm against its NumPy reference and PyTorch), and every
round it hashes the outputs and gradients of each cell, so that the table can say whether both
builds computed the same bits.

The table gives, per cell, the median over rounds of each build's per-round median, its
spread over rounds ((max - min) / median), new / base of those medians, and new / base of
each build's fastest round (on a machine that other work disturbs now and then, the round
least disturbed). Both builds run this directory's benchmark code, so only the package
differs.
"""

import argparse
import datetime
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import FULL_GRID, QUICK_GRID, fmt_time  # noqa: E402

CELLS = ("forward", "train", "step")


def cpu_model():
    """The CPU's model name, as `lscpu` reports it, and the logical core count."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        name = "unknown"
    return f"{name}, {os.cpu_count()} logical cores"


def _digest(arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(np.asarray(a)).tobytes())
    return h.hexdigest()[:16]


def _cell_outputs(problem, cell):
    """The arrays one call of a cell returns, in a fixed order (for the bits digest)."""
    if cell == "forward":
        return list(problem.pylstm_forward())
    if cell == "train":
        y, grads = problem.pylstm_train()
        return [y] + [grads[k] for k in sorted(grads) if grads[k] is not None]
    problem.step_state.reset()
    y = problem.pylstm_step()[0]
    out = [y.copy()]
    problem.step_state.reset()
    return out


def child(args):
    """Serves one build: reads requests from stdin, one JSON object a line, and answers each on
    stdout. `{"op": "case", "index": i}` sets up case i of the grid (and checks it with
    `--check`) and answers `{cell: digest of its outputs}`; `{"op": "time", "cell": name}`
    answers the cell's median wall time in seconds."""
    import importlib.machinery

    import bench_lstm
    from _common import measure
    tree = os.path.realpath(args.tree) + os.sep
    loaded = [m for name, m in sys.modules.items()
              if name.split(".")[0] == "pylstm" and getattr(m, "__file__", None)]
    compiled = [m for m in loaded
                if m.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))]
    if not compiled:
        sys.exit("bench_compare: no compiled module of pylstm was loaded")
    for module in loaded:
        if not os.path.realpath(module.__file__).startswith(tree):
            sys.exit(f"bench_compare: {module.__name__} came from {module.__file__}, "
                     f"not from {tree}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        threadpool_limits(limits=args.threads, user_api="blas")
    bench_lstm.torch.set_num_threads(args.threads)
    # Answers go to the original stdout; anything a library prints goes to stderr.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    grid = QUICK_GRID if args.quick else FULL_GRID
    problem, fns = None, {}
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "case":
            problem = fns = None
            case = grid[request["index"]]
            # Seeded by the case, so both builds get the same data whatever ran before.
            problem = bench_lstm.Problem(case, args.dtype, args.threads, False, False,
                                         np.random.default_rng(request["index"]))
            if args.check:
                problem.check(bench_lstm.TOLERANCE[args.dtype],
                              bench_lstm.KERAS_TOLERANCE[args.dtype])
            fns = {"forward": problem.pylstm_forward, "train": problem.pylstm_train}
            if case.kind == "step":
                fns["step"] = problem.pylstm_step
            answer = {cell: _digest(_cell_outputs(problem, cell)) for cell in fns}
        else:
            answer = measure(fns[request["cell"]], args.budget, spin_probes=0).wall
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


class Build:
    """One build's child process (`child`), started with `PYTHONPATH` set to its tree alone."""

    def __init__(self, tree, args, check):
        cmd = [sys.executable, "-P", os.path.abspath(__file__), "--child", "--tree", tree,
               "--dtype", args.dtype, "--threads", str(args.threads),
               "--budget", str(args.budget)]
        cmd += ["--quick"] if args.quick else []
        cmd += ["--check"] if check else []
        self.process = subprocess.Popen(
            cmd, env=dict(os.environ, PYTHONPATH=os.path.realpath(tree)), text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=tempfile.gettempdir())

    def ask(self, request):
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"bench_compare: the child {self.process.args[4:6]} stopped "
                               f"(exit status {self.process.wait()}); its error is above")
        return json.loads(line)

    def close(self):
        self.process.stdin.close()
        self.process.wait()


def compare(args):
    """Runs the rounds; returns `{build: {label: {cell: [(seconds, digest), ...]}}}`."""
    trees = {"base": args.base, "new": args.new}
    grid = QUICK_GRID if args.quick else FULL_GRID
    samples = {name: {} for name in trees}
    for r in range(args.rounds):
        builds = {name: Build(tree, args, r == 0 and not args.no_check)
                  for name, tree in trees.items()}
        try:
            for i, case in enumerate(grid):
                print(f"round {r + 1}/{args.rounds}: {case.label}", file=sys.stderr, flush=True)
                digests = {name: build.ask({"op": "case", "index": i})
                           for name, build in builds.items()}
                for k, cell in enumerate(digests["base"]):
                    order = ("base", "new") if (r + k) % 2 == 0 else ("new", "base")
                    for name in order:
                        wall = builds[name].ask({"op": "time", "cell": cell})
                        samples[name].setdefault(case.label, {}).setdefault(cell, []).append(
                            (wall, digests[name][cell]))
        finally:
            for build in builds.values():
                build.close()
    return samples


def markdown(samples, args, started, finished):
    grid = QUICK_GRID if args.quick else FULL_GRID
    out = [f"## {args.new} against {args.base}, {args.dtype}",
           "",
           f"Command: `python benchmarks/bench_compare.py {' '.join(args.argv)}`",
           "",
           f"- CPU: {cpu_model()}",
           f"- date: {started:%Y-%m-%d %H:%M} to {finished:%H:%M} UTC; load average at the end: "
           + ", ".join(f"{v:.2f}" for v in os.getloadavg()),
           "- PYLSTM_CPU_LEVEL: " + os.environ.get("PYLSTM_CPU_LEVEL", "unset (each build's "
                                                   "highest level)"),
           f"- {args.rounds} rounds, the builds alternating cell by cell; threads "
           f"{args.threads}, about {args.budget} s of calls per cell and round",
           "",
           "| shape | cell | base | new | base spread | new spread | new / base "
           "| new / base, best rounds | same bits |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: |"]
    ratios = []
    for case in grid:
        for cell in CELLS:
            if cell not in samples["base"].get(case.label, {}):
                continue
            base = samples["base"][case.label][cell]
            new = samples["new"][case.label][cell]
            mb = statistics.median(s[0] for s in base)
            mn = statistics.median(s[0] for s in new)
            ratios.append(mn / mb)
            same = {s[1] for s in base} == {s[1] for s in new} and len({s[1] for s in base}) == 1
            spread = [f"{(max(s[0] for s in v) - min(s[0] for s in v)) / m:.0%}"
                      for v, m in ((base, mb), (new, mn))]
            best = min(s[0] for s in new) / min(s[0] for s in base)
            out.append(f"| {case.label} | {cell} | {fmt_time(mb)} | {fmt_time(mn)} "
                       f"| {spread[0]} | {spread[1]} | {mn / mb:.3f} | {best:.3f} "
                       f"| {'yes' if same else 'no'} |")
    out += ["", f"new / base over all cells: {min(ratios):.3f} to {max(ratios):.3f} "
                f"(median {statistics.median(ratios):.3f})."]
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="source tree of the reference build")
    parser.add_argument("--new", help="source tree of the build under test")
    parser.add_argument("--quick", action="store_true", help="bench_lstm's quick grid")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of both builds (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    parser.add_argument("--budget", type=float, default=0.3,
                        help="seconds of calls per cell and round (default 0.3)")
    parser.add_argument("--no-check", action="store_true",
                        help="skip the correctness check of the first round")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--check", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return
    if not args.base or not args.new:
        parser.error("--base and --new are required")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    args.argv = sys.argv[1:] if argv is None else argv
    started = datetime.datetime.now(datetime.timezone.utc)
    samples = compare(args)
    print(markdown(samples, args, started, datetime.datetime.now(datetime.timezone.utc)))


if __name__ == "__main__":
    main()
