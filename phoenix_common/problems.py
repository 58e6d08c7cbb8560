"""RFC 9457 problem responses and the one error middleware each service installs."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

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


class TooManyRequests(Problem):
    status = 429
    title = "Too Many Requests"


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
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise Problem("request body must be a JSON object")
    return body


# Integers a body may hold: what PostgreSQL's bigint stores. Anything larger is no count or size of
# ours, and a 4,300-digit one would make int() itself fail.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
# NUL (which PostgreSQL's text and jsonb refuse) and lone surrogates (which no UTF-8 encoder writes).
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")


class _Refused:
    """Stands in for a number the parser read but a service refuses, until the walk names its field."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what


def _shown(text: str) -> str:
    return text if len(text) <= 24 else text[:24] + "..."


def _integer(text: str) -> int | _Refused:
    if len(text) > 20 or not INT_MIN <= (value := int(text)) <= INT_MAX:
        return _Refused(f"the integer {_shown(text)}, beyond 64 bits (at most 2^63-1)")
    return value


def _number(text: str) -> float | _Refused:
    value = float(text)
    if not math.isfinite(value):
        return _Refused(f"the number {_shown(text)}, beyond a double's range (numbers must be finite)")
    return value


def _constant(text: str) -> _Refused:
    return _Refused(f"{text}, which is not a JSON number (numbers must be finite)")


def _check_values(value: Any) -> None:
    """A 400 naming the field that holds a refused number, or a string (key or value) holding NUL or a
    lone surrogate."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                _check_string(path, key, key=True)
                stack.append((f"{path}.{key}" if path else key, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
        elif isinstance(item, str):
            _check_string(path, item)
        elif isinstance(item, _Refused):
            _refuse(path, f"field '{_path(path)}'" if path else "the body", item.what)


def _path(path: str) -> str:
    return path if len(path) <= 200 else path[:200] + "..."


def _refuse(path: str, where: str, what: str) -> NoReturn:
    # The field a client sent: its top-level name, as every other 400 names it.
    top = re.split(r"[.\[]", path, maxsplit=1)[0] if path else None
    raise Problem(f"{where} holds {what}", field=top)


def _check_string(path: str, text: str, *, key: bool = False) -> None:
    """`path` names where `text` sits; a key is named by its object's path (the bad key is not echoed)."""
    if (bad := _BAD_CHARACTER.search(text)) is not None:
        what = "NUL" if bad.group() == "\x00" else f"a lone surrogate (U+{ord(bad.group()):04X})"
        what += ", which no text Phoenix stores may hold"
        if key:
            where = f"a key in '{_path(path)}'" if path else "a key of the body"
        else:
            where = f"field '{_path(path)}'"
        _refuse(path, where, what)


def parse_json(raw: bytes | str) -> Any:
    """JSON as a service takes it from a client: finite numbers, 64-bit integers, strings without NUL or
    lone surrogates; anything else, or malformed or too deeply nested JSON, is a 400 that says why."""
    try:
        value = json.loads(raw, parse_int=_integer, parse_float=_number, parse_constant=_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Problem(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise Problem("request body is nested too deeply") from None
    _check_values(value)
    return value


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


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """Query parameter `name` as an integer from `low` to `high`, or a 400 problem naming it."""
    raw = request.query.get(name, str(default))
    # ASCII digits only: "²" and "٣" pass isdigit() and then fail int().
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise Problem(f"query parameter '{name}' must be an integer between {low} and {high}", field=name)
    return int(raw)


_JSON_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    dict: "an object",
    list: "an array",
    bool: "a boolean",
}
