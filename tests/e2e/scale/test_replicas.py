"""Two API processes on one database, a simulated fleet split across them (issue 7, scale).

A deployment created through one replica reaches every agent of both, no task is delivered twice, and
the events of the fan-out reach WebSocket clients of both replicas. The fleet is `tests/support/fleetsim.py`:
real processes speaking the agent contract over loopback HTTP, bounded in count.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from tests.support import ROOT, eventually, free_port, http_json
from tests.support.services import Service, start_api, start_generator

PER_REPLICA = 150


class SimFleet:
    """One fleetsim process; its JSON lines read as they come."""

    def __init__(self, api: Service, count: int, prefix: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.fleetsim",
                "--api",
                api.url,
                "--count",
                str(count),
                "--prefix",
                prefix,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.lines: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader: asyncio.Task[None] | None = None

    async def start_reading(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.proc.stdout is not None
        stream = self.proc.stdout

        async def read() -> None:
            while True:
                line = await loop.run_in_executor(None, stream.readline)
                if not line:
                    return
                with contextlib.suppress(ValueError):
                    await self.lines.put(json.loads(line))

        self.reader = asyncio.create_task(read())

    async def next_event(self, kind: str, timeout: float) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                line = await self.lines.get()
                if line.get("event") == kind:
                    return line

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def replicas(database_url: str, tmp_path: Path) -> Iterator[tuple[Service, Service]]:
    ports = [free_port(), free_port()]
    generator = start_generator(tmp_path, f"http://127.0.0.1:{ports[0]}")
    first = start_api(database_url, tmp_path, generator_url=generator.url, port=ports[0], name="api-a")
    second = start_api(database_url, tmp_path, generator_url=generator.url, port=ports[1], name="api-b")
    yield first, second
    second.stop()
    first.stop()
    generator.stop()


async def _watch(url: str, seen: list[dict[str, Any]], subscribed: asyncio.Event) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url.replace("http", "ws") + "/api/v1/ws") as ws,
    ):
        await ws.send_str(json.dumps({"subscribe": ["deployments", "tasks"]}))
        async for msg in ws:
            data = json.loads(msg.data)
            if data.get("type") == "subscribed":
                subscribed.set()
            elif data.get("type") == "event":
                seen.append(data)


async def test_fanout_across_two_replicas(replicas: tuple[Service, Service], database_url: str) -> None:
    a, b = replicas
    fleets = [SimFleet(a, PER_REPLICA, "ra"), SimFleet(b, PER_REPLICA, "rb")]
    watchers: list[asyncio.Task[None]] = []
    try:
        for fleet in fleets:
            await fleet.start_reading()
        for fleet in fleets:
            await fleet.next_event("ready", timeout=120)
        seen: dict[str, list[dict[str, Any]]] = {a.url: [], b.url: []}
        for api in (a, b):
            subscribed = asyncio.Event()
            watchers.append(asyncio.create_task(_watch(api.url, seen[api.url], subscribed)))
            async with asyncio.timeout(30):
                await subscribed.wait()

        status, body, _ = await asyncio.to_thread(
            http_json,
            "POST",
            f"{a.url}/api/v1/pipeline-deployments",
            {"name": "replicas", "namespace": "fleet", "template": "process-baseline-v1"},
        )
        assert status == 201, body
        deployment_id = body["id"]

        received: list[dict[str, Any]] = []
        for fleet in fleets:
            for _ in range(PER_REPLICA):
                received.append(await fleet.next_event("received", timeout=120))
        hosts = [r["host"] for r in received]
        tasks = [r["task"] for r in received]
        assert len(set(hosts)) == 2 * PER_REPLICA, "an agent did not get the deployment"
        assert len(set(tasks)) == len(tasks), "a task was delivered twice"

        def completed() -> list[tuple[Any, ...]]:
            with psycopg.connect(database_url) as conn:
                return conn.execute(
                    "SELECT status, attempts FROM tasks WHERE deployment_id = %s", (deployment_id,)
                ).fetchall()

        async def all_completed() -> list[tuple[Any, ...]] | None:
            rows = await asyncio.to_thread(completed)
            done = len(rows) == 2 * PER_REPLICA and all(r[0] == "completed" for r in rows)
            return rows if done else None

        rows = await eventually(all_completed, 120, "every task of the fan-out to be completed")
        assert all(r[1] == 1 for r in rows), "a task was claimed more than once"

        # Each replica's WebSocket clients hear the whole fan-out, whichever replica handled it.
        task_ids = set(tasks)

        def heard(url: str) -> tuple[bool, set[str]]:
            kinds = {e.get("kind") for e in seen[url]}
            done = {e["data"]["task_id"] for e in seen[url] if e.get("kind") == "task_completed"}
            return "deployment_created" in kinds, done

        await eventually(
            lambda: all(heard(u)[0] and heard(u)[1] >= task_ids for u in seen),
            60,
            "both replicas' WebSocket clients to hear the whole fan-out",
        )
        # Long polls of both replicas were served: each replica delivered to its own half.
        assert {h[:2] for h in hosts} == {"ra", "rb"}
    finally:
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        for fleet in fleets:
            fleet.stop()
