"""Who is calling: operators with the API token, agents with their own host-bound token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from control_plane import keys, names
from control_plane.settings import Settings
from phoenix_common.problems import Problem, Unauthorized
from phoenix_common.tokens import bearer, same_token, token_hash

HOST_HEADER = "X-Agent-Host-ID"
AGENT_TOKEN_HEADER = "X-Phoenix-Agent-Token"
OPEN_PATHS = ("/health", "/metrics", "/api/v1/openapi.json")
# Browsers cannot set headers on a WebSocket handshake: only there may the API token come as ?token=.
WS_PATH = "/api/v1/ws"
HOST_ID_KEY = web.RequestKey("host_id", str)
NEW_HOST_TOKEN_KEY = web.RequestKey("new_host_token", str)

__all__ = ["AGENT_TOKEN_HEADER", "HOST_HEADER", "agent_tokens_required", "auth_middleware", "token_hash"]


def agent_tokens_required(settings: Settings) -> bool:
    """Whether agent endpoints need a per-host token: with an enrolment token, or when told to."""
    return settings.agent_tokens_on()


def _enrolment(settings: Settings, presented: str) -> tuple[str | None, str | None]:
    """The enrolment token `presented` is, if any, and the namespace it binds to (None: unscoped).
    Every configured token is compared, in constant time."""
    found: tuple[str | None, str | None] = (None, None)
    for token, namespace in settings.scoped_enrolment().items():
        if same_token(presented, token):
            found = (token, namespace)
    if settings.agent_token and same_token(presented, settings.agent_token):
        found = (settings.agent_token, None)
    return found


def host_id_of(request: web.Request) -> str:
    """The calling agent's host id, validated."""
    host_id = request.headers.get(HOST_HEADER)
    if not host_id:
        raise Problem(f"header {HOST_HEADER} is required on agent endpoints", field=HOST_HEADER)
    return names.check_host_id(host_id, f"header {HOST_HEADER}", HOST_HEADER)


async def _authorize_agent(request: web.Request) -> None:
    settings = request.app[keys.SETTINGS]
    host_id = host_id_of(request)
    request[HOST_ID_KEY] = host_id
    if not agent_tokens_required(settings):
        return
    presented = bearer(request)
    if not presented:
        raise Unauthorized(
            "an agent token is required: send Authorization: Bearer <token>", field="Authorization"
        )
    enrolment, namespace = _enrolment(settings, presented)
    own = await request.app[keys.TOKENS].verify(host_id, presented, enrolment or settings.agent_token)
    if own:
        if namespace is not None:
            # A scoped enrolment token binds the host it enrols to its namespace, as an operator would.
            await request.app[keys.AGENTS].bind(host_id, namespace)
        request[NEW_HOST_TOKEN_KEY] = own


def _authorize_operator(request: web.Request) -> None:
    token = request.app[keys.SETTINGS].api_token
    if not token:
        return
    presented = bearer(request)
    if presented is None and request.path == WS_PATH:
        presented = request.query.get("token")
    if not presented or not same_token(presented, token):
        raise Unauthorized("an API token is required: send Authorization: Bearer <token>")


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    # Decide by the route that matched, not the raw path, so that no spelling of a path (`..`, `%2F`)
    # can reach an endpoint under the other rules; unmatched paths fall back to the path itself.
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else request.path
    if path.startswith("/api/v1/agent/"):
        await _authorize_agent(request)
        response = await handler(request)
        own = request.get(NEW_HOST_TOKEN_KEY)
        if own:
            # The agent keeps this and uses it from now on; it is never logged.
            response.headers[AGENT_TOKEN_HEADER] = own
        return response
    if path.startswith("/api/v1/") and path not in OPEN_PATHS:
        _authorize_operator(request)
    return await handler(request)
