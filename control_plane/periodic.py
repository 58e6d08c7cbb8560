"""The API's background loops share one shape: a pass about every N seconds, until cancelled."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("phoenix.periodic")


async def every(
    seconds: float,
    what: str,
    run_pass: Callable[[], Awaitable[object]],
    done: Callable[[], None] | None = None,
) -> None:
    """Run `run_pass` about every `seconds` (jittered ±20 %, so replicas drift apart) until cancelled.
    A pass that fails is logged as `<what>_error` and the next one tries again; `done` is called after
    each pass that completed (a counter of passes, say)."""
    while True:
        try:
            await run_pass()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(f"{what}_error", error=f"{type(exc).__name__}: {exc}")
        else:
            if done is not None:
                done()
        await asyncio.sleep(seconds * random.uniform(0.8, 1.2))
