"""phoenix experiment watch: the line a measurement prints."""

from __future__ import annotations

from phoenix_cli.watch import _points


def test_a_measurement_line_shows_billed_series_when_the_agent_reports_them() -> None:
    points = [
        {"variant": "baseline", "active_series": 90, "billed_series": 400},
        {"variant": "candidate", "active_series": 9, "billed_series": 20},
    ]
    assert _points(points) == "baseline 400 billed series, candidate 20 billed series (95.0 % fewer)"


def test_without_billed_series_the_snapshot_is_named_as_such() -> None:
    points = [{"variant": "baseline", "active_series": 100}, {"variant": "candidate", "active_series": 25}]
    assert _points(points) == "baseline 100 series (snapshot), candidate 25 series (snapshot) (75.0 % fewer)"
    assert _points([]) == "no points"
