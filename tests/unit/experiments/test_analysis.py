"""control_plane.analysis.analyze on samples built by hand: every figure checked against arithmetic."""

from __future__ import annotations

from typing import Any

import pytest

from control_plane.analysis import SECONDS_PER_MONTH, Prices, analyze

PRICES = Prices(per_series_month=0.1, per_million_datapoints=1.0)
SPEC = {
    "baseline_pipeline": "process-baseline-v1",
    "candidate_pipeline": "process-topk-v1",
    "critical_processes": ["sshd", "cron"],
    "sample_interval_seconds": 10,
    "success_criteria": {"min_cpu_coverage_percent": 70.0},
}


def row(host: str, variant: str, ts: float, received: int = 0, **sample: Any) -> dict[str, Any]:
    return {"host_id": host, "variant": variant, "received_at": received, "sample": {"ts": ts, **sample}}


def host_rows(host: str, candidate_sees_sshd: bool = True) -> list[dict[str, Any]]:
    base = {
        "datapoints_per_second": 10.0,
        "process_cpu_seconds_rate": {"a": 1.0, "b": 3.0},
        "process_memory_bytes": {"a": 100.0, "b": 300.0},
        "process_cpu_seconds_total": {"a": 10.0, "b": 30.0},
        "critical_present": {"sshd": True},
        "collector_cpu_percent": 50.0,
    }
    cand = {
        "kept_processes": ["b", "other"],
        "process_cpu_seconds_total": {"b": 30.0, "other": 10.0},
        "process_memory_bytes": {"b": 300.0, "other": 100.0},
        "critical_present": {"sshd": candidate_sees_sshd},
    }
    return [
        row(host, "baseline", 1000, 1, active_series=100, **base),
        row(host, "baseline", 1010, 2, active_series=120, **base),
        row(
            host,
            "candidate",
            1001,
            1,
            active_series=30,
            datapoints_per_second=2.0,
            collector_cpu_percent=5.0,
            **cand,
        ),
        row(
            host,
            "candidate",
            1011,
            2,
            active_series=25,
            datapoints_per_second=3.0,
            collector_cpu_percent=7.0,
            **cand,
        ),
    ]


def test_one_host_figures() -> None:
    result = analyze(host_rows("h1"), spec=SPEC, prices=PRICES)
    assert result["status"] == "ok" and result["hosts_compared"] == 1
    assert result["pipelines"] == {
        "baseline": {
            "template": "process-baseline-v1",
            "active_series": 110.0,
            "datapoints_per_second": 10.0,
        },
        "candidate": {"template": "process-topk-v1", "active_series": 27.5, "datapoints_per_second": 2.5},
    }
    fleet = result["fleet"]
    assert fleet["series_reduction_percent"] == 75.0
    assert fleet["cpu_coverage_percent"] == 75.0  # b's 3 of a+b's 4 CPU seconds per second
    assert fleet["memory_coverage_percent"] == 75.0
    assert fleet["cpu_totals_ratio"] == 1.0 and fleet["memory_totals_ratio"] == 1.0
    assert fleet["critical_missing"] == []
    assert fleet["collector_cpu_percent_max"] == 6.0  # the candidate's mean, not the baseline's
    host = result["hosts"]["h1"]
    assert host["critical_running"] == ["sshd"] and host["critical_not_running_on_host"] == ["cron"]
    assert host["kept_processes"] == ["b"]
    before = 110 * 0.1 + 10 * SECONDS_PER_MONTH / 1e6
    after = 27.5 * 0.1 + 2.5 * SECONDS_PER_MONTH / 1e6
    assert result["cost"]["monthly_before"] == pytest.approx(before)
    assert result["cost"]["monthly_after"] == pytest.approx(after)
    assert result["cost"]["annual_savings"] == pytest.approx(12 * (before - after))
    assert result["verdict"] == "promote"
    assert all(c["passed"] for c in result["criteria"])


def test_default_criteria_reject_low_coverage() -> None:
    spec = {**SPEC, "success_criteria": {}}
    result = analyze(host_rows("h1"), spec=spec, prices=PRICES)
    (coverage,) = [c for c in result["criteria"] if c["name"] == "cpu_coverage_percent"]
    assert coverage == {
        "name": "cpu_coverage_percent",
        "value": 75.0,
        "op": ">=",
        "threshold": 90.0,
        "passed": False,
    }
    assert result["verdict"] == "reject"


def test_a_critical_process_the_candidate_drops_is_missing() -> None:
    result = analyze(host_rows("h1") + host_rows("h2", candidate_sees_sshd=False), spec=SPEC, prices=PRICES)
    assert result["hosts_compared"] == 2
    assert result["fleet"]["critical_missing"] == ["h2:sshd"]
    assert result["hosts"]["h2"]["critical_presence"]["sshd"] == {"baseline": 1.0, "candidate": 0.0}
    assert result["fleet"]["series_reduction_spread"] == {
        "min": 75.0,
        "max": 75.0,
        "mean": 75.0,
        "stdev": 0.0,
    }
    assert result["verdict"] == "reject"


def test_a_host_without_both_pipelines_is_not_compared() -> None:
    rows = [r for r in host_rows("h1") if r["variant"] == "baseline"]
    result = analyze(rows, spec=SPEC, prices=PRICES)
    assert result["status"] == "insufficient_data"
    assert result["hosts"]["h1"] == {"error": "measurements of both pipelines are needed; got baseline"}


def test_the_window_keeps_only_samples_received_within_it() -> None:
    rows = host_rows("h1")
    result = analyze(rows, spec=SPEC, prices=PRICES, window=(2, 2))
    assert result["pipelines"]["baseline"]["active_series"] == 120.0
    assert result["pipelines"]["candidate"]["active_series"] == 25.0
    assert result["hosts"]["h1"]["baseline"]["samples"] == 1
