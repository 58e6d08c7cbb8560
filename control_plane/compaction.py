"""Compaction: a long experiment's older samples are thinned so that what it stores stays bounded.

Samples taken within `measurement_full_resolution` of now stay as they came; older ones keep, per host,
arm, phase and `measurement_bucket`, the earliest sample, which then stands for every sample of its
bucket (its `represents` count; the analysis weights it so). A week at 10 s samples is 60,480 rows per
host and arm; with the defaults (1 h, 5 min) it is 360 + 2,004. Docs: docs/analysis.md.
"""

from __future__ import annotations

import time

import structlog

from control_plane.periodic import every
from control_plane.settings import Settings
from control_plane.stores.experiments import ExperimentStore

log = structlog.get_logger("phoenix.compaction")


async def compact(
    store: ExperimentStore, full_seconds: float, bucket_seconds: float, slack: float
) -> dict[str, int]:
    """One pass over the experiments that may need it, one host per statement (short, bounded)."""
    counts = {"experiments": 0, "deleted": 0, "kept": 0}
    for row in await store.to_compact(full_seconds, slack):
        counts["experiments"] += 1
        for host in row["hosts"]:
            deleted, kept = await store.compact(row["id"], host, bucket_seconds, full_seconds)
            counts["deleted"] += deleted
            counts["kept"] += kept
    return counts


async def run(store: ExperimentStore, settings: Settings) -> None:
    """A pass every measurement_compact_interval (jittered); off when measurement_full_resolution is 0."""
    full = settings.measurement_full_resolution
    if full <= 0:
        log.info("compaction_disabled")
        return
    # A finished experiment is thinned once more after its last samples pass the horizon.
    slack = 3 * settings.measurement_compact_interval + settings.measurement_bucket

    async def one_pass() -> None:
        start = time.monotonic()
        counts = await compact(store, full, settings.measurement_bucket, slack)
        if counts["deleted"]:
            log.info("compaction_pass", seconds=round(time.monotonic() - start, 3), **counts)

    await every(settings.measurement_compact_interval, "compaction", one_pass)
