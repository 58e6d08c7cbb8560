"""A stack with operator and agent tokens configured, and the headers and checks its tests use."""

from __future__ import annotations

from pathlib import Path

from tests.support import ServiceProcess, free_port, http_json
from tests.support.services import Service, Stack, start_api

OPERATOR = "op-" + "7f3a9c1e5b2d4a6f" * 2


ENROLMENT = "enrol-" + "c4d2e8a0b6f1937e" * 2


def start_generator(tmp_path: Path, control_plane_url: str, env: dict[str, str] | None = None) -> Service:
    """The config generator with settings from `env` (PHOENIX_GENERATOR_*)."""
    port = free_port()
    proc = ServiceProcess(
        "config_generator",
        {
            "PHOENIX_GENERATOR_PORT": str(port),
            "PHOENIX_GENERATOR_CONTROL_PLANE_URL": control_plane_url,
            "PHOENIX_GENERATOR_LOG_LEVEL": "info",
            **(env or {}),
        },
        tmp_path / f"generator-{port}.log",
        health_url=f"http://127.0.0.1:{port}/health",
    )
    return Service(f"http://127.0.0.1:{port}", port, proc.start())


def start_secured_stack(
    database_url: str,
    tmp_path: Path,
    api_env: dict[str, str] | None = None,
    generator_env: dict[str, str] | None = None,
) -> Stack:
    api_port = free_port()
    generator = start_generator(
        tmp_path,
        f"http://127.0.0.1:{api_port}",
        {"PHOENIX_GENERATOR_API_TOKEN": OPERATOR, **(generator_env or {})},
    )
    api = start_api(
        database_url,
        tmp_path,
        generator_url=generator.url,
        port=api_port,
        env={"PHOENIX_API_TOKEN": OPERATOR, "PHOENIX_AGENT_TOKEN": ENROLMENT, **(api_env or {})},
    )
    return Stack(api, generator, database_url)


def operator(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {OPERATOR}", **(extra or {})}


def agent(host_id: str, token: str) -> dict[str, str]:
    return {"X-Agent-Host-ID": host_id, "Authorization": f"Bearer {token}"}


def issue_token(api: Service, host_id: str) -> str:
    """A host token issued by the operator endpoint."""
    status, body, _ = http_json("POST", f"{api.url}/api/v1/agents/{host_id}/token", headers=operator())
    assert status == 201, body
    return str(body["agent_token"])


def assert_problem(
    status: int, body: object, headers: object, expected: int, field: str | None = None
) -> None:
    assert status == expected, body
    assert getattr(headers, "get", lambda _: "")("Content-Type", "").startswith("application/problem+json"), (
        headers
    )
    assert isinstance(body, dict) and body["status"] == expected, body
    if field is not None:
        assert body.get("field") == field, body
