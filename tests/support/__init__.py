"""Helpers for tests that run Phoenix's real services as subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
POLL_INTERVAL = 0.05  # how often the waiters below look at their condition


def unavailable(message: str) -> NoReturn:
    """Something a test needs is missing: CI (which installs everything) fails, elsewhere the test skips."""
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def distinct_ports(n: int) -> list[int]:
    """`n` free loopback ports, all different (free_port() twice can hand out the same one)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds; always reaped."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class Fatal(AssertionError):
    """A condition that can never come true any more; stops wait_for at once."""


def wait_for(
    condition: Callable[[], T], timeout: float = 30.0, interval: float = POLL_INTERVAL, what: str = ""
) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Fatal:
            raise
        except Exception as exc:
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or condition}; last error: {last_exc}"
    )


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[int]:
    """Serve an aiohttp application on a free loopback port for the block; yields the port."""
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield port
    finally:
        await runner.cleanup()


async def eventually(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Wait, in a coroutine, until an (async) condition is truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = condition()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return value
            last = value
        except Exception as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(POLL_INTERVAL)


def http_json(
    method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None, timeout: float = 30.0
) -> tuple[int, Any, Mapping[str, str]]:
    """A real HTTP request; returns status, decoded JSON (or text) and headers."""
    import json

    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status, rh = resp.status, resp.headers
    except urllib.error.HTTPError as exc:
        raw, status, rh = exc.read(), exc.code, exc.headers
    try:
        return status, json.loads(raw) if raw else None, rh
    except ValueError:
        return status, raw.decode(errors="replace"), rh


class ServiceProcess:
    """A Phoenix service started with `python -m <module>`, logs kept in a file."""

    def __init__(
        self,
        module: str,
        env: Mapping[str, str],
        log_path: Path,
        args: list[str] | None = None,
        health_url: str | None = None,
    ):
        self.module = module
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.args = args or []
        self.health_url = health_url
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        log.close()
        if self.health_url:
            wait_for(self._healthy, timeout=timeout, what=f"{self.module} health ({self.tail()})")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise Fatal(f"{self.module} exited with {self.proc.returncode}: {self.tail()}")
        status, _, _ = http_json("GET", str(self.health_url), timeout=2)
        return status == 200

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(5)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def otelcol_binary() -> Path | None:
    """The collector built by `make otelcol`, if present."""
    path = ROOT / "bin" / "otelcol-phoenix"
    return path if path.exists() else None


def imported_modules(package: str) -> list[tuple[str, str]]:
    """(file name, absolute module name) of every import statement in `package`'s sources."""
    import ast

    found = []
    for path in sorted((ROOT / package).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found += [(path.name, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((path.name, node.module))
    return found


def modules_loaded_by(modules: list[str]) -> list[str]:
    """Every module a fresh interpreter holds after importing `modules`."""
    import json

    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return list(json.loads(out.stdout))
