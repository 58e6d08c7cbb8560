"""agent.keeprefresh: the refresher's per-collection observation, against a local exporter over HTTP."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp import web

from agent.keeprefresh import KeepListRefresher
from phoenix_common import wire
from tests.support import serving

CPU = "process_cpu_time_seconds_total"


def _exposition(ms: int, seconds: float) -> str:
    return f'{CPU}{{process_executable_name="job",process_pid="7",state="user"}} {seconds} {ms}\n'


async def test_two_observations_of_one_collection_count_its_cpu_once(tmp_path: Path) -> None:
    served = [_exposition(1_000_000, 1.0), _exposition(1_002_000, 2.0), _exposition(1_002_000, 2.0)]

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=served.pop(0) if len(served) > 1 else served[0])

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    async with serving(app) as port, aiohttp.ClientSession() as session:
        refresher = KeepListRefresher(
            None,  # type: ignore[arg-type] - a live keep list never reloads the collector
            session,
            variant="candidate",
            pipeline="process-intelligent-v1",
            spec=wire.KeepList(path=str(tmp_path / "keep.json"), strategy="intelligent", k=5, live=True),
            keep_path=tmp_path / "keep.json",
            observe_endpoint=f"127.0.0.1:{port}",
            period=8.0,
            min_hold_seconds=8.0,
            collection_interval=2.0,
        )
        for _ in range(3):  # the third read finds no new collection
            await refresher._observe()
    assert refresher._cpu_seconds == {"job": 1.0} and refresher._seconds == 2.0
