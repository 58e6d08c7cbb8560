"""Keep-list refreshes: rank processes from an observation exporter and rewrite the keep file on change."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import structlog

from agent import keeplist, measure
from agent.collector import ApplyError, Collector, one_line
from agent.payloads import collection_interval
from agent.state import StateDir, atomic_write, read_text
from agent.timing import jittered
from phoenix_common import wire
from phoenix_common.keeplist import parse_keep_file, render_keep_file

log = structlog.get_logger("phoenix.agent.keeprefresh")

# Keep-list refreshes of a deployment run at most this often (an embedded keep file reloads the
# collector on each change; a live one, the roll-up's, is only rewritten).
MIN_REFRESH_SECONDS = 30.0
# An experiment refreshes often enough to settle its keep-list well inside the measured window.
MIN_EXPERIMENT_REFRESH_SECONDS = 5.0
DEPLOYMENT_HOLD_SECONDS = 120.0


class KeepListRefresher:
    """Ranks processes from a selection pipeline's observation exporter; rewrites its keep file on change."""

    def __init__(
        self,
        collector: Collector,
        session: aiohttp.ClientSession,
        *,
        variant: str,
        pipeline: str,
        spec: wire.KeepList,
        keep_path: Path,
        observe_endpoint: str,
        period: float,
        min_hold_seconds: float,
        collection_interval: float | None = None,
        fast_seconds: float = 0.0,
    ) -> None:
        self.collector = collector
        self.session = session
        self.variant = variant
        self.pipeline = pipeline
        self.spec = spec
        self.keep_path = keep_path
        self.observe_endpoint = observe_endpoint
        self.period = period
        # Three collections: a process is first seen in one, and has a rate (an increase) from the next.
        self.first_delay = min(period, max(MIN_EXPERIMENT_REFRESH_SECONDS, 3 * (collection_interval or 10.0)))
        self.tracker = keeplist.KeepListTracker(
            spec.strategy,
            spec.k,
            spec.critical,
            min_hold_seconds=min_hold_seconds,
            coverage_target=spec.coverage_target if spec.strategy == "intelligent" else None,
            # Smoothed over time, one period per step: ranking more often in the first seconds does
            # not make a name idle between runs fade faster.
            ewma_seconds=period,
        )
        # For this long after priming (an experiment's warm-up) the list is ranked at every collection,
        # so that names which run now and then (cron jobs) join as soon as they are seen, not one
        # period later each: the list has settled when measuring starts.
        self.fast_seconds = fast_seconds
        self.current: list[str] = self._file_names() or sorted(set(spec.initial))
        self.refreshes = 0
        self.changes = 0
        self._snapshot: measure.Snapshot | None = None
        # Observed at every collection, ranked every period: CPU-seconds per name since the last
        # ranking. A process that lives between two rankings (a cron job) has a rate only between two
        # collections; observed once a period, its CPU would never be seen.
        self.observe_every = max(1.0, collection_interval or 10.0)
        self._cpu_seconds: dict[str, float] = {}
        self._seconds = 0.0

    def _file_names(self) -> list[str] | None:
        text = read_text(self.keep_path)
        if text is None:
            return None
        try:
            return sorted(set(parse_keep_file(text)))
        except ValueError:
            return None

    async def prime(self) -> None:
        """The first ranking, soon after start: `first_delay` (three collections), not a whole period.

        Until it, a selection pipeline keeps only its initial (critical) processes.
        """
        first = time.monotonic() + self.first_delay
        # Observed at every collection meanwhile, as between two rankings: a process started after
        # the first observation (the experiment's load) has a rate from its second collection on,
        # and a ranking fed only the first and the last observation would not see it.
        while (left := first - time.monotonic()) > 0:
            await self._logged(self._observe, "keep_list_observe_failed")
            await asyncio.sleep(min(left, 1.0 if self._snapshot is None else self.observe_every))
        await self._refresh_logged()

    async def run(self, primed: bool = False) -> None:
        """Rank (unless primed already), then again every `period` (jittered) until cancelled,
        observing at every collection in between."""
        log.info("keep_list_refresher_started", variant=self.variant, period_seconds=round(self.period, 1))
        if not primed:
            await self.prime()
        fast_until = time.monotonic() + self.fast_seconds
        while True:
            period = self.observe_every if time.monotonic() < fast_until else self.period
            due = time.monotonic() + jittered(period)
            while (left := due - time.monotonic()) > self.observe_every:
                await asyncio.sleep(self.observe_every)
                await self._logged(self._observe, "keep_list_observe_failed")
            await asyncio.sleep(max(0.0, left))
            await self._refresh_logged()

    async def _refresh_logged(self) -> None:
        await self._logged(self.refresh_once, "keep_list_refresh_failed")

    async def _logged(self, step: Callable[[], Awaitable[object]], event: str) -> None:
        """Run one step; a failure is logged as `event` and never ends the refresher."""
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(event, variant=self.variant, error=one_line(str(exc), 300))

    async def _observe(self) -> dict[str, Any] | None:
        try:
            text = await measure.scrape(self.session, self.observe_endpoint)
        except measure.MeasureError as exc:
            log.warning("keep_list_observe_failed", variant=self.variant, error=str(exc))
            return None
        sample, snapshot = measure.summarize(
            text,
            variant=self.variant,
            pipeline=self.pipeline,
            previous=self._snapshot,
            critical=self.spec.critical,
            kept=None,
        )
        if sample["active_series"] == 0:
            # Nothing collected yet (just started or reloaded): ranking on it would drop every process.
            return None
        # No collection since the last observation: the summary repeats the last rates, already counted.
        advanced = self._snapshot is None or snapshot.ts != self._snapshot.ts
        self._snapshot = snapshot
        seconds = float(sample.get("interval_seconds") or 0.0)
        if seconds > 0 and advanced:
            for name, rate in sample["process_cpu_seconds_rate"].items():
                self._cpu_seconds[name] = self._cpu_seconds.get(name, 0.0) + rate * seconds
            self._seconds += seconds
        return sample

    def _take_rates(self, sample: dict[str, Any]) -> dict[str, float]:
        """Mean CPU rate per name since the last ranking (this sample's when nothing accumulated)."""
        rates = sample["process_cpu_seconds_rate"]
        if self._seconds > 0:
            rates = {n: v / self._seconds for n, v in self._cpu_seconds.items()}
        self._cpu_seconds, self._seconds = {}, 0.0
        return rates

    async def refresh_once(self) -> bool:
        """One ranking; True when the keep list changed and the collector took it."""
        sample = await self._observe()
        if sample is None:
            return False
        if self.refreshes and self._seconds == 0:
            # No collection since the last ranking (ranked at every collection, the jitter can land two
            # rankings on one): its rates are counted already.
            return False
        self.refreshes += 1
        cpu = {n: v for n, v in self._take_rates(sample).items() if n != wire.OTHER}
        memory = {n: v for n, v in sample["process_memory_bytes"].items() if n != wire.OTHER}
        chosen = self.tracker.update(cpu, memory, time.monotonic())
        if chosen is None or sorted(chosen) == self.current:
            return False
        if not await self._write(chosen):
            return False
        log.info(
            "keep_list_changed",
            variant=self.variant,
            added=sorted(set(chosen) - set(self.current)),
            removed=sorted(set(self.current) - set(chosen)),
        )
        self.current = sorted(chosen)
        self.changes += 1
        return True

    async def _write(self, chosen: list[str]) -> bool:
        """Write the keep file; reload the collector unless it reads the file live. False: not taken."""
        previous = read_text(self.keep_path)
        atomic_write(self.keep_path, render_keep_file(chosen))
        if self.spec.live:
            return True
        try:
            await self.collector.reload_checked()
        except ApplyError as exc:
            log.error("keep_list_reload_failed", variant=self.variant, error=str(exc))
            if previous is not None:
                atomic_write(self.keep_path, previous)
            with contextlib.suppress(ApplyError):
                await self.collector.reload_checked()
            return False
        return True


class KeepListRecord(msgspec.Struct, frozen=True):
    """What the applied record remembers of a deployment's keep list, to refresh it after a restart."""

    variant: str
    spec: wire.KeepList
    keep_path: str
    observe_endpoint: str

    def __post_init__(self) -> None:
        wire.check_loopback("observe_endpoint", self.observe_endpoint)


class Refreshers:
    """The running deployment's keep-list refreshers, stopped while its config is replaced."""

    def __init__(self, collector: Collector, session: aiohttp.ClientSession, state: StateDir) -> None:
        self.collector = collector
        self.session = session
        self.state = state
        self.running: dict[str, KeepListRefresher] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def kept(self) -> dict[str, list[str]]:
        """Variant -> the processes its keep list holds now."""
        return {variant: r.current for variant, r in self.running.items()}

    async def suspend(self) -> None:
        """Stop the refreshers (the config they serve is being replaced)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.running = {}

    async def resume(self) -> None:
        """Start refreshers for what the applied record says runs now."""
        await self.suspend()
        record = self.state.load_applied()
        if record.get("source") != "deployment":
            return
        for item in record.get("keep_lists") or []:
            try:
                kept = wire.check(KeepListRecord, item, "keep_list")
            except wire.WireError as exc:
                variant = item.get("variant") if isinstance(item, dict) else None
                log.warning("keep_list_refresher_not_started", variant=variant, reason=str(exc))
                continue
            refresher = KeepListRefresher(
                self.collector,
                self.session,
                variant=kept.variant,
                pipeline=str(record.get("pipeline")),
                spec=kept.spec,
                keep_path=Path(kept.keep_path),
                observe_endpoint=kept.observe_endpoint,
                period=max(MIN_REFRESH_SECONDS, kept.spec.refresh_seconds),
                min_hold_seconds=DEPLOYMENT_HOLD_SECONDS,
                collection_interval=collection_interval(self.collector.current_config()),
            )
            self.running[kept.variant] = refresher
            self._tasks.append(asyncio.create_task(refresher.run(), name=f"keep-{kept.variant}"))
