"""The long-poll dispatcher on the in-memory queue: who gets woken, and how many claims it costs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from control_plane.dispatch import Dispatcher
from phoenix_common.problems import TooManyRequests, Unavailable
from tests.support.memqueue import MemoryQueue, until


@pytest.fixture
def queue() -> MemoryQueue:
    return MemoryQueue(claim_limit=10)


@pytest.fixture
async def dispatcher(queue: MemoryQueue) -> AsyncIterator[Dispatcher]:
    """A running dispatcher that hears the queue's NOTIFYs, as the LISTEN loop would deliver them."""
    dispatcher = Dispatcher(queue)  # type: ignore[arg-type]
    queue.listeners.append(dispatcher.wake)
    running = asyncio.create_task(dispatcher.run())
    yield dispatcher
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


async def test_a_waiting_poll_gets_a_task_inserted_after_it_began(
    queue: MemoryQueue, dispatcher: Dispatcher
) -> None:
    poll = asyncio.create_task(dispatcher.wait("h1", 5))
    await until(lambda: queue.count("claim_hosts") == 1 and len(dispatcher) == 1)
    assert not poll.done()  # nothing pending yet: it waits
    row = await queue.enqueue("h1", type="health", action="check")
    tasks = await poll
    assert [t["id"] for t in tasks] == [row["id"]]
    assert tasks[0]["attempts"] == 1 and queue.count("claim_hosts") == 2
    assert len(dispatcher) == 0


async def test_a_poll_that_times_out_returns_nothing_and_leaves_no_waiter(
    queue: MemoryQueue, dispatcher: Dispatcher
) -> None:
    assert await dispatcher.wait("h1", 0.01) == []
    assert len(dispatcher) == 0 and not dispatcher._waiting


async def test_an_idle_hosts_repeated_polls_run_no_claim(queue: MemoryQueue, dispatcher: Dispatcher) -> None:
    assert await dispatcher.wait("h1", 0.01) == []
    for _ in range(3):
        assert await dispatcher.wait("h1", 0.01) == []
    assert (queue.count("claim_hosts"), dispatcher.claims, dispatcher.skipped) == (1, 1, 3)
    await queue.enqueue("h1", type="health", action="check")  # its NOTIFY makes the host dirty again
    assert len(await dispatcher.wait("h1", 1)) == 1
    assert queue.count("claim_hosts") == 2


async def test_wake_all_claims_for_every_waiting_host(queue: MemoryQueue, dispatcher: Dispatcher) -> None:
    queue.listeners.clear()  # tasks arrive unannounced, as while the LISTEN connection was down
    polls = [asyncio.create_task(dispatcher.wait(host, 5)) for host in ("a", "b")]
    await until(lambda: queue.count("claim_hosts") == 1 and len(dispatcher) == 2)
    await queue.enqueue_hosts(None, ["a", "b"], type="health", action="check")
    await asyncio.sleep(0.01)
    assert not any(p.done() for p in polls)
    dispatcher.wake_all()
    assert [len(t) for t in await asyncio.gather(*polls)] == [1, 1]
    assert queue.count("claim_hosts") == 2


async def test_many_waiting_hosts_are_claimed_for_in_one_statement(
    queue: MemoryQueue, dispatcher: Dispatcher
) -> None:
    hosts = [f"h{i}" for i in range(50)]
    polls = [asyncio.create_task(dispatcher.wait(host, 5)) for host in hosts]
    await until(lambda: len(dispatcher) == 50 and queue.count("claim_hosts") == 1)
    await queue.enqueue_hosts(None, hosts, type="health", action="check")
    assert all(len(t) == 1 for t in await asyncio.gather(*polls))
    assert queue.calls.count(("claim_hosts", 50)) == 2  # one when they came, one after the NOTIFYs


async def test_a_fan_out_is_claimed_in_batches_of_batch_max(queue: MemoryQueue) -> None:
    dispatcher = Dispatcher(queue, batch_max=10, workers=1)  # type: ignore[arg-type]
    running = asyncio.create_task(dispatcher.run())
    hosts = [f"h{i}" for i in range(25)]
    await queue.enqueue_hosts(None, hosts, type="health", action="check")
    results = await asyncio.gather(*(dispatcher.wait(host, 5) for host in hosts))
    running.cancel()
    assert all(len(t) == 1 for t in results)
    assert [rows for name, rows in queue.calls if name == "claim_hosts"] == [10, 10, 5]


async def test_a_host_gets_its_tasks_most_urgent_first_in_one_answer(
    queue: MemoryQueue, dispatcher: Dispatcher
) -> None:
    for priority in (0, 5, 1):
        await queue.enqueue("h1", type="health", action="check", priority=priority)
    assert [t["priority"] for t in await dispatcher.wait("h1", 1)] == [5, 1, 0]


async def test_interval_mode_claims_again_every_interval(queue: MemoryQueue) -> None:
    dispatcher = Dispatcher(queue, wakeup="interval", interval=0.01)  # type: ignore[arg-type]
    poll = asyncio.create_task(dispatcher.wait("h1", 5))
    await until(lambda: queue.count("claim_hosts") >= 2)  # nothing there: it asks again, unprompted
    assert len(dispatcher) == 1
    queue.listeners.clear()
    await queue.enqueue("h1", type="health", action="check")  # no NOTIFY needed
    assert len(await poll) == 1
    assert dispatcher.claims == queue.count("claim_hosts") and len(dispatcher) == 0
    assert await dispatcher.wait("h1", 0.03) == []


async def test_a_cancelled_poll_leaves_no_waiter(queue: MemoryQueue, dispatcher: Dispatcher) -> None:
    poll = asyncio.create_task(dispatcher.wait("h1", 5))
    await until(lambda: len(dispatcher) == 1 and queue.count("claim_hosts") == 1)
    poll.cancel()
    await asyncio.gather(poll, return_exceptions=True)
    assert len(dispatcher) == 0 and not dispatcher._waiting
    await queue.enqueue("h1", type="health", action="check")
    await asyncio.sleep(0.01)
    assert queue.count("claim_hosts") == 1  # a wake-up for a host nobody waits for costs nothing


async def test_tasks_claimed_for_a_poll_that_gave_up_go_back_to_the_queue(
    queue: MemoryQueue, dispatcher: Dispatcher
) -> None:
    row = await queue.enqueue("h1", type="health", action="check")
    queue.open.clear()  # the claim is slow: the poll times out while it runs
    assert await dispatcher.wait("h1", 0.02) == []
    queue.open.set()
    await until(lambda: queue.count("release") == 1)
    await until(lambda: queue.tasks[str(row["id"])]["status"] == "pending")
    assert queue.tasks[str(row["id"])]["attempts"] == 0
    assert len(await dispatcher.wait("h1", 1)) == 1  # the release's NOTIFY made the host dirty


async def test_a_wake_up_during_a_claim_is_not_lost(queue: MemoryQueue, dispatcher: Dispatcher) -> None:
    queue.open.clear()
    poll = asyncio.create_task(dispatcher.wait("h1", 5))
    await until(lambda: queue.count("claim_hosts") == 1)
    await queue.enqueue("h1", type="health", action="check")  # NOTIFY while the first claim runs
    queue.open.set()
    assert len(await poll) == 1


async def test_a_failed_claim_is_retried_and_the_poll_keeps_waiting(
    queue: MemoryQueue, dispatcher: Dispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("control_plane.dispatch.random.uniform", lambda a, b: 0.01)  # retry at once
    await queue.enqueue("h1", type="health", action="check")
    queue.failure = Unavailable("the database is unavailable: gone")
    assert len(await dispatcher.wait("h1", 2)) == 1
    assert queue.count("claim_hosts") == 2


async def test_a_host_holds_at_most_per_host_polls(queue: MemoryQueue) -> None:
    dispatcher = Dispatcher(queue, per_host=2)  # type: ignore[arg-type]
    held = [asyncio.create_task(dispatcher.wait("h1", 5)) for _ in range(2)]
    await until(lambda: len(dispatcher) == 2)
    with pytest.raises(TooManyRequests, match="already has 2 long polls waiting"):
        await dispatcher.wait("h1", 5)
    assert await dispatcher.wait("h2", 0.01) == []  # another host is not affected
    held[0].cancel()
    await asyncio.gather(held[0], return_exceptions=True)
    # One answered (here: cancelled), the host may poll again.
    again = asyncio.create_task(dispatcher.wait("h1", 0.05))
    assert await again == []
    held[1].cancel()
    await asyncio.gather(held[1], return_exceptions=True)
    assert not dispatcher._held
