"""Compaction on a migrated PostgreSQL: a long experiment's older samples are thinned to one per bucket,
nothing of their weight is lost, recent samples stay whole, and the analysis of the thinned rows gives the
figures of the full ones."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest

from control_plane import compaction
from control_plane.analysis import Analyzer
from control_plane.db import Database
from control_plane.phases import Phase
from control_plane.pricing import Prices
from control_plane.stores.experiments import ExperimentStore

SPEC: dict[str, Any] = {
    "target_namespaces": ["default"],
    "critical_processes": ["sshd"],
    "sample_interval_seconds": 10,
    "billing_window_seconds": 60,
}
HOUR, BUCKET = 3600.0, 300.0


@pytest.fixture
def store(db: Database) -> ExperimentStore:
    return ExperimentStore(db)


async def begun(store: ExperimentStore, database_url: str, experiment_id: str, started: str) -> None:
    """An experiment on host h1 that began `started` ago (a SQL interval)."""
    await store.insert(experiment_id, experiment_id, SPEC)
    async with store.db.transaction() as tx:
        await store.set_hosts(experiment_id, ["h1"], {}, tx)
        await store.set_phase(experiment_id, Phase.DEPLOYING, "start", tx)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE experiments SET started_at = now() - %s::interval WHERE id = %s", (started, experiment_id)
        )


def samples(now: float, hours: float) -> list[dict[str, Any]]:
    """Both arms every 10 s for `hours` up to `now`. Billed series change only from one 5-minute bucket
    to the next, so thinning to one sample per bucket keeps their distribution exactly."""
    out = []
    for i in range(int(hours * 3600 / 10)):
        ts = now - 10 * i
        step = int(ts // BUCKET) % 7
        common = {"interval_seconds": 10.0, "observed_seconds": 600.0, "billing_window_seconds": 60.0}
        out.append(
            {
                **common,
                "variant": "baseline",
                "ts": ts,
                "active_series": 100,
                "billed_series": 200 + 10 * step,
                "process_cpu_seconds_rate": {"a": 1.0, "b": 3.0},
                "process_memory_bytes": {"a": 1.0, "b": 3.0},
                "critical_present": {"sshd": True},
            }
        )
        out.append(
            {
                **common,
                "variant": "candidate",
                "ts": ts + 0.01,
                "active_series": 10,
                "billed_series": 10 + step,
                "process_cpu_seconds_rate": {
                    "a": 1.0,
                    "other": 3.0 if step == 3 else 0.0,
                    "b": 0.0 if step == 3 else 3.0,
                },
                "process_memory_bytes": {"a": 1.0, "b": 3.0},
                "critical_present": {"sshd": True},
            }
        )
    return out


async def analysis_of(store: ExperimentStore, experiment_id: str) -> dict[str, Any]:
    analyzer = Analyzer(spec=SPEC, prices=Prices(0.1, 0.05))
    analyzer.add_host("h1", await store.host_measurements(experiment_id, "h1"))
    return analyzer.result()


async def test_old_samples_are_thinned_per_bucket_and_the_analysis_keeps_its_figures(
    store: ExperimentStore, database_url: str
) -> None:
    await begun(store, database_url, "exp-c", "4 hours")
    now = time.time()
    await store.insert_measurements("exp-c", "h1", "running", samples(now, 3))
    before = await analysis_of(store, "exp-c")
    stored = len(await store.measurements("exp-c"))
    assert stored == 2 * 1080

    counts = await compaction.compact(store, HOUR, BUCKET, slack=600)
    assert counts["experiments"] == 1 and counts["deleted"] > 0

    rows = await store.measurements("exp-c")
    cutoff = (now - HOUR) // BUCKET * BUCKET
    for arm in ("baseline", "candidate"):
        mine = [r for r in rows if r["variant"] == arm]
        old = [r for r in mine if r["ts"].timestamp() < cutoff]
        recent = [r for r in mine if r["ts"].timestamp() >= cutoff]
        # One row per 5-minute bucket before the horizon, every sample after it, no weight lost.
        buckets = {r["ts"].timestamp() // BUCKET for r in old}
        assert len(old) == len(buckets)
        assert all(r["represents"] == 1 for r in recent)
        assert len(recent) == sum(1 for s in samples(now, 3) if s["variant"] == arm and s["ts"] >= cutoff)
        assert sum(r["represents"] for r in mine) == 1080
    assert len(rows) < stored / 2

    # A second pass finds nothing more to thin.
    again = await compaction.compact(store, HOUR, BUCKET, slack=600)
    assert again["deleted"] == 0 and again["kept"] == 0

    after = await analysis_of(store, "exp-c")
    host_before, host_after = before["hosts"]["h1"], after["hosts"]["h1"]
    for arm in ("baseline", "candidate"):
        assert host_after[arm]["billed_series"]["p95"] == host_before[arm]["billed_series"]["p95"]
        assert host_after[arm]["represents"] == host_before[arm]["represents"] == 1080
        assert host_after[arm]["samples"] < host_before[arm]["samples"]
    assert host_after["billed_series_reduction_percent"] == host_before["billed_series_reduction_percent"]
    assert host_after["cpu_coverage_p10_percent"] == host_before["cpu_coverage_p10_percent"] == 25.0
    assert abs(host_after["cpu_coverage_percent"] - host_before["cpu_coverage_percent"]) < 0.5
    assert host_after["critical_presence"] == host_before["critical_presence"]
    assert after["verdict"] == before["verdict"]


async def test_an_experiment_finished_long_ago_is_not_rescanned(
    store: ExperimentStore, database_url: str
) -> None:
    await begun(store, database_url, "exp-old", "3 days")
    async with store.db.transaction() as tx:
        await store.set_phase("exp-old", Phase.STOPPED, "stop", tx)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE experiments SET finished_at = now() - interval '2 days' WHERE id = 'exp-old'")
    assert [r["id"] for r in await store.to_compact(HOUR, 600)] == []
