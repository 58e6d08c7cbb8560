"""Experiment analysis: every figure is computed from the samples agents measured (docs/analysis.md)."""

from __future__ import annotations

import datetime as dt
import math
import random
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from control_plane.pricing import Prices
from control_plane.stats import (
    mean_maps,
    number,
    reduction,
    rounded,
    weighted_mean,
    weighted_median,
    weighted_rank,
)
from control_plane.verdict import criteria_of, fleet_criteria, host_criteria, worst_host
from phoenix_common.wire import DEFAULT_BILLING_WINDOW, OTHER

Sample = Mapping[str, Any]
# The key _by_variant puts on a sample from its row's `represents` column (never taken from what agents
# send).
REPRESENTS = "_represents"
BOOTSTRAP_RESAMPLES = 300
BOOTSTRAP_MAX_PAIRS = 2000
Z95 = 1.959964


def _seconds(start: Any, end: Any) -> float | None:
    if isinstance(start, dt.datetime) and isinstance(end, dt.datetime):
        return (end - start).total_seconds()
    if isinstance(start, int | float) and isinstance(end, int | float):
        return float(end - start)
    return None


# --- pairing ------------------------------------------------------------------------------------


def pair_samples(
    baseline: Sequence[Sample], candidate: Sequence[Sample], within: float
) -> list[tuple[Sample, Sample]]:
    """Baseline and candidate samples of one host taken at the same moment: nearest ts within `within`.

    Both lists are sorted once and walked with two pointers, so pairing is O(n log n) for the sort and
    linear after it; each sample is in at most one pair.
    """
    b = sorted(baseline, key=lambda s: s["ts"])
    c = sorted(candidate, key=lambda s: s["ts"])
    pairs: list[tuple[Sample, Sample]] = []
    i = j = 0
    while i < len(b) and j < len(c):
        gap = c[j]["ts"] - b[i]["ts"]
        if abs(gap) > within:
            if gap < 0:
                j += 1
            else:
                i += 1
        elif j + 1 < len(c) and abs(c[j + 1]["ts"] - b[i]["ts"]) < abs(gap):
            j += 1  # the next candidate sample is nearer to this baseline one
        elif i + 1 < len(b) and abs(b[i + 1]["ts"] - c[j]["ts"]) < abs(gap):
            i += 1
        else:
            pairs.append((b[i], c[j]))
            i += 1
            j += 1
    return pairs


def _coverage(base: Mapping[str, float] | None, cand: Mapping[str, float] | None) -> float | None:
    """Share (percent) of the baseline's total that the candidate shows under the same process name."""
    base = base or {}
    cand = cand or {}
    total = sum(float(v) for v in base.values())
    if total <= 0:
        return None
    covered = sum(min(float(cand.get(n, 0.0)), float(v)) for n, v in base.items() if n != OTHER)
    return 100.0 * covered / total


def _total(sample: Sample, key: str, per_process: str) -> float | None:
    """A sample's total: the measured one, else the sum of its per-process map (older agents)."""
    value = number(sample, key)
    if value is not None:
        return value
    per = sample.get(per_process)
    return float(sum(per.values())) if per else None


def count_of(sample: Sample) -> int:
    """How many samples this one stands for: 1, or its bucket's count once compaction thinned it."""
    value = sample.get(REPRESENTS)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


def _full(sample: Sample, window: float) -> bool:
    observed = number(sample, "observed_seconds")
    return observed is not None and observed >= (number(sample, "billing_window_seconds") or window)


@dataclass(frozen=True, slots=True)
class Pair:
    """The figures of one same-moment baseline/candidate sample pair; `count` is how many pairs it stands
    for (compaction), `weight` the seconds it covers."""

    ts: float
    count: int
    weight: float
    cpu_coverage: float | None
    memory_coverage: float | None
    base_cpu: float
    base_memory: float
    cpu_ratio: float | None
    memory_ratio: float | None
    reload: bool
    billed_reduction: float | None
    full_window: bool


def pair_figures(b: Sample, c: Sample, window: float, default_weight: float) -> Pair:
    base_cpu = _total(b, "cpu_total_rate", "process_cpu_seconds_rate")
    cand_cpu = _total(c, "cpu_total_rate", "process_cpu_seconds_rate")
    base_mem = _total(b, "memory_total_bytes", "process_memory_bytes")
    cand_mem = _total(c, "memory_total_bytes", "process_memory_bytes")
    base_billed, cand_billed = number(b, "billed_series"), number(c, "billed_series")
    base_spent, cand_spent = number(b, "cpu_total_seconds"), number(c, "cpu_total_seconds")
    if base_spent and cand_spent is not None:
        # Both from one collection: the ratio of the CPU seconds each arm added, free of the small
        # difference in how each exporter stamps the same collection.
        cpu_ratio: float | None = cand_spent / base_spent
    else:
        cpu_ratio = cand_cpu / base_cpu if base_cpu and cand_cpu is not None else None
    count = count_of(b)
    return Pair(
        ts=float(b["ts"]),
        count=count,
        weight=count * (number(b, "interval_seconds") or default_weight),
        cpu_coverage=_coverage(b.get("process_cpu_seconds_rate"), c.get("process_cpu_seconds_rate")),
        memory_coverage=_coverage(b.get("process_memory_bytes"), c.get("process_memory_bytes")),
        base_cpu=sum((b.get("process_cpu_seconds_rate") or {}).values()),
        base_memory=sum((b.get("process_memory_bytes") or {}).values()),
        cpu_ratio=cpu_ratio,
        memory_ratio=cand_mem / base_mem if base_mem and cand_mem is not None else None,
        reload=bool(b.get("reloaded") or c.get("reloaded")),
        billed_reduction=100.0 * (1 - cand_billed / base_billed)
        if base_billed and cand_billed is not None
        else None,
        full_window=_full(b, window) and _full(c, window),
    )


# --- one arm, one host --------------------------------------------------------------------------


def summarize_arm(samples: Sequence[Sample], window: float) -> dict[str, Any]:
    """Figures of one host's samples of one arm (pipeline)."""
    with_billed = [s for s in samples if number(s, "billed_series") is not None]
    full = [s for s in with_billed if _full(s, window)]
    if full:
        billed_values, source, extrapolated = _counted(full, "billed_series"), "measured", False
    elif with_billed:
        billed_values, source, extrapolated = _counted(with_billed, "billed_series"), "partial", True
    else:
        # An agent from before billed series: the snapshot is all there is.
        billed_values = _counted(samples, "active_series")
        source, extrapolated = "snapshot", True
    seen: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        for name, present in (s.get("critical_present") or {}).items():
            seen.setdefault(name, []).append((1.0 if present else 0.0, count_of(s)))
    kept = {p for s in samples for p in s.get("kept_processes") or [] if p != OTHER}

    def mean_of(key: str, digits: int = 3) -> float | None:
        return rounded(weighted_mean(_counted(samples, key)), digits)

    return {
        "samples": len(samples),
        "represents": sum(count_of(s) for s in samples),
        "billed_series": {
            "mean": rounded(weighted_mean(billed_values), 2),
            "p95": rounded(weighted_rank(billed_values, 0.95), 2),
            "samples": len(billed_values),
            "source": source,
        },
        "extrapolated": extrapolated,
        "snapshot_series": mean_of("active_series", 2),
        "datapoints_per_minute": mean_of("datapoints_per_minute", 2),
        "new_series_per_hour": mean_of("new_series_per_hour", 2),
        "series_per_metric": {
            k: round(v, 2)
            for k, v in sorted(mean_maps([s.get("series_per_metric") or {} for s in samples]).items())
        },
        "kept_processes": sorted(kept),
        # Share of samples in which each critical process was seen: one scrape that missed a process
        # (read late in a slow collection) must not decide a verdict.
        "critical_present": {name: round(weighted_mean(f) or 0.0, 4) for name, f in seen.items()},
        "collector_cpu_percent": mean_of("collector_cpu_percent"),
        "collector_memory_bytes": mean_of("collector_memory_bytes", 0),
        "agent_cpu_percent": mean_of("agent_cpu_percent"),
        "agent_memory_bytes": mean_of("agent_memory_bytes", 0),
    }


def _counted(samples: Sequence[Sample], key: str) -> list[tuple[float, float]]:
    """(value, count) of the samples that have the figure `key`."""
    return [(v, count_of(s)) for s in samples if (v := number(s, key)) is not None]


# --- one host -----------------------------------------------------------------------------------


def _fidelity(ratios: Sequence[tuple[float, bool, int]]) -> dict[str, Any]:
    """Median and worst (farthest from 1) ratio over steady pairs (the median weighted by how many
    pairs each stands for); reload pairs counted apart."""
    steady = [(r, n) for r, reload, n in ratios if not reload]
    every = [r for r, _, _ in ratios]

    def worst(values: Sequence[float]) -> float | None:
        if not values:
            return None
        farthest: float = max(values, key=lambda v: abs(v - 1.0))
        return round(farthest, 6)

    median = weighted_median(steady)
    return {
        "median": None if median is None else round(median, 6),
        "worst": worst([r for r, _ in steady]),
        "pairs": len(steady),
        "reload_pairs": len(every) - len(steady),
        "worst_including_reloads": worst(every),
    }


def _deviation(fidelity: Mapping[str, Any]) -> float | None:
    worst = fidelity["worst"]
    return None if worst is None else round(abs(worst - 1) * 100, 4)


def compare_host(
    base: dict[str, Any],
    cand: dict[str, Any],
    pairs: Sequence[Pair],
    critical: Sequence[str],
    overhead: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """One host: billed and snapshot reduction, coverage, fidelity and critical processes."""
    # (coverage, seconds covered, pairs stood for) of the pairs that have one
    cpu_cov = [(v, p.weight, p.count) for p in pairs if (v := p.cpu_coverage) is not None]
    mem_cov = [(v, p.weight, p.count) for p in pairs if (v := p.memory_coverage) is not None]
    cpu_fid = _fidelity([(p.cpu_ratio, p.reload, p.count) for p in pairs if p.cpu_ratio is not None])
    mem_fid = _fidelity([(p.memory_ratio, p.reload, p.count) for p in pairs if p.memory_ratio is not None])
    # Running: seen in most baseline samples. Missing: the candidate shows it clearly less often than the
    # baseline does over the same run (a process the candidate drops is absent from every sample).
    base_seen, cand_seen = base["critical_present"], cand["critical_present"]
    running = {name for name in critical if base_seen.get(name, 0.0) >= 0.5}
    missing = sorted(name for name in running if cand_seen.get(name, 0.0) < 0.9 * base_seen[name])
    billed = reduction(base["billed_series"]["p95"], cand["billed_series"]["p95"])
    collector = [v for v in (base["collector_cpu_percent"], cand["collector_cpu_percent"]) if v is not None]
    collector_mem = [
        v for v in (base["collector_memory_bytes"], cand["collector_memory_bytes"]) if v is not None
    ]
    return {
        "baseline": base,
        "candidate": cand,
        "pairs": len(pairs),
        "extrapolated": base["extrapolated"] or cand["extrapolated"],
        "billed_series_reduction_percent": billed,
        "billed_series_mean_reduction_percent": reduction(
            base["billed_series"]["mean"], cand["billed_series"]["mean"]
        ),
        "snapshot_series_reduction_percent": reduction(base["snapshot_series"], cand["snapshot_series"]),
        "datapoints_per_minute_reduction_percent": reduction(
            base["datapoints_per_minute"], cand["datapoints_per_minute"]
        ),
        "series_reduction_percent": billed,
        "baseline_series": base["billed_series"]["p95"],
        "candidate_series": cand["billed_series"]["p95"],
        "cpu_coverage_percent": rounded(weighted_mean([(v, w) for v, w, _ in cpu_cov])),
        "cpu_coverage_p10_percent": rounded(weighted_rank([(v, n) for v, _, n in cpu_cov], 0.10)),
        "memory_coverage_percent": rounded(weighted_mean([(v, w) for v, w, _ in mem_cov])),
        "memory_coverage_p10_percent": rounded(weighted_rank([(v, n) for v, _, n in mem_cov], 0.10)),
        "coverage_pairs": len(cpu_cov),
        "cpu_rate_fidelity": cpu_fid,
        "cpu_rate_deviation_percent": _deviation(cpu_fid),
        "cpu_totals_ratio": cpu_fid["median"],
        "memory_totals_ratio": mem_fid["median"],
        "memory_totals_fidelity": mem_fid,
        "kept_processes": cand["kept_processes"],
        "critical_running": sorted(running),
        "critical_not_running_on_host": sorted(set(critical) - running),
        "critical_missing": missing,
        "critical_presence": {
            name: {"baseline": base_seen.get(name, 0.0), "candidate": cand_seen.get(name, 0.0)}
            for name in critical
        },
        # One collector process runs both arms: this is the pair's, not either arm's.
        "collector_cpu_percent": rounded(max(collector)) if collector else None,
        "collector_memory_bytes": max(collector_mem) if collector_mem else None,
        "collector_overhead": _host_overhead(overhead),
        "agent_cpu_percent": _max_of(base["agent_cpu_percent"], cand["agent_cpu_percent"]),
        "agent_memory_bytes": _max_of(base["agent_memory_bytes"], cand["agent_memory_bytes"]),
    }


def _max_of(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _host_overhead(overhead: Mapping[str, Any] | None) -> dict[str, Any]:
    """Each arm's collector measured alone by the agent's probe, and the candidate/baseline CPU ratio."""
    base = (overhead or {}).get("baseline") or {}
    cand = (overhead or {}).get("candidate") or {}
    base_cpu, cand_cpu = number(base, "collector_cpu_percent"), number(cand, "collector_cpu_percent")
    if base_cpu is None or cand_cpu is None:
        return {"measured": False}
    return {
        "measured": True,
        "baseline": dict(base),
        "candidate": dict(cand),
        "cpu_ratio": round(cand_cpu / base_cpu, 4) if base_cpu > 0 else None,
        "memory_ratio": _ratio(
            number(cand, "collector_memory_bytes"), number(base, "collector_memory_bytes")
        ),
    }


def _ratio(num: float | None, den: float | None) -> float | None:
    return round(num / den, 4) if num is not None and den else None


# --- confidence -----------------------------------------------------------------------------------


def confidence(values: Sequence[tuple[float, float]]) -> dict[str, Any] | None:
    """95% interval of the weighted mean of (value, weight) pairs.

    A percentile bootstrap over pairs (random.Random(0), so the same samples give the same interval)
    up to BOOTSTRAP_MAX_PAIRS pairs; past that the normal interval, which the bootstrap approaches anyway
    and which costs one pass.
    """
    if not values:
        return None
    estimate = weighted_mean(values)
    if estimate is None:
        return None
    n = len(values)
    if n == 1:
        low = high = estimate
        method = "single pair: no interval"
    elif n <= BOOTSTRAP_MAX_PAIRS:
        rng = random.Random(0)
        means = []
        for _ in range(BOOTSTRAP_RESAMPLES):
            draw = rng.choices(values, k=n)
            means.append(weighted_mean(draw) or estimate)
        means.sort()
        low = means[int(0.025 * BOOTSTRAP_RESAMPLES)]
        high = means[min(BOOTSTRAP_RESAMPLES - 1, math.ceil(0.975 * BOOTSTRAP_RESAMPLES) - 1)]
        method = f"bootstrap percentile, {BOOTSTRAP_RESAMPLES} resamples of pairs, seed 0"
    else:
        weights = sum(w for _, w in values)
        var = sum(w * (v - estimate) ** 2 for v, w in values) / weights
        half = Z95 * math.sqrt(var / n)
        low, high = estimate - half, estimate + half
        method = "normal, mean +/- 1.96 s/sqrt(n) over pairs"
    return {
        "estimate": round(estimate, 3),
        "low": round(min(low, estimate), 3),
        "high": round(max(high, estimate), 3),
        "method": method,
        "pairs": n,
    }


# --- the analysis ---------------------------------------------------------------------------------


def _billing_window(spec: Mapping[str, Any]) -> float:
    return float(spec.get("billing_window_seconds") or DEFAULT_BILLING_WINDOW)


def _unix(value: Any) -> float:
    return value.timestamp() if hasattr(value, "timestamp") else float(value)


def _sample_ts(row: Mapping[str, Any]) -> float:
    ts = (row.get("sample") or {}).get("ts")
    return float(ts) if isinstance(ts, int | float) else _unix(row["received_at"])


def _by_variant(
    rows: Iterable[Mapping[str, Any]], window: tuple[float, float] | None
) -> dict[str, list[Sample]]:
    """One host's rows as samples per arm, those taken inside `window` only, each marked with the count
    of samples its row stands for."""
    variants: dict[str, list[Sample]] = defaultdict(list)
    for row in rows:
        # By the sample's own time, not when it arrived: a warm-up sample delivered late (an agent's
        # outbox after an outage) is still a warm-up sample.
        if window is not None and not window[0] <= _sample_ts(row) <= window[1]:
            continue
        sample, count = row["sample"], row.get("represents") or 1
        if count != 1 or REPRESENTS in sample:
            sample = {**sample, REPRESENTS: int(count)}
        variants[row["variant"]].append(sample)
    return variants


def _by_host(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    grouped: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        grouped[row["host_id"]].append(row)
    return grouped


def coverage_points(rows: Iterable[Mapping[str, Any]], spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One host's coverage at every sample pair over time (the dashboard's coverage band)."""
    variants = _by_variant(rows, None)
    window = _billing_window(spec)
    interval = float(spec.get("sample_interval_seconds") or 10)
    pairs = pair_samples(variants.get("baseline", []), variants.get("candidate", []), interval / 2)
    return [
        {
            "ts": p.ts,
            "cpu_coverage_percent": rounded(p.cpu_coverage),
            "memory_coverage_percent": rounded(p.memory_coverage),
        }
        for p in (pair_figures(b, c, window, interval) for b, c in pairs)
    ]


def coverage_series(
    rows: Sequence[Mapping[str, Any]], spec: Mapping[str, Any]
) -> dict[str, list[dict[str, float | None]]]:
    """Per host, the coverage of every sample pair over time."""
    return {host: coverage_points(host_rows, spec) for host, host_rows in _by_host(rows).items()}


class Analyzer:
    """The analysis of an experiment built host by host: `add_host` with one host's measurement rows
    (host_id, variant, received_at, represents, sample) keeps that host's figures and its pairs' small
    figures and lets the rows go; `result` then computes the fleet. So what is held at once is one host's
    samples, not the fleet's.

    `window` (running_at, analyzing_at) keeps the samples taken while measuring; `overheads` maps a host
    to the overhead block of its experiment summary (each arm's collector measured alone).
    """

    def __init__(
        self,
        *,
        spec: Mapping[str, Any],
        prices: Prices,
        window: tuple[Any, Any] | None = None,
        overheads: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        self.spec, self.prices, self.overheads = spec, prices, overheads or {}
        self.window = window
        self.bounds = (_unix(window[0]), _unix(window[1])) if window else None
        self.critical = list(spec.get("critical_processes") or [])
        self.criteria = criteria_of(spec)
        self.billing_window = _billing_window(spec)
        self.interval = float(spec.get("sample_interval_seconds") or 10)
        self.hosts: dict[str, Any] = {}
        self.host_pairs: dict[str, list[Pair]] = {}
        self.first_ts: float | None = None
        self.last_ts: float | None = None

    def add_host(self, host_id: str, rows: Iterable[Mapping[str, Any]]) -> None:
        variants = _by_variant(rows, self.bounds)
        if not variants:
            return
        stamps = [float(s["ts"]) for arm in variants.values() for s in arm]
        first, last = min(stamps), max(stamps)
        self.first_ts = first if self.first_ts is None else min(self.first_ts, first)
        self.last_ts = last if self.last_ts is None else max(self.last_ts, last)
        if not variants.get("baseline") or not variants.get("candidate"):
            got = ", ".join(sorted(variants))
            self.hosts[host_id] = {"error": f"measurements of both pipelines are needed; got {got}"}
            return
        pairs = [
            pair_figures(b, c, self.billing_window, self.interval)
            for b, c in pair_samples(variants["baseline"], variants["candidate"], self.interval / 2)
        ]
        self.host_pairs[host_id] = pairs
        figures = compare_host(
            summarize_arm(variants["baseline"], self.billing_window),
            summarize_arm(variants["candidate"], self.billing_window),
            pairs,
            self.critical,
            self.overheads.get(host_id),
        )
        checks = host_criteria(figures, self.criteria)
        figures["criteria"] = checks
        figures["failed_criteria"] = [c["name"] for c in checks if not c["passed"]]
        figures["passed"] = not figures["failed_criteria"]
        self.hosts[host_id] = figures

    def result(self) -> dict[str, Any]:
        hosts = dict(sorted(self.hosts.items()))
        compared = {h: d for h, d in hosts.items() if "error" not in d}
        if not compared:
            return {
                "status": "insufficient_data",
                "detail": "no host reported measurements of both pipelines during the running phase",
                "hosts": hosts,
            }
        running = _seconds(*self.window) if self.window else None
        if running is None:
            running = (self.last_ts or 0.0) - (self.first_ts or 0.0)
        billing_window = self.billing_window
        fleet, pipelines = _fleet(compared, self.host_pairs, self.spec)
        overhead = _fleet_overhead(compared)
        checks = fleet_criteria(fleet, compared, self.criteria, overhead)
        reasons = []
        if running < billing_window:
            reasons.append(
                f"the run measured {running:g}s, shorter than one billing window ({billing_window:g}s)"
            )
        partial = sorted(h for h, d in compared.items() if d["extrapolated"])
        if partial:
            reasons.append("no full billing window of billed series on host(s) " + ", ".join(partial[:20]))
        verdict = "promote" if all(c["passed"] for c in checks) else "reject"
        return {
            "status": "ok",
            "hosts_compared": len(compared),
            "billing_window_seconds": billing_window,
            "running_seconds": round(running, 3),
            "extrapolated": bool(reasons),
            "extrapolated_reasons": reasons,
            "pipelines": pipelines,
            "fleet": fleet,
            "collector_overhead": overhead,
            "cost": self.prices.cost(
                (pipelines["baseline"]["billed_series"], pipelines["baseline"]["datapoints_per_minute"]),
                (pipelines["candidate"]["billed_series"], pipelines["candidate"]["datapoints_per_minute"]),
            ),
            "verdict": verdict,
            "promotable": verdict == "promote" and not reasons,
            "criteria": checks,
            "worst_host": worst_host(compared),
            "hosts": hosts,
        }


def analyze(
    rows: Sequence[Mapping[str, Any]],
    *,
    spec: Mapping[str, Any],
    prices: Prices,
    window: tuple[Any, Any] | None = None,
    overheads: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The analysis of an experiment from all its measurement rows at once (see Analyzer)."""
    analyzer = Analyzer(spec=spec, prices=prices, window=window, overheads=overheads)
    for host_id, host_rows in _by_host(rows).items():
        analyzer.add_host(host_id, host_rows)
    return analyzer.result()


def _sum(hosts: Mapping[str, Any], read: Callable[[Mapping[str, Any]], float | None]) -> float | None:
    values = [v for d in hosts.values() if (v := read(d)) is not None]
    return sum(values) if values else None


def _arm_totals(hosts: Mapping[str, Any], arm: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    dpm = _sum(hosts, lambda d: d[arm]["datapoints_per_minute"])
    snapshot = _sum(hosts, lambda d: d[arm]["snapshot_series"])
    return {
        "template": spec.get(f"{arm}_pipeline"),
        "billed_series": round(_sum(hosts, lambda d: d[arm]["billed_series"]["p95"]) or 0.0, 2),
        "billed_series_mean": round(_sum(hosts, lambda d: d[arm]["billed_series"]["mean"]) or 0.0, 2),
        "snapshot_series": rounded(snapshot, 2),
        "datapoints_per_minute": rounded(dpm, 2),
        "new_series_per_hour": rounded(_sum(hosts, lambda d: d[arm]["new_series_per_hour"]), 2),
        # Kept for older clients: the snapshot, and the measured datapoints per second.
        "active_series": round(snapshot or 0.0, 2),
        "datapoints_per_second": rounded(dpm / 60 if dpm is not None else None, 4),
    }


def _fleet(
    hosts: Mapping[str, Any], host_pairs: Mapping[str, list[Pair]], spec: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fleet figures: sums over hosts for series and datapoints, CPU-weighted coverage, pooled pairs."""
    pipelines = {arm: _arm_totals(hosts, arm, spec) for arm in ("baseline", "candidate")}
    base, cand = pipelines["baseline"], pipelines["candidate"]
    # Only hosts where both arms report measured datapoints count towards the datapoints reduction.
    both_dpm = {
        h: d
        for h, d in hosts.items()
        if d["baseline"]["datapoints_per_minute"] is not None
        and d["candidate"]["datapoints_per_minute"] is not None
    }
    pairs = [p for h in hosts for p in host_pairs[h]]
    cpu_weight = {h: weighted_mean([(p.base_cpu, p.count) for p in host_pairs[h]]) or 0.0 for h in hosts}
    mem_weight = {h: weighted_mean([(p.base_memory, p.count) for p in host_pairs[h]]) or 0.0 for h in hosts}
    cpu_fid = _fidelity([(p.cpu_ratio, p.reload, p.count) for p in pairs if p.cpu_ratio is not None])
    mem_fid = _fidelity([(p.memory_ratio, p.reload, p.count) for p in pairs if p.memory_ratio is not None])
    billed = reduction(base["billed_series"], cand["billed_series"])
    full_pairs = [p for p in pairs if p.full_window and p.billed_reduction is not None]
    ci_pairs = full_pairs or [p for p in pairs if p.billed_reduction is not None]
    missing = sorted(f"{h}:{p}" for h, d in hosts.items() for p in d["critical_missing"])
    per_host_billed = [
        d["billed_series_reduction_percent"]
        for d in hosts.values()
        if d["billed_series_reduction_percent"] is not None
    ]
    fleet = {
        "billed_series_reduction_percent": billed,
        "billed_series_mean_reduction_percent": reduction(
            base["billed_series_mean"], cand["billed_series_mean"]
        ),
        "snapshot_series_reduction_percent": reduction(base["snapshot_series"], cand["snapshot_series"]),
        "datapoints_per_minute_reduction_percent": reduction(
            _sum(both_dpm, lambda d: d["baseline"]["datapoints_per_minute"]),
            _sum(both_dpm, lambda d: d["candidate"]["datapoints_per_minute"]),
        ),
        "series_reduction_percent": billed,
        "series_reduction_spread": _spread(per_host_billed),
        "cpu_coverage_percent": _host_weighted(hosts, "cpu_coverage_percent", cpu_weight),
        "cpu_coverage_p10_percent": rounded(
            weighted_rank([(p.cpu_coverage, p.count) for p in pairs if p.cpu_coverage is not None], 0.1)
        ),
        "memory_coverage_percent": _host_weighted(hosts, "memory_coverage_percent", mem_weight),
        "memory_coverage_p10_percent": rounded(
            weighted_rank([(p.memory_coverage, p.count) for p in pairs if p.memory_coverage is not None], 0.1)
        ),
        "cpu_rate_fidelity": cpu_fid,
        "cpu_rate_deviation_percent": _deviation(cpu_fid),
        "cpu_totals_ratio": cpu_fid["median"],
        "memory_totals_ratio": mem_fid["median"],
        "memory_totals_fidelity": mem_fid,
        "critical_missing": missing,
        "samples_per_host": min(d["pairs"] for d in hosts.values()),
        "pairs": len(pairs),
        "confidence": {
            "billed_series_reduction_percent": confidence(
                [(p.billed_reduction or 0.0, float(p.count)) for p in ci_pairs]
            ),
            "cpu_coverage_percent": confidence(
                [(p.cpu_coverage, p.weight) for p in pairs if p.cpu_coverage is not None]
            ),
        },
        "collector_cpu_percent_max": rounded(_max_host(hosts, "collector_cpu_percent")),
        "collector_memory_bytes_max": _max_host(hosts, "collector_memory_bytes"),
        "agent_cpu_percent_max": rounded(_max_host(hosts, "agent_cpu_percent")),
        "agent_memory_bytes_max": _max_host(hosts, "agent_memory_bytes"),
        "hosts_failing": sorted(h for h, d in hosts.items() if not d["passed"]),
    }
    return fleet, pipelines


def _max_host(hosts: Mapping[str, Any], key: str) -> float | None:
    values = [d[key] for d in hosts.values() if d[key] is not None]
    return max(values) if values else None


def _host_weighted(hosts: Mapping[str, Any], key: str, weights: Mapping[str, float]) -> float | None:
    """Fleet coverage: host coverages weighted by each host's baseline usage."""
    return rounded(weighted_mean([(d[key], weights[h]) for h, d in hosts.items() if d[key] is not None]))


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "mean": round(statistics.fmean(values), 3),
        "stdev": round(statistics.pstdev(values), 3),
    }


def _fleet_overhead(hosts: Mapping[str, Any]) -> dict[str, Any]:
    measured = {h: d["collector_overhead"] for h, d in hosts.items() if d["collector_overhead"]["measured"]}
    shared = _max_host(hosts, "collector_cpu_percent")
    if not measured:
        return {
            "measured": False,
            "shared_collector_cpu_percent": rounded(shared),
            "shared_collector_memory_bytes": _max_host(hosts, "collector_memory_bytes"),
            "agent_cpu_percent": rounded(_max_host(hosts, "agent_cpu_percent")),
            "agent_memory_bytes": _max_host(hosts, "agent_memory_bytes"),
            "note": "both arms ran in one collector; no probe",
        }
    ratios = [o["cpu_ratio"] for o in measured.values() if o["cpu_ratio"] is not None]
    arms = {
        arm: {
            "collector_cpu_percent": rounded(
                max(o[arm].get("collector_cpu_percent") or 0.0 for o in measured.values())
            ),
            "collector_memory_bytes": max(
                o[arm].get("collector_memory_bytes") or 0.0 for o in measured.values()
            ),
        }
        for arm in ("baseline", "candidate")
    }
    return {
        "measured": True,
        "hosts_measured": len(measured),
        **arms,
        "cpu_ratio": max(ratios) if ratios else None,
        "shared_collector_cpu_percent": rounded(shared),
        "agent_cpu_percent": rounded(_max_host(hosts, "agent_cpu_percent")),
        "agent_memory_bytes": _max_host(hosts, "agent_memory_bytes"),
    }
