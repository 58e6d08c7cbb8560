"""Task handlers (deployment, experiment, metrics, health) and the keep-list refreshes they start."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import structlog

from agent import keeplist, measure
from agent.client import Reporter
from agent.collector import (
    ApplyError,
    Collector,
    MergeError,
    dump_config,
    merge_configs,
    observe_endpoints,
    one_line,
    parse_config,
    prometheus_endpoints,
    sha256_text,
)
from agent.state import StateDir, atomic_write, read_text
from phoenix_common.keeplist import parse_keep_file, render_keep_file
from phoenix_common.settings import is_loopback, parse_duration

log = structlog.get_logger("phoenix.agent.tasks")

# Keep-list refreshes of a deployment run at most this often (the collector reloads on each change).
MIN_REFRESH_SECONDS = 30.0
# An experiment refreshes often enough to settle its keep-list well inside the measured window.
MIN_EXPERIMENT_REFRESH_SECONDS = 5.0
MAX_EXPERIMENT_SECONDS = 7 * 24 * 3600.0
MIN_SAMPLE_INTERVAL = 1.0
ROLES = ("baseline", "candidate")


class TaskError(Exception):
    """A task cannot be done; the message is the one-line reason reported with status failed."""


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def jittered(interval: float) -> float:
    """`interval` x uniform(0.8, 1.2), so that many agents do not act in lockstep."""
    return interval * random.uniform(0.8, 1.2)


# -- payload checks ---------------------------------------------------------------------------------------

_KINDS = {
    str: "a string",
    int: "an integer",
    float: "a number",
    dict: "an object",
    list: "an array",
    bool: "a boolean",
}


def _get(obj: Mapping[str, Any], name: str, kind: type, where: str, *, required: bool = True) -> Any:
    """Field `name` of `obj` of JSON type `kind`, or TaskError naming `where.name`."""
    value = obj.get(name)
    if value is None:
        if required:
            raise TaskError(f"{where}.{name} is required")
        return None
    ok = (
        isinstance(value, int | float) and not isinstance(value, bool)
        if kind is float
        else (isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool))
    )
    if not ok:
        raise TaskError(f"{where}.{name} must be {_KINDS[kind]}")
    if kind is float and not math.isfinite(value):
        raise TaskError(f"{where}.{name} must be a finite number")
    return value


def _strings(obj: Mapping[str, Any], name: str, where: str, *, required: bool = True) -> tuple[str, ...]:
    values = _get(obj, name, list, where, required=required) or []
    if not all(isinstance(v, str) for v in values):
        raise TaskError(f"{where}.{name} must be an array of strings")
    return tuple(values)


def _loopback_endpoint(value: Any, where: str) -> str:
    """A `host:port` the agent may scrape: the collector only listens on loopback."""
    if not isinstance(value, str):
        raise TaskError(f"{where} must be a string host:port")
    parts = urlsplit(f"//{value}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.path or not is_loopback(parts.hostname):
        raise TaskError(f"{where} must be a loopback host:port such as 127.0.0.1:9464, got {value[:80]!r}")
    return value


@dataclass(frozen=True)
class KeepSpec:
    """A KeepList of docs/contracts.md."""

    path: str
    strategy: str
    k: int
    critical: tuple[str, ...]
    initial: tuple[str, ...]
    refresh_seconds: float

    @classmethod
    def parse(cls, value: Any, where: str) -> KeepSpec:
        if not isinstance(value, dict):
            raise TaskError(f"{where} must be an object")
        path = _get(value, "path", str, where)
        if not path.startswith("/"):
            raise TaskError(f"{where}.path must be absolute")
        strategy = _get(value, "strategy", str, where)
        if strategy not in keeplist.STRATEGIES:
            raise TaskError(
                f"{where}.strategy must be one of {', '.join(keeplist.STRATEGIES)}, got {strategy!r}"
            )
        k = _get(value, "k", int, where)
        if k < 0:
            raise TaskError(f"{where}.k must not be negative")
        critical = _strings(value, "critical", where, required=False)
        initial = _strings(value, "initial", where, required=False)
        refresh = _get(value, "refresh_seconds", float, where, required=False) or 120.0
        if refresh <= 0:
            raise TaskError(f"{where}.refresh_seconds must be positive")
        spec = cls(path, strategy, k, critical, initial, float(refresh))
        try:
            render_keep_file(initial)
            spec.tracker(120.0)
        except ValueError as exc:
            raise TaskError(f"{where}: {exc}") from None
        return spec

    def tracker(self, min_hold_seconds: float) -> keeplist.KeepListTracker:
        return keeplist.KeepListTracker(
            self.strategy, self.k, self.critical, min_hold_seconds=min_hold_seconds
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "strategy": self.strategy,
            "k": self.k,
            "critical": list(self.critical),
            "initial": list(self.initial),
            "refresh_seconds": self.refresh_seconds,
        }


def relocate(config_yaml: str, spec: KeepSpec, state: StateDir, where: str) -> tuple[str, Path]:
    """Point the config at the agent's own keep file by replacing the exact path string."""
    try:
        target = state.keep_path(spec.path)
    except ValueError as exc:
        raise TaskError(f"{where}: {exc}") from None
    if spec.path not in config_yaml:
        raise TaskError(f"{where}.path {spec.path!r} does not occur in the config")
    return config_yaml.replace(spec.path, str(target)), target


@dataclass(frozen=True)
class RenderedSpec:
    """One variant of an experiment (a Rendered object), with its keep file relocated."""

    role: str
    template: str
    variant: str
    config_yaml: str
    config: dict[str, Any]
    prometheus_endpoint: str
    observe_endpoint: str | None
    keep: KeepSpec | None
    keep_path: Path | None

    @classmethod
    def parse(cls, role: str, value: Any, state: StateDir) -> RenderedSpec:
        where = f"payload.{role}"
        if not isinstance(value, dict):
            raise TaskError(f"{where} must be a Rendered object")
        template = _get(value, "template", str, where)
        variant = _get(value, "variant", str, where)
        text = _get(value, "config_yaml", str, where)
        endpoint = _loopback_endpoint(
            _get(value, "prometheus_endpoint", str, where), f"{where}.prometheus_endpoint"
        )
        observe = value.get("observe_endpoint")
        if observe is not None:
            observe = _loopback_endpoint(observe, f"{where}.observe_endpoint")
        keep = KeepSpec.parse(value["keep_list"], f"{where}.keep_list") if value.get("keep_list") else None
        keep_path = None
        if keep is not None:
            text, keep_path = relocate(text, keep, state, f"{where}.keep_list")
        try:
            config = parse_config(text, f"{where}.config_yaml")
        except ValueError as exc:
            raise TaskError(str(exc)) from None
        return cls(role, template, variant, text, config, endpoint, observe, keep, keep_path)


def collection_interval(config: Mapping[str, Any]) -> float | None:
    """The shared receiver's collection interval in seconds, when the config states one."""
    receivers = config.get("receivers") or {}
    for name, spec in receivers.items() if isinstance(receivers, Mapping) else ():
        if (
            str(name).startswith("hostmetrics")
            and isinstance(spec, Mapping)
            and spec.get("collection_interval")
        ):
            with contextlib.suppress(Exception):
                return parse_duration(spec["collection_interval"], "collection_interval")
    return None


# -- keep-list refresh -------------------------------------------------------------------------------------


class KeepListRefresher:
    """Ranks processes from a selection pipeline's observation exporter; rewrites its keep file on change."""

    def __init__(
        self,
        collector: Collector,
        session: aiohttp.ClientSession,
        *,
        variant: str,
        pipeline: str,
        spec: KeepSpec,
        keep_path: Path,
        observe_endpoint: str,
        period: float,
        min_hold_seconds: float,
        collection_interval: float | None = None,
    ) -> None:
        self.collector = collector
        self.session = session
        self.variant = variant
        self.pipeline = pipeline
        self.spec = spec
        self.keep_path = keep_path
        self.observe_endpoint = observe_endpoint
        self.period = period
        self.first_delay = min(period, max(MIN_EXPERIMENT_REFRESH_SECONDS, 2 * (collection_interval or 10.0)))
        self.tracker = spec.tracker(min_hold_seconds)
        self.current: list[str] = self._file_names() or sorted(set(spec.initial))
        self.refreshes = 0
        self.changes = 0
        self._snapshot: measure.Snapshot | None = None

    def _file_names(self) -> list[str] | None:
        text = read_text(self.keep_path)
        if text is None:
            return None
        try:
            return sorted(set(parse_keep_file(text)))
        except ValueError:
            return None

    async def prime(self) -> None:
        """The first ranking, soon after start: `first_delay` (two collections), not a whole period.

        Until it, a selection pipeline keeps only its initial (critical) processes.
        """
        first = time.monotonic() + self.first_delay
        # The reference point for the first CPU rates: the first observation that holds data.
        while self._snapshot is None and time.monotonic() < first:
            await self._observe()
            if self._snapshot is None:
                await asyncio.sleep(1.0)
        await asyncio.sleep(max(0.0, first - time.monotonic()))
        await self._refresh_logged()

    async def run(self, primed: bool = False) -> None:
        """Rank (unless primed already), then again every `period` (jittered) until cancelled."""
        log.info("keep_list_refresher_started", variant=self.variant, period_seconds=round(self.period, 1))
        if not primed:
            await self.prime()
        while True:
            await asyncio.sleep(jittered(self.period))
            await self._refresh_logged()

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh_once()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("keep_list_refresh_failed", variant=self.variant, error=one_line(str(exc), 300))

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
        self._snapshot = snapshot
        return sample

    async def refresh_once(self) -> bool:
        """One ranking; True when the keep list changed and the collector took it."""
        sample = await self._observe()
        if sample is None:
            return False
        self.refreshes += 1
        cpu = {n: v for n, v in sample["process_cpu_seconds_rate"].items() if n != keeplist.OTHER}
        memory = {n: v for n, v in sample["process_memory_bytes"].items() if n != keeplist.OTHER}
        chosen = self.tracker.update(cpu, memory, time.time())
        if chosen is None or sorted(chosen) == self.current:
            return False
        previous = read_text(self.keep_path)
        atomic_write(self.keep_path, render_keep_file(chosen))
        try:
            await self.collector.reload_checked()
        except ApplyError as exc:
            log.error("keep_list_reload_failed", variant=self.variant, error=str(exc))
            if previous is not None:
                atomic_write(self.keep_path, previous)
            with contextlib.suppress(ApplyError):
                await self.collector.reload_checked()
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


# -- experiments -------------------------------------------------------------------------------------------


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


@dataclass
class ExperimentPlan:
    """A validated experiment start payload."""

    experiment_id: str
    duration: float
    warmup: float
    interval: float
    critical: tuple[str, ...]
    load_profile: str | None
    baseline: RenderedSpec
    candidate: RenderedSpec
    merged_yaml: str

    @property
    def variants(self) -> tuple[RenderedSpec, RenderedSpec]:
        return (self.baseline, self.candidate)

    def refresh_period(self, spec: KeepSpec) -> float:
        """Keep-list refresh period in an experiment.

        The template's refresh_seconds, but at most a third of the run (and at least 5 s, and no
        shorter than a sample interval), so that even a short run re-ranks inside its measured window.
        The first ranking comes two collections after the start (KeepListRefresher.run), during warm-up
        for a usual warm-up, so the measured window sees a settled keep list.
        """
        return max(
            MIN_EXPERIMENT_REFRESH_SECONDS, min(spec.refresh_seconds, max(self.interval, self.duration / 3))
        )

    @classmethod
    def parse(cls, payload: Mapping[str, Any], state: StateDir) -> ExperimentPlan:
        where = "payload"
        experiment_id = _get(payload, "experiment_id", str, where)
        duration = float(_get(payload, "duration_seconds", float, where))
        warmup = float(_get(payload, "warmup_seconds", float, where, required=False) or 0.0)
        interval = float(_get(payload, "sample_interval_seconds", float, where, required=False) or 10.0)
        if not 0 < duration <= MAX_EXPERIMENT_SECONDS:
            raise TaskError(f"payload.duration_seconds must be between 0 and {MAX_EXPERIMENT_SECONDS:.0f}")
        if not 0 <= warmup <= MAX_EXPERIMENT_SECONDS:
            raise TaskError("payload.warmup_seconds must not be negative")
        if interval < MIN_SAMPLE_INTERVAL:
            raise TaskError(f"payload.sample_interval_seconds must be at least {MIN_SAMPLE_INTERVAL:g}")
        critical = _strings(payload, "critical_processes", where, required=False)
        load_profile = _get(payload, "load_profile", str, where, required=False)
        baseline = RenderedSpec.parse("baseline", payload.get("baseline"), state)
        candidate = RenderedSpec.parse("candidate", payload.get("candidate"), state)
        if baseline.keep_path and candidate.keep_path and baseline.keep_path == candidate.keep_path:
            raise TaskError("payload.baseline and payload.candidate use the same keep-list file")
        if baseline.prometheus_endpoint == candidate.prometheus_endpoint:
            raise TaskError("payload.baseline and payload.candidate export to the same prometheus_endpoint")
        try:
            merged = dump_config(merge_configs(baseline.config, candidate.config))
        except MergeError as exc:
            raise TaskError(str(exc)) from None
        return cls(
            experiment_id, duration, warmup, interval, critical, load_profile, baseline, candidate, merged
        )


class Experiment:
    """One experiment: merged config, load, sampling, keep-list refresh, then the previous config back."""

    def __init__(self, handlers: TaskHandlers, task_id: str, plan: ExperimentPlan) -> None:
        self.handlers = handlers
        self.task_id = task_id
        self.plan = plan
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

    async def run(self) -> dict[str, Any]:
        """The whole experiment; returns the summary. Cancellation stops it early but still restores."""
        h = self.handlers
        plan = self.plan
        if plan.load_profile:
            from agent.loadgen import LoadProfile  # loaded only when an experiment asks for load

            try:
                self.load = LoadProfile(plan.load_profile)
            except ValueError as exc:
                raise TaskError(f"payload.load_profile: {exc}") from None
        previous_text = h.collector.current_text()
        previous_record = h.state.load_applied()
        keep_files = {
            s.keep_path: render_keep_file(s.keep.initial) for s in plan.variants if s.keep and s.keep_path
        }
        # The running deployment's keep files as they are, to be put back with its config.
        saved_keep = {p: t for p in keep_files if (t := read_text(p)) is not None}
        # Written before the swap: an agent that restarts mid-experiment puts the previous config back.
        atomic_write(
            h.state.experiment_file,
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
        await h.suspend_refreshers()
        restore = True
        refresh_tasks: list[asyncio.Task[None]] = []
        try:
            try:
                # Not remembered as last good: after a crash the agent goes back to what ran before.
                await h.collector.apply(plan.merged_yaml, files=keep_files, remember=False)
            except ApplyError as exc:
                # The collector is back on its last good config already.
                restore = False
                raise TaskError(str(exc)) from None
            h.state.save_applied(
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
                    period = plan.refresh_period(spec.keep)
                    self.refreshers[spec.role] = KeepListRefresher(
                        h.collector,
                        h.session,
                        variant=spec.role,
                        pipeline=spec.template,
                        spec=spec.keep,
                        keep_path=spec.keep_path,
                        observe_endpoint=spec.observe_endpoint,
                        period=period,
                        min_hold_seconds=period,
                        collection_interval=collection_interval(plan.baseline.config),
                    )
            # Rank the keep-lists before acknowledging: the control plane's warm-up then starts with
            # selection pipelines that keep what they will keep, not an empty list.
            await asyncio.gather(*(r.prime() for r in self.refreshers.values()))
            self.started_at = time.time()
            self.measure_from = self.started_at + plan.warmup
            h.reporter.status(self.task_id, "running")
            for role, refresher in self.refreshers.items():
                refresh_tasks.append(asyncio.create_task(refresher.run(primed=True), name=f"keep-{role}"))
            await self._sample_loop()
        finally:
            for task in refresh_tasks:
                task.cancel()
            await asyncio.gather(*refresh_tasks, return_exceptions=True)
            if self.load is not None:
                await self.load.stop()
            if restore:
                await self._restore(previous_text, previous_record, saved_keep)
            else:
                await h.resume_refreshers()
            with contextlib.suppress(FileNotFoundError):
                h.state.experiment_file.unlink()
            self.finished_at = time.time()
        return self.summary()

    async def _sample_loop(self) -> None:
        plan = self.plan
        assert self.started_at is not None and self.measure_from is not None
        end = self.measure_from + plan.duration
        interval_hint = collection_interval(parse_config(plan.merged_yaml))
        collector = self.handlers.collector
        grace = max(2.0, 2 * (interval_hint or 1.0))
        snapshots: dict[str, measure.Snapshot | None] = {s.role: None for s in plan.variants}
        pid = await self.handlers.collector.supervisor.pid()
        usage = measure.CollectorUsage(pid)
        tick = self.started_at
        while True:
            tick += plan.interval
            now = time.time()
            if tick > end + 1e-6:
                break
            await asyncio.sleep(max(0.0, tick - now))
            current_pid = await self.handlers.collector.supervisor.pid()
            if current_pid != usage.pid:
                usage.set_pid(current_pid)
            own = usage.sample()
            batch = []
            for spec in plan.variants:
                stats = self.stats[spec.role]
                reference = snapshots[spec.role]
                primed = reference is not None
                try:
                    text = await measure.scrape(self.handlers.session, spec.prometheus_endpoint)
                    refresher = self.refreshers.get(spec.role)
                    sample, snapshots[spec.role] = measure.summarize(
                        text,
                        variant=spec.role,
                        pipeline=spec.template,
                        previous=snapshots[spec.role],
                        critical=plan.critical,
                        kept=refresher.current if refresher else None,
                        collection_interval=interval_hint,
                    )
                except measure.MeasureError as exc:
                    stats.scrape_errors += 1
                    stats.last_error = one_line(str(exc), 300)
                    log.warning("experiment_scrape_failed", variant=spec.role, error=stats.last_error)
                    continue
                sample.update(own)
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
                self.handlers.reporter.measurements(plan.experiment_id, self.task_id, batch)
                self.posted += len(batch)

    async def _restore(self, text: str | None, record: dict[str, Any], keep: dict[Path, str]) -> None:
        self.restored_hash, self.restore_error = await self.handlers.restore_previous(
            self.plan.experiment_id, text, record, keep
        )

    def summary(self) -> dict[str, Any]:
        """What the experiment measured, computed from the samples it took."""
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
        if self.restore_error:
            out["restore_error"] = self.restore_error
        base = self.stats["baseline"].series
        cand = self.stats["candidate"].series
        if base and cand and sum(base) > 0:
            mean_base = sum(base) / len(base)
            mean_cand = sum(cand) / len(cand)
            out["series_reduction_percent"] = round(100.0 * (1 - mean_cand / mean_base), 3)
        return out


# -- dispatch ----------------------------------------------------------------------------------------------

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


class TaskHandlers:
    """Runs tasks one at a time (an experiment in the background) and reports each through the outbox."""

    def __init__(
        self,
        *,
        state: StateDir,
        collector: Collector,
        session: aiohttp.ClientSession,
        reporter: Reporter,
    ) -> None:
        self.state = state
        self.collector = collector
        self.session = session
        self.reporter = reporter
        self.experiment: Experiment | None = None
        self.in_flight: dict[str, str] = {}  # task id -> "type/action"
        self.queued: set[str] = set()
        self._refreshers: dict[str, KeepListRefresher] = {}
        self._refresh_tasks: list[asyncio.Task[None]] = []
        self._snapshots: dict[str, measure.Snapshot] = {}
        self._usage: measure.CollectorUsage | None = None
        self._table: dict[tuple[str, str], Handler] = {
            ("deployment", "apply"): self.deployment_apply,
            ("experiment", "stop"): self.experiment_stop,
            ("metrics", "collect"): self.metrics_collect,
            ("health", "check"): self.health_check,
        }

    def accept(self, tasks: Sequence[Any]) -> None:
        """Note a delivered batch, so that heartbeats keep the leases of tasks still waiting their turn."""
        for task in tasks:
            task_id = task.get("id") if isinstance(task, dict) else None
            if isinstance(task_id, str) and task_id:
                self.queued.add(task_id)

    def running_task_ids(self) -> list[str]:
        """Tasks this agent holds: being handled, or delivered and waiting (task ids are UUIDs)."""
        return sorted(t for t in self.queued | set(self.in_flight) if _is_uuid(t))

    async def execute(self, task: Any) -> None:
        """Handle one delivered task; whatever it holds, it ends reported (never raises)."""
        task_id = task.get("id") if isinstance(task, dict) else None
        if not isinstance(task_id, str) or not task_id:
            log.error("task_without_id", task=str(task)[:200])
            return
        self.queued.discard(task_id)
        with structlog.contextvars.bound_contextvars(task_id=task_id):
            if task_id in self.in_flight:
                log.info("task_already_running")
                return
            kind = f"{task.get('type')}/{task.get('action')}"
            self.in_flight[task_id] = kind
            log.info("task_received", kind=kind)
            try:
                if (task.get("type"), task.get("action")) == ("experiment", "start"):
                    # Reported running once both pipelines run: the control plane's warm-up starts then.
                    self._start_experiment(task_id, self._payload(task))
                    return
                self.reporter.status(task_id, "running")
                handler = self._table.get((task.get("type"), task.get("action")))
                if handler is None:
                    raise TaskError(
                        f"unknown task type/action {str(task.get('type'))[:40]}/"
                        f"{str(task.get('action'))[:40]}"
                    )
                result = await handler(task_id, self._payload(task))
            except (TaskError, ApplyError) as exc:
                self._finish(task_id, "failed", error=one_line(str(exc)))
            except Exception as exc:
                log.exception("task_crashed")
                self._finish(task_id, "failed", error=one_line(f"agent error: {type(exc).__name__}: {exc}"))
            else:
                self._finish(task_id, "completed", result=result)

    @staticmethod
    def _payload(task: dict[str, Any]) -> dict[str, Any]:
        payload = task.get("payload")
        if payload is None:
            return {}
        if not isinstance(payload, dict):
            raise TaskError("payload must be an object")
        return payload

    def _finish(
        self, task_id: str, status: str, *, result: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        self.reporter.status(task_id, status, result=result, error=error)
        self.in_flight.pop(task_id, None)
        log.info("task_finished", task_id=task_id, status=status, error=error)

    # -- deployment --

    async def deployment_apply(self, task_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        if self.experiment is not None:
            raise TaskError(
                f"experiment {self.experiment.plan.experiment_id} is running on this host; "
                "stop it before applying a deployment"
            )
        where = "payload"
        deployment_id = _get(payload, "deployment_id", str, where, required=False)
        pipeline = _get(payload, "pipeline", str, where)
        text = _get(payload, "config_yaml", str, where)
        config_hash = _get(payload, "config_hash", str, where, required=False) or sha256_text(text)
        if config_hash != sha256_text(text):
            log.warning("config_hash_mismatch", pipeline=pipeline, stated=config_hash)
        keep = KeepSpec.parse(payload["keep_list"], "payload.keep_list") if payload.get("keep_list") else None
        files: dict[Path, str] = {}
        keep_path = None
        if keep is not None:
            text, keep_path = relocate(text, keep, self.state, "payload.keep_list")
            files[keep_path] = render_keep_file(keep.initial)
        try:
            config = parse_config(text, "payload.config_yaml")
        except ValueError as exc:
            raise TaskError(str(exc)) from None
        await self.suspend_refreshers()
        try:
            await self.collector.apply(text, files=files)
        except ApplyError:
            await self.resume_refreshers()
            raise
        variants = {v: pipeline for v in prometheus_endpoints(config)}
        keep_lists = []
        if keep is not None and keep_path is not None:
            observe = observe_endpoints(config)
            variant = (
                keep_path.stem if keep_path.stem in observe or len(observe) != 1 else next(iter(observe))
            )
            keep_lists.append(
                {
                    "variant": variant,
                    "spec": keep.to_dict(),
                    "keep_path": str(keep_path),
                    "observe_endpoint": observe.get(variant),
                }
            )
        self.state.save_applied(
            {
                "source": "deployment",
                "deployment_id": deployment_id,
                "pipeline": pipeline,
                "config_hash": config_hash,
                "variants": variants,
                "keep_lists": keep_lists,
            }
        )
        await self.resume_refreshers()
        return {"config_hash": config_hash, "health": "ok"}

    async def suspend_refreshers(self) -> None:
        """Stop the deployment's keep-list refreshers (the config they serve is being replaced)."""
        tasks, self._refresh_tasks = self._refresh_tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._refreshers = {}

    async def resume_refreshers(self) -> None:
        """Start keep-list refreshers for what the applied record says runs now."""
        await self.suspend_refreshers()
        record = self.state.load_applied()
        if record.get("source") != "deployment":
            return
        for item in record.get("keep_lists") or []:
            try:
                spec = KeepSpec.parse(item.get("spec"), "keep_list")
                endpoint = _loopback_endpoint(item.get("observe_endpoint"), "observe_endpoint")
            except TaskError as exc:
                log.warning("keep_list_refresher_not_started", variant=item.get("variant"), reason=str(exc))
                continue
            variant = str(item.get("variant"))
            refresher = KeepListRefresher(
                self.collector,
                self.session,
                variant=variant,
                pipeline=str(record.get("pipeline")),
                spec=spec,
                keep_path=Path(str(item["keep_path"])),
                observe_endpoint=endpoint,
                period=max(MIN_REFRESH_SECONDS, spec.refresh_seconds),
                min_hold_seconds=120.0,
                collection_interval=collection_interval(self.collector.current_config()),
            )
            self._refreshers[variant] = refresher
            self._refresh_tasks.append(asyncio.create_task(refresher.run(), name=f"keep-{variant}"))

    # -- experiments --

    def _start_experiment(self, task_id: str, payload: dict[str, Any]) -> None:
        if self.experiment is not None:
            raise TaskError(
                f"experiment {self.experiment.plan.experiment_id} is already running on this host"
            )
        plan = ExperimentPlan.parse(payload, self.state)
        experiment = Experiment(self, task_id, plan)
        self.experiment = experiment
        experiment.task = asyncio.create_task(self._run_experiment(experiment), name=f"experiment-{task_id}")

    async def _run_experiment(self, experiment: Experiment) -> None:
        task_id = experiment.task_id
        with structlog.contextvars.bound_contextvars(
            task_id=task_id, experiment_id=experiment.plan.experiment_id
        ):
            log.info("experiment_started")
            try:
                result = await experiment.run()
            except asyncio.CancelledError:
                if experiment.stop_requested:
                    self._finish(task_id, "completed", result=experiment.summary())
                else:
                    self._finish(
                        task_id,
                        "failed",
                        error="the agent stopped during the experiment; "
                        f"previous config restored ({experiment.restore_error or 'ok'})",
                    )
            except (TaskError, ApplyError) as exc:
                self._finish(task_id, "failed", error=one_line(str(exc)))
            except Exception as exc:
                log.exception("experiment_crashed")
                self._finish(task_id, "failed", error=one_line(f"agent error: {type(exc).__name__}: {exc}"))
            else:
                self._finish(task_id, "completed", result=result)
            finally:
                self.experiment = None

    async def restore_previous(
        self, experiment_id: str, text: str | None, record: dict[str, Any], keep: Mapping[Path, str]
    ) -> tuple[str | None, str | None]:
        """Put back the config that ran before an experiment; (restored hash, error if it did not take)."""
        restored: str | None = None
        error: str | None = None
        try:
            if text:
                await self.collector.apply(text, files=keep)
                restored = record.get("config_hash") or sha256_text(text)
            else:
                await self.collector.remove_config()
            self.state.save_applied(record)
            log.info("experiment_config_restored", experiment_id=experiment_id, config_hash=restored)
        except ApplyError as exc:
            error = str(exc)
            log.error("experiment_restore_failed", experiment_id=experiment_id, error=error)
        await self.resume_refreshers()
        return restored, error

    async def recover(self) -> None:
        """At start: undo an experiment the agent was running when it stopped, and report that task failed."""
        record = self.state.load_json(self.state.experiment_file)
        if record is None:
            return
        experiment_id = str(record.get("experiment_id"))
        text = record.get("previous_config")
        keep = {Path(p): str(t) for p, t in (record.get("keep_files") or {}).items()}
        restored, error = await self.restore_previous(
            experiment_id, text if isinstance(text, str) else None, record.get("previous_record") or {}, keep
        )
        with contextlib.suppress(FileNotFoundError):
            self.state.experiment_file.unlink()
        task_id = record.get("task_id")
        if isinstance(task_id, str) and task_id:
            self.reporter.status(
                task_id,
                "failed",
                error=one_line(
                    f"the agent restarted during experiment {experiment_id}; previous config "
                    + (f"could not be restored: {error}" if error else "restored")
                ),
            )
        log.warning("experiment_recovered", experiment_id=experiment_id, restored_config_hash=restored)

    async def experiment_stop(self, task_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        experiment_id = _get(payload, "experiment_id", str, "payload")
        running = self.experiment
        if running is None or running.plan.experiment_id != experiment_id:
            record = self.state.load_applied()
            current = self.collector.current_text()
            return {
                "restored_config_hash": record.get("config_hash")
                or (sha256_text(current) if current else None),
                "detail": f"experiment {experiment_id} is not running on this host",
            }
        await self.cancel_experiment(operator=True)
        return {"restored_config_hash": running.restored_hash, "experiment_id": experiment_id}

    async def cancel_experiment(self, *, operator: bool) -> None:
        """Stop the running experiment and wait until the previous config is back."""
        running = self.experiment
        if running is None or running.task is None:
            return
        running.stop_requested = operator
        running.task.cancel()
        await asyncio.wait([running.task])

    # -- metrics and health --

    async def metrics_collect(self, task_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {"pipelines": await self.sample_pipelines()}

    async def sample_pipelines(self) -> dict[str, Any]:
        """One Sample per pipeline the collector runs now (or {"error"} for one that cannot be read)."""
        config = self.collector.current_config()
        record = self.state.load_applied()
        names = record.get("variants") or {}
        critical: Sequence[str] = ()
        kept: dict[str, list[str]] = {v: r.current for v, r in self._refreshers.items()}
        if self.experiment is not None:
            critical = self.experiment.plan.critical
            kept.update({v: r.current for v, r in self.experiment.refreshers.items()})
        pid = await self.collector.supervisor.pid()
        if self._usage is None or self._usage.pid != pid:
            self._usage = measure.CollectorUsage(pid)
        own = self._usage.sample()
        interval_hint = collection_interval(config)
        pipelines: dict[str, Any] = {}
        for variant, endpoint in prometheus_endpoints(config).items():
            pipeline = str(names.get(variant) or record.get("pipeline") or variant)
            try:
                text = await measure.scrape(self.session, endpoint)
            except measure.MeasureError as exc:
                pipelines[variant] = {"variant": variant, "pipeline": pipeline, "error": str(exc)}
                continue
            sample, snapshot = measure.summarize(
                text,
                variant=variant,
                pipeline=pipeline,
                previous=self._snapshots.get(endpoint),
                critical=critical,
                kept=kept.get(variant),
                collection_interval=interval_hint,
            )
            if sample["active_series"]:
                self._snapshots[endpoint] = snapshot
            sample.update(own)
            pipelines[variant] = sample
        return pipelines

    async def collector_report(self) -> dict[str, Any]:
        """The collector block of heartbeats and health checks."""
        state = await self.collector.supervisor.state()
        record = self.state.load_applied()
        current = self.collector.current_text()
        return {
            "state": state.state,
            "restarts": state.restarts,
            "last_error": state.last_error,
            "config_hash": record.get("config_hash") or (sha256_text(current) if current else None),
            "pipeline": record.get("pipeline"),
            "pid": state.pid,
            "uptime_seconds": await self.collector.uptime_seconds(),
        }

    async def health_check(self, task_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        report = await self.collector_report()
        url = self.collector.health_url()
        if url is not None:
            probe = await self.collector.probe(url)
            report["health_endpoint"] = {"url": url, "ok": probe.ok, "detail": probe.detail}
        return {"collector": report}

    async def shutdown(self) -> None:
        """Stop the experiment (restoring the previous config) and the keep-list refreshers."""
        await self.cancel_experiment(operator=False)
        await self.suspend_refreshers()
