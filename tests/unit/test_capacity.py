"""The arithmetic of the capacity extrapolation (benchmarks/capacity.py) on a hand-made series."""

from __future__ import annotations

import pytest

from benchmarks import capacity

SERIES = [  # stage seconds: ingest = 5 + 1e-4 x events; train = 20 + 3e-4 x events
    {"events": 100_000, "users": 4_000, "items": 500, "stage_seconds": {"ingest": 15.0, "train": 50.0}},
    {"events": 300_000, "users": 12_000, "items": 1_000, "stage_seconds": {"ingest": 35.0, "train": 110.0}},
]


def test_a_line_through_exact_points_is_found():
    line = capacity.fit_line([1.0, 2.0, 4.0], [12.0, 14.0, 18.0])
    assert (line.intercept, line.slope) == pytest.approx((10.0, 2.0))
    assert capacity.fit_line([4.0], [8.0]).at(10.0) == pytest.approx(20.0)
    with pytest.raises(ValueError):
        capacity.fit_line([], [])


def test_stage_seconds_and_core_hours_are_extrapolated_per_account():
    report = capacity.capacity(SERIES, cores=2, accounts=[1_000_000])
    assert report["events_per_account"] == 25.0 and report["titles"] == 1_000
    assert report["grows_fastest"] == "train"
    [row] = report["rows"]
    assert row["events"] == 25_000_000
    assert row["stage_seconds"]["ingest"] == pytest.approx(5 + 1e-4 * 25_000_000)
    assert row["stage_seconds"]["train"] == pytest.approx(20 + 3e-4 * 25_000_000)
    assert row["core_hours"]["train"] == pytest.approx((20 + 7_500) * 2 / 3600)
    assert row["total_core_hours"] == pytest.approx((5 + 2_500 + 20 + 7_500) * 2 / 3600)


def test_driver_bytes_add_up():
    parts = capacity.driver_bytes(1_000, 10, 100, "blend", factors=8)
    pairs = 10_000
    assert parts["interactions_arrow"] == pairs * (64 + 16 + 16)
    assert parts["matrix"] == 2 * pairs * 8
    assert parts["user_keys"] == 1_000 * 4 * 64
    assert parts["model"] == 2 * 4 * 100**2 + 4 * 8 * (1_000 + 100)
    assert "| **all stages (core-hours)** |" in capacity.markdown(capacity.capacity(SERIES, 2))


def test_the_largest_catalog_fits_the_memory_given():
    assert capacity.largest_catalog(8 * 1_000**2, "ease") == 1_000
    assert capacity.largest_catalog(4 * 64 * 1_000, "als") == 1_000
