"""The agent's Reporter sends status reports that wait together in one request (POST /tasks/status), in
order and never two of one task in one request, against a real API process and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agent.client import BATCH_REPORTS, ControlPlaneClient, Reporter, _status_run
from agent.state import Outbox
from tests.support.agents import tasks_of
from tests.support.queue_api import enqueue_sql, heartbeat, poll
from tests.support.services import Service, start_api


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Service]:
    service = start_api(database_url, tmp_path)
    yield service
    service.stop()


async def test_waiting_reports_go_in_one_request_in_order(
    api: Service, database_url: str, tmp_path: Path
) -> None:
    heartbeat(api, "batcher")
    ids = enqueue_sql(database_url, "batcher", 3)
    assert sorted(t["id"] for t in poll(api, "batcher")) == sorted(ids)
    outbox = Outbox(tmp_path / "outbox")
    # As after an outage: every report of three tasks waits, one task's running and completed among them.
    outbox.put("status", f"/tasks/{ids[0]}/status", {"status": "running"})
    outbox.put("status", f"/tasks/{ids[0]}/status", {"status": "completed", "result": {"ok": 1}})
    outbox.put("status", f"/tasks/{ids[1]}/status", {"status": "completed", "result": {"ok": 2}})
    outbox.put("status", f"/tasks/{ids[2]}/status", {"status": "failed", "error": "disk full"})
    async with aiohttp.ClientSession() as session:
        client = ControlPlaneClient(session, api.url, "batcher")
        sent: list[tuple[str, int]] = []
        original = client.post

        async def post(path: str, body: dict[str, Any]) -> Any:
            sent.append((path, len(body.get("reports", [body]))))
            return await original(path, body)

        client.post = post  # type: ignore[method-assign]
        reporter = Reporter(client, outbox)
        running = asyncio.create_task(reporter.run())
        try:
            assert await reporter.flush(30)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    # The running report alone, then the three final ones together (a task's second report waits).
    assert sent == [(f"/tasks/{ids[0]}/status", 1), ("/tasks/status", 3)]
    states = {t["id"]: t for t in tasks_of(api, "batcher")}
    assert [states[i]["status"] for i in ids] == ["completed", "completed", "failed"]
    assert states[ids[0]]["started_at"] is not None and states[ids[0]]["result"] == {"ok": 1}
    assert states[ids[2]]["error"] == "disk full"
    assert len(outbox) == 0


def test_a_run_of_reports_stops_at_a_measurement_a_repeated_task_and_the_limit(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "box")
    for i in range(BATCH_REPORTS + 5):
        outbox.put("status", f"/tasks/t{i}/status", {"status": "completed"})
    entries = outbox.pending()
    assert len(_status_run(entries, 0)) == BATCH_REPORTS
    mixed = Outbox(tmp_path / "mixed")
    mixed.put("status", "/tasks/a/status", {"status": "running"})
    mixed.put("status", "/tasks/b/status", {"status": "running"})
    mixed.put("measurements", "/measurements", {"samples": []})
    mixed.put("status", "/tasks/a/status", {"status": "completed"})
    got = mixed.pending()
    assert [e.path for e in _status_run(got, 0)] == ["/tasks/a/status", "/tasks/b/status"]
    assert _status_run(got, 2) == []
    again = Outbox(tmp_path / "again")
    again.put("status", "/tasks/a/status", {"status": "running"})
    again.put("status", "/tasks/a/status", {"status": "completed"})
    assert len(_status_run(again.pending(), 0)) == 1
