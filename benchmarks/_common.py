"""Helpers shared by the benchmarks: the issue-5 grid, weights, FLOPs, the sgemm peak, a
timer that reports CPU time and post-call spinning beside wall time, a timer of calls after a
pause, and the CPU's model name as Linux reports it.

Legend: B batch, T timesteps, D input features, H units. Nothing here imports torch, ONNX
Runtime or TensorFlow, so that `bench_memory`'s child processes load only the system they
measure.
"""

import statistics
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Case:
    """One row of the grid: `kind` "seq" (one layer over a sequence), "step" (one timestep,
    batch 1) or "bidi" (2 layers, bidirectional)."""

    kind: str
    B: int
    T: int
    D: int
    H: int

    @property
    def label(self):
        prefix = {"seq": "", "step": "one step: ", "bidi": "2-layer bidi: "}[self.kind]
        return f"{prefix}B={self.B} T={self.T} D={self.D} H={self.H}"

    @property
    def layers(self):
        return 2 if self.kind == "bidi" else 1

    @property
    def directions(self):
        return 2 if self.kind == "bidi" else 1

    def forward_flop(self):
        """GEMM FLOPs of one forward pass, 2*B*T*(D_in+H)*4H per layer and direction (the
        second layer of a bidirectional stack reads 2H features)."""
        total = 0
        d_in = self.D
        for _ in range(self.layers):
            total += self.directions * 2 * self.B * self.T * (d_in + self.H) * 4 * self.H
            d_in = self.directions * self.H
        return total


# The table of issue 5, in its order.
FULL_GRID = [
    Case("seq", 1, 100, 32, 64),
    Case("seq", 1, 100, 128, 256),
    Case("seq", 32, 100, 64, 128),
    Case("seq", 64, 50, 128, 256),
    Case("seq", 128, 100, 256, 512),
    Case("seq", 256, 20, 512, 1024),
    Case("step", 1, 1, 64, 128),
    Case("bidi", 32, 100, 64, 128),
]
QUICK_GRID = [
    Case("seq", 1, 100, 32, 64),
    Case("seq", 32, 100, 64, 128),
    Case("step", 1, 1, 64, 128),
    Case("bidi", 8, 50, 32, 64),
]


def make_weights(B, T, D, H, dtype, rng):
    """Random problem in pylstm's (Keras) layout, scaled like PyTorch's default init.

    Returns `(x, kernel, recurrent_kernel, bias)`: `(B, T, D)`, `(D, 4H)`, `(H, 4H)`, `(4H,)`,
    all of `dtype`."""
    scale = 1.0 / np.sqrt(H)
    x = rng.standard_normal((B, T, D)).astype(dtype)
    kernel = rng.uniform(-scale, scale, (D, 4 * H)).astype(dtype)
    recurrent_kernel = rng.uniform(-scale, scale, (H, 4 * H)).astype(dtype)
    bias = rng.uniform(-scale, scale, (4 * H,)).astype(dtype)
    return x, kernel, recurrent_kernel, bias


def wait_idle(window_s=0.02, busy_fraction=0.05, max_s=3.0):
    """Sleeps until this process's threads stop burning CPU: polls `time.process_time()` (the
    CPU time of all threads of the process) over `window_s` windows until one shows less than
    `busy_fraction` of a core. A fixed sleep is either too short (OpenBLAS and OpenMP workers
    spin for ~100 ms after a call) or wastes time. Returns the seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < max_s:
        cpu = time.process_time()
        time.sleep(window_s)
        if time.process_time() - cpu < busy_fraction * window_s:
            break
    return time.perf_counter() - start


# Windows (ms after a call returns) over which spinning is sampled.
SPIN_EDGES_MS = (20, 50, 100, 200)


def spin_after(fn):
    """Calls `fn()` once, then sleeps 200 ms sampling the process's CPU time at 20, 50, 100
    and 200 ms. Returns `(spin_ms, cpu_ms)`: the end of the last window in which the process
    kept more than a quarter of a core busy (0 if none; 200 means it was still spinning at
    200 ms), and the CPU milliseconds burned in those 200 ms."""
    fn()
    start_cpu = time.process_time()
    start = time.perf_counter()
    marks = []
    for edge in SPIN_EDGES_MS:
        time.sleep(max(0.0, start + edge / 1e3 - time.perf_counter()))
        marks.append((time.perf_counter() - start, time.process_time() - start_cpu))
    spin_ms, prev_t, prev_cpu = 0, 0.0, 0.0
    for edge, (t, cpu) in zip(SPIN_EDGES_MS, marks):
        if (cpu - prev_cpu) > 0.25 * (t - prev_t):
            spin_ms = edge
        prev_t, prev_cpu = t, cpu
    return spin_ms, 1e3 * marks[-1][1]


@dataclass
class Timing:
    """Wall seconds (median), CPU seconds per call (all threads, mean over the timed loop),
    busy cores (CPU time / wall time over the same loop), post-call spinning (see
    `spin_after`, medians over the probes), repeats."""

    wall: float
    cpu: float
    cores: float
    spin_ms: float
    spin_cpu_ms: float
    repeats: int


def measure(fn, budget_s, spin_probes=None):
    """Times `fn()`: waits until the process is idle, one warm-up call, then an adaptive number
    of repeats (about `budget_s` seconds; 5 to 1000, or 3 for calls over 0.1 s), then
    `spin_probes` spinning probes (3 for calls under 50 ms, 1 otherwise; 0 to skip)."""
    wait_idle()
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    # Five calls at least where they are cheap: a median of three is fragile on a busy machine.
    repeats = int(min(1000, max(5 if first < 0.1 else 3, budget_s / max(first, 1e-7))))
    times = []
    cpu_start = time.process_time()
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    cpu_total = time.process_time() - cpu_start
    if spin_probes is None:
        spin_probes = 3 if first < 0.05 else 1
    spins = [spin_after(fn) for _ in range(spin_probes)]
    spin_ms = statistics.median(s[0] for s in spins) if spins else float("nan")
    spin_cpu = statistics.median(s[1] for s in spins) if spins else float("nan")
    return Timing(statistics.median(times), cpu_total / repeats, cpu_total / sum(times),
                  spin_ms, spin_cpu, repeats)


@dataclass
class ColdTiming:
    """Wall seconds (median) of calls that each follow a pause, the pause, and the calls."""

    wall: float
    pause: float
    repeats: int


def measure_cold(fn, pause_s, budget_s):
    """Times `fn()` as an application that calls now and then: waits until the process is
    idle, one warm-up call, then `max(5, min(25, budget_s / (pause_s + first call)))` calls,
    each right after `time.sleep(pause_s)`, so that thread teams, caches and clocks have the
    pause to go cold."""
    wait_idle()
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    repeats = int(max(5, min(25, budget_s / (pause_s + first))))
    times = []
    for _ in range(repeats):
        time.sleep(pause_s)
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return ColdTiming(statistics.median(times), pause_s, repeats)


def cpu_identity(cpuinfo="/proc/cpuinfo"):
    """`{"model_name", "vendor", "family"}` of the first CPU in `cpuinfo` ("model name",
    "vendor_id", "cpu family"), None for each one the file (or the platform) does not give."""
    keys = {"model name": "model_name", "vendor_id": "vendor", "cpu family": "family"}
    found = dict.fromkeys(keys.values())
    try:
        with open(cpuinfo) as f:
            for line in f:
                name, _, value = line.partition(":")
                key = keys.get(name.strip())
                if key is not None and found[key] is None:
                    found[key] = value.strip()
                if not line.strip() and any(v is not None for v in found.values()):
                    break  # the end of the first CPU's block
    except OSError:
        pass
    if found["family"] is not None and found["family"].isdigit():
        found["family"] = int(found["family"])
    return found


def fmt_bytes(n):
    """`'48 KiB'`, `'2 MiB'`, `'1.25 MiB'`, or `'?'` for None."""
    if n is None:
        return "?"
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def sgemm_peak(threads, n=2048, repeats=7):
    """Square float32 GEMM rate of SciPy's BLAS on `threads` threads, GFLOP/s (median of
    `repeats` `scipy.linalg.blas.sgemm` calls on `(n, n)` Fortran-ordered operands)."""
    from scipy.linalg.blas import sgemm
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    rng = np.random.default_rng(1)
    a = np.asfortranarray(rng.standard_normal((n, n), dtype=np.float32))
    b = np.asfortranarray(rng.standard_normal((n, n), dtype=np.float32))

    def run():
        sgemm(1.0, a, b)

    wait_idle()
    if threadpool_limits is not None:
        with threadpool_limits(limits=threads, user_api="blas"):
            wall = statistics.median(_walls(run, repeats + 1)[1:])  # first call warms up
    else:
        wall = statistics.median(_walls(run, repeats + 1)[1:])
    return 2 * n**3 / wall / 1e9


def _walls(fn, repeats):
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def fmt_time(seconds):
    """`'403 us'`, `'1.41 ms'`, `'1.08 s'`: three significant figures."""
    if seconds != seconds:  # NaN
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale or unit == "us":
            value = seconds / scale
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"
    return f"{seconds:.3g} s"


def median_ms(fn, repeats):
    """Median wall time of `repeats` calls of `fn()` after one warm-up call, in ms."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(statistics.median(times))
