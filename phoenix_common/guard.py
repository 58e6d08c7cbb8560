"""Browser-borne requests to a service on loopback: a Host allowlist and a same-origin rule for writes.

A service bound to loopback without tokens is reachable by any page its user opens. Two attacks remain:
DNS rebinding (the attacker's name resolves to 127.0.0.1, so the page is "same origin" with the service:
the Host header names the attacker's domain) and cross-site requests (a form or a bodiless `fetch` POST,
which a browser sends without asking first). The guard refuses both:

- the Host header must name a loopback address or `localhost`, or be listed in `allowed_hosts`. It is
  enforced when the service is bound to loopback or `allowed_hosts` is set; a service bound elsewhere
  serves remote hosts under names of its operator's choosing and requires tokens (its settings say so).
- a write (POST, PUT, PATCH, DELETE) from a browser of another origin is refused. Browsers send `Origin`
  with every such request; the CLI, curl and the agent send none, or send a token or an agent header a
  page cannot add without a CORS preflight, which no Phoenix service grants.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable, Collection

from aiohttp import web

from phoenix_common.problems import Forbidden
from phoenix_common.settings import is_loopback

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Headers a page of another origin cannot send without a preflight: their presence shows no form sent it.
_NOT_FROM_A_FORM = ("Authorization", "X-Agent-Host-ID")


def host_name(host_header: str) -> str | None:
    """The host part of a Host header (`name`, `name:port`, `[v6]:port`), lower-cased; None if malformed."""
    try:
        parts = urllib.parse.urlsplit(f"//{host_header}")
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return None
    return parts.hostname.lower().rstrip(".") if parts.hostname else None


def host_allowed(host_header: str, allowed_hosts: Collection[str]) -> bool:
    name = host_name(host_header)
    return name is not None and (is_loopback(name) or name in allowed_hosts)


def _same_origin(origin: str, host_header: str, allowed_origins: Collection[str]) -> bool:
    if origin.rstrip("/") in allowed_origins:
        return True
    parts = urllib.parse.urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.lower()


def guard_middleware(
    *, bind_host: str, allowed_hosts: Collection[str] = (), allowed_origins: Collection[str] = ()
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The guard for a service bound to `bind_host` (install it after the problem middleware)."""
    hosts = frozenset(h.lower().rstrip(".") for h in allowed_hosts)
    origins = frozenset(o.rstrip("/") for o in allowed_origins)
    enforce_hosts = bool(hosts) or is_loopback(bind_host)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host", "")
        if enforce_hosts and not host_allowed(host, hosts):
            shown = host[:100] if host.isprintable() else repr(host[:100])
            raise Forbidden(
                f"Host {shown!r} is not allowed: this service answers to loopback addresses and "
                "localhost, and to the names in allowed_hosts",
                field="Host",
            )
        origin = request.headers.get("Origin")
        if (
            request.method in WRITES
            and origin is not None
            and not any(h in request.headers for h in _NOT_FROM_A_FORM)
            and not _same_origin(origin, host, origins)
        ):
            raise Forbidden(
                f"a {request.method} from the page of another origin ({origin[:100]!r}) is refused; "
                "list the origin in allowed_origins to let a page of it write",
                field="Origin",
            )
        return await handler(request)

    return guard
