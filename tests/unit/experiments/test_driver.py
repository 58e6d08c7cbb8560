"""The driver's per-phase steps on a fake store and service: what each phase moves to, and when."""

from __future__ import annotations

from typing import Any, cast

import pytest

from control_plane.analysis import analyze
from control_plane.experiment_driver import ExperimentDriver
from control_plane.phases import Phase, check
from control_plane.pricing import Prices

TX: Any = object()


class FakeStore:
    def __init__(self, states: list[dict[str, Any]], measurements: list[dict[str, Any]] | None = None):
        self.states = states
        self.rows = measurements or []
        self.analysis: dict[str, Any] | None = None

    async def task_states(self, experiment_id: str, tx: Any = None) -> list[dict[str, Any]]:
        return self.states

    async def set_analysis(self, experiment_id: str, analysis: dict[str, Any], tx: Any) -> None:
        self.analysis = analysis


class FakeService:
    ack_timeout = 30.0
    prices = Prices(0.1, 0.05)

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.moves: list[tuple[str, str]] = []
        self.recalls: list[str] = []

    async def move(self, tx: Any, row: dict[str, Any], phase: Phase, reason: str) -> None:
        row["phase"] = check(row["phase"], phase)
        self.moves.append((phase, reason))

    async def recall(self, tx: Any, experiment_id: str, reason: str) -> int:
        self.recalls.append(reason)
        return 2

    async def analyze(
        self, row: dict[str, Any], tx: Any, window: Any = None, overheads: Any = None
    ) -> dict[str, Any]:
        return analyze(
            self.store.rows, spec=row["spec"], prices=self.prices, window=window, overheads=overheads
        )


def experiment(phase: Phase, seconds: float, **spec: Any) -> dict[str, Any]:
    return {
        "id": "exp-1",
        "phase": phase,
        "seconds_in_phase": seconds,
        "hosts": ["h1", "h2"],
        "running_at": 0,
        "analyzing_at": 100,
        "spec": {"warmup_seconds": 5, "duration_seconds": 60, **spec},
    }


def driver(store: FakeStore) -> tuple[ExperimentDriver, FakeService]:
    service = FakeService(store)
    return ExperimentDriver(cast(Any, None), cast(Any, store), cast(Any, service)), service


def task(host: str, status: str, error: str | None = None) -> dict[str, Any]:
    return {"host_id": host, "status": status, "error": error}


async def test_deploying_waits_for_every_host_then_warms_up() -> None:
    step, service = driver(FakeStore([task("h1", "running"), task("h2", "assigned")]))
    row = experiment(Phase.DEPLOYING, 1)
    await step.advance(TX, row)
    assert service.moves == []
    step.store.states = [task("h1", "running"), task("h2", "completed")]  # type: ignore[attr-defined]
    await step.advance(TX, row)
    assert service.moves == [(Phase.WARMING_UP, "all 2 host(s) run both pipelines")]


async def test_deploying_fails_after_the_ack_timeout_naming_silent_hosts() -> None:
    step, service = driver(FakeStore([task("h1", "running")]))
    await step.advance(TX, experiment(Phase.DEPLOYING, 31))
    assert service.moves == [(Phase.FAILED, "host(s) never acknowledged within 30s: h2")]
    assert service.recalls == ["experiment failed"]


async def test_a_failed_host_fails_an_active_experiment() -> None:
    step, service = driver(FakeStore([task("h2", "failed", "collector crashed"), task("h1", "running")]))
    await step.advance(TX, experiment(Phase.RUNNING, 1))
    assert service.moves == [(Phase.FAILED, "host h2 failed the experiment: collector crashed")]


@pytest.mark.parametrize(
    ("phase", "seconds", "expected"),
    [
        (Phase.WARMING_UP, 4, []),
        (Phase.WARMING_UP, 5, [(Phase.RUNNING, "warm-up of 5s done; measuring")]),
        (Phase.RUNNING, 59, []),
        (Phase.RUNNING, 60, [(Phase.ANALYZING, "ran 60s; restoring 2 host(s)")]),
    ],
)
async def test_timed_phases_move_on_when_their_time_is_up(
    phase: Phase, seconds: float, expected: list[tuple[str, str]]
) -> None:
    step, service = driver(FakeStore([task("h1", "running"), task("h2", "running")]))
    await step.advance(TX, experiment(phase, seconds))
    assert service.moves == expected


async def test_analyzing_without_measurements_fails_with_the_analysis_detail() -> None:
    store = FakeStore([task("h1", "failed", "stopped")])
    step, service = driver(store)
    await step.advance(TX, experiment(Phase.ANALYZING, 0))
    assert store.analysis is not None and store.analysis["status"] == "insufficient_data"
    assert service.moves == [(Phase.FAILED, store.analysis["detail"])]


async def test_a_phase_without_a_step_raises() -> None:
    step, _ = driver(FakeStore([]))
    with pytest.raises(KeyError):
        await step.advance(TX, experiment(Phase.COMPLETED, 0))
