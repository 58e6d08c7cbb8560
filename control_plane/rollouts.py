"""Failed rollouts: a deployment more hosts fail than it tolerates is failed, its predecessor restored.

Agents report a deployment task failed when the collector rejects or cannot run the config (and they
restore their last good config themselves); the lease reaper fails a task whose host stopped answering.
This watcher, in every replica, turns those task failures into a decision about the deployment: once more
than its `max_failed_hosts` hosts (0 by default: any host) failed it, the deployment becomes `failed`, its
undelivered tasks are cancelled, the namespace's previous deployment becomes active again and is re-sent
to the hosts that may not run it, and a `deployment_failed` event names the failing hosts and their errors.
A deployment restored by a rollback is never failed automatically (no cascade back through history), and
one made before migration 0006 (max_failed_hosts NULL) is not watched.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web
from psycopg.types.json import Jsonb

from control_plane import keys
from control_plane.db import Database, Tx
from control_plane.deployments import DEPLOYMENT_PRIORITY
from control_plane.events import publish
from control_plane.periodic import every
from control_plane.queue import TaskQueue

log = structlog.get_logger("phoenix.rollouts")

# Hosts named (with their errors) in the event and the status reason; the count covers the rest.
HOSTS_IN_EVENT = 10
ERROR_CHARS = 300


async def fail_failing(db: Database, queue: TaskQueue) -> list[dict[str, Any]]:
    """One pass: fail every watched active deployment beyond its threshold; returns what it did."""
    done = []
    for candidate in await db.fetch("failing_deployments"):
        outcome = await _fail_one(db, queue, candidate["id"])
        if outcome is not None:
            done.append(outcome)
    return done


async def _fail_one(db: Database, queue: TaskQueue, deployment_id: str) -> dict[str, Any] | None:
    """Fail one deployment and restore its predecessor in one transaction; None when another replica,
    a deploy or a rollback has it (the next pass looks again)."""
    async with db.transaction() as tx:
        row = await tx.fetch_one("lock_failing_deployment", {"id": deployment_id})
        if row is None:
            return None
        locked = await tx.fetch_one("try_lock_namespace", {"namespace": row["namespace"]})
        if not locked or not locked["locked"]:
            return None
        failed = await tx.fetch("deployment_failed_hosts", {"id": deployment_id, "limit": HOSTS_IN_EVENT})
        total = int(failed[0]["total"]) if failed else 0
        if total <= row["max_failed_hosts"]:
            return None  # the failures were counted before a task of this deployment changed hands
        errors = {f["host_id"]: _short(f["error"]) for f in failed}
        reason = _reason(row, total, errors)
        if await tx.fetch_one("fail_deployment", {"id": deployment_id, "reason": reason}) is None:
            return None
        cancelled = await tx.fetch(
            "cancel_undelivered_deployment_tasks",
            {"id": deployment_id, "reason": f"not sent: deployment {deployment_id} failed"},
        )
        restored, hosts = await _restore_previous(tx, queue, row)
        await publish(
            tx,
            "deployments",
            "deployment_failed",
            deployment_id,
            data={
                "deployment_id": deployment_id,
                "namespace": row["namespace"],
                "template": row["template"],
                "experiment_id": row["experiment_id"],
                "max_failed_hosts": row["max_failed_hosts"],
                "failed_host_count": total,
                "failed_hosts": errors,
                "cancelled_tasks": len(cancelled),
                "restored": restored,
                "hosts": hosts,
            },
            reason=reason,
        )
    log.warning(
        "deployment_failed",
        deployment_id=deployment_id,
        namespace=row["namespace"],
        failed_hosts=total,
        restored=restored,
        hosts=hosts,
        cancelled_tasks=len(cancelled),
        reason=reason,
    )
    return {"id": deployment_id, "restored": restored, "hosts": hosts, "failed_hosts": total}


async def _restore_previous(tx: Tx, queue: TaskQueue, row: dict[str, Any]) -> tuple[str | None, int]:
    """Make the deployment this one replaced active again and send it where it may not run."""
    if not row["previous_id"]:
        return None, 0
    previous = await tx.fetch_one("get_deployment", {"id": row["previous_id"]})
    if previous is None:
        return None, 0
    await tx.execute(
        "restore_deployment", {"id": previous["id"], "reason": f"restored: deployment {row['id']} failed"}
    )
    sent = await tx.fetch(
        "enqueue_restored_deployment",
        {
            "namespace": row["namespace"],
            "deployment_id": previous["id"],
            "version": previous["version"],
            "config_hash": previous["config_hash"],
            "failed_id": row["id"],
            "payload": Jsonb({"reason": f"deployment {row['id']} failed"}),
            "priority": DEPLOYMENT_PRIORITY,
            "max_attempts": queue.max_attempts,
        },
    )
    return previous["id"], len(sent)


def _short(error: str | None) -> str:
    text = " ".join((error or "no error reported").split())
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."


def _reason(row: dict[str, Any], total: int, errors: dict[str, str]) -> str:
    first_host, first_error = next(iter(errors.items()))
    return (
        f"{total} host(s) failed the rollout (max_failed_hosts {row['max_failed_hosts']}); "
        f"first: {first_host}: {first_error}"
    )


async def run(app: web.Application) -> None:
    """A pass about every deployment_watch_interval (jittered); errors are logged and the loop goes on."""
    interval = app[keys.SETTINGS].deployment_watch_interval
    await every(interval, "deployment_watch", lambda: fail_failing(app[keys.DB], app[keys.QUEUE]))
