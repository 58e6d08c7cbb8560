"""A provisional analysis (GET .../analysis while the experiment runs) is computed once for everyone who
asks at the same time, and reused: a dashboard re-reading a long run must not re-analyse it each time."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, cast

from control_plane.experiment_service import ExperimentService
from control_plane.settings import Settings
from tests.unit.experiments.test_analysis import SPEC, run


class Store:
    """The experiment store's reads, counting what the analysis asks of it; `gate` holds a read."""

    def __init__(self) -> None:
        self.reads = 0
        self.gate = asyncio.Event()
        self.rows = run("h1", 12)

    async def get(self, experiment_id: str) -> dict[str, Any]:
        return {"id": experiment_id, "phase": "running", "analysis": None, "spec": SPEC, "hosts": ["h1"]}

    async def host_measurements(
        self, experiment_id: str, host_id: str, tx: Any = None
    ) -> list[dict[str, Any]]:
        self.reads += 1
        await self.gate.wait()
        return self.rows


def service(store: Store, cache_seconds: float) -> ExperimentService:
    settings = dataclasses.replace(Settings(), analysis_cache_seconds=cache_seconds)
    none = cast(Any, None)
    return ExperimentService(none, cast(Any, store), none, none, none, none, settings)


async def test_callers_at_the_same_time_share_one_analysis_and_later_ones_reuse_it() -> None:
    store = Store()
    experiments = service(store, cache_seconds=60)
    callers = [asyncio.create_task(experiments.analysis("e1")) for _ in range(5)]
    await asyncio.sleep(0)  # let every caller reach the shared computation
    while store.reads == 0:
        await asyncio.sleep(0)
    store.gate.set()
    answers = await asyncio.gather(*callers)
    assert store.reads == 1
    assert all(a[1] is answers[0][1] and a[2] is False for a in answers)
    assert answers[0][1]["status"] == "ok"
    await experiments.analysis("e1")
    assert store.reads == 1  # reused within analysis_cache_seconds


async def test_a_caller_that_goes_away_does_not_cancel_the_others() -> None:
    store = Store()
    experiments = service(store, cache_seconds=60)
    leaving = asyncio.create_task(experiments.analysis("e1"))
    staying = asyncio.create_task(experiments.analysis("e1"))
    while store.reads == 0:
        await asyncio.sleep(0)
    leaving.cancel()
    store.gate.set()
    _, result, final = await staying
    assert result["status"] == "ok" and final is False and store.reads == 1


async def test_without_a_cache_each_later_request_analyses_again() -> None:
    store = Store()
    store.gate.set()
    experiments = service(store, cache_seconds=0)
    await experiments.analysis("e1")
    # Expired once ten times the analysis's own duration has passed (a few milliseconds here).
    while store.reads < 2:
        await asyncio.sleep(0.01)
        await experiments.analysis("e1")
    assert store.reads == 2
