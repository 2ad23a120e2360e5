"""The benchmark harness (benchmarks/_common.py, bench_memory.py): FLOP counts, the grid, time
formatting, the idle/spin probes, the timer of calls after a pause, the CPU description read
from Linux, and the memory child. Its correctness check against PyTorch
and ONNX Runtime: parity/torch/test_benchmarks.py."""

import os
import sys

import numpy as np
import pytest

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


class FakeClock:
    """Stands in for the `time` module in `_common`: wall and CPU seconds advance only when the
    harness sleeps or a test says work was done, so that its arithmetic is checked without
    timing this machine."""

    def __init__(self):
        self.wall = self.cpu = self.busy_until = 0.0

    def perf_counter(self):
        return self.wall

    def process_time(self):
        return self.cpu

    def sleep(self, seconds):
        """Time passes; a thread left spinning (`spin`) burns a core until it stops."""
        end = self.wall + seconds
        self.cpu += max(0.0, min(end, self.busy_until) - self.wall)
        self.wall = end

    def work(self, seconds):
        """The calling thread computes for `seconds`."""
        self.sleep(seconds)
        self.cpu += seconds

    def spin(self, seconds):
        """A thread keeps a core busy for `seconds` from now."""
        self.busy_until = self.wall + seconds


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(_common, "time", fake)
    return fake


def test_spin_probe_sees_cpu_burned_after_return(clock):
    assert _common.spin_after(lambda: None) == (0, 0.0)
    # busy to 30 ms: a third of the (20, 50] window; to 150 ms: half of (100, 200]
    spin_ms, cpu_ms = _common.spin_after(lambda: clock.spin(0.03))
    assert spin_ms == 50 and cpu_ms == pytest.approx(30)
    spin_ms, cpu_ms = _common.spin_after(lambda: clock.spin(0.15))
    assert spin_ms == 200 and cpu_ms == pytest.approx(150)


def test_wait_idle_outlasts_a_busy_thread(clock):
    assert _common.wait_idle() == pytest.approx(0.02)           # idle: one window
    start = clock.wall
    clock.spin(0.1)
    assert _common.wait_idle() == pytest.approx(0.12)           # the first idle window ends it
    clock.spin(10.0)
    assert _common.wait_idle(max_s=3.0) >= 3.0                  # gives up at max_s
    assert clock.wall - start < 3.2


def test_measure_reports_wall_and_cpu(clock):
    timing = _common.measure(lambda: clock.work(0.002), 0.02, spin_probes=1)
    assert timing.repeats == 10                                  # budget / first call
    assert timing.wall == pytest.approx(0.002) and timing.cpu == pytest.approx(0.002)
    assert timing.cores == pytest.approx(1.0)
    assert (timing.spin_ms, timing.spin_cpu_ms) == (0, 0.0)


def test_measure_cold_sleeps_before_every_timed_call(clock):
    gaps, last_end = [], [None]

    def call():
        if last_end[0] is not None:
            gaps.append(clock.wall - last_end[0])
        clock.work(0.002 if last_end[0] is None else 0.001)  # the warm-up is slower
        last_end[0] = clock.wall

    timing = _common.measure_cold(call, 0.05, 0.5)
    assert timing.repeats == 9                           # 0.5 / (0.05 + the 2 ms warm-up)
    assert gaps == [pytest.approx(0.05)] * 9             # a full pause before every call
    assert timing.wall == pytest.approx(0.001) and timing.pause == 0.05
    assert _common.measure_cold(call, 0.15, 0.1).repeats == 5    # at least five
    assert _common.measure_cold(call, 0.0, 1.0).repeats == 25    # at most 25


def test_cpu_identity_reads_the_first_cpu(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n"
                       "model name\t: Intel(R) Xeon(R) Platinum 8480+\n\n"
                       "processor\t: 1\nvendor_id\t: Other\nmodel name\t: Other\n")
    assert _common.cpu_identity(str(cpuinfo)) == {
        "model_name": "Intel(R) Xeon(R) Platinum 8480+", "vendor": "GenuineIntel", "family": 6}
    assert _common.cpu_identity(str(tmp_path / "missing")) == {
        "model_name": None, "vendor": None, "family": None}


def test_fmt_bytes_units():
    assert _common.fmt_bytes(48 << 10) == "48 KiB"
    assert _common.fmt_bytes(2 << 20) == "2 MiB"
    assert _common.fmt_bytes(None) == "?"


def test_memory_child_sees_the_training_cache_under_a_large_parent():
    ballast = np.ones(64 * 1024 * 1024 // 8)  # the parent's peak must not hide the child's
    case = Case("seq", 64, 50, 64, 128)
    result = bench_memory.measure_one("pylstm", "train", case, "float32", 1)
    gates = case.T * case.B * 4 * case.H * 4  # the cached activated gates alone, float32
    assert gates < result["delta"] < 20 * gates
    assert ballast.sum() > 0
