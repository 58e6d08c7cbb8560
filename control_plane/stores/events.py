"""The append-only event log, published to every replica through PostgreSQL NOTIFY."""

from __future__ import annotations

import json
from typing import Any

from psycopg.types.json import Jsonb

from control_plane.db import Executor, Tx

# NOTIFY payloads are limited to 8000 bytes; keep event data well under it.
_MAX_DATA_BYTES = 6000


class EventStore:
    """The events table."""

    def __init__(self, db: Executor):
        self.db = db

    async def publish(
        self,
        topic: str,
        kind: str,
        subject: str | None,
        *,
        data: dict[str, Any] | None = None,
        reason: str | None = None,
        tx: Tx | None = None,
    ) -> None:
        """Record an event and notify listeners (inside the caller's transaction when given one)."""
        payload = data or {}
        if len(json.dumps(payload, default=str)) > _MAX_DATA_BYTES:
            payload = {
                "truncated": True,
                **{k: v for k, v in payload.items() if not isinstance(v, dict | list)},
            }
        await (tx or self.db).fetch(
            "insert_event",
            {
                "topic": topic,
                "kind": kind,
                "subject": subject,
                "reason": reason[:500] if reason else None,
                "data": Jsonb(payload),
            },
        )
