"""The agent's loops survive an unexpected error in their own work (finding 9 of the hardening issue).

The agent runs in this process against a real API process (and its real PostgreSQL) with a real
collector. Each loop's work is made to raise a RuntimeError once, the only way to reach a bug's path
from outside (the agent is defensive against every bad answer a control plane can send): the heartbeat
body, the long poll and a report's delivery. Each loop logs `agent_loop_restarting` and goes on: the
control plane sees heartbeats again, and a task enqueued after the faults is received, run and reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from agent import daemon
from agent.client import ControlPlaneClient, Reporter
from agent.config import AgentSettings
from tests.support import eventually, http_json
from tests.support.agents import agent_row, tasks_of
from tests.support.services import Service, start_api


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Service]:
    service = start_api(database_url, tmp_path)
    yield service
    service.stop()


def once(original: Callable[..., Any], faults: list[str], name: str, after: int = 1) -> Callable[..., Any]:
    """`original`, raising RuntimeError on call number after+1 only."""
    calls = 0

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == after + 1:
            faults.append(name)
            raise RuntimeError(f"injected fault in {name}")
        return await original(*args, **kwargs)

    return wrapper


async def test_each_loop_recovers_from_an_unexpected_error(
    api: Service, agent_settings: Callable[..., AgentSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = agent_settings(api.url, heartbeat_interval=1.0, poll_interval=1.0, backoff_max=1.0)
    agent = daemon.Agent(settings)
    faults: list[str] = []
    monkeypatch.setattr(agent, "heartbeat_body", once(agent.heartbeat_body, faults, "heartbeat", after=2))
    monkeypatch.setattr(ControlPlaneClient, "poll_tasks", once(ControlPlaneClient.poll_tasks, faults, "poll"))
    monkeypatch.setattr(Reporter, "_deliver", once(Reporter._deliver, faults, "reporter", after=0))
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        running = asyncio.create_task(agent.run(stop))
        try:
            await eventually(
                lambda: {"heartbeat", "poll"} <= set(faults), 60, what="the heartbeat and poll faults"
            )
            # A task after the faults: polled, run and reported (its first report meets the reporter's fault).
            status, body, _ = await asyncio.to_thread(
                http_json, "POST", f"{api.url}/api/v1/tasks", {"type": "health", "host_id": settings.host_id}
            )
            assert status == 202, body

            def completed() -> bool:
                return any(t["status"] == "completed" for t in tasks_of(api, settings.host_id))

            def last_seen() -> Any:
                return agent_row(api, settings.host_id)["last_seen_at"]

            # The API is read from a thread: the agent runs on this event loop.
            await eventually(lambda: asyncio.to_thread(completed), 60, what="the health task completed")
            seen = await asyncio.to_thread(last_seen)
            await eventually(
                lambda: asyncio.to_thread(lambda: last_seen() != seen), 60, what="a later heartbeat"
            )
            assert not running.done()
        finally:
            stop.set()
            await asyncio.wait_for(running, 60)
    assert sorted(faults) == ["heartbeat", "poll", "reporter"]
    restarted = {e["loop"] for e in logs if e["event"] == "agent_loop_restarting"}
    assert restarted == {"heartbeat", "poll", "reporter"}, [e for e in logs if "loop" in e]
    assert not [e for e in logs if e["event"] == "agent_loop_crashed"]
