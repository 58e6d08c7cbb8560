"""The experiment engine: merged config, load, sampling, keep-list refresh, then the previous config back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from agent import measure
from agent.apply import restore_previous
from agent.client import Reporter
from agent.collector import ApplyError, Collector, one_line, parse_config, sha256_text
from agent.keeprefresh import MIN_EXPERIMENT_REFRESH_SECONDS, KeepListRefresher, Refreshers
from agent.payloads import ExperimentPlan, TaskError, collection_interval
from agent.probe import measure_alone
from agent.state import StateDir, atomic_write, read_text
from phoenix_common import wire
from phoenix_common.keeplist import render_keep_file

log = structlog.get_logger("phoenix.agent.experiment")


@dataclass
class _VariantStats:
    """Running figures of one variant's measured samples, for the summary."""

    pipeline: str
    samples: int = 0
    scrape_errors: int = 0
    series: list[int] = field(default_factory=list)
    dps: list[float] = field(default_factory=list)
    critical_missing: int = 0
    skipped_after_reload: int = 0
    last_error: str | None = None

    def add(self, sample: Mapping[str, Any]) -> None:
        self.samples += 1
        self.series.append(int(sample.get("active_series", 0)))
        self.dps.append(float(sample.get("datapoints_per_second", 0.0)))
        if not all((sample.get("critical_present") or {}).values()):
            self.critical_missing += 1

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pipeline": self.pipeline,
            "samples": self.samples,
            "scrape_errors": self.scrape_errors,
            "samples_missing_critical": self.critical_missing,
            "samples_skipped_after_reload": self.skipped_after_reload,
        }
        if self.series:
            out["active_series"] = {
                "mean": round(sum(self.series) / len(self.series), 3),
                "min": min(self.series),
                "max": max(self.series),
                "last": self.series[-1],
            }
            out["datapoints_per_second"] = {
                "mean": round(sum(self.dps) / len(self.dps), 6),
                "max": max(self.dps),
            }
        if self.last_error:
            out["last_error"] = self.last_error
        return out


def mid_collection(when: float, collected_at: float | None, interval: float | None) -> float:
    """The first moment from `when` on that lies halfway between two collections.

    An exporter updates its series one by one as a collection arrives, so a scrape at that moment can
    hold part of one collection and part of the one before; halfway between two it holds one whole.
    """
    if collected_at is None or not interval:
        return when
    return when + (interval / 2 - (when - collected_at)) % interval


def refresh_period(plan: ExperimentPlan, keep: wire.KeepList) -> float:
    """Keep-list refresh period in an experiment.

    The template's refresh_seconds, but at most a third of the run and at most four collections (and
    at least 5 s, and no shorter than a sample interval), so that the keep list settles during the
    warm-up and a short run still re-ranks inside its measured window. The first ranking comes three
    collections after the start (KeepListRefresher.prime), when new processes have a rate.
    """
    collections = 4 * (collection_interval(plan.baseline.config) or 10.0)
    return max(
        MIN_EXPERIMENT_REFRESH_SECONDS,
        min(keep.refresh_seconds, collections, max(plan.interval, plan.duration / 3)),
    )


class Experiment:
    """One experiment on this host, run against the collector with the deployment's refreshers paused."""

    def __init__(
        self,
        plan: ExperimentPlan,
        task_id: str,
        *,
        collector: Collector,
        state: StateDir,
        session: aiohttp.ClientSession,
        refreshers: Refreshers,
        reporter: Reporter,
    ) -> None:
        self.plan = plan
        self.task_id = task_id
        self.collector = collector
        self.state = state
        self.session = session
        self.deployment_refreshers = refreshers
        self.reporter = reporter
        self.stop_requested = False
        self.task: asyncio.Task[None] | None = None
        self.restored_hash: str | None = None
        self.restore_error: str | None = None
        self.refreshers: dict[str, KeepListRefresher] = {}
        self.stats = {s.role: _VariantStats(s.template) for s in plan.variants}
        self.posted = 0
        self.started_at: float | None = None
        self.measure_from: float | None = None
        self.finished_at: float | None = None
        self.load: Any = None
        self.overhead: dict[str, dict[str, Any]] = {}

    def kept(self) -> dict[str, list[str]]:
        """Variant -> the processes its keep list holds now."""
        return {role: r.current for role, r in self.refreshers.items()}

    async def run(self) -> dict[str, Any]:
        """The whole experiment; returns the summary. Cancellation stops it early but still restores."""
        plan = self.plan
        if plan.load_profile:
            from agent.loadgen import LoadProfile  # loaded only when an experiment asks for load

            try:
                self.load = LoadProfile(plan.load_profile)
            except ValueError as exc:
                raise TaskError(f"payload.load_profile: {exc}") from None
        previous_text = self.collector.current_text()
        previous_record = self.state.load_applied()
        keep_files = {
            s.keep_path: render_keep_file(s.keep.initial) for s in plan.variants if s.keep and s.keep_path
        }
        # The running deployment's keep files as they are, to be put back with its config.
        saved_keep = {p: t for p in keep_files if (t := read_text(p)) is not None}
        # Written before the swap: an agent that restarts mid-experiment puts the previous config back.
        atomic_write(
            self.state.experiment_file,
            json.dumps(
                {
                    "experiment_id": plan.experiment_id,
                    "task_id": self.task_id,
                    "previous_config": previous_text,
                    "previous_record": previous_record,
                    "keep_files": {str(p): t for p, t in saved_keep.items()},
                }
            ),
            mode=0o600,
        )
        await self.deployment_refreshers.suspend()
        restore = True
        refresh_tasks: list[asyncio.Task[None]] = []
        try:
            try:
                # Not remembered as last good: after a crash the agent goes back to what ran before.
                side_files = {path: text for v in plan.variants for path, text in v.side_files.items()}
                await self.collector.apply(
                    plan.merged_yaml, files={**keep_files, **side_files}, remember=False
                )
            except ApplyError as exc:
                # The collector is back on its last good config already.
                restore = False
                raise TaskError(str(exc)) from None
            self.state.save_applied(
                {
                    "source": "experiment",
                    "experiment_id": plan.experiment_id,
                    "config_hash": sha256_text(plan.merged_yaml),
                    "pipeline": f"experiment:{plan.experiment_id}",
                    "variants": {s.role: s.template for s in plan.variants},
                }
            )
            if self.load is not None:
                await self.load.start()
            for spec in plan.variants:
                if spec.keep and spec.keep_path and spec.observe_endpoint:
                    period = refresh_period(plan, spec.keep)
                    self.refreshers[spec.role] = KeepListRefresher(
                        self.collector,
                        self.session,
                        variant=spec.role,
                        pipeline=spec.template,
                        spec=spec.keep,
                        keep_path=spec.keep_path,
                        observe_endpoint=spec.observe_endpoint,
                        period=period,
                        min_hold_seconds=period,
                        collection_interval=collection_interval(plan.baseline.config),
                        fast_seconds=plan.warmup,
                    )
            # Rank the keep-lists before acknowledging: the control plane's warm-up then starts with
            # selection pipelines that keep what they will keep, not an empty list.
            await asyncio.gather(*(r.prime() for r in self.refreshers.values()))
            self.started_at = time.time()
            self.measure_from = self.started_at + plan.warmup
            self.reporter.status(self.task_id, "running")
            for role, refresher in self.refreshers.items():
                refresh_tasks.append(asyncio.create_task(refresher.run(primed=True), name=f"keep-{role}"))
            await self._sample_loop()
            if plan.overhead_probe > 0 and not self.stop_requested:
                await self._probe_overhead()
        finally:
            for task in refresh_tasks:
                task.cancel()
            await asyncio.gather(*refresh_tasks, return_exceptions=True)
            if self.load is not None:
                await self.load.stop()
            if restore:
                self.restored_hash, self.restore_error = await restore_previous(
                    self.collector,
                    self.state,
                    self.deployment_refreshers,
                    plan.experiment_id,
                    previous_text,
                    previous_record,
                    saved_keep,
                )
            else:
                await self.deployment_refreshers.resume()
            with contextlib.suppress(FileNotFoundError):
                self.state.experiment_file.unlink()
            self.finished_at = time.time()
        return self.summary()

    async def _scrape_pair(
        self, interval_hint: float | None
    ) -> dict[str, list[measure.Series] | measure.MeasureError]:
        """Every variant's exposition, parsed, from the same collection when they can be had.

        Each is read settled (measure.read_settled: not while its exporter is taking in a collection).
        The variants are read one after the other; a collection that lands in between puts one a
        whole interval ahead, and the pair's rates would disagree for that sample and the next. So the
        variants behind the newest are read again, a few times at most.
        """
        tolerance = 0.5 * (interval_hint or self.plan.interval)
        read: dict[str, list[measure.Series] | measure.MeasureError] = {}
        newest: dict[str, float] = {}
        pending = list(self.plan.variants)
        for attempt in range(4):
            for spec in pending:
                try:
                    series = await measure.read_settled(self.session, spec.prometheus_endpoint, tolerance)
                except measure.MeasureError as exc:
                    read[spec.role] = exc
                    continue
                read[spec.role] = series
                stamp = measure.newest_timestamp(series)
                if stamp is not None:
                    newest[spec.role] = stamp
            if len(newest) < 2:
                break
            top = max(newest.values())
            pending = [s for s in self.plan.variants if newest.get(s.role, top) < top - tolerance]
            if not pending:
                break
            await asyncio.sleep(0.2 * (attempt + 1))
        return read

    async def _sample_loop(self) -> None:
        plan = self.plan
        assert self.started_at is not None and self.measure_from is not None
        end = self.measure_from + plan.duration
        interval_hint = collection_interval(parse_config(plan.merged_yaml))
        collector = self.collector
        grace = max(2.0, 2 * (interval_hint or 1.0))
        snapshots: dict[str, measure.Snapshot | None] = {s.role: None for s in plan.variants}
        billing = {s.role: measure.BillingCounter(plan.billing_window) for s in plan.variants}
        usage = measure.CollectorUsage(await collector.supervisor.pid())
        agent_usage = measure.CollectorUsage(os.getpid())
        tick = self.started_at
        collected_at: float | None = None  # the newest collection seen, to read between two of them
        while True:
            tick += plan.interval
            now = time.time()
            if tick > end + 1e-6:
                break
            await asyncio.sleep(max(0.0, mid_collection(tick, collected_at, interval_hint) - now))
            current_pid = await collector.supervisor.pid()
            if current_pid != usage.pid:
                usage.set_pid(current_pid)
            own = usage.sample()
            mine = agent_usage.sample()
            own["agent_cpu_percent"] = mine["collector_cpu_percent"]
            own["agent_memory_bytes"] = mine["collector_memory_bytes"]
            # A reload rebuilds the pipelines: the rolled counters restart, and need two collections
            # before they add deltas again; samples until then are marked.
            reloaded = (
                time.monotonic() - collector.reloaded_at
                < 3 * (interval_hint or plan.interval) + plan.interval
            )
            read = await self._scrape_pair(interval_hint)
            stamps = [measure.newest_timestamp(r) for r in read.values() if not isinstance(r, Exception)]
            collected_at = max((t for t in stamps if t is not None), default=collected_at)
            batch = []
            for spec in plan.variants:
                stats = self.stats[spec.role]
                reference = snapshots[spec.role]
                primed = reference is not None
                try:
                    text = read[spec.role]
                    if isinstance(text, measure.MeasureError):
                        raise text
                    refresher = self.refreshers.get(spec.role)
                    sample, snapshots[spec.role] = measure.summarize(
                        text,
                        variant=spec.role,
                        pipeline=spec.template,
                        previous=snapshots[spec.role],
                        critical=plan.critical,
                        kept=refresher.current if refresher else None,
                        collection_interval=interval_hint,
                        billing=billing[spec.role],
                    )
                except measure.MeasureError as exc:
                    stats.scrape_errors += 1
                    stats.last_error = one_line(str(exc), 300)
                    log.warning("experiment_scrape_failed", variant=spec.role, error=stats.last_error)
                    continue
                sample.update(own)
                sample["reloaded"] = reloaded
                if sample["active_series"] == 0 and time.monotonic() - collector.reloaded_at < grace:
                    # Just reloaded (a keep-list change): the exporter is empty until its next collection.
                    stats.skipped_after_reload += 1
                    snapshots[spec.role] = reference  # an empty scrape is no reference for rates
                    continue
                # The first sample has no rate reference yet. Warm-up samples are posted (the control plane
                # picks its measured window) but left out of this summary.
                if primed:
                    batch.append(sample)
                    if sample["ts"] >= self.measure_from:
                        stats.add(sample)
            if batch:
                self.reporter.measurements(plan.experiment_id, self.task_id, batch)
                self.posted += len(batch)

    async def _probe_overhead(self) -> None:
        """Each arm alone in a probe collector for overhead_probe seconds (agent/probe.py)."""
        for spec in self.plan.variants:
            self.overhead[spec.role] = await measure_alone(
                self.collector.settings.binary, spec.config, spec.role, self.plan.overhead_probe
            )
        log.info("experiment_overhead_probed", overhead=self.overhead)

    def summary(self) -> dict[str, Any]:
        """The raw figures the experiment measured; the control plane derives the comparison."""
        plan = self.plan
        out: dict[str, Any] = {
            "experiment_id": plan.experiment_id,
            "started_at": self.started_at,
            "measured_from": self.measure_from,
            "finished_at": self.finished_at,
            "warmup_seconds": plan.warmup,
            "duration_seconds": plan.duration,
            "sample_interval_seconds": plan.interval,
            "load_profile": plan.load_profile,
            "ended_by": "stop task" if self.stop_requested else "duration",
            "samples_posted": self.posted,
            "variants": {role: stats.summary() for role, stats in self.stats.items()},
            "keep_lists": {
                role: {
                    "final": r.current,
                    "refreshes": r.refreshes,
                    "changes": r.changes,
                    "period_seconds": round(r.period, 3),
                }
                for role, r in self.refreshers.items()
            },
            "restored_config_hash": self.restored_hash,
        }
        if self.overhead:
            out["overhead"] = self.overhead
        if self.restore_error:
            out["restore_error"] = self.restore_error
        return out


async def recover(collector: Collector, state: StateDir, refreshers: Refreshers, reporter: Reporter) -> None:
    """At start: undo an experiment the agent was running when it stopped, and report that task failed."""
    record = state.load_json(state.experiment_file)
    if record is None:
        return
    experiment_id = str(record.get("experiment_id"))
    text = record.get("previous_config")
    keep = {Path(p): str(t) for p, t in (record.get("keep_files") or {}).items()}
    restored, error = await restore_previous(
        collector,
        state,
        refreshers,
        experiment_id,
        text if isinstance(text, str) else None,
        record.get("previous_record") or {},
        keep,
    )
    with contextlib.suppress(FileNotFoundError):
        state.experiment_file.unlink()
    task_id = record.get("task_id")
    if isinstance(task_id, str) and task_id:
        reporter.status(
            task_id,
            "failed",
            error=one_line(
                f"the agent restarted during experiment {experiment_id}; previous config "
                + (f"could not be restored: {error}" if error else "restored")
            ),
        )
    log.warning("experiment_recovered", experiment_id=experiment_id, restored_config_hash=restored)
