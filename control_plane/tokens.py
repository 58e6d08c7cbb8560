"""Operator endpoints for per-host agent tokens: issue (or rotate) and revoke."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from control_plane import keys, names
from control_plane.jsonutil import respond
from phoenix_common.problems import field, json_body

routes = web.RouteTableDef()


def _host_id(request: web.Request) -> str:
    return names.check_host_id(request.match_info["host_id"], "path parameter 'host_id'", "host_id")


def _no_store(body: dict[str, Any], status: int = 200) -> web.Response:
    response = respond(body, status=status)
    response.headers["Cache-Control"] = "no-store"
    return response


@routes.post("/api/v1/agents/{host_id}/token")
async def issue(request: web.Request) -> web.Response:
    """Issue (or rotate) a host's token: shown once in this answer, stored only as a hash."""
    host_id = _host_id(request)
    # Optional {"namespace"}: the host is bound to it (with agent tokens, it cannot report another).
    body = await json_body(request) if request.can_read_body else {}
    namespace = body.get("namespace")
    if namespace is not None:
        namespace = names.check_namespace(field(body, "namespace", str))
    token, row = await request.app[keys.TOKENS].issue(host_id)
    answer = {"host_id": host_id, "agent_token": token, "issued_at": row["issued_at"]}
    if namespace is not None:
        await request.app[keys.AGENTS].bind(host_id, namespace)
        answer["namespace"] = namespace
    return _no_store({**answer, "replaced": row["replaced"]}, status=201)


@routes.delete("/api/v1/agents/{host_id}/token")
async def revoke(request: web.Request) -> web.Response:
    """Revoke a host's token; the enrolment token cannot bind the host again, only a new issue can."""
    host_id = _host_id(request)
    row = await request.app[keys.TOKENS].revoke(host_id)
    return _no_store({"host_id": host_id, "revoked_at": row["revoked_at"], "had_token": row["had_token"]})
