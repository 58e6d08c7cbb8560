"""A/B experiments: the API, and the driver that moves each one through its phases."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections.abc import AsyncIterator
from typing import Any

import structlog
from aiohttp import web
from psycopg.types.json import Jsonb

from control_plane import keys, names
from control_plane.analysis import DEFAULT_CRITERIA, Prices, analyze
from control_plane.auth import HOST_ID_KEY
from control_plane.db import Tx
from control_plane.deployments import check_namespace, deploy, new_id
from control_plane.events import publish
from control_plane.generator_client import GeneratorClient
from control_plane.generator_client import for_app as generator_for
from control_plane.jsonutil import respond
from control_plane.metrics import PHASES
from phoenix_common.problems import BadGateway, Conflict, NotFound, Problem, field, json_body
from phoenix_common.settings import SettingsError, parse_duration

log = structlog.get_logger("phoenix.experiments")
routes = web.RouteTableDef()

ACTIVE = ("deploying", "warming_up", "running", "analyzing")
FINAL = ("completed", "failed", "stopped")
LOAD_PROFILES = ("realistic", "high-cardinality", "process-churn", "spike", "steady")
PROCESS_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,128}\Z")
STOP_PRIORITY = 20
START_PRIORITY = 15
WAKE = web.AppKey("experiment_wake", asyncio.Event)


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
    load_profile = field(body, "load_profile", str, default=None)
    if load_profile is not None and load_profile not in LOAD_PROFILES:
        raise Problem(f"field 'load_profile' must be one of {', '.join(LOAD_PROFILES)}", field="load_profile")
    criteria: dict[str, float] = {}
    for key, default in DEFAULT_CRITERIA.items():
        value = field(body, key, (int, float), default=default)
        if not 0 <= value <= 100:
            raise Problem(f"field '{key}' must be between 0 and 100", field=key)
        criteria[key] = float(value)
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
        "load_profile": load_profile,
        "success_criteria": criteria,
    }


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
                "success_criteria",
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
            **row["analysis"]["fleet"],
            "cost": row["analysis"].get("cost"),
        }
    return out


async def _load(app: web.Application, experiment_id: str) -> dict[str, Any]:
    row = await app[keys.DB].fetch_one("get_experiment", {"id": experiment_id})
    if row is None:
        raise NotFound(f"experiment {experiment_id!r} does not exist")
    return row


# --- transitions ----------------------------------------------------------------------------------


async def transition(tx: Tx, row: dict[str, Any], phase: str, reason: str) -> None:
    """Move an experiment to `phase`, recording the event with its reason."""
    await tx.execute("set_experiment_phase", {"id": row["id"], "phase": phase, "reason": reason})
    await publish(
        tx,
        "experiments",
        "experiment_phase",
        row["id"],
        data={"experiment_id": row["id"], "from": row["phase"], "to": phase, "phase": phase},
        reason=reason,
    )
    log.info(
        "experiment_phase", experiment_id=row["id"], from_phase=row["phase"], to_phase=phase, reason=reason
    )
    row["phase"] = phase


async def _send_stop(app: web.Application, tx: Tx, experiment_id: str, reason: str) -> int:
    """Cancel undelivered starts and tell every host that got the experiment to restore its config."""
    await tx.fetch("cancel_pending_experiment_starts", {"id": experiment_id, "reason": reason})
    hosts = [r["host_id"] for r in await tx.fetch("experiment_hosts_started", {"id": experiment_id})]
    if hosts:
        await app[keys.QUEUE].enqueue_hosts(
            tx,
            hosts,
            type="experiment",
            action="stop",
            payload={"experiment_id": experiment_id, "reason": reason},
            priority=STOP_PRIORITY,
            experiment_id=experiment_id,
        )
    return len(hosts)


async def start_experiment(app: web.Application, experiment_id: str) -> dict[str, Any]:
    """Render both pipelines through the generator and send the experiment to every target host."""
    db = app[keys.DB]
    row = await _load(app, experiment_id)
    if row["phase"] != "pending":
        raise Conflict(f"experiment {experiment_id} is {row['phase']}; only a pending experiment can start")
    spec = row["spec"]
    hosts = [
        r["host_id"]
        for r in await db.fetch(
            "experiment_target_hosts",
            {"namespaces": spec["target_namespaces"], "hosts": spec["target_hosts"]},
        )
    ]
    if not hosts:
        raise Conflict(
            f"experiment {experiment_id} has no agents in its targets "
            f"(namespaces {spec['target_namespaces']}, hosts {spec['target_hosts']})"
        )
    generated = await _generate(app, experiment_id)
    settings = app[keys.SETTINGS]
    payload = {
        "experiment_id": experiment_id,
        # The control plane ends the run with a stop task; the agent's own limit is only a safety net.
        "duration_seconds": spec["duration_seconds"] + settings.experiment_ack_timeout + 120,
        "warmup_seconds": spec["warmup_seconds"],
        "sample_interval_seconds": spec["sample_interval_seconds"],
        "critical_processes": spec["critical_processes"],
        "load_profile": spec["load_profile"],
        "baseline": generated["baseline"],
        "candidate": generated["candidate"],
    }
    async with db.transaction() as tx:
        locked = await tx.fetch_one("lock_experiment", {"id": experiment_id})
        assert locked is not None
        if locked["phase"] != "pending":
            raise Conflict(
                f"experiment {experiment_id} is {locked['phase']}; only a pending experiment can start"
            )
        rendered = {
            v: {k: generated[v].get(k) for k in ("template", "config_hash", "prometheus_endpoint")}
            for v in ("baseline", "candidate")
        }
        await tx.execute(
            "set_experiment_hosts", {"id": experiment_id, "hosts": hosts, "rendered": Jsonb(rendered)}
        )
        await app[keys.QUEUE].enqueue_hosts(
            tx,
            hosts,
            type="experiment",
            action="start",
            payload=payload,
            priority=START_PRIORITY,
            experiment_id=experiment_id,
            max_attempts=1,
        )
        await transition(tx, locked, "deploying", f"experiment sent to {len(hosts)} host(s)")
    app[WAKE].set()
    return await _load(app, experiment_id)


async def _generate(app: web.Application, experiment_id: str) -> dict[str, Any]:
    generator = generator_for(app)
    data = await generator._post("/api/v1/generate", {"experiment_id": experiment_id})
    if not isinstance(data.get("baseline"), dict) or not isinstance(data.get("candidate"), dict):
        raise BadGateway("config generator returned no baseline/candidate configurations")
    return data


async def stop_experiment(app: web.Application, experiment_id: str, reason: str) -> dict[str, Any]:
    async with app[keys.DB].transaction() as tx:
        row = await tx.fetch_one("lock_experiment", {"id": experiment_id})
        if row is None:
            raise NotFound(f"experiment {experiment_id!r} does not exist")
        if row["phase"] == "stopped":
            return row
        if row["phase"] in ("completed", "failed"):
            raise Conflict(f"experiment {experiment_id} is already {row['phase']}; there is nothing to stop")
        hosts = await _send_stop(app, tx, experiment_id, reason)
        await transition(tx, row, "stopped", f"{reason}; restoring {hosts} host(s)")
    return await _load(app, experiment_id)


# --- the driver -------------------------------------------------------------------------------


async def advance_all(app: web.Application) -> None:
    """One pass over active experiments; replicas skip rows another one holds."""
    async with app[keys.DB].transaction() as tx:
        for row in await tx.fetch("claim_active_experiments"):
            try:
                await _advance(app, tx, row)
            except Exception as exc:
                log.exception("experiment_advance_failed", experiment_id=row["id"], error=str(exc))
                await _send_stop(app, tx, row["id"], "internal error")
                await transition(tx, row, "failed", f"internal error while {row['phase']}: {exc}")


async def _advance(app: web.Application, tx: Tx, row: dict[str, Any]) -> None:
    settings = app[keys.SETTINGS]
    spec = row["spec"]
    elapsed = float(row["seconds_in_phase"])
    states = {t["host_id"]: t for t in await tx.fetch("experiment_task_states", {"id": row["id"]})}
    if row["phase"] != "analyzing":
        failed = {h: t["error"] for h, t in states.items() if t["status"] == "failed"}
        if failed:
            host, error = sorted(failed.items())[0]
            await _send_stop(app, tx, row["id"], "experiment failed")
            await transition(tx, row, "failed", f"host {host} failed the experiment: {error}")
            return
    if row["phase"] == "deploying":
        acked = [h for h in row["hosts"] if states.get(h, {}).get("status") in ("running", "completed")]
        if len(acked) == len(row["hosts"]):
            await transition(tx, row, "warming_up", f"all {len(acked)} host(s) run both pipelines")
        elif elapsed > settings.experiment_ack_timeout:
            silent = sorted(set(row["hosts"]) - set(acked))
            await _send_stop(app, tx, row["id"], "experiment failed")
            await transition(
                tx,
                row,
                "failed",
                f"host(s) never acknowledged within "
                f"{settings.experiment_ack_timeout:g}s: {', '.join(silent[:20])}",
            )
    elif row["phase"] == "warming_up":
        if elapsed >= spec["warmup_seconds"]:
            await transition(tx, row, "running", f"warm-up of {spec['warmup_seconds']:g}s done; measuring")
    elif row["phase"] == "running":
        if elapsed >= spec["duration_seconds"]:
            hosts = await _send_stop(app, tx, row["id"], "experiment finished")
            await transition(
                tx, row, "analyzing", f"ran {spec['duration_seconds']:g}s; restoring {hosts} host(s)"
            )
    elif row["phase"] == "analyzing":
        current = await tx.fetch_one("get_experiment", {"id": row["id"]})
        assert current is not None
        measurements = await tx.fetch("experiment_measurements", {"id": row["id"]})
        prices = Prices(settings.price_per_series_month, settings.price_per_million_datapoints)
        result = analyze(
            measurements,
            spec={**spec, "id": row["id"]},
            prices=prices,
            window=(current["running_at"], current["analyzing_at"]),
        )
        await tx.execute("set_experiment_analysis", {"id": row["id"], "analysis": Jsonb(result)})
        if result["status"] != "ok":
            await transition(tx, row, "failed", result["detail"])
            return
        fleet = result["fleet"]
        await transition(
            tx,
            row,
            "completed",
            f"verdict {result['verdict']}: {fleet['series_reduction_percent']}% fewer series, "
            f"{fleet['cpu_coverage_percent']}% of CPU covered",
        )


async def driver(app: web.Application) -> None:
    """Advance experiments every second, or at once when a task or request wakes it."""
    wake = app[WAKE]
    while True:
        try:
            await advance_all(app)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("experiment_driver_error", error=str(exc))
        wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=random.uniform(0.8, 1.2))


async def driver_ctx(app: web.Application) -> AsyncIterator[None]:
    app[WAKE] = asyncio.Event()

    def on_event(event: dict[str, Any]) -> None:
        if event.get("topic") == "tasks" and (event.get("data") or {}).get("experiment_id"):
            app[WAKE].set()

    app[keys.HUB].on_event.append(on_event)
    task = asyncio.create_task(driver(app), name="experiment-driver")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def experiment_metrics(app: web.Application, metrics: Any) -> None:
    metrics.phase.clear()
    metrics.reduction.clear()
    for row in await app[keys.DB].fetch("experiment_gauges"):
        metrics.phase.labels(row["id"]).set(PHASES[row["phase"]])
        if row["reduction"] is not None:
            metrics.reduction.labels(row["id"]).set(row["reduction"])


# --- HTTP ---------------------------------------------------------------------------------------


@routes.post("/api/v1/experiments")
async def create(request: web.Request) -> web.Response:
    body = await json_body(request)
    spec = validate_spec(body)
    auto_start = field(body, "start", bool, default=True)
    experiment_id = new_id("exp")
    async with request.app[keys.DB].transaction() as tx:
        await tx.fetch("insert_experiment", {"id": experiment_id, "name": spec["name"], "spec": Jsonb(spec)})
        await publish(
            tx,
            "experiments",
            "experiment_created",
            experiment_id,
            data={"experiment_id": experiment_id, "phase": "pending", "name": spec["name"]},
            reason="created",
        )
    start_error = None
    if auto_start:
        try:
            await start_experiment(request.app, experiment_id)
        except (Conflict, BadGateway, Problem) as exc:
            # Kept pending: the operator can fix the cause and POST .../start.
            start_error = exc.detail
    row = await _load(request.app, experiment_id)
    out = experiment_json(row)
    if start_error:
        out["start_error"] = start_error
    return respond(out, status=201)


@routes.get("/api/v1/experiments")
async def list_all(request: web.Request) -> web.Response:
    phase = request.query.get("phase")
    if phase is not None and phase not in PHASES:
        raise Problem(f"query parameter 'phase' must be one of {', '.join(PHASES)}")
    rows = await request.app[keys.DB].fetch("list_experiments", {"phase": phase, "limit": 500})
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
    experiment_id = request.match_info["id"]
    row = await _load(request.app, experiment_id)
    db = request.app[keys.DB]
    tasks = await db.fetch("experiment_task_states", {"id": experiment_id})
    latest: dict[str, Any] = {}
    for m in await db.fetch("experiment_measurements", {"id": experiment_id}):
        s = m["sample"]
        latest.setdefault(m["host_id"], {})[m["variant"]] = {
            "ts": m["ts"],
            "active_series": s.get("active_series"),
            "datapoints_per_second": s.get("datapoints_per_second"),
        }
    out = experiment_json(row, tasks, latest)
    # What the generator reads to render this experiment's two configurations.
    out["spec"] = row["spec"]
    return respond(out)


@routes.post("/api/v1/experiments/{id}/start")
async def start(request: web.Request) -> web.Response:
    row = await start_experiment(request.app, request.match_info["id"])
    return respond(experiment_json(row))


@routes.post("/api/v1/experiments/{id}/stop")
async def stop(request: web.Request) -> web.Response:
    row = await stop_experiment(request.app, request.match_info["id"], "stopped by operator")
    return respond(experiment_json(row))


@routes.post("/api/v1/experiments/{id}/promote")
async def promote(request: web.Request) -> web.Response:
    """Deploy the candidate to the target namespaces through the normal deployment path."""
    experiment_id = request.match_info["id"]
    row = await _load(request.app, experiment_id)
    body = await json_body(request) if request.can_read_body else {}
    force = field(body, "force", bool, default=False)
    if row["phase"] != "completed":
        raise Conflict(
            f"experiment {experiment_id} is {row['phase']}; only a completed experiment can be promoted"
        )
    verdict = (row["analysis"] or {}).get("verdict")
    if verdict != "promote" and not force:
        raise Conflict(
            f'experiment {experiment_id}\'s verdict is {verdict}; pass {{"force": true}} to promote anyway'
        )
    if row["promoted_deployments"] and not row["rolled_back_at"]:
        raise Conflict(
            f"experiment {experiment_id} is already promoted: {', '.join(row['promoted_deployments'])}"
        )
    spec = row["spec"]
    namespaces = spec["target_namespaces"]
    if not namespaces:
        raise Conflict("promotion deploys to namespaces; this experiment targeted hosts only")
    generator = generator_for(request.app)
    params = {**spec["parameters"].get("candidate", {})}
    if spec["critical_processes"] and await generator.takes(spec["candidate_pipeline"], "critical_processes"):
        params.setdefault("critical_processes", spec["critical_processes"])
    created = await _deploy_everywhere(
        request.app,
        row,
        spec["candidate_pipeline"],
        params,
        generator,
        name=f"{row['name']} (promoted)",
        reason=f"promoted from experiment {experiment_id}",
        query="set_experiment_promoted",
        kind="experiment_promoted",
        why="promoted by operator",
    )
    return respond({"experiment_id": experiment_id, "deployments": created})


async def _deploy_everywhere(
    app: web.Application,
    row: dict[str, Any],
    template: str,
    params: dict[str, Any],
    generator: GeneratorClient,
    *,
    name: str,
    reason: str,
    query: str,
    kind: str,
    why: str,
) -> list[dict[str, Any]]:
    """Deploy `template` to every target namespace of the experiment and record it on the experiment."""
    experiment_id = row["id"]
    rendered = await generator.render(template, params, variant="main")
    created = [
        await deploy(
            app,
            name=name,
            namespace=ns,
            template=template,
            parameters=params,
            rendered=rendered,
            experiment_id=experiment_id,
            reason=reason,
        )
        for ns in row["spec"]["target_namespaces"]
    ]
    ids = [c["id"] for c in created]
    async with app[keys.DB].transaction() as tx:
        await tx.execute(query, {"id": experiment_id, "ids": ids})
        await publish(
            tx,
            "experiments",
            kind,
            experiment_id,
            data={"experiment_id": experiment_id, "deployments": ids},
            reason=why,
        )
    return created


@routes.post("/api/v1/experiments/{id}/rollback")
async def rollback(request: web.Request) -> web.Response:
    """Put the baseline pipeline back on every target namespace."""
    experiment_id = request.match_info["id"]
    row = await _load(request.app, experiment_id)
    if row["phase"] in ACTIVE:
        await stop_experiment(request.app, experiment_id, "rolled back by operator")
    elif row["phase"] == "pending":
        raise Conflict(f"experiment {experiment_id} never started; there is nothing to roll back")
    spec = row["spec"]
    generator = generator_for(request.app)
    created = await _deploy_everywhere(
        request.app,
        row,
        spec["baseline_pipeline"],
        spec["parameters"].get("baseline", {}),
        generator,
        name=f"{row['name']} (baseline restored)",
        reason=f"rollback of experiment {experiment_id}",
        query="set_experiment_rolled_back",
        kind="experiment_rolled_back",
        why="rolled back by operator",
    )
    return respond({"experiment_id": experiment_id, "deployments": created})


@routes.get("/api/v1/experiments/{id}/results")
async def results(request: web.Request) -> web.Response:
    experiment_id = request.match_info["id"]
    row = await _load(request.app, experiment_id)
    measurements = await request.app[keys.DB].fetch("experiment_measurements", {"id": experiment_id})
    series: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for m in measurements:
        s = m["sample"]
        series.setdefault(m["host_id"], {}).setdefault(m["variant"], []).append(
            {
                "ts": m["ts"],
                "phase": m["phase"],
                "active_series": s.get("active_series"),
                "datapoints_per_second": s.get("datapoints_per_second"),
                "collector_cpu_percent": s.get("collector_cpu_percent"),
                "collector_memory_bytes": s.get("collector_memory_bytes"),
            }
        )
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
            "host_summaries": summaries,
            "measurements": len(measurements),
        }
    )


@routes.get("/api/v1/experiments/{id}/analysis")
async def analysis(request: web.Request) -> web.Response:
    experiment_id = request.match_info["id"]
    row = await _load(request.app, experiment_id)
    if row["analysis"] is None:
        # Before the run ends: what has been measured so far, marked as provisional.
        measurements = await request.app[keys.DB].fetch("experiment_measurements", {"id": experiment_id})
        settings = request.app[keys.SETTINGS]
        result = analyze(
            measurements,
            spec=row["spec"],
            prices=Prices(settings.price_per_series_month, settings.price_per_million_datapoints),
        )
        return respond({"experiment_id": experiment_id, "phase": row["phase"], "final": False, **result})
    return respond({"experiment_id": experiment_id, "phase": row["phase"], "final": True, **row["analysis"]})


_NUMBERS = (
    "active_series",
    "datapoints_per_second",
    "collector_cpu_percent",
    "collector_memory_bytes",
    "interval_seconds",
)
_NUMBER_MAPS = (
    "series_per_metric",
    "process_cpu_seconds_rate",
    "process_memory_bytes",
    "process_cpu_seconds_total",
)
# Unix seconds from 2000 to 2200: anything else is a broken clock or a broken client.
_TS_RANGE = (946_684_800, 7_258_118_400)


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and value == value and value >= 0


def _check_sample(i: int, sample: Any) -> None:
    """A sample as docs/contracts.md describes it; every figure the analysis reads must be a number."""
    where = f"samples[{i}]"
    if not isinstance(sample, dict):
        raise Problem(f"{where} must be an object", field="samples")
    if not isinstance(sample.get("variant"), str) or not 0 < len(sample["variant"]) <= 64:
        raise Problem(f"{where}.variant must be a string of 1-64 characters", field="samples")
    ts = sample.get("ts")
    if not (isinstance(ts, int | float) and _is_number(ts) and _TS_RANGE[0] <= ts <= _TS_RANGE[1]):
        raise Problem(f"{where}.ts must be a unix time in seconds", field="samples")
    if "active_series" not in sample:
        raise Problem(f"{where}.active_series is required", field="samples")
    for key in _NUMBERS:
        if sample.get(key) is not None and not _is_number(sample[key]):
            raise Problem(f"{where}.{key} must be a non-negative number", field="samples")
    for key in _NUMBER_MAPS:
        value = sample.get(key)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(_is_number(v) for v in value.values()):
            raise Problem(f"{where}.{key} must map names to non-negative numbers", field="samples")
    for key in ("kept_processes",):
        value = sample.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise Problem(f"{where}.{key} must be an array of strings", field="samples")
    present = sample.get("critical_present")
    if present is not None and not (
        isinstance(present, dict) and all(isinstance(v, bool) for v in present.values())
    ):
        raise Problem(f"{where}.critical_present must map names to booleans", field="samples")


@routes.post("/api/v1/agent/measurements")
async def measurements(request: web.Request) -> web.Response:
    """Samples an agent measured for an experiment (or, without one, of what its collector emits now)."""
    host_id = request[HOST_ID_KEY]
    body = await json_body(request)
    samples = field(body, "samples", list)
    if not 0 < len(samples) <= 200:
        raise Problem("field 'samples' must hold 1-200 samples", field="samples")
    for i, sample in enumerate(samples):
        _check_sample(i, sample)
    experiment_id = field(body, "experiment_id", str, default=None)
    db = request.app[keys.DB]
    if experiment_id is None:
        latest = list({s["variant"]: s for s in samples}.values())  # one row per variant
        await db.execute("upsert_emission", {"host_id": host_id, "samples": Jsonb(latest)})
        return respond({"accepted": len(samples)}, status=202)
    row = await _load(request.app, experiment_id)
    if host_id not in row["hosts"]:
        raise Conflict(f"host {host_id} is not part of experiment {experiment_id}")
    await db.execute(
        "insert_measurements",
        {
            "experiment_id": experiment_id,
            "host_id": host_id,
            "phase": row["phase"],
            "samples": Jsonb(samples),
        },
    )
    last = samples[-1]
    await publish(
        db,
        "experiments",
        "measurement",
        experiment_id,
        data={
            "experiment_id": experiment_id,
            "host_id": host_id,
            "phase": row["phase"],
            "points": [
                {"variant": s["variant"], "ts": s["ts"], "active_series": s["active_series"]}
                for s in samples[-10:]
            ],
            "variant": last["variant"],
        },
    )
    return respond({"accepted": len(samples)}, status=202)
