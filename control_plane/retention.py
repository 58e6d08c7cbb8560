"""Retention: old final tasks, events and experiment measurements are deleted in the background."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from control_plane.metrics import ApiMetrics
from control_plane.periodic import every
from control_plane.settings import Settings
from control_plane.stores.retention import RetentionStore

log = structlog.get_logger("phoenix.retention")


@dataclass(frozen=True)
class Rule:
    """One table's retention: the age it keeps, in seconds."""

    table: str
    max_age_seconds: float


def retention_rules(settings: Settings) -> list[Rule]:
    """The tables to prune; an age of 0 keeps that table's rows forever."""
    return [
        rule
        for rule in (
            Rule("tasks", settings.retention_tasks),
            Rule("events", settings.retention_events),
            Rule("experiment_measurements", settings.retention_measurements),
        )
        if rule.max_age_seconds > 0
    ]


async def prune(
    store: RetentionStore,
    rules: list[Rule],
    batch: int,
    on_deleted: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """One pass: delete each table's expired rows `batch` at a time until a batch comes back short.

    Every batch is its own short statement (no long transaction, no long lock); rows another replica
    is deleting are skipped, so replicas may run passes at the same time.
    """
    counts: dict[str, int] = {}
    for rule in rules:
        counts[rule.table] = 0
        while True:
            deleted = await store.prune(rule.table, rule.max_age_seconds, batch)
            counts[rule.table] += deleted
            if deleted and on_deleted is not None:
                on_deleted(rule.table, deleted)
            if deleted < batch:
                break
    return counts


async def run(store: RetentionStore, settings: Settings, metrics: ApiMetrics) -> None:
    """A pass every retention_interval (jittered); errors are logged and the next pass tries again."""
    active = retention_rules(settings)
    if not active:
        log.info("retention_disabled")
        return

    async def one_pass() -> None:
        start = time.monotonic()
        counts = await prune(
            store,
            active,
            settings.retention_batch,
            on_deleted=lambda table, n: metrics.pruned.labels(table).inc(n),
        )
        log.info("retention_pass", seconds=round(time.monotonic() - start, 3), **counts)

    await every(settings.retention_interval, "retention", one_pass)
