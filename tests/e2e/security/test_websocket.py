"""The WebSocket: the operator token (header or ?token=), the Origin check and the frame size limit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support import eventually, http_json
from tests.support.security import OPERATOR, assert_problem, operator
from tests.support.services import Service, start_api

MAX_FRAME = 4096
MAX_SOCKETS = 3
ALLOWED = "https://dash.example.com:8443"


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Service]:
    service = start_api(
        database_url,
        tmp_path,
        env={
            "PHOENIX_API_TOKEN": OPERATOR,
            "PHOENIX_WS_MAX_MESSAGE_BYTES": str(MAX_FRAME),
            "PHOENIX_WS_MAX_PER_CLIENT": str(MAX_SOCKETS),
            "PHOENIX_ALLOWED_ORIGINS": f"{ALLOWED}, http://other.example.com",
        },
    )
    yield service
    service.stop()


def ws_url(api: Service, query: str = "") -> str:
    return api.url.replace("http://", "ws://") + "/api/v1/ws" + query


async def handshake(url: str, headers: dict[str, str] | None = None) -> int:
    """The handshake's status: 101 when the socket opened (and a subscription answers), else the refusal."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, headers=headers or {}) as ws:
                await ws.send_json({"subscribe": ["agents"]})
                reply = await ws.receive_json(timeout=10)
                assert reply == {"type": "subscribed", "topics": ["agents"]}
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


async def test_the_websocket_needs_the_operator_token(api: Service) -> None:
    assert await handshake(ws_url(api)) == 401
    assert await handshake(ws_url(api, "?token=wrong")) == 401
    assert await handshake(ws_url(api), {"Authorization": "Bearer wrong"}) == 401
    # The dashboard's way (browsers cannot set headers on a WebSocket) and the CLI's way.
    assert await handshake(ws_url(api, f"?token={OPERATOR}")) == 101
    assert await handshake(ws_url(api), operator()) == 101
    # ?token= is taken on the WebSocket only: everywhere else a token in a URL would end up in logs.
    assert_problem(*http_json("GET", f"{api.url}/api/v1/agents?token={OPERATOR}"), 401)


async def test_origin_must_be_the_apis_own_or_allowed(api: Service) -> None:
    query = f"?token={OPERATOR}"
    port = api.port
    # No Origin (CLI, scripts), and the API's own host and port (in either scheme: a proxy may end TLS).
    assert await handshake(ws_url(api, query)) == 101
    assert await handshake(ws_url(api, query), {"Origin": f"http://127.0.0.1:{port}"}) == 101
    assert await handshake(ws_url(api, query), {"Origin": f"HTTP://127.0.0.1:{port}/"}) == 101
    assert await handshake(ws_url(api, query), {"Origin": ALLOWED}) == 101
    assert await handshake(ws_url(api, query), {"Origin": "http://other.example.com:80"}) == 101
    for origin in (
        "http://evil.example.com",
        f"http://evil.example.com:{port}",
        f"http://127.0.0.1:{port + 1}",
        "https://dash.example.com",  # the allowed origin is on port 8443 only
        "null",
        f"http://127.0.0.1:{port}/path",
        "not a url",
    ):
        assert await handshake(ws_url(api, query), {"Origin": origin}) == 403, origin
    # Refused before the upgrade, as a problem that names the header.
    status, body, headers = http_json(
        "GET",
        f"{api.url}/api/v1/ws{query}",
        headers={"Origin": "http://evil.example.com", "Connection": "Upgrade", "Upgrade": "websocket"},
    )
    assert_problem(status, body, headers, 403, "Origin")


async def test_an_oversized_frame_closes_the_socket_with_1009_and_the_server_stays_up(api: Service) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(api), headers=operator()) as ws:
            await ws.send_str('{"subscribe": ["' + "x" * MAX_FRAME + '"]}')
            message = await ws.receive(timeout=10)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message
            assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        # Just under the limit is a normal frame.
        async with session.ws_connect(ws_url(api), headers=operator()) as ws:
            await ws.send_str('{"subscribe": ["' + "y" * (MAX_FRAME - 100) + '"]}')
            reply = await ws.receive_json(timeout=10)
            assert reply["type"] == "error"  # a topic name over 200 characters, refused in words
    assert http_json("GET", f"{api.url}/health")[0] == 200
    assert await handshake(ws_url(api), operator()) == 101
    log = api.process.log_path.read_text()
    assert "unhandled_error" not in log and "Traceback" not in log


async def test_one_client_opens_at_most_ws_max_per_client_sockets(api: Service) -> None:
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(ws_url(api), headers=operator()) for _ in range(MAX_SOCKETS)]
        for ws in sockets:
            await ws.send_json({"subscribe": ["agents"]})
            assert (await ws.receive_json(timeout=10))["type"] == "subscribed"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(ws_url(api), headers=operator())
        assert refused.value.status == 429
        await sockets.pop().close()

        # Closed on the server once its close handshake is done: then a new one opens.
        async def opens() -> bool:
            return await handshake(ws_url(api), operator()) == 101

        await eventually(opens, 10, what="the closed socket to be released")
        for ws in sockets:
            await ws.close()
    assert http_json("GET", f"{api.url}/health")[0] == 200
