"""Fixtures for the agent daemon's tests: collector configs on free loopback ports, settings, a state dir."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
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
from tests.support.agent_harness import Harness


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
