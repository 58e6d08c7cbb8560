"""Loopback without tokens is no open door to the pages a user opens (both services, real processes).

DNS rebinding (a page whose own name resolves to 127.0.0.1, so its requests carry that name in Host) and
cross-site writes (a form or a bodiless fetch POST from another origin) are refused with 403 problems;
the CLI's and curl's requests (loopback Host, no Origin) and the dashboard's (same origin) go through.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support import http_json
from tests.support.security import assert_problem
from tests.support.services import Service, Stack, start_api

REBOUND = "attacker.example"


def test_a_rebound_host_name_is_refused_by_both_services(stack: Stack) -> None:
    for service in (stack.api, stack.generator):
        port = service.port
        for path in ("/health", "/api/v1/templates"):
            url = f"{service.url}{path}"
            assert_problem(*http_json("GET", url, headers={"Host": f"{REBOUND}:{port}"}), 403, "Host")
            assert_problem(*http_json("GET", url, headers={"Host": f"127.evil.example:{port}"}), 403, "Host")
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost"):
                status, body, _ = http_json("GET", url, headers={"Host": host})
                assert status == 200, (host, body)


async def test_a_rebound_page_cannot_open_the_websocket(stack: Stack) -> None:
    url = stack.api.url.replace("http://", "ws://") + "/api/v1/ws"
    rebound = f"{REBOUND}:{stack.api.port}"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url, headers={"Host": rebound, "Origin": f"http://{rebound}"})
    assert refused.value.status == 403


def test_a_write_from_another_origin_is_refused_and_the_cli_s_is_not(stack: Stack) -> None:
    api = stack.api.url
    body = {"type": "health", "host_id": "vm-1"}
    # A cross-site form post and a bodiless one (what promote, start, stop and token issue take).
    for origin in ("http://attacker.example", "null"):
        assert_problem(*http_json("POST", f"{api}/api/v1/tasks", body, {"Origin": origin}), 403, "Origin")
        status, problem, _ = http_json("POST", f"{api}/api/v1/agents/vm-1/token", None, {"Origin": origin})
        assert status == 403 and problem["field"] == "Origin", problem
    # The CLI and curl send no Origin; the dashboard is the API's own origin.
    for headers in ({}, {"Origin": api}):
        status, answer, _ = http_json("POST", f"{api}/api/v1/agents/vm-1/token", None, headers)
        assert status == 201, answer


@pytest.fixture
def named_api(database_url: str, tmp_path: Path) -> Iterator[Service]:
    service = start_api(
        database_url, tmp_path, env={"PHOENIX_ALLOWED_HOSTS": "phoenix.internal, Phoenix.Example"}
    )
    yield service
    service.stop()


def test_allowed_hosts_admits_the_names_listed(named_api: Service) -> None:
    for host in ("phoenix.internal", f"phoenix.example:{named_api.port}", f"127.0.0.1:{named_api.port}"):
        status, body, _ = http_json("GET", f"{named_api.url}/health", headers={"Host": host})
        assert status == 200, (host, body)
    assert_problem(*http_json("GET", f"{named_api.url}/health", headers={"Host": REBOUND}), 403, "Host")
