"""The experiments store on a migrated PostgreSQL, and the phase enum against the schema's constraint."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import psycopg
import pytest

from control_plane.db import Database, make_pool
from control_plane.phases import ACTIVE, Phase
from control_plane.stores.experiments import ExperimentStore

SPEC = {"target_namespaces": ["default"], "critical_processes": []}


def _quoted(text: str) -> set[str]:
    return set(re.findall(r"'([a-z_]+)'", text))


def test_the_phase_check_constraint_lists_exactly_the_enum(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        (check,) = conn.execute(
            """SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c
               WHERE c.conrelid = 'experiments'::regclass AND c.contype = 'c'
                 AND pg_get_constraintdef(c.oid) LIKE '%phase%'"""
        ).fetchone() or (None,)
        (index,) = conn.execute(
            "SELECT pg_get_expr(indpred, indrelid) FROM pg_index "
            "WHERE indexrelid = 'experiments_active'::regclass"
        ).fetchone() or (None,)
    assert check is not None and _quoted(check) == {p.value for p in Phase}
    assert index is not None and _quoted(index) == {p.value for p in ACTIVE}


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[ExperimentStore]:
    pool = make_pool(database_url, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        yield ExperimentStore(Database(pool))
    finally:
        await pool.close()


async def test_every_phase_is_accepted_and_stamps_its_column(store: ExperimentStore) -> None:
    await store.insert("exp-1", "one", SPEC)
    row = await store.get("exp-1")
    assert row is not None and row["phase"] == Phase.PENDING and row["started_at"] is None
    for phase in (Phase.DEPLOYING, Phase.WARMING_UP, Phase.RUNNING, Phase.ANALYZING, Phase.COMPLETED):
        async with store.db.transaction() as tx:
            await store.set_phase("exp-1", phase, f"to {phase}", tx)
    row = await store.get("exp-1")
    assert row is not None and row["phase"] == "completed" and row["phase_reason"] == "to completed"
    assert row["started_at"] <= row["running_at"] <= row["analyzing_at"] <= row["finished_at"]
    for phase in (Phase.FAILED, Phase.STOPPED):
        async with store.db.transaction() as tx:
            await store.set_phase("exp-1", phase, "final", tx)
    assert [r["id"] for r in await store.recent(Phase.STOPPED)] == ["exp-1"]
    assert await store.recent(Phase.PENDING) == []


async def test_claim_active_returns_only_active_experiments(store: ExperimentStore) -> None:
    for experiment_id, phase in (("exp-p", None), ("exp-r", Phase.RUNNING), ("exp-s", Phase.STOPPED)):
        await store.insert(experiment_id, experiment_id, SPEC)
        if phase:
            async with store.db.transaction() as tx:
                if phase == Phase.RUNNING:
                    await store.set_phase(experiment_id, Phase.DEPLOYING, "start", tx)
                await store.set_phase(experiment_id, phase, "now", tx)
    async with store.db.transaction() as tx:
        claimed = await store.claim_active(tx)
    assert [r["id"] for r in claimed] == ["exp-r"]
    assert float(claimed[0]["seconds_in_phase"]) >= 0


async def test_a_completed_analysis_projects_per_namespace(store: ExperimentStore) -> None:
    await store.insert("exp-c", "done", {**SPEC, "target_namespaces": ["a", "b"]})
    async with store.db.transaction() as tx:
        await store.set_analysis(
            "exp-c", {"verdict": "promote", "fleet": {"series_reduction_percent": 40}}, tx
        )
        await store.set_phase("exp-c", Phase.COMPLETED, "done", tx)
    rows = await store.latest_completed()
    assert sorted(r["namespace"] for r in rows) == ["a", "b"]
    (gauge,) = await store.gauges()
    assert gauge["phase"] == "completed" and gauge["reduction"] == 40
