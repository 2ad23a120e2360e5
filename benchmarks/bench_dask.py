"""`pylstm.dask` against one process: the throughput of batch prediction over a `dask.array`
and of a training epoch, on `LocalCluster`s of 1 and 2 worker processes (one thread each), the
scheduler's cost per block and per training step, and the scaling projected from them.

    python -P benchmarks/bench_dask.py [--quick] [--samples 20000] [--block 2000] [--repeats 5]

Before timing, each distributed result is checked against one process: the predictions bitwise
per block (`model.predict` on each block), the weights after the epoch within 1e-5. Times are
medians of `--repeats` runs.

The projection: a block (or a training step) costs its compute `c` (measured in one process,
one thread) plus the scheduler's cost `s` (measured on the cluster: the blocks' wall time on
one worker, less their compute). The scheduler handles blocks one after another while the
workers compute them side by side, so `W` workers take about `n_blocks * (s + c / W)`: the
speed-up over one process is `c / (s + c / W)`, which levels off at `c / s` workers' worth.

Legend: N samples, B batch, T timesteps, D input features, H units, W workers.
"""

import argparse
import copy
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cpu_identity, fmt_time  # noqa: E402


def _median_s(fn, repeats):
    fn()   # warm-up: the model reaches the workers, kernels and pools start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _model(args):
    import pylstm
    from pylstm.layers import LSTM, Dense, Input

    pylstm.utils.set_random_seed(0)
    model = pylstm.Sequential([Input((args.timesteps, args.features)),
                               LSTM(args.units, seed=0), Dense(1)])
    model.compile(pylstm.optimizers.Adam(1e-3), "mse")
    return model


def _one_thread(fn):
    """`fn()` with pylstm and the BLAS on one thread, as each worker's task runs."""
    import pylstm.dask

    with pylstm.dask._limited_threads(1):
        return fn()


def _projection(compute_s, overhead_s, widths=(1, 2, 4, 8, 16, 32, 64)):
    """`[(W, speed-up over one process)]` from the per-block compute and scheduler cost."""
    overhead_s = max(overhead_s, 0.0)
    return [(w, compute_s / (overhead_s + compute_s / w)) for w in widths]


def bench_predict(args, clients, x, model):
    import dask.array as da
    import pylstm.dask

    blocks = -(-len(x) // args.block)
    local = _median_s(lambda: model.predict(x, batch_size=args.batch_size, verbose=0),
                      args.repeats)
    local_1 = _one_thread(lambda: _median_s(
        lambda: model.predict(x, batch_size=args.batch_size, verbose=0), args.repeats))
    rows = [("one process", local), ("one process, 1 thread", local_1)]
    dx = da.from_array(x, chunks=(args.block, -1, -1))
    per_block = {}
    for workers, client in clients:
        y = pylstm.dask.predict(model, dx, batch_size=args.batch_size)
        out = y.compute(scheduler=client)   # the clients are not the default scheduler
        for start in range(0, len(x), args.block):
            stop = min(start + args.block, len(x))
            expected = model.predict(x[start:stop], batch_size=args.batch_size, verbose=0)
            if not np.array_equal(out[start:stop], expected):
                raise AssertionError(f"pylstm.dask.predict differs from model.predict on "
                                     f"block {start}:{stop} with {workers} workers.")
        wall = _median_s(lambda: y.compute(scheduler=client), args.repeats)
        rows.append((f"LocalCluster, {workers} worker{'s' * (workers > 1)}", wall))
        per_block[workers] = wall / blocks
    print(f"\n## predict: N={len(x)} T={args.timesteps} D={args.features} H={args.units}, "
          f"{blocks} blocks of {args.block}, batch_size {args.batch_size}\n")
    print("| run | time | samples/s | vs one process |")
    print("| --- | --- | --- | --- |")
    for label, wall in rows:
        print(f"| {label} | {fmt_time(wall)} | {len(x) / wall:,.0f} | {local / wall:.2f}x |")
    compute = local_1 / blocks
    overhead = per_block[1] - compute
    print(f"\nPer block: compute {fmt_time(compute)} (one thread), scheduler and transfer "
          f"{fmt_time(overhead)} (1 worker's time per block less the compute).")
    return compute, overhead


def bench_scheduler(clients, tasks):
    """The scheduler's cost per task of nothing: `tasks` empty blocks, on each cluster."""
    import dask.array as da

    empty = da.zeros((tasks,), chunks=1)
    print(f"\n## scheduler: {tasks} tasks of an empty block\n")
    print("| cluster | time per task |")
    print("| --- | --- |")
    cost = {}
    for workers, client in clients:
        wall = _median_s(lambda: (empty + 1).sum().compute(scheduler=client), 3)
        cost[workers] = wall / tasks
        print(f"| {workers} worker{'s' * (workers > 1)} | {fmt_time(cost[workers])} |")
    return cost


def bench_fit(args, clients, x, y, model):
    import pylstm.dask

    steps = -(-len(x) // args.batch_size)
    fit_args = dict(batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0)
    trained = copy.deepcopy(model)
    trained.fit(x, y, **fit_args)
    local = _median_s(lambda: copy.deepcopy(model).fit(x, y, **fit_args), args.repeats)
    local_1 = _one_thread(lambda: _median_s(
        lambda: copy.deepcopy(model).fit(x, y, **fit_args), args.repeats))
    rows = [("one process", local), ("one process, 1 thread", local_1)]
    per_step = {}
    for workers, client in clients:
        check = copy.deepcopy(model)
        pylstm.dask.fit(check, x, y, client=client, **fit_args)
        gap = max(float(np.max(np.abs(a - b))) for a, b in zip(check.get_weights(),
                                                                trained.get_weights()))
        if gap > 1e-5:
            raise AssertionError(f"pylstm.dask.fit's weights differ from model.fit's by {gap} "
                                 f"with {workers} workers.")
        wall = _median_s(lambda: pylstm.dask.fit(copy.deepcopy(model), x, y, client=client,
                                                 **fit_args), args.repeats)
        rows.append((f"LocalCluster, {workers} worker{'s' * (workers > 1)}", wall))
        per_step[workers] = wall / steps
    print(f"\n## fit, one epoch: N={len(x)} B={args.batch_size} ({steps} steps), Adam, "
          f"shuffle=False\n")
    print("| run | time | samples/s | vs one process |")
    print("| --- | --- | --- | --- |")
    for label, wall in rows:
        print(f"| {label} | {fmt_time(wall)} | {len(x) / wall:,.0f} | {local / wall:.2f}x |")
    compute = local_1 / steps
    overhead = per_step[1] - compute
    print(f"\nPer step: compute {fmt_time(compute)} (one thread), scheduler and transfers "
          f"{fmt_time(overhead)} (weights out, gradients back; 1 worker's time per step less "
          f"the compute).")
    return compute, overhead


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 repeats")
    parser.add_argument("--samples", type=int, default=20000, help="N")
    parser.add_argument("--block", type=int, default=2000, help="samples per dask block")
    parser.add_argument("--train-samples", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=256, help="B")
    parser.add_argument("--timesteps", type=int, default=48, help="T")
    parser.add_argument("--features", type=int, default=8, help="D")
    parser.add_argument("--units", type=int, default=64, help="H")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=500, help="empty tasks timed")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.block, args.train_samples = 800, 200, 256
        args.batch_size, args.units, args.repeats, args.tasks = 64, 16, 2, 50

    import dask
    import distributed

    import pylstm

    cpu = cpu_identity()
    print(f"# pylstm.dask: pylstm {pylstm.__version__}, dask {dask.__version__}, distributed "
          f"{distributed.__version__}, {cpu['model_name'] or 'unknown CPU'}")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.samples, args.timesteps, args.features)).astype("float32")
    x_train = x[:args.train_samples]
    y_train = rng.standard_normal((len(x_train), 1)).astype("float32")
    model = _model(args)
    model.predict(x[:1], verbose=0)

    clusters = [distributed.LocalCluster(n_workers=w, threads_per_worker=1, processes=True,
                                         dashboard_address=None) for w in (1, 2)]
    try:
        clients = [(w, distributed.Client(c, set_as_default=False))
                   for w, c in zip((1, 2), clusters)]
        block_compute, block_overhead = bench_predict(args, clients, x, model)
        bench_scheduler(clients, args.tasks)
        step_compute, step_overhead = bench_fit(args, clients, x_train, y_train, model)
    finally:
        for _, client in clients:
            client.close()
        for cluster in clusters:
            cluster.close()

    print("\n## projected speed-up over one process (one thread per worker)\n")
    print(f"From the per-block and per-step costs above: `c / (s + c / W)` (predict: c = "
          f"{fmt_time(block_compute)}, s = {fmt_time(max(block_overhead, 0))}; fit: c = "
          f"{fmt_time(step_compute)}, s = {fmt_time(max(step_overhead, 0))}).\n")
    print("| W | predict | fit |")
    print("| --- | --- | --- |")
    for (w, p), (_, f) in zip(_projection(block_compute, block_overhead),
                              _projection(step_compute, step_overhead)):
        print(f"| {w} | {p:.2f}x | {f:.2f}x |")
    overhead = max(step_overhead, 0.0)
    print(f"\nW workers train faster than one process once a step's compute exceeds "
          f"s W / (W - 1): {fmt_time(2 * overhead)} for 2 workers, {fmt_time(8 / 7 * overhead)} "
          f"for 8 (here a step computes {fmt_time(step_compute)}; compute grows with the "
          f"batch and the model, s with the weights' size only).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
