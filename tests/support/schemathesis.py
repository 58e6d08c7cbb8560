"""Running schemathesis against the services' OpenAPI documents (the contract and security suites)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT
from tests.support.services import Service

# The long poll holds a request up to `wait` seconds; the test API caps it at one second so that no
# generated value, valid or not, can hold the run up.
LONG_POLL_MAX = 1.0


HOST = "contract-host-1"


NAMESPACE = "contract"


def openapi_document(service: str, ids: dict[str, str], tmp_path: Path) -> Path:
    """The service's OpenAPI document as JSON, with seeded examples and `wait` bounded as the test API is."""
    doc: dict[str, Any] = yaml.safe_load((ROOT / service / "openapi.yaml").read_text())
    poll = doc["paths"].get("/api/v1/agent/tasks")
    if poll:
        for param in poll["get"]["parameters"]:
            if param.get("name") == "wait":
                param["schema"].update(maximum=LONG_POLL_MAX, default=LONG_POLL_MAX / 2)
    parameter_examples(doc, ids)
    body_examples(doc, ids)
    path = tmp_path / f"{service}-openapi.json"
    path.write_text(json.dumps(doc))
    return path


def run_schemathesis(
    document: Path, target: Service, tmp_path: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    if importlib.util.find_spec("schemathesis") is None:
        pytest.fail("schemathesis is not installed: it belongs to the test extra (pip install -e '.[test]')")
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        str(document),
        "--url",
        target.url,
        "--checks",
        CHECKS,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--phases",
        "examples,coverage,fuzzing",
        "--mode",
        "all",
        # One worker: with two threads, hypothesis raising the recursion limit in one while the other
        # parses a lambda's source trips CPython 3.11's AST recursion check (SystemError "AST
        # constructor recursion depth mismatch"), a crash of the tool with no finding.
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--generation-database",
        "none",
        "--suppress-health-check",
        "all",
        "--no-color",
        "--continue-on-failure",
        *extra,
    ]
    for _attempt in (1, 2, 3):
        result = subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, timeout=400, check=False
        )
        output = result.stdout + result.stderr
        (tmp_path / f"schemathesis-{target.port}.txt").write_text(output)
        if not _crashed_inside_the_tool(output):
            break
    return result


def _crashed_inside_the_tool(output: str) -> bool:
    """The tool's own interpreter error (seen once under load: hypothesis' AST SystemError), no finding."""
    return "=== FAILURES ===" not in output and "Runtime Error" in output and "SystemError" in output


def explain_failure(result: subprocess.CompletedProcess[str], *services: Service) -> str:
    text = result.stdout
    start = text.find("=== FAILURES ===")
    failures = text[start:] if start >= 0 else text[-6000:]
    errors = "\n".join(f"  {s.url}: {e}" for s in services for e in unhandled_errors(s)[:30])
    return (
        f"schemathesis exited {result.returncode}\n{failures[:30000]}\n{result.stderr[-3000:]}\n"
        f"unhandled errors in the service logs:\n{errors or '  none'}"
    )


CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


MAX_EXAMPLES = 30


SEED = 20251127


def parameter_examples(doc: dict[str, Any], ids: dict[str, str]) -> None:
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


def body_examples(doc: dict[str, Any], ids: dict[str, str]) -> None:
    """Reports and measurements for the seeded task and experiment; the generator renders that experiment."""
    measurements = doc["paths"].get("/api/v1/agent/measurements")
    if measurements:
        body = measurements["post"]["requestBody"]["content"]["application/json"]
        sample = body["example"]["samples"][0]
        body["example"] = {
            "experiment_id": ids["experiment"],
            "task_id": ids["task"],
            "samples": [
                {**sample, "variant": "baseline", "active_series": 1200},
                {**sample, "variant": "candidate", "pipeline": "process-topk-v1", "active_series": 300},
            ],
        }
    batch = doc["paths"].get("/api/v1/agent/tasks/status")
    if batch:
        batch["post"]["requestBody"]["content"]["application/json"]["example"] = {
            "reports": [{"id": ids["task"], "status": "running"}]
        }
    generate = doc["paths"].get("/api/v1/generate")
    if generate:
        generate["post"]["requestBody"]["content"]["application/json"]["example"] = {
            "experiment_id": ids["experiment"]
        }


def unhandled_errors(service: Service) -> list[str]:
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
        error = next((f for f in exception[last_frame + 1 :] if f and not f[0].isspace()), "")
        out.append(f"{entry.get('method')} {entry.get('path')!r}: {frames[-1] if frames else ''}: {error}")
    return out
