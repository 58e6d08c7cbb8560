"""What the API answers when the config generator's answer is not one (a real API, and at its
generator_url a real HTTP server that answers like a misconfigured proxy would)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support import http_json, serving
from tests.support.queue_api import heartbeat
from tests.support.security import assert_problem
from tests.support.services import start_api


async def deploy_through(
    answer: Callable[[web.Request], Awaitable[web.Response]], database_url: str, tmp_path: Path
) -> tuple[int, Any, Any, Any]:
    """Create a deployment on a real API whose generator_url is a server answering with `answer`:
    the creation's (status, body, headers) and then the deployments listed."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    async with serving(app) as port:
        api = start_api(database_url, tmp_path, generator_url=f"http://127.0.0.1:{port}")
        try:
            heartbeat(api, "vm-1")
            body = {"name": "d", "namespace": "default", "template": "process-baseline-v1"}
            status, reply, headers = await asyncio.to_thread(
                http_json, "POST", f"{api.url}/api/v1/pipeline-deployments", body
            )
            listed = await asyncio.to_thread(http_json, "GET", f"{api.url}/api/v1/pipeline-deployments")
            return status, reply, headers, listed[1]
        finally:
            api.stop()


async def test_a_generator_answer_that_is_not_json_is_a_502(database_url: str, tmp_path: Path) -> None:
    async def html(_: web.Request) -> web.Response:
        return web.Response(text="<html>502 from a proxy</html>", content_type="text/html")

    status, body, headers, _ = await deploy_through(html, database_url, tmp_path)
    assert_problem(status, body, headers, 502)
    assert "not JSON" in body["detail"], body


def test_a_limit_in_other_digits_is_a_400(database_url: str, tmp_path: Path) -> None:
    api = start_api(database_url, tmp_path)
    try:
        for limit in ("%C2%B2", "%D9%A3", "1e3", "-1", "0"):
            status, body, headers = http_json("GET", f"{api.url}/api/v1/agents?limit={limit}")
            assert_problem(status, body, headers, 400)
            assert "'limit'" in body["detail"], body
    finally:
        api.stop()


async def test_a_config_whose_hash_is_not_its_sha256_is_refused_and_nothing_is_queued(
    database_url: str, tmp_path: Path
) -> None:
    """An impersonated generator relays a config with another config's hash: the API refuses it (502)
    rather than queueing a task every agent would refuse."""

    async def forged(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "template": "process-baseline-v1",
                "variant": "baseline",
                "config_yaml": "receivers: {}\n",
                "config_hash": "0" * 64,
                "prometheus_endpoint": "127.0.0.1:8888",
            }
        )

    status, body, headers, listed = await deploy_through(forged, database_url, tmp_path)
    assert_problem(status, body, headers, 502)
    assert "is not its sha256" in body["detail"], body
    assert not listed["deployments"], listed
