"""The PostgreSQL task queue: enqueue, claim, report, lease expiry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog
from psycopg.types.json import Jsonb

from control_plane.db import Database, Tx
from control_plane.events import publish
from phoenix_common.problems import Conflict, NotFound

log = structlog.get_logger("phoenix.queue")

TASK_TYPES = ("deployment", "metrics", "experiment", "health")
ACTIONS = {
    "deployment": ("apply",),
    "metrics": ("collect",),
    "experiment": ("start", "stop"),
    "health": ("check",),
}
REPORTABLE = ("running", "completed", "failed")
FINAL = ("completed", "failed")


def _task_params(
    *,
    type: str,
    action: str,
    payload: dict[str, Any] | None = None,
    priority: int = 0,
    max_attempts: int = 3,
    experiment_id: str | None = None,
    deployment_id: str | None = None,
    deployment_version: int | None = None,
) -> dict[str, Any]:
    return {
        "type": type,
        "action": action,
        "payload": Jsonb(payload or {}),
        "priority": priority,
        "max_attempts": max_attempts,
        "experiment_id": experiment_id,
        "deployment_id": deployment_id,
        "deployment_version": deployment_version,
    }


class TaskQueue:
    """Named operations on the tasks table."""

    def __init__(self, db: Database, *, lease_seconds: float, max_attempts: int, claim_limit: int = 10):
        self.db = db
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.claim_limit = claim_limit

    async def enqueue(self, host_id: str, **task: Any) -> dict[str, Any]:
        task.setdefault("max_attempts", self.max_attempts)
        row = await self.db.fetch_one("enqueue_task", {"host_id": host_id, **_task_params(**task)})
        assert row is not None
        return row

    async def enqueue_hosts(self, tx: Tx | None, host_ids: Sequence[str], **task: Any) -> int:
        """One task per host, in one statement."""
        task.setdefault("max_attempts", self.max_attempts)
        params = {"host_ids": list(host_ids), **_task_params(**task)}
        if tx is None:
            return await self.db.execute("enqueue_fanout_hosts", params)
        return await tx.execute("enqueue_fanout_hosts", params)

    async def enqueue_namespace(self, tx: Tx, namespace: str, **task: Any) -> int:
        """One task per agent of `namespace`, in one statement."""
        task.setdefault("max_attempts", self.max_attempts)
        return await tx.execute("enqueue_fanout_namespace", {"namespace": namespace, **_task_params(**task)})

    async def claim(self, host_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Lease a host's next tasks, most urgent first."""
        rows = await self.claim_hosts([host_id], limit)
        rows.sort(key=lambda r: (-r["priority"], r["created_at"]))
        return rows

    async def claim_hosts(self, host_ids: Sequence[str], limit: int | None = None) -> list[dict[str, Any]]:
        """Lease the next tasks of many hosts (up to `limit` each) in one statement; rows carry host_id."""
        return await self.db.fetch(
            "claim_tasks",
            {
                "host_ids": list(host_ids),
                "limit": limit or self.claim_limit,
                "lease_seconds": self.lease_seconds,
            },
        )

    async def release(self, task_ids: Sequence[str]) -> int:
        """Return claimed-but-undelivered tasks to the queue without counting the attempt."""
        return await self.db.execute("release_tasks", {"ids": list(task_ids)})

    async def report(
        self,
        host_id: str,
        task_id: str,
        status: str,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> dict[str, Any]:
        """Apply one agent report; repeating one is harmless, an illegal one is a 404/409 problem."""
        (outcome,) = await self.report_many(
            host_id, [{"id": task_id, "status": status, "result": result, "error": error}]
        )
        if outcome["outcome"] == "not_found":
            raise NotFound(f"task {task_id} does not exist for host {host_id}")
        if outcome["outcome"] == "conflict":
            raise Conflict(
                f"task {task_id} is {outcome['current_status']}; it cannot become {status}",
                current_status=outcome["current_status"],
            )
        return outcome

    async def report_many(self, host_id: str, reports: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Apply reports in one statement; each gets an outcome (applied, unchanged, conflict, not_found)."""
        latest = {str(r["id"]): r for r in reports}  # a repeated id: its last report counts
        rows = await self.db.fetch(
            "report_tasks",
            {
                "host_id": host_id,
                "lease_seconds": self.lease_seconds,
                "reports": Jsonb(list(latest.values())),
            },
        )
        applied = {str(row["id"]): row for row in rows}
        outcomes: dict[str, dict[str, Any]] = {
            task_id: {**row, "id": task_id, "outcome": "applied"} for task_id, row in applied.items()
        }
        missing = [task_id for task_id in latest if task_id not in applied]
        if missing:
            current = {
                str(r["id"]): r["status"]
                for r in await self.db.fetch("task_statuses", {"ids": missing, "host_id": host_id})
            }
            for task_id in missing:
                wanted = latest[task_id]["status"]
                if task_id not in current:
                    outcomes[task_id] = {"id": task_id, "outcome": "not_found"}
                elif current[task_id] == wanted:
                    outcomes[task_id] = {"id": task_id, "status": wanted, "outcome": "unchanged"}
                else:
                    outcomes[task_id] = {
                        "id": task_id,
                        "outcome": "conflict",
                        "current_status": current[task_id],
                    }
        return [outcomes[str(r["id"])] for r in reports]

    async def extend_leases(self, host_id: str, task_ids: Sequence[str] | None = None) -> int:
        return await self.db.execute(
            "extend_leases",
            {
                "host_id": host_id,
                "lease_seconds": self.lease_seconds,
                "task_ids": list(task_ids) if task_ids is not None else None,
            },
        )

    async def reap(self) -> list[dict[str, Any]]:
        """Requeue or fail tasks whose lease expired; safe to run in every replica at once."""
        async with self.db.transaction() as tx:
            rows = await tx.fetch("reap_expired_leases")
            for row in rows:
                kind = "task_failed" if row["status"] == "failed" else "task_requeued"
                await publish(
                    tx,
                    "tasks",
                    kind,
                    str(row["id"]),
                    data={
                        "task_id": str(row["id"]),
                        "host_id": row["host_id"],
                        "type": row["type"],
                        "status": row["status"],
                        "attempts": row["attempts"],
                        "experiment_id": row["experiment_id"],
                    },
                    reason=row["error"] or "lease expired",
                )
        for row in rows:
            log.warning(
                "lease_expired",
                task_id=str(row["id"]),
                host_id=row["host_id"],
                status=row["status"],
                attempts=row["attempts"],
            )
        return rows
