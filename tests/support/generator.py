"""The config generator as a subprocess, and a stand-in control plane it reads experiments from."""

from __future__ import annotations

import asyncio
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support import ServiceProcess, free_port

API_TOKEN = "test-token-" + secrets.token_hex(8)


@dataclass
class Service:
    """A running generator subprocess and its base URL."""

    url: str
    process: ServiceProcess

    def stop(self) -> int | None:
        return self.process.stop()


class ControlPlaneStandIn:
    """A real aiohttp server answering GET /api/v1/experiments/{id} the way the control plane does.

    It stands in for the control plane's HTTP answer only (404 problem for an unknown experiment,
    the experiment JSON otherwise), so the generator's client is exercised over real HTTP without a
    database. It runs its own event loop in a thread, so synchronous tests can use it.
    """

    def __init__(self) -> None:
        self.experiments: dict[str, dict[str, Any]] = {}
        self.authorization: list[str | None] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="control-plane-stand-in", daemon=True)

    async def _experiment(self, request: web.Request) -> web.Response:
        self.authorization.append(request.headers.get("Authorization"))
        experiment = self.experiments.get(request.match_info["id"])
        if experiment is None:
            return web.json_response(
                {"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no such experiment"},
                status=404,
                content_type="application/problem+json",
            )
        return web.json_response(experiment)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v1/experiments/{id}", self._experiment)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def start(self) -> ControlPlaneStandIn:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the control-plane stand-in did not start")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def start_generator(tmp_path: Path, env: dict[str, str], args: list[str] | None = None) -> Service:
    """`python -m config_generator` on a free loopback port, healthy before it is returned."""
    port = free_port()
    proc = ServiceProcess(
        "config_generator",
        {"PHOENIX_GENERATOR_PORT": str(port), "PHOENIX_GENERATOR_LOG_LEVEL": "info", **env},
        tmp_path / f"generator-{port}.log",
        args=args,
        health_url=f"http://127.0.0.1:{port}/health",
    )
    return Service(f"http://127.0.0.1:{port}", proc.start())
