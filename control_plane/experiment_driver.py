"""The driver that moves each active experiment through its phases: one step function per phase."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable

import structlog

from control_plane.db import Database, Tx
from control_plane.experiment_service import ExperimentService
from control_plane.metrics import ApiMetrics
from control_plane.phases import ACTIVE, Phase
from control_plane.stores.experiments import ExperimentStore, Row

log = structlog.get_logger("phoenix.experiments")

Step = Callable[[Tx, Row, dict[str, Row]], Awaitable[None]]


class ExperimentDriver:
    """Advances experiments every second, or at once when the service's wake event is set."""

    def __init__(self, db: Database, store: ExperimentStore, service: ExperimentService):
        self.db = db
        self.store = store
        self.service = service
        self.steps: dict[Phase, Step] = {
            Phase.DEPLOYING: self._deploying,
            Phase.WARMING_UP: self._warming_up,
            Phase.RUNNING: self._running,
            Phase.ANALYZING: self._analyzing,
        }
        assert set(self.steps) == ACTIVE

    async def run(self) -> None:
        wake = self.service.wake
        while True:
            try:
                await self.advance_all()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("experiment_driver_error", error=str(exc))
            wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=random.uniform(0.8, 1.2))

    async def advance_all(self) -> None:
        """One pass over active experiments; replicas skip rows another one holds."""
        async with self.db.transaction() as tx:
            for row in await self.store.claim_active(tx):
                # One savepoint each: an experiment whose step fails (even in the database, which aborts
                # what it ran) is rolled back and failed alone; the others of the pass go on.
                try:
                    async with tx.savepoint():
                        await self.advance(tx, row)
                except Exception as exc:
                    log.exception("experiment_advance_failed", experiment_id=row["id"], error=str(exc))
                    reason = f"internal error while {row['phase']}: {exc}"[:500]
                    try:
                        async with tx.savepoint():
                            await self.service.recall(tx, row["id"], "internal error")
                            await self.service.move(tx, row, Phase.FAILED, reason)
                    except Exception as again:
                        log.exception("experiment_fail_failed", experiment_id=row["id"], error=str(again))

    async def advance(self, tx: Tx, row: Row) -> None:
        """Fail the experiment if a host failed it, else run its phase's step."""
        step = self.steps[Phase(row["phase"])]
        states = {t["host_id"]: t for t in await self.store.task_states(row["id"], tx)}
        if row["phase"] != Phase.ANALYZING:
            failed = {h: t["error"] for h, t in states.items() if t["status"] == "failed"}
            if failed:
                host, error = sorted(failed.items())[0]
                await self._fail(tx, row, f"host {host} failed the experiment: {error}")
                return
        await step(tx, row, states)

    async def _fail(self, tx: Tx, row: Row, reason: str) -> None:
        await self.service.recall(tx, row["id"], "experiment failed")
        await self.service.move(tx, row, Phase.FAILED, reason)

    async def _deploying(self, tx: Tx, row: Row, states: dict[str, Row]) -> None:
        acked = [h for h in row["hosts"] if states.get(h, {}).get("status") in ("running", "completed")]
        timeout = self.service.ack_timeout
        if len(acked) == len(row["hosts"]):
            await self.service.move(tx, row, Phase.WARMING_UP, f"all {len(acked)} host(s) run both pipelines")
        elif float(row["seconds_in_phase"]) > timeout:
            silent = sorted(set(row["hosts"]) - set(acked))
            await self._fail(
                tx, row, f"host(s) never acknowledged within {timeout:g}s: {', '.join(silent[:20])}"
            )

    async def _warming_up(self, tx: Tx, row: Row, states: dict[str, Row]) -> None:
        warmup = row["spec"]["warmup_seconds"]
        if float(row["seconds_in_phase"]) >= warmup:
            await self.service.move(tx, row, Phase.RUNNING, f"warm-up of {warmup:g}s done; measuring")

    async def _running(self, tx: Tx, row: Row, states: dict[str, Row]) -> None:
        duration = row["spec"]["duration_seconds"]
        if float(row["seconds_in_phase"]) >= duration:
            hosts = await self.service.recall(tx, row["id"], "experiment finished")
            await self.service.move(tx, row, Phase.ANALYZING, f"ran {duration:g}s; restoring {hosts} host(s)")

    async def _analyzing(self, tx: Tx, row: Row, states: dict[str, Row]) -> None:
        result = await self.service.analyze(
            row, tx, window=(row["running_at"], row["analyzing_at"]), overheads=_overheads(states)
        )
        await self.store.set_analysis(row["id"], result, tx)
        if result["status"] != "ok":
            await self.service.move(tx, row, Phase.FAILED, result["detail"])
            return
        fleet = result["fleet"]
        extrapolated = "; extrapolated: not promotable without force" if result["extrapolated"] else ""
        await self.service.move(
            tx,
            row,
            Phase.COMPLETED,
            f"verdict {result['verdict']}: {fleet['billed_series_reduction_percent']}% fewer billed series, "
            f"{fleet['cpu_coverage_percent']}% of CPU covered (p10 {fleet['cpu_coverage_p10_percent']}%)"
            f"{extrapolated}",
        )

    async def gauges(self, metrics: ApiMetrics) -> None:
        """Refresh the phoenix_experiment_phase and phoenix_cardinality_reduction_percent gauges."""
        metrics.phase.clear()
        metrics.reduction.clear()
        for row in await self.store.gauges():
            metrics.phase.labels(row["id"]).set(Phase(row["phase"]).gauge)
            if row["reduction"] is not None:
                metrics.reduction.labels(row["id"]).set(row["reduction"])


def _overheads(states: dict[str, Row]) -> dict[str, dict[str, object]]:
    """Per host, the overhead probe's block of its experiment summary, when the task state carries it."""
    out = {}
    for host, state in states.items():
        result = state.get("result")
        overhead = result.get("overhead") if isinstance(result, dict) else None
        if isinstance(overhead, dict):
            out[host] = overhead
    return out
