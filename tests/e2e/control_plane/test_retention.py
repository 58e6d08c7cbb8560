"""Retention: old final tasks, events and measurements are pruned in the background, the rest kept."""

from __future__ import annotations

import asyncio
import re
import urllib.request
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from control_plane import retention
from control_plane.db import Database, make_pool
from control_plane.settings import Settings
from control_plane.stores.retention import RetentionStore
from phoenix_common.settings import SettingsError, load
from tests.support import wait_for
from tests.support.services import start_api

DAY = 86400
OLD = "now() - interval '40 days'"
# Measurements are kept 90 days by default.
OLD_MEASUREMENT = "now() - interval '100 days'"
SPEC = {"warmup_seconds": 0, "duration_seconds": 10**9, "target_namespaces": ["default"]}


def _exec(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any] | None = None) -> list[Any]:
    cur = conn.execute(sql.encode(), params or {})
    return cur.fetchall() if cur.description else []


def _task(
    conn: psycopg.Connection[Any],
    status: str,
    *,
    age: str = OLD,
    n: int = 1,
    type_: str = "health",
    action: str = "check",
    experiment_id: str | None = None,
    deployment_id: str | None = None,
) -> list[str]:
    """Insert `n` tasks last changed at `age` (final ones with their finish time and result)."""
    rows = _exec(
        conn,
        f"""INSERT INTO tasks (host_id, type, action, status, attempts, experiment_id, deployment_id,
                               created_at, updated_at, completed_at, failed_at, result, error)
            SELECT 'h-retention', %(type)s, %(action)s, %(status)s, 1, %(experiment_id)s, %(deployment_id)s,
                   {age}, {age},
                   CASE WHEN %(status)s = 'completed' THEN {age} END,
                   CASE WHEN %(status)s = 'failed' THEN {age} END,
                   CASE WHEN %(status)s = 'completed' THEN '{{"ok": true}}'::jsonb END,
                   CASE WHEN %(status)s = 'failed' THEN 'boom' END
            FROM generate_series(1, %(n)s)
            RETURNING id""",
        {
            "type": type_,
            "action": action,
            "status": status,
            "experiment_id": experiment_id,
            "deployment_id": deployment_id,
            "n": n,
        },
    )
    return [str(r[0]) for r in rows]


def _event(
    conn: psycopg.Connection[Any], subject: str, *, age: str = OLD, data: dict[str, Any] | None = None
) -> int:
    rows = _exec(
        conn,
        f"INSERT INTO events (ts, topic, kind, subject, data) "
        f"VALUES ({age}, 't', 'k', %(s)s, %(d)s) RETURNING id",
        {"s": subject, "d": Jsonb(data or {})},
    )
    return int(rows[0][0])


def _measurement(conn: psycopg.Connection[Any], experiment_id: str, *, age: str = OLD_MEASUREMENT) -> int:
    rows = _exec(
        conn,
        f"""INSERT INTO experiment_measurements
                (experiment_id, host_id, variant, ts, received_at, phase, sample)
            VALUES (%(e)s, 'h-retention', 'baseline', {age}, {age}, 'running', '{{}}'::jsonb) RETURNING id""",
        {"e": experiment_id},
    )
    return int(rows[0][0])


def _seed(database_url: str) -> dict[str, Any]:
    """Rows retention must delete and rows it must keep, backdated in SQL."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        for exp_id, phase in (
            ("exp-running", "running"),
            ("exp-pending", "pending"),
            ("exp-done", "completed"),
            ("exp-promoted", "completed"),
        ):
            _exec(
                conn,
                "INSERT INTO experiments (id, name, spec, phase) "
                "VALUES (%(id)s, %(id)s, %(spec)s, %(phase)s)",
                {"id": exp_id, "spec": Jsonb(SPEC), "phase": phase},
            )
        _exec(
            conn,
            """INSERT INTO pipeline_deployments (id, name, namespace, template, status, experiment_id)
               VALUES ('dep-active', 'a', 'default', 'process-baseline-v1', 'active', 'exp-promoted'),
                      ('dep-old', 'o', 'default', 'process-baseline-v1', 'superseded', NULL)""",
        )
        pruned = {
            "tasks": [
                *_task(conn, "completed", n=23),
                *_task(conn, "failed", n=2),
                *_task(conn, "completed", type_="experiment", action="start", experiment_id="exp-done"),
                *_task(conn, "completed", type_="deployment", action="apply", deployment_id="dep-old"),
            ],
            "events": [
                _event(conn, "h-retention"),
                _event(conn, "exp-done", data={"experiment_id": "exp-done"}),
                _event(conn, "dep-old"),
            ],
            "measurements": [_measurement(conn, "exp-done") for _ in range(3)],
        }
        kept = {
            "tasks": [
                *_task(conn, "pending"),
                *_task(conn, "assigned"),
                *_task(conn, "running"),
                *_task(conn, "completed", age="now() - interval '29 days'"),
                *_task(conn, "completed", type_="experiment", action="start", experiment_id="exp-running"),
                *_task(conn, "completed", type_="deployment", action="apply", deployment_id="dep-active"),
            ],
            "events": [
                _event(conn, "h-retention", age="now() - interval '1 day'"),
                _event(conn, "exp-running"),
                _event(conn, "exp-pending"),
                _event(conn, "some-task-id", data={"experiment_id": "exp-running"}),
                _event(conn, "dep-active"),
                _event(conn, "other-task-id", data={"deployment_id": "dep-active"}),
            ],
            "measurements": [
                _measurement(conn, "exp-running"),
                _measurement(conn, "exp-promoted"),
                _measurement(conn, "exp-done", age="now() - interval '89 days'"),
            ],
        }
    return {"pruned": pruned, "kept": kept}


def _present(database_url: str) -> dict[str, set[str]]:
    with psycopg.connect(database_url) as conn:
        return {
            "tasks": {str(r[0]) for r in _exec(conn, "SELECT id FROM tasks")},
            "events": {str(r[0]) for r in _exec(conn, "SELECT id FROM events")},
            "measurements": {str(r[0]) for r in _exec(conn, "SELECT id FROM experiment_measurements")},
        }


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and ",".join(sorted(match.group(1).split(","))) == want:
            return float(match.group(2))
    raise AssertionError(f"{name}{{{want}}} is not exposed")


def _scrape(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        return str(response.read().decode())


def test_background_retention_prunes_old_final_rows_and_keeps_the_rest(
    database_url: str, tmp_path: Path
) -> None:
    seeded = _seed(database_url)
    # A batch of 7 makes the 27 expired tasks take several statements in one pass.
    api = start_api(
        database_url, tmp_path, env={"PHOENIX_RETENTION_INTERVAL": "1", "PHOENIX_RETENTION_BATCH": "7"}
    )
    try:
        pruned = {table: {str(i) for i in ids} for table, ids in seeded["pruned"].items()}
        kept = {table: {str(i) for i in ids} for table, ids in seeded["kept"].items()}

        def pruned_all() -> bool:
            present = _present(database_url)
            return all(not (present[t] & pruned[t]) for t in pruned)

        wait_for(pruned_all, timeout=30, interval=0.2, what="old rows to be pruned")
        present = _present(database_url)
        for table, ids in kept.items():
            assert ids <= present[table], f"{table}: retention deleted rows it must keep"

        with psycopg.connect(database_url) as conn:
            tally = {(r[0], r[1]): r[2] for r in _exec(conn, "SELECT type, status, n FROM tasks_pruned")}
        assert tally == {
            ("health", "completed"): 23,
            ("health", "failed"): 2,
            ("experiment", "completed"): 1,
            ("deployment", "completed"): 1,
        }
        metrics = _scrape(api.url)
        # Finished tasks count what was pruned too: the counter never goes backwards.
        assert _metric(metrics, "phoenix_tasks_finished_total", type="health", status="completed") == 24
        assert _metric(metrics, "phoenix_tasks_finished_total", type="health", status="failed") == 2
        assert _metric(metrics, "phoenix_retention_pruned_rows_total", table="tasks") == 27
        assert _metric(metrics, "phoenix_retention_pruned_rows_total", table="events") == 3
        assert _metric(metrics, "phoenix_retention_pruned_rows_total", table="experiment_measurements") == 3
        assert "retention_pass" in api.process.tail(200)
    finally:
        api.stop()


async def test_concurrent_passes_delete_each_row_once(database_url: str) -> None:
    """Replicas pruning at the same time share the work without errors and count every row once."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        _task(conn, "completed", n=3000)
        _task(conn, "running", n=10)
    pools = [make_pool(database_url, 1, 2) for _ in range(4)]
    for pool in pools:
        await pool.open(wait=True, timeout=30)
    try:
        rules = retention.retention_rules(Settings())
        counts = await asyncio.gather(
            *(retention.prune(RetentionStore(Database(pool)), rules, 100) for pool in pools)
        )
    finally:
        for pool in pools:
            await pool.close()
    assert sum(c["tasks"] for c in counts) == 3000
    with psycopg.connect(database_url) as conn:
        assert _exec(conn, "SELECT status, count(*) FROM tasks GROUP BY status") == [("running", 10)]
        assert _exec(conn, "SELECT n FROM tasks_pruned") == [(3000,)]


def test_retention_settings_from_the_environment() -> None:
    settings = load(
        Settings,
        env={
            "PHOENIX_RETENTION_TASKS": "7d",
            "PHOENIX_RETENTION_EVENTS": "0",
            "PHOENIX_RETENTION_MEASUREMENTS": "36h",
            "PHOENIX_RETENTION_INTERVAL": "10m",
        },
    )
    assert (settings.retention_tasks, settings.retention_events, settings.retention_measurements) == (
        7 * DAY,
        0,
        36 * 3600,
    )
    assert settings.retention_interval == 600
    assert [r.table for r in retention.retention_rules(settings)] == ["tasks", "experiment_measurements"]
    defaults = Settings()
    assert (defaults.retention_tasks, defaults.retention_events, defaults.retention_measurements) == (
        30 * DAY,
        30 * DAY,
        90 * DAY,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PHOENIX_RETENTION_TASKS": "30"}, "retention_tasks must be 0 (keep forever) or at least 1h"),
        ({"PHOENIX_RETENTION_EVENTS": "-1d"}, "retention_events must be a duration"),
        ({"PHOENIX_RETENTION_MEASUREMENTS": "soon"}, "retention_measurements must be a duration"),
        ({"PHOENIX_RETENTION_INTERVAL": "0"}, "retention_interval must be at least 1s"),
        ({"PHOENIX_RETENTION_BATCH": "0"}, "retention_batch must be between 1 and 100000"),
    ],
)
def test_bad_retention_settings_name_the_field(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        load(Settings, env=env)
