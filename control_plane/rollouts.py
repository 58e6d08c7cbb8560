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

from control_plane.services.deployments import DeploymentService

log = structlog.get_logger("phoenix.rollouts")

# Hosts named (with their errors) in the event and the status reason; the count covers the rest.
HOSTS_IN_EVENT = 10
ERROR_CHARS = 300


async def fail_failing(service: DeploymentService) -> list[dict[str, Any]]:
    """One pass: fail every watched active deployment beyond its threshold; returns what it did."""
    done = []
    for deployment_id in await service.deployments.failing():
        outcome = await _fail_one(service, deployment_id)
        if outcome is not None:
            done.append(outcome)
    return done


async def _fail_one(service: DeploymentService, deployment_id: str) -> dict[str, Any] | None:
    """Fail one deployment and restore its predecessor in one transaction; None when another replica,
    a deploy or a rollback has it (the next pass looks again)."""
    store = service.deployments
    async with service.db.transaction() as tx:
        row = await store.lock_failing(deployment_id, tx)
        if row is None or not await store.try_lock_namespace(row["namespace"], tx):
            return None
        failed = await store.failed_hosts(deployment_id, HOSTS_IN_EVENT, tx)
        total = int(failed[0]["total"]) if failed else 0
        if total <= row["max_failed_hosts"]:
            return None  # the failures were counted before a task of this deployment changed hands
        errors = {f["host_id"]: _short(f["error"]) for f in failed}
        reason = _reason(row, total, errors)
        if not await store.fail(deployment_id, reason, tx):
            return None
        cancelled = await service.tasks.cancel_undelivered(
            deployment_id, f"not sent: deployment {deployment_id} failed", tx
        )
        restored, hosts = await service.restore_previous(row, f"deployment {deployment_id} failed", tx)
        await service.events.publish(
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
                "cancelled_tasks": cancelled,
                "restored": restored,
                "hosts": hosts,
            },
            reason=reason,
            tx=tx,
        )
    log.warning(
        "deployment_failed",
        deployment_id=deployment_id,
        namespace=row["namespace"],
        failed_hosts=total,
        restored=restored,
        hosts=hosts,
        cancelled_tasks=cancelled,
        reason=reason,
    )
    return {"id": deployment_id, "restored": restored, "hosts": hosts, "failed_hosts": total}


def _short(error: str | None) -> str:
    text = " ".join((error or "no error reported").split())
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 3] + "..."


def _reason(row: dict[str, Any], total: int, errors: dict[str, str]) -> str:
    first_host, first_error = next(iter(errors.items()))
    return (
        f"{total} host(s) failed the rollout (max_failed_hosts {row['max_failed_hosts']}); "
        f"first: {first_host}: {first_error}"
    )
