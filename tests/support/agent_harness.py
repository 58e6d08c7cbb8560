"""The agent-test harness: collector configs, ports, the outbox and a TaskHandlers rig."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from agent.state import StateDir
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
