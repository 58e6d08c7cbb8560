"""Every kind of bad input gets a 4xx application/problem+json naming the problem, never a 500."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, http_json
from tests.support.services import Service, start_api

AGENT = {"X-Agent-Host-ID": "input-host"}


def assert_problem(status: int, body: object, headers: object, expect: int, words: str) -> None:
    assert status == expect, body
    assert headers["Content-Type"].startswith("application/problem+json")  # type: ignore[index]
    assert isinstance(body, dict) and body["status"] == expect
    assert words.lower() in body["detail"].lower(), body["detail"]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "expect", "words"),
    [
        (
            "POST",
            "/api/v1/pipeline-deployments",
            b"{not json",
            {"Content-Type": "application/json"},
            400,
            "not valid JSON",
        ),
        (
            "POST",
            "/api/v1/pipeline-deployments",
            b"[1, 2]",
            {"Content-Type": "application/json"},
            400,
            "must be a JSON object",
        ),
        (
            "POST",
            "/api/v1/pipeline-deployments",
            {"namespace": "default", "template": "x"},
            {},
            400,
            "'name' is required",
        ),
        (
            "POST",
            "/api/v1/pipeline-deployments",
            {"name": 5, "namespace": "default", "template": "x"},
            {},
            400,
            "'name' must be a string",
        ),
        (
            "POST",
            "/api/v1/pipeline-deployments",
            {"name": "a", "namespace": "Bad_NS", "template": "x"},
            {},
            400,
            "namespace",
        ),
        (
            "POST",
            "/api/v1/pipeline-deployments",
            {"name": "a", "namespace": "nowhere", "template": "x"},
            {},
            404,
            "no registered agents",
        ),
        (
            "POST",
            "/api/v1/pipeline-deployments",
            {"name": "a", "namespace": "default", "template": "x", "parameters": []},
            {},
            400,
            "'parameters' must be an object",
        ),
        (
            "POST",
            "/api/v1/pipeline-deployments",
            b"x" * 2_000_000,
            {"Content-Type": "application/json"},
            413,
            "larger than the limit",
        ),
        ("POST", "/api/v1/pipeline-deployments", b"a=b", {"Content-Type": "text/plain"}, 415, "Content-Type"),
        ("GET", "/api/v1/agent/tasks", None, {}, 400, "X-Agent-Host-ID is required"),
        (
            "GET",
            "/api/v1/agent/tasks",
            None,
            {"X-Agent-Host-ID": "bad host/../"},
            400,
            "X-Agent-Host-ID must",
        ),
        ("POST", "/api/v1/agent/heartbeat", {"namespace": 3}, AGENT, 400, "'namespace' must be a string"),
        ("POST", "/api/v1/agent/heartbeat", {"labels": {"a": 1}}, AGENT, 400, "labels"),
        ("POST", "/api/v1/agent/heartbeat", {"running_tasks": ["nope"]}, AGENT, 400, "not a UUID"),
        ("POST", "/api/v1/agent/tasks/not-a-uuid/status", {"status": "running"}, AGENT, 404, "not a UUID"),
        (
            "POST",
            "/api/v1/agent/tasks/00000000-0000-0000-0000-000000000000/status",
            {"status": "done"},
            AGENT,
            400,
            "'status' must be one of",
        ),
        (
            "POST",
            "/api/v1/agent/tasks/00000000-0000-0000-0000-000000000000/status",
            {"status": "failed"},
            AGENT,
            400,
            "'error' is required",
        ),
        ("GET", "/api/v1/tasks?status=weird", None, {}, 400, "'status' must be one of"),
        ("GET", "/api/v1/tasks?limit=0", None, {}, 400, "limit"),
        ("GET", "/api/v1/agents/nobody", None, {}, 404, "does not exist"),
        ("GET", "/api/v1/pipeline-deployments/dep-missing", None, {}, 404, "does not exist"),
        ("DELETE", "/api/v1/pipeline-deployments/dep-missing", None, {}, 404, "does not exist"),
        ("GET", "/api/v1/pipeline-deployments?namespace=UPPER", None, {}, 400, "namespace"),
        ("POST", "/api/v1/tasks", {"type": "deployment", "host_id": "x"}, {}, 400, "'type' must be health"),
        ("POST", "/api/v1/tasks", {"type": "health"}, {}, 400, "exactly one"),
        ("POST", "/api/v1/tasks", {"type": "health", "host_id": "ghost"}, {}, 404, "does not exist"),
        ("GET", "/api/v1/nothing-here", None, {}, 404, "no resource"),
        ("PUT", "/api/v1/agents", None, {}, 405, "not allowed"),
    ],
)
def test_bad_input_gets_a_problem(
    api: Service, method: str, path: str, body: object, headers: dict, expect: int, words: str
) -> None:
    http_json("POST", f"{api.url}/api/v1/agent/heartbeat", {"namespace": "default"}, AGENT)
    status, answer, hdrs = http_json(method, f"{api.url}{path}", body, headers)
    assert_problem(status, answer, hdrs, expect, words)


def test_generator_unreachable_is_a_502(api: Service) -> None:
    http_json("POST", f"{api.url}/api/v1/agent/heartbeat", {"namespace": "default"}, AGENT)
    status, body, hdrs = http_json(
        "POST",
        f"{api.url}/api/v1/pipeline-deployments",
        {"name": "demo", "namespace": "default", "template": "process-baseline-v1"},
    )
    assert_problem(status, body, hdrs, 502, "unreachable")
    status, body, hdrs = http_json("GET", f"{api.url}/api/v1/templates")
    assert_problem(status, body, hdrs, 502, "unreachable")


def test_health_reports_503_when_the_database_is_gone(pg_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import secrets

    import psycopg

    from control_plane.db import ensure_database

    name = f"phoenix_h_{secrets.token_hex(4)}"
    ensure_database(pg_server.admin_url, name)
    api = start_api(pg_server.url_for(name), tmp_path)
    try:
        with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        status, body, hdrs = http_json("GET", f"{api.url}/health")
        assert_problem(status, body, hdrs, 503, "database")
        assert api.process.alive, "the API must survive its database going away"
    finally:
        api.stop()


def test_settings_errors_name_the_field_and_exit_nonzero(tmp_path: Path) -> None:
    cfg = tmp_path / "api.yaml"
    cfg.write_text("port: 80000\n")
    run = subprocess.run(
        [sys.executable, "-m", "control_plane", "--config", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "port must be between" in run.stderr
    assert "Traceback" not in run.stderr
    cfg.write_text("lease_seconds: soon\n")
    run = subprocess.run(
        [sys.executable, "-m", "control_plane", "--config", str(cfg)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "lease_seconds must be" in run.stderr


def test_refuses_public_bind_without_tokens(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "control_plane", "--host", "0.0.0.0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "not a loopback address" in run.stderr


def test_metrics_expose_the_operations_guide_names(api: Service) -> None:
    http_json("POST", f"{api.url}/api/v1/agent/heartbeat", {"namespace": "default"}, AGENT)
    status, text, hdrs = http_json("GET", f"{api.url}/metrics")
    assert status == 200 and hdrs["Content-Type"].startswith("text/plain")
    assert 'phoenix_agent_last_seen_seconds{host_id="input-host"}' in text
    assert 'phoenix_task_queue_depth{status="pending"}' in text
    assert "phoenix_http_requests_total" in text and "phoenix_http_request_duration_seconds_bucket" in text
