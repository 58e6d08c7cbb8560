"""Pipeline deployment endpoints: create, list, show, roll back."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from control_plane import destination_spec, keys, names
from control_plane.generator_client import for_app as generator_for
from control_plane.jsonutil import respond
from control_plane.services.deployments import KEEP
from phoenix_common.problems import NotFound, Problem, field, json_body

routes = web.RouteTableDef()

NAME_RE = names.DEPLOYMENT_NAME
# A bound on max_failed_hosts that still reads as a count of hosts (a typo of 10**9 would not).
MAX_FAILED_HOSTS_LIMIT = 1_000_000


@routes.post("/api/v1/pipeline-deployments")
async def create_deployment(request: web.Request) -> web.Response:
    body = await json_body(request)
    name = field(body, "name", str)
    if not NAME_RE.match(name):
        raise Problem("field 'name' must be 1-100 letters, digits, spaces, '.', '_' or '-'", field="name")
    namespace = names.check_namespace(field(body, "namespace", str))
    template = names.check_template(field(body, "template", str))
    parameters = field(body, "parameters", dict, default={})
    max_failed_hosts = field(body, "max_failed_hosts", int, default=0)
    if not 0 <= max_failed_hosts <= MAX_FAILED_HOSTS_LIMIT:
        raise Problem(
            f"field 'max_failed_hosts' must be between 0 and {MAX_FAILED_HOSTS_LIMIT}, "
            f"got {max_failed_hosts}",
            field="max_failed_hosts",
        )
    # Left out: keep the namespace's destination; null: ship nowhere (measure locally only).
    destination = body.get("destination", KEEP)
    if isinstance(destination, str) or destination not in (None, KEEP):
        destination = destination_spec.check_name(destination, "destination")
    row = await request.app[keys.DEPLOYMENTS].create(
        name=name,
        namespace=namespace,
        template=template,
        parameters=parameters,
        max_failed_hosts=max_failed_hosts,
        allow_empty_namespace=field(body, "allow_empty_namespace", bool, default=False),
        destination=destination,
    )
    return respond(_deployment_json(row, hosts=row["hosts"]), status=201)


def _deployment_json(row: dict[str, Any], *, hosts: int | None = None, full: bool = False) -> dict[str, Any]:
    out = {
        k: row[k]
        for k in (
            "id",
            "name",
            "namespace",
            "template",
            "parameters",
            "status",
            "previous_id",
            "experiment_id",
            "created_at",
            "updated_at",
            "version",
            "config_hash",
            "max_failed_hosts",
            "status_reason",
            "restored_at",
            "destination",
        )
    }
    out["tasks"] = row.get("task_counts") or {}
    if hosts is not None:
        out["hosts"] = hosts
    if full:
        out["config_yaml"] = row.get("config_yaml")
    return out


@routes.get("/api/v1/templates")
async def list_templates(request: web.Request) -> web.Response:
    """The pipeline templates a deployment or an experiment can name: the config generator's own list
    (502 when it cannot be reached), so that a dashboard or a script needs only the API."""
    return respond({"templates": await generator_for(request.app).templates()})


@routes.get("/api/v1/pipeline-deployments")
async def list_deployments(request: web.Request) -> web.Response:
    namespace = request.query.get("namespace")
    if namespace is not None:
        names.check_namespace(namespace)
    rows = await request.app[keys.DEPLOYMENTS].deployments.list_deployments(namespace, 500)
    return respond({"deployments": [_deployment_json(r) for r in rows]})


@routes.get("/api/v1/pipeline-deployments/{id}")
async def get_deployment(request: web.Request) -> web.Response:
    row = await request.app[keys.DEPLOYMENTS].deployments.get(request.match_info["id"])
    if row is None:
        raise NotFound(f"pipeline deployment {request.match_info['id']!r} does not exist")
    return respond(_deployment_json(row, full=True))


@routes.delete("/api/v1/pipeline-deployments/{id}")
async def delete_deployment(request: web.Request) -> web.Response:
    result = await request.app[keys.DEPLOYMENTS].rollback(request.match_info["id"], "deleted by operator")
    return respond(result)
