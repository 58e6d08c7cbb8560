"""Raw SQL and HTTP steps of the queue tests (enqueue, heartbeat, poll)."""

from __future__ import annotations

import psycopg

from tests.support import http_json
from tests.support.services import Service


def heartbeat(api: Service, host: str, namespace: str = "default") -> None:
    status, body, _ = http_json(
        "POST",
        f"{api.url}/api/v1/agent/heartbeat",
        {"namespace": namespace, "version": "test"},
        {"X-Agent-Host-ID": host},
    )
    assert status == 200, body


def enqueue_sql(
    database_url: str, host: str, n: int = 1, type_: str = "health", action: str = "check", priority: int = 0
) -> list[str]:
    """Insert tasks the way the API does (the trigger NOTIFYs waiting polls)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "INSERT INTO tasks (host_id, type, action, priority) "
            "SELECT %s, %s, %s, %s FROM generate_series(1, %s) RETURNING id",
            (host, type_, action, priority, n),
        ).fetchall()
    return [str(r[0]) for r in rows]


def poll(api: Service, host: str, wait: float = 0) -> list[dict]:
    status, body, _ = http_json(
        "GET", f"{api.url}/api/v1/agent/tasks?wait={wait}", headers={"X-Agent-Host-ID": host}
    )
    assert status == 200, body
    return body["tasks"]


def waiting_polls(api: Service) -> int:
    """Long polls the API holds open now (its phoenix_long_polls_waiting gauge)."""
    _status, text, _ = http_json("GET", f"{api.url}/metrics")
    for line in str(text).splitlines():
        if line.startswith("phoenix_long_polls_waiting "):
            return int(float(line.split()[1]))
    return 0
