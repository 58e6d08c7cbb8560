"""The task queue against a real PostgreSQL, through the real API process."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from control_plane.db import migrate
from tests.support import http_json, wait_for
from tests.support.queue_api import enqueue_sql, heartbeat, poll, waiting_polls
from tests.support.services import Service, start_api


def report(api: Service, host: str, task_id: str, status: str, **extra: object) -> tuple[int, dict]:
    code, body, _ = http_json(
        "POST",
        f"{api.url}/api/v1/agent/tasks/{task_id}/status",
        {"status": status, **extra},
        {"X-Agent-Host-ID": host},
    )
    return code, body


def task_row(database_url: str, task_id: str) -> dict:
    with psycopg.connect(database_url, row_factory=psycopg.rows.dict_row) as conn:
        row = conn.execute("SELECT * FROM tasks WHERE id = %s", (task_id,)).fetchone()
    assert row is not None
    return row


async def test_migrations_apply_to_an_empty_database_twice(pg_server) -> None:  # type: ignore[no-untyped-def]
    import secrets

    from control_plane.db import ensure_database

    name = f"phoenix_m_{secrets.token_hex(4)}"
    ensure_database(pg_server.admin_url, name)
    url = pg_server.url_for(name)
    first = await migrate(url)
    second = await migrate(url)
    assert first and second == []
    with psycopg.connect(url) as conn:
        tables = {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
        }
        # The operations guide's troubleshooting SQL runs unchanged.
        conn.execute("SELECT status, count(*) FROM tasks GROUP BY status").fetchall()
        conn.execute(
            "SELECT id, host_id, type, action, status, created_at FROM tasks "
            "WHERE status = 'pending' ORDER BY priority DESC, created_at ASC"
        ).fetchall()
    assert {
        "agents",
        "tasks",
        "pipeline_deployments",
        "pipeline_deployment_versions",
        "events",
        "schema_migrations",
    } <= tables


async def test_concurrent_migrations_do_not_race(pg_server) -> None:  # type: ignore[no-untyped-def]
    import secrets

    from control_plane.db import ensure_database

    name = f"phoenix_m_{secrets.token_hex(4)}"
    ensure_database(pg_server.admin_url, name)
    url = pg_server.url_for(name)
    results = await asyncio.gather(*(migrate(url) for _ in range(4)))
    applied = [v for r in results for v in r]
    assert sorted(applied) == sorted(set(applied)), "a migration was applied twice"


def test_twenty_concurrent_claimers_never_share_a_task(api: Service, database_url: str) -> None:
    heartbeat(api, "busy-host")
    ids = set(enqueue_sql(database_url, "busy-host", 400))
    seen: list[str] = []

    def claimer() -> list[str]:
        mine: list[str] = []
        while True:
            tasks = poll(api, "busy-host", wait=0)
            if not tasks:
                return mine
            assert len(tasks) <= 10
            mine.extend(t["id"] for t in tasks)

    with ThreadPoolExecutor(20) as pool:
        for got in pool.map(lambda _: claimer(), range(20)):
            seen.extend(got)
    assert len(seen) == len(set(seen)), "a task was delivered twice"
    assert set(seen) == ids, "a task was lost"


def test_claims_in_priority_then_age_order(api: Service, database_url: str) -> None:
    heartbeat(api, "h1")
    low = enqueue_sql(database_url, "h1", 1, priority=0)
    high = enqueue_sql(database_url, "h1", 1, priority=5)
    got = [t["id"] for t in poll(api, "h1")]
    assert got == high + low


def test_long_poll_wakes_on_enqueue_not_on_timeout(api: Service, database_url: str) -> None:
    heartbeat(api, "waiter")
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        future = pool.submit(poll, api, "waiter", 20)
        # Enqueue only once the poll is really waiting on its NOTIFY.
        wait_for(lambda: waiting_polls(api) >= 1, what="the poll to be waiting")
        enqueued_at = time.monotonic()
        (task_id,) = enqueue_sql(database_url, "waiter")
        tasks = future.result(timeout=15)
        answered_at = time.monotonic()
    assert [t["id"] for t in tasks] == [task_id]
    assert answered_at - enqueued_at < 1.0, "the long poll did not wake within a second of the enqueue"
    assert answered_at - started < 15


def test_one_host_holds_at_most_long_polls_per_host_polls(api: Service, database_url: str) -> None:
    heartbeat(api, "greedy")
    with ThreadPoolExecutor(4) as pool:
        # The default long_polls_per_host; the ones no task wakes end after their 8 s.
        held = [pool.submit(poll, api, "greedy", 8) for _ in range(4)]
        wait_for(lambda: waiting_polls(api) >= 4, what="four polls to be waiting")
        status, body, headers = http_json(
            "GET", f"{api.url}/api/v1/agent/tasks?wait=20", headers={"X-Agent-Host-ID": "greedy"}
        )
        assert status == 429 and "long_polls_per_host" in body["detail"], body
        assert headers["Content-Type"].startswith("application/problem+json")
        assert poll(api, "other-host", 0) == []  # another host still polls
        # The held polls are still served: one task wakes one of them.
        (task_id,) = enqueue_sql(database_url, "greedy")
        wait_for(lambda: any(f.done() for f in held), what="a held poll to be answered")
        done = [f.result() for f in held if f.done()]
        assert [t["id"] for t in done[0]] == [task_id]
    assert sorted(len(f.result()) for f in held) == [0, 0, 0, 1]


def test_long_poll_returns_empty_after_wait(api: Service) -> None:
    heartbeat(api, "idle")
    started = time.monotonic()
    assert poll(api, "idle", wait=0.5) == []
    assert time.monotonic() - started >= 0.5


def test_status_flow_is_idempotent_and_guards_transitions(api: Service, database_url: str) -> None:
    heartbeat(api, "h1")
    heartbeat(api, "h2")
    (task_id,) = enqueue_sql(database_url, "h1")
    # Not delivered yet: an agent cannot report on it.
    assert report(api, "h1", task_id, "running")[0] == 409
    assert [t["id"] for t in poll(api, "h1")] == [task_id]
    assert report(api, "h2", task_id, "running")[0] == 404, "another host's task must be invisible"
    assert report(api, "h1", task_id, "running")[0] == 200
    assert report(api, "h1", task_id, "running")[0] == 200
    code, body = report(api, "h1", task_id, "completed", result={"ok": True})
    assert code == 200, body
    assert report(api, "h1", task_id, "completed", result={"ok": True})[0] == 200
    code, body = report(api, "h1", task_id, "failed", error="late")
    assert code == 409 and "completed" in body["detail"]
    row = task_row(database_url, task_id)
    assert row["status"] == "completed" and row["result"] == {"ok": True}
    assert row["assigned_at"] and row["started_at"] and row["completed_at"]
    assert report(api, "h1", "00000000-0000-0000-0000-000000000000", "running")[0] == 404


def test_lease_expiry_requeues_then_fails(database_url: str, tmp_path: Path) -> None:
    api = start_api(
        database_url,
        tmp_path,
        env={"PHOENIX_LEASE_SECONDS": "1", "PHOENIX_REAP_INTERVAL": "0.2", "PHOENIX_MAX_ATTEMPTS": "2"},
    )
    try:
        heartbeat(api, "flaky")
        status, body, _ = http_json("POST", f"{api.url}/api/v1/tasks", {"type": "health", "host_id": "flaky"})
        assert status == 202, body
        (task_id,) = body["task_ids"]
        assert [t["id"] for t in poll(api, "flaky")] == [task_id]
        # The agent goes quiet: the task comes back to the queue with its attempt counted.
        wait_for(
            lambda: task_row(database_url, task_id)["status"] == "pending",
            timeout=20,
            what="requeue after lease expiry",
        )
        assert task_row(database_url, task_id)["attempts"] == 1
        again = poll(api, "flaky")
        assert [t["id"] for t in again] == [task_id] and again[0]["attempts"] == 2
        wait_for(
            lambda: task_row(database_url, task_id)["status"] == "failed",
            timeout=20,
            what="fail after the last attempt",
        )
        row = task_row(database_url, task_id)
        assert row["attempts"] == 2 and "lease expired" in row["error"]
        assert poll(api, "flaky") == []
    finally:
        api.stop()


def test_result_arriving_after_requeue_is_kept(database_url: str, tmp_path: Path) -> None:
    """An agent that reports after its lease ran out (API down meanwhile) loses nothing."""
    api = start_api(
        database_url, tmp_path, env={"PHOENIX_LEASE_SECONDS": "1", "PHOENIX_REAP_INTERVAL": "0.2"}
    )
    try:
        heartbeat(api, "slow")
        (task_id,) = enqueue_sql(database_url, "slow")
        poll(api, "slow")
        wait_for(lambda: task_row(database_url, task_id)["status"] == "pending", timeout=20, what="requeue")
        assert report(api, "slow", task_id, "completed", result={"done": 1})[0] == 200
        assert task_row(database_url, task_id)["status"] == "completed"
    finally:
        api.stop()


def test_two_api_processes_share_one_queue(api: Service, database_url: str, tmp_path: Path) -> None:
    other = start_api(database_url, tmp_path, name="api2")
    try:
        heartbeat(api, "shared")
        ids = set(enqueue_sql(database_url, "shared", 200))
        seen: list[str] = []

        def claimer(target: Service) -> list[str]:
            mine: list[str] = []
            while tasks := poll(target, "shared"):
                mine.extend(t["id"] for t in tasks)
            return mine

        with ThreadPoolExecutor(10) as pool:
            for got in pool.map(claimer, [api, other] * 5):
                seen.extend(got)
        assert len(seen) == len(set(seen)) and set(seen) == ids
        # A poll waiting on one replica wakes for a task enqueued through any connection.
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(poll, other, "shared", 20)
            wait_for(lambda: waiting_polls(other) >= 1, what="poll waiting on the second replica")
            (task_id,) = enqueue_sql(database_url, "shared")
            assert [t["id"] for t in future.result(timeout=10)] == [task_id]
    finally:
        other.stop()


def test_fan_out_to_a_namespace_is_one_statement(api: Service, database_url: str) -> None:
    for i in range(30):
        heartbeat(api, f"web-{i}", namespace="web")
    heartbeat(api, "db-1", namespace="db")
    status, body, _ = http_json("POST", f"{api.url}/api/v1/tasks", {"type": "health", "namespace": "web"})
    assert status == 202 and body["tasks"] == 30
    status, body, _ = http_json("GET", f"{api.url}/api/v1/tasks?status=pending")
    assert {t["host_id"] for t in body["tasks"]} == {f"web-{i}" for i in range(30)}


@pytest.mark.parametrize("wait", ["abc", "-1", "1000"])
def test_bad_wait_is_rejected(api: Service, wait: str) -> None:
    status, body, headers = http_json(
        "GET", f"{api.url}/api/v1/agent/tasks?wait={wait}", headers={"X-Agent-Host-ID": "h"}
    )
    assert status == 400 and "wait" in body["detail"]
    assert headers["Content-Type"].startswith("application/problem+json")
