"""Property-based contract tests: schemathesis drives the running services from their OpenAPI documents.

The real control plane (on a real PostgreSQL) and the real config generator run as subprocesses. Every
response must be documented (status code, content type, body schema) and none may be a 5xx. Before the run
the test creates an agent, a deployment and an experiment through the API and puts their ids into the
documents as examples, so that the by-id operations answer with real objects, not only with 404.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port, http_json
from tests.support.schemathesis import (
    HOST,
    LONG_POLL_MAX,
    NAMESPACE,
    explain_failure,
    openapi_document,
    run_schemathesis,
)
from tests.support.services import Stack, start_api, start_generator


@pytest.fixture
def contract_stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    """Both services on a fresh database, the API's long poll capped at LONG_POLL_MAX."""
    api_port, gen_port = free_port(), free_port()
    generator = start_generator(tmp_path, f"http://127.0.0.1:{api_port}", port=gen_port)
    api = start_api(
        database_url,
        tmp_path,
        generator_url=generator.url,
        port=api_port,
        env={
            "PHOENIX_LONG_POLL_MAX": str(LONG_POLL_MAX),
            "PHOENIX_LONG_POLL_DEFAULT": str(LONG_POLL_MAX / 2),
        },
    )
    yield Stack(api, generator, database_url)
    api.stop()
    generator.stop()


def _call(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None, expect: int = 200
) -> Any:
    status, answer, _ = http_json(method, url, body, headers=headers)
    assert status == expect, f"{method} {url} answered {status}: {answer}"
    return answer


def seed(api: str) -> dict[str, str]:
    """An agent, an active deployment, a running-or-deploying experiment and a task, made through the API."""
    agent = {"X-Agent-Host-ID": HOST}
    _call(
        "POST",
        f"{api}/api/v1/agent/heartbeat",
        {
            "version": "0.1.0",
            "namespace": NAMESPACE,
            "labels": {"role": "contract"},
            "collector": {
                "state": "running",
                "restarts": 0,
                "last_error": None,
                "config_hash": "0" * 64,
                "pipeline": "process-baseline-v1",
            },
            "facts": {
                "hostname": HOST,
                "os": "linux",
                "cpus": 2,
                "memory_bytes": 1 << 30,
                "boot_time": 1.7e9,
            },
        },
        headers=agent,
    )
    deployment = _call(
        "POST",
        f"{api}/api/v1/pipeline-deployments",
        {"name": "contract", "namespace": NAMESPACE, "template": "process-baseline-v1"},
        expect=201,
    )
    experiment = _call(
        "POST",
        f"{api}/api/v1/experiments",
        {
            "name": "contract",
            "baseline_pipeline": "process-baseline-v1",
            "candidate_pipeline": "process-topk-v1",
            "target_namespaces": [NAMESPACE],
            "critical_processes": ["sshd"],
            "duration": "10m",
            "warmup": 0,
        },
        expect=201,
    )
    assert experiment["phase"] == "deploying", experiment
    tasks = _call("GET", f"{api}/api/v1/tasks?host_id={HOST}")["tasks"]
    return {
        "host": HOST,
        "deployment": deployment["id"],
        "experiment": experiment["id"],
        "task": tasks[0]["id"],
    }


def test_control_plane_conforms_to_its_openapi_document(contract_stack: Stack, tmp_path: Path) -> None:
    """Every operation but the WebSocket, fuzzed against the running control plane."""
    ids = seed(contract_stack.api.url)
    document = openapi_document("control_plane", ids, tmp_path)
    result = run_schemathesis(document, contract_stack.api, tmp_path, "--exclude-path", "/api/v1/ws")
    assert result.returncode == 0, explain_failure(result, contract_stack.api, contract_stack.generator)


def test_config_generator_conforms_to_its_openapi_document(contract_stack: Stack, tmp_path: Path) -> None:
    """Every operation of the generator, fuzzed while it reads a real experiment from the control plane."""
    ids = seed(contract_stack.api.url)
    document = openapi_document("config_generator", ids, tmp_path)
    result = run_schemathesis(document, contract_stack.generator, tmp_path)
    assert result.returncode == 0, explain_failure(result, contract_stack.generator, contract_stack.api)
