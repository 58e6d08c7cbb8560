"""The experiment driver on a migrated PostgreSQL: an experiment failing in the database fails alone."""

from __future__ import annotations

from typing import Any, cast

import pytest

from control_plane.db import Database, Tx
from control_plane.experiment_driver import ExperimentDriver
from control_plane.phases import Phase, check
from control_plane.pricing import Prices
from control_plane.stores.experiments import ExperimentStore

SPEC = {
    "target_namespaces": ["default"],
    "critical_processes": [],
    "warmup_seconds": 0,
    "duration_seconds": 0,
}


class FaultyStore(ExperimentStore):
    """The real store, but saving exp-bad's analysis fails in the server, which aborts the transaction."""

    async def set_analysis(self, experiment_id: str, analysis: dict[str, Any], tx: Tx) -> None:
        if experiment_id == "exp-bad":
            await tx.conn.execute("SELECT 1 / 0")
        await super().set_analysis(experiment_id, analysis, tx)


class PhaseService:
    """What the driver needs of ExperimentService, on the store alone (no queue, generator or events)."""

    ack_timeout = 30.0
    prices = Prices(0.1, 0.05)

    def __init__(self, store: ExperimentStore) -> None:
        self.store = store

    async def move(self, tx: Tx, row: dict[str, Any], phase: Phase, reason: str) -> None:
        check(row["phase"], phase)
        await self.store.set_phase(row["id"], phase, reason, tx)

    async def recall(self, tx: Tx, experiment_id: str, reason: str) -> int:
        return 0


@pytest.fixture
def store(db: Database) -> FaultyStore:
    return FaultyStore(db)


async def _in_phase(store: ExperimentStore, experiment_id: str, *phases: Phase) -> None:
    await store.insert(experiment_id, experiment_id, SPEC)
    for phase in phases:
        async with store.db.transaction() as tx:
            await store.set_phase(experiment_id, phase, "set up", tx)


async def test_an_experiment_failing_in_the_database_does_not_stop_the_others(store: FaultyStore) -> None:
    await _in_phase(store, "exp-bad", Phase.DEPLOYING, Phase.WARMING_UP, Phase.RUNNING, Phase.ANALYZING)
    await _in_phase(store, "exp-good", Phase.DEPLOYING, Phase.WARMING_UP, Phase.RUNNING)
    driver = ExperimentDriver(store.db, store, cast(Any, PhaseService(store)))
    await driver.advance_all()
    bad, good = await store.get("exp-bad"), await store.get("exp-good")
    assert good is not None and good["phase"] == Phase.ANALYZING, good
    assert bad is not None and bad["phase"] == Phase.FAILED, bad
    assert "internal error while analyzing" in bad["phase_reason"]
