"""The CLI's analysis, results and cost views on answers built by control_plane.analysis itself."""

from __future__ import annotations

from typing import Any

from control_plane.analysis import analyze, coverage_series
from control_plane.pricing import Prices
from phoenix_cli import views

SPEC = {
    "baseline_pipeline": "base",
    "candidate_pipeline": "cand",
    "sample_interval_seconds": 10,
    "billing_window_seconds": 60,
}


def rows(n: int, billed_after: float = 10) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        common = {"ts": 1000 + 10 * i, "interval_seconds": 10, "observed_seconds": 10 * i}
        base = {
            **common,
            "active_series": 100,
            "billed_series": 200,
            "datapoints_per_minute": 600,
            "process_cpu_seconds_rate": {"a": 1.0, "b": 3.0},
            "cpu_total_rate": 4.0,
        }
        cand = {
            **common,
            "active_series": 10,
            "billed_series": billed_after,
            "datapoints_per_minute": 60,
            "process_cpu_seconds_rate": {"a": 1.0, "b": 3.0},
            "cpu_total_rate": 4.0,
        }
        out += [
            {"host_id": "h1", "variant": "baseline", "received_at": i, "sample": base},
            {"host_id": "h1", "variant": "candidate", "received_at": i, "sample": cand},
        ]
    return out


def test_analysis_view_shows_billed_coverage_fidelity_and_price_model() -> None:
    analysis = analyze(rows(12), spec=SPEC, prices=Prices(0.1, 1.0, "per_series"))
    text = views.analysis_view({"experiment_id": "exp-1", "phase": "completed", "final": True, **analysis})
    assert "billed series reduction    95.0 %" in text
    assert "snapshot series reduction  90.0 %" in text
    assert "CPU coverage               100.0 %" in text and "p10 100.0 %" in text
    assert "median 1, worst 1 over 12 pair(s); 0 reload pair(s) apart" in text
    assert "not measured per arm; shared collector" in text
    assert "price model per_series" in text
    assert "Verdict: PROMOTE" in text and "EXTRAPOLATED" not in text
    assert "collector overhead ratio" in text and "not measured" in text


def test_an_extrapolated_analysis_says_so() -> None:
    spec = {**SPEC, "billing_window_seconds": 1200}
    analysis = analyze(rows(6), spec=spec, prices=Prices(0.1, 1.0))
    text = views.analysis_view({"experiment_id": "exp-1", "phase": "completed", "final": True, **analysis})
    assert "EXTRAPOLATED: the run measured 50s" in text


def test_a_failing_host_is_named() -> None:
    data = rows(12) + [{**r, "host_id": "h2"} for r in rows(12, billed_after=150)]
    analysis = analyze(data, spec=SPEC, prices=Prices(0.1, 1.0))
    text = views.analysis_view({"experiment_id": "exp-1", "phase": "completed", "final": True, **analysis})
    assert "Worst host: h2 fails billed_series_reduction_percent" in text
    assert "FAIL (hosts: h2)" in text
    assert "FAIL billed_series_reduction_percent" in text


def test_an_analysis_of_the_old_shape_still_renders() -> None:
    old = {
        "status": "ok",
        "final": True,
        "pipelines": {"baseline": {"template": "b", "active_series": 10, "datapoints_per_second": 1}},
        "fleet": {"series_reduction_percent": 40.0, "cpu_coverage_percent": 90.0, "cpu_totals_ratio": 1.0},
        "cost": {"price_per_series_month": 0.1, "monthly_before": 1.0},
        "verdict": "reject",
        "criteria": [
            {"name": "series_reduction_percent", "value": 40, "op": ">=", "threshold": 50, "passed": False}
        ],
        "hosts": {"h1": {"baseline_series": 10, "candidate_series": 6, "series_reduction_percent": 40.0}},
    }
    text = views.analysis_view(old)
    assert "billed series reduction    40.0 %" in text and "Verdict: REJECT" in text


def test_results_view_shows_billed_series_and_coverage() -> None:
    data = rows(3)
    series: dict[str, Any] = {}
    for r in data:
        series.setdefault(r["host_id"], {}).setdefault(r["variant"], []).append(r["sample"])
    text = views.results_view(
        {
            "experiment_id": "exp-1",
            "phase": "running",
            "measurements": 6,
            "time_series": series,
            "coverage": coverage_series(data, SPEC),
        }
    )
    assert "LAST BILLED" in text and "MEAN CPU COVERAGE" in text and "100.0 %" in text


def test_cost_flow_view_names_the_price_model_and_snapshot_fallback() -> None:
    flow = {
        "prices": {"model": "both", "per_series_month": 0.1, "per_million_datapoints": 1.0},
        "now": {
            "hosts_reporting": 1,
            "billed_series": 50,
            "series_source": "snapshot",
            "datapoints_per_minute": 300,
            "datapoints_source": "derived",
            "monthly_cost": 18.0,
            "by_namespace": [
                {"key": "ns", "billed_series": 50, "datapoints_per_minute": 300, "monthly_cost": 18}
            ],
        },
        "after_candidates": [],
    }
    text = views.cost_flow_view(flow, 10)
    assert "model both" in text and "snapshot: an older agent" in text and "BILLED SERIES" in text
