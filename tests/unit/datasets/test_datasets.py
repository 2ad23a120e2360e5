"""Tests for pylstm.datasets: the embedded files are intact and load with the documented shapes."""

import numpy as np

from pylstm import datasets
from pylstm.datasets import load_sunspots


def test_sunspots_checksum():
    assert datasets.sha256(datasets.SUNSPOTS_FILENAME) == datasets.SUNSPOTS_SHA256


def test_sunspots_shapes_and_dtypes():
    sunspots = load_sunspots()
    assert sunspots.data.shape == sunspots.years.shape == sunspots.months.shape == (3126,)
    assert sunspots.data.dtype == np.float64
    assert sunspots.years.dtype == np.int64
    assert sunspots.months.dtype == np.int64


def test_sunspots_known_values():
    sunspots = load_sunspots()
    assert (sunspots.years[0], sunspots.months[0], sunspots.data[0]) == (1749, 1, 58.0)
    assert (sunspots.years[-1], sunspots.months[-1], sunspots.data[-1]) == (2009, 6, 2.6)
    assert not np.isnan(sunspots.data).any()
    assert sunspots.data.min() == 0.0
    assert sunspots.data.max() == 253.8


def test_sunspots_months_are_consecutive():
    sunspots = load_sunspots()
    month_index = sunspots.years * 12 + (sunspots.months - 1)
    np.testing.assert_array_equal(np.diff(month_index), 1)
    assert set(np.unique(sunspots.months)) == set(range(1, 13))


def test_sunspots_as_frame_matches_arrays():
    table = load_sunspots(as_frame=True)
    sunspots = load_sunspots()
    assert table.dtype.names == ("year", "month", "sunspot_number")
    assert table.shape == (3126,)
    np.testing.assert_array_equal(table["sunspot_number"], sunspots.data)
    np.testing.assert_array_equal(table["year"], sunspots.years)
    np.testing.assert_array_equal(table["month"], sunspots.months)
