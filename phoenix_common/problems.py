"""RFC 9457 problem responses and the one error middleware each service installs."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

PROBLEM_TYPE = "application/problem+json"
log = structlog.get_logger("phoenix.http")


class Problem(Exception):
    """An error a client caused or can act on; rendered as application/problem+json."""

    status = 400
    title = "Bad Request"

    def __init__(self, detail: str, *, status: int | None = None, title: str | None = None, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if title is not None:
            self.title = title
        self.extra = extra


class NotFound(Problem):
    status = 404
    title = "Not Found"


class Conflict(Problem):
    status = 409
    title = "Conflict"


class Unauthorized(Problem):
    status = 401
    title = "Unauthorized"


class Forbidden(Problem):
    status = 403
    title = "Forbidden"


class BadGateway(Problem):
    status = 502
    title = "Bad Gateway"


class Unavailable(Problem):
    status = 503
    title = "Service Unavailable"


def problem_response(status: int, title: str, detail: str, instance: str = "", **extra: Any) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_TYPE)


@web.middleware
async def problem_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Turn Phoenix problems, aiohttp HTTP errors and unexpected errors into problem+json."""
    try:
        return await handler(request)
    except Problem as exc:
        return problem_response(exc.status, exc.title, exc.detail, request.path, **exc.extra)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = exc.text or exc.reason
        if exc.status == 413:
            detail = f"request body is larger than the limit of {request.app._client_max_size} bytes"
        elif exc.status == 405:
            detail = f"method {request.method} is not allowed on {request.path}"
        elif exc.status == 404:
            detail = f"no resource at {request.path}"
        return problem_response(exc.status, exc.reason, detail, request.path)
    except Exception:
        log.exception("unhandled_error", path=request.path, method=request.method)
        return problem_response(
            500, "Internal Server Error", "unexpected error; see the service log", request.path
        )


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body, or a 400/415 problem that says what is wrong."""
    if (
        request.content_type not in ("application/json", "application/problem+json", "")
        and request.can_read_body
    ):
        raise Problem(
            f"Content-Type must be application/json, got {request.content_type}",
            status=415,
            title="Unsupported Media Type",
        )
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise
    if not raw:
        raise Problem("request body is empty; a JSON object is required")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Problem(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise Problem("request body must be a JSON object")
    return body


_MISSING = object()


def field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], *, default: Any = _MISSING) -> Any:
    """Body field `name` of type `kind`, or a 400 problem naming it."""
    if name not in body or body[name] is None:
        if default is _MISSING:
            raise Problem(f"field '{name}' is required", field=name)
        return default
    value = body[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    ok = False if isinstance(value, bool) and bool not in kinds else isinstance(value, kinds)
    if not ok:
        names = " or ".join(_JSON_NAMES.get(k, k.__name__) for k in kinds)
        raise Problem(f"field '{name}' must be {names}", field=name)
    return value


_JSON_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    dict: "an object",
    list: "an array",
    bool: "a boolean",
}
