"""The long-poll dispatcher against the real API: idle polls cost no claim, and nothing is missed."""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psycopg

from tests.support.queue_api import enqueue_sql, heartbeat, poll
from tests.support.services import Service


def counter(api: Service, name: str) -> float:
    with urllib.request.urlopen(f"{api.url}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} is not exposed")


CLAIMS = "phoenix_long_poll_claim_statements_total"
SKIPPED = "phoenix_long_poll_claims_skipped_total"


def test_an_idle_host_polls_again_without_a_claim(api: Service) -> None:
    heartbeat(api, "idle-host")
    assert poll(api, "idle-host", wait=0.2) == []  # the first poll claims (and finds nothing)
    claims, skipped = counter(api, CLAIMS), counter(api, SKIPPED)
    for _ in range(3):
        assert poll(api, "idle-host", wait=0.2) == []
    assert counter(api, CLAIMS) == claims, "a poll of a host known to be idle ran a claim"
    assert counter(api, SKIPPED) == skipped + 3


def test_work_reaches_an_idle_host_whether_inserted_or_requeued(api: Service, database_url: str) -> None:
    heartbeat(api, "h-wake")
    assert poll(api, "h-wake", wait=0.2) == []  # now known idle: only a NOTIFY can make it claim
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(poll, api, "h-wake", 30)
        (task_id,) = enqueue_sql(database_url, "h-wake", 1)
        (got,) = waiting.result(timeout=30)
    assert got["id"] == task_id

    # An operator puts the delivered task back by hand: the requeue trigger wakes the waiting poll.
    assert poll(api, "h-wake", wait=0.2) == []
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(poll, api, "h-wake", 30)
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE tasks SET status = 'pending', lease_expires_at = NULL WHERE id = %s", (task_id,)
            )
        (again,) = waiting.result(timeout=30)
    assert again["id"] == task_id and again["attempts"] == 2
