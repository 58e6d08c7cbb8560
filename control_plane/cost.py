"""GET /api/v1/cost-flow: where metrics cost comes from now, and after each candidate, from measurements."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from aiohttp import web

from control_plane.analysis import Prices
from control_plane.experiments import SERVICE
from control_plane.jsonutil import respond
from control_plane.stores.experiments import ExperimentStore

routes = web.RouteTableDef()
MAX_AGE_SECONDS = 900


def _add(bucket: dict[str, dict[str, float]], key: str, series: float, dps: float, prices: Prices) -> None:
    entry = bucket.setdefault(key, {"active_series": 0.0, "datapoints_per_second": 0.0, "monthly_cost": 0.0})
    entry["active_series"] += series
    entry["datapoints_per_second"] += dps
    entry["monthly_cost"] += prices.monthly(series, dps)


def _round(bucket: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    rows = [{"key": k, **{f: round(v, 4) for f, v in d.items()}} for k, d in bucket.items()]
    return sorted(rows, key=lambda r: -r["monthly_cost"])


@routes.get("/api/v1/cost-flow")
async def cost_flow_handler(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    return respond(await cost_flow(service.store, service.prices))


async def cost_flow(store: ExperimentStore, prices: Prices) -> dict[str, Any]:
    """Measured emissions now, by namespace, host, pipeline and metric; and after each completed candidate."""
    by: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    total_series = total_dps = 0.0
    hosts = set()
    for row in await store.current_emissions(MAX_AGE_SECONDS):
        sample = row["sample"]
        series = float(sample.get("active_series") or 0)
        dps = float(sample.get("datapoints_per_second") or 0)
        hosts.add(row["host_id"])
        total_series += series
        total_dps += dps
        _add(by["namespace"], row["namespace"], series, dps, prices)
        _add(by["host"], row["host_id"], series, dps, prices)
        _add(by["pipeline"], row["pipeline"] or "unknown", series, dps, prices)
        per_metric = sample.get("series_per_metric") or {}
        for metric, n in per_metric.items():
            share = float(n) / series if series else 0.0
            _add(by["metric"], metric, float(n), dps * share, prices)
    projections = []
    for row in await store.latest_completed():
        analysis = row["analysis"] or {}
        cost = analysis.get("cost") or {}
        projections.append(
            {
                "namespace": row["namespace"],
                "experiment_id": row["id"],
                "experiment": row["name"],
                "candidate_pipeline": row["spec"].get("candidate_pipeline"),
                "verdict": analysis.get("verdict"),
                "measured_on_hosts": analysis.get("hosts_compared"),
                "series_reduction_percent": (analysis.get("fleet") or {}).get("series_reduction_percent"),
                "monthly_before": cost.get("monthly_before"),
                "monthly_after": cost.get("monthly_after"),
            }
        )
    return {
        "prices": {
            "per_series_month": prices.per_series_month,
            "per_million_datapoints": prices.per_million_datapoints,
        },
        "now": {
            "hosts_reporting": len(hosts),
            "active_series": round(total_series, 2),
            "datapoints_per_second": round(total_dps, 4),
            "monthly_cost": round(prices.monthly(total_series, total_dps), 4),
            "by_namespace": _round(by["namespace"]),
            "by_host": _round(by["host"])[:200],
            "by_pipeline": _round(by["pipeline"]),
            "by_metric": _round(by["metric"]),
        },
        "after_candidates": projections,
        "source": "the latest measured emissions each agent reported within the last "
        f"{MAX_AGE_SECONDS // 60} minutes, and completed experiments' measured analyses",
    }
