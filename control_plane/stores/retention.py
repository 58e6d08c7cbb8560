"""Deleting expired rows: tasks, events and experiment measurements, in bounded batches."""

from __future__ import annotations

from control_plane.db import Executor, Tx

# One statement per table; they share the keep rule (unfinished experiments, active deployments).
_PRUNE = {"tasks": "prune_tasks", "events": "prune_events", "experiment_measurements": "prune_measurements"}
TABLES = tuple(_PRUNE)


class RetentionStore:
    """The prune statements of sql/queries/retention.sql."""

    def __init__(self, db: Executor):
        self.db = db

    async def prune(self, table: str, max_age_seconds: float, batch: int, tx: Tx | None = None) -> int:
        """Delete up to `batch` of the table's expired rows; how many it deleted."""
        row = await (tx or self.db).fetch_one(
            _PRUNE[table], {"max_age_seconds": max_age_seconds, "batch": batch}
        )
        return int(row["n"]) if row else 0
