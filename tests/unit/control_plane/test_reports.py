"""The report batcher (group commit of agent reports) on the in-memory queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from control_plane.queue import ReportBatcher
from phoenix_common.problems import Problem, Unavailable
from tests.support.memqueue import MemoryQueue, until


@pytest.fixture
def queue() -> MemoryQueue:
    return MemoryQueue()


@pytest.fixture
async def batcher(queue: MemoryQueue) -> AsyncIterator[ReportBatcher]:
    batcher = ReportBatcher(queue)  # type: ignore[arg-type]
    running = asyncio.create_task(batcher.run())
    yield batcher
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


async def claimed(queue: MemoryQueue, host: str, n: int = 1) -> list[str]:
    """Ids of `n` new tasks of `host`, delivered to it."""
    await queue.enqueue_hosts(None, [host] * n, type="health", action="check")
    return [str(t["id"]) for t in await queue.claim(host, n)]


def done(task_id: str, status: str = "completed", **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "status": status, "result": None, "error": None, **extra}


async def held_statement(queue: MemoryQueue, batcher: ReportBatcher) -> asyncio.Task[list[dict[str, Any]]]:
    """A report whose statement is in flight (its answer held until queue.open is set): others queue up."""
    (task,) = await claimed(queue, "first")
    queue.open.clear()
    first = asyncio.create_task(batcher.submit("first", [done(task)]))
    await until(lambda: queue.count("apply_reports") == 1)
    return first


async def test_an_idle_batcher_applies_a_report_at_once(queue: MemoryQueue, batcher: ReportBatcher) -> None:
    (task,) = await claimed(queue, "h1")
    (outcome,) = await batcher.submit("h1", [done(task)])
    assert outcome["outcome"] == "applied" and outcome["status"] == "completed"
    assert batcher.statements == 1 and queue.tasks[task]["status"] == "completed"


async def test_reports_that_arrive_together_share_one_statement(
    queue: MemoryQueue, batcher: ReportBatcher
) -> None:
    tasks = {f"h{i}": (await claimed(queue, f"h{i}"))[0] for i in range(20)}
    outcomes = await asyncio.gather(*(batcher.submit(host, [done(task)]) for host, task in tasks.items()))
    assert [o["id"] for (o,) in outcomes] == list(tasks.values())
    assert all(o["outcome"] == "applied" for (o,) in outcomes)
    assert queue.calls[-1] == ("apply_reports", 20) and batcher.statements == 1


async def test_reports_arriving_during_a_statement_share_the_next_one(
    queue: MemoryQueue, batcher: ReportBatcher
) -> None:
    tasks = [(await claimed(queue, f"h{i}"))[0] for i in range(5)]
    first = await held_statement(queue, batcher)
    later = [asyncio.create_task(batcher.submit(f"h{i}", [done(t)])) for i, t in enumerate(tasks)]
    await asyncio.sleep(0)
    queue.open.set()
    await asyncio.gather(first, *later)
    assert [rows for name, rows in queue.calls if name == "apply_reports"] == [1, 5]


async def test_a_batch_refused_for_one_requests_input_fails_only_that_request(
    queue: MemoryQueue, batcher: ReportBatcher
) -> None:
    good1, bad, good2 = [(await claimed(queue, host))[0] for host in ("a", "b", "c")]
    first = await held_statement(queue, batcher)
    later = [
        asyncio.create_task(batcher.submit("a", [done(good1)])),
        asyncio.create_task(batcher.submit("b", [done(bad, "failed", error="nul \x00 byte")])),
        asyncio.create_task(batcher.submit("c", [done(good2)])),
    ]
    await asyncio.sleep(0)
    queue.open.set()
    await first
    a, b, c = await asyncio.gather(*later, return_exceptions=True)
    assert isinstance(b, Problem) and b.status == 400
    assert a[0]["outcome"] == c[0]["outcome"] == "applied"  # type: ignore[index]
    assert queue.tasks[bad]["status"] == "assigned"
    # The held one, the batch of three, then each of the three on its own.
    assert [rows for name, rows in queue.calls if name == "apply_reports"] == [1, 3, 1, 1, 1]


async def test_a_database_outage_fails_the_whole_batch_without_retrying_each(
    queue: MemoryQueue, batcher: ReportBatcher
) -> None:
    tasks = [(await claimed(queue, host))[0] for host in ("a", "b")]
    first = await held_statement(queue, batcher)
    later = [
        asyncio.create_task(batcher.submit(h, [done(t)])) for h, t in zip(("a", "b"), tasks, strict=True)
    ]
    await asyncio.sleep(0)
    queue.failure = Unavailable("the database is unavailable: gone")
    queue.open.set()
    await first
    results = await asyncio.gather(*later, return_exceptions=True)
    assert all(isinstance(r, Unavailable) for r in results)
    assert queue.count("apply_reports") == 2


async def test_a_repeated_id_in_one_request_counts_its_last_report(
    queue: MemoryQueue, batcher: ReportBatcher
) -> None:
    (task,) = await claimed(queue, "h1")
    outcomes = await batcher.submit("h1", [done(task, "running"), done(task, "completed")])
    assert [o["status"] for o in outcomes] == ["completed", "completed"]
    assert queue.calls[-1] == ("apply_reports", 1)


async def test_two_requests_about_one_task_are_applied_in_order(
    queue: MemoryQueue, batcher: ReportBatcher
) -> None:
    (task,) = await claimed(queue, "h1")
    first = await held_statement(queue, batcher)
    running = asyncio.create_task(batcher.submit("h1", [done(task, "running")]))
    completed = asyncio.create_task(batcher.submit("h1", [done(task, "completed")]))
    await asyncio.sleep(0)
    queue.open.set()
    await first
    assert (await running)[0]["outcome"] == (await completed)[0]["outcome"] == "applied"
    assert queue.tasks[task]["status"] == "completed"
    assert queue.count("apply_reports") == 3  # never the same task twice in one statement


async def test_a_batch_holds_at_most_max_reports_but_never_splits_a_request(queue: MemoryQueue) -> None:
    batcher = ReportBatcher(queue, max_reports=3)  # type: ignore[arg-type]
    running = asyncio.create_task(batcher.run())
    tasks = {host: await claimed(queue, host, 2) for host in ("a", "b", "c")}
    await asyncio.gather(*(batcher.submit(host, [done(t) for t in ids]) for host, ids in tasks.items()))
    running.cancel()
    assert [rows for name, rows in queue.calls if name == "apply_reports"] == [2, 2, 2]


async def test_a_request_whose_caller_went_away_is_not_applied(
    queue: MemoryQueue, batcher: ReportBatcher
) -> None:
    (task,) = await claimed(queue, "h1")
    first = await held_statement(queue, batcher)
    gone = asyncio.create_task(batcher.submit("h1", [done(task)]))
    await asyncio.sleep(0)
    gone.cancel()
    queue.open.set()
    await first
    await asyncio.sleep(0.01)
    assert queue.count("apply_reports") == 1 and queue.tasks[task]["status"] == "assigned"
