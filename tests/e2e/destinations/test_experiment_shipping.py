"""During an experiment production keeps receiving the baseline only (the candidate ships to its own
staging destination, never to production); after promote production receives the candidate's series."""

from __future__ import annotations

import time
from typing import Any

from tests.support import free_port, http_json, wait_for
from tests.support.agents import wait_registered, wait_running
from tests.support.backends import Prometheus
from tests.support.services import Stack
from tests.support.shipping import create_destination, ship, task_of

SERIES = "process_cpu_time_seconds_total"
BASELINE, CANDIDATE = "process-baseline-v1", "process-intelligent-v1"


def pipelines(backend: Prometheus, since: float) -> set[str]:
    """The phoenix_pipeline labels of series the backend received since `since` (Unix time)."""
    window = max(1, int(time.time() - since))
    found = backend.query(f"count by (phoenix_pipeline) (count_over_time({SERIES}[{window}s]))")
    return {r["metric"].get("phoenix_pipeline", "") for r in found}


def labels(backend: Prometheus, since: float) -> set[str]:
    """Every label name of the series received since `since`."""
    window = max(1, int(time.time() - since))
    return {k for r in backend.query(f"last_over_time({SERIES}[{window}s])") for k in r["metric"]}


def phase(stack: Stack, experiment_id: str) -> str:
    status, body, _ = http_json("GET", f"{stack.api.url}/api/v1/experiments/{experiment_id}")
    assert status == 200, body
    if body["phase"] in ("failed", "stopped"):
        raise AssertionError(f"experiment ended {body['phase']}: {body['phase_reason']}")
    return str(body["phase"])


def test_production_receives_the_baseline_only_until_promote(
    stack: Stack, agent_factory: Any, prometheus: Prometheus, staging: Prometheus
) -> None:
    agent = agent_factory(stack.api.url)
    wait_registered(stack.api, agent)
    create_destination(stack.api, "prod", "prometheus_remote_write", prometheus.write_url)
    create_destination(stack.api, "staging", "prometheus_remote_write", staging.write_url)
    shared = {"health_port": free_port(), "telemetry_port": free_port(), "collection_interval": 1}
    deployed = ship(stack.api, "prod", **shared)
    assert task_of(stack.api, agent.host_id, deployed["id"])["status"] == "completed"
    started = time.time()
    wait_for(lambda: pipelines(prometheus, started) == {BASELINE}, timeout=60, what="production data")
    before = len(prometheus.query(f"last_over_time({SERIES}[5s])"))

    spec = {
        "name": "shipping e2e",
        "baseline_pipeline": "process-baseline-v1",
        "candidate_pipeline": "process-intelligent-v1",
        "target_namespaces": ["default"],
        "parameters": {
            "baseline": {**shared, "prometheus_port": free_port(), "relay_port": free_port()},
            "candidate": {
                **shared,
                "prometheus_port": free_port(),
                "observe_port": free_port(),
                "relay_port": free_port(),
                "k": 5,
            },
        },
        "critical_processes": ["otelcol-phoenix"],
        "candidate_destination": "staging",
        "duration": 20,
        "warmup": 2,
        "sample_interval": 1,
    }
    status, created, _ = http_json("POST", f"{stack.api.url}/api/v1/experiments", spec)
    assert status == 201, created
    experiment_id = created["id"]
    assert created["candidate_destination"] == "staging"
    wait_for(lambda: phase(stack, experiment_id) == "running", timeout=120, what="the experiment to run")
    running_at = time.time()
    wait_for(
        lambda: phase(stack, experiment_id) == "completed", timeout=180, what="the experiment to complete"
    )
    # Production got the baseline (the deployment's stream, then the experiment's baseline: the same
    # series, without Phoenix's variant and experiment labels), never the candidate; staging got only
    # the candidate.
    assert pipelines(prometheus, running_at) == {BASELINE}
    assert pipelines(staging, running_at) == {CANDIDATE}
    assert not labels(prometheus, started) & {"phoenix_variant", "phoenix_experiment_id"}
    # No churn: the series over the whole run are about those of one instant (processes come and go).
    over_run = len(prometheus.query(f"last_over_time({SERIES}[{int(time.time() - started) + 1}s])"))
    assert over_run < 1.5 * before, (over_run, before)

    status, promoted, _ = http_json(
        "POST", f"{stack.api.url}/api/v1/experiments/{experiment_id}/promote", {"force": True}
    )
    assert status == 200, promoted
    (deployment,) = promoted["deployments"]
    status, row, _ = http_json("GET", f"{stack.api.url}/api/v1/pipeline-deployments/{deployment['id']}")
    assert row["destination"] == "prod", row
    wait_running(stack.api, agent.host_id, row["config_hash"], "the promoted candidate to run")
    promoted_at = time.time()

    wait_for(
        lambda: pipelines(prometheus, promoted_at + 3) == {CANDIDATE},
        timeout=60,
        what="production to receive the promoted candidate only",
    )
