"""agent.loops.supervised: a loop that fails or returns runs again, with a backoff; cancelling ends it."""

from __future__ import annotations

import asyncio

import pytest

from agent.loops import supervised


async def test_a_loop_that_raises_or_returns_runs_again_until_cancelled() -> None:
    runs: list[int] = []
    third = asyncio.Event()

    async def body() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise RuntimeError("an unexpected error")
        if len(runs) == 2:
            return  # a loop that ends by itself is a bug too
        third.set()
        await asyncio.Event().wait()  # healthy from now on

    task = asyncio.create_task(supervised("test", body, first=0.01, cap=0.02))
    await asyncio.wait_for(third.wait(), timeout=10)
    assert runs == [0, 1, 2]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancelling_during_the_backoff_ends_it() -> None:
    failed = asyncio.Event()

    async def body() -> None:
        failed.set()
        raise ValueError("bad")

    task = asyncio.create_task(supervised("test", body, first=30, cap=60))
    await asyncio.wait_for(failed.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
