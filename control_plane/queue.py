"""The PostgreSQL task queue: enqueue, claim, report, lease expiry."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog
from psycopg.types.json import Jsonb

from control_plane.db import Database, Tx
from control_plane.stores.events import EventStore
from phoenix_common.problems import Conflict, NotFound, Problem

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
        self.events = EventStore(db)

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

    async def cancel_experiment_starts(self, experiment_id: str, reason: str, tx: Tx) -> list[str]:
        """Fail the experiment's start tasks no agent has claimed yet; the hosts they were for."""
        rows = await tx.fetch("cancel_pending_experiment_starts", {"id": experiment_id, "reason": reason})
        return [r["host_id"] for r in rows]

    async def enqueue_active_deployment(self, host_ids: Sequence[str], tx: Tx | None = None) -> int:
        """Send their namespace's active deployment to hosts that neither run it nor have it queued."""
        rows = await (tx or self.db).fetch(
            "enqueue_active_deployment_for_hosts", {"host_ids": list(host_ids)}
        )
        return len(rows)

    async def enqueue_restored(
        self, restored: dict[str, Any], failed_id: str, reason: str, priority: int, tx: Tx | None = None
    ) -> int:
        """Send a restored deployment to its namespace's hosts that may not run it: those whose config
        differs and those that received (or may still receive) `failed_id`, unless they have it queued."""
        rows = await (tx or self.db).fetch(
            "enqueue_restored_deployment",
            {
                "namespace": restored["namespace"],
                "deployment_id": restored["id"],
                "version": restored["version"],
                "config_hash": restored["config_hash"],
                "failed_id": failed_id,
                "payload": Jsonb({"reason": reason}),
                "priority": priority,
                "max_attempts": self.max_attempts,
            },
        )
        return len(rows)

    async def cancel_undelivered(self, deployment_id: str, reason: str, tx: Tx | None = None) -> int:
        """Fail the deployment's tasks no host has received yet; how many."""
        rows = await (tx or self.db).fetch(
            "cancel_undelivered_deployment_tasks", {"id": deployment_id, "reason": reason}
        )
        return len(rows)

    async def cancel_pending(self, deployment_id: str, reason: str, tx: Tx) -> int:
        """Fail the deployment's pending tasks (received or not); how many."""
        rows = await tx.fetch("cancel_pending_deployment_tasks", {"id": deployment_id, "reason": reason})
        return len(rows)

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
        return check_outcome(outcome, host_id, status)

    async def report_many(self, host_id: str, reports: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Apply one host's reports in one statement; each gets an outcome (applied, unchanged, conflict,
        not_found). A repeated id: its last report counts."""
        latest = {str(r["id"]): {**r, "host_id": host_id} for r in reports}
        outcomes = await self.apply_reports(list(latest.values()))
        return [outcomes[str(r["id"])] for r in reports]

    async def apply_reports(self, reports: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Reports of any hosts (each carries its host_id; ids unique) in one statement; outcomes by id."""
        rows = await self.db.fetch(
            "report_tasks", {"lease_seconds": self.lease_seconds, "reports": Jsonb(list(reports))}
        )
        outcomes: dict[str, dict[str, Any]] = {
            str(row["id"]): {**row, "id": str(row["id"]), "outcome": "applied"} for row in rows
        }
        missing = {str(r["id"]): r for r in reports if str(r["id"]) not in outcomes}
        if missing:
            current = {str(r["id"]): r for r in await self.db.fetch("task_statuses", {"ids": list(missing)})}
            for task_id, report in missing.items():
                row = current.get(task_id)
                if row is None or row["host_id"] != report["host_id"]:
                    outcomes[task_id] = {"id": task_id, "outcome": "not_found"}
                elif row["status"] == report["status"]:
                    outcomes[task_id] = {"id": task_id, "status": row["status"], "outcome": "unchanged"}
                else:
                    outcomes[task_id] = {"id": task_id, "outcome": "conflict"}
                    outcomes[task_id]["current_status"] = row["status"]
        return outcomes

    async def extend_leases(self, host_id: str, task_ids: Sequence[str] | None = None) -> int:
        return await self.db.execute(
            "extend_leases",
            {
                "host_id": host_id,
                "lease_seconds": self.lease_seconds,
                "task_ids": list(task_ids) if task_ids is not None else None,
            },
        )

    async def renew_leases(self, tx: Tx | None = None) -> int:
        """Give every lease a full period from now (after an outage no agent could renew one in)."""
        return await (tx or self.db).execute(
            "renew_leases_after_outage", {"lease_seconds": self.lease_seconds}
        )

    async def list_tasks(
        self, *, status: str | None, host_id: str | None, experiment_id: str | None, limit: int
    ) -> list[dict[str, Any]]:
        """Tasks, newest first."""
        return await self.db.fetch(
            "list_tasks",
            {"status": status, "host_id": host_id, "experiment_id": experiment_id, "limit": limit},
        )

    async def depth(self) -> dict[str, int]:
        """How many tasks are in each status."""
        return {r["status"]: r["n"] for r in await self.db.fetch("queue_depth")}

    async def finished(self) -> dict[tuple[str, str], int]:
        """Final tasks by (type, status), counting those retention pruned: never goes backwards."""
        return {(r["type"], r["status"]): r["n"] for r in await self.db.fetch("tasks_finished")}

    async def reap(self) -> list[dict[str, Any]]:
        """Requeue or fail tasks whose lease expired, and fail the pending tasks of deployments no longer
        active (never applied after the one that replaced them); safe to run in every replica at once."""
        async with self.db.transaction() as tx:
            rows = await tx.fetch("reap_expired_leases")
            inactive = await tx.fetch("fail_inactive_deployment_tasks")
            for row in [*rows, *inactive]:
                kind = "task_failed" if row["status"] == "failed" else "task_requeued"
                await self.events.publish(
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
                    tx=tx,
                )
        for row in rows:
            log.warning(
                "lease_expired",
                task_id=str(row["id"]),
                host_id=row["host_id"],
                status=row["status"],
                attempts=row["attempts"],
            )
        for row in inactive:
            log.info("inactive_deployment_task_failed", task_id=str(row["id"]), host_id=row["host_id"])
        return rows


def check_outcome(outcome: dict[str, Any], host_id: str, status: str) -> dict[str, Any]:
    """A single report's outcome, or the 404/409 problem it amounts to."""
    task_id = outcome["id"]
    if outcome["outcome"] == "not_found":
        raise NotFound(f"task {task_id} does not exist for host {host_id}")
    if outcome["outcome"] == "conflict":
        raise Conflict(
            f"task {task_id} is {outcome['current_status']}; it cannot become {status}",
            current_status=outcome["current_status"],
        )
    return outcome


# One request's reports: host, reports by task id, the future its outcomes go to.
_Request = tuple[str, dict[str, dict[str, Any]], asyncio.Future[list[dict[str, Any]]]]


class ReportBatcher:
    """Group commit for agent reports: requests that arrive while a statement runs share the next one.

    An idle batcher applies a report at once; under a fan-out, thousands of agents reporting together
    cost a few statements instead of one each. A batch that the database refuses for its input (one
    agent's bad value) is applied request by request, so only that request fails.
    """

    def __init__(self, queue: TaskQueue, *, max_reports: int = 1000) -> None:
        self.queue = queue
        self.max_reports = max_reports
        self._pending: list[_Request] = []
        self._kick = asyncio.Event()
        self.statements = 0

    async def submit(self, host_id: str, reports: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Outcomes of one request's reports, in its order (a repeated id: its last report counts)."""
        latest = {str(r["id"]): {**r, "host_id": host_id} for r in reports}
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._pending.append((host_id, latest, future))
        self._kick.set()
        by_id = {o["id"]: o for o in await future}
        return [by_id[str(r["id"])] for r in reports]

    def _take(self) -> list[_Request]:
        """The next batch: whole requests, no task id twice (a later report of it waits its turn)."""
        batch: list[_Request] = []
        left: list[_Request] = []
        seen: set[str] = set()
        count = 0
        for item in self._pending:
            ids, future = item[1].keys(), item[2]
            if future.done():
                continue  # its caller went away
            if batch and (count + len(ids) > self.max_reports or not seen.isdisjoint(ids)):
                left.append(item)
                continue
            batch.append(item)
            seen.update(ids)
            count += len(ids)
        self._pending = left
        return batch

    async def run(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            while self._pending:
                batch = self._take()
                if batch:
                    await self._apply(batch)

    async def _apply(self, batch: list[_Request]) -> None:
        try:
            self.statements += 1
            rows = [report for _, reports, _ in batch for report in reports.values()]
            outcomes = await self.queue.apply_reports(rows)
        except asyncio.CancelledError:
            for _, _, future in batch:
                future.cancel()
            raise
        except Problem as exc:
            if exc.status < 500 and len(batch) > 1:
                for item in batch:  # find the request at fault; the others go through
                    await self._apply([item])
                return
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, reports, future in batch:
            if not future.done():
                future.set_result([outcomes[task_id] for task_id in reports])
