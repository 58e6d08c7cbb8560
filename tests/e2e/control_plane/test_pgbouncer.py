"""The API through a real pgbouncer in transaction mode (long_poll_wakeup interval, no prepared
statements; migrations and LISTEN on a direct connection): the queue's guarantees hold."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import wait_for
from tests.support.pgbouncer import pgbouncer
from tests.support.queue_api import enqueue_sql, heartbeat, poll, waiting_polls
from tests.support.services import Service, start_api

HOSTS = [f"pool-{i}" for i in range(5)]
TASKS_PER_HOST = 30


@pytest.fixture
def pooled_api(database_url: str, tmp_path: Path) -> Iterator[Service]:
    with pgbouncer(database_url) as pooled:
        api = start_api(
            pooled,
            tmp_path,
            env={
                "PHOENIX_DIRECT_DATABASE_URL": database_url,
                "PHOENIX_LONG_POLL_WAKEUP": "interval",
                "PHOENIX_PREPARED_STATEMENTS": "false",
                "PHOENIX_POOL_MAX_SIZE": "6",
            },
        )
        try:
            yield api
        finally:
            api.stop()


def test_no_task_is_lost_or_given_twice_through_pgbouncer(pooled_api: Service, database_url: str) -> None:
    for host in HOSTS:
        heartbeat(pooled_api, host)
    enqueued = {t for host in HOSTS for t in enqueue_sql(database_url, host, n=TASKS_PER_HOST)}
    claimed: list[str] = []
    lock = threading.Lock()

    def drain(host: str) -> None:
        # Two pollers a host, as a host whose agent restarted mid-poll would have.
        empty = 0
        while empty < 2:
            tasks = poll(pooled_api, host, wait=1)
            empty = 0 if tasks else empty + 1
            with lock:
                claimed.extend(t["id"] for t in tasks)

    with ThreadPoolExecutor(len(HOSTS) * 2) as pool:
        list(pool.map(drain, HOSTS * 2))
    assert len(claimed) == len(set(claimed)), "a task was given twice"
    assert set(claimed) == enqueued, "a task was lost"


def test_a_waiting_long_poll_is_answered_through_pgbouncer(pooled_api: Service, database_url: str) -> None:
    heartbeat(pooled_api, "waiter")
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(poll, pooled_api, "waiter", 20)
        wait_for(lambda: waiting_polls(pooled_api) >= 1, timeout=15, what="the long poll to wait")
        (task_id,) = enqueue_sql(database_url, "waiter")
        tasks = waiting.result(timeout=30)
    # Interval wake-up: the poll re-queries each long_poll_interval and answers with the new task.
    assert [t["id"] for t in tasks] == [task_id]
