"""A/B experiments over HTTP: the spec check, the views and the handlers (each calls the service)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from control_plane import destination_spec, keys, names
from control_plane.analysis import coverage_points
from control_plane.auth import HOST_ID_KEY
from control_plane.experiment_driver import ExperimentDriver
from control_plane.experiment_service import ExperimentService
from control_plane.generator_client import for_app as generator_for
from control_plane.jsonutil import respond
from control_plane.metrics import ApiMetrics
from control_plane.names import check_namespace, new_id
from control_plane.phases import Phase
from control_plane.stores.events import EventStore
from control_plane.stores.experiments import ExperimentStore
from control_plane.verdict import DEFAULT_CRITERIA, LEGACY_CRITERIA, OPTIONAL_CRITERIA
from phoenix_common import wire
from phoenix_common.problems import Problem, field, json_body, query_int
from phoenix_common.settings import SettingsError, parse_duration

routes = web.RouteTableDef()

LOAD_PROFILES = ("realistic", "high-cardinality", "process-churn", "spike", "steady")
PROCESS_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,128}\Z")
SERVICE = web.AppKey("experiment_service", ExperimentService)
DRIVER = web.AppKey("experiment_driver", ExperimentDriver)


# --- spec ---------------------------------------------------------------------------------------


def _duration(body: dict[str, Any], name: str, default: float, minimum: float, maximum: float) -> float:
    raw = body.get(name)
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise Problem(f"field '{name}' must be a duration such as 300, '5m' or '90s'", field=name)
    try:
        seconds = parse_duration(raw, name)
    except SettingsError as exc:
        raise Problem(str(exc), field=name) from None
    if not minimum <= seconds <= maximum:
        raise Problem(f"field '{name}' must be between {minimum:g} and {maximum:g} seconds", field=name)
    return seconds


def _string_list(body: dict[str, Any], name: str, pattern: re.Pattern[str], limit: int) -> list[str]:
    values = field(body, name, list, default=[])
    if len(values) > limit:
        raise Problem(f"field '{name}' holds at most {limit} entries", field=name)
    for value in values:
        if not isinstance(value, str) or not pattern.match(value):
            raise Problem(f"field '{name}' has an invalid entry {value!r}", field=name)
    return list(dict.fromkeys(values))


# The range each criterion takes; percents are 0-100.
CRITERION_RANGES = {
    "max_collector_overhead_ratio": (0.0, 1000.0),
    "min_samples_per_host": (1.0, 1_000_000.0),
}


def _criteria(body: dict[str, Any]) -> dict[str, float]:
    """The success criteria: defaults, the body's values, and the old key names of earlier releases."""
    criteria: dict[str, float] = {}
    # Old names first, so a new name given beside its old one wins.
    for key in (*LEGACY_CRITERIA, *OPTIONAL_CRITERIA, *DEFAULT_CRITERIA):
        value = field(body, key, (int, float), default=None)
        if value is None:
            continue
        low, high = CRITERION_RANGES.get(key, (0.0, 100.0))
        if not low <= value <= high:
            raise Problem(f"field '{key}' must be between {low:g} and {high:g}", field=key)
        criteria[LEGACY_CRITERIA.get(key, key)] = float(value)
    return {**DEFAULT_CRITERIA, **criteria}


def validate_spec(body: dict[str, Any]) -> dict[str, Any]:
    """The whole experiment spec, checked field by field."""
    name = names.check_display_name(field(body, "name", str))
    baseline = names.check_template(field(body, "baseline_pipeline", str), "baseline_pipeline")
    candidate = names.check_template(field(body, "candidate_pipeline", str), "candidate_pipeline")
    namespaces = _string_list(body, "target_namespaces", names.NAMESPACE, 100)
    hosts = _string_list(body, "target_hosts", names.HOST_ID, 10_000)
    if not namespaces and not hosts:
        raise Problem("give 'target_namespaces' or 'target_hosts'", field="target_namespaces")
    for ns in namespaces:
        check_namespace(ns, "target_namespaces")
    parameters = field(body, "parameters", dict, default={})
    unknown = set(parameters) - {"baseline", "candidate"}
    if unknown:
        raise Problem(
            f"field 'parameters' takes only 'baseline' and 'candidate', not {sorted(unknown)[0]!r}",
            field="parameters",
        )
    for variant, params in parameters.items():
        if not isinstance(params, dict):
            raise Problem(f"field 'parameters.{variant}' must be an object", field="parameters")
    critical = _string_list(body, "critical_processes", PROCESS_NAME, 64)
    candidate_destination = field(body, "candidate_destination", str, default=None)
    if candidate_destination is not None:
        destination_spec.check_name(candidate_destination, "candidate_destination")
    load_profile = field(body, "load_profile", str, default=None)
    if load_profile is not None and load_profile not in LOAD_PROFILES:
        raise Problem(f"field 'load_profile' must be one of {', '.join(LOAD_PROFILES)}", field="load_profile")
    criteria = _criteria(body)
    return {
        "name": name,
        "baseline_pipeline": baseline,
        "candidate_pipeline": candidate,
        "target_namespaces": namespaces,
        "target_hosts": hosts,
        "parameters": {
            "baseline": parameters.get("baseline", {}),
            "candidate": parameters.get("candidate", {}),
        },
        "critical_processes": critical,
        "duration_seconds": _duration(body, "duration", 600, 10, 7 * 86400),
        "warmup_seconds": _duration(body, "warmup", 60, 0, 86400),
        "sample_interval_seconds": _duration(body, "sample_interval", 10, 1, 600),
        "billing_window_seconds": _duration(
            body,
            "billing_window",
            wire.DEFAULT_BILLING_WINDOW,
            wire.MIN_BILLING_WINDOW,
            wire.MAX_BILLING_WINDOW,
        ),
        "overhead_probe_seconds": _duration(body, "overhead_probe", 0, 0, 600),
        "load_profile": load_profile,
        "success_criteria": criteria,
        "candidate_destination": candidate_destination,
    }


SERIES_FIELDS = (
    "active_series",
    "billed_series",
    "datapoints_per_minute",
    "new_series_per_hour",
    "cpu_total_rate",
    "observed_seconds",
    "reloaded",
    "datapoints_per_second",
    "collector_cpu_percent",
    "collector_memory_bytes",
    "agent_cpu_percent",
    "agent_memory_bytes",
)


# --- views --------------------------------------------------------------------------------------


def experiment_json(
    row: dict[str, Any], tasks: list[dict[str, Any]] | None = None, latest: dict[str, Any] | None = None
) -> dict[str, Any]:
    spec = row["spec"]
    out: dict[str, Any] = {
        "id": row["id"],
        "name": row["name"],
        "phase": row["phase"],
        "phase_reason": row["phase_reason"],
        "phase_changed_at": row["phase_changed_at"],
        **{
            k: spec.get(k)
            for k in (
                "baseline_pipeline",
                "candidate_pipeline",
                "target_namespaces",
                "target_hosts",
                "parameters",
                "critical_processes",
                "load_profile",
                "duration_seconds",
                "warmup_seconds",
                "sample_interval_seconds",
                "billing_window_seconds",
                "overhead_probe_seconds",
                "success_criteria",
                "candidate_destination",
            )
        },
        "hosts": row["hosts"],
        "promoted_deployments": row["promoted_deployments"],
        "rolled_back_at": row["rolled_back_at"],
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "running_at": row["running_at"],
        "analyzing_at": row["analyzing_at"],
        "finished_at": row["finished_at"],
    }
    if tasks is not None:
        out["progress"] = {t["host_id"]: {"task_status": t["status"], "error": t["error"]} for t in tasks}
    if latest is not None:
        out["latest_measurements"] = latest
    if row.get("analysis") and isinstance(row["analysis"], dict) and "fleet" in row["analysis"]:
        out["summary"] = {
            "verdict": row["analysis"].get("verdict"),
            "promotable": row["analysis"].get("promotable"),
            "extrapolated": row["analysis"].get("extrapolated"),
            **row["analysis"]["fleet"],
            "cost": row["analysis"].get("cost"),
        }
    return out


# --- wiring ---------------------------------------------------------------------------------------


async def driver_ctx(app: web.Application) -> AsyncIterator[None]:
    """Build the experiments store, service and driver; run the driver until the app stops."""
    db = app[keys.DB]
    store = ExperimentStore(db)
    service = ExperimentService(
        db,
        store,
        EventStore(db),
        app[keys.QUEUE],
        generator_for(app),
        app[keys.DEPLOYMENTS],
        app[keys.SETTINGS],
    )
    app[SERVICE] = service
    app[DRIVER] = driver = ExperimentDriver(db, store, service)

    def on_event(event: dict[str, Any]) -> None:
        if event.get("topic") == "tasks" and (event.get("data") or {}).get("experiment_id"):
            service.wake.set()

    app[keys.HUB].on_event.append(on_event)
    task = asyncio.create_task(driver.run(), name="experiment-driver")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def experiment_metrics(app: web.Application, metrics: ApiMetrics) -> None:
    await app[DRIVER].gauges(metrics)


# --- HTTP ---------------------------------------------------------------------------------------


@routes.post("/api/v1/experiments")
async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    spec = validate_spec(body)
    auto_start = field(body, "start", bool, default=True)
    row, start_error = await request.app[SERVICE].create(new_id("exp"), spec, auto_start)
    out = experiment_json(row)
    if start_error:
        out["start_error"] = start_error
    return respond(out, status=201)


@routes.get("/api/v1/experiments")
async def list_all(request: web.Request) -> web.Response:
    phase = request.query.get("phase")
    if phase is not None and phase not in list(Phase):
        raise Problem(f"query parameter 'phase' must be one of {', '.join(Phase)}")
    rows = await request.app[SERVICE].store.recent(Phase(phase) if phase else None)
    return respond(
        {
            "experiments": [
                experiment_json(
                    {**r, "analysis": {"fleet": r["fleet"], "verdict": r["verdict"]} if r["fleet"] else None}
                )
                for r in rows
            ]
        }
    )


@routes.get("/api/v1/experiments/{id}")
async def get_one(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    row, tasks, latest_rows = await service.detail(request.match_info["id"])
    latest: dict[str, Any] = {}
    for m in latest_rows:
        latest.setdefault(m["host_id"], {})[m["variant"]] = {
            k: m[k]
            for k in (
                "ts",
                "active_series",
                "billed_series",
                "datapoints_per_minute",
                "datapoints_per_second",
            )
        }
    out = experiment_json(row, tasks, latest)
    out["spec"] = row["spec"]
    return respond(out)


@routes.post("/api/v1/experiments/{id}/start")
async def start(request: web.Request) -> web.Response:
    row = await request.app[SERVICE].start(request.match_info["id"])
    return respond(experiment_json(row))


@routes.post("/api/v1/experiments/{id}/stop")
async def stop(request: web.Request) -> web.Response:
    row = await request.app[SERVICE].stop(request.match_info["id"], "stopped by operator")
    return respond(experiment_json(row))


@routes.post("/api/v1/experiments/{id}/promote")
async def promote(request: web.Request) -> web.Response:
    """Deploy the candidate to the target namespaces through the normal deployment path."""
    experiment_id = request.match_info["id"]
    body = await json_body(request) if request.can_read_body else {}
    force = field(body, "force", bool, default=False)
    created = await request.app[SERVICE].promote(experiment_id, force)
    return respond({"experiment_id": experiment_id, "deployments": created})


@routes.post("/api/v1/experiments/{id}/rollback")
async def rollback(request: web.Request) -> web.Response:
    """Put the baseline pipeline back on every target namespace."""
    experiment_id = request.match_info["id"]
    created = await request.app[SERVICE].rollback(experiment_id)
    return respond({"experiment_id": experiment_id, "deployments": created})


@routes.get("/api/v1/experiments/{id}/results")
async def results(request: web.Request) -> web.Response:
    experiment_id = request.match_info["id"]
    # At most this many points per host and arm in each time series.
    points = query_int(request, "points", 500, 2, 5000)
    service = request.app[SERVICE]
    row = await service.get(experiment_id)
    series: dict[str, dict[str, list[dict[str, Any]]]] = {}
    coverage: dict[str, list[dict[str, Any]]] = {}
    count = 0
    # Host by host, so what is held at once is one host's rows; each arm's series and the coverage are
    # thinned to at most `points` evenly spaced points.
    async for host, rows in service.host_rows(row):
        count += len(rows)
        arms: dict[str, list[dict[str, Any]]] = {}
        for m in rows:
            s = m["sample"]
            arms.setdefault(m["variant"], []).append(
                {
                    "ts": m["ts"],
                    "phase": m["phase"],
                    "represents": m["represents"],
                    **{k: s.get(k) for k in SERIES_FIELDS},
                }
            )
        series[host] = {arm: evenly(values, points) for arm, values in arms.items()}
        coverage[host] = evenly(await asyncio.to_thread(coverage_points, rows, row["spec"]), points)
    analysis = row["analysis"] or {}
    summaries = {
        h: {k: v for k, v in d.items() if k not in ("baseline", "candidate")}
        for h, d in (analysis.get("hosts") or {}).items()
    }
    return respond(
        {
            "experiment_id": experiment_id,
            "phase": row["phase"],
            "time_series": series,
            "coverage": {host: [{**p, "ts": _utc(p["ts"])} for p in band] for host, band in coverage.items()},
            "host_summaries": summaries,
            "measurements": count,
        }
    )


def evenly(values: list[Any], points: int) -> list[Any]:
    """At most `points` of `values`, evenly spaced, the first and the last always among them."""
    if len(values) <= points:
        return values
    step = (len(values) - 1) / (points - 1)
    return [values[round(i * step)] for i in range(points)]


def _utc(ts: Any) -> dt.datetime:
    """A sample's unix time as the timestamps of the time series (the database's to_timestamp)."""
    return dt.datetime.fromtimestamp(float(ts), dt.UTC)


@routes.get("/api/v1/experiments/{id}/analysis")
async def analysis(request: web.Request) -> web.Response:
    """The final analysis, or before the run ends what has been measured so far, marked as provisional."""
    experiment_id = request.match_info["id"]
    row, result, final = await request.app[SERVICE].analysis(experiment_id)
    return respond({"experiment_id": experiment_id, "phase": row["phase"], "final": final, **result})


@routes.post("/api/v1/agent/measurements")
async def measurements(request: web.Request) -> web.Response:
    """Samples an agent measured for an experiment (or, without one, of what its collector emits now)."""
    body = await json_body(request)
    try:
        checked = wire.check(wire.Measurements, body, root="")
    except wire.WireError as exc:
        raise Problem(str(exc), field=exc.field or "samples") from None
    samples = body["samples"]
    await request.app[SERVICE].record(request[HOST_ID_KEY], checked.experiment_id, samples)
    return respond({"accepted": len(samples)}, status=202)
