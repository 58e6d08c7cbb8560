"""Task payloads as the agent runs them: keep files moved into the state dir, experiment plans merged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.experiment import refresh_period
from agent.payloads import Deployment, ExperimentPlan, TaskError, collection_interval
from agent.state import StateDir
from agent.timing import jittered

QUEUE = Path("/var/lib/phoenix-agent/queue")
KEEP_PATH = "/var/lib/phoenix-agent/keep/candidate.yaml"


def config(variant: str, port: int, keep: str = "") -> str:
    return (
        "receivers:\n  hostmetrics/phoenix:\n    collection_interval: 10s\n"
        f"exporters:\n  prometheus/{variant}:\n    endpoint: 127.0.0.1:{port}\n"
        f"processors:\n  filter/{variant}:\n    x: '{keep}'\n"
        f"service:\n  pipelines:\n    metrics/{variant}:\n      receivers: [hostmetrics/phoenix]\n"
        f"      exporters: [prometheus/{variant}]\n"
    )


def rendered(variant: str, port: int, **extra: Any) -> dict[str, Any]:
    return {
        "template": "process-topk-v1",
        "variant": variant,
        "config_yaml": config(variant, port),
        "prometheus_endpoint": f"127.0.0.1:{port}",
        **extra,
    }


@pytest.fixture
def state(tmp_path: Path) -> StateDir:
    return StateDir(tmp_path / "state")


def test_a_deployment_points_at_the_agents_own_keep_file(state: StateDir) -> None:
    text = config("candidate", 9464, keep=f"${{file:{KEEP_PATH}}}")
    keep = {"path": KEEP_PATH, "strategy": "topk", "k": 3, "initial": ["sshd"]}
    deployment = Deployment.parse({"pipeline": "p", "config_yaml": text, "keep_list": keep}, state, QUEUE)
    assert deployment.keep_path == state.keep_path(KEEP_PATH)
    assert KEEP_PATH not in deployment.config_yaml and str(deployment.keep_path) in deployment.config_yaml
    # The hash is of the config as the control plane sent it, not as relocated.
    assert deployment.config_hash == deployment.received_hash != ""
    assert collection_interval(deployment.config) == 10.0


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("nope", "payload must be an object"),
        ({"config_yaml": "a: 1"}, "payload.pipeline is required"),
        ({"pipeline": "p", "config_yaml": "[a]"}, "must be a YAML mapping"),
        (
            {
                "pipeline": "p",
                "config_yaml": "a: 1",
                "keep_list": {"path": KEEP_PATH, "strategy": "topk", "k": 1},
            },
            "does not occur in the config",
        ),
    ],
)
def test_deployment_errors_name_the_field(state: StateDir, payload: Any, reason: str) -> None:
    with pytest.raises(TaskError, match=reason):
        Deployment.parse(payload, state, QUEUE)


def test_an_experiment_plan_merges_both_variants(state: StateDir) -> None:
    payload = {
        "experiment_id": "e",
        "duration_seconds": 60,
        "baseline": rendered("baseline", 9464),
        "candidate": rendered("candidate", 9466),
    }
    plan = ExperimentPlan.parse(payload, state, QUEUE)
    assert [v.role for v in plan.variants] == ["baseline", "candidate"]
    assert "prometheus/baseline" in plan.merged_yaml and "prometheus/candidate" in plan.merged_yaml
    same = {**payload, "candidate": rendered("candidate", 9464)}
    with pytest.raises(TaskError, match="export to the same prometheus_endpoint"):
        ExperimentPlan.parse(same, state, QUEUE)


def test_an_experiment_refreshes_inside_its_measured_window(state: StateDir) -> None:
    keep = {"path": KEEP_PATH, "strategy": "topk", "k": 3, "refresh_seconds": 120}
    candidate = rendered(
        "candidate", 9466, config_yaml=config("candidate", 9466, keep=KEEP_PATH), keep_list=keep
    )
    plan = ExperimentPlan.parse(
        {
            "experiment_id": "e",
            "duration_seconds": 30,
            "baseline": rendered("baseline", 9464),
            "candidate": candidate,
        },
        state,
        QUEUE,
    )
    assert plan.candidate.keep is not None
    assert refresh_period(plan, plan.candidate.keep) == 10.0


def test_jitter_stays_within_a_fifth() -> None:
    assert all(8.0 <= jittered(10.0) <= 12.0 for _ in range(200))
