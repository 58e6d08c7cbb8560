"""GET /api/v1/ws: live events for the topics a client subscribes to."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from control_plane import keys
from control_plane.jsonutil import dumps

log = structlog.get_logger("phoenix.ws")
routes = web.RouteTableDef()
SOCKETS = web.AppKey("websockets", set[web.WebSocketResponse])
TOPICS = ("agents", "tasks", "experiments", "deployments")
SEND_TIMEOUT = 2.0


def _parse_subscription(data: str) -> set[str]:
    """Topics from {"subscribe": [...]}; an experiment, deployment or host id is a topic of its own."""
    message = json.loads(data)
    if not isinstance(message, dict) or not isinstance(message.get("subscribe"), list):
        raise ValueError('send {"subscribe": ["experiments", "<experiment id>", ...]}')
    topics = message["subscribe"]
    if not topics or not all(isinstance(t, str) and 0 < len(t) <= 200 for t in topics):
        raise ValueError("subscribe must list 1 or more topic names")
    return set(topics)


@routes.get("/api/v1/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=64 * 1024)
    await ws.prepare(request)
    sockets = request.app[SOCKETS]
    sockets.add(ws)
    hub = request.app[keys.HUB]
    initial = request.query.get("topics")
    sub = hub.subscribe(set(initial.split(",")) if initial else set())
    sender = asyncio.create_task(_pump(ws, sub))
    try:
        async for msg in ws:
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
