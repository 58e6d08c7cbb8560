"""Task handling without a control plane: every malformed task ends failed with a reason, none crashes."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from agent.collector import sha256_text
from phoenix_common.keeplist import parse_keep_file
from tests.support import ROOT
from tests.support.agent_harness import Harness, Ports, collector_yaml, serves

KEEP_PATH = "/var/lib/phoenix-agent/keep/main.yaml"


def task(task_id: str, type_: Any, action: Any, payload: Any) -> dict[str, Any]:
    return {"id": task_id, "type": type_, "action": action, "payload": payload}


def rendered(role: str, ports: Ports, **extra: Any) -> dict[str, Any]:
    text = collector_yaml(ports, variant=role)
    return {
        "template": "test-template",
        "variant": role,
        "config_yaml": text,
        "config_hash": sha256_text(text),
        "prometheus_endpoint": f"127.0.0.1:{ports.prometheus}",
        "observe_endpoint": None,
        "keep_list": None,
        **extra,
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (task("t1", "reboot", "now", {}), "unknown task type/action reboot/now"),
        (task("t2", "deployment", "delete", {}), "unknown task type/action deployment/delete"),
        (task("t3", "deployment", "apply", "rm -rf /"), "payload must be an object"),
        (task("t4", "deployment", "apply", {}), "payload.pipeline is required"),
        (
            task("t5", "deployment", "apply", {"pipeline": "p", "config_yaml": 42}),
            "payload.config_yaml must be a string",
        ),
        (
            task("t6", "deployment", "apply", {"pipeline": "p", "config_yaml": "[a, b]"}),
            "must be a YAML mapping",
        ),
        (task("t7", "deployment", "apply", {"pipeline": "p", "config_yaml": "a: [\n"}), "is not valid YAML"),
        (
            task(
                "t8",
                "deployment",
                "apply",
                {
                    "pipeline": "p",
                    "config_yaml": "a: 1",
                    "keep_list": {"path": "/etc/passwd", "strategy": "topk", "k": 3},
                },
            ),
            "keep_list.path must end in <variant>.yaml",
        ),
        (
            task(
                "t9",
                "deployment",
                "apply",
                {
                    "pipeline": "p",
                    "config_yaml": "a: 1",
                    "keep_list": {"path": KEEP_PATH, "strategy": "topk", "k": 3},
                },
            ),
            "does not occur in the config",
        ),
        (
            task(
                "t10",
                "deployment",
                "apply",
                {
                    "pipeline": "p",
                    "config_yaml": "a: 1",
                    "keep_list": {"path": KEEP_PATH, "strategy": "random", "k": 3},
                },
            ),
            "payload.keep_list.strategy must be one of topk, adaptive, intelligent",
        ),
        (
            task(
                "t11",
                "deployment",
                "apply",
                {
                    "pipeline": "p",
                    "config_yaml": "a: 1",
                    "keep_list": {"path": KEEP_PATH, "strategy": "topk", "k": True},
                },
            ),
            "payload.keep_list.k must be an integer",
        ),
        (task("t12", "experiment", "start", {}), "payload.experiment_id is required"),
        (
            task("t13", "experiment", "start", {"experiment_id": "e", "duration_seconds": "long"}),
            "payload.duration_seconds must be a number",
        ),
        (
            task("t14", "experiment", "start", {"experiment_id": "e", "duration_seconds": 5}),
            "payload.baseline must be a Rendered object",
        ),
        (task("t15", "experiment", "stop", {"experiment_id": 7}), "payload.experiment_id must be a string"),
        (task("t16", None, None, None), "unknown task type/action None/None"),
    ],
)
async def test_malformed_tasks_fail_with_a_reason(
    harness: Harness, body: dict[str, Any], reason: str
) -> None:
    await harness.handlers.execute(body)
    final = harness.final(body["id"])
    assert final["status"] == "failed"
    assert reason in final["error"]
    assert "\n" not in final["error"]
    assert harness.handlers.in_flight == {}


async def test_experiment_payload_checks(harness: Harness) -> None:
    a, b = Ports.pick(), Ports.pick()
    base = {"experiment_id": "e", "duration_seconds": 5}
    cases = {
        "x1": (
            {
                **base,
                "baseline": rendered("baseline", a),
                "candidate": rendered("candidate", b, prometheus_endpoint="10.0.0.8:9464"),
            },
            "payload.candidate.prometheus_endpoint must be a loopback host:port",
        ),
        "x2": (
            {
                **base,
                "baseline": rendered("baseline", a),
                "candidate": rendered(
                    "candidate", b, config_yaml=collector_yaml(b, variant="candidate", interval="7s")
                ),
            },
            "baseline and candidate configs disagree at receivers.hostmetrics/phoenix.collection_interval",
        ),
        "x3": (
            {
                **base,
                "sample_interval_seconds": 0.01,
                "baseline": rendered("baseline", a),
                "candidate": rendered("candidate", b),
            },
            "payload.sample_interval_seconds must be at least 1",
        ),
        "x4": (
            {
                **base,
                "load_profile": 5,
                "baseline": rendered("baseline", a),
                "candidate": rendered("candidate", b),
            },
            "payload.load_profile must be a string",
        ),
    }
    for task_id, (payload, reason) in cases.items():
        await harness.handlers.execute(task(task_id, "experiment", "start", payload))
        final = harness.final(task_id)
        assert final["status"] == "failed" and reason in final["error"], (task_id, final)


async def test_garbage_without_an_id_is_ignored(harness: Harness) -> None:
    garbage: Any
    for garbage in (None, 5, "task", [], {"type": "health"}, {"id": 12}):
        await harness.handlers.execute(garbage)
    assert harness.reports() == []


async def test_deployment_apply_with_keep_list(harness: Harness, http: aiohttp.ClientSession) -> None:
    ports = Ports.pick()
    # A config that reads the keep file through the file provider, as selection templates do.
    text = (
        collector_yaml(ports)
        .replace(
            "exporters:\n",
            f"processors:\n  filter/main:\n    metrics:\n      metric:\n"
            f"        - 'not ContainsValue(${{file:{KEEP_PATH}}}, \"x\") and false'\nexporters:\n",
            1,
        )
        .replace(
            "      exporters: [prometheus/main]",
            "      processors: [filter/main]\n      exporters: [prometheus/main]",
        )
    )
    payload = {
        "deployment_id": "dep-1",
        "pipeline": "process-topk-v1",
        "config_yaml": text,
        "config_hash": sha256_text(text),
        "keep_list": {
            "path": KEEP_PATH,
            "strategy": "topk",
            "k": 3,
            "critical": ["sshd"],
            "initial": ["sshd", "postgres"],
            "refresh_seconds": 120,
        },
    }
    await harness.handlers.execute(task("d1", "deployment", "apply", payload))
    final = harness.final("d1")
    assert final == {"status": "completed", "result": {"config_hash": sha256_text(text), "health": "ok"}}
    keep_file = harness.state.keep_dir / "main.yaml"
    assert parse_keep_file(keep_file.read_text()) == ["postgres", "sshd"]
    running = harness.handlers.collector.config_path.read_text()
    assert str(keep_file) in running and KEEP_PATH not in running
    assert await serves(http, f"http://127.0.0.1:{ports.prometheus}/metrics")
    record = harness.state.load_applied()
    assert record["deployment_id"] == "dep-1" and record["config_hash"] == sha256_text(text)

    await harness.handlers.execute(task("h1", "health", "check", {}))
    health = harness.final("h1")["result"]["collector"]
    assert health["state"] == "running"
    assert health["config_hash"] == sha256_text(text)
    assert health["restarts"] == 0 and health["uptime_seconds"] >= 0
    assert health["health_endpoint"]["ok"] is True

    await harness.handlers.execute(task("s1", "experiment", "stop", {"experiment_id": "nope"}))
    stop = harness.final("s1")
    assert stop["status"] == "completed"
    assert stop["result"]["restored_config_hash"] == sha256_text(text)


async def test_rejected_deployment_reports_the_collector_message(harness: Harness) -> None:
    text = collector_yaml(Ports.pick()).replace("memory: {}", "memory: {}\n      warp_drive: {}")
    await harness.handlers.execute(task("d2", "deployment", "apply", {"pipeline": "p", "config_yaml": text}))
    final = harness.final("d2")
    assert final["status"] == "failed"
    assert "collector rejected the config" in final["error"]
    assert "invalid scraper key: warp_drive" in final["error"]
    assert not harness.handlers.collector.config_path.exists()


def test_tasks_never_reach_a_shell() -> None:
    """The agent runs only the configured binary and systemctl, always as an argument vector."""
    root = ROOT / "agent"
    for path in root.glob("*.py"):
        text = path.read_text()
        for forbidden in ("shell=True", "create_subprocess_shell", "os.system(", "os.popen("):
            assert forbidden not in text, f"{path.name} uses {forbidden}"
