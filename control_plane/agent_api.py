"""Endpoints the agents call: heartbeat, long-poll for tasks, status reports."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from aiohttp import web

from control_plane import keys, names
from control_plane.auth import HOST_ID_KEY, NEW_HOST_TOKEN_KEY
from control_plane.jsonutil import respond
from control_plane.queue import REPORTABLE, check_outcome
from phoenix_common import wire
from phoenix_common.problems import Problem, field, json_body

log = structlog.get_logger("phoenix.agent_api")
routes = web.RouteTableDef()


def _task_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "type": row["type"],
        "action": row["action"],
        "payload": row["payload"],
        "attempts": row["attempts"],
        "priority": row["priority"],
        "experiment_id": row["experiment_id"],
        "deployment_id": row["deployment_id"],
        "lease_expires_at": row["lease_expires_at"],
    }


def _validate_heartbeat(body: dict[str, Any]) -> dict[str, Any]:
    # JSON null means absent, as everywhere in the API.
    body = {k: v for k, v in body.items() if v is not None}
    try:
        wire.check(wire.Heartbeat, body, "")
    except wire.WireError as exc:
        raise Problem(f"field '{exc.field}' {exc.reason}", field=exc.field) from None
    if "namespace" in body:
        names.check_namespace(body["namespace"])
    for task_id in body.get("running_tasks", ()):
        _check_uuid(task_id, status=400)
    keep = ("namespace", "labels", "version", "facts", "collector", "running_tasks")
    return {k: v for k, v in body.items() if k in keep}


@routes.post("/api/v1/agent/heartbeat")
async def heartbeat(request: web.Request) -> web.Response:
    host_id = request[HOST_ID_KEY]
    body = _validate_heartbeat(await json_body(request))
    namespace = await request.app[keys.AGENTS].heartbeat(host_id, body)
    settings = request.app[keys.SETTINGS]
    answer: dict[str, Any] = {
        "host_id": host_id,
        "namespace": namespace,
        "status": "healthy",
        "poll_wait_seconds": settings.long_poll_default,
    }
    own = request.get(NEW_HOST_TOKEN_KEY)
    if own:
        answer["agent_token"] = own
    return respond(answer)


@routes.get("/api/v1/agent/tasks")
async def poll_tasks(request: web.Request) -> web.Response:
    """Long poll: answer at once with pending tasks, else wait for a NOTIFY up to `wait` seconds."""
    settings = request.app[keys.SETTINGS]
    host_id = request[HOST_ID_KEY]
    raw_wait = request.query.get("wait", str(settings.long_poll_default))
    try:
        wait = float(raw_wait)
    except ValueError:
        raise Problem(f"query parameter 'wait' must be a number of seconds, got {raw_wait!r}") from None
    if not 0 <= wait <= settings.long_poll_max:
        raise Problem(f"query parameter 'wait' must be between 0 and {settings.long_poll_max:g} seconds")
    tasks = await request.app[keys.AGENTS].poll(host_id, wait, lambda: _gone(request))
    return respond({"tasks": [_task_json(t) for t in tasks]})


def _validate_report(body: dict[str, Any]) -> dict[str, Any]:
    status = field(body, "status", str)
    if status not in REPORTABLE:
        raise Problem(
            f"field 'status' must be one of {', '.join(REPORTABLE)}, got {status!r}", field="status"
        )
    result = field(body, "result", dict, default=None)
    error = field(body, "error", str, default=None)
    if status == "failed" and not error:
        raise Problem("field 'error' is required when status is failed", field="error")
    return {"status": status, "result": result, "error": error[:4000] if error else None}


@routes.post("/api/v1/agent/tasks/{task_id}/status")
async def report_status(request: web.Request) -> web.Response:
    host_id = request[HOST_ID_KEY]
    task_id = request.match_info["task_id"]
    _check_uuid(task_id)
    report = _validate_report(await json_body(request))
    (outcome,) = await request.app[keys.REPORTS].submit(host_id, [{"id": task_id, **report}])
    check_outcome(outcome, host_id, report["status"])
    log.info("task_reported", host_id=host_id, task_id=task_id, status=report["status"])
    return respond({"id": task_id, "status": report["status"]})


@routes.post("/api/v1/agent/tasks/status")
async def report_many(request: web.Request) -> web.Response:
    """Several reports in one request and one statement; each gets its own outcome."""
    host_id = request[HOST_ID_KEY]
    reports = field(await json_body(request), "reports", list)
    if not 0 < len(reports) <= 100:
        raise Problem("field 'reports' must hold 1-100 reports", field="reports")
    checked = []
    for i, item in enumerate(reports):
        if not isinstance(item, dict):
            raise Problem(f"reports[{i}] must be an object", field="reports")
        task_id = field(item, "id", str)
        _check_uuid(task_id, status=400)
        checked.append({"id": task_id, **_validate_report(item)})
    outcomes = await request.app[keys.REPORTS].submit(host_id, checked)
    return respond(
        {
            "results": [
                {
                    "id": o["id"],
                    "outcome": o["outcome"],
                    **({"current_status": o["current_status"]} if "current_status" in o else {}),
                }
                for o in outcomes
            ]
        }
    )


def _gone(request: web.Request) -> bool:
    """Whether the long-polling client has disconnected."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _check_uuid(value: str, status: int = 404) -> None:
    try:
        uuid.UUID(value)
    except ValueError:
        raise Problem(
            f"task id {value!r} is not a UUID",
            status=status,
            title="Not Found" if status == 404 else "Bad Request",
        ) from None
