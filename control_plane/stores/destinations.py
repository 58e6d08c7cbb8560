"""Destinations: named backends that pipelines ship to (headers only as ciphertext)."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from control_plane.db import Executor, Tx


class DestinationStore:
    """The destinations table."""

    def __init__(self, db: Executor):
        self.db = db

    async def insert(self, row: dict[str, Any], tx: Tx | None = None) -> bool:
        """False when the name is taken."""
        return await (tx or self.db).fetch_one("insert_destination", _params(row)) is not None

    async def update(self, row: dict[str, Any], tx: Tx | None = None) -> bool:
        """False when there is no such destination."""
        return await (tx or self.db).fetch_one("update_destination", _params(row)) is not None

    async def get(self, name: str, tx: Tx | None = None) -> dict[str, Any] | None:
        """The destination with its sealed headers and the namespaces shipping there."""
        return await (tx or self.db).fetch_one("get_destination", {"name": name})

    async def lock(self, name: str, tx: Tx) -> bool:
        """Hold the destination's row until the transaction ends; False when there is none."""
        return await tx.fetch_one("lock_destination", {"name": name}) is not None

    async def list_all(self) -> list[dict[str, Any]]:
        return await self.db.fetch("list_destinations")

    async def users(self, name: str, tx: Tx | None = None) -> list[dict[str, Any]]:
        """Active deployments and active experiments that ship to it."""
        return await (tx or self.db).fetch("destination_users", {"name": name})

    async def delete(self, name: str, tx: Tx | None = None) -> bool:
        return await (tx or self.db).fetch_one("delete_destination", {"name": name}) is not None


def _params(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "tls": Jsonb(row["tls"])}
