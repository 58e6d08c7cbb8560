"""Measure a pipeline: scrape its Prometheus exporter, summarise the series, read the collector's own use."""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp

from phoenix_common.wire import OTHER

try:
    import psutil
except ImportError:  # pragma: no cover - psutil is in the agent extra; without it usage reads as zero
    psutil = None

# Series names the hostmetrics process scraper produces through the Prometheus exporter
# (v0.161: `process.cpu.time` -> `process_cpu_time_seconds_total{state=user|system|wait}`,
# `process.memory.usage` -> `process_memory_usage_bytes`); the others are spellings of older
# exporters or of translation strategies without unit/type suffixes.
CPU_METRICS = frozenset(
    {
        "process_cpu_time_seconds_total",
        "process_cpu_time_seconds",
        "process_cpu_time_total",
        "process_cpu_time",
    }
)
MEMORY_METRICS = frozenset(
    {"process_memory_usage_bytes", "process_memory_usage", "process_memory_physical_usage_bytes"}
)
# Resource attribute labels (with resource_constant_labels or resource_to_telemetry_conversion).
NAME_LABEL = "process_executable_name"
COMMAND_LABEL = "process_command"
PID_LABEL = "process_pid"
# Datapoint attributes of process metrics: they split one process into several series.
DATAPOINT_LABELS = frozenset({"state", "direction", "type"})
# Metadata series some exporters add about the target/scope rather than about the data.
META_SERIES = frozenset({"target_info", "otel_scope_info"})


class MeasureError(RuntimeError):
    """A pipeline's metrics could not be read or understood."""


# -- exposition text -------------------------------------------------------------------------------

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?[ \t]+(\S+)(?:[ \t]+(-?\d+))?[ \t]*$")
_LABEL = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*(?:,|$)')
_ESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Series:
    """One sample line of the exposition."""

    name: str
    labels: Mapping[str, str]
    value: float
    timestamp: float | None  # seconds, when the exporter sends timestamps


def _unescape(value: str) -> str:
    return _ESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), value) if "\\" in value else value


def parse_exposition(text: str) -> list[Series]:
    """Parse Prometheus text format 0.0.4 into its samples; raise MeasureError on a malformed line."""
    out: list[Series] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise MeasureError(f"malformed exposition line {number}: {line[:120]!r}")
        name, body, value_text, ts_text = match.groups()
        labels: dict[str, str] = {}
        if body:
            pos = 0
            while pos < len(body):
                label = _LABEL.match(body, pos)
                if label is None or label.end() == pos:
                    raise MeasureError(f"malformed labels on exposition line {number}: {line[:120]!r}")
                labels[label.group(1)] = _unescape(label.group(2))
                pos = label.end()
        try:
            value = float(value_text)
        except ValueError:
            raise MeasureError(f"bad sample value {value_text!r} on exposition line {number}") from None
        out.append(Series(name, labels, value, int(ts_text) / 1000.0 if ts_text else None))
    return out


def newest_timestamp(series: Sequence[Series]) -> float | None:
    """The newest exposition timestamp of `series` (seconds), None when the exporter sends none."""
    stamps = [s.timestamp for s in series if s.timestamp is not None]
    return max(stamps) if stamps else None


# -- scraping --------------------------------------------------------------------------------------


async def scrape(session: aiohttp.ClientSession, endpoint: str, timeout: float = 5.0) -> str:
    """GET http://<endpoint>/metrics and return the exposition text."""
    url = f"http://{endpoint}/metrics"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout)) as response:
            if response.status != 200:
                detail = (await response.text(errors="replace"))[:200].strip()
                raise MeasureError(f"scrape of {url} answered HTTP {response.status}: {detail}")
            return await response.text(errors="replace")
    except MeasureError:
        raise
    except TimeoutError:
        raise MeasureError(f"scrape of {url} timed out after {timeout:g}s") from None
    except (aiohttp.ClientError, ValueError) as exc:
        raise MeasureError(f"scrape of {url} failed: {exc or type(exc).__name__}") from None


SETTLE_READS = 4  # reads of one endpoint at most before its last read is taken as it is
SETTLE_PAUSE = 0.05  # seconds between two reads of a collection old enough
SETTLE_SECONDS = 2.0  # a collection is read once it is this old (or `tolerance`, if less)


def _collection_mark(series: Sequence[Series], tolerance: float) -> tuple[float, int] | None:
    """The newest timestamp and how many series carry it (within `tolerance`), None without timestamps."""
    newest = newest_timestamp(series)
    if newest is None:
        return None
    return newest, sum(1 for s in series if s.timestamp is not None and s.timestamp >= newest - tolerance)


async def read_settled(
    session: aiohttp.ClientSession, endpoint: str, tolerance: float, timeout: float = 5.0
) -> list[Series]:
    """The parsed exposition of `endpoint` once its exporter holds the whole newest collection.

    The Prometheus exporter takes a collection in one series at a time, and a pipeline's batch (the
    critical processes' own, say) can come a few hundred milliseconds after another's: a scrape
    meanwhile sees part of the new collection beside the rest of the old one, and rates read from it
    are far too low for that sample and too high for the next (a backend storing both scrapes is not
    misled: it stores each sample once, under its own timestamp). So a collection is read only once it
    is `min(tolerance, SETTLE_SECONDS)` old, and when two reads agree on its newest timestamp and on
    how many series carry it; after SETTLE_READS reads the last is taken as it is. An exposition
    without timestamps is read once.
    """
    settle = min(tolerance, SETTLE_SECONDS)
    mark: tuple[float, int] | None = None
    for attempt in range(SETTLE_READS):
        series = parse_exposition(await scrape(session, endpoint, timeout))
        mark, previous = _collection_mark(series, tolerance), mark
        if mark is None or attempt == SETTLE_READS - 1:
            break
        wait = mark[0] + settle - time.time()
        if wait <= 0 and mark == previous:
            break
        await asyncio.sleep(min(max(wait, SETTLE_PAUSE), settle))
    return series


# -- summary ---------------------------------------------------------------------------------------

ProcessKey = tuple[str, str]  # (name, pid), or (name, "agg:<labels>") for an aggregate series
Identity = tuple[tuple[str, str], ...]  # a series' labels without its datapoint attributes


SeriesKey = tuple[str, Identity]  # a series: metric name and its full label set
# CPU time states that are CPU spent: hostmetrics also reports `wait` (I/O wait), which is not.
CPU_STATES = frozenset({"user", "system"})
# How long a counter gone from the exposition is remembered: Prometheus' default lookback.
LOOKBACK_SECONDS = 300.0


@dataclass(frozen=True)
class Snapshot:
    """What one summary leaves for the next: the reference point for rates."""

    ts: float  # wall clock of the reference scrape
    data_ts: float | None  # newest exposition timestamp of that scrape, when the exporter sends them
    cpu_seconds: Mapping[ProcessKey, float] = field(default_factory=dict)  # cumulative, per process
    active_series: int = 0
    interval: float | None = None  # the last observed interval between two collections
    cpu_rates: Mapping[str, float] = field(default_factory=dict)  # last computed, reused on no news
    # Cumulative user+system CPU per series, for rates read the way a backend's rate() reads them.
    counters: Mapping[SeriesKey, float] = field(default_factory=dict)
    seen: Mapping[SeriesKey, float] = field(default_factory=dict)  # when each counter was last read
    cpu_total_rate: float = 0.0
    cpu_total_seconds: float = 0.0  # the increase behind cpu_total_rate


def _process_of(labels: Mapping[str, str]) -> ProcessKey | None:
    """(name, pid) of a process series, folding the roll-up into ("other", ""); None if not a process."""
    name = labels.get(NAME_LABEL) or os.path.basename(labels.get(COMMAND_LABEL, "").rstrip("/"))
    if not name:
        return None
    pid = labels.get(PID_LABEL, "")
    if name == OTHER or pid == OTHER:
        return (OTHER, "")
    return (name, pid)


def _variant_of(labels: Mapping[str, str]) -> Identity:
    """The resource identity of a series: its labels minus the datapoint attributes."""
    return tuple(sorted((k, v) for k, v in labels.items() if k not in DATAPOINT_LABELS))


def _is_real_pid(pid: str) -> bool:
    return pid.isdigit()


def _aggregate_id(ident: Identity) -> str:
    """A stable key for an aggregate series across scrapes; never all digits, so never a pid."""
    return "agg:" + ",".join(f"{k}={v}" for k, v in ident)


@dataclass
class _Digest:
    """What one exposition holds, reduced to the figures a Sample needs."""

    active: int = 0
    per_metric: dict[str, int] = field(default_factory=dict)
    data_ts: float | None = None
    names: set[str] = field(default_factory=set)
    cpu: dict[ProcessKey, float] = field(default_factory=dict)
    memory: dict[ProcessKey, float] = field(default_factory=dict)
    counters: dict[SeriesKey, float] = field(default_factory=dict)  # user+system CPU series
    counter_names: dict[SeriesKey, str] = field(default_factory=dict)


def _count_cpu(series: Sequence[Series], d: _Digest) -> None:
    """The user+system CPU counters of every series the exposition holds, stale ones included: a series
    not updated in this collection still holds its last value, so when it is updated again its increase
    is measured from that value, as a backend reads it."""
    for s in series:
        if s.name not in CPU_METRICS or s.labels.get("state", "user") not in CPU_STATES:
            continue
        if not math.isfinite(s.value):
            continue
        process = _process_of(s.labels)
        key = (s.name, tuple(sorted(s.labels.items())))
        # Every CPU series counts in the total, even one whose process name could not be read. Each
        # label set is its own counter, as in a backend: a kernel worker that renames itself with its
        # work queue starts a new series, whose first point has nothing to be compared with.
        d.counters[key] = s.value
        d.counter_names[key] = process[0] if process else ""


def _fresh(series: Sequence[Series], tolerance: float) -> list[Series]:
    """With exposition timestamps, only the series of the newest collection: an exporter repeats a gone
    process's last sample until it expires, but no backend stores a repeated sample again."""
    stamps = [s.timestamp for s in series if s.timestamp is not None]
    if not stamps:
        return list(series)
    newest = max(stamps)
    return [s for s in series if s.timestamp is None or s.timestamp >= newest - tolerance]


def _digest(series: Sequence[Series]) -> _Digest:
    """Count the distinct series and reduce process series to one CPU and memory figure per process."""
    d = _Digest()
    seen: set[tuple[str, Identity]] = set()
    # group -> resource identity -> value, where a group is one real pid (or one roll-up name): the
    # exporter keeps an exited or re-labelled process's old series until they expire, so one pid can
    # show under several label sets, even several names (a kernel worker renames itself).
    cpu: dict[ProcessKey, dict[Identity, float]] = {}
    memory: dict[ProcessKey, dict[Identity, float]] = {}
    name_of: dict[Identity, str] = {}
    for s in series:
        key = (s.name, tuple(sorted(s.labels.items())))
        if s.name in META_SERIES or key in seen:
            continue
        seen.add(key)
        d.per_metric[s.name] = d.per_metric.get(s.name, 0) + 1
        if s.timestamp is not None:
            d.data_ts = s.timestamp if d.data_ts is None else max(d.data_ts, s.timestamp)
        process = _process_of(s.labels)
        if process is None:
            continue
        d.names.add(process[0])
        if not math.isfinite(s.value) or (s.name not in CPU_METRICS and s.name not in MEMORY_METRICS):
            continue
        ident = _variant_of(s.labels)
        # A real pid is one process whatever its labels; anything else (a roll-up, a series without a
        # pid) is one aggregate per label set.
        group = ("", process[1]) if _is_real_pid(process[1]) else (process[0], _aggregate_id(ident))
        name_of[ident] = process[0]
        if s.name in CPU_METRICS:
            slot = cpu.setdefault(group, {})
            slot[ident] = slot.get(ident, 0.0) + s.value
        else:
            memory.setdefault(group, {})[ident] = s.value
    d.active = len(seen)
    _pick_live(cpu, memory, name_of, d)
    return d


def _pick_live(
    cpu: Mapping[ProcessKey, Mapping[Identity, float]],
    memory: Mapping[ProcessKey, Mapping[Identity, float]],
    name_of: Mapping[Identity, str],
    d: _Digest,
) -> None:
    """One figure per process: the label set with the most CPU time is the live one (CPU time only grows)."""
    for group in cpu.keys() | memory.keys():
        by_variant = cpu.get(group, {})
        mems = memory.get(group, {})
        if by_variant:
            live = max(by_variant, key=lambda ident: (by_variant[ident], ident))
            process = (name_of[live], group[1])
            d.cpu[process] = by_variant[live]
            if live in mems:
                d.memory[process] = mems[live]
            elif mems:
                d.memory[process] = max(mems.values())
        elif mems:
            live = max(mems, key=lambda ident: (mems[ident], ident))
            d.memory[(name_of[live], group[1])] = mems[live]


def _advance(d: _Digest, previous: Snapshot | None, now: float) -> Snapshot:
    """The new reference point, with CPU rates per name since `previous` when there is one.

    Rates are read the way a backend's rate() reads counters: per series, the increase since the
    previous scrape (a decrease is a reset, and then the new value is the increase); a series new in
    this scrape contributes nothing yet. Only user and system time count as CPU.
    """
    if previous is None:
        return Snapshot(
            ts=now,
            data_ts=d.data_ts,
            cpu_seconds=d.cpu,
            active_series=d.active,
            counters=d.counters,
            seen=dict.fromkeys(d.counters, now),
        )
    if d.data_ts is not None and previous.data_ts is not None:
        elapsed = d.data_ts - previous.data_ts
    else:
        elapsed = now - previous.ts
    unchanged = elapsed <= 0
    if d.data_ts is None and d.counters and all(previous.counters.get(k) == v for k, v in d.counters.items()):
        # Without timestamps, identical cumulative counters mean the collector has not run since.
        unchanged = True
    if unchanged:
        # No collection since the reference: keep it, so the next rates span the whole gap.
        return replace(previous, active_series=d.active)
    # A series that left the exposition (a kept name with no process for a while: the exporter expired
    # it) is remembered for a backend's lookback, so that when it comes back its increase is measured
    # from its last value, as rate() over a range reaching back past the gap measures it.
    carried = {
        k: v
        for k, v in previous.counters.items()
        if k not in d.counters and now - previous.seen.get(k, now) <= LOOKBACK_SECONDS
    }
    seen = {**{k: previous.seen.get(k, now) for k in carried}, **dict.fromkeys(d.counters, now)}
    rates: dict[str, float] = {}
    total = 0.0
    for key, value in d.counters.items():
        before = previous.counters.get(key)
        # New series: nothing yet; a decrease: a reset, the new value is all increase.
        increase = 0.0 if before is None else (value - before if value >= before else value)
        name = d.counter_names[key]
        if name:
            rates[name] = rates.get(name, 0.0) + increase / elapsed
        total += increase
    return Snapshot(
        ts=now,
        data_ts=d.data_ts,
        cpu_seconds=d.cpu,
        active_series=d.active,
        interval=elapsed,
        cpu_rates=rates,
        counters={**carried, **d.counters},
        seen=seen,
        cpu_total_rate=total / elapsed,
        cpu_total_seconds=total,
    )


def _by_name(values: Mapping[ProcessKey, float]) -> dict[str, float]:
    """Sum per-process figures over the pids of each name."""
    out: dict[str, float] = {}
    for (name, _), value in values.items():
        out[name] = out.get(name, 0.0) + value
    return out


def summarize(
    text: str | Sequence[Series],
    *,
    variant: str,
    pipeline: str,
    previous: Snapshot | None,
    critical: Sequence[str],
    kept: Sequence[str] | None = None,
    now: float | None = None,
    collection_interval: float | None = None,
    billing: BillingCounter | None = None,
) -> tuple[dict[str, Any], Snapshot]:
    """Turn one scrape (its text, or the series parse_exposition made of it) into a Sample
    (docs/contracts.md) and the Snapshot the next call needs.

    Rates divide by the interval between the two collections the scrapes saw: the difference of the
    exposition timestamps when the exporter sends them, else of the scrape wall-clock times. When
    nothing was collected in between (same timestamps, or every cumulative counter unchanged) the
    previous rates stand and the older reference is kept. `datapoints_per_second` is the active
    series over `collection_interval` when the caller knows it, else over that observed interval.
    """
    now = time.time() if now is None else now
    # One collection reads processes one by one over a fraction of the interval; the points of the
    # collection before are at least a whole interval older.
    tolerance = 0.9 * (collection_interval if collection_interval and collection_interval > 0 else 1.0)
    parsed = parse_exposition(text) if isinstance(text, str) else text
    d = _digest(_fresh(parsed, tolerance))
    _count_cpu(parsed, d)
    reference = _advance(d, previous, now)
    # Every process in this scrape gets a rate: 0 when idle, none at all without a reference yet.
    rates = {n: reference.cpu_rates.get(n, 0.0) for n in d.names} if previous is not None else {}
    interval = reference.interval if previous is not None else None
    divisor = collection_interval if collection_interval and collection_interval > 0 else interval
    sample: dict[str, Any] = {
        "variant": variant,
        "pipeline": pipeline,
        "ts": now,
        "data_ts": d.data_ts,
        "active_series": d.active,
        "datapoints_per_second": round(d.active / divisor, 6) if divisor else 0.0,
        "interval_seconds": round(divisor, 6) if divisor else None,
        "series_per_metric": dict(sorted(d.per_metric.items())),
        "process_cpu_seconds_rate": {n: round(r, 6) for n, r in sorted(rates.items())},
        "process_memory_bytes": {n: int(v) for n, v in sorted(_by_name(d.memory).items())},
        "process_cpu_seconds_total": {n: round(v, 6) for n, v in sorted(_by_name(d.cpu).items())},
        "memory_total_bytes": int(sum(d.memory.values())),
        "kept_processes": sorted(n for n in d.names if n != OTHER),
        "critical_present": {n: n in d.names for n in critical},
    }
    if previous is not None:
        sample["cpu_total_rate"] = round(reference.cpu_total_rate, 6)
        # The increase itself: both arms' points come from one collection, but each exporter stamps
        # them a little differently, so compare increases rather than rates over two intervals.
        sample["cpu_total_seconds"] = round(reference.cpu_total_seconds, 6)
    if kept is not None:
        sample["keep_list"] = sorted(set(kept))
    if billing is not None:
        sample.update(billing.observe(parsed, now))
    return sample, reference


# -- billing -----------------------------------------------------------------------------------------


class BillingCounter:
    """What a backend bills for one pipeline's output, counted from the expositions it serves.

    A series (metric name and label set) is billed while it received a datapoint in the trailing
    `window` (Grafana Cloud: 20 minutes). A datapoint is a series' sample with a timestamp not seen
    before (the exporter repeats a gone series' last sample until it expires, and no backend ingests a
    repeat); without exposition timestamps every scrape is a datapoint, as a scraping backend stores it.
    """

    def __init__(self, window: float) -> None:
        if not window > 0:
            raise ValueError(f"billing window must be positive, got {window!r}")
        self.window = window
        self.started: float | None = None
        self._last_scrape: float | None = None
        self._newest: dict[SeriesKey, float] = {}  # series -> time of its newest datapoint
        self._created: dict[SeriesKey, float] = {}  # series -> when it was first seen (not at start)

    def observe(self, series: Sequence[Series], now: float) -> dict[str, Any]:
        """Count one scrape taken at `now`; the billing figures of the sample."""
        first = self.started is None
        if first:
            self.started = now
        assert self.started is not None
        points = 0
        for s in series:
            if s.name in META_SERIES:
                continue
            key = (s.name, tuple(sorted(s.labels.items())))
            at = now if s.timestamp is None else s.timestamp
            newest = self._newest.get(key)
            if newest is not None and at <= newest:
                continue
            points += 1
            self._newest[key] = at
            if newest is None and not first and key not in self._created:
                self._created[key] = now
        horizon = now - self.window
        for key in [k for k, at in self._newest.items() if at <= horizon]:
            del self._newest[key]
            self._created.pop(key, None)
        for key in [k for k, at in self._created.items() if at <= horizon]:
            del self._created[key]
        observed = now - self.started
        out: dict[str, Any] = {
            "billed_series": len(self._newest),
            "billing_window_seconds": self.window,
            "observed_seconds": round(observed, 3),
            "new_series_per_hour": round(3600.0 * len(self._created) / min(self.window, observed), 3)
            if observed > 0
            else 0.0,
        }
        if self._last_scrape is not None and now > self._last_scrape:
            out["datapoints_per_minute"] = round(60.0 * points / (now - self._last_scrape), 3)
        self._last_scrape = now
        return out


# -- the collector's own cost ------------------------------------------------------------------------


class CollectorUsage:
    """CPU and resident memory of the collector process, read with psutil."""

    def __init__(self, pid: int | None) -> None:
        self._pid: int | None = None
        self._process: Any = None
        self._last: tuple[float, float] | None = None  # (monotonic time, cpu seconds)
        self.set_pid(pid)

    @property
    def pid(self) -> int | None:
        """The collector pid being watched."""
        return self._pid

    def set_pid(self, pid: int | None) -> None:
        """Watch another pid (the collector restarted); the next CPU figure starts afresh."""
        self._pid = pid
        self._process = None
        self._last = None
        if pid is None or psutil is None:
            return
        try:
            self._process = psutil.Process(pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
            self._process = None

    def sample(self) -> dict[str, Any]:
        """CPU percent of one core since the last sample (since start the first time) and RSS bytes."""
        zero = {"collector_cpu_percent": 0.0, "collector_memory_bytes": 0}
        if self._process is None or psutil is None:
            return zero
        try:
            with self._process.oneshot():
                times = self._process.cpu_times()
                rss = int(self._process.memory_info().rss)
                created = float(self._process.create_time())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            self._process = None
            self._last = None
            return zero
        used = float(times.user + times.system)
        mono = time.monotonic()
        if self._last is None:
            elapsed = max(time.time() - created, 1e-3)
            spent = used
        else:
            elapsed = mono - self._last[0]
            spent = used - self._last[1]
        self._last = (mono, used)
        percent = 100.0 * spent / elapsed if elapsed > 0 else 0.0
        return {"collector_cpu_percent": round(max(percent, 0.0), 3), "collector_memory_bytes": rss}
