"""The agents' side of the API: registration, heartbeats, long polls; and on-demand checks of hosts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from control_plane.db import Database, Tx
from control_plane.dispatch import Dispatcher
from control_plane.presence import Presence, fingerprint
from control_plane.queue import TaskQueue
from control_plane.secrets import Sealer, SecretError
from control_plane.stores.agents import AgentStore
from control_plane.stores.events import EventStore
from phoenix_common.problems import Conflict, Forbidden, NotFound

log = structlog.get_logger("phoenix.agent_api")

ON_DEMAND = {"health": "check", "metrics": "collect"}


@dataclass
class AgentService:
    """Every contact of an agent, on the agent, task and event stores, the presence batcher and the
    long-poll dispatcher."""

    db: Database
    agents: AgentStore
    tasks: TaskQueue
    events: EventStore
    presence: Presence
    dispatcher: Dispatcher
    sealer: Sealer
    # With agent tokens on, a host's namespace is bound (control_plane/services/agents.py, _bound).
    bind_namespaces: bool = False

    async def register(self, host_id: str, report: dict[str, Any]) -> dict[str, Any]:
        """Record the agent's contact; a new agent or a namespace change gets the active deployment."""
        if self.bind_namespaces and report.get("namespace"):
            report = await self._bound(host_id, report)
        async with self.db.transaction() as tx:
            row = await self.agents.upsert(host_id, report, tx)
            joined = row["inserted"] or row["previous_namespace"] != row["namespace"]
            if joined:
                await self.events.publish(
                    "agents",
                    "agent_registered" if row["inserted"] else "agent_moved",
                    host_id,
                    data={"host_id": host_id, "namespace": row["namespace"]},
                    tx=tx,
                )
            if joined or report.get("collector") is not None:
                await self.tasks.enqueue_active_deployment([host_id], tx)
        return row

    async def _bound(self, host_id: str, report: dict[str, Any]) -> dict[str, Any]:
        """With agent tokens, a host stays in the namespace it is bound to: a heartbeat naming the one an
        operator moved it from is taken without moving it back; naming any other is a 403 and an event."""
        reported = report["namespace"]
        async with self.db.transaction() as tx:
            binding = await self.agents.namespace_binding(host_id, reported, tx)
            if reported == binding["namespace"]:
                return report
            if reported == binding["moved_from"]:
                return {k: v for k, v in report.items() if k != "namespace"}
            await self.events.publish(
                "agents",
                "agent_namespace_refused",
                host_id,
                data={"host_id": host_id, "namespace": binding["namespace"], "reported": reported},
                tx=tx,
            )
        log.warning("agent_namespace_refused", host_id=host_id, bound=binding["namespace"], reported=reported)
        raise Forbidden(
            f"host {host_id} is bound to namespace {binding['namespace']!r}, not {reported!r}; an operator "
            f"moves it with PATCH /api/v1/agents/{host_id}",
            field="namespace",
        )

    async def move(self, host_id: str, namespace: str) -> dict[str, Any]:
        """An operator moves a registered host: bound to `namespace` (its heartbeats still naming the old
        one are taken), sent that namespace's active deployment."""
        if not self.bind_namespaces:
            raise Conflict(
                "without agent tokens a host's namespace is the one its agent reports: set `namespace` in "
                "its /etc/phoenix-agent/config.yaml instead"
            )
        row = await self._rebind(host_id, namespace, known=True)
        assert row is not None
        return row

    async def bind(self, host_id: str, namespace: str) -> None:
        """Bind a host (known or not yet) to `namespace`: an operator's choice, at token issue. A known
        host in another namespace is moved there."""
        await self._rebind(host_id, namespace, known=False)

    async def _rebind(self, host_id: str, namespace: str, *, known: bool) -> dict[str, Any] | None:
        async with self.db.transaction() as tx:
            # Bound first, while the host's row still names the namespace it leaves (moved_from).
            await self.agents.bind_namespace(host_id, namespace, tx)
            row = await self.agents.move(host_id, namespace, tx)
            if row is None and known:
                raise NotFound(f"agent {host_id!r} does not exist")
            if row is not None and row["previous_namespace"] != namespace:
                await self.events.publish(
                    "agents", "agent_moved", host_id, data={"host_id": host_id, "namespace": namespace}, tx=tx
                )
                await self.tasks.enqueue_active_deployment([host_id], tx)
        self.presence.forget(host_id)
        return row

    async def delete(
        self, host_id: str, revoke: Callable[[str, Tx], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any] | None:
        """Decommission a host: its row, its unfinished tasks and, by `revoke` in the same transaction,
        its token (revoked, so the enrolment token cannot bind the host again: a re-imaged VM needs a
        newly issued token)."""
        async with self.db.transaction() as tx:
            row = await self.agents.delete(host_id, tx)
            if row is None:
                return None
            revoked = await revoke(host_id, tx)
            await self.agents.unbind_namespace(host_id, tx)
            await self.events.publish(
                "agents",
                "agent_deleted",
                host_id,
                data={
                    "host_id": host_id,
                    "namespace": row["namespace"],
                    "tasks_removed": row["tasks_removed"],
                },
                tx=tx,
            )
        self.presence.forget(host_id)
        return {**row, "had_token": revoked["had_token"]}

    async def heartbeat(self, host_id: str, report: dict[str, Any]) -> str:
        """Note a validated heartbeat and keep the leases of the tasks it runs; the host's namespace."""
        fp = fingerprint(report)
        known = self.presence.known(host_id)
        if known is not None and known[0] == fp:
            # Nothing new about the host but its collector's state: written with the next batch (which
            # also sends the active deployment to a host found running another config).
            namespace = known[1]
            self.presence.touch(host_id, report.get("collector"))
        else:
            namespace = (await self.register(host_id, report))["namespace"]
            self.presence.remember(host_id, fp, namespace)
        running = report.get("running_tasks")
        if running is None or running:
            await self.tasks.extend_leases(host_id, running)
        return namespace

    async def poll(self, host_id: str, wait: float, gone: Callable[[], bool]) -> list[dict[str, Any]]:
        """The host's next tasks, waiting up to `wait` seconds; released at once if the caller is `gone`."""
        if self.presence.known(host_id) is None:
            row = await self.register(host_id, {})
            self.presence.remember(host_id, None, row["namespace"])
        else:
            self.presence.touch(host_id)
        tasks = await self.dispatcher.wait(host_id, wait)
        if tasks and gone():
            # Nobody is left to receive them: back to the queue at once rather than after a lease.
            await self.tasks.release([str(t["id"]) for t in tasks])
            log.info("poll_abandoned", host_id=host_id, released=len(tasks))
            return []
        for task in tasks:
            log.info("task_assigned", host_id=host_id, task_id=str(task["id"]), type=task["type"])
        return [self._unsealed(task) for task in tasks]

    def _unsealed(self, task: dict[str, Any]) -> dict[str, Any]:
        """The task as its agent receives it: sealed secret files opened (only here, only for it)."""
        payload = task.get("payload")
        if not isinstance(payload, dict) or not payload.get("secret_files"):
            return task
        opened: dict[str, Any] = {}
        try:
            for path, sealed in payload["secret_files"].items():
                opened[path] = self.sealer.unseal(sealed)
        except SecretError as exc:
            log.error("task_secret_unreadable", task_id=str(task["id"]), error=str(exc))
            return {**task, "payload": {**payload, "secret_files": {}, "secret_error": str(exc)}}
        return {**task, "payload": {**payload, "secret_files": opened}}

    async def request(
        self, kind: str, host_id: str | None, namespace: str | None, priority: int
    ) -> dict[str, Any]:
        """Ask one host, or every host of a namespace (one statement), for a health or metrics report."""
        if host_id is not None:
            if await self.agents.get(host_id) is None:
                raise NotFound(f"agent {host_id!r} does not exist", field="host_id")
            row = await self.tasks.enqueue(host_id, type=kind, action=ON_DEMAND[kind], priority=priority)
            return {"tasks": 1, "task_ids": [str(row["id"])]}
        async with self.db.transaction() as tx:
            count = await self.tasks.enqueue_namespace(
                tx, namespace or "", type=kind, action=ON_DEMAND[kind], priority=priority
            )
        if count == 0:
            raise NotFound(f"namespace {namespace!r} has no registered agents", field="namespace")
        return {"tasks": count}
