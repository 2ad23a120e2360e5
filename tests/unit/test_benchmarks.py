"""The benchmark harness (benchmarks/_common.py, bench_memory.py): FLOP counts, the grid, time
formatting, the idle/spin probes and the memory child. Its correctness check against PyTorch
and ONNX Runtime: parity/torch/test_benchmarks.py."""

import os
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "benchmarks"))

import _common  # noqa: E402
import bench_memory  # noqa: E402
from _common import Case  # noqa: E402


def test_forward_flop_matches_issue_formula():
    # 2*B*T*(D+H)*4H per layer and direction; the second bidirectional layer reads 2H.
    assert Case("seq", 32, 100, 64, 128).forward_flop() == 2 * 32 * 100 * (64 + 128) * 4 * 128
    B, T, D, H = 32, 100, 64, 128
    expected = 2 * (2 * B * T * (D + H) * 4 * H) + 2 * (2 * B * T * (2 * H + H) * 4 * H)
    assert Case("bidi", B, T, D, H).forward_flop() == expected


def test_grid_is_the_issue_table():
    shapes = [(c.kind, c.B, c.T, c.D, c.H) for c in _common.FULL_GRID]
    assert shapes == [("seq", 1, 100, 32, 64), ("seq", 1, 100, 128, 256),
                      ("seq", 32, 100, 64, 128), ("seq", 64, 50, 128, 256),
                      ("seq", 128, 100, 256, 512), ("seq", 256, 20, 512, 1024),
                      ("step", 1, 1, 64, 128), ("bidi", 32, 100, 64, 128)]


def test_fmt_time_units():
    assert _common.fmt_time(403e-6) == "403 us"
    assert _common.fmt_time(1.414e-3) == "1.41 ms"
    assert _common.fmt_time(1.08) == "1.08 s"


def _burn(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_spin_probe_sees_cpu_burned_after_return():
    idle_spin, idle_cpu = _common.spin_after(lambda: None)
    assert idle_spin == 0 and idle_cpu < 20

    def leaves_a_thread_spinning():
        threading.Thread(target=_burn, args=(0.15,), daemon=True).start()

    _, busy_cpu = _common.spin_after(leaves_a_thread_spinning)
    assert busy_cpu > idle_cpu + 10


def test_wait_idle_outlasts_a_busy_thread():
    thread = threading.Thread(target=_burn, args=(0.1,), daemon=True)
    thread.start()
    waited = _common.wait_idle(max_s=3.0)
    assert not thread.is_alive() or waited >= 3.0
    assert waited >= 0.05


def test_measure_reports_wall_and_cpu():
    timing = _common.measure(lambda: _burn(0.002), 0.02, spin_probes=1)
    assert timing.repeats >= 5
    assert 0.0015 < timing.wall < 0.5
    assert timing.cpu > 0 and timing.cores > 0


def test_memory_child_sees_the_training_cache_under_a_large_parent():
    ballast = np.ones(64 * 1024 * 1024 // 8)  # the parent's peak must not hide the child's
    case = Case("seq", 64, 50, 64, 128)
    result = bench_memory.measure_one("pylstm", "train", case, "float32", 1)
    gates = case.T * case.B * 4 * case.H * 4  # the cached activated gates alone, float32
    assert gates < result["delta"] < 20 * gates
    assert ballast.sum() > 0
