"""Who is calling: operators with the API token, agents with their own host-bound token."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable

from aiohttp import web

from control_plane import keys
from phoenix_common.problems import Forbidden, Problem, Unauthorized

HOST_HEADER = "X-Agent-Host-ID"
AGENT_TOKEN_HEADER = "X-Phoenix-Agent-Token"
_HOST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$")
OPEN_PATHS = ("/health", "/metrics", "/api/v1/openapi.json")
HOST_ID_KEY = web.RequestKey("host_id", str)
NEW_HOST_TOKEN_KEY = web.RequestKey("new_host_token", str)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def host_id_of(request: web.Request) -> str:
    """The calling agent's host id, validated."""
    host_id = request.headers.get(HOST_HEADER)
    if not host_id:
        raise Problem(f"header {HOST_HEADER} is required on agent endpoints", field=HOST_HEADER)
    if not _HOST_ID.match(host_id):
        raise Problem(
            f"header {HOST_HEADER} must be 1-253 characters of letters, digits, '.', '_', ':' or '-'",
            field=HOST_HEADER,
        )
    return host_id


async def _authorize_agent(request: web.Request) -> None:
    settings = request.app[keys.SETTINGS]
    host_id = host_id_of(request)
    request[HOST_ID_KEY] = host_id
    if not settings.agent_token:
        return
    presented = _bearer(request)
    if not presented:
        raise Unauthorized("an agent token is required: send Authorization: Bearer <token>")
    db = request.app[keys.DB]
    row = await db.fetch_one("agent_token_hash", {"host_id": host_id})
    bound = row["token_hash"] if row else None
    if bound:
        if hmac.compare_digest(bound, token_hash(presented)):
            return
        raise Forbidden(f"this token cannot act as host {host_id}")
    # An unbound host enrols with the shared enrolment token and gets a token of its own.
    if not hmac.compare_digest(presented, settings.agent_token):
        raise Unauthorized("the agent token is not valid")
    own = secrets.token_urlsafe(32)
    bound_now = await db.fetch_one("bind_agent_token", {"host_id": host_id, "token_hash": token_hash(own)})
    if bound_now is None:
        raise Forbidden(f"host {host_id} is bound to its own token; the enrolment token cannot act as it")
    request[NEW_HOST_TOKEN_KEY] = own


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    path = request.path
    if path.startswith("/api/v1/agent/"):
        await _authorize_agent(request)
        response = await handler(request)
        own = request.get(NEW_HOST_TOKEN_KEY)
        if own:
            # The agent keeps this and uses it from now on; it is never logged.
            response.headers[AGENT_TOKEN_HEADER] = own
        return response
    if path.startswith("/api/v1/") and path not in OPEN_PATHS:
        token = request.app[keys.SETTINGS].api_token
        if token:
            presented = _bearer(request) or request.query.get("token")
            if not presented or not hmac.compare_digest(presented, token):
                raise Unauthorized("an API token is required: send Authorization: Bearer <token>")
    return await handler(request)
