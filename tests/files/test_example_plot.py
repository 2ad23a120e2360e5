"""The sunspots example's forecast plot, written with matplotlib (the `plot` extra). The
example itself: unit/examples/test_examples.py."""

import numpy as np
from pylstm_tests import require

from pylstm.datasets import load_sunspots
from pylstm.examples import sunspots

require("matplotlib")


def test_forecast_plot_is_a_png(tmp_path, capsys):
    data = load_sunspots()
    n_test = 24
    actual = data.data[-n_test:]
    path = tmp_path / "forecast.png"
    sunspots._plot(str(path), data, n_test, actual, actual + 1.0, np.roll(actual, 1))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"Wrote {path}." in capsys.readouterr().out
