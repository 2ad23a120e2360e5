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
