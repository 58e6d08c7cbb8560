"""A small JSON-over-HTTP client on urllib: fast to import, errors mapped to exit codes."""

from __future__ import annotations

import errno
import http.client
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from phoenix_cli.errors import ApiError, Unreachable


def quote(segment: str) -> str:
    """One path segment, escaped so that an id can never change the path ('../', '?', '/')."""
    return urllib.parse.quote(segment, safe="")


def reason(exc: BaseException) -> str:
    """A short, human reason for a failed connection."""
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return "network unreachable"
    if isinstance(exc, ConnectionResetError | http.client.RemoteDisconnected):
        return "connection closed without an answer"
    return str(getattr(exc, "strerror", None) or exc) or type(exc).__name__


def problem_detail(status: int, raw: bytes, reason: str) -> str:
    """The one-line detail of an RFC 9457 problem, or the HTTP reason when the body is not one."""
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title")
        if isinstance(detail, str) and detail:
            return detail
    return f"HTTP {status} {reason}".strip()


class Client:
    """Calls one Phoenix service; every method returns decoded JSON or raises a CliError."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        service: str = "control plane",
    ):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.service = service

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json, application/problem+json", "User-Agent": "phoenix-cli"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def request(
        self, method: str, path: str, body: Any = None, query: Mapping[str, str | int | None] | None = None
    ) -> Any:
        url = self.base_url + path
        params = {k: str(v) for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = self.headers()
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            detail = problem_detail(exc.code, raw, exc.reason)
            if exc.code == 401 and not self.token:
                detail += " (pass --token or set PHOENIX_API_TOKEN)"
            raise ApiError(exc.code, detail) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise Unreachable(self.service, self.base_url, reason(exc)) from None
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise ApiError(
                502,
                f"the {self.service} at {self.base_url} answered {path} with something "
                "that is not JSON; is that URL a Phoenix service?",
            ) from None

    def get(self, path: str, **query: str | int | None) -> Any:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body if body is not None else {})

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body)
