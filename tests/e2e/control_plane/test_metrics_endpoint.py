"""/metrics: a stored value that does not fit cannot break a scrape, scrapes share their database reads,
and an optional metrics token guards it (a real API on a real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support import http_json
from tests.support.queue_api import heartbeat
from tests.support.services import Service, start_api

METRICS_TOKEN = "scrape-" + "5e1f" * 6


@pytest.fixture
def cached_api(database_url: str, tmp_path: Path) -> Iterator[Service]:
    service = start_api(
        database_url,
        tmp_path,
        env={"PHOENIX_METRICS_CACHE_SECONDS": "300", "PHOENIX_METRICS_TOKEN": METRICS_TOKEN},
    )
    yield service
    service.stop()


def scrape(api: Service, token: str | None = METRICS_TOKEN) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, text, _ = http_json("GET", f"{api.url}/metrics", headers=headers)
    return status, str(text)


def test_a_restart_count_beyond_bigint_stored_earlier_does_not_break_the_scrape(
    api: Service, database_url: str
) -> None:
    heartbeat(api, "vm-big")
    heartbeat(api, "vm-ok")
    with psycopg.connect(database_url, autocommit=True) as conn:
        # What an API before bounded bodies stored for an agent that reported restarts 10^20.
        conn.execute(
            "UPDATE agents SET collector = '{\"restarts\": 100000000000000000000}' WHERE host_id = 'vm-big'"
        )
        conn.execute("UPDATE agents SET collector = '{\"restarts\": 3}' WHERE host_id = 'vm-ok'")
    status, text = scrape(api, None)
    assert status == 200, text
    assert 'phoenix_agent_collector_restarts_total{host_id="vm-ok"} 3.0' in text
    assert 'host_id="vm-big"' not in text.split("phoenix_agent_collector_restarts")[1].split("# HELP")[0]


def test_the_metrics_token_guards_the_scrape_and_scrapes_share_their_reads(cached_api: Service) -> None:
    assert scrape(cached_api, None)[0] == 401
    assert scrape(cached_api, "wrong-token-0123456789")[0] == 401
    heartbeat(cached_api, "vm-first")
    status, first = scrape(cached_api)
    assert status == 200 and 'phoenix_agent_last_seen_seconds{host_id="vm-first"}' in first
    # Within metrics_cache_seconds a scrape serves the last reads: a host that came since is not there yet
    # (the database was not read again), while in-process figures stay live.
    heartbeat(cached_api, "vm-later")
    status, second = scrape(cached_api)
    assert status == 200 and 'host_id="vm-later"' not in second, second
    assert "phoenix_http_requests_total" in second
