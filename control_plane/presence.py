"""Agents' last contact, written in batches.

Every poll and heartbeat is a contact. Registering one in its own statement would make the database
load of an idle fleet grow with its size; instead each contact is noted in memory and one statement a
second writes them all, with the collector block of the latest heartbeat (state, restarts, the config
hash it runs). A contact that changes what the control plane knows about a host (first contact,
namespace, labels, version, facts) takes the full registration path at once; `Presence` remembers what
each host last registered so that a heartbeat that changes none of these does not.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import structlog

from control_plane.periodic import every
from control_plane.queue import TaskQueue
from control_plane.stores.agents import AgentStore
from phoenix_common.problems import Problem

log = structlog.get_logger("phoenix.presence")


def fingerprint(report: dict[str, Any]) -> str:
    """What a heartbeat says about its host's identity (namespace, labels, version, facts); the collector
    block and the running tasks change often and are written in batches."""
    stable = {k: v for k, v in report.items() if k not in ("running_tasks", "collector")}
    return hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()


class Presence:
    """Known hosts of this process and their pending last-seen writes."""

    def __init__(
        self, agents: AgentStore, tasks: TaskQueue, *, flush_interval: float = 1.0, max_known: int = 1_000_000
    ) -> None:
        self.agents = agents
        self.tasks = tasks
        self.flush_interval = flush_interval
        self.max_known = max_known
        self._known: dict[str, tuple[str | None, str]] = {}  # host -> (fingerprint, namespace)
        self._pending: dict[str, dict[str, Any] | None] = {}  # host -> collector block to store
        self.flushes = 0

    def known(self, host_id: str) -> tuple[str | None, str] | None:
        return self._known.get(host_id)

    def remember(self, host_id: str, fp: str | None, namespace: str) -> None:
        if len(self._known) >= self.max_known and host_id not in self._known:
            self._known.pop(next(iter(self._known)))  # the oldest entry: it re-registers on next contact
        self._known[host_id] = (fp, namespace)

    def forget(self, host_id: str) -> None:
        self._known.pop(host_id, None)

    def touch(self, host_id: str, collector: dict[str, Any] | None = None) -> None:
        if collector is not None or host_id not in self._pending:
            self._pending[host_id] = collector

    async def _write(self, pending: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]] | None:
        """Write contacts in one statement; None when it failed and they wait for the next flush.

        A batch the database refuses for its input is written again row by row, so that one host's
        block cannot keep every other host of this replica from being seen; the row at fault is
        dropped (its host is forgotten, and its next contact takes the full path again).
        """
        try:
            self.flushes += 1
            return await self.agents.touch(pending)
        except asyncio.CancelledError:
            raise
        except (Problem, ValueError) as exc:
            # A ValueError is the encoder refusing a block (NaN or Infinity: jsonb has no such number).
            if isinstance(exc, Problem) and exc.status >= 500:
                self._put_back(pending, exc)
                return None
            if len(pending) == 1:
                detail = exc.detail if isinstance(exc, Problem) else f"{type(exc).__name__}: {exc}"
                log.warning("presence_row_refused", host_id=next(iter(pending)), error=detail)
                return []
            written: list[dict[str, Any]] = []
            for host, collector in pending.items():
                written += await self._write({host: collector}) or []
            return written
        except Exception as exc:
            self._put_back(pending, exc)
            return None

    def _put_back(self, pending: dict[str, dict[str, Any] | None], exc: Exception) -> None:
        """Keep contacts for the next flush (newer contacts win)."""
        for host, collector in pending.items():
            self._pending.setdefault(host, collector)
        log.warning("presence_flush_failed", error=f"{type(exc).__name__}: {exc}", hosts=len(pending))

    async def run(self) -> None:
        await every(self.flush_interval, "presence", self.flush)

    async def flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        updated = await self._write(pending)
        if updated is None:
            return
        if len(updated) < len(pending):
            found = {r["host_id"] for r in updated}
            for host in pending:
                if host not in found:
                    self.forget(host)  # gone from the database: its next contact registers it again
        changed = [r["host_id"] for r in updated if r["config_changed"]]
        if changed:
            # A collector now runs another config than before: if that is not its namespace's active
            # deployment (a local edit, a restore), the deployment is sent again.
            try:
                await self.tasks.enqueue_active_deployment(changed)
            except Exception as exc:
                log.warning("drift_check_failed", error=f"{type(exc).__name__}: {exc}", hosts=len(changed))
