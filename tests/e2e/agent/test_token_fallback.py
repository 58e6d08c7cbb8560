"""A token saved by an earlier enrolment must not lock out an agent whose configured token an operator
rotated: refused (401/403), the agent falls back to the configured token and drops the stored one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from agent.client import ApiUnavailable, ControlPlaneClient
from tests.support import free_port, http_json, wait_for
from tests.support.security import OPERATOR, agent, issue_token, operator
from tests.support.services import Service, start_api


@pytest.fixture
def issued_only(database_url: str, tmp_path: Path) -> Iterator[Service]:
    """Only operator-issued agent tokens let agents in."""
    api = start_api(
        database_url, tmp_path, env={"PHOENIX_API_TOKEN": OPERATOR, "PHOENIX_AGENT_TOKENS_REQUIRED": "true"}
    )
    yield api
    api.stop()


def test_a_rotated_token_in_the_config_wins_over_the_refused_stored_one(
    issued_only: Service, tmp_path: Path, agent_factory: Any
) -> None:
    api = issued_only
    host = f"rot-{free_port()}"
    stale = issue_token(api, host)
    current = issue_token(api, host)  # re-issued: the first one stops working at once
    assert http_json("POST", f"{api.url}/api/v1/agent/heartbeat", {}, agent(host, stale))[0] == 401
    # The stale token sits in the state dir, as an earlier enrolment would have left it.
    state_dir = tmp_path / "agent-state"
    state_dir.mkdir(mode=0o750)
    token_file = state_dir / "agent_token"
    token_file.write_text(stale)
    token_file.chmod(0o600)

    proc = agent_factory(api.url, host_id=host, env={"PHOENIX_AGENT_TOKEN": current})

    def registered() -> bool:
        status, _, _ = http_json("GET", f"{api.url}/api/v1/agents/{host}", headers=operator())
        return status == 200

    wait_for(registered, timeout=60, what="the agent to get in with the configured token")
    wait_for(lambda: not token_file.exists(), timeout=30, what="the refused stored token to be dropped")
    logs = proc.logs()
    fallbacks = [line for line in logs if line.get("event") == "agent_token_fallback"]
    assert len(fallbacks) == 1 and fallbacks[0]["status"] == 401, fallbacks
    assert [line for line in logs if line.get("event") == "agent_stored_token_dropped"]
    text = proc.process.log_path.read_text()
    assert stale not in text and current not in text
    # It keeps working on the configured token (the next heartbeats are accepted).
    seen = http_json("GET", f"{api.url}/api/v1/agents/{host}", headers=operator())[1]["last_seen_at"]
    wait_for(
        lambda: (
            http_json("GET", f"{api.url}/api/v1/agents/{host}", headers=operator())[1]["last_seen_at"] != seen
        ),
        timeout=30,
        what="another accepted heartbeat",
    )


async def test_both_tokens_refused_keeps_the_stored_one_and_logs_once(issued_only: Service) -> None:
    api = issued_only
    host = f"both-{free_port()}"
    good = issue_token(api, host)
    dropped: list[bool] = []
    async with aiohttp.ClientSession() as session:
        client = ControlPlaneClient(
            session,
            api.url,
            host,
            "phx_" + "w" * 43,
            stored_token="phx_" + "s" * 43,
            on_stored_token_dropped=lambda: dropped.append(True),
        )
        with capture_logs() as logs:
            for _ in range(3):
                with pytest.raises(ApiUnavailable, match="HTTP 401"):
                    await client.heartbeat({"namespace": "default"})
        assert [e["event"] for e in logs].count("agent_token_fallback") == 1, logs
        assert dropped == []
        assert all("phx_" not in str(e) for e in logs), logs

        # A stored token that is the good one keeps being used: a refused configured token changes nothing.
        client = ControlPlaneClient(
            session,
            api.url,
            host,
            "phx_" + "w" * 43,
            stored_token=good,
            on_stored_token_dropped=lambda: dropped.append(True),
        )
        with capture_logs() as logs:
            assert (await client.heartbeat({"namespace": "default"}))["host_id"] == host
        assert dropped == [] and not [e for e in logs if e["event"] == "agent_token_fallback"]
