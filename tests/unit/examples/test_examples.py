"""The main real-data example, run as a user runs it (without matplotlib: the plot is
optional; the plot itself: files/test_example_plot.py)."""

import os
import sys

from pylstm.examples import sunspots


def test_sunspots_example_beats_persistence_and_round_trips(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import raises ImportError
    status = sunspots.main(["--output-dir", str(tmp_path), "--verbose", "0"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "The LSTM beats persistence" in out
    assert "the reloaded model predicts identically" in out
    assert os.path.getsize(tmp_path / "sunspots_lstm.pylstm") > 0
    assert "matplotlib is not installed: no plot" in out
    assert not (tmp_path / "sunspots_forecast.png").exists()


def test_window_dataset_cuts_the_same_windows_as_make_windows():
    import numpy as np

    series = np.arange(60, dtype="float32")
    x, y = sunspots.make_windows(series, 7)
    for first, count in ((0, 40), (40, 6), (46, 7)):
        batches = list(sunspots.window_dataset(series, 7, first, count, batch_size=4))
        xs = np.concatenate([b[0] for b in batches])
        ys = np.concatenate([b[1] for b in batches])
        np.testing.assert_array_equal(xs, x[first:first + count])
        np.testing.assert_array_equal(ys, y[first:first + count])
    shuffled = sunspots.window_dataset(series, 7, 0, 40, batch_size=8, shuffle=True, seed=0)
    assert sorted(np.concatenate([b[1] for b in shuffled])[:, 0]) == list(y[:40, 0])
