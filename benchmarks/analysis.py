"""The analysis of a long experiment: a 7-day, 100-host run at 10 s samples, read host by host from its
compacted rows (Phoenix), against reading every row at once and analysing them together (the peer, what
the API did before), each in a fresh process so that its peak memory is its own.

The experiment is written as compaction leaves it (control_plane/compaction.py): the last
`--full-hours` + 1 hours at full resolution, older samples one per `--bucket` standing for the samples of
their bucket. One compaction pass then thins the extra hour, and is timed. Every figure printed is
measured in this run, except the line that says what full resolution would store (arithmetic).

    .venv/bin/python benchmarks/analysis.py [--hosts 100] [--days 7] [--runs 3] [--database-url URL]
"""

from __future__ import annotations

# ruff: noqa: E402 - the imports follow the sys.path fix below.
# Running this file puts benchmarks/ first on sys.path, where queue.py would shadow the standard
# library's `queue`. Swap that entry for the repository root.
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _HERE:
    sys.path[0] = os.path.dirname(_HERE)

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import time
import warnings
from typing import Any, cast

import psutil
from psycopg.types.json import Jsonb

from benchmarks.pgserver import postgres_server, run_sql, scratch_database
from control_plane import compaction
from control_plane.analysis import analyze
from control_plane.db import Database, make_pool, migrate
from control_plane.experiment_service import ExperimentService
from control_plane.phases import Phase
from control_plane.settings import Settings
from control_plane.stores.experiments import ExperimentStore
from phoenix_common.logging import configure as configure_logging

EXPERIMENT = "bench-analysis"
SPEC: dict[str, Any] = {
    "target_namespaces": ["default"],
    "baseline_pipeline": "process-baseline-v1",
    "candidate_pipeline": "process-intelligent-v1",
    "critical_processes": ["sshd", "cron"],
    "sample_interval_seconds": 10,
    "billing_window_seconds": 600,
}

# Both arms of every host, `n` samples from `start` every `step` seconds, each standing for `rep`;
# the templates carry the per-process maps and per-metric counts a real sample has.
GENERATE = """
INSERT INTO experiment_measurements (experiment_id, host_id, variant, pipeline, ts, phase, represents, sample)
SELECT %(id)s, %(host)s, a.variant, a.variant, to_timestamp(t.ts + a.offs), 'running', %(rep)s,
       a.template || jsonb_build_object('ts', t.ts + a.offs, 'billed_series', a.billed + (t.i %% 9))
FROM (VALUES ('baseline', 0.0, %(base)s::jsonb, 1000), ('candidate', 0.01, %(cand)s::jsonb, 60))
     AS a(variant, offs, template, billed)
CROSS JOIN (SELECT i, %(start)s + i * %(step)s AS ts FROM generate_series(0, %(n)s - 1) AS i) AS t
"""


def templates(processes: int, kept: int) -> tuple[dict[str, Any], dict[str, Any]]:
    names = ["sshd", "cron"] + [f"proc-{i:03d}" for i in range(processes - 2)]
    # A few names use most of the CPU, as on real hosts: the kept ones cover nearly all of it.
    cpu = {n: round(2.0 * 0.6**i, 6) for i, n in enumerate(names)}
    mem = {n: 1_000_000 * (i + 1) for i, n in enumerate(names)}
    common = {
        "interval_seconds": 10.0,
        "observed_seconds": 600.0,
        "billing_window_seconds": 600.0,
        "critical_present": {"sshd": True, "cron": True},
        "collector_cpu_percent": 3.0,
        "agent_cpu_percent": 0.5,
        "agent_memory_bytes": 40_000_000,
    }
    metrics = {f"process.metric.{i}": processes for i in range(8)}
    base = {
        **common,
        "active_series": 8 * processes,
        "datapoints_per_minute": 48.0 * processes,
        "series_per_metric": metrics,
        "process_cpu_seconds_rate": cpu,
        "process_memory_bytes": mem,
        "process_cpu_seconds_total": {n: 100.0 * v for n, v in cpu.items()},
        "cpu_total_rate": sum(cpu.values()),
        "memory_total_bytes": sum(mem.values()),
    }
    keep = names[:kept]
    other_cpu = sum(v for n, v in cpu.items() if n not in keep)
    cand = {
        **common,
        "active_series": 8 * (kept + 1),
        "datapoints_per_minute": 48.0 * (kept + 1),
        "series_per_metric": {k: kept + 1 for k in metrics},
        "process_cpu_seconds_rate": {**{n: cpu[n] for n in keep}, "other": other_cpu},
        "process_memory_bytes": {
            **{n: mem[n] for n in keep},
            "other": sum(mem.values()) - sum(mem[n] for n in keep),
        },
        "kept_processes": [*keep, "other"],
        "cpu_total_rate": sum(cpu.values()),
        "memory_total_bytes": sum(mem.values()),
    }
    return base, cand


async def generate(url: str, opts: argparse.Namespace) -> dict[str, float]:
    """The experiment's rows as compaction leaves them, plus one hour at full resolution to thin."""
    pool = make_pool(url, 1, 2)
    await pool.open(wait=True)
    store = ExperimentStore(Database(pool))
    hosts = [f"host-{i:04d}" for i in range(opts.hosts)]
    await store.insert(EXPERIMENT, "seven days", SPEC)
    async with store.db.transaction() as tx:
        await store.set_hosts(EXPERIMENT, hosts, {}, tx)
        await store.set_phase(EXPERIMENT, Phase.DEPLOYING, "bench", tx)
        await store.set_phase(EXPERIMENT, Phase.WARMING_UP, "bench", tx)
        await store.set_phase(EXPERIMENT, Phase.RUNNING, "bench", tx)
    await run_sql(
        url,
        f"UPDATE experiments SET started_at = now() - interval '{opts.days} days' WHERE id = '{EXPERIMENT}'",
    )
    base, cand = templates(opts.processes, opts.kept)
    now = time.time()
    full = (opts.full_hours + 1) * 3600
    split = (now - full) // opts.bucket * opts.bucket  # full resolution from a bucket boundary on
    start = now - opts.days * 86400
    old_n = int((split - start) // opts.bucket)
    full_n = int((now - split) // opts.interval)
    began = time.perf_counter()
    async with pool.connection() as conn:
        for host in hosts:
            for first, step, n, rep in (
                (split - old_n * opts.bucket, opts.bucket, old_n, int(opts.bucket // opts.interval)),
                (split, opts.interval, full_n, 1),
            ):
                await conn.execute(
                    GENERATE,
                    {
                        "id": EXPERIMENT,
                        "host": host,
                        "rep": rep,
                        "base": Jsonb(base),
                        "cand": Jsonb(cand),
                        "start": first,
                        "step": step,
                        "n": n,
                    },
                )
    await run_sql(url, "VACUUM ANALYZE experiment_measurements")
    written = time.perf_counter() - began
    rows_before = await count(url)
    began = time.perf_counter()
    counts = await compaction.compact(store, opts.full_hours * 3600, opts.bucket, slack=3600)
    compact_seconds = time.perf_counter() - began
    await run_sql(url, "VACUUM ANALYZE experiment_measurements")
    await pool.close()
    return {
        "generate_seconds": written,
        "rows_before_compaction": rows_before,
        "compaction_seconds": compact_seconds,
        "compaction_deleted": counts["deleted"],
        "rows": await count(url),
        "sample_bytes": (
            await run_sql(url, "SELECT sum(pg_column_size(sample)) FROM experiment_measurements")
        )[0],
    }


async def count(url: str) -> int:
    return int((await run_sql(url, "SELECT count(*) FROM experiment_measurements"))[0])


# --- one measured path, in its own process -------------------------------------------------------


async def child(url: str, path: str) -> dict[str, Any]:
    pool = make_pool(url, 1, 2)
    await pool.open(wait=True)
    db = Database(pool)
    store = ExperimentStore(db)
    settings = Settings()
    # Only the store and the prices take part in an analysis; the other parts are never reached.
    none = cast(Any, None)
    service = ExperimentService(db, store, none, none, none, none, settings)
    row = await service.get(EXPERIMENT)
    base_rss = psutil.Process().memory_info().rss
    began = time.perf_counter()
    if path == "phoenix":
        result = await service.analyze(row)
    else:
        rows = await store.measurements(EXPERIMENT)
        result = await asyncio.to_thread(analyze, rows, spec=row["spec"], prices=service.prices)
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    await pool.close()
    return {
        "seconds": seconds,
        "peak_over_start_bytes": max(0, peak - base_rss),
        "verdict": result.get("verdict"),
        "hosts": result.get("hosts_compared"),
        "billed_reduction": result["fleet"]["billed_series_reduction_percent"],
        "cpu_coverage": result["fleet"]["cpu_coverage_percent"],
    }


def measure(url: str, path: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.analysis", "--child", path, "--database-url", url],
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    return cast(dict[str, Any], json.loads(out.stdout.strip().splitlines()[-1]))


def report(opts: argparse.Namespace, setup: dict[str, float], runs: dict[str, list[dict[str, Any]]]) -> None:
    full_rows = 2 * opts.hosts * opts.days * 86400 / opts.interval
    print(
        f"\nExperiment: {opts.hosts} hosts x 2 arms, {opts.days} days at {opts.interval:g} s samples, "
        f"{opts.processes} processes per host, {opts.kept} kept"
    )
    print(f"  full resolution would store          {full_rows:>12,.0f} rows (arithmetic, not measured)")
    print(
        f"  stored after compaction              {setup['rows']:>12,} rows, "
        f"{setup['sample_bytes'] / 2**20:,.0f} MiB of samples"
    )
    print(
        f"  one compaction pass (1 h x {opts.hosts} hosts) {setup['compaction_seconds']:>8.2f} s, "
        f"{setup['compaction_deleted']:,} rows thinned"
    )
    print(f"\n| path | seconds (median of {opts.runs}) | peak memory over start, MiB (median) | verdict |")
    print("|---|---|---|---|")
    med = {}
    for path, label in (("phoenix", "Phoenix: host by host"), ("peer", "peer: every row at once")):
        secs = statistics.median(r["seconds"] for r in runs[path])
        mem = statistics.median(r["peak_over_start_bytes"] for r in runs[path]) / 2**20
        med[path] = (secs, mem)
        print(f"| {label} | {secs:.2f} | {mem:,.0f} | {runs[path][0]['verdict']} |")
    print(
        f"\nruns (s): phoenix {[round(r['seconds'], 2) for r in runs['phoenix']]}, "
        f"peer {[round(r['seconds'], 2) for r in runs['peer']]}"
    )
    same = {
        json.dumps({k: r[k] for k in ("verdict", "billed_reduction", "cpu_coverage")})
        for p in runs.values()
        for r in p
    }
    print(f"same figures on both paths: {len(same) == 1}")
    print(
        f"ratio Phoenix / peer: time {med['phoenix'][0] / med['peer'][0]:.2f}x, "
        f"peak memory {med['phoenix'][1] / med['peer'][1]:.3f}x"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    option = parser.add_argument
    option("--hosts", type=int, default=100)
    option("--days", type=int, default=7)
    option("--interval", type=float, default=10.0, help="seconds between samples (default 10)")
    option("--full-hours", type=int, default=1, help="hours kept at full resolution (default 1)")
    option("--bucket", type=float, default=300.0, help="seconds per thinned sample (default 300)")
    option("--processes", type=int, default=40, help="process names per baseline sample (default 40)")
    option("--kept", type=int, default=10, help="names the candidate keeps (default 10)")
    option("--runs", type=int, default=3)
    option("--child", choices=("phoenix", "peer"), help=argparse.SUPPRESS)
    option("--database-url", default=os.environ.get("PHOENIX_TEST_DATABASE_URL"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    configure_logging("warning")
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    if opts.child:
        print(json.dumps(asyncio.run(child(opts.database_url, opts.child))))
        return
    started = time.perf_counter()
    with (
        postgres_server(opts.database_url) as admin_url,
        scratch_database(admin_url, "bench_analysis") as url,
    ):
        asyncio.run(migrate(url))
        setup = asyncio.run(generate(url, opts))
        print(f"wrote {setup['rows_before_compaction']:,} rows in {setup['generate_seconds']:.0f} s")
        runs: dict[str, list[dict[str, Any]]] = {"phoenix": [], "peer": []}
        for _ in range(opts.runs):
            for path in ("phoenix", "peer"):
                runs[path].append(measure(url, path))
        report(opts, setup, runs)
    print(f"\n(total run time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
