"""The fleet's agents: registration, batched last contact, the views and the /metrics gauges."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from control_plane.db import Executor, Tx
from control_plane.jsonutil import strict_dumps


class AgentStore:
    """The agents table."""

    def __init__(self, db: Executor):
        self.db = db

    async def delete(self, host_id: str, tx: Tx) -> dict[str, Any] | None:
        """Remove the host and its unfinished tasks; its row (host_id, namespace, tasks_removed), or None."""
        return await tx.fetch_one("agent_delete", {"host_id": host_id})

    async def namespace_binding(self, host_id: str, namespace: str, tx: Tx) -> dict[str, Any]:
        """The host's bound namespace and `moved_from`, bound to `namespace` on its first contact."""
        row = await tx.fetch_one("agent_namespace_binding", {"host_id": host_id, "namespace": namespace})
        assert row is not None
        return row

    async def bind_namespace(self, host_id: str, namespace: str, tx: Tx) -> None:
        await tx.execute("bind_agent_namespace", {"host_id": host_id, "namespace": namespace})

    async def move(self, host_id: str, namespace: str, tx: Tx) -> dict[str, Any] | None:
        """Set a registered host's namespace: (host_id, namespace, previous_namespace), or None."""
        return await tx.fetch_one("move_agent", {"host_id": host_id, "namespace": namespace})

    async def unbind_namespace(self, host_id: str, tx: Tx) -> None:
        await tx.execute("unbind_agent_namespace", {"host_id": host_id})

    async def upsert(self, host_id: str, report: dict[str, Any], tx: Tx | None = None) -> dict[str, Any]:
        """Register or refresh a host from what it reports; the row says if it was new or moved."""
        collector = report.get("collector")
        row = await (tx or self.db).fetch_one(
            "upsert_agent",
            {
                "host_id": host_id,
                "namespace": report.get("namespace"),
                "labels": Jsonb(report["labels"]) if "labels" in report else None,
                "version": report.get("version"),
                "facts": Jsonb(report["facts"]) if "facts" in report else None,
                "collector": Jsonb(collector) if collector is not None else None,
                "config_hash": collector.get("config_hash") if isinstance(collector, dict) else None,
            },
        )
        assert row is not None
        return row

    async def touch(
        self, contacts: dict[str, dict[str, Any] | None], tx: Tx | None = None
    ) -> list[dict[str, Any]]:
        """Last seen (and the latest collector block) of many hosts in one statement; rows of the hosts
        found, each saying whether its config hash changed."""
        rows = [{"host_id": h, "collector": c} for h, c in contacts.items()]
        return await (tx or self.db).fetch("touch_agents", {"rows": Jsonb(rows, dumps=strict_dumps)})

    async def list_agents(self, namespace: str | None, limit: int) -> list[dict[str, Any]]:
        return await self.db.fetch("list_agents", {"namespace": namespace, "limit": limit})

    async def get(self, host_id: str) -> dict[str, Any] | None:
        return await self.db.fetch_one("get_agent", {"host_id": host_id})

    async def count(self, namespace: str) -> int:
        row = await self.db.fetch_one("namespace_agent_count", {"namespace": namespace})
        return int(row["n"]) if row else 0

    async def last_seen(self) -> dict[str, float]:
        """Each host's last contact, seconds since the epoch."""
        return {r["host_id"]: float(r["last_seen"]) for r in await self.db.fetch("agents_last_seen")}

    async def export_health(self) -> dict[str, dict[str, Any]]:
        """Each shipping host's collector.export block, as last reported."""
        return {r["host_id"]: r["export"] for r in await self.db.fetch("agents_export")}

    async def collector_restarts(self) -> dict[str, int]:
        return {r["host_id"]: r["restarts"] for r in await self.db.fetch("agents_collector_restarts")}
