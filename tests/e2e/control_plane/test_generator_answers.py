"""What the API answers when the config generator's answer is not one (a real API, and at its
generator_url a real HTTP server that answers like a misconfigured proxy would)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from tests.support import http_json, serving
from tests.support.queue_api import heartbeat
from tests.support.security import assert_problem
from tests.support.services import start_api


async def test_a_generator_answer_that_is_not_json_is_a_502(database_url: str, tmp_path: Path) -> None:
    async def html(_: web.Request) -> web.Response:
        return web.Response(text="<html>502 from a proxy</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", html)
    async with serving(app) as port:
        api = start_api(database_url, tmp_path, generator_url=f"http://127.0.0.1:{port}")
        try:
            heartbeat(api, "vm-1")
            body = {"name": "d", "namespace": "default", "template": "process-baseline-v1"}
            answer = await asyncio.to_thread(
                http_json, "POST", f"{api.url}/api/v1/pipeline-deployments", body
            )
            assert_problem(*answer, 502)
            assert "not JSON" in answer[1]["detail"], answer[1]
        finally:
            api.stop()


def test_a_limit_in_other_digits_is_a_400(database_url: str, tmp_path: Path) -> None:
    api = start_api(database_url, tmp_path)
    try:
        for limit in ("%C2%B2", "%D9%A3", "1e3", "-1", "0"):
            status, body, headers = http_json("GET", f"{api.url}/api/v1/agents?limit={limit}")
            assert_problem(status, body, headers, 400)
            assert "'limit'" in body["detail"], body
    finally:
        api.stop()
