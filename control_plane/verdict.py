"""The success criteria of an experiment and its verdict: each criterion on every host and on the fleet."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_CRITERIA: dict[str, float] = {
    "min_billed_reduction_percent": 70.0,
    "min_cpu_coverage_percent": 95.0,
    "min_cpu_coverage_p10_percent": 90.0,
    "max_cpu_rate_deviation_percent": 1.0,
    "max_collector_overhead_ratio": 1.5,
    "min_samples_per_host": 5.0,
}
# Spec keys of earlier releases: min_reduction_percent is the billed reduction now; the collector's CPU
# percent is still checked when a spec names it.
LEGACY_CRITERIA = {"min_reduction_percent": "min_billed_reduction_percent"}
OPTIONAL_CRITERIA = ("max_collector_overhead_percent",)


def criteria_of(spec: Mapping[str, Any]) -> dict[str, float]:
    """The spec's success criteria over the defaults, old key names mapped to the new ones."""
    given = dict(spec.get("success_criteria") or {})
    for old, new in LEGACY_CRITERIA.items():
        if old in given:
            given.setdefault(new, given.pop(old))
    return {**DEFAULT_CRITERIA, **{k: float(v) for k, v in given.items() if v is not None}}


def _passes(value: float | None, op: str, threshold: float) -> bool:
    if value is None:
        return False
    if op == ">=":
        return value >= threshold
    if op == "<=":
        return value <= threshold
    return value == threshold


@dataclass(frozen=True)
class Check:
    name: str
    op: str
    setting: str | None
    read: Callable[[Mapping[str, Any]], float | None]


CHECKS = (
    Check(
        "billed_series_reduction_percent",
        ">=",
        "min_billed_reduction_percent",
        lambda f: f["billed_series_reduction_percent"],
    ),
    Check("cpu_coverage_percent", ">=", "min_cpu_coverage_percent", lambda f: f["cpu_coverage_percent"]),
    Check(
        "cpu_coverage_p10_percent",
        ">=",
        "min_cpu_coverage_p10_percent",
        lambda f: f["cpu_coverage_p10_percent"],
    ),
    Check(
        "cpu_rate_deviation_percent",
        "<=",
        "max_cpu_rate_deviation_percent",
        lambda f: f["cpu_rate_deviation_percent"],
    ),
    Check("critical_processes_missing", "==", None, lambda f: len(f["critical_missing"])),
    Check("samples_per_host", ">=", "min_samples_per_host", lambda f: f["pairs"]),
)


def host_criteria(figures: Mapping[str, Any], criteria: Mapping[str, float]) -> list[dict[str, Any]]:
    """Every per-host criterion on one host's figures."""
    out = []
    for check in CHECKS:
        threshold = criteria[check.setting] if check.setting else 0.0
        value = check.read(figures)
        out.append(
            {
                "name": check.name,
                "value": value,
                "op": check.op,
                "threshold": threshold,
                "passed": _passes(value, check.op, threshold),
            }
        )
    out.append(_overhead_criterion(figures["collector_overhead"], criteria))
    if "max_collector_overhead_percent" in criteria:
        threshold = criteria["max_collector_overhead_percent"]
        value = figures["collector_cpu_percent"]
        out.append(
            {
                "name": "collector_cpu_percent",
                "value": value,
                "op": "<=",
                "threshold": threshold,
                "passed": _passes(value or 0.0, "<=", threshold),
            }
        )
    return out


def _overhead_criterion(overhead: Mapping[str, Any], criteria: Mapping[str, float]) -> dict[str, Any]:
    threshold = criteria["max_collector_overhead_ratio"]
    if not overhead.get("measured"):
        return {
            "name": "collector_overhead_ratio",
            "value": None,
            "op": "<=",
            "threshold": threshold,
            "passed": True,
            "measured": False,
            "note": "not measured: both arms ran in one collector and no overhead probe ran",
        }
    value = overhead.get("cpu_ratio")
    return {
        "name": "collector_overhead_ratio",
        "value": value,
        "op": "<=",
        "threshold": threshold,
        "passed": _passes(value, "<=", threshold),
        "measured": True,
    }


def fleet_criteria(
    fleet: Mapping[str, Any],
    hosts: Mapping[str, Any],
    criteria: Mapping[str, float],
    overhead: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Each criterion on the fleet figures and overhead, passed only when every host passes it too."""
    fleet_figures = {
        **fleet,
        "pairs": fleet["samples_per_host"],
        "collector_cpu_percent": fleet["collector_cpu_percent_max"],
        "collector_overhead": overhead,
    }
    out = []
    for check in host_criteria(fleet_figures, criteria):
        failing = sorted(
            h
            for h, d in hosts.items()
            for c in d["criteria"]
            if c["name"] == check["name"] and not c["passed"]
        )
        out.append({**check, "passed": check["passed"] and not failing, "failing_hosts": failing})
    return out


def worst_host(hosts: Mapping[str, Any]) -> dict[str, Any] | None:
    """The host that fails most criteria, then with the lowest billed reduction, then lowest coverage."""

    def key(item: tuple[str, Mapping[str, Any]]) -> tuple[float, float, float, str]:
        host, d = item
        low = -math.inf
        return (
            -len(d["failed_criteria"]),
            d["billed_series_reduction_percent"] if d["billed_series_reduction_percent"] is not None else low,
            d["cpu_coverage_percent"] if d["cpu_coverage_percent"] is not None else low,
            host,
        )

    if not hosts:
        return None
    host, d = min(hosts.items(), key=key)
    return {
        "host_id": host,
        "passed": d["passed"],
        "failed_criteria": d["failed_criteria"],
        **{
            k: d[k]
            for k in (
                "billed_series_reduction_percent",
                "datapoints_per_minute_reduction_percent",
                "cpu_coverage_percent",
                "cpu_coverage_p10_percent",
                "cpu_rate_deviation_percent",
                "critical_missing",
                "pairs",
                "extrapolated",
            )
        },
    }
