"""GET /api/v1/cost-flow: where metrics cost comes from now, and after each candidate, from measurements.

Priced like the analysis (control_plane.pricing.Prices, docs/analysis.md): billed series and measured
datapoints per minute, under the configured price model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from control_plane.experiments import SERVICE
from control_plane.jsonutil import respond
from control_plane.pricing import Prices
from control_plane.stores.experiments import ExperimentStore

routes = web.RouteTableDef()
MAX_AGE_SECONDS = 900


def emission_figures(sample: Mapping[str, Any]) -> tuple[float, float, str, str]:
    """(billed series, datapoints per minute, series source, datapoints source) of one emission sample.

    An agent from before billed series sends only the snapshot (active_series) and datapoints derived
    from it; those are used then, and named so.
    """
    billed = sample.get("billed_series")
    if billed is not None:
        series, series_source = float(billed), "billed"
    else:
        series, series_source = float(sample.get("active_series") or 0), "snapshot"
    dpm = sample.get("datapoints_per_minute")
    if dpm is not None:
        points, points_source = float(dpm), "measured"
    else:
        points, points_source = float(sample.get("datapoints_per_second") or 0) * 60, "derived"
    return series, points, series_source, points_source


def _add(
    bucket: dict[str, dict[str, float]], key: str, series: float, snapshot: float, dpm: float, prices: Prices
) -> None:
    entry = bucket.setdefault(
        key, {"billed_series": 0.0, "snapshot_series": 0.0, "datapoints_per_minute": 0.0, "monthly_cost": 0.0}
    )
    entry["billed_series"] += series
    entry["snapshot_series"] += snapshot
    entry["datapoints_per_minute"] += dpm
    entry["monthly_cost"] += prices.monthly(series, dpm)


def _round(bucket: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    rows = [
        {
            "key": k,
            **{f: round(v, 4) for f, v in d.items()},
            # Older clients read these names: the snapshot, and the datapoints per second.
            "active_series": round(d["snapshot_series"], 4),
            "datapoints_per_second": round(d["datapoints_per_minute"] / 60, 4),
        }
        for k, d in bucket.items()
    ]
    return sorted(rows, key=lambda r: -r["monthly_cost"])


def _source(seen: set[str]) -> str | None:
    if not seen:
        return None
    return seen.pop() if len(seen) == 1 else "mixed"


@routes.get("/api/v1/cost-flow")
async def cost_flow_handler(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    return respond(await cost_flow(service.store, service.prices))


async def cost_flow(store: ExperimentStore, prices: Prices) -> dict[str, Any]:
    """Measured emissions now, by namespace, host, pipeline and metric; and after each completed candidate."""
    by: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    total_series = total_snapshot = total_dpm = 0.0
    hosts = set()
    series_sources: set[str] = set()
    points_sources: set[str] = set()
    for row in await store.current_emissions(MAX_AGE_SECONDS):
        sample = row["sample"]
        series, dpm, series_source, points_source = emission_figures(sample)
        series_sources.add(series_source)
        points_sources.add(points_source)
        hosts.add(row["host_id"])
        snapshot = float(sample.get("active_series") or 0)
        total_series += series
        total_snapshot += snapshot
        total_dpm += dpm
        _add(by["namespace"], row["namespace"], series, snapshot, dpm, prices)
        _add(by["host"], row["host_id"], series, snapshot, dpm, prices)
        _add(by["pipeline"], row["pipeline"] or "unknown", series, snapshot, dpm, prices)
        # series_per_metric is the snapshot's split; each metric gets its share of the billed figures.
        per_metric = sample.get("series_per_metric") or {}
        split = sum(float(n) for n in per_metric.values())
        for metric, n in per_metric.items():
            share = float(n) / split if split else 0.0
            _add(by["metric"], metric, series * share, float(n), dpm * share, prices)
    projections = []
    for row in await store.latest_completed():
        analysis = row["analysis"] or {}
        cost = analysis.get("cost") or {}
        fleet = analysis.get("fleet") or {}
        projections.append(
            {
                "namespace": row["namespace"],
                "experiment_id": row["id"],
                "experiment": row["name"],
                "candidate_pipeline": row["spec"].get("candidate_pipeline"),
                "verdict": analysis.get("verdict"),
                "promotable": analysis.get("promotable"),
                "extrapolated": analysis.get("extrapolated"),
                "measured_on_hosts": analysis.get("hosts_compared"),
                "billed_series_reduction_percent": fleet.get("billed_series_reduction_percent"),
                "datapoints_per_minute_reduction_percent": fleet.get(
                    "datapoints_per_minute_reduction_percent"
                ),
                "series_reduction_percent": fleet.get("series_reduction_percent"),
                "price_model": cost.get("price_model"),
                "monthly_before": cost.get("monthly_before"),
                "monthly_after": cost.get("monthly_after"),
            }
        )
    return {
        "prices": {
            "model": prices.model,
            "per_series_month": prices.per_series_month,
            "per_million_datapoints": prices.per_million_datapoints,
        },
        "now": {
            "hosts_reporting": len(hosts),
            "billed_series": round(total_series, 2),
            "series_source": _source(series_sources),
            "datapoints_per_minute": round(total_dpm, 2),
            "datapoints_source": _source(points_sources),
            "monthly_cost": round(prices.monthly(total_series, total_dpm), 4),
            "snapshot_series": round(total_snapshot, 2),
            "active_series": round(total_snapshot, 2),
            "datapoints_per_second": round(total_dpm / 60, 4),
            "by_namespace": _round(by["namespace"]),
            "by_host": _round(by["host"])[:200],
            "by_pipeline": _round(by["pipeline"]),
            "by_metric": _round(by["metric"]),
        },
        "after_candidates": projections,
        "source": "the latest measured emissions each agent reported within the last "
        f"{MAX_AGE_SECONDS // 60} minutes (billed series over the agent's billing window and datapoints "
        "counted per minute; 'snapshot'/'derived' where an older agent sent neither), and completed "
        "experiments' measured analyses",
    }
