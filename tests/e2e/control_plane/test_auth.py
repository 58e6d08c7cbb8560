"""Tokens: operators need the API token, each agent its own host-bound token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.auth import AGENT_TOKEN_HEADER
from tests.support import http_json
from tests.support.services import Service, start_api


@pytest.fixture
def secured(database_url: str, tmp_path: Path) -> Iterator[Service]:
    api = start_api(
        database_url,
        tmp_path,
        env={"PHOENIX_API_TOKEN": "op-secret-1-0123456789", "PHOENIX_AGENT_TOKEN": "enrol-secret-2"},
    )
    yield api
    api.stop()


def test_operator_endpoints_need_the_api_token(secured: Service) -> None:
    assert http_json("GET", f"{secured.url}/api/v1/agents")[0] == 401
    assert (
        http_json("GET", f"{secured.url}/api/v1/agents", headers={"Authorization": "Bearer wrong"})[0] == 401
    )
    assert (
        http_json(
            "GET", f"{secured.url}/api/v1/agents", headers={"Authorization": "Bearer op-secret-1-0123456789"}
        )[0]
        == 200
    )
    assert http_json("GET", f"{secured.url}/health")[0] == 200


def test_one_hosts_token_cannot_act_as_another(secured: Service) -> None:
    enrol = {"Authorization": "Bearer enrol-secret-2"}
    assert http_json("POST", f"{secured.url}/api/v1/agent/heartbeat", {}, {"X-Agent-Host-ID": "a"})[0] == 401
    status, body, headers = http_json(
        "POST", f"{secured.url}/api/v1/agent/heartbeat", {}, {"X-Agent-Host-ID": "a", **enrol}
    )
    assert status == 200
    token_a = body["agent_token"]
    assert headers[AGENT_TOKEN_HEADER] == token_a
    status, body, _ = http_json(
        "POST", f"{secured.url}/api/v1/agent/heartbeat", {}, {"X-Agent-Host-ID": "b", **enrol}
    )
    token_b = body["agent_token"]
    assert token_a != token_b
    # Host a's token works for a, not for b; the enrolment token no longer works for a bound host.
    assert (
        http_json(
            "GET",
            f"{secured.url}/api/v1/agent/tasks?wait=0",
            headers={"X-Agent-Host-ID": "a", "Authorization": f"Bearer {token_a}"},
        )[0]
        == 200
    )
    status, body, _ = http_json(
        "GET",
        f"{secured.url}/api/v1/agent/tasks?wait=0",
        headers={"X-Agent-Host-ID": "b", "Authorization": f"Bearer {token_a}"},
    )
    assert status == 403 and "cannot act as host b" in body["detail"]
    assert (
        http_json(
            "GET", f"{secured.url}/api/v1/agent/tasks?wait=0", headers={"X-Agent-Host-ID": "a", **enrol}
        )[0]
        == 403
    )


def test_tokens_never_reach_the_log(secured: Service) -> None:
    http_json(
        "POST",
        f"{secured.url}/api/v1/agent/heartbeat",
        {},
        {"X-Agent-Host-ID": "c", "Authorization": "Bearer enrol-secret-2"},
    )
    secured.stop()
    log = secured.process.log_path.read_text()
    assert "enrol-secret-2" not in log and "op-secret-1-0123456789" not in log
