"""Idle cost of the host agent (RSS, CPU) against a minimal long-poll client measured in the same run.

Run: python benchmarks/agent.py [--seconds 60] [--poll 2] [--collector]

Starts a real control plane (`python -m control_plane` on an embedded PostgreSQL in a temporary
directory), then two clients of its agent API side by side, each as its own process:

- the Phoenix agent (`python -m agent`), idle: heartbeats and long-polls with a `--poll` second wait;
- the peer: a bare aiohttp loop in the same interpreter doing the same calls (heartbeat every 15 s,
  long poll with the same wait) and nothing else.

After a warm-up it samples both processes' resident memory every second with psutil and measures
their CPU time over the whole window. Absolute figures drift on shared machines; the ratio to the
peer shows what the agent's own machinery costs. Targets: < 60 MB RSS and < 0.5 % of one core.
With --collector the agent also supervises a real collector (bin/otelcol-phoenix) as a child
process; the collector's own figures are then shown on a separate row (they are not the agent's).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
TARGET_RSS_MB = 60.0
TARGET_CPU_PERCENT = 0.5

PEER = """\
import asyncio, sys, aiohttp
api, host, wait = sys.argv[1], sys.argv[2], sys.argv[3]
headers = {"X-Agent-Host-ID": host}
async def heartbeat(session):
    while True:
        async with session.post(api + "/api/v1/agent/heartbeat", json={"namespace": "default"},
                                headers=headers) as r:
            await r.read()
        await asyncio.sleep(15)
async def main():
    async with aiohttp.ClientSession() as session:
        asyncio.create_task(heartbeat(session))
        while True:
            try:
                async with session.get(api + "/api/v1/agent/tasks", params={"wait": wait}, headers=headers,
                                       timeout=aiohttp.ClientTimeout(total=float(wait) + 15)) as r:
                    await r.read()
            except aiohttp.ClientError:
                await asyncio.sleep(1)
asyncio.run(main())
"""

COLLECTOR_CONFIG = """\
receivers:
  hostmetrics/phoenix:
    collection_interval: 10s
    scrapers: {{cpu: {{}}, memory: {{}}}}
exporters:
  prometheus/main:
    endpoint: 127.0.0.1:{prometheus}
extensions:
  health_check:
    endpoint: 127.0.0.1:{health}
service:
  extensions: [health_check]
  telemetry: {{metrics: {{level: none}}}}
  pipelines:
    metrics/main: {{receivers: [hostmetrics/phoenix], exporters: [prometheus/main]}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} did not come up: process exited; see {log}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up within {timeout:.0f}s; see {log}")


def spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            argv,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@dataclass
class Usage:
    """RSS samples and CPU time of one process over the measured window."""

    name: str
    process: psutil.Process
    rss: list[int] = field(default_factory=list)
    cpu_start: float = 0.0
    cpu_end: float = 0.0

    def cpu_seconds(self) -> float:
        """CPU time of every thread, in nanosecond resolution from schedstat where Linux offers it
        (psutil's user+system time moves in 10 ms ticks, too coarse for an idle process)."""
        total = 0
        try:
            for task in Path(f"/proc/{self.process.pid}/task").iterdir():
                with contextlib.suppress(FileNotFoundError):
                    total += int((task / "schedstat").read_text().split()[0])
            return total / 1e9
        except (OSError, ValueError, IndexError):
            times = self.process.cpu_times()
            return float(times.user + times.system)

    def sample(self) -> None:
        self.rss.append(int(self.process.memory_info().rss))

    def cpu_percent(self, window: float) -> float:
        return 100.0 * (self.cpu_end - self.cpu_start) / window

    def rss_mb(self) -> tuple[float, float]:
        mean = sum(self.rss) / len(self.rss) / 1e6
        return mean, max(self.rss) / 1e6


def start_clients(args: argparse.Namespace, work: Path, procs: list[subprocess.Popen[bytes]]) -> list[Usage]:
    """Start the control plane, the agent and the peer; return what to measure."""
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    api_env = {
        "PHOENIX_PORT": str(api_port),
        "PHOENIX_STATE_DIR": str(work / "api"),
        "PHOENIX_LOG_LEVEL": "warning",
    }
    api = spawn([sys.executable, "-m", "control_plane"], api_env, work / "api.log")
    procs.append(api)
    wait_http(f"{api_url}/health", api, 120, work / "api.log")

    config_path = work / "etc" / "collector.yaml"
    if args.collector:
        if not (ROOT / "bin" / "otelcol-phoenix").exists():
            raise SystemExit("bin/otelcol-phoenix is missing: run `make otelcol`, or drop --collector")
        config_path.parent.mkdir(parents=True)
        config_path.write_text(COLLECTOR_CONFIG.format(prometheus=free_port(), health=free_port()))
    agent_env = {
        "PHOENIX_AGENT_CONFIG": str(work / "agent.yaml"),
        "PHOENIX_AGENT_API_URL": api_url,
        "PHOENIX_AGENT_HOST_ID": "bench-agent",
        "PHOENIX_AGENT_POLL_INTERVAL": f"{args.poll}s",
        "PHOENIX_AGENT_STATE_DIR": str(work / "agent-state"),
        "PHOENIX_AGENT_LOG_LEVEL": "warning",
        "PHOENIX_AGENT_COLLECTOR__SUPERVISOR": "process",
        "PHOENIX_AGENT_COLLECTOR__CONFIG_PATH": str(config_path),
        "PHOENIX_AGENT_COLLECTOR__BINARY": str(ROOT / "bin" / "otelcol-phoenix"),
    }
    (work / "agent.yaml").write_text("{}\n")
    agent = spawn([sys.executable, "-m", "agent"], agent_env, work / "agent.log")
    peer = spawn([sys.executable, "-c", PEER, api_url, "bench-peer", str(args.poll)], {}, work / "peer.log")
    procs += [agent, peer]
    time.sleep(args.warmup)  # a benchmark warm-up, not a test wait
    for proc, log in ((agent, "agent.log"), (peer, "peer.log")):
        if proc.poll() is not None:
            raise SystemExit(f"a client exited during warm-up; see {work / log}")
    rows = [
        Usage("phoenix agent", psutil.Process(agent.pid)),
        Usage("peer (bare aiohttp loop)", psutil.Process(peer.pid)),
    ]
    children = psutil.Process(agent.pid).children()
    if args.collector and children:
        rows.append(Usage("collector (agent's child)", children[0]))
    return rows


def measure(rows: list[Usage], seconds: float) -> float:
    """Sample RSS every second and CPU time at both ends; return the window length."""
    for row in rows:
        row.cpu_start = row.cpu_seconds()
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        for row in rows:
            row.sample()
        time.sleep(1.0)
    window = time.monotonic() - started
    for row in rows:
        row.cpu_end = row.cpu_seconds()
    return window


def report(rows: list[Usage], window: float, poll: int) -> bool:
    """Print the table and the ratios; True when the agent meets its targets."""
    agent_row, peer_row = rows[0], rows[1]
    print(
        f"idle clients of the agent API, long-poll wait {poll}s, {window:.0f}s window, "
        f"{len(agent_row.rss)} RSS samples each"
    )
    print(f"{'process':<28}{'RSS mean MB':>13}{'RSS max MB':>12}{'CPU % core':>12}")
    for row in rows:
        mean, peak = row.rss_mb()
        print(f"{row.name:<28}{mean:>13.1f}{peak:>12.1f}{row.cpu_percent(window):>12.3f}")
    agent_mean, agent_peak = agent_row.rss_mb()
    peer_mean, _ = peer_row.rss_mb()
    agent_cpu, peer_cpu = agent_row.cpu_percent(window), peer_row.cpu_percent(window)
    cpu_ratio = f"{agent_cpu / peer_cpu:.2f}x" if peer_cpu > 0 else "n/a (peer used no measurable CPU)"
    print(f"agent / peer: RSS {agent_mean / peer_mean:.2f}x, CPU {cpu_ratio}")
    ok = agent_peak < TARGET_RSS_MB and agent_cpu < TARGET_CPU_PERCENT
    print(
        f"targets: RSS < {TARGET_RSS_MB:.0f} MB (max {agent_peak:.1f}), CPU < {TARGET_CPU_PERCENT}% "
        f"(got {agent_cpu:.3f}%): {'met' if ok else 'NOT met'}"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window (default 60)")
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring (default 10)")
    parser.add_argument("--poll", type=int, default=2, help="long-poll wait in seconds (default 2)")
    parser.add_argument("--collector", action="store_true", help="let the agent supervise a real collector")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="phoenix-bench-agent-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        rows = start_clients(args, work, procs)
        window = measure(rows, args.seconds)
    finally:
        for proc in reversed(procs):
            stop(proc)
    return 0 if report(rows, window, args.poll) else 1


if __name__ == "__main__":
    sys.exit(main())
