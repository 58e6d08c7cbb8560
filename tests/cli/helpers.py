"""Run the `phoenix` CLI as a real subprocess and give the control plane data over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
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
    return subprocess.run([*CLI, *args], cwd=ROOT, env=dict(env), capture_output=True, text=True,
                          timeout=timeout, check=False)


def register(api_url: str, host: str, namespace: str, **fields: Any) -> dict[str, Any]:
    """A fake agent's heartbeat over real HTTP, as the agent sends it."""
    body = {
        "version": "0.1.0",
        "namespace": namespace,
        "labels": {"role": "test"},
        "collector": {"state": "running", "restarts": 2, "last_error": None,
                      "config_hash": "sha256:" + "ab" * 32, "pipeline": "process-baseline-v1"},
        "facts": {"hostname": host, "os": "linux", "cpus": 2, "memory_bytes": 4 * 1024**3},
        **fields,
    }
    status, answer, _ = http_json("POST", f"{api_url}/api/v1/agent/heartbeat", body,
                                  {"X-Agent-Host-ID": host})
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
        self.proc = subprocess.Popen([*CLI, *args], cwd=ROOT, env=dict(env), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
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
                raise AssertionError(f"the CLI exited with {self.proc.returncode} before printing {what}: "
                                     f"{self.text()} {self.proc.stderr.read() if self.proc.stderr else ''}")
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


class FakeAgent(threading.Thread):
    """Stands in for the agent (which needs a collector) over the real agent HTTP API.

    It acknowledges its tasks and, while an experiment runs, posts one sample per variant per interval.
    The samples are the test's input; every figure shown is computed by the control plane from them.
    """

    def __init__(self, api_url: str, host: str, namespace: str, baseline_series: int, candidate_series: int,
                 interval: float = 1.0):
        super().__init__(daemon=True, name=f"fake-agent-{host}")
        self.api_url = api_url
        self.host = host
        self.namespace = namespace
        self.series = {"baseline": baseline_series, "candidate": candidate_series}
        self.interval = interval
        self.stopped = threading.Event()
        self.experiment_id: str | None = None
        self.error: BaseException | None = None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        status, answer, _ = http_json(method, self.api_url + path, body, {"X-Agent-Host-ID": self.host})
        assert status < 300, (path, status, answer)
        return answer

    def sample(self, variant: str) -> dict[str, Any]:
        kept = ["sshd", "postgres", "java"] + ([] if variant == "candidate" else ["bash"])
        return {
            "variant": variant, "pipeline": f"pipeline-{variant}", "ts": time.time(),
            "active_series": self.series[variant], "datapoints_per_second": self.series[variant] / 10,
            "series_per_metric": {"process_cpu_time_seconds_total": self.series[variant]},
            "process_cpu_seconds_rate": {"sshd": 0.01, "postgres": 0.3, "java": 0.5, "bash": 0.02},
            "process_memory_bytes": {"sshd": 1e6, "postgres": 3e8, "java": 5e8, "bash": 2e6},
            "kept_processes": kept, "critical_present": {"sshd": True, "postgres": True},
            "collector_cpu_percent": 2.0, "collector_memory_bytes": 80e6,
        }

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            self.error = exc

    def _loop(self) -> None:
        self.call("POST", "/api/v1/agent/heartbeat", {"namespace": self.namespace})
        next_sample = 0.0
        while not self.stopped.is_set():
            wait = 0 if self.experiment_id else 1
            for task in self.call("GET", f"/api/v1/agent/tasks?wait={wait}")["tasks"]:
                path = f"/api/v1/agent/tasks/{task['id']}/status"
                self.call("POST", path, {"status": "running"})
                if task["type"] == "experiment" and task["action"] == "start":
                    self.experiment_id = task["experiment_id"]
                    continue
                if task["type"] == "experiment" and task["action"] == "stop":
                    self.experiment_id = None
                self.call("POST", path, {"status": "completed", "result": {}})
            if self.experiment_id and time.monotonic() >= next_sample:
                self.call("POST", "/api/v1/agent/measurements", {
                    "experiment_id": self.experiment_id, "task_id": "fake",
                    "samples": [self.sample("baseline"), self.sample("candidate")]})
                next_sample = time.monotonic() + self.interval
            elif self.experiment_id:
                self.stopped.wait(0.1)

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)


def cli_json(env: Mapping[str, str], *args: str) -> Any:
    result = run_cli(env, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
