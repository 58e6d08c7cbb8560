"""Task payloads that ship: agent.payloads points the config at the agent's queue directory and headers
files, and brings the headers as files to write (never in the config)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.payloads import Deployment, ExperimentPlan, TaskError, relocate_shipping
from agent.state import StateDir
from phoenix_common import wire

ROOT = "/var/lib/phoenix-agent"
QUEUE_DIR = f"{ROOT}/queue"
HEADERS_FILE = f"{ROOT}/secrets/prod.headers.yaml"
SECRET = "Bearer phx-unit-5e9a7d1c"
HEADERS = {"Authorization": SECRET, "X-Scope-OrgID": "team-a"}


def config(variant: str, port: int, suffix: str | None = "ship", relay: int = 14318) -> str:
    """A collector config of `variant`, shipping through the spool `otlphttp/<suffix>` unless None."""
    text = (
        "receivers:\n  hostmetrics/phoenix:\n    collection_interval: 10s\n"
        f"exporters:\n  prometheus/{variant}:\n    endpoint: 127.0.0.1:{port}\n"
    )
    if suffix is not None:
        text += (
            f"  otlphttp/{suffix}:\n    endpoint: http://127.0.0.1:{relay}\n"
            "    sending_queue:\n      enabled: true\n      storage: file_storage/phoenix-queue\n"
            f"  otlp/{suffix}-out:\n    endpoint: collector.example.com:4317\n"
            f"    headers: ${{file:{HEADERS_FILE}}}\n"
            "extensions:\n  file_storage/phoenix-queue:\n"
            f"    directory: {QUEUE_DIR}\n    create_directory: true\n"
        )
    exporters = f"prometheus/{variant}" + (f", otlphttp/{suffix}" if suffix else "")
    return text + (
        "service:\n"
        + ("  extensions: [file_storage/phoenix-queue]\n" if suffix else "")
        + f"  pipelines:\n    metrics/{variant}:\n      receivers: [hostmetrics/phoenix]\n"
        f"      exporters: [{exporters}]\n"
    )


def shipping(suffix: str = "ship", headers_file: str | None = HEADERS_FILE) -> dict[str, Any]:
    return {
        "destination": "prod",
        "type": "otlp_grpc",
        "exporter": f"otlphttp/{suffix}",
        "writer": f"otlp/{suffix}-out",
        "queue_directory": QUEUE_DIR,
        "queue_points": 5000,
        "headers_file": headers_file,
    }


def deployment(**overrides: Any) -> dict[str, Any]:
    return {
        "pipeline": "process-baseline-v1",
        "config_yaml": config("main", 9464),
        "shipping": shipping(),
        "secret_files": {HEADERS_FILE: HEADERS},
        **overrides,
    }


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    return StateDir(tmp_path / "state")


@pytest.fixture
def queue_dir(tmp_path: Path) -> Path:
    return tmp_path / "queue"


def assert_relocated(text: str, parsed: dict[str, Any], state: StateDir, queue_dir: Path) -> None:
    """The config reads the agent's own queue directory and headers file, and holds no header value."""
    assert ROOT not in text and SECRET not in text
    assert parsed["extensions"]["file_storage/phoenix-queue"]["directory"] == str(queue_dir)
    target = state.secrets_dir / "prod.headers.yaml"
    assert parsed["exporters"]["otlp/ship-out"]["headers"] == f"${{file:{target}}}"


def test_a_shipping_deployment_points_at_the_agents_queue_and_headers_file(
    state: StateDir, queue_dir: Path
) -> None:
    payload = deployment()
    parsed = Deployment.parse(payload, state, queue_dir)
    assert_relocated(parsed.config_yaml, parsed.config, state, queue_dir)
    target = state.secrets_dir / "prod.headers.yaml"
    assert dict(parsed.side_files) == {target: json.dumps(HEADERS, sort_keys=True)}
    assert json.loads(parsed.side_files[target]) == HEADERS
    assert parsed.shipping == wire.Shipping(**shipping())
    # The hash is of the config as the control plane sent it, not as relocated.
    assert parsed.received_hash == parsed.config_hash != ""
    assert ROOT in payload["config_yaml"]


def test_a_shipping_deployment_without_headers_brings_no_files(state: StateDir, queue_dir: Path) -> None:
    text = config("main", 9464).replace(f"    headers: ${{file:{HEADERS_FILE}}}\n", "")
    parsed = Deployment.parse(
        deployment(config_yaml=text, shipping=shipping(headers_file=None), secret_files={}), state, queue_dir
    )
    assert dict(parsed.side_files) == {}
    assert parsed.config["extensions"]["file_storage/phoenix-queue"]["directory"] == str(queue_dir)


def test_a_deployment_that_does_not_ship_is_left_as_it_is(state: StateDir, queue_dir: Path) -> None:
    text = config("main", 9464, suffix=None)
    parsed = Deployment.parse({"pipeline": "p", "config_yaml": text}, state, queue_dir)
    assert parsed.config_yaml == text and parsed.shipping is None and dict(parsed.side_files) == {}


def test_relocate_shipping_without_shipping_changes_nothing(state: StateDir, queue_dir: Path) -> None:
    text = config("main", 9464)
    assert relocate_shipping(text, None, {HEADERS_FILE: HEADERS}, state, queue_dir, "payload") == (text, {})


def test_relocate_shipping_gives_the_text_and_the_files(state: StateDir, queue_dir: Path) -> None:
    text, files = relocate_shipping(
        config("main", 9464),
        wire.Shipping(**shipping()),
        {HEADERS_FILE: HEADERS},
        state,
        queue_dir,
        "payload",
    )
    assert files == {state.secrets_dir / "prod.headers.yaml": json.dumps(HEADERS, sort_keys=True)}
    assert str(queue_dir) in text and HEADERS_FILE not in text


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"secret_files": {f"{ROOT}/secrets/Prod.headers.yaml": HEADERS}}, "must be named"),
        ({"secret_files": {f"{ROOT}/secrets/prod.yaml": HEADERS}}, "must be named"),
        ({"secret_files": {f"{ROOT}/secrets/.headers.yaml": HEADERS}}, "must be named"),
        ({"secret_files": {f"{ROOT}/secrets/other.headers.yaml": HEADERS}}, "does not occur in the config"),
        ({"secret_files": {}}, "the task brings no such file"),
        ({"secret_files": {HEADERS_FILE: {"Authorization": 7}}}, "payload.secret_files"),
        ({"secret_files": {HEADERS_FILE: HEADERS}, "secret_error": "InvalidToken"}, "could not open"),
        ({"secret_files": {}, "secret_error": "the key was changed"}, "the key was changed"),
        ({"shipping": {**shipping(), "queue_points": -1}}, "payload.shipping"),
    ],
)
def test_shipping_errors_are_task_errors(
    state: StateDir, queue_dir: Path, overrides: dict[str, Any], reason: str
) -> None:
    with pytest.raises(TaskError, match=reason) as caught:
        Deployment.parse(deployment(**overrides), state, queue_dir)
    assert SECRET not in str(caught.value)


def test_an_experiment_writes_only_the_headers_of_the_variant_that_uses_them(
    state: StateDir, queue_dir: Path
) -> None:
    def rendered(variant: str, port: int, **extra: Any) -> dict[str, Any]:
        return {
            "template": "process-baseline-v1",
            "variant": variant,
            "prometheus_endpoint": f"127.0.0.1:{port}",
            **extra,
        }

    payload = {
        "experiment_id": "e",
        "duration_seconds": 60,
        "baseline": rendered("baseline", 9464, config_yaml=config("baseline", 9464), shipping=shipping()),
        "candidate": rendered("candidate", 9466, config_yaml=config("candidate", 9466, suffix=None)),
        "secret_files": {HEADERS_FILE: HEADERS},
    }
    plan = ExperimentPlan.parse(payload, state, queue_dir)
    assert_relocated(plan.baseline.config_yaml, plan.baseline.config, state, queue_dir)
    assert list(plan.baseline.side_files) == [state.secrets_dir / "prod.headers.yaml"]
    assert dict(plan.candidate.side_files) == {} and plan.candidate.shipping is None
    assert ROOT not in plan.merged_yaml and SECRET not in plan.merged_yaml
    with pytest.raises(TaskError, match="could not open"):
        ExperimentPlan.parse({**payload, "secret_error": "InvalidToken"}, state, queue_dir)
