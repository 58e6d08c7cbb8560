"""The agent's background loops, kept alive: an unexpected error is logged and the loop starts again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from agent.timing import jittered

log = structlog.get_logger("phoenix.agent.loops")

# A loop that ran this long before failing starts again at once-ish (its backoff is reset).
HEALTHY_SECONDS = 60.0


async def supervised(
    name: str, body: Callable[[], Awaitable[None]], *, first: float = 1.0, cap: float = 60.0
) -> None:
    """Run `body` until cancelled. Loops never end by themselves: when one raises (a bug, a surprise
    from a library) or returns, it is logged and run again after a backoff that doubles from `first`
    to `cap` while failures come quickly, so one bad input cannot stop heartbeats or polling."""
    delay = first
    while True:
        started = time.monotonic()
        try:
            await body()
            error = "returned"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        if time.monotonic() - started >= HEALTHY_SECONDS:
            delay = first
        log.error("agent_loop_restarting", loop=name, error=error, after_seconds=round(delay, 1))
        await asyncio.sleep(jittered(delay))
        delay = min(cap, delay * 2)
