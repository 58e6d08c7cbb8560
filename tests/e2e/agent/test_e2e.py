"""The agent as a subprocess against the real control plane (and generator), running the real collector."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.support import free_port, http_json, wait_for
from tests.support.agents import (
    NAMESPACE,
    agent_row,
    deploy,
    free_ports,
    scrape,
    tasks_of,
    wait_registered,
    wait_running,
)
from tests.support.services import Stack, start_api


def test_agent_registers_and_applies_a_deployment(stack: Stack, agent_factory: Any) -> None:
    agent = agent_factory(stack.api.url)
    row = wait_registered(stack.api, agent)
    assert row["namespace"] == NAMESPACE
    assert row["labels"] == {"suite": "e2e"}
    assert row["facts"]["cpus"] >= 1
    assert row["collector"]["state"] == "stopped"

    ports = free_ports()
    created = deploy(stack.api, ports)
    assert created["hosts"] == 1

    def completed() -> dict[str, Any]:
        done = [t for t in tasks_of(stack.api, agent.host_id) if t["type"] == "deployment"]
        if done and done[0]["status"] == "failed":
            raise AssertionError(done[0])
        return done[0] if done and done[0]["status"] == "completed" else {}

    task = wait_for(completed, timeout=90, what="the deployment task to complete")
    assert task["result"] == {"config_hash": created["config_hash"], "health": "ok"}
    # The collector now runs the rendered config: per-process series on the rendered port.
    wait_for(
        lambda: "process_cpu_time_seconds_total" in scrape(ports["prometheus_port"]),
        timeout=30,
        what="per-process series on the rendered exporter port",
    )
    wait_running(
        stack.api,
        agent.host_id,
        created["config_hash"],
        "the heartbeat to report the new config hash",
        timeout=30,
    )
    status = agent_row(stack.api, agent.host_id)

    # What the pipeline emits reaches the control plane's cost view.
    def reporting() -> dict[str, Any]:
        code, body, _ = http_json("GET", f"{stack.api.url}/api/v1/cost-flow")
        assert code == 200, body
        return dict(body["now"]) if body["now"]["hosts_reporting"] == 1 else {}

    now = wait_for(reporting, timeout=60, what="an emission report")
    assert [p["key"] for p in now["by_pipeline"]] == ["process-baseline-v1"]
    assert now["active_series"] > 0
    assert status["collector"]["state"] == "running"

    # A health check asked through the API comes back from the agent.
    code, body, _ = http_json(
        "POST", f"{stack.api.url}/api/v1/tasks", {"type": "health", "host_id": agent.host_id}
    )
    assert code == 202, body
    health_id = body["task_ids"][0]

    def health_done() -> dict[str, Any]:
        found = [t for t in tasks_of(stack.api, agent.host_id) if str(t["id"]) == health_id]
        return found[0] if found and found[0]["status"] == "completed" else {}

    health = wait_for(health_done, timeout=60, what="the health task")
    assert health["result"]["collector"]["state"] == "running"
    assert health["result"]["collector"]["config_hash"] == created["config_hash"]

    # Clean shutdown stops the process-supervised collector.
    pid = status["collector"]["pid"]
    assert agent.process.stop() == 0
    wait_for(lambda: not _alive(pid), timeout=15, what="the collector to stop with the agent")
    assert agent.outbox() == []
    events = [line.get("event") for line in agent.logs()]
    assert "agent_stopped" in events


def _parse_time(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_no_task_result_is_lost_while_the_control_plane_is_down(
    database_url: str, tmp_path: Path, agent_factory: Any
) -> None:
    """The agent gets a task, the API goes away before the result can be sent, the agent itself restarts;
    when the API is back the result arrives."""
    from tests.support.services import start_generator

    api_port, gen_port = free_port(), free_port()
    generator = start_generator(tmp_path, f"http://127.0.0.1:{api_port}", port=gen_port)
    api = start_api(database_url, tmp_path, generator_url=generator.url, port=api_port)
    try:
        # A long poll wait so that the frozen agent's request stays open while the task is created.
        agent = agent_factory(api.url, poll="30s")
        wait_registered(api, agent)
        assert agent.process.proc is not None
        agent_pid = agent.process.proc.pid
        # Freeze the agent: the control plane answers its open long poll with the task, but the agent
        # can only act on it after the control plane is gone.
        os.kill(agent_pid, signal.SIGSTOP)
        try:
            created = deploy(api, free_ports())
            wait_for(
                lambda: [t for t in tasks_of(api, agent.host_id) if t["status"] == "assigned"],
                timeout=30,
                what="the task to be handed to the agent",
            )
            api.stop()
        finally:
            os.kill(agent_pid, signal.SIGCONT)

        def result_waiting() -> bool:
            return any(e["body"].get("status") == "completed" for e in agent.outbox())

        wait_for(result_waiting, timeout=60, what="the completed report to wait in the outbox")
        # Restart the agent while the control plane is still down: the report must survive.
        assert agent.process.stop() == 0
        assert any(e["body"].get("status") == "completed" for e in agent.outbox())
        agent.process.start()

        api.start()

        def completed() -> dict[str, Any]:
            found = [t for t in tasks_of(api, agent.host_id) if t["type"] == "deployment"]
            return found[0] if found and found[0]["status"] == "completed" else {}

        task = wait_for(completed, timeout=90, what="the result to reach the restarted control plane")
        assert task["result"] == {"config_hash": created["config_hash"], "health": "ok"}
        wait_for(lambda: agent.outbox() == [], timeout=30, what="the outbox to drain")
        events = [line.get("event") for line in agent.logs()]
        assert "control_plane_unavailable" in events
    finally:
        api.stop()
        generator.stop()


def test_agent_enrols_with_the_shared_token_and_keeps_its_own(
    database_url: str, tmp_path: Path, agent_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With agent tokens on, the agent trades the enrolment token for a host token, stores it privately,
    uses it after a restart, and never logs either."""
    enrolment = "enrol-" + os.urandom(8).hex()
    api = start_api(database_url, tmp_path, env={"PHOENIX_AGENT_TOKEN": enrolment})
    try:
        # The agent reads its token from the same variable name (PHOENIX_AGENT_ + token).
        monkeypatch.setenv("PHOENIX_AGENT_TOKEN", enrolment)
        agent = agent_factory(api.url)
        wait_for(lambda: agent_row(api, agent.host_id), timeout=60, what="the agent to enrol")
        token_file = agent.state_dir / "agent_token"
        own = wait_for(
            lambda: token_file.exists() and token_file.read_text(), timeout=30, what="the host token"
        )
        assert own != enrolment
        assert token_file.stat().st_mode & 0o777 == 0o600

        # After a restart the enrolment token alone would be refused for this host; the stored one works:
        # the restarted agent is seen again and never told 401/403.
        assert agent.process.stop() == 0
        seen_before = agent_row(api, agent.host_id)["last_seen_at"]
        agent.process.start()
        wait_for(
            lambda: _parse_time(agent_row(api, agent.host_id)["last_seen_at"]) > _parse_time(seen_before),
            timeout=60,
            what="the restarted agent to be seen again",
        )
        refused = [
            e for e in agent.logs() if "HTTP 401" in str(e.get("error")) or "HTTP 403" in str(e.get("error"))
        ]
        assert refused == []
        log_text = agent.process.log_path.read_text()
        assert enrolment not in log_text and own not in log_text
        assert "agent_enrolled" in log_text
    finally:
        api.stop()


def test_experiment_reports_both_pipelines_and_restores_the_deployment(
    stack: Stack, agent_factory: Any
) -> None:
    agent = agent_factory(stack.api.url)
    wait_registered(stack.api, agent)
    ports = free_ports()
    created = deploy(stack.api, ports)
    wait_running(stack.api, agent.host_id, created["config_hash"], "the deployment to run")

    shared = {"health_port": free_port(), "telemetry_port": free_port(), "collection_interval": 1}
    spec: dict[str, Any] = {
        "name": "agent e2e",
        "baseline_pipeline": "process-baseline-v1",
        "candidate_pipeline": "process-intelligent-v1",
        "target_hosts": [agent.host_id],
        "parameters": {
            "baseline": {**shared, "prometheus_port": free_port()},
            "candidate": {**shared, "prometheus_port": free_port(), "observe_port": free_port(), "k": 3},
        },
        "critical_processes": ["otelcol-phoenix"],
        "duration": 10,
        "warmup": 2,
        "sample_interval": 1,
        "load_profile": "steady",
    }
    code, body, _ = http_json("POST", f"{stack.api.url}/api/v1/experiments", spec)
    assert code == 201 and "start_error" not in body, body
    experiment_id = body["id"]

    def finished() -> dict[str, Any]:
        code, row, _ = http_json("GET", f"{stack.api.url}/api/v1/experiments/{experiment_id}")
        assert code == 200, row
        if row["phase"] in ("failed", "stopped"):
            raise AssertionError(f"experiment {row['phase']}: {row['phase_reason']}")
        return dict(row) if row["phase"] == "completed" else {}

    row = wait_for(finished, timeout=180, what="the experiment to complete")
    assert row["summary"]["series_reduction_percent"] > 0

    code, results, _ = http_json("GET", f"{stack.api.url}/api/v1/experiments/{experiment_id}/results")
    assert code == 200, results
    series = results["time_series"][agent.host_id]
    assert series["baseline"] and series["candidate"]
    assert all(p["collector_memory_bytes"] > 0 for p in series["baseline"] + series["candidate"])

    def start_task() -> dict[str, Any]:
        found = [
            t
            for t in tasks_of(stack.api, agent.host_id)
            if t["type"] == "experiment" and t["action"] == "start" and t["status"] == "completed"
        ]
        return found[0] if found else {}

    summary = wait_for(start_task, timeout=60, what="the start task's summary")["result"]
    assert summary["experiment_id"] == experiment_id
    assert summary["ended_by"] == "stop task"
    assert summary["restored_config_hash"] == created["config_hash"]
    assert summary["variants"]["baseline"]["samples"] > 0 and summary["variants"]["candidate"]["samples"] > 0
    # The deployment runs again, as before the experiment.
    wait_for(
        lambda: "process_cpu_time_seconds_total" in scrape(ports["prometheus_port"]),
        timeout=30,
        what="the deployment's exporter back",
    )
    assert scrape(spec["parameters"]["candidate"]["prometheus_port"]) == ""
    wait_running(
        stack.api,
        agent.host_id,
        created["config_hash"],
        "the heartbeat to report the deployment's hash again",
        timeout=30,
    )


def test_agent_killed_mid_experiment_restores_the_deployment_on_restart(
    stack: Stack, agent_factory: Any
) -> None:
    agent = agent_factory(stack.api.url)
    wait_registered(stack.api, agent)
    ports = free_ports()
    created = deploy(stack.api, ports)
    wait_running(stack.api, agent.host_id, created["config_hash"], "the deployment to run")
    shared = {"health_port": free_port(), "telemetry_port": free_port(), "collection_interval": 1}
    candidate_port = free_port()
    spec = {
        "name": "killed",
        "baseline_pipeline": "process-baseline-v1",
        "candidate_pipeline": "process-topk-v1",
        "target_hosts": [agent.host_id],
        "duration": 600,
        "warmup": 1,
        "sample_interval": 1,
        "parameters": {
            "baseline": {**shared, "prometheus_port": free_port()},
            "candidate": {**shared, "prometheus_port": candidate_port, "observe_port": free_port()},
        },
    }
    code, body, _ = http_json("POST", f"{stack.api.url}/api/v1/experiments", spec)
    assert code == 201 and "start_error" not in body, body
    experiment_id = body["id"]

    def phase() -> str:
        return str(http_json("GET", f"{stack.api.url}/api/v1/experiments/{experiment_id}")[1]["phase"])

    wait_for(lambda: phase() in ("warming_up", "running"), timeout=60, what="the agent to run the experiment")
    wait_for(lambda: "process_" in scrape(candidate_port), timeout=30, what="the candidate pipeline")
    collector_pid = agent_row(stack.api, agent.host_id)["collector"]["pid"]
    assert agent.process.proc is not None
    os.kill(agent.process.proc.pid, signal.SIGKILL)
    agent.process.proc.wait(10)
    # The collector dies with its agent (no orphan holds the ports).
    wait_for(lambda: not _alive(collector_pid), timeout=15, what="the collector to die with the agent")

    agent.process.start()
    wait_for(lambda: phase() == "failed", timeout=90, what="the experiment to fail")
    _, row, _ = http_json("GET", f"{stack.api.url}/api/v1/experiments/{experiment_id}")
    assert "restarted during experiment" in row["phase_reason"], row["phase_reason"]
    wait_for(
        lambda: "process_cpu_time_seconds_total" in scrape(ports["prometheus_port"]),
        timeout=30,
        what="the deployment's exporter back",
    )
    assert scrape(candidate_port) == ""
    wait_running(
        stack.api,
        agent.host_id,
        created["config_hash"],
        "the heartbeat to report the deployment's hash again",
        timeout=30,
    )
    assert not (agent.state_dir / "experiment.json").exists()
