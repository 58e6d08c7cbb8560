"""schemathesis against both services with tokens on: authenticated requests, no 5xx, no schema violation.

The same contract run as tests/e2e/contract/test_schemathesis.py, but the API has an operator token and an
enrolment token and the generator has the operator token, so every request passes the token checks and
reaches the handlers. Agent endpoints run with the seeded host's own token and its host id pinned (any
other host id with that token is a 403, which the document lists, but would test only the refusal).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import http_json
from tests.support.schemathesis import (
    HOST,
    LONG_POLL_MAX,
    NAMESPACE,
    explain_failure,
    openapi_document,
    run_schemathesis,
)
from tests.support.security import agent, issue_token, operator, start_secured_stack
from tests.support.services import Stack

MAX_EXAMPLES = "20"


@pytest.fixture
def secured_contract_stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    stack = start_secured_stack(
        database_url,
        tmp_path,
        api_env={
            "PHOENIX_LONG_POLL_MAX": str(LONG_POLL_MAX),
            "PHOENIX_LONG_POLL_DEFAULT": str(LONG_POLL_MAX / 2),
        },
    )
    yield stack
    stack.api.stop()
    stack.generator.stop()


def _call(method: str, url: str, body: Any, headers: dict[str, str], expect: int) -> Any:
    status, answer, _ = http_json(method, url, body, headers=headers)
    assert status == expect, f"{method} {url} answered {status}: {answer}"
    return answer


def seed(api: Any) -> tuple[dict[str, str], str]:
    """An agent with an operator-issued token, a deployment, a deploying experiment and its task."""
    token = issue_token(api, HOST)
    heartbeat = {
        "version": "0.1.0",
        "namespace": NAMESPACE,
        "collector": {
            "state": "running",
            "restarts": 0,
            "config_hash": "0" * 64,
            "pipeline": "process-baseline-v1",
        },
    }
    _call("POST", f"{api.url}/api/v1/agent/heartbeat", heartbeat, agent(HOST, token), 200)
    deployment = _call(
        "POST",
        f"{api.url}/api/v1/pipeline-deployments",
        {"name": "contract", "namespace": NAMESPACE, "template": "process-baseline-v1"},
        operator(),
        201,
    )
    experiment = _call(
        "POST",
        f"{api.url}/api/v1/experiments",
        {
            "name": "contract",
            "baseline_pipeline": "process-baseline-v1",
            "candidate_pipeline": "process-topk-v1",
            "target_namespaces": [NAMESPACE],
            "critical_processes": ["sshd"],
            "duration": "10m",
            "warmup": 0,
        },
        operator(),
        201,
    )
    assert experiment["phase"] == "deploying", experiment
    tasks = _call("GET", f"{api.url}/api/v1/tasks?host_id={HOST}", None, operator(), 200)["tasks"]
    ids = {
        "host": HOST,
        "deployment": deployment["id"],
        "experiment": experiment["id"],
        "task": tasks[0]["id"],
    }
    return ids, token


def _pinned(document: Path) -> Path:
    """The document with X-Agent-Host-ID limited to the seeded host, whose token the run sends."""
    doc = json.loads(document.read_text())
    doc["components"]["parameters"]["AgentHostId"]["schema"] = {"type": "string", "enum": [HOST]}
    out = document.with_name(f"pinned-{document.name}")
    out.write_text(json.dumps(doc))
    return out


def _bearer(token: str) -> tuple[str, str]:
    return ("--header", f"Authorization: Bearer {token}")


def test_control_plane_with_tokens_conforms(secured_contract_stack: Stack, tmp_path: Path) -> None:
    api, generator = secured_contract_stack.api, secured_contract_stack.generator
    ids, token = seed(api)
    document = openapi_document("control_plane", ids, tmp_path)
    limit = ("--max-examples", MAX_EXAMPLES)
    # Agent endpoints first: the operator run below rotates the seeded host's token.
    agents = run_schemathesis(
        _pinned(document), api, tmp_path, *_bearer(token), "--include-path-regex", "^/api/v1/agent/", *limit
    )
    assert agents.returncode == 0, explain_failure(agents, api, generator)
    (tmp_path / f"schemathesis-{api.port}.txt").rename(tmp_path / "schemathesis-agent-endpoints.txt")
    # The run's requests passed the token check and reached the handlers: its measurements were stored.
    results = _call("GET", f"{api.url}/api/v1/experiments/{ids['experiment']}/results", None, operator(), 200)
    assert results["measurements"] > 0, results
    operators = run_schemathesis(
        document,
        api,
        tmp_path,
        *_bearer(operator()["Authorization"].removeprefix("Bearer ")),
        "--exclude-path-regex",
        "^/api/v1/(agent/|ws$)",
        *limit,
    )
    assert operators.returncode == 0, explain_failure(operators, api, generator)


def test_config_generator_with_a_token_conforms(secured_contract_stack: Stack, tmp_path: Path) -> None:
    api, generator = secured_contract_stack.api, secured_contract_stack.generator
    ids, _ = seed(api)
    document = openapi_document("config_generator", ids, tmp_path)
    token = operator()["Authorization"].removeprefix("Bearer ")
    result = run_schemathesis(document, generator, tmp_path, *_bearer(token), "--max-examples", MAX_EXAMPLES)
    assert result.returncode == 0, explain_failure(result, generator, api)
