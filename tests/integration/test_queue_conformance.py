"""One behaviour suite for the real TaskQueue on PostgreSQL and for the in-memory MemoryQueue: the double
the dispatcher's and the report batcher's unit tests run on is proven to behave as the database does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from control_plane.db import Database, make_pool
from control_plane.queue import TaskQueue
from phoenix_common.problems import Problem
from tests.support.memqueue import MemoryQueue

LIMIT = 2


class Notices:
    """The host ids announced on phoenix_tasks since the suite began."""

    def __init__(self) -> None:
        self.hosts: list[str] = []
        self.arrived = asyncio.Event()

    def __call__(self, host: str) -> None:
        self.hosts.append(host)
        self.arrived.set()

    async def wait_for(self, host: str) -> None:
        async with asyncio.timeout(5):
            while host not in self.hosts:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture(params=["postgres", "memory"])
def url(request: pytest.FixtureRequest) -> str | None:
    """A fresh database for the PostgreSQL run, none for the in-memory one."""
    return request.getfixturevalue("database_url") if request.param == "postgres" else None


@pytest.fixture
async def backend(url: str | None) -> AsyncIterator[tuple[Any, Notices]]:
    notices = Notices()
    if url is None:
        memory = MemoryQueue(lease_seconds=60, max_attempts=3, claim_limit=LIMIT)
        memory.listeners.append(notices)
        yield memory, notices
        return
    pool = make_pool(url, min_size=1, max_size=2)
    await pool.open(wait=True)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as listener:
        await listener.execute("LISTEN phoenix_tasks")

        async def listen() -> None:
            async for note in listener.notifies():
                notices(note.payload)

        listening = asyncio.create_task(listen())
        try:
            yield TaskQueue(Database(pool), lease_seconds=60, max_attempts=3, claim_limit=LIMIT), notices
        finally:
            listening.cancel()
            await asyncio.gather(listening, return_exceptions=True)
            await pool.close()


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [str(r["id"]) for r in rows]


async def health(queue: Any, host: str, priority: int = 0) -> str:
    row = await queue.enqueue(host, type="health", action="check", priority=priority)
    assert row["status"] == "pending"
    return str(row["id"])


async def test_a_claim_takes_the_most_urgent_oldest_first_up_to_the_limit(backend: Any) -> None:
    queue, _ = backend
    low = await health(queue, "h1")
    high = await health(queue, "h1", priority=5)
    later = await health(queue, "h1")
    first = await queue.claim("h1")
    assert ids(first) == [high, low]
    assert [(r["host_id"], r["attempts"], r["type"], r["action"]) for r in first] == [
        ("h1", 1, "health", "check")
    ] * 2
    assert ids(await queue.claim("h1")) == [later]
    assert await queue.claim("h1") == []


async def test_one_claim_serves_many_hosts_each_up_to_the_limit(backend: Any) -> None:
    queue, _ = backend
    mine = {host: [await health(queue, host) for _ in range(3)] for host in ("a", "b")}
    rows = await queue.claim_hosts(["a", "b", "nobody"])
    by_host = {host: sorted(str(r["id"]) for r in rows if r["host_id"] == host) for host in ("a", "b")}
    assert {host: len(got) for host, got in by_host.items()} == {"a": LIMIT, "b": LIMIT}
    assert all(set(by_host[host]) <= set(mine[host]) for host in mine)
    assert len(await queue.claim_hosts(["a", "b"], 10)) == 2


async def test_a_released_claim_is_pending_again_and_announced(backend: Any) -> None:
    queue, notices = backend
    task = await health(queue, "h1")
    await notices.wait_for("h1")
    (claimed,) = await queue.claim("h1")
    notices.hosts.clear()
    assert await queue.release([task]) == 1
    assert await queue.release([task]) == 0  # no longer assigned
    await notices.wait_for("h1")
    (again,) = await queue.claim("h1")
    assert str(again["id"]) == task and again["attempts"] == claimed["attempts"] == 1


async def test_a_large_insert_is_announced_with_one_wildcard(backend: Any) -> None:
    queue, notices = backend
    assert (
        await queue.enqueue_hosts(None, [f"h{i}" for i in range(101)], type="health", action="check") == 101
    )
    await notices.wait_for("*")
    assert notices.hosts == ["*"]


async def test_report_outcomes(backend: Any) -> None:
    queue, _ = backend
    done, running, other = await health(queue, "h1"), await health(queue, "h1"), await health(queue, "h2")
    await queue.claim("h1")
    await queue.claim("h2")
    unknown = "00000000-0000-0000-0000-000000000000"

    def report(task_id: str, status: str, host: str = "h1") -> dict[str, Any]:
        return {"id": task_id, "host_id": host, "status": status, "result": None, "error": None}

    first = await queue.apply_reports(
        [
            report(done, "completed"),
            report(running, "running"),
            report(other, "running"),
            report(unknown, "failed"),
        ]
    )
    assert {k: v["outcome"] for k, v in first.items()} == {
        done: "applied",
        running: "applied",
        other: "not_found",  # another host's task
        unknown: "not_found",
    }
    assert {k: first[done][k] for k in ("id", "host_id", "status", "type", "attempts")} == {
        "id": done,
        "host_id": "h1",
        "status": "completed",
        "type": "health",
        "attempts": 1,
    }
    second = await queue.apply_reports(
        [report(done, "completed"), report(running, "completed"), report(other, "completed", "h2")]
    )
    assert second[done] == {"id": done, "status": "completed", "outcome": "unchanged"}
    assert second[running]["outcome"] == second[other]["outcome"] == "applied"
    third = await queue.apply_reports([report(done, "running")])
    assert third[done] == {"id": done, "outcome": "conflict", "current_status": "completed"}


@pytest.mark.parametrize("bad", [{"id": "not-a-uuid"}, {"error": "nul \x00 byte"}])
async def test_a_report_the_database_cannot_store_is_a_400_problem(backend: Any, bad: dict[str, Any]) -> None:
    queue, _ = backend
    task = await health(queue, "h1")
    await queue.claim("h1")
    report = {"id": task, "host_id": "h1", "status": "failed", "result": None, "error": "x", **bad}
    with pytest.raises(Problem) as caught:
        await queue.apply_reports([report])
    assert caught.value.status == 400
    assert str(caught.value).startswith("a value in the request cannot be stored")
