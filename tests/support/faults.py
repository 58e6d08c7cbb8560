"""What the agent and collector fault tests share: a control plane with its generator, real agents, the
audit log, and the agents' JSON logs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg

from tests.support import free_port, http_json, wait_for
from tests.support.agents import AgentProcess
from tests.support.services import Service, start_api, start_generator


@dataclass
class ControlPlane:
    """The API and the config generator it renders with (stopped by `control_plane`)."""

    api: Service
    generator: Service
    database_url: str


@contextlib.contextmanager
def control_plane(
    database_url: str, tmp_path: Path, env: dict[str, str] | None = None
) -> Iterator[ControlPlane]:
    """A real API with `env` settings and a real generator, talking to each other over HTTP."""
    api_port, gen_port = free_port(), free_port()
    generator = start_generator(tmp_path, f"http://127.0.0.1:{api_port}", port=gen_port)
    try:
        api = start_api(database_url, tmp_path, generator_url=generator.url, port=api_port, env=env)
        try:
            yield ControlPlane(api, generator, database_url)
        finally:
            api.stop()
    finally:
        generator.stop()


def deploy_to(api: Service, namespace: str, ports: dict[str, int], name: str) -> dict[str, Any]:
    """Deploy process-baseline-v1 (1 s collections) on `ports` to every agent of `namespace`."""
    status, body, _ = http_json(
        "POST",
        f"{api.url}/api/v1/pipeline-deployments",
        {
            "name": name,
            "namespace": namespace,
            "template": "process-baseline-v1",
            "parameters": {"collection_interval": 1, **ports},
        },
    )
    assert status == 201, body
    return dict(body)


def deployment_task(api: Service, host_id: str, deployment_id: str) -> dict[str, Any]:
    """The host's task of one deployment; {} until there is one."""
    status, body, _ = http_json("GET", f"{api.url}/api/v1/tasks?host_id={host_id}")
    assert status == 200, body
    found = [t for t in body["tasks"] if t["deployment_id"] == deployment_id]
    return dict(found[0]) if found else {}


def get_deployment(api: Service, deployment_id: str) -> dict[str, Any]:
    status, body, _ = http_json("GET", f"{api.url}/api/v1/pipeline-deployments/{deployment_id}")
    assert status == 200, body
    return dict(body)


def task_events(database_url: str, task_id: str) -> list[str]:
    """The kinds of the audit-log events about one task, oldest first."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT kind FROM events WHERE topic = 'tasks' AND subject = %s ORDER BY id", (task_id,)
        ).fetchall()
    return [str(r[0]) for r in rows]


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its parent does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def collector_pid(agent: AgentProcess) -> int:
    """The pid of the collector the agent runs as its child."""
    assert agent.process.proc is not None
    parent = agent.process.proc.pid

    def find() -> int | None:
        children = psutil.Process(parent).children()
        found = [c.pid for c in children if "otelcol" in c.name() and c.status() != psutil.STATUS_ZOMBIE]
        return found[0] if len(found) == 1 else None

    pid = wait_for(find, timeout=30, what=f"the collector child of agent {agent.host_id}")
    assert pid is not None
    return pid


def sigkill(service_pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(service_pid, signal.SIGKILL)


def hold_port(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:`port`, as another program on the host would hold it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError:
        sock.close()
        raise
    return sock


def events(agent: AgentProcess, name: str, since: float = 0.0, **match: Any) -> list[dict[str, Any]]:
    """The agent's log lines with event `name` (and the given fields), logged at or after `since`."""
    return [
        line
        for line in agent.logs()
        if line.get("event") == name
        and log_time(line) >= since
        and all(line.get(k) == v for k, v in match.items())
    ]


def log_time(line: dict[str, Any]) -> float:
    """A log line's timestamp as Unix seconds."""
    stamp = line.get("timestamp")
    return datetime.fromisoformat(str(stamp)).timestamp() if stamp else 0.0


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()
