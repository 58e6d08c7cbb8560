"""Experiment analysis: every figure is computed from the samples agents measured."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from phoenix_common.wire import OTHER

SECONDS_PER_MONTH = 30 * 24 * 3600
DEFAULT_CRITERIA = {
    "min_reduction_percent": 50.0,
    "min_cpu_coverage_percent": 90.0,
    "max_collector_overhead_percent": 25.0,
}


@dataclass(frozen=True)
class Prices:
    """What a backend charges: per active series per month, and per million datapoints ingested."""

    per_series_month: float
    per_million_datapoints: float

    def monthly(self, active_series: float, datapoints_per_second: float) -> float:
        return (
            active_series * self.per_series_month
            + datapoints_per_second * SECONDS_PER_MONTH / 1e6 * self.per_million_datapoints
        )


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return statistics.fmean(values) if values else None


def _mean_maps(maps: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per key, the mean over the samples that have it (a process absent from a sample counts as zero)."""
    keys = {k for m in maps for k in m}
    return {k: statistics.fmean(float(m.get(k, 0.0)) for m in maps) for k in keys} if maps else {}


def summarize_pipeline(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Means over one host's samples of one pipeline."""
    cpu_samples = [s["process_cpu_seconds_rate"] for s in samples if s.get("process_cpu_seconds_rate")]
    mem_samples = [s["process_memory_bytes"] for s in samples if s.get("process_memory_bytes")]
    series_per_metric = _mean_maps([s.get("series_per_metric") or {} for s in samples])
    kept: set[str] = set()
    for s in samples:
        kept.update(p for p in s.get("kept_processes") or [] if p != OTHER)
    # Share of samples in which each critical process was seen: one scrape that missed a process (it was
    # read late in a slow collection) must not decide a verdict.
    seen: dict[str, list[bool]] = {}
    for s in samples:
        for name, present in (s.get("critical_present") or {}).items():
            seen.setdefault(name, []).append(bool(present))
    critical = {name: round(sum(flags) / len(flags), 4) for name, flags in seen.items()}
    return {
        "samples": len(samples),
        "active_series": _mean(float(s["active_series"]) for s in samples if "active_series" in s),
        "datapoints_per_second": _mean(float(s.get("datapoints_per_second") or 0.0) for s in samples),
        "series_per_metric": {k: round(v, 2) for k, v in sorted(series_per_metric.items())},
        "process_cpu_seconds_rate": _mean_maps(cpu_samples),
        "process_memory_bytes": _mean_maps(mem_samples),
        "kept_processes": sorted(kept),
        "critical_present": critical,
        "collector_cpu_percent": _mean(
            float(s["collector_cpu_percent"]) for s in samples if s.get("collector_cpu_percent") is not None
        ),
        "collector_memory_bytes": _mean(
            float(s["collector_memory_bytes"]) for s in samples if s.get("collector_memory_bytes") is not None
        ),
    }


def totals_ratios(
    baseline: Sequence[Mapping[str, Any]], candidate: Sequence[Mapping[str, Any]], key: str, tolerance: float
) -> float | None:
    """Median over same-moment sample pairs of candidate total / baseline total of a per-process figure.

    Both exporters are fed by one receiver, and the agent scrapes them in the same tick, so a pair holds
    the same collection: the 'other' roll-up must make the totals equal.
    """
    ratios = []
    ordered = sorted(baseline, key=lambda s: s["ts"])
    for cand in candidate:
        match = min(ordered, key=lambda b: abs(b["ts"] - cand["ts"]), default=None)
        if match is None or abs(match["ts"] - cand["ts"]) > tolerance:
            continue
        base_total = sum((match.get(key) or {}).values())
        cand_total = sum((cand.get(key) or {}).values())
        if base_total > 0:
            ratios.append(cand_total / base_total)
    return round(statistics.median(ratios), 6) if ratios else None


def _pct(part: float, whole: float) -> float | None:
    return round(100.0 * part / whole, 3) if whole > 0 else None


def compare_host(
    baseline: Mapping[str, Any],
    candidate: Mapping[str, Any],
    critical: Sequence[str],
    fidelity: Mapping[str, float | None],
) -> dict[str, Any]:
    """One host: reduction, coverage, fidelity and critical processes, baseline vs candidate."""
    base_series = baseline["active_series"] or 0.0
    cand_series = candidate["active_series"] or 0.0
    base_cpu = baseline["process_cpu_seconds_rate"]
    base_mem = baseline["process_memory_bytes"]
    kept = set(candidate["kept_processes"])
    total_cpu = sum(base_cpu.values())
    total_mem = sum(base_mem.values())
    # Running: seen in most baseline samples. Missing: the candidate shows it clearly less often than the
    # baseline does over the same run (a process the candidate drops is absent from every sample).
    base_seen = baseline["critical_present"]
    cand_seen = candidate["critical_present"]
    running = {name for name in critical if base_seen.get(name, 0.0) >= 0.5}
    missing = sorted(name for name in running if cand_seen.get(name, 0.0) < 0.9 * base_seen[name])
    return {
        "baseline_series": round(base_series, 2),
        "candidate_series": round(cand_series, 2),
        "series_reduction_percent": round(100.0 * (1 - cand_series / base_series), 3)
        if base_series
        else None,
        "baseline_datapoints_per_second": round(baseline["datapoints_per_second"] or 0.0, 4),
        "candidate_datapoints_per_second": round(candidate["datapoints_per_second"] or 0.0, 4),
        "cpu_coverage_percent": _pct(sum(v for k, v in base_cpu.items() if k in kept), total_cpu),
        "memory_coverage_percent": _pct(sum(v for k, v in base_mem.items() if k in kept), total_mem),
        "cpu_totals_ratio": fidelity["cpu"],
        "memory_totals_ratio": fidelity["memory"],
        "kept_processes": sorted(kept),
        "critical_running": sorted(running),
        "critical_not_running_on_host": sorted(set(critical) - running),
        "critical_missing": missing,
        "critical_presence": {
            name: {"baseline": base_seen.get(name, 0.0), "candidate": cand_seen.get(name, 0.0)}
            for name in critical
        },
        "collector_cpu_percent": candidate["collector_cpu_percent"],
        "collector_memory_bytes": candidate["collector_memory_bytes"],
    }


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "mean": round(statistics.fmean(values), 3),
        "stdev": round(statistics.pstdev(values), 3),
    }


def analyze(
    rows: Sequence[Mapping[str, Any]],
    *,
    spec: Mapping[str, Any],
    prices: Prices,
    window: tuple[Any, Any] | None = None,
) -> dict[str, Any]:
    """The analysis of an experiment from its measurement rows (host_id, variant, received_at, sample)."""
    grouped: dict[str, dict[str, list[Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if window and not (window[0] <= row["received_at"] <= window[1]):
            continue
        grouped[row["host_id"]][row["variant"]].append(row["sample"])
    critical = list(spec.get("critical_processes") or [])
    criteria = {**DEFAULT_CRITERIA, **(spec.get("success_criteria") or {})}
    hosts: dict[str, Any] = {}
    pipelines: dict[str, dict[str, float]] = {
        "baseline": {"active_series": 0.0, "datapoints_per_second": 0.0},
        "candidate": {"active_series": 0.0, "datapoints_per_second": 0.0},
    }
    for host_id, variants in sorted(grouped.items()):
        if not variants.get("baseline") or not variants.get("candidate"):
            hosts[host_id] = {
                "error": "measurements of both pipelines are needed; got " + ", ".join(sorted(variants))
                or "none"
            }
            continue
        base = summarize_pipeline(variants["baseline"])
        cand = summarize_pipeline(variants["candidate"])
        pair_within = 0.5 * float(spec.get("sample_interval_seconds") or 10)
        fidelity = {
            "cpu": totals_ratios(
                variants["baseline"], variants["candidate"], "process_cpu_seconds_total", pair_within
            ),
            "memory": totals_ratios(
                variants["baseline"], variants["candidate"], "process_memory_bytes", pair_within
            ),
        }
        hosts[host_id] = {"baseline": base, "candidate": cand, **compare_host(base, cand, critical, fidelity)}
        for variant, summary in (("baseline", base), ("candidate", cand)):
            pipelines[variant]["active_series"] += summary["active_series"] or 0.0
            pipelines[variant]["datapoints_per_second"] += summary["datapoints_per_second"] or 0.0
    compared = [h for h in hosts.values() if "error" not in h]
    if not compared:
        return {
            "status": "insufficient_data",
            "detail": "no host reported measurements of both pipelines during the running phase",
            "hosts": hosts,
        }
    base_total = pipelines["baseline"]["active_series"]
    cand_total = pipelines["candidate"]["active_series"]
    reduction = round(100.0 * (1 - cand_total / base_total), 3) if base_total else None
    cpu_cov = _weighted(compared, "cpu_coverage_percent", "baseline", "process_cpu_seconds_rate")
    mem_cov = _weighted(compared, "memory_coverage_percent", "baseline", "process_memory_bytes")
    missing = sorted(
        {f"{h}:{p}" for h, d in hosts.items() if "error" not in d for p in d["critical_missing"]}
    )
    overhead = max((h["collector_cpu_percent"] or 0.0) for h in compared)
    before = prices.monthly(base_total, pipelines["baseline"]["datapoints_per_second"])
    after = prices.monthly(cand_total, pipelines["candidate"]["datapoints_per_second"])
    checks = [
        _criterion("series_reduction_percent", reduction, ">=", criteria["min_reduction_percent"]),
        _criterion("cpu_coverage_percent", cpu_cov, ">=", criteria["min_cpu_coverage_percent"]),
        _criterion(
            "collector_cpu_percent", round(overhead, 3), "<=", criteria["max_collector_overhead_percent"]
        ),
        {
            "name": "critical_processes_missing",
            "value": len(missing),
            "op": "==",
            "threshold": 0,
            "passed": not missing,
        },
    ]
    return {
        "status": "ok",
        "hosts_compared": len(compared),
        "pipelines": {
            "baseline": {"template": spec.get("baseline_pipeline"), **_rounded(pipelines["baseline"])},
            "candidate": {"template": spec.get("candidate_pipeline"), **_rounded(pipelines["candidate"])},
        },
        "fleet": {
            "series_reduction_percent": reduction,
            "series_reduction_spread": _spread(
                [h["series_reduction_percent"] for h in compared if h["series_reduction_percent"] is not None]
            ),
            "cpu_coverage_percent": cpu_cov,
            "memory_coverage_percent": mem_cov,
            "cpu_totals_ratio": _ratio(compared, "cpu_totals_ratio"),
            "memory_totals_ratio": _ratio(compared, "memory_totals_ratio"),
            "critical_missing": missing,
            "collector_cpu_percent_max": round(overhead, 3),
            "collector_memory_bytes_max": max((h["collector_memory_bytes"] or 0.0) for h in compared),
            "collector_note": "both pipelines run in one collector process during the experiment; "
            "its CPU and memory are measured for the pair",
        },
        "cost": {
            "price_per_series_month": prices.per_series_month,
            "price_per_million_datapoints": prices.per_million_datapoints,
            "monthly_before": round(before, 4),
            "monthly_after": round(after, 4),
            "monthly_savings": round(before - after, 4),
            "annual_before": round(before * 12, 4),
            "annual_after": round(after * 12, 4),
            "annual_savings": round((before - after) * 12, 4),
        },
        "verdict": "promote" if all(c["passed"] for c in checks) else "reject",
        "criteria": checks,
        "hosts": hosts,
    }


def _criterion(name: str, value: float | None, op: str, threshold: float) -> dict[str, Any]:
    passed = False if value is None else value >= threshold if op == ">=" else value <= threshold
    return {"name": name, "value": value, "op": op, "threshold": threshold, "passed": passed}


def _weighted(hosts: list[dict[str, Any]], key: str, variant: str, usage: str) -> float | None:
    """Fleet coverage: host coverages weighted by each host's total usage."""
    num = den = 0.0
    for h in hosts:
        total = sum(h[variant][usage].values())
        if h[key] is None or total <= 0:
            continue
        num += h[key] * total
        den += total
    return round(num / den, 3) if den else None


def _ratio(hosts: list[dict[str, Any]], key: str) -> float | None:
    values = [h[key] for h in hosts if h[key] is not None]
    return round(statistics.fmean(values), 5) if values else None


def _rounded(values: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in values.items()}
