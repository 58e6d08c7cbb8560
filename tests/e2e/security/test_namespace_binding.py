"""A host's token cannot move it into another namespace: with agent tokens on, its namespace is bound at
token issue or first contact, and only an operator moves it (real API and generator, real PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests.support import http_json
from tests.support.cli import clean_env, run_cli
from tests.support.security import OPERATOR, agent, assert_problem, issue_token, operator
from tests.support.services import Stack


def beat(stack: Stack, host: str, token: str, namespace: str) -> tuple[int, object, object]:
    return http_json(
        "POST", f"{stack.api.url}/api/v1/agent/heartbeat", {"namespace": namespace}, agent(host, token)
    )


def namespace_of(stack: Stack, host: str) -> str:
    status, body, _ = http_json("GET", f"{stack.api.url}/api/v1/agents/{host}", headers=operator())
    assert status == 200, body
    return str(body["namespace"])


def test_a_heartbeat_cannot_move_its_host_and_an_operator_can(secured_stack: Stack, tmp_path: Path) -> None:
    api = secured_stack.api.url
    dev = issue_token(secured_stack.api, "dev-1")
    assert beat(secured_stack, "dev-1", dev, "dev")[0] == 200  # the first contact binds it to dev
    # A compromised dev VM claims prod: refused, named, recorded; the host stays in dev.
    assert_problem(*beat(secured_stack, "dev-1", dev, "prod"), 403, "namespace")
    assert namespace_of(secured_stack, "dev-1") == "dev"
    with psycopg.connect(secured_stack.database_url) as conn:
        (refused,) = conn.execute(
            "SELECT data FROM events WHERE kind = 'agent_namespace_refused' AND subject = 'dev-1'"
        ).fetchall()
    assert refused[0] == {"host_id": "dev-1", "namespace": "dev", "reported": "prod"}

    # An operator moves it (the CLI's way); its agent's config still says dev until updated: taken,
    # without moving it back. Any other namespace is still refused.
    env = clean_env(tmp_path / "home", PHOENIX_API_URL=api, PHOENIX_API_TOKEN=OPERATOR)
    moved = run_cli(env, "agents", "move", "dev-1", "staging")
    assert moved.returncode == 0 and "namespace staging" in moved.stdout, moved.stderr
    assert beat(secured_stack, "dev-1", dev, "dev")[0] == 200
    assert namespace_of(secured_stack, "dev-1") == "staging"
    assert_problem(*beat(secured_stack, "dev-1", dev, "prod"), 403, "namespace")

    # A token issued with a namespace binds the host before it ever calls.
    status, issued, _ = http_json(
        "POST", f"{api}/api/v1/agents/prod-1/token", {"namespace": "prod"}, operator()
    )
    assert status == 201 and issued["namespace"] == "prod", issued
    assert_problem(*beat(secured_stack, "prod-1", issued["agent_token"], "dev"), 403, "namespace")
    assert beat(secured_stack, "prod-1", issued["agent_token"], "prod")[0] == 200
    status, problem, _ = http_json(
        "PATCH", f"{api}/api/v1/agents/dev-1", {"namespace": "Not A Label"}, operator()
    )
    assert_problem(status, problem, _, 400, "namespace")
