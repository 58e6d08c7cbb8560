"""A real agent (`python -m agent`, process supervisor, the real collector) for tests that need one."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import ServiceProcess, free_port, http_json, wait_for
from tests.support.services import Service

NAMESPACE = "default"


@dataclass
class AgentProcess:
    """`python -m agent` with settings from the environment; its logs in a file."""

    host_id: str
    state_dir: Path
    config_path: Path
    process: ServiceProcess

    def outbox(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted((self.state_dir / "outbox").glob("*.json"))]

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.process.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def start_agent(
    tmp_path: Path,
    api_url: str,
    otelcol_bin: Path,
    *,
    poll: str = "2s",
    host_id: str | None = None,
    env: dict[str, str] | None = None,
) -> AgentProcess:
    """An agent whose state, collector config and logs live under `tmp_path`; `env` overrides settings."""
    host_id = host_id or f"e2e-{free_port()}"
    tmp_path.mkdir(parents=True, exist_ok=True)
    state_dir = tmp_path / "agent-state"
    config_path = tmp_path / "etc" / "collector.yaml"
    settings = {
        "PHOENIX_AGENT_API_URL": api_url,
        "PHOENIX_AGENT_HOST_ID": host_id,
        "PHOENIX_AGENT_NAMESPACE": NAMESPACE,
        "PHOENIX_AGENT_POLL_INTERVAL": poll,
        "PHOENIX_AGENT_HEARTBEAT_INTERVAL": "2s",
        "PHOENIX_AGENT_BACKOFF_MAX": "1s",
        "PHOENIX_AGENT_EMISSION_INTERVAL": "5s",
        "PHOENIX_AGENT_STATE_DIR": str(state_dir),
        "PHOENIX_AGENT_LABELS": "{suite: e2e}",
        "PHOENIX_AGENT_COLLECTOR__BINARY": str(otelcol_bin),
        "PHOENIX_AGENT_COLLECTOR__CONFIG_PATH": str(config_path),
        "PHOENIX_AGENT_COLLECTOR__SUPERVISOR": "process",
        "PHOENIX_AGENT_COLLECTOR__APPLY_TIMEOUT": "30s",
        # Keep the developer's machine config out of the test.
        "PHOENIX_AGENT_CONFIG": str(tmp_path / "agent.yaml"),
        **(env or {}),
    }
    (tmp_path / "agent.yaml").write_text("{}\n")
    proc = ServiceProcess("agent", settings, tmp_path / f"agent-{host_id}.log").start()
    return AgentProcess(host_id, state_dir, config_path, proc)


@pytest.fixture
def agent_factory(tmp_path: Path, otelcol_bin: Path) -> Iterator[Any]:
    started: list[AgentProcess] = []

    def make(api_url: str, *, root: Path | None = None, **kwargs: Any) -> AgentProcess:
        """An agent under `root` (default the test's tmp_path: give each of several agents its own)."""
        agent = start_agent(root or tmp_path, api_url, otelcol_bin, **kwargs)
        started.append(agent)
        return agent

    yield make
    for agent in started:
        agent.process.stop()


def agent_row(api: Service, host_id: str) -> dict[str, Any]:
    """The agent as the control plane sees it; {} until it registered."""
    status, body, _ = http_json("GET", f"{api.url}/api/v1/agents/{host_id}")
    return dict(body) if status == 200 else {}


def tasks_of(api: Service, host_id: str) -> list[dict[str, Any]]:
    status, body, _ = http_json("GET", f"{api.url}/api/v1/tasks?host_id={host_id}")
    assert status == 200, body
    return list(body["tasks"])


def scrape(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def deploy(api: Service, ports: dict[str, int], name: str = "e2e") -> dict[str, Any]:
    parameters = {"collection_interval": 1, **ports}
    status, body, _ = http_json(
        "POST",
        f"{api.url}/api/v1/pipeline-deployments",
        {"name": name, "namespace": NAMESPACE, "template": "process-baseline-v1", "parameters": parameters},
    )
    assert status == 201, body
    return dict(body)


def free_ports() -> dict[str, int]:
    return {"prometheus_port": free_port(), "health_port": free_port(), "telemetry_port": free_port()}


def wait_registered(api: Service, agent: AgentProcess) -> dict[str, Any]:
    """The agent's row once it has registered."""
    return wait_for(lambda: agent_row(api, agent.host_id), timeout=60, what="the agent to register")


def wait_running(api: Service, host_id: str, config_hash: str, what: str, timeout: float = 90) -> None:
    """Until the agent's heartbeats say its collector runs the config with `config_hash`."""
    wait_for(lambda: agent_row(api, host_id).get("config_hash") == config_hash, timeout=timeout, what=what)
