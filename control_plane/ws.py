"""GET /api/v1/ws: live events for the topics a client subscribes to."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import structlog
from aiohttp import WSMsgType, web
from yarl import URL

from control_plane import keys
from control_plane.jsonutil import dumps
from phoenix_common.problems import Forbidden, TooManyRequests

log = structlog.get_logger("phoenix.ws")
routes = web.RouteTableDef()
SOCKETS = web.AppKey("websockets", set[web.WebSocketResponse])
TOPICS = ("agents", "tasks", "experiments", "deployments")
SEND_TIMEOUT = 2.0
# The client address a socket was opened from (on the response, for ws_max_per_client).
CLIENT = "phoenix_client"


def _parse_subscription(data: str) -> set[str]:
    """Topics from {"subscribe": [...]}; an experiment, deployment or host id is a topic of its own."""
    message = json.loads(data)
    if not isinstance(message, dict) or not isinstance(message.get("subscribe"), list):
        raise ValueError('send {"subscribe": ["experiments", "<experiment id>", ...]}')
    topics = message["subscribe"]
    if not topics or not all(isinstance(t, str) and 0 < len(t) <= 200 for t in topics):
        raise ValueError("subscribe must list 1 or more topic names")
    return set(topics)


def _origin(value: str) -> tuple[str, str, int | None] | None:
    """(scheme, host, port) of an http(s) origin; None for anything else ("null", a path, garbage)."""
    try:
        url = URL(value)
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not url.host or url.path not in ("", "/"):
        return None
    if url.query_string or url.fragment or url.user is not None:
        return None
    return url.scheme, url.host.lower(), url.port


def check_origin(request: web.Request) -> None:
    """Refuse a page of another origin (cross-site WebSocket hijacking) before the upgrade.

    No Origin header means a non-browser client (the CLI, curl) and is allowed. A browser's Origin must
    name the host and port the request was sent to, or be one of `allowed_origins`.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return
    parsed = _origin(origin)
    if parsed is not None:
        if parsed == _origin(f"{parsed[0]}://{request.host}"):
            return
        if parsed in {_origin(a) for a in request.app[keys.SETTINGS].allowed_origins}:
            return
    log.warning("ws_origin_refused", origin=origin[:200])
    raise Forbidden(
        f"WebSocket connections from origin {origin[:200]!r} are not allowed; "
        "add it to allowed_origins (PHOENIX_ALLOWED_ORIGINS) if it is yours",
        field="Origin",
    )


@routes.get("/api/v1/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    check_origin(request)
    settings = request.app[keys.SETTINGS]
    sockets = request.app[SOCKETS]
    client = request.remote or ""
    mine = sum(1 for s in sockets if s.get(CLIENT) == client)
    if mine >= settings.ws_max_per_client:
        raise TooManyRequests(
            f"{mine} WebSockets are open from {client} already (ws_max_per_client); close one first"
        )
    max_size = settings.ws_max_message_bytes
    # A frame over the limit closes the socket with 1009 (message too big); the server reads no further.
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=max_size)
    ws[CLIENT] = client
    await ws.prepare(request)
    sockets.add(ws)
    hub = request.app[keys.HUB]
    initial = request.query.get("topics")
    sub = hub.subscribe(set(initial.split(",")) if initial else set())
    sender = asyncio.create_task(_pump(ws, sub))
    try:
        async for msg in ws:
            if msg.type == WSMsgType.ERROR:
                # aiohttp has closed the socket already (1009 for an oversized frame).
                log.info("ws_closed_on_error", code=ws.close_code, error=str(msg.data)[:200])
                break
            if msg.type != WSMsgType.TEXT:
                await ws.send_str(dumps({"type": "error", "detail": "send JSON text frames"}))
                continue
            try:
                sub.topics = _parse_subscription(msg.data)
            except (ValueError, json.JSONDecodeError) as exc:
                await ws.send_str(dumps({"type": "error", "detail": str(exc)}))
                continue
            await ws.send_str(dumps({"type": "subscribed", "topics": sorted(sub.topics)}))
    finally:
        sockets.discard(ws)
        hub.unsubscribe(sub)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    return ws


async def _pump(ws: web.WebSocketResponse, sub: Any) -> None:
    """Forward events; a client too slow to take them is closed rather than slowing anyone else."""
    while not ws.closed:
        event = await sub.queue.get()
        try:
            await asyncio.wait_for(ws.send_str(dumps({"type": "event", **event})), timeout=SEND_TIMEOUT)
        except (TimeoutError, ConnectionResetError):
            log.warning("ws_client_dropped", reason="slow or gone")
            await ws.close(code=1013, message=b"too slow")
            return
        if sub.dropped:
            await ws.close(code=1013, message=b"too slow")
            return


async def close_all(app: web.Application) -> None:
    """On shutdown, close open sockets at once instead of waiting out their heartbeats."""
    for ws in list(app.get(SOCKETS, ())):
        await ws.close(code=1001, message=b"server shutdown")
