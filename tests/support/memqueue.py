"""An in-memory TaskQueue: the part Dispatcher and ReportBatcher use, for unit tests without a database.

tests/integration/test_queue_conformance.py runs one suite against it and against the real TaskQueue,
so what the unit tests prove on it holds for PostgreSQL (pgqueuer's test_port_conformance.py, likewise).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from phoenix_common.problems import Problem

# Columns of the claim_tasks and report_tasks rows.
CLAIMED = ("id", "host_id", "type", "action", "priority", "attempts", "max_attempts", "experiment_id")
REPORTED = ("id", "host_id", "type", "action", "status", "experiment_id", "deployment_id", "attempts")


class MemoryQueue:
    """Tasks in a dict, with the claim, release and report rules of sql/ and the NOTIFY of its triggers."""

    def __init__(self, *, lease_seconds: float = 300.0, max_attempts: int = 3, claim_limit: int = 10):
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.claim_limit = claim_limit
        self.tasks: dict[str, dict[str, Any]] = {}
        self.listeners: list[Callable[[str], None]] = []  # what LISTEN phoenix_tasks would be told
        self.calls: list[tuple[str, int]] = []  # (method, rows it was given) per statement run
        # Clear it to hold the answers of claims, releases and reports (their effect is already done: the
        # statement ran, its answer is slow) until it is set again.
        self.open = asyncio.Event()
        self.open.set()
        self.failure: Exception | None = None  # raised by the next statement, then forgotten
        self._order = itertools.count()

    def count(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name == method)

    def _statement(self, method: str, rows: int) -> None:
        self.calls.append((method, rows))
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure

    def _notify(self, hosts: Sequence[str]) -> None:
        # The insert trigger sends one wildcard instead of a NOTIFY per host for a large statement.
        for host in ["*"] if len(hosts) > 100 else list(dict.fromkeys(hosts)):
            for listener in self.listeners:
                listener(host)

    def _insert(self, host_id: str, task: dict[str, Any]) -> dict[str, Any]:
        row = {
            "id": uuid.uuid4(),
            "host_id": host_id,
            "type": task["type"],
            "action": task["action"],
            "payload": task.get("payload") or {},
            "priority": task.get("priority", 0),
            "max_attempts": task.get("max_attempts", self.max_attempts),
            "experiment_id": task.get("experiment_id"),
            "deployment_id": task.get("deployment_id"),
            "status": "pending",
            "attempts": 0,
            "lease_expires_at": None,
            "created_at": datetime.now(UTC),
            "order": next(self._order),
            "result": None,
            "error": None,
        }
        self.tasks[str(row["id"])] = row
        return row

    async def enqueue(self, host_id: str, **task: Any) -> dict[str, Any]:
        self.calls.append(("enqueue", 1))
        row = self._insert(host_id, task)
        self._notify([host_id])
        return {k: row[k] for k in ("id", "host_id", "type", "action", "status", "priority", "created_at")}

    async def enqueue_hosts(self, tx: None, host_ids: Sequence[str], **task: Any) -> int:
        self.calls.append(("enqueue_hosts", len(host_ids)))
        for host_id in host_ids:
            self._insert(host_id, task)
        self._notify(host_ids)
        return len(host_ids)

    async def claim(self, host_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        rows = await self.claim_hosts([host_id], limit)
        rows.sort(key=lambda r: (-r["priority"], r["created_at"]))
        return rows

    async def claim_hosts(self, host_ids: Sequence[str], limit: int | None = None) -> list[dict[str, Any]]:
        self._statement("claim_hosts", len(host_ids))
        lease = datetime.now(UTC) + timedelta(seconds=self.lease_seconds)
        rows = []
        for host in dict.fromkeys(host_ids):
            pending = [t for t in self.tasks.values() if t["host_id"] == host and t["status"] == "pending"]
            pending.sort(key=lambda t: (-t["priority"], t["order"]))
            for task in pending[: limit or self.claim_limit]:
                task.update(status="assigned", attempts=task["attempts"] + 1, lease_expires_at=lease)
                row = {k: task[k] for k in (*CLAIMED, "deployment_id", "lease_expires_at", "created_at")}
                rows.append({**row, "payload": dict(task["payload"])})
        await self.open.wait()
        return rows

    async def release(self, task_ids: Sequence[str]) -> int:
        self._statement("release", len(task_ids))
        found = [self.tasks.get(str(i)) for i in task_ids]
        released = [t for t in found if t is not None and t["status"] == "assigned"]
        for task in released:
            task.update(status="pending", attempts=max(task["attempts"] - 1, 0), lease_expires_at=None)
        self._notify([t["host_id"] for t in released])
        await self.open.wait()
        return len(released)

    async def apply_reports(self, reports: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        self._statement("apply_reports", len(reports))
        for report in reports:
            _check_storable(report)
        outcomes: dict[str, dict[str, Any]] = {}
        for report in reports:
            task_id, status = str(report["id"]), report["status"]
            task = self.tasks.get(task_id)
            if task is None or task["host_id"] != report["host_id"]:
                outcomes[task_id] = {"id": task_id, "outcome": "not_found"}
            elif task["status"] in ("assigned", "running") or (
                task["status"] == "pending" and task["attempts"] > 0 and status in ("completed", "failed")
            ):
                task["status"] = status
                task["result"] = report.get("result") or task["result"]
                task["error"] = report.get("error") or task["error"]
                if status == "running":
                    task["lease_expires_at"] = datetime.now(UTC) + timedelta(seconds=self.lease_seconds)
                else:
                    task["lease_expires_at"] = None
                row = {k: task[k] for k in REPORTED}
                outcomes[task_id] = {**row, "id": task_id, "outcome": "applied"}
            elif task["status"] == status:
                outcomes[task_id] = {"id": task_id, "status": status, "outcome": "unchanged"}
            else:
                outcomes[task_id] = {"id": task_id, "outcome": "conflict", "current_status": task["status"]}
        await self.open.wait()
        return outcomes


def _check_storable(report: dict[str, Any]) -> None:
    """What PostgreSQL refuses in report_tasks (a DataError, a 400 problem in control_plane.db)."""
    try:
        uuid.UUID(str(report["id"]))
    except ValueError:
        raise Problem(f"a value in the request cannot be stored: invalid uuid {report['id']!r}") from None
    if "\\u0000" in json.dumps(report, default=str):
        raise Problem("a value in the request cannot be stored: unsupported Unicode escape sequence")


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Let the event loop run until `condition()` holds (a test that never gets there fails)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0)
