"""Per-host agent tokens: issued by the operator, stored hashed, bound to one host, revocable, cached."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from control_plane.services.tokens import AgentTokens
from control_plane.stores.tokens import TokenStore
from phoenix_common.problems import Forbidden, Unauthorized
from tests.support import http_json, wait_for
from tests.support.security import ENROLMENT, OPERATOR, agent, assert_problem, issue_token, operator
from tests.support.services import Service, start_api


@pytest.fixture
def issued_only(database_url: str, tmp_path: Path) -> Iterator[Service]:
    """Only operator-issued tokens let agents in: no enrolment token at all."""
    api = start_api(
        database_url, tmp_path, env={"PHOENIX_API_TOKEN": OPERATOR, "PHOENIX_AGENT_TOKENS_REQUIRED": "true"}
    )
    yield api
    api.stop()


@pytest.fixture
def with_enrolment(database_url: str, tmp_path: Path) -> Iterator[Service]:
    api = start_api(
        database_url, tmp_path, env={"PHOENIX_API_TOKEN": OPERATOR, "PHOENIX_AGENT_TOKEN": ENROLMENT}
    )
    yield api
    api.stop()


def heartbeat(api: Service, headers: dict[str, str]) -> tuple[int, Any, Any]:
    return http_json("POST", f"{api.url}/api/v1/agent/heartbeat", {"namespace": "default"}, headers)


def poll(api: Service, headers: dict[str, str]) -> tuple[int, Any, Any]:
    return http_json("GET", f"{api.url}/api/v1/agent/tasks?wait=0", headers=headers)


def test_a_pre_registered_host_uses_its_issued_token(issued_only: Service, database_url: str) -> None:
    api = issued_only
    # Without a token, or with the operator's, an agent endpoint is refused.
    assert_problem(*heartbeat(api, {"X-Agent-Host-ID": "pre-1"}), 401, "Authorization")
    assert_problem(*heartbeat(api, {"X-Agent-Host-ID": "pre-1", **operator()}), 401, "Authorization")
    # Issuing needs the operator token.
    assert_problem(*http_json("POST", f"{api.url}/api/v1/agents/pre-1/token"), 401)

    status, body, headers = http_json("POST", f"{api.url}/api/v1/agents/pre-1/token", headers=operator())
    assert status == 201 and body["host_id"] == "pre-1" and body["replaced"] is False, body
    assert headers["Cache-Control"] == "no-store"
    token = body["agent_token"]
    assert len(token) >= 40 and token.startswith("phx_")
    # The host had never called the API; it is not in the fleet until it does.
    assert http_json("GET", f"{api.url}/api/v1/agents/pre-1", headers=operator())[0] == 404

    status, body, headers = heartbeat(api, agent("pre-1", token))
    assert status == 200 and "agent_token" not in body and "X-Phoenix-Agent-Token" not in headers, body
    assert poll(api, agent("pre-1", token))[0] == 200
    assert http_json("GET", f"{api.url}/api/v1/agents/pre-1", headers=operator())[0] == 200

    # Stored as a hash only: the token itself is nowhere in the database.
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            "SELECT token_hash, source FROM agent_tokens WHERE host_id = 'pre-1'"
        ).fetchone()
        assert stored == (hashlib.sha256(token.encode()).hexdigest(), "issued")
        for table in ("agent_tokens", "agents", "events", "tasks"):
            dump = conn.execute(f"SELECT coalesce(string_agg(t::text, ' '), '') FROM {table} t").fetchone()
            assert dump is not None and token not in dump[0], table


def test_host_a_token_cannot_act_as_host_b(issued_only: Service) -> None:
    api = issued_only
    token_a = issue_token(api, "host-a")
    token_b = issue_token(api, "host-b")
    assert heartbeat(api, agent("host-a", token_a))[0] == 200
    # B bound, or B never seen: A's token is another host's, 403 either way.
    for target in ("host-b", "host-c"):
        status, body, headers = poll(api, agent(target, token_a))
        assert_problem(status, body, headers, 403, "Authorization")
        assert f"cannot act as host {target}" in body["detail"]
    # A token that is nobody's is 401.
    assert_problem(*poll(api, agent("host-b", "phx_" + "x" * 43)), 401, "Authorization")
    assert poll(api, agent("host-b", token_b))[0] == 200


def test_reissue_rotates_and_delete_revokes_at_once(issued_only: Service) -> None:
    api = issued_only
    first = issue_token(api, "rot-1")
    assert poll(api, agent("rot-1", first))[0] == 200  # now cached in the API process
    status, body, _ = http_json("POST", f"{api.url}/api/v1/agents/rot-1/token", headers=operator())
    assert status == 201 and body["replaced"] is True
    second = body["agent_token"]
    assert second != first
    assert_problem(*poll(api, agent("rot-1", first)), 401)
    assert poll(api, agent("rot-1", second))[0] == 200

    status, body, _ = http_json("DELETE", f"{api.url}/api/v1/agents/rot-1/token", headers=operator())
    assert status == 200 and body["host_id"] == "rot-1" and body["had_token"] is True, body
    assert_problem(*poll(api, agent("rot-1", second)), 401)
    # A new issue lets the host back in.
    assert poll(api, agent("rot-1", issue_token(api, "rot-1")))[0] == 200


def test_revoked_host_cannot_enrol_again(with_enrolment: Service) -> None:
    api = with_enrolment
    status, body, _ = heartbeat(api, agent("enr-1", ENROLMENT))
    assert status == 200
    own = body["agent_token"]
    assert poll(api, agent("enr-1", own))[0] == 200
    assert http_json("DELETE", f"{api.url}/api/v1/agents/enr-1/token", headers=operator())[0] == 200
    status, body, headers = heartbeat(api, agent("enr-1", ENROLMENT))
    assert_problem(status, body, headers, 403, "Authorization")
    assert "revoked" in body["detail"]
    # An operator-issued token for a host the enrolment token never saw also keeps the enrolment token out.
    issued = issue_token(api, "enr-2")
    assert_problem(*heartbeat(api, agent("enr-2", ENROLMENT)), 403)
    assert heartbeat(api, agent("enr-2", issued))[0] == 200


def test_bad_host_ids_and_tokens_are_problems_not_errors(issued_only: Service) -> None:
    api = issued_only
    for host in ("..", "a%2Fb", "%7B%7B7*7%7D%7D", "%24%7Benv:HOME%7D", "a%0Ab"):
        status, body, headers = http_json("POST", f"{api.url}/api/v1/agents/{host}/token", headers=operator())
        assert status in (400, 404), (host, status, body)
        if status == 400:
            assert_problem(status, body, headers, 400, "host_id")
    # A token with bytes that are not ASCII is compared, not a crash (both services compare bytes).
    latin = {"X-Agent-Host-ID": "x-1", "Authorization": "Bearer caf\xe9"}
    assert_problem(*poll(api, latin), 401)
    assert_problem(
        *http_json("GET", f"{api.url}/api/v1/agents", headers={"Authorization": "Bearer caf\xe9"}), 401
    )


def test_another_replica_sees_a_revocation_within_the_cache_ttl(database_url: str, tmp_path: Path) -> None:
    """Replica B caches a verified token; a revocation on replica A reaches B when B's entry expires."""
    ttl = 4.0
    env = {"PHOENIX_API_TOKEN": OPERATOR, "PHOENIX_AGENT_TOKENS_REQUIRED": "true"}
    a = start_api(database_url, tmp_path, env={**env, "PHOENIX_AGENT_TOKEN_CACHE_SECONDS": "0"}, name="a")
    b = start_api(
        database_url, tmp_path, env={**env, "PHOENIX_AGENT_TOKEN_CACHE_SECONDS": str(ttl)}, name="b"
    )
    try:
        token = issue_token(a, "repl-1")
        assert poll(b, agent("repl-1", token))[0] == 200
        cached_at = time.monotonic()
        assert http_json("DELETE", f"{a.url}/api/v1/agents/repl-1/token", headers=operator())[0] == 200
        assert poll(a, agent("repl-1", token))[0] == 401  # the replica that revoked: at once
        if time.monotonic() - cached_at < ttl - 1:
            assert poll(b, agent("repl-1", token))[0] == 200  # still cached on B: no database round trip
        wait_for(
            lambda: poll(b, agent("repl-1", token))[0] == 401, timeout=ttl + 10, what="B to drop the token"
        )
        assert time.monotonic() - cached_at < ttl + 5
    finally:
        a.stop()
        b.stop()


class CountingDb:
    """A stand-in for Database that answers the token queries from a dict and counts round trips."""

    def __init__(self, rows: dict[str, str]) -> None:
        self.rows = rows
        self.calls = 0

    async def fetch_one(self, name: str, params: dict[str, Any]) -> dict[str, Any] | None:
        self.calls += 1
        if name == "agent_token_get":
            digest = self.rows.get(params["host_id"])
            # A token in use already (its first use was recorded).
            return (
                {"token_hash": digest, "revoked_at": None, "source": "issued", "first_used_at": 1.0}
                if digest
                else None
            )
        if name == "agent_token_owner":
            owner = [h for h, d in self.rows.items() if d == params["token_hash"]]
            return {"host_id": owner[0]} if owner else None
        raise AssertionError(name)


async def test_a_verified_token_costs_no_database_round_trip_within_the_ttl() -> None:
    token = "phx_" + "k" * 43
    db: Any = CountingDb({"h1": hashlib.sha256(token.encode()).hexdigest()})
    tokens = AgentTokens(TokenStore(db), ttl=30)
    for _ in range(1000):
        assert await tokens.verify("h1", token, None) is None
    assert db.calls == 1
    with pytest.raises(Forbidden):
        await tokens.verify("h2", token, None)
    with pytest.raises(Unauthorized):
        await tokens.verify("h1", "wrong", None)
    # A wrong token made the process forget h1; the right one is looked up (and cached) again.
    calls = db.calls
    assert await tokens.verify("h1", token, None) is None
    assert await tokens.verify("h1", token, None) is None
    assert db.calls == calls + 1
    uncached = AgentTokens(TokenStore(db), ttl=0)
    for _ in range(3):
        await uncached.verify("h1", token, None)
    assert db.calls == calls + 4


def test_the_cli_issues_and_revokes_a_token(issued_only: Service, tmp_path: Path) -> None:
    from tests.support.cli import clean_env, run_cli

    env = clean_env(tmp_path / "home", PHOENIX_API_URL=issued_only.url, PHOENIX_API_TOKEN=OPERATOR)
    issued = run_cli(env, "agents", "token", "cli-1")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert token.startswith("phx_") and "shown once" in issued.stderr
    assert poll(issued_only, agent("cli-1", token))[0] == 200
    revoked = run_cli(env, "agents", "token", "cli-1", "--revoke")
    assert revoked.returncode == 0 and "revoked" in revoked.stdout, revoked.stderr
    assert poll(issued_only, agent("cli-1", token))[0] == 401


def test_an_enrolment_whose_answer_was_lost_can_be_retried(with_enrolment: Service) -> None:
    """The new token is bound before its answer is out: a 503, a 400 or a time-out loses it. Until the
    host first uses a token of its own, the enrolment token enrols it again (a new token replaces it)."""
    api = with_enrolment
    status, body, _ = heartbeat(api, agent("lost-1", ENROLMENT))
    assert status == 200 and body["agent_token"], body  # ... and the answer never reaches the host
    status, retried, _ = heartbeat(api, agent("lost-1", ENROLMENT))
    assert status == 200 and retried["agent_token"] != body["agent_token"], retried
    assert_problem(*poll(api, agent("lost-1", body["agent_token"])), 401)  # the lost one is replaced
    assert poll(api, agent("lost-1", retried["agent_token"]))[0] == 200
    # Once its own token is used, the enrolment token cannot act as the host any more.
    status, problem, headers = heartbeat(api, agent("lost-1", ENROLMENT))
    assert_problem(status, problem, headers, 403, "Authorization")


def test_the_enrolment_token_expires_and_enrols_at_most_its_limit(database_url: str, tmp_path: Path) -> None:
    limited = start_api(
        database_url,
        tmp_path,
        env={
            "PHOENIX_API_TOKEN": OPERATOR,
            "PHOENIX_AGENT_TOKEN": ENROLMENT,
            "PHOENIX_AGENT_TOKEN_MAX_HOSTS": "1",
        },
        name="limited",
    )
    try:
        assert heartbeat(limited, agent("one-1", ENROLMENT))[0] == 200
        status, problem, headers = heartbeat(limited, agent("two-1", ENROLMENT))
        assert_problem(status, problem, headers, 403)
        assert "limit of 1 hosts" in problem["detail"], problem
    finally:
        limited.stop()
    expired = start_api(
        database_url,
        tmp_path,
        env={
            "PHOENIX_API_TOKEN": OPERATOR,
            "PHOENIX_AGENT_TOKEN": ENROLMENT,
            "PHOENIX_AGENT_TOKEN_EXPIRES": "2020-01-01T00:00:00Z",
        },
        name="expired",
    )
    try:
        status, problem, headers = heartbeat(expired, agent("late-1", ENROLMENT))
        assert_problem(status, problem, headers, 403)
        assert "expired" in problem["detail"], problem
    finally:
        expired.stop()


def test_a_scoped_enrolment_token_binds_what_it_enrols_to_its_namespace(
    database_url: str, tmp_path: Path
) -> None:
    """A dev enrolment token leaked from a dev VM cannot put a host into prod."""
    dev_token = "dev-enrolment-" + "d" * 20
    api = start_api(
        database_url,
        tmp_path,
        env={"PHOENIX_API_TOKEN": OPERATOR, "PHOENIX_ENROLMENT_TOKENS": f"dev:{dev_token},prod:{'p' * 24}"},
        name="scoped",
    )

    def beat(host: str, token: str, namespace: str) -> tuple[int, Any, Any]:
        return http_json(
            "POST", f"{api.url}/api/v1/agent/heartbeat", {"namespace": namespace}, agent(host, token)
        )

    try:
        status, body, _ = beat("dev-7", dev_token, "dev")
        assert status == 200 and body["agent_token"], body
        own = body["agent_token"]
        # Enrolled into dev: its own token cannot take it to prod, and neither can the dev token.
        assert_problem(*beat("dev-7", own, "prod"), 403, "namespace")
        status, problem, headers = beat("evil-1", dev_token, "prod")
        assert_problem(status, problem, headers, 403, "namespace")
        status, row, _ = http_json("GET", f"{api.url}/api/v1/agents/evil-1", headers=operator())
        assert status == 404 or row["namespace"] == "dev", row
        status, row, _ = http_json("GET", f"{api.url}/api/v1/agents/dev-7", headers=operator())
        assert status == 200 and row["namespace"] == "dev", row
        assert "d" * 20 not in api.process.log_path.read_text()  # never logged
    finally:
        api.stop()
