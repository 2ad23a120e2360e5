"""The main real-data example, run as a user runs it."""

import os

from pylstm.examples import sunspots


def test_sunspots_example_beats_persistence_and_round_trips(tmp_path, capsys):
    status = sunspots.main(["--output-dir", str(tmp_path), "--verbose", "0"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "The LSTM beats persistence" in out
    assert "the reloaded model predicts identically" in out
    assert os.path.getsize(tmp_path / "sunspots_lstm.pylstm") > 0
    assert os.path.getsize(tmp_path / "sunspots_forecast.png") > 0
