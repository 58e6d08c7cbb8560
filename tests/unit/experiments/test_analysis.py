"""control_plane.analysis.analyze on samples built by hand: every figure checked against arithmetic."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, cast

import pytest

from control_plane.analysis import analyze, coverage_series, pair_samples
from control_plane.cost import cost_flow, emission_figures
from control_plane.experiment_service import ExperimentService
from control_plane.experiments import validate_spec
from control_plane.pricing import MINUTES_PER_MONTH, Prices
from control_plane.verdict import criteria_of
from phoenix_common.problems import Conflict, Problem

PRICES = Prices(per_series_month=0.1, per_million_datapoints=1.0)
SPEC: dict[str, Any] = {
    "baseline_pipeline": "process-baseline-v1",
    "candidate_pipeline": "process-intelligent-v1",
    "critical_processes": ["sshd", "cron"],
    "sample_interval_seconds": 10,
    "billing_window_seconds": 60,
}
Fields = Callable[[int], dict[str, Any]]


def row(host: str, variant: str, ts: float, received: float, **sample: Any) -> dict[str, Any]:
    return {"host_id": host, "variant": variant, "received_at": received, "sample": {"ts": ts, **sample}}


def baseline(i: int) -> dict[str, Any]:
    return {
        "active_series": 100,
        "billed_series": 200,
        "datapoints_per_minute": 600.0,
        "new_series_per_hour": 50.0,
        "process_cpu_seconds_rate": {"a": 1.0, "b": 3.0},
        "process_memory_bytes": {"a": 100.0, "b": 300.0},
        "cpu_total_rate": 4.0,
        "memory_total_bytes": 400.0,
        "critical_present": {"sshd": True},
        "collector_cpu_percent": 5.0,
        "agent_cpu_percent": 1.0,
        "agent_memory_bytes": 30e6,
    }


def candidate(i: int) -> dict[str, Any]:
    return {
        "active_series": 10,
        "billed_series": 10,
        "datapoints_per_minute": 60.0,
        "new_series_per_hour": 0.0,
        "process_cpu_seconds_rate": {"a": 1.0, "b": 3.0, "other": 0.0},
        "process_memory_bytes": {"a": 100.0, "b": 300.0, "other": 0.0},
        "cpu_total_rate": 4.0,
        "memory_total_bytes": 400.0,
        "kept_processes": ["a", "b", "other"],
        "critical_present": {"sshd": True},
        "collector_cpu_percent": 5.0,
    }


def run(
    host: str,
    n: int = 12,
    *,
    base: Fields | None = None,
    cand: Fields | None = None,
    interval: float = 10.0,
    window: float = 60.0,
    start: float = 1000.0,
) -> list[dict[str, Any]]:
    """n ticks of one host: both arms sampled in each tick (the candidate a little later)."""
    rows = []
    for i in range(n):
        ts = start + i * interval
        common = {
            "interval_seconds": interval,
            "observed_seconds": i * interval,
            "billing_window_seconds": window,
        }
        rows.append(row(host, "baseline", ts, ts, **{**common, **baseline(i), **(base(i) if base else {})}))
        rows.append(
            row(host, "candidate", ts + 0.3, ts, **{**common, **candidate(i), **(cand(i) if cand else {})})
        )
    return rows


def test_one_host_figures_and_a_promotable_verdict() -> None:
    result = analyze(run("h1"), spec=SPEC, prices=PRICES)
    assert result["status"] == "ok" and result["hosts_compared"] == 1
    assert result["extrapolated"] is False and result["promotable"] is True
    assert result["verdict"] == "promote", [c for c in result["criteria"] if not c["passed"]]
    host = result["hosts"]["h1"]
    assert host["pairs"] == 12
    # observed_seconds reaches the 60 s window at the 7th tick: ticks 6..11 are billed samples.
    assert host["baseline"]["billed_series"] == {
        "mean": 200.0,
        "p95": 200.0,
        "samples": 6,
        "source": "measured",
    }
    assert host["billed_series_reduction_percent"] == 95.0
    assert host["snapshot_series_reduction_percent"] == 90.0
    assert host["datapoints_per_minute_reduction_percent"] == 90.0
    assert host["cpu_coverage_percent"] == 100.0 and host["memory_coverage_percent"] == 100.0
    assert host["cpu_rate_fidelity"] == {
        "median": 1.0,
        "worst": 1.0,
        "pairs": 12,
        "reload_pairs": 0,
        "worst_including_reloads": 1.0,
    }
    assert host["critical_running"] == ["sshd"] and host["critical_not_running_on_host"] == ["cron"]
    fleet = result["fleet"]
    assert fleet["series_reduction_percent"] == fleet["billed_series_reduction_percent"] == 95.0
    assert fleet["cpu_totals_ratio"] == 1.0 and fleet["samples_per_host"] == 12
    assert result["pipelines"]["baseline"]["billed_series"] == 200.0
    assert result["pipelines"]["candidate"]["datapoints_per_minute"] == 60.0
    assert result["collector_overhead"]["measured"] is False
    assert result["collector_overhead"]["shared_collector_cpu_percent"] == 5.0
    assert fleet["agent_cpu_percent_max"] == 1.0
    assert {c["name"] for c in result["criteria"]} == {
        "billed_series_reduction_percent",
        "cpu_coverage_percent",
        "cpu_coverage_p10_percent",
        "cpu_rate_deviation_percent",
        "critical_processes_missing",
        "samples_per_host",
        "collector_overhead_ratio",
    }
    (overhead,) = [c for c in result["criteria"] if c["name"] == "collector_overhead_ratio"]
    assert overhead["measured"] is False and overhead["passed"] is True


def test_churn_the_snapshot_hides_is_in_the_billed_series() -> None:
    # Every tick the baseline shows 100 live series, but short-lived pids keep 500 billed in the window;
    # the candidate aggregates them by name: 80 live, 50 billed. Before the window is full the count is
    # still growing and must not enter the p95.
    def base(i: int) -> dict[str, Any]:
        return {"active_series": 100, "billed_series": 100 + 80 * i if i < 6 else 500 + (i % 3)}

    def cand(i: int) -> dict[str, Any]:
        return {"active_series": 80, "billed_series": 50}

    host = analyze(run("h1", 20, base=base, cand=cand), spec=SPEC, prices=PRICES)["hosts"]["h1"]
    assert host["snapshot_series_reduction_percent"] == 20.0
    assert host["baseline"]["billed_series"]["samples"] == 14
    assert host["baseline"]["billed_series"]["p95"] == 502.0
    assert host["billed_series_reduction_percent"] == pytest.approx(100 * (1 - 50 / 502), abs=1e-3)
    assert host["baseline"]["new_series_per_hour"] == 50.0


def test_coverage_is_per_pair_not_the_union_of_kept_names() -> None:
    # The candidate keeps a in the first half of the run and b in the second: the union of kept names is
    # everything, but no single moment shows more than half of the CPU.
    def base(i: int) -> dict[str, Any]:
        return {"process_cpu_seconds_rate": {"a": 2.0, "b": 2.0}, "cpu_total_rate": 4.0}

    def cand(i: int) -> dict[str, Any]:
        kept = "a" if i < 6 else "b"
        return {
            "process_cpu_seconds_rate": {kept: 2.0, "other": 2.0},
            "kept_processes": [kept, "other"],
        }

    result = analyze(run("h1", base=base, cand=cand), spec=SPEC, prices=PRICES)
    host = result["hosts"]["h1"]
    assert host["kept_processes"] == ["a", "b"]
    assert host["cpu_coverage_percent"] == 50.0 and host["cpu_coverage_p10_percent"] == 50.0
    assert result["fleet"]["cpu_coverage_percent"] == 50.0
    assert "cpu_coverage_percent" in result["hosts"]["h1"]["failed_criteria"]


def test_coverage_takes_the_smaller_of_both_rates_and_weights_pairs_by_their_span() -> None:
    # Ten pairs of 10 s at 100 %, then two pairs of 40 s where the candidate shows half of b's rate.
    def base(i: int) -> dict[str, Any]:
        return {"interval_seconds": 10.0 if i < 10 else 40.0}

    def cand(i: int) -> dict[str, Any]:
        return {"process_cpu_seconds_rate": {"a": 5.0, "b": 3.0 if i < 10 else 1.5}}

    host = analyze(run("h1", base=base, cand=cand), spec=SPEC, prices=PRICES)["hosts"]["h1"]
    low = 100 * (1 + 1.5) / 4  # a is capped at the baseline's 1.0
    assert host["cpu_coverage_percent"] == pytest.approx((10 * 10 * 100 + 2 * 40 * low) / 180, abs=1e-3)
    assert host["cpu_coverage_p10_percent"] == low


def test_fidelity_keeps_reload_pairs_apart() -> None:
    def cand(i: int) -> dict[str, Any]:
        if i == 4:
            return {"cpu_total_rate": 6.0, "reloaded": True}  # the rebuild's spike
        if i == 8:
            return {"cpu_total_rate": 4.016}
        return {}

    result = analyze(run("h1", cand=cand), spec=SPEC, prices=PRICES)
    fidelity = result["hosts"]["h1"]["cpu_rate_fidelity"]
    assert fidelity == {
        "median": 1.0,
        "worst": 1.004,
        "pairs": 11,
        "reload_pairs": 1,
        "worst_including_reloads": 1.5,
    }
    (deviation,) = [c for c in result["criteria"] if c["name"] == "cpu_rate_deviation_percent"]
    assert deviation["value"] == pytest.approx(0.4) and deviation["passed"]


def test_a_fidelity_error_on_one_steady_pair_fails() -> None:
    result = analyze(
        run("h1", cand=lambda i: {"cpu_total_rate": 4.1} if i == 3 else {}), spec=SPEC, prices=PRICES
    )
    assert result["fleet"]["cpu_rate_deviation_percent"] == pytest.approx(2.5)
    assert result["verdict"] == "reject"


def test_a_short_run_is_extrapolated_and_not_promotable() -> None:
    spec = {**SPEC, "billing_window_seconds": 1200, "success_criteria": {"min_samples_per_host": 3}}
    result = analyze(run("h1", 4, window=1200), spec=spec, prices=PRICES)
    assert result["extrapolated"] is True and result["promotable"] is False
    assert result["hosts"]["h1"]["extrapolated"] is True
    assert result["hosts"]["h1"]["baseline"]["billed_series"]["source"] == "partial"
    assert any("shorter than one billing window" in r for r in result["extrapolated_reasons"])
    # The verdict itself is still computed from what was measured.
    assert result["verdict"] == "promote"


def test_too_few_samples_per_host_fail() -> None:
    result = analyze(run("h1") + run("h2", 3), spec=SPEC, prices=PRICES)
    (samples,) = [c for c in result["criteria"] if c["name"] == "samples_per_host"]
    assert samples["value"] == 3 and samples["threshold"] == 5 and not samples["passed"]
    assert samples["failing_hosts"] == ["h2"]


def test_one_bad_host_fails_the_verdict_though_the_fleet_passes() -> None:
    rows = [r for h in ("h1", "h2", "h3", "h4") for r in run(h)]
    rows += run("h5", cand=lambda i: {"billed_series": 100})
    result = analyze(rows, spec=SPEC, prices=PRICES)
    fleet = result["fleet"]
    assert fleet["billed_series_reduction_percent"] == pytest.approx(100 * (1 - 140 / 1000))
    (billed,) = [c for c in result["criteria"] if c["name"] == "billed_series_reduction_percent"]
    assert billed["value"] >= billed["threshold"] and billed["passed"] is False
    assert billed["failing_hosts"] == ["h5"]
    assert result["verdict"] == "reject" and result["promotable"] is False
    assert fleet["hosts_failing"] == ["h5"]
    worst = result["worst_host"]
    assert worst["host_id"] == "h5" and worst["failed_criteria"] == ["billed_series_reduction_percent"]
    assert worst["billed_series_reduction_percent"] == 50.0
    assert fleet["series_reduction_spread"]["min"] == 50.0


def test_fleet_coverage_is_weighted_by_each_hosts_baseline_cpu() -> None:
    def big(i: int) -> dict[str, Any]:
        return {"process_cpu_seconds_rate": {"a": 3.0, "b": 9.0}, "cpu_total_rate": 12.0}

    def big_cand(i: int) -> dict[str, Any]:
        return {"process_cpu_seconds_rate": {"b": 9.0, "other": 3.0}, "cpu_total_rate": 12.0}

    result = analyze(run("h1") + run("h2", base=big, cand=big_cand), spec=SPEC, prices=PRICES)
    assert result["hosts"]["h2"]["cpu_coverage_percent"] == 75.0
    assert result["fleet"]["cpu_coverage_percent"] == pytest.approx((100 * 4 + 75 * 12) / 16, abs=1e-3)
    assert result["fleet"]["cpu_coverage_p10_percent"] == 75.0


def test_a_critical_process_the_candidate_drops_is_missing() -> None:
    rows = run("h1") + run("h2", cand=lambda i: {"critical_present": {"sshd": False}})
    result = analyze(rows, spec=SPEC, prices=PRICES)
    assert result["fleet"]["critical_missing"] == ["h2:sshd"]
    assert result["hosts"]["h2"]["critical_presence"]["sshd"] == {"baseline": 1.0, "candidate": 0.0}
    (critical,) = [c for c in result["criteria"] if c["name"] == "critical_processes_missing"]
    assert critical["value"] == 1 and critical["failing_hosts"] == ["h2"]
    assert result["verdict"] == "reject"


def test_pairing_is_nearest_within_half_an_interval_on_unsorted_input() -> None:
    base = [{"ts": t} for t in (10.0, 0.0)]
    cand = [{"ts": t} for t in (10.0, 6.0, 4.0, 31.0)]
    pairs = pair_samples(base, cand, 5.0)
    assert [(b["ts"], c["ts"]) for b, c in pairs] == [(0.0, 4.0), (10.0, 10.0)]


def test_pairing_is_linear_and_order_does_not_matter() -> None:
    rows = run("h1", 20_000)
    random.Random(1).shuffle(rows)
    started = time.perf_counter()
    result = analyze(rows, spec=SPEC, prices=PRICES)
    elapsed = time.perf_counter() - started
    assert result["hosts"]["h1"]["pairs"] == 20_000
    assert elapsed < 10, f"analysis of 40000 samples took {elapsed:.1f}s"
    assert analyze(sorted(rows, key=lambda r: r["sample"]["ts"]), spec=SPEC, prices=PRICES) == result


def test_confidence_intervals_hold_their_estimate_and_repeat() -> None:
    noise = random.Random(7)
    billed = [10 + noise.uniform(-5, 5) for _ in range(40)]
    shown = [3.0 + noise.uniform(-0.3, 0.3) for _ in range(40)]

    def cand(i: int) -> dict[str, Any]:
        return {"billed_series": billed[i], "process_cpu_seconds_rate": {"b": shown[i], "other": 1.0}}

    rows = run("h1", 40, cand=cand)
    result = analyze(rows, spec=SPEC, prices=PRICES)
    confidence = result["fleet"]["confidence"]
    for key in ("billed_series_reduction_percent", "cpu_coverage_percent"):
        ci = confidence[key]
        assert ci["low"] <= ci["estimate"] <= ci["high"] and ci["low"] < ci["high"], ci
        assert ci["method"].startswith("bootstrap")
    # Only pairs after the first full window enter the billed interval.
    assert confidence["billed_series_reduction_percent"]["pairs"] == 34
    assert confidence["cpu_coverage_percent"]["pairs"] == 40
    assert analyze(rows, spec=SPEC, prices=PRICES)["fleet"]["confidence"] == confidence


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("per_series", lambda s, d: s * 0.1),
        ("per_datapoint", lambda s, d: d * MINUTES_PER_MONTH / 1e6),
        ("both", lambda s, d: s * 0.1 + d * MINUTES_PER_MONTH / 1e6),
    ],
)
def test_cost_per_price_model(model: str, expected: Callable[[float, float], float]) -> None:
    prices = Prices(0.1, 1.0, model)
    cost = analyze(run("h1"), spec=SPEC, prices=prices)["cost"]
    assert cost["price_model"] == model
    assert cost["billed_series_before"] == 200.0 and cost["datapoints_per_minute_after"] == 60.0
    assert cost["monthly_before"] == pytest.approx(expected(200, 600), abs=1e-4)
    assert cost["monthly_after"] == pytest.approx(expected(10, 60), abs=1e-4)
    assert cost["annual_savings"] == pytest.approx(12 * (expected(200, 600) - expected(10, 60)), abs=1e-3)


def test_measured_overhead_is_a_criterion() -> None:
    overheads = {
        "h1": {
            "baseline": {"collector_cpu_percent": 4.0, "collector_memory_bytes": 80e6, "seconds": 30},
            "candidate": {"collector_cpu_percent": 8.0, "collector_memory_bytes": 90e6, "seconds": 30},
        }
    }
    result = analyze(run("h1"), spec=SPEC, prices=PRICES, overheads=overheads)
    (overhead,) = [c for c in result["criteria"] if c["name"] == "collector_overhead_ratio"]
    assert overhead == {
        "name": "collector_overhead_ratio",
        "value": 2.0,
        "op": "<=",
        "threshold": 1.5,
        "passed": False,
        "measured": True,
        "failing_hosts": ["h1"],
    }
    assert result["collector_overhead"]["candidate"]["collector_cpu_percent"] == 8.0


def test_old_agents_without_billing_figures_fall_back_to_the_snapshot() -> None:
    old = {
        "billed_series": None,
        "datapoints_per_minute": None,
        "cpu_total_rate": None,
        "observed_seconds": None,
    }
    rows = run("h1", base=lambda i: old, cand=lambda i: old)
    for r in rows:
        r["sample"] = {k: v for k, v in r["sample"].items() if v is not None}
    result = analyze(rows, spec=SPEC, prices=PRICES)
    host = result["hosts"]["h1"]
    assert host["baseline"]["billed_series"]["source"] == "snapshot"
    assert host["billed_series_reduction_percent"] == 90.0
    assert host["datapoints_per_minute_reduction_percent"] is None
    assert host["cpu_rate_fidelity"]["median"] == 1.0  # the per-process rates' sums
    assert result["extrapolated"] is True and result["promotable"] is False


def test_old_criteria_names_map_to_the_new_ones() -> None:
    criteria = criteria_of(
        {"success_criteria": {"min_reduction_percent": 50, "max_collector_overhead_percent": 30}}
    )
    assert criteria["min_billed_reduction_percent"] == 50.0
    assert "min_reduction_percent" not in criteria
    result = analyze(run("h1"), spec={**SPEC, "success_criteria": criteria}, prices=PRICES)
    (collector,) = [c for c in result["criteria"] if c["name"] == "collector_cpu_percent"]
    assert collector["value"] == 5.0 and collector["passed"]


def test_a_host_without_both_pipelines_is_not_compared() -> None:
    rows = [r for r in run("h1") if r["variant"] == "baseline"]
    result = analyze(rows, spec=SPEC, prices=PRICES)
    assert result["status"] == "insufficient_data"
    assert result["hosts"]["h1"] == {"error": "measurements of both pipelines are needed; got baseline"}


def test_the_window_keeps_only_samples_taken_within_it() -> None:
    rows = run("h1")
    result = analyze(rows, spec=SPEC, prices=PRICES, window=(1060, 1110))
    # Samples at 1060..1110; the last candidate one was read 0.3 s after its baseline, past the end.
    assert result["hosts"]["h1"]["pairs"] == 5
    assert result["running_seconds"] == 50 and result["extrapolated"] is True
    # Warm-up samples delivered late (received inside the window) still do not count.
    late = [{**r, "received_at": 1080} if r["sample"]["ts"] < 1060 else r for r in rows]
    assert analyze(late, spec=SPEC, prices=PRICES, window=(1060, 1110))["hosts"]["h1"]["pairs"] == 5


def test_coverage_series_for_the_dashboard() -> None:
    series = coverage_series(run("h1", 3, cand=lambda i: {"process_cpu_seconds_rate": {"b": 3.0}}), SPEC)
    assert series == {
        "h1": [
            {"ts": 1000.0 + 10 * i, "cpu_coverage_percent": 75.0, "memory_coverage_percent": 100.0}
            for i in range(3)
        ]
    }


# --- the spec -------------------------------------------------------------------------------------

BODY = {"name": "x", "baseline_pipeline": "a", "candidate_pipeline": "b", "target_namespaces": ["default"]}


def test_spec_defaults_billing_window_probe_and_criteria() -> None:
    spec = validate_spec(dict(BODY))
    assert spec["billing_window_seconds"] == 1200 and spec["overhead_probe_seconds"] == 0
    assert spec["success_criteria"] == {
        "min_billed_reduction_percent": 70.0,
        "min_cpu_coverage_percent": 95.0,
        "min_cpu_coverage_p10_percent": 90.0,
        "max_cpu_rate_deviation_percent": 1.0,
        "max_collector_overhead_ratio": 1.5,
        "min_samples_per_host": 5.0,
    }
    spec = validate_spec(
        {**BODY, "billing_window": "2m", "overhead_probe": "30s", "min_reduction_percent": 60}
    )
    assert spec["billing_window_seconds"] == 120 and spec["overhead_probe_seconds"] == 30
    assert spec["success_criteria"]["min_billed_reduction_percent"] == 60
    both = validate_spec({**BODY, "min_reduction_percent": 60, "min_billed_reduction_percent": 80})
    assert both["success_criteria"]["min_billed_reduction_percent"] == 80


@pytest.mark.parametrize(
    ("extra", "name"),
    [
        ({"billing_window": "30s"}, "billing_window"),
        ({"billing_window": "2d"}, "billing_window"),
        ({"overhead_probe": 601}, "overhead_probe"),
        ({"min_reduction_percent": 170}, "min_reduction_percent"),
        ({"max_cpu_rate_deviation_percent": -1}, "max_cpu_rate_deviation_percent"),
        ({"min_samples_per_host": 0}, "min_samples_per_host"),
        ({"max_collector_overhead_ratio": "x"}, "max_collector_overhead_ratio"),
    ],
)
def test_bad_spec_fields_name_the_field(extra: dict[str, Any], name: str) -> None:
    with pytest.raises(Problem) as exc:
        validate_spec({**BODY, **extra})
    assert exc.value.extra.get("field") == name and name in exc.value.detail


# --- promotion and cost flow -----------------------------------------------------------------------


class FakeStore:
    def __init__(self, analysis: dict[str, Any]):
        self.row = {"id": "exp-1", "phase": "completed", "analysis": analysis, "promoted_deployments": []}

    async def get(self, experiment_id: str) -> dict[str, Any]:
        return self.row


async def test_promote_refuses_an_extrapolated_analysis_without_force() -> None:
    service = object.__new__(ExperimentService)
    store = FakeStore({"verdict": "promote", "extrapolated": True, "extrapolated_reasons": ["r"]})
    with pytest.raises(Conflict) as exc:
        # The checks promote runs on the row it holds locked (no transaction needed to refuse).
        await service._promote(store.row, False, cast(Any, None))
    assert "extrapolated (r)" in exc.value.detail and exc.value.extra == {"reason": "extrapolated"}


class EmissionStore:
    async def current_emissions(self, max_age: float) -> list[dict[str, Any]]:
        new = {
            "active_series": 100,
            "billed_series": 300,
            "datapoints_per_minute": 600,
            "series_per_metric": {"m": 100},
        }
        old = {"active_series": 50, "datapoints_per_second": 5}
        return [
            {"host_id": "h1", "namespace": "ns", "pipeline": "p", "sample": new},
            {"host_id": "h2", "namespace": "ns", "pipeline": "p", "sample": old},
        ]

    async def latest_completed(self) -> list[dict[str, Any]]:
        return []


async def test_cost_flow_prices_billed_series_like_the_analysis() -> None:
    assert emission_figures({"active_series": 50, "datapoints_per_second": 5}) == (
        50.0,
        300.0,
        "snapshot",
        "derived",
    )
    prices = Prices(0.1, 1.0, "per_series")
    flow = await cost_flow(cast(Any, EmissionStore()), prices)
    now = flow["now"]
    assert now["billed_series"] == 350 and now["datapoints_per_minute"] == 900
    assert now["series_source"] == "mixed" and now["snapshot_series"] == 150
    assert now["monthly_cost"] == pytest.approx(prices.monthly(350, 900)) == pytest.approx(35.0)
    assert flow["prices"]["model"] == "per_series"
    (metric,) = now["by_metric"]
    assert metric["billed_series"] == 300 and metric["active_series"] == 100


async def test_the_driver_passes_each_hosts_probe_overhead_to_the_analysis() -> None:
    from control_plane.experiment_driver import ExperimentDriver
    from control_plane.phases import Phase

    probe = {"baseline": {"collector_cpu_percent": 4.0}, "candidate": {"collector_cpu_percent": 5.0}}

    class Store:
        def __init__(self) -> None:
            self.analysis: dict[str, Any] = {}

        async def task_states(self, experiment_id: str, tx: Any = None) -> list[dict[str, Any]]:
            return [{"host_id": "h1", "status": "completed", "error": None, "result": {"overhead": probe}}]

        async def set_analysis(self, experiment_id: str, analysis: dict[str, Any], tx: Any) -> None:
            self.analysis = analysis

    class Service:
        prices = PRICES

        def __init__(self) -> None:
            self.moves: list[str] = []

        async def move(self, tx: Any, row: dict[str, Any], phase: Phase, reason: str) -> None:
            self.moves.append(reason)

        async def analyze(
            self, row: dict[str, Any], tx: Any, window: Any = None, overheads: Any = None
        ) -> dict[str, Any]:
            return analyze(run("h1"), spec=row["spec"], prices=PRICES, window=window, overheads=overheads)

    service, store = Service(), Store()
    driver = ExperimentDriver(cast(Any, None), cast(Any, store), cast(Any, service))
    row = {"id": "e", "phase": Phase.ANALYZING, "spec": SPEC, "running_at": 0, "analyzing_at": 5000}
    await driver.advance(None, row)  # type: ignore[arg-type]
    assert store.analysis["collector_overhead"]["cpu_ratio"] == 1.25
    assert service.moves[0].startswith("verdict promote: 95.0% fewer billed series")
