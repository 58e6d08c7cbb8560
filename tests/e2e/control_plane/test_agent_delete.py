"""Decommissioned hosts: a silent one is no experiment target, and `DELETE /api/v1/agents/{host_id}`
(`phoenix agents delete`) removes a host, its unfinished tasks and its token (real services and CLI)."""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests.support import http_json
from tests.support.cli import clean_env, run_cli
from tests.support.queue_api import enqueue_sql, heartbeat
from tests.support.services import Stack


def test_a_silent_host_is_not_targeted_and_a_deleted_one_is_gone(stack: Stack, tmp_path: Path) -> None:
    api = stack.api.url
    for host in ("vm-live", "vm-dead"):
        heartbeat(stack.api, host)
    enqueue_sql(stack.database_url, "vm-dead", n=2)
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        # Decommissioned an hour ago: it has not called since.
        conn.execute("UPDATE agents SET last_seen_at = now() - interval '1 hour' WHERE host_id = 'vm-dead'")
    spec = {
        "name": "targets",
        "baseline_pipeline": "process-baseline-v1",
        "candidate_pipeline": "process-topk-v1",
        "target_namespaces": ["default"],
    }
    status, body, _ = http_json("POST", f"{api}/api/v1/experiments", spec)
    assert status == 201 and body["hosts"] == ["vm-live"], body
    http_json("POST", f"{api}/api/v1/experiments/{body['id']}/stop")

    done = run_cli(clean_env(tmp_path / "home", PHOENIX_API_URL=api), "agents", "delete", "vm-dead")
    assert done.returncode == 0, done.stderr
    assert "vm-dead is deleted: 2 unfinished task(s) removed" in done.stdout
    assert http_json("GET", f"{api}/api/v1/agents/vm-dead")[0] == 404
    status, tasks, _ = http_json("GET", f"{api}/api/v1/tasks?host_id=vm-dead")
    assert status == 200 and tasks["tasks"] == [], tasks
    status, problem, _ = http_json("DELETE", f"{api}/api/v1/agents/vm-dead")
    assert status == 404 and "vm-dead" in problem["detail"], problem
    again = run_cli(clean_env(tmp_path / "home", PHOENIX_API_URL=api), "agents", "delete", "vm-dead")
    assert again.returncode != 0 and len(again.stderr.strip().splitlines()) == 1, again.stderr
    # A deleted host cannot enrol again with the shared enrolment token: its token row stays revoked.
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute(
            "SELECT token_hash, revoked_at FROM agent_tokens WHERE host_id = 'vm-dead'"
        ).fetchone()
    assert row is not None and row[0] is None and row[1] is not None
