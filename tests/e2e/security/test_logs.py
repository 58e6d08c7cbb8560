"""No token, secret or URL password reaches a log: the real API, generator and agent, with tokens on."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from phoenix_common.logging import REDACTED, _redact, _ScrubFilter, scrub
from tests.support import free_port, http_json, wait_for
from tests.support.security import ENROLMENT, OPERATOR, agent, issue_token, operator
from tests.support.services import Stack

SECRET_PARAMETER = "phx_" + "s3cr3tparam" * 4


def test_redaction_by_key_and_by_shape() -> None:
    event = _redact(
        None,
        "info",
        {
            "event": "request",
            "token": "t-1",
            "api_token": "t-2",
            "headers": {"Authorization": "Bearer t-3", "X-Phoenix-Agent-Token": "t-4", "Accept": "*/*"},
            "url": "postgresql://phoenix:pg-pass-5@db.example.com:5432/phoenix",
            "error": "auth failed for Authorization: Bearer t-6 on /api/v1/ws?token=t-7&topics=a",
            "issued": [f"made {SECRET_PARAMETER}"],
        },
    )
    text = repr(event)
    for secret in ("t-1", "t-2", "t-3", "t-4", "pg-pass-5", "t-6", "t-7", SECRET_PARAMETER):
        assert secret not in text, secret
    assert event["event"] == "request" and event["headers"]["Accept"] == "*/*"
    assert event["url"] == f"postgresql://phoenix:{REDACTED}@db.example.com:5432/phoenix"
    assert (
        scrub("no secrets here: postgresql:///phoenix?host=/tmp")
        == "no secrets here: postgresql:///phoenix?host=/tmp"
    )

    record = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "bad %s", ("Bearer t-8",), None)
    assert _ScrubFilter().filter(record) and "t-8" not in record.getMessage()


def _logs(*paths: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in paths if p.exists())


async def _ws_with_query_token(api_url: str) -> None:
    url = api_url.replace("http://", "ws://") + f"/api/v1/ws?token={OPERATOR}&topics=agents"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_json({"subscribe": ["agents", "deployments"]})
        assert (await ws.receive_json(timeout=10))["type"] == "subscribed"


async def test_no_token_reaches_any_log(
    secured_stack: Stack, agent_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    api = secured_stack.api
    host = f"logs-{free_port()}"
    issued = issue_token(api, host)
    # The real agent runs with the operator-issued token (its setting is PHOENIX_AGENT_TOKEN).
    monkeypatch.setenv("PHOENIX_AGENT_TOKEN", issued)
    real = agent_factory(api.url, host_id=host)

    def row() -> dict[str, Any]:
        status, body, _ = http_json("GET", f"{api.url}/api/v1/agents/{host}", headers=operator())
        return dict(body) if status == 200 else {}

    wait_for(row, timeout=60, what="the agent to register with its issued token")

    # A deployment the agent applies: the API renders it through the generator with the operator token.
    ports = {"prometheus_port": free_port(), "health_port": free_port(), "telemetry_port": free_port()}
    body = {
        "name": "logs",
        "namespace": "default",
        "template": "process-baseline-v1",
        "parameters": {"collection_interval": 1, **ports},
    }
    status, created, _ = http_json("POST", f"{api.url}/api/v1/pipeline-deployments", body, operator())
    assert status == 201, created
    wait_for(
        lambda: row().get("config_hash") == created["config_hash"], timeout=90, what="the agent to apply it"
    )

    # Another host enrols with the enrolment token and uses the token it gets back.
    status, answer, _ = http_json(
        "POST", f"{api.url}/api/v1/agent/heartbeat", {}, agent("logs-enrol", ENROLMENT)
    )
    assert status == 200
    enrolled = answer["agent_token"]
    assert (
        http_json("GET", f"{api.url}/api/v1/agent/tasks?wait=0", headers=agent("logs-enrol", enrolled))[0]
        == 200
    )
    # Refusals: tokens in the wrong places, a secret-looking parameter value, the WebSocket's ?token=.
    http_json("GET", f"{api.url}/api/v1/agent/tasks?wait=0", headers=agent("logs-enrol", issued))
    http_json("GET", f"{api.url}/api/v1/agent/tasks?wait=0", headers=agent(host, OPERATOR))
    http_json("GET", f"{api.url}/api/v1/agents?token={OPERATOR}")
    http_json("GET", f"{api.url}/api/v1/agents", headers={"Authorization": f"Bearer {enrolled}"})
    http_json(
        "GET",
        f"{secured_stack.generator.url}/api/v1/templates",
        headers={"Authorization": f"Bearer {issued}"},
    )
    bad = {**body, "parameters": {"experiment_id": SECRET_PARAMETER + "/x"}, "allow_empty_namespace": True}
    assert http_json("POST", f"{api.url}/api/v1/pipeline-deployments", bad, operator())[0] == 422
    await _ws_with_query_token(api.url)

    real.process.stop()
    api.stop()
    secured_stack.generator.stop()
    logs = _logs(api.process.log_path, secured_stack.generator.process.log_path, real.process.log_path)
    assert "agent_token_issued" in logs and "agent_token_enrolled" in logs  # the logs are the right ones
    for secret in (OPERATOR, ENROLMENT, issued, enrolled, issued[4:], enrolled[4:]):
        assert secret not in logs, f"a token reached a log: {secret[:6]}..."
    assert SECRET_PARAMETER not in logs
