"""benchmarks/plot_benchmarks.py and bench_lstm.py's `--json` record: the report and JSON
readers, and the figure drawn from each."""

import argparse
import json
import math
import os
import sys

import pytest
from pylstm_tests import require

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "benchmarks")
sys.path.insert(0, BENCHMARKS)

import plot_benchmarks  # noqa: E402
from _common import FULL_GRID, Case, Timing  # noqa: E402

REPORT = os.path.join(BENCHMARKS, "results", "bench_lstm.md")


def test_parse_time_reads_fmt_time_and_dashes():
    assert plot_benchmarks.parse_time("403 us") == pytest.approx(403e-6)
    assert plot_benchmarks.parse_time("1.41 ms") == pytest.approx(1.41e-3)
    assert plot_benchmarks.parse_time("1.22 s (tf.function)") == pytest.approx(1.22)
    assert plot_benchmarks.parse_time("-") is None


def test_the_recorded_report_parses_to_every_shape_of_the_grid():
    record = plot_benchmarks.load_results(REPORT)
    assert [case["label"] for case in record["cases"]] == [case.label for case in FULL_GRID]
    assert (record["dtype"], record["threads"]) == ("float32", 2)
    assert record["machine"]["logical_cores"] == 2
    first = record["cases"][0]
    # The report's first rows: forward 91 us / 524 us / 107 us, training 520 us / 923 us.
    assert first["forward"]["pylstm"]["wall"] == pytest.approx(91e-6)
    assert first["forward"]["onnxruntime"]["wall"] == pytest.approx(107e-6)
    assert first["train"]["torch"]["wall"] == pytest.approx(923e-6)
    assert "onnxruntime" not in first["train"] and "keras" not in first["forward"]


def _record():
    """`bench_lstm.json_record` of two made-up timings (a spin probe left at NaN)."""
    require("torch")   # bench_lstm imports it
    import bench_lstm

    timing = Timing(wall=1e-3, cpu=2e-3, cores=2.0, spin_ms=float("nan"), spin_cpu_ms=0.5,
                    repeats=7)
    results = [dict(case=case, forward={"pylstm": timing, "torch": timing},
                    train={"pylstm": timing, "torch": timing}, step={}, modes={}, diffs={},
                    cold=None) for case in (Case("seq", 1, 10, 3, 4), Case("bidi", 2, 5, 3, 4))]
    args = argparse.Namespace(dtype="float32", threads=2)
    return bench_lstm.json_record(results, 100.0, args, ["--quick"])


def test_json_record_is_strict_json_and_plots(tmp_path):
    require("matplotlib")
    record = _record()
    text = json.dumps(record, allow_nan=False)   # NaN written as null
    assert record["cases"][1]["label"] == "2-layer bidi: B=2 T=5 D=3 H=4"
    assert record["cases"][1]["forward_flop"] == Case("bidi", 2, 5, 3, 4).forward_flop()
    assert record["cases"][0]["forward"]["pylstm"]["spin_ms"] is None
    assert record["command"].endswith("--quick")
    path = tmp_path / "run.json"
    path.write_text(text)
    loaded = plot_benchmarks.load_results(str(path))
    assert math.isclose(loaded["cases"][0]["train"]["torch"]["wall"], 1e-3)
    out = tmp_path / "figures" / "benchmarks.png"
    plot_benchmarks.main([str(path), "--output", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_recorded_report_plots(tmp_path):
    require("matplotlib")
    out = tmp_path / "benchmarks.png"
    plot_benchmarks.main([REPORT, "--output", str(out)])
    assert out.stat().st_size > 10_000


def test_a_file_that_is_no_report_is_refused(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("# Notes\n\nNo tables here.\n")
    with pytest.raises(ValueError, match="not the output of `bench_lstm.py`"):
        plot_benchmarks.load_results(str(path))
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"cases": [{"label": "x", "forward": {}, "train": {}}]}))
    with pytest.raises(ValueError, match="pylstm's forward and training times"):
        plot_benchmarks.load_results(str(path))
