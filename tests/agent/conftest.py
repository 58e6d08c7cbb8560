"""Fixtures for the agent daemon's tests: collector configs on free loopback ports, settings, a state dir."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from agent.client import ControlPlaneClient, Reporter
from agent.collector import Collector
from agent.config import AgentSettings, CollectorSettings
from agent.state import Outbox, StateDir
from agent.supervisor import ProcessSupervisor
from agent.tasks import TaskHandlers
from tests.support import free_port


@dataclass(frozen=True)
class Ports:
    """Free loopback ports for one collector config (so tests never collide)."""

    prometheus: int
    health: int

    @classmethod
    def pick(cls) -> Ports:
        return cls(free_port(), free_port())


def collector_yaml(
    ports: Ports, *, variant: str = "main", interval: str = "1s", extra_exporter: str = ""
) -> str:
    """A small valid collector config: cpu+memory host metrics to one Prometheus exporter, health_check."""
    return f"""\
receivers:
  hostmetrics/phoenix:
    collection_interval: {interval}
    scrapers:
      cpu: {{}}
      memory: {{}}
exporters:
  prometheus/{variant}:
    endpoint: 127.0.0.1:{ports.prometheus}
{extra_exporter}extensions:
  health_check:
    endpoint: 127.0.0.1:{ports.health}
service:
  extensions: [health_check]
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics/{variant}:
      receivers: [hostmetrics/phoenix]
      exporters: [prometheus/{variant}]
"""


async def get_text(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=3)) as response:
        return response.status, await response.text()


async def serves(session: aiohttp.ClientSession, url: str) -> bool:
    """True when `url` answers 200."""
    with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
        status, _ = await get_text(session, url)
        return status == 200
    return False


def outbox_reports(state_dir: Path) -> list[dict[str, Any]]:
    """The reports waiting in an agent's outbox, oldest first."""
    directory = StateDir(state_dir).outbox_dir
    if not directory.exists():
        return []
    return [json.loads(f.read_text()) for f in sorted(directory.glob("*.json"))]


@pytest.fixture
def collector_settings(tmp_path: Path, otelcol_bin: Path) -> CollectorSettings:
    """Process-supervised real collector, config under tmp_path."""
    settings = CollectorSettings(
        binary=str(otelcol_bin),
        config_path=tmp_path / "etc" / "collector.yaml",
        supervisor="process",
        health_url="http://127.0.0.1:9/",
        apply_timeout=20.0,
    )
    settings.validate()
    return settings


@pytest.fixture
def agent_settings(tmp_path: Path, collector_settings: CollectorSettings) -> Callable[..., AgentSettings]:
    """Build validated agent settings for a control plane URL."""

    def make(api_url: str, **overrides: Any) -> AgentSettings:
        values: dict[str, Any] = {
            "api_url": api_url,
            "host_id": f"test-host-{free_port()}",
            "poll_interval": 2.0,
            "heartbeat_interval": 2.0,
            "state_dir": tmp_path / "state",
            "backoff_max": 1.0,
            "collector": collector_settings,
        }
        values.update(overrides)
        settings = AgentSettings(**values)
        settings.validate()
        return settings

    return make


@pytest_asyncio.fixture(loop_scope="function")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateDir]:
    state = StateDir(tmp_path / "state")
    state.ensure()
    yield state


@dataclass
class Harness:
    handlers: TaskHandlers
    state: StateDir

    def reports(self) -> list[tuple[str, dict[str, Any]]]:
        """(task id, body) of every queued status report."""
        return [
            (r["path"].split("/")[2], r["body"])
            for r in outbox_reports(self.state.root)
            if r["kind"] == "status"
        ]

    def final(self, task_id: str) -> dict[str, Any]:
        bodies = [b for t, b in self.reports() if t == task_id]
        # A task is reported running first, unless it failed before it could start.
        assert bodies[0]["status"] == "running" or len(bodies) == 1, bodies
        assert bodies[-1]["status"] in ("completed", "failed"), bodies
        return bodies[-1]


@pytest_asyncio.fixture(loop_scope="function")
async def harness(
    collector_settings: CollectorSettings, state: StateDir, http: aiohttp.ClientSession
) -> AsyncIterator[Harness]:
    # The reporter is never started: reports stay in the outbox for the test to read.
    client = ControlPlaneClient(http, "http://127.0.0.1:9", "unit-host")
    reporter = Reporter(client, Outbox(state.outbox_dir))
    sup = ProcessSupervisor(collector_settings.binary, collector_settings.config_path)
    collector = Collector(collector_settings, sup, state, http, settle_seconds=0.3)
    handlers = TaskHandlers(state=state, collector=collector, session=http, reporter=reporter)
    yield Harness(handlers, state)
    await handlers.shutdown()
    await sup.stop()
