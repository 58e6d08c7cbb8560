"""Property-based contract tests: schemathesis drives the running services from their OpenAPI documents.

The real control plane (on a real PostgreSQL) and the real config generator run as subprocesses. Every
response must be documented (status code, content type, body schema) and none may be a 5xx. Before the run
the test creates an agent, a deployment and an experiment through the API and puts their ids into the
documents as examples, so that the by-id operations answer with real objects, not only with 404.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT, free_port, http_json
from tests.support.services import Service, Stack, start_api, start_generator

# The long poll holds a request up to `wait` seconds; the test API caps it at one second so that no
# generated value, valid or not, can hold the run up.
LONG_POLL_MAX = 1.0
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
MAX_EXAMPLES = 30
SEED = 20251127
HOST = "contract-host-1"
NAMESPACE = "contract"


@pytest.fixture
def contract_stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    """Both services on a fresh database, the API's long poll capped at LONG_POLL_MAX."""
    api_port, gen_port = free_port(), free_port()
    generator = start_generator(tmp_path, f"http://127.0.0.1:{api_port}", port=gen_port)
    api = start_api(
        database_url, tmp_path, generator_url=generator.url, port=api_port,
        env={"PHOENIX_LONG_POLL_MAX": str(LONG_POLL_MAX),
             "PHOENIX_LONG_POLL_DEFAULT": str(LONG_POLL_MAX / 2)},
    )
    yield Stack(api, generator, database_url)
    api.stop()
    generator.stop()


def _call(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
          expect: int = 200) -> Any:
    status, answer, _ = http_json(method, url, body, headers=headers)
    assert status == expect, f"{method} {url} answered {status}: {answer}"
    return answer


def seed(api: str) -> dict[str, str]:
    """An agent, an active deployment, a running-or-deploying experiment and a task, made through the API."""
    agent = {"X-Agent-Host-ID": HOST}
    _call("POST", f"{api}/api/v1/agent/heartbeat", {
        "version": "0.1.0", "namespace": NAMESPACE, "labels": {"role": "contract"},
        "collector": {"state": "running", "restarts": 0, "last_error": None, "config_hash": "0" * 64,
                      "pipeline": "process-baseline-v1"},
        "facts": {"hostname": HOST, "os": "linux", "cpus": 2, "memory_bytes": 1 << 30, "boot_time": 1.7e9},
    }, headers=agent)
    deployment = _call("POST", f"{api}/api/v1/pipeline-deployments",
                       {"name": "contract", "namespace": NAMESPACE, "template": "process-baseline-v1"},
                       expect=201)
    experiment = _call("POST", f"{api}/api/v1/experiments", {
        "name": "contract", "baseline_pipeline": "process-baseline-v1",
        "candidate_pipeline": "process-topk-v1", "target_namespaces": [NAMESPACE],
        "critical_processes": ["sshd"], "duration": "10m", "warmup": 0,
    }, expect=201)
    assert experiment["phase"] == "deploying", experiment
    tasks = _call("GET", f"{api}/api/v1/tasks?host_id={HOST}")["tasks"]
    return {"host": HOST, "deployment": deployment["id"], "experiment": experiment["id"],
            "task": tasks[0]["id"]}


def _parameter_examples(doc: dict[str, Any], ids: dict[str, str]) -> None:
    """Path parameters name the seeded agent, task, deployment or experiment."""
    for path, item in doc["paths"].items():
        params = [*item.get("parameters", [])]
        params += [p for op in item.values() if isinstance(op, dict) for p in op.get("parameters", [])]
        for param in params:
            if "$ref" in param:
                continue
            if param["name"] == "id":
                param["example"] = ids["deployment"] if "pipeline-deployments" in path else ids["experiment"]
            elif param["name"] in ("host_id", "task_id"):
                param["example"] = ids[param["name"].removesuffix("_id")]
    shared = doc["components"].get("parameters", {})
    if "ExperimentId" in shared:
        shared["ExperimentId"]["example"] = ids["experiment"]
    if "AgentHostId" in shared:
        shared["AgentHostId"]["example"] = ids["host"]


def _body_examples(doc: dict[str, Any], ids: dict[str, str]) -> None:
    """Reports and measurements for the seeded task and experiment; the generator renders that experiment."""
    measurements = doc["paths"].get("/api/v1/agent/measurements")
    if measurements:
        body = measurements["post"]["requestBody"]["content"]["application/json"]
        sample = body["example"]["samples"][0]
        body["example"] = {"experiment_id": ids["experiment"], "task_id": ids["task"], "samples": [
            {**sample, "variant": "baseline", "active_series": 1200},
            {**sample, "variant": "candidate", "pipeline": "process-topk-v1", "active_series": 300},
        ]}
    batch = doc["paths"].get("/api/v1/agent/tasks/status")
    if batch:
        batch["post"]["requestBody"]["content"]["application/json"]["example"] = {
            "reports": [{"id": ids["task"], "status": "running"}]}
    generate = doc["paths"].get("/api/v1/generate")
    if generate:
        generate["post"]["requestBody"]["content"]["application/json"]["example"] = {
            "experiment_id": ids["experiment"]}


def _document(service: str, ids: dict[str, str], tmp_path: Path) -> Path:
    """The service's OpenAPI document as JSON, with seeded examples and `wait` bounded as the test API is."""
    doc: dict[str, Any] = yaml.safe_load((ROOT / service / "openapi.yaml").read_text())
    poll = doc["paths"].get("/api/v1/agent/tasks")
    if poll:
        for param in poll["get"]["parameters"]:
            if param.get("name") == "wait":
                param["schema"].update(maximum=LONG_POLL_MAX, default=LONG_POLL_MAX / 2)
    _parameter_examples(doc, ids)
    _body_examples(doc, ids)
    path = tmp_path / f"{service}-openapi.json"
    path.write_text(json.dumps(doc))
    return path


def _run(document: Path, target: Service, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec("schemathesis") is None:
        pytest.fail("schemathesis is not installed: it belongs to the test extra (pip install -e '.[test]')")
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", str(document),
        "--url", target.url,
        "--checks", CHECKS,
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", str(SEED),
        "--phases", "examples,coverage,fuzzing",
        "--mode", "all",
        "--workers", "2",
        "--request-timeout", "20",
        "--generation-database", "none",
        "--suppress-health-check", "all",
        "--no-color",
        "--continue-on-failure",
        *extra,
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=400, check=False)
    (tmp_path / f"schemathesis-{target.port}.txt").write_text(result.stdout + result.stderr)
    return result


def _unhandled(service: Service) -> list[str]:
    """The service log's unhandled errors: method, path and the exception's last line."""
    out = []
    for line in service.process.log_path.read_text(errors="replace").splitlines():
        if '"unhandled_error"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        exception = str(entry.get("exception", "")).strip().splitlines()
        ours = re.compile(r'\s*File "[^"]*/(control_plane|config_generator)/')
        frames = [f.strip() for f in exception if ours.match(f)]
        last_frame = max((i for i, f in enumerate(exception) if f.lstrip().startswith("File ")), default=-1)
        error = next((f for f in exception[last_frame + 1:] if f and not f[0].isspace()), "")
        out.append(f"{entry.get('method')} {entry.get('path')!r}: {frames[-1] if frames else ''}: {error}")
    return out


def _explain(result: subprocess.CompletedProcess[str], *services: Service) -> str:
    text = result.stdout
    start = text.find("=== FAILURES ===")
    failures = text[start:] if start >= 0 else text[-6000:]
    errors = "\n".join(f"  {s.url}: {e}" for s in services for e in _unhandled(s)[:30])
    return (f"schemathesis exited {result.returncode}\n{failures[:30000]}\n{result.stderr[-3000:]}\n"
            f"unhandled errors in the service logs:\n{errors or '  none'}")


def test_control_plane_conforms_to_its_openapi_document(contract_stack: Stack, tmp_path: Path) -> None:
    """Every operation but the WebSocket, fuzzed against the running control plane."""
    ids = seed(contract_stack.api.url)
    document = _document("control_plane", ids, tmp_path)
    result = _run(document, contract_stack.api, tmp_path, "--exclude-path", "/api/v1/ws")
    assert result.returncode == 0, _explain(result, contract_stack.api, contract_stack.generator)


def test_config_generator_conforms_to_its_openapi_document(contract_stack: Stack, tmp_path: Path) -> None:
    """Every operation of the generator, fuzzed while it reads a real experiment from the control plane."""
    ids = seed(contract_stack.api.url)
    document = _document("config_generator", ids, tmp_path)
    result = _run(document, contract_stack.generator, tmp_path)
    assert result.returncode == 0, _explain(result, contract_stack.generator, contract_stack.api)
