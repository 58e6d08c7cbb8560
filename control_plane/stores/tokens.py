"""Per-host agent tokens, stored as sha256 hashes only."""

from __future__ import annotations

from typing import Any

from control_plane.db import Database, Tx


class TokenStore:
    """The agent_tokens table."""

    def __init__(self, db: Database):
        self.db = db

    async def get(self, host_id: str, tx: Tx | None = None) -> dict[str, Any] | None:
        """The host's token_hash (None once revoked) and revoked_at; None when it has no row."""
        return await (tx or self.db).fetch_one("agent_token_get", {"host_id": host_id})

    async def owner(self, digest: str, tx: Tx | None = None) -> str | None:
        row = await (tx or self.db).fetch_one("agent_token_owner", {"token_hash": digest})
        return row["host_id"] if row else None

    async def enrol(self, host_id: str, digest: str, tx: Tx | None = None) -> bool:
        """Bind a host without a row to its own token; False when it is bound or revoked already."""
        return (
            await (tx or self.db).fetch_one("agent_token_enrol", {"host_id": host_id, "token_hash": digest})
            is not None
        )

    async def used(self, host_id: str) -> None:
        await self.db.execute("agent_token_used", {"host_id": host_id})

    async def reenrol(self, host_id: str, digest: str) -> bool:
        """Replace a never-used enrolled token; False when the host's token is in use or not enrolled."""
        return (
            await self.db.fetch_one("agent_token_reenrol", {"host_id": host_id, "token_hash": digest})
            is not None
        )

    async def enrolled(self, tx: Tx | None = None) -> int:
        row = await (tx or self.db).fetch_one("agent_tokens_enrolled")
        return int(row["n"]) if row else 0

    async def lock_enrolment(self, tx: Tx) -> None:
        """Enrolments take turns until `tx` ends."""
        await tx.execute("agent_token_enrolment_lock")

    async def issue(self, host_id: str, digest: str, tx: Tx | None = None) -> dict[str, Any]:
        row = await (tx or self.db).fetch_one("agent_token_issue", {"host_id": host_id, "token_hash": digest})
        assert row is not None
        return row

    async def revoke(self, host_id: str, tx: Tx | None = None) -> dict[str, Any]:
        row = await (tx or self.db).fetch_one("agent_token_revoke", {"host_id": host_id})
        assert row is not None
        return row
