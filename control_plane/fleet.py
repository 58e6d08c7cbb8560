"""Read side of the fleet: agents with their derived health, and the task list."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from control_plane import keys, names
from control_plane.jsonutil import respond
from control_plane.queue import TASK_TYPES
from control_plane.services.agents import ON_DEMAND
from phoenix_common.problems import NotFound, Problem, field, json_body, query_int

routes = web.RouteTableDef()
STATUSES = ("pending", "assigned", "running", "completed", "failed")


def agent_status(seconds_since_seen: float, stale_after: float, offline_after: float) -> str:
    if seconds_since_seen < stale_after:
        return "healthy"
    if seconds_since_seen < offline_after:
        return "stale"
    return "offline"


def _agent_json(row: dict[str, Any], app: web.Application) -> dict[str, Any]:
    settings = app[keys.SETTINGS]
    out = {
        k: row[k]
        for k in (
            "host_id",
            "namespace",
            "labels",
            "version",
            "first_seen_at",
            "last_seen_at",
            "facts",
            "collector",
            "config_hash",
        )
    }
    out["status"] = agent_status(
        float(row["seconds_since_seen"]), settings.stale_after, settings.offline_after
    )
    out["pipeline"] = (row["collector"] or {}).get("pipeline") or row.get("namespace_pipeline")
    # How its collector delivers to the destination (None: it ships nowhere, or an older agent).
    out["export"] = (row["collector"] or {}).get("export")
    return out


def _limit(request: web.Request) -> int:
    return query_int(request, "limit", 500, 1, 5000)


@routes.get("/api/v1/agents")
async def list_agents(request: web.Request) -> web.Response:
    rows = await request.app[keys.AGENTS].agents.list_agents(request.query.get("namespace"), _limit(request))
    return respond({"agents": [_agent_json(r, request.app) for r in rows]})


def _host_id(request: web.Request) -> str:
    """The path's host id; a 404 for one no agent can have."""
    host_id = request.match_info["host_id"]
    if not names.HOST_ID.match(host_id):
        raise NotFound(f"agent {host_id!r} does not exist")
    return host_id


@routes.get("/api/v1/agents/{host_id}")
async def get_agent(request: web.Request) -> web.Response:
    host_id = _host_id(request)
    row = await request.app[keys.AGENTS].agents.get(host_id)
    if row is None:
        raise NotFound(f"agent {host_id!r} does not exist")
    return respond(_agent_json(row, request.app))


@routes.patch("/api/v1/agents/{host_id}")
async def move_agent(request: web.Request) -> web.Response:
    """Move a host to another namespace (the only way, once agent tokens are on)."""
    host_id = _host_id(request)
    body = await json_body(request)
    unknown = sorted(set(body) - {"namespace"})
    if unknown:
        raise Problem(f"unknown field '{unknown[0]}'; only 'namespace' can be changed", field=unknown[0])
    namespace = names.check_namespace(field(body, "namespace", str))
    await request.app[keys.AGENTS].move(host_id, namespace)
    got = await request.app[keys.AGENTS].agents.get(host_id)
    assert got is not None
    return respond(_agent_json(got, request.app))


@routes.delete("/api/v1/agents/{host_id}")
async def delete_agent(request: web.Request) -> web.Response:
    """Decommission a host: it, its unfinished tasks and its token go; experiments no longer target it."""
    host_id = _host_id(request)
    row = await request.app[keys.AGENTS].delete(host_id, request.app[keys.TOKENS].revoke)
    if row is None:
        raise NotFound(f"agent {host_id!r} does not exist")
    return respond(
        {"host_id": host_id, "deleted": True, "tasks_removed": row["tasks_removed"], "token_revoked": True}
    )


@routes.get("/api/v1/tasks")
async def list_tasks(request: web.Request) -> web.Response:
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        raise Problem(f"query parameter 'status' must be one of {', '.join(STATUSES)}, got {status!r}")
    kind = request.query.get("type")
    if kind is not None and kind not in TASK_TYPES:
        raise Problem(f"query parameter 'type' must be one of {', '.join(TASK_TYPES)}")
    rows = await request.app[keys.QUEUE].list_tasks(
        status=status,
        host_id=request.query.get("host_id"),
        experiment_id=request.query.get("experiment_id"),
        limit=_limit(request),
    )
    if kind:
        rows = [r for r in rows if r["type"] == kind]
    return respond({"tasks": rows})


@routes.post("/api/v1/tasks")
async def request_task(request: web.Request) -> web.Response:
    """Ask agents for a health or metrics report on demand (one host, or a namespace in one statement)."""
    body = await json_body(request)
    kind = field(body, "type", str)
    if kind not in ON_DEMAND:
        raise Problem(
            f"field 'type' must be health or metrics (other tasks come from deployments and "
            f"experiments), got {kind!r}",
            field="type",
        )
    host_id = field(body, "host_id", str, default=None)
    namespace = field(body, "namespace", str, default=None)
    if (host_id is None) == (namespace is None):
        raise Problem("give exactly one of 'host_id' or 'namespace'", field="host_id")
    priority = field(body, "priority", int, default=0)
    if not -100 <= priority <= 100:
        raise Problem("field 'priority' must be between -100 and 100", field="priority")
    if host_id is not None:
        names.check_host_id(host_id, "field 'host_id'", "host_id")
    else:
        names.check_namespace(namespace or "")
    answer = await request.app[keys.AGENTS].request(kind, host_id, namespace, priority)
    return respond(answer, status=202)
