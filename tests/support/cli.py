"""Run the `phoenix` CLI as a real subprocess and give the control plane data over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from tests.support import ROOT, http_json, wait_for

CLI = [sys.executable, "-m", "phoenix_cli"]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any Phoenix setting, and a HOME with no CLI config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_") and k != "XDG_CONFIG_HOME"}
    home.mkdir(parents=True, exist_ok=True)
    env["HOME"] = str(home)
    env.update(extra)
    return env


def run_cli(env: Mapping[str, str], *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=ROOT, env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )


def register(api_url: str, host: str, namespace: str, **fields: Any) -> dict[str, Any]:
    """A fake agent's heartbeat over real HTTP, as the agent sends it."""
    body = {
        "version": "0.1.0",
        "namespace": namespace,
        "labels": {"role": "test"},
        "collector": {
            "state": "running",
            "restarts": 2,
            "last_error": None,
            "config_hash": "sha256:" + "ab" * 32,
            "pipeline": "process-baseline-v1",
        },
        "facts": {"hostname": host, "os": "linux", "cpus": 2, "memory_bytes": 4 * 1024**3},
        **fields,
    }
    status, answer, _ = http_json(
        "POST", f"{api_url}/api/v1/agent/heartbeat", body, {"X-Agent-Host-ID": host}
    )
    assert status == 200, answer
    return answer


def column_of(header: str, name: str) -> int:
    assert name in header, f"{name} not in {header!r}"
    return header.index(name)


def row_of(lines: list[str], first_cell: str) -> str:
    for line in lines:
        if line.split() and line.split()[0] == first_cell:
            return line
    raise AssertionError(f"no row starting with {first_cell!r} in:\n" + "\n".join(lines))


class LiveProcess:
    """A CLI subprocess whose stdout is read line by line as it arrives."""

    def __init__(self, env: Mapping[str, str], *args: str):
        self.proc = subprocess.Popen(
            [*CLI, *args],
            cwd=ROOT,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.stderr = ""
        self._lock = threading.Lock()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._out = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._out.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def wait_line(self, predicate: Callable[[str], bool], timeout: float = 30.0, what: str = "") -> str:
        def found() -> str:
            with self._lock:
                hit = next((line for line in self.lines if predicate(line)), None)
            if hit is None and self.proc.poll() is not None:
                raise AssertionError(
                    f"the CLI exited with {self.proc.returncode} before printing {what}: "
                    f"{self.text()} {self.proc.stderr.read() if self.proc.stderr else ''}"
                )
            return hit or ""

        return wait_for(found, timeout=timeout, what=what or "a line from the CLI")

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._out.join(5)
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()
        return code

    def text(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def cli_json(env: Mapping[str, str], *args: str) -> Any:
    result = run_cli(env, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
