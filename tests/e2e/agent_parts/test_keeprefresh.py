"""agent.keeprefresh: the refresher's per-collection observation, against a local exporter over HTTP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from aiohttp import web

from agent.keeprefresh import KeepListRefresher
from phoenix_common import wire
from tests.support import serving

CPU = "process_cpu_time_seconds_total"


def _point(name: str, pid: int, seconds: float, ms: int) -> str:
    return f'{CPU}{{process_executable_name="{name}",process_pid="{pid}",state="user"}} {seconds} {ms}\n'


async def _with_refresher(
    tmp_path: Path,
    metrics: Callable[[web.Request], Awaitable[web.Response]],
    run: Callable[[KeepListRefresher], Awaitable[None]],
    coverage_target: float | None = None,
) -> KeepListRefresher:
    """A refresher of a live intelligent keep list observing `metrics` (collections a second apart)."""
    app = web.Application()
    app.router.add_get("/metrics", metrics)
    async with serving(app) as port, aiohttp.ClientSession() as session:
        refresher = KeepListRefresher(
            None,  # type: ignore[arg-type] - a live keep list never reloads the collector
            session,
            variant="candidate",
            pipeline="process-intelligent-v1",
            spec=wire.KeepList(
                path=str(tmp_path / "keep.json"),
                strategy="intelligent",
                k=5,
                live=True,
                coverage_target=coverage_target,
            ),
            keep_path=tmp_path / "keep.json",
            observe_endpoint=f"127.0.0.1:{port}",
            period=5.0,
            min_hold_seconds=5.0,
            collection_interval=1.0,
        )
        await run(refresher)
    return refresher


async def test_two_observations_of_one_collection_count_its_cpu_once(tmp_path: Path) -> None:
    served = [_point("job", 7, 1.0, 1_000_000), _point("job", 7, 2.0, 1_001_000)]
    served.append(served[-1])

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=served.pop(0) if len(served) > 1 else served[0])

    async def observe_three_times(refresher: KeepListRefresher) -> None:
        for _ in range(3):  # the third read finds no new collection
            await refresher._observe()

    refresher = await _with_refresher(tmp_path, metrics, observe_three_times)
    assert refresher._cpu_seconds == {"job": 1.0} and refresher._seconds == 1.0


async def test_the_first_ranking_sees_a_process_started_after_its_first_observation(tmp_path: Path) -> None:
    """An experiment's load starts as the refresher primes: its processes are in the first ranking."""
    calls = 0

    async def metrics(_: web.Request) -> web.Response:
        # One collection a read, a second apart; "svc" starts after the first and burns half a core.
        nonlocal calls
        calls += 1
        ms = 1_000_000 + 1_000 * calls
        text = _point("idle", 3, 0.001 * calls, ms)
        if calls > 1:
            text += _point("svc", 9, 0.5 * calls, ms)
        return web.Response(text=text)

    async def prime(refresher: KeepListRefresher) -> None:
        await refresher.prime()

    refresher = await _with_refresher(tmp_path, metrics, prime, coverage_target=90)
    assert "svc" in refresher.current
