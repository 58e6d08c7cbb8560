"""A simulated fleet: many agents in one process that heartbeat, long-poll and report like the real one.

Run as `python -m tests.support.fleetsim --api URL --count N [--prefix P]`. It speaks the agent contract
(docs/contracts.md) over real HTTP on loopback and writes JSON lines to stdout:
  {"event": "ready", "agents": N}                       every agent has registered and is polling
  {"event": "received", "host": H, "task": ID, "type": T, "t": unix time}   per task received
  {"event": "summary", ...}                             counters, on SIGTERM/SIGINT
Used by benchmarks/fleet.py and the multi-replica tests; it is bounded by --count and by whoever stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

RETRYABLE = (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError)


@dataclass
class Counters:
    heartbeats: int = 0
    polls: int = 0
    tasks: int = 0
    reports: int = 0
    errors: int = 0
    registered: int = 0
    last_error: str = ""
    started: float = field(default_factory=time.time)


def emit(record: dict[str, Any], flush: bool = True) -> None:
    """One JSON line; `received` lines are flushed in bursts (their time is taken before), which keeps a
    syscall per task off the simulated fleet's CPU."""
    sys.stdout.write(json.dumps(record) + "\n")
    if flush:
        sys.stdout.flush()


async def flusher() -> None:
    while True:
        await asyncio.sleep(0.05)
        sys.stdout.flush()


class SimAgent:
    """One simulated host."""

    def __init__(self, fleet: Fleet, host_id: str) -> None:
        self.fleet = fleet
        self.host_id = host_id
        self.headers = {"X-Agent-Host-ID": host_id}
        self.config_hash: str | None = None
        self.pipeline: str | None = None
        self.born = time.monotonic()

    def _heartbeat_body(self) -> dict[str, Any]:
        return {
            "version": "sim",
            "namespace": self.fleet.namespace,
            "labels": {"fleet": "sim"},
            "facts": {"hostname": self.host_id, "os": "sim", "cpus": 2},
            "collector": {
                "state": "running",
                "restarts": 0,
                "config_hash": self.config_hash,
                "pipeline": self.pipeline,
                "uptime_seconds": round(time.monotonic() - self.born, 1),
            },
            "running_tasks": [],
        }

    async def _call(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        """One request, retried with full-jitter exponential backoff while the API is unreachable."""
        delay = 0.5
        while True:
            try:
                async with self.fleet.session.request(
                    method,
                    self.fleet.api + path,
                    json=body,
                    headers=self.headers,
                    timeout=aiohttp.ClientTimeout(total=timeout),
                ) as response:
                    if response.status >= 500:
                        raise aiohttp.ClientResponseError(
                            response.request_info, (), status=response.status, message="server error"
                        )
                    data = await response.json(content_type=None)
                    if response.status >= 400:
                        raise RuntimeError(f"{method} {path}: {response.status} {data}")
                    return data
            except RETRYABLE as exc:
                self.fleet.counters.errors += 1
                self.fleet.counters.last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(random.uniform(0, delay))
                delay = min(delay * 2, self.fleet.backoff_max)

    async def run(self) -> None:
        await self._call("POST", "/api/v1/agent/heartbeat", self._heartbeat_body())
        self.fleet.counters.heartbeats += 1
        self.fleet.registered()
        heart = asyncio.create_task(self._heartbeats())
        try:
            await self._polls()
        finally:
            heart.cancel()

    async def _heartbeats(self) -> None:
        interval = self.fleet.heartbeat_interval
        while True:
            await asyncio.sleep(interval * random.uniform(0.8, 1.2))
            await self._call("POST", "/api/v1/agent/heartbeat", self._heartbeat_body())
            self.fleet.counters.heartbeats += 1

    async def _polls(self) -> None:
        wait = self.fleet.poll_wait
        while True:
            answer = await self._call("GET", f"/api/v1/agent/tasks?wait={wait:g}", timeout=wait + 30)
            self.fleet.counters.polls += 1
            tasks = answer.get("tasks") or []
            if not tasks:
                continue
            now = time.time()
            for task in tasks:
                self.fleet.counters.tasks += 1
                record = {"event": "received", "host": self.host_id, "task": task["id"], "t": now}
                emit({**record, "type": task["type"]}, flush=False)
            # As the real agent: say each task is running, do it (a config apply takes seconds: validate,
            # swap, reload, health), report it completed, and only then poll again.
            await self._report([{"id": task["id"], "status": "running"} for task in tasks])
            for task in tasks:
                await asyncio.sleep(self.fleet.apply_seconds * random.uniform(0.5, 1.5))
                payload = task.get("payload") or {}
                if task["type"] == "deployment" and payload.get("config_hash"):
                    self.config_hash = payload["config_hash"]
                    self.pipeline = payload.get("pipeline")
                await self._report([{"id": task["id"], "status": "completed", "result": {"simulated": True}}])

    async def _report(self, reports: list[dict[str, Any]]) -> None:
        await self._call("POST", "/api/v1/agent/tasks/status", {"reports": reports})
        self.fleet.counters.reports += len(reports)


class Fleet:
    def __init__(self, args: argparse.Namespace, session: aiohttp.ClientSession) -> None:
        self.api = args.api.rstrip("/")
        self.namespace = args.namespace
        self.poll_wait = args.poll_wait
        self.heartbeat_interval = args.heartbeat_interval
        self.backoff_max = args.backoff_max
        self.apply_seconds = args.apply_seconds
        self.count = args.count
        self.session = session
        self.counters = Counters()
        self.all_registered = asyncio.Event()

    def registered(self) -> None:
        self.counters.registered += 1
        if self.counters.registered == self.count:
            self.all_registered.set()


async def main(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=None)
    async with aiohttp.ClientSession(connector=connector) as session:
        fleet = Fleet(args, session)
        flushing = asyncio.create_task(flusher())
        agents = [SimAgent(fleet, f"{args.prefix}-{i:05d}") for i in range(args.count)]
        running: list[asyncio.Task[None]] = []
        for i, agent in enumerate(agents):
            running.append(asyncio.create_task(agent.run()))
            if args.ramp and (i + 1) % max(1, int(args.ramp / 10)) == 0:
                await asyncio.sleep(0.1)  # --ramp agents a second, so the API's accept queue keeps up
        waiter = asyncio.create_task(fleet.all_registered.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if fleet.all_registered.is_set():
            emit(
                {
                    "event": "ready",
                    "agents": args.count,
                    "seconds": round(time.time() - fleet.counters.started, 2),
                }
            )
        await stop.wait()
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        flushing.cancel()
        c = fleet.counters
        emit(
            {
                "event": "summary",
                "heartbeats": c.heartbeats,
                "polls": c.polls,
                "tasks": c.tasks,
                "reports": c.reports,
                "errors": c.errors,
                "last_error": c.last_error,
            }
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True, help="the control plane, e.g. http://127.0.0.1:8080")
    parser.add_argument("--count", type=int, required=True, help="simulated agents in this process")
    parser.add_argument("--prefix", default="sim", help="host ids are <prefix>-00000 ...")
    parser.add_argument("--namespace", default="fleet")
    parser.add_argument("--poll-wait", type=float, default=30.0, help="long-poll wait, as the real agent")
    parser.add_argument("--heartbeat-interval", type=float, default=15.0, help="as the real agent")
    parser.add_argument("--backoff-max", type=float, default=30.0)
    parser.add_argument(
        "--apply-seconds", type=float, default=2.0, help="mean time a task takes (0.5x-1.5x, uniform)"
    )
    parser.add_argument("--ramp", type=float, default=1000.0, help="agents started a second (0: all at once)")
    args = parser.parse_args(argv)
    if not args.api.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        parser.error("the simulated fleet only targets loopback")
    if not 0 < args.count <= 20_000:
        parser.error("--count must be between 1 and 20000")
    return args


if __name__ == "__main__":
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(parse_args()))
