"""Pipeline deployments: render once, fan out to a namespace in one statement, roll back."""

from __future__ import annotations

import secrets
from typing import Any

import structlog
from aiohttp import web
from psycopg.types.json import Jsonb

from control_plane import keys, names
from control_plane.db import Tx
from control_plane.events import publish
from control_plane.generator_client import for_app as generator_for
from control_plane.jsonutil import respond
from control_plane.queue import TaskQueue
from phoenix_common.problems import Conflict, NotFound, Problem, field, json_body

log = structlog.get_logger("phoenix.deployments")
routes = web.RouteTableDef()

NAMESPACE_RE = names.NAMESPACE
NAME_RE = names.DEPLOYMENT_NAME
DEPLOYMENT_PRIORITY = 10
# A bound on max_failed_hosts that still reads as a count of hosts (a typo of 10**9 would not).
MAX_FAILED_HOSTS_LIMIT = 1_000_000


def check_namespace(value: str, name: str = "namespace") -> str:
    if not NAMESPACE_RE.match(value):
        raise Problem(
            f"field '{name}' must be a DNS label (lowercase letters, digits, '-'), got {value!r}", field=name
        )
    return value


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


async def deploy(
    app: web.Application,
    *,
    name: str,
    namespace: str,
    template: str,
    parameters: dict[str, Any],
    rendered: dict[str, Any],
    experiment_id: str | None = None,
    reason: str = "created",
    max_failed_hosts: int = 0,
) -> dict[str, Any]:
    """Make `rendered` the namespace's active deployment and queue it for every agent there.

    It is failed, and the previous one restored, once more than `max_failed_hosts` hosts fail it
    (control_plane/rollouts.py).
    """
    db = app[keys.DB]
    queue = app[keys.QUEUE]
    deployment_id = new_id("dep")
    async with db.transaction() as tx:
        await tx.fetch("lock_namespace", {"namespace": namespace})
        previous = await tx.fetch_one("active_deployment", {"namespace": namespace})
        if previous:
            await tx.execute("set_deployment_status", {"id": previous["id"], "status": "superseded"})
        await tx.fetch(
            "insert_deployment",
            {
                "id": deployment_id,
                "name": name,
                "namespace": namespace,
                "template": template,
                "parameters": Jsonb(parameters),
                "previous_id": previous["id"] if previous else None,
                "experiment_id": experiment_id,
                "max_failed_hosts": max_failed_hosts,
            },
        )
        await tx.execute(
            "insert_deployment_version",
            {
                "deployment_id": deployment_id,
                "version": 1,
                "config_yaml": rendered["config_yaml"],
                "config_hash": rendered["config_hash"],
                "rendered": Jsonb({k: v for k, v in rendered.items() if k != "config_yaml"}),
            },
        )
        hosts = await _fan_out(tx, queue, namespace, deployment_id, 1, reason)
        await publish(
            tx,
            "deployments",
            "deployment_created",
            deployment_id,
            data={
                "deployment_id": deployment_id,
                "namespace": namespace,
                "template": template,
                "hosts": hosts,
                "experiment_id": experiment_id,
            },
            reason=reason,
        )
    log.info(
        "deployment_created", deployment_id=deployment_id, namespace=namespace, template=template, hosts=hosts
    )
    return {"id": deployment_id, "hosts": hosts, "previous_id": previous["id"] if previous else None}


async def _fan_out(
    tx: Tx, queue: TaskQueue, namespace: str, deployment_id: str, version: int, reason: str
) -> int:
    return await queue.enqueue_namespace(
        tx,
        namespace,
        type="deployment",
        action="apply",
        payload={"reason": reason},
        priority=DEPLOYMENT_PRIORITY,
        deployment_id=deployment_id,
        deployment_version=version,
    )


@routes.post("/api/v1/pipeline-deployments")
async def create_deployment(request: web.Request) -> web.Response:
    body = await json_body(request)
    name = field(body, "name", str)
    if not NAME_RE.match(name):
        raise Problem("field 'name' must be 1-100 letters, digits, spaces, '.', '_' or '-'", field="name")
    namespace = check_namespace(field(body, "namespace", str))
    template = names.check_template(field(body, "template", str))
    parameters = field(body, "parameters", dict, default={})
    max_failed_hosts = field(body, "max_failed_hosts", int, default=0)
    if not 0 <= max_failed_hosts <= MAX_FAILED_HOSTS_LIMIT:
        raise Problem(
            f"field 'max_failed_hosts' must be between 0 and {MAX_FAILED_HOSTS_LIMIT}, "
            f"got {max_failed_hosts}",
            field="max_failed_hosts",
        )
    db = request.app[keys.DB]
    count = await db.fetch_one("namespace_agent_count", {"namespace": namespace})
    if (not count or count["n"] == 0) and not field(body, "allow_empty_namespace", bool, default=False):
        raise NotFound(
            f"namespace {namespace!r} has no registered agents; start an agent in it first "
            'or pass "allow_empty_namespace": true to deploy ahead of them',
            field="namespace",
        )
    generator = generator_for(request.app)
    rendered = await generator.render(template, parameters, variant="main")
    created = await deploy(
        request.app,
        name=name,
        namespace=namespace,
        template=template,
        parameters=parameters,
        rendered=rendered,
        max_failed_hosts=max_failed_hosts,
    )
    row = await db.fetch_one("get_deployment", {"id": created["id"]})
    assert row is not None
    return respond(_deployment_json(row, hosts=created["hosts"]), status=201)


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
        )
    }
    out["tasks"] = row.get("task_counts") or {}
    if hosts is not None:
        out["hosts"] = hosts
    if full:
        out["config_yaml"] = row.get("config_yaml")
    return out


@routes.get("/api/v1/pipeline-deployments")
async def list_deployments(request: web.Request) -> web.Response:
    namespace = request.query.get("namespace")
    if namespace is not None:
        check_namespace(namespace)
    rows = await request.app[keys.DB].fetch("list_deployments", {"namespace": namespace, "limit": 500})
    return respond({"deployments": [_deployment_json(r) for r in rows]})


@routes.get("/api/v1/pipeline-deployments/{id}")
async def get_deployment(request: web.Request) -> web.Response:
    row = await request.app[keys.DB].fetch_one("get_deployment", {"id": request.match_info["id"]})
    if row is None:
        raise NotFound(f"pipeline deployment {request.match_info['id']!r} does not exist")
    return respond(_deployment_json(row, full=True))


async def rollback(app: web.Application, deployment_id: str, reason: str) -> dict[str, Any]:
    """Retire an active deployment and re-deploy the one it replaced."""
    db = app[keys.DB]
    queue = app[keys.QUEUE]
    async with db.transaction() as tx:
        row = await tx.fetch_one("get_deployment", {"id": deployment_id})
        if row is None:
            raise NotFound(f"pipeline deployment {deployment_id!r} does not exist")
        await tx.fetch("lock_namespace", {"namespace": row["namespace"]})
        active = await tx.fetch_one("active_deployment", {"namespace": row["namespace"]})
        if not active or active["id"] != deployment_id:
            raise Conflict(
                f"pipeline deployment {deployment_id} is {row['status']}, not the active one of "
                f"namespace {row['namespace']}; only the active deployment can be rolled back"
            )
        await tx.execute(
            "set_deployment_status_reason", {"id": deployment_id, "status": "rolled_back", "reason": reason}
        )
        restored = None
        hosts = 0
        if row["previous_id"]:
            previous = await tx.fetch_one("get_deployment", {"id": row["previous_id"]})
            assert previous is not None
            await tx.execute(
                "restore_deployment",
                {"id": previous["id"], "reason": f"restored by rollback of {deployment_id}"},
            )
            hosts = await _fan_out(
                tx,
                queue,
                row["namespace"],
                previous["id"],
                previous["version"],
                f"rollback of {deployment_id}",
            )
            restored = previous["id"]
        await publish(
            tx,
            "deployments",
            "deployment_rolled_back",
            deployment_id,
            data={
                "deployment_id": deployment_id,
                "namespace": row["namespace"],
                "restored": restored,
                "hosts": hosts,
            },
            reason=reason,
        )
    return {"id": deployment_id, "status": "rolled_back", "restored_deployment_id": restored, "hosts": hosts}


@routes.delete("/api/v1/pipeline-deployments/{id}")
async def delete_deployment(request: web.Request) -> web.Response:
    result = await rollback(request.app, request.match_info["id"], "deleted by operator")
    return respond(result)
