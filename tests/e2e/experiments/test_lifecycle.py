"""A/B experiments end to end: real database, API, generator, agent (process supervisor) and collector."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import ROOT, free_port, http_json, wait_for
from tests.support.agents import deploy, free_ports, wait_registered, wait_running
from tests.support.services import Stack, start_api

PHASE_ORDER = ["deploying", "warming_up", "running", "analyzing", "completed"]


class PhaseWatcher:
    """A WebSocket client on its own thread, collecting an experiment's phase events in arrival order
    and the points of its live measurement events."""

    def __init__(self, api_url: str, experiment_id: str):
        self.url = api_url.replace("http://", "ws://") + "/api/v1/ws"
        self.experiment_id = experiment_id
        self.phases: list[str] = []
        self.points: list[dict[str, Any]] = []
        self.subscribed = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),), daemon=True)
        self.thread.start()

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(self.url) as ws:
            await ws.send_str(json.dumps({"subscribe": [self.experiment_id]}))
            async for msg in ws:
                frame = json.loads(msg.data)
                if frame["type"] == "subscribed":
                    self.subscribed.set()
                elif frame["type"] == "event" and frame["kind"] == "measurement":
                    self.points += frame["data"]["points"]
                elif frame["type"] == "event" and frame["kind"] == "experiment_phase":
                    self.phases.append(frame["data"]["to"])
                    if frame["data"]["to"] in ("completed", "failed", "stopped"):
                        return


def experiment(stack_api: str, experiment_id: str) -> dict[str, Any]:
    status, body, _ = http_json("GET", f"{stack_api}/api/v1/experiments/{experiment_id}")
    assert status == 200, body
    return dict(body)


def phase_is(api_url: str, experiment_id: str, phase: str) -> bool:
    row = experiment(api_url, experiment_id)
    if row["phase"] == "failed" and phase != "failed":
        raise AssertionError(f"experiment failed: {row['phase_reason']}")
    return bool(row["phase"] == phase)


def spec_for(host_id: str, **extra: Any) -> dict[str, Any]:
    shared = {"health_port": free_port(), "telemetry_port": free_port(), "collection_interval": 1}
    return {
        "name": "e2e cost-opt",
        "baseline_pipeline": "process-baseline-v1",
        "candidate_pipeline": "process-intelligent-v1",
        "target_namespaces": ["default"],
        "parameters": {
            "baseline": {**shared, "prometheus_port": free_port()},
            "candidate": {**shared, "prometheus_port": free_port(), "observe_port": free_port(), "k": 12},
        },
        "critical_processes": ["otelcol-phoenix", "postgres"],
        **extra,
    }


@pytest.fixture
def running_agent(stack: Stack, agent_factory: Any) -> Iterator[tuple[Any, dict[str, Any]]]:
    """An agent registered in `default` and running a baseline deployment."""
    agent = agent_factory(stack.api.url)
    wait_registered(stack.api, agent)
    ports = free_ports()
    created = deploy(stack.api, ports)
    wait_running(stack.api, agent.host_id, created["config_hash"], "the baseline deployment to run")
    yield agent, created


def test_experiment_runs_every_phase_and_is_promoted_then_rolled_back(
    stack: Stack, running_agent: tuple[Any, dict[str, Any]]
) -> None:
    agent, baseline_deployment = running_agent
    # 25 s is far shorter than one billing window (default 20m): the analysis is extrapolated and cannot be
    # promoted without force, whatever its verdict. The criteria below are the spec's own, checked as
    # applied; coverage is not what this test is about, so it is not required.
    criteria_given = {"min_billed_reduction_percent": 50, "min_cpu_coverage_percent": 0}
    spec = spec_for(
        agent.host_id,
        duration=25,
        warmup=3,
        sample_interval=1,
        load_profile="realistic",
        start=False,
        **criteria_given,
    )
    status, created, _ = http_json("POST", f"{stack.api.url}/api/v1/experiments", spec)
    assert status == 201 and created["phase"] == "pending", created
    experiment_id = created["id"]

    # The generator renders the experiment's two configurations, reading it from the control plane.
    status, generated, _ = http_json(
        "POST", f"{stack.generator.url}/api/v1/generate", {"experiment_id": experiment_id}
    )
    assert status == 200, generated
    assert generated["baseline"]["template"] == "process-baseline-v1"
    assert generated["candidate"]["template"] == "process-intelligent-v1"

    watcher = PhaseWatcher(stack.api.url, experiment_id)
    assert watcher.subscribed.wait(10)
    status, started, _ = http_json("POST", f"{stack.api.url}/api/v1/experiments/{experiment_id}/start")
    assert status == 200 and started["phase"] == "deploying", started
    assert http_json("POST", f"{stack.api.url}/api/v1/experiments/{experiment_id}/start")[0] == 409
    assert http_json("POST", f"{stack.api.url}/api/v1/experiments/{experiment_id}/promote", {})[0] == 409

    wait_for(
        lambda: phase_is(stack.api.url, experiment_id, "completed"),
        timeout=240,
        what="the experiment to complete by itself",
    )
    watcher.thread.join(10)
    assert watcher.phases == PHASE_ORDER, "the WebSocket must see every phase change in order"
    # Live points carry the measured billed series and datapoints beside the snapshot.
    measured = [p for p in watcher.points if "billed_series" in p]
    assert measured and all(p["datapoints_per_minute"] >= 0 for p in measured), watcher.points[-3:]

    status, analysis, _ = http_json("GET", f"{stack.api.url}/api/v1/experiments/{experiment_id}/analysis")
    assert status == 200 and analysis["final"] and analysis["status"] == "ok", analysis
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    (ROOT / "test-artifacts" / "experiment-analysis.json").write_text(json.dumps(analysis, indent=2))
    status, results, _ = http_json("GET", f"{stack.api.url}/api/v1/experiments/{experiment_id}/results")
    assert status == 200, results
    (ROOT / "test-artifacts" / "experiment-results.json").write_text(json.dumps(results, indent=2))
    fleet, pipelines = analysis["fleet"], analysis["pipelines"]
    # The reduction is on the billed series (distinct series over the billing window, at their p95),
    # not on the snapshot; the snapshot's reduction is kept beside it, named so.
    base, cand = pipelines["baseline"]["billed_series"], pipelines["candidate"]["billed_series"]
    assert 0 < cand < base
    billed = 100 * (1 - cand / base)
    assert fleet["billed_series_reduction_percent"] == pytest.approx(billed, abs=0.01)
    assert fleet["series_reduction_percent"] == fleet["billed_series_reduction_percent"]
    snap_base, snap_cand = pipelines["baseline"]["snapshot_series"], pipelines["candidate"]["snapshot_series"]
    assert 0 < snap_cand < snap_base <= base, "a snapshot never holds more series than the billing window"
    snapshot = 100 * (1 - snap_cand / snap_base)
    assert fleet["snapshot_series_reduction_percent"] == pytest.approx(snapshot, abs=0.01)
    # Datapoints per minute are counted from each arm's output, not derived from its series.
    dpm_base = pipelines["baseline"]["datapoints_per_minute"]
    dpm_cand = pipelines["candidate"]["datapoints_per_minute"]
    assert 0 < dpm_cand < dpm_base
    assert fleet["datapoints_per_minute_reduction_percent"] == pytest.approx(
        100 * (1 - dpm_cand / dpm_base), abs=0.01
    )
    assert fleet["critical_missing"] == []
    assert fleet["cpu_coverage_percent"] > 0
    assert 0 <= fleet["cpu_coverage_p10_percent"] <= fleet["cpu_coverage_percent"] <= 100
    host = analysis["hosts"][agent.host_id]
    assert fleet["samples_per_host"] == host["pairs"] >= 5
    # CPU totals are compared as rates (cpu_total_rate, as a backend's rate() reads them), pair by pair.
    fidelity = fleet["cpu_rate_fidelity"]
    assert fidelity["pairs"] + fidelity["reload_pairs"] >= 5
    assert fleet["cpu_totals_ratio"] == fidelity["median"]
    assert fidelity["median"] == pytest.approx(1.0, abs=0.01), "the 'other' roll-up keeps the CPU rate"
    assert fleet["cpu_rate_deviation_percent"] == pytest.approx(abs(fidelity["worst"] - 1) * 100, abs=0.01)
    assert fleet["memory_totals_ratio"] == pytest.approx(1.0, abs=0.01), "the roll-up keeps memory totals"
    assert "otelcol-phoenix" in host["critical_running"] and "otelcol-phoenix" in host["kept_processes"]
    # Cost: each arm's billed series (p95) and measured datapoints per minute, under the named price model.
    cost = analysis["cost"]
    assert (cost["billed_series_before"], cost["billed_series_after"]) == (base, cand)
    assert (cost["datapoints_per_minute_before"], cost["datapoints_per_minute_after"]) == (dpm_base, dpm_cand)
    assert cost["price_model"] == "both"
    for side, series, dpm in (("before", base, dpm_base), ("after", cand, dpm_cand)):
        monthly = (
            series * cost["price_per_series_month"]
            + dpm * 60 * 24 * 30 / 1e6 * cost["price_per_million_datapoints"]
        )
        assert cost[f"monthly_{side}"] == pytest.approx(monthly, abs=0.01)
    assert cost["monthly_after"] < cost["monthly_before"]
    criteria = {c["name"]: c for c in analysis["criteria"]}
    assert set(criteria) >= {
        "billed_series_reduction_percent",
        "cpu_coverage_percent",
        "cpu_coverage_p10_percent",
        "cpu_rate_deviation_percent",
        "critical_processes_missing",
        "samples_per_host",
        "collector_overhead_ratio",
    }
    # The spec's criteria are applied, the rest keep their defaults; collector overhead without a probe
    # passes, unmeasured.
    assert criteria["billed_series_reduction_percent"]["threshold"] == 50
    assert criteria["cpu_coverage_percent"]["threshold"] == 0
    assert criteria["cpu_rate_deviation_percent"]["threshold"] == 1
    assert criteria["samples_per_host"]["threshold"] == 5
    assert criteria["collector_overhead_ratio"]["measured"] is False
    failed = {name for name, c in criteria.items() if not c["passed"]}
    assert analysis["verdict"] == ("reject" if failed else "promote")
    assert set(host["failed_criteria"]) == failed, "one host: the fleet fails exactly what the host fails"
    # Shorter than one billing window: extrapolated, so not promotable whatever the verdict.
    assert analysis["billing_window_seconds"] == 1200
    assert analysis["running_seconds"] < analysis["billing_window_seconds"]
    assert analysis["extrapolated"] is True and analysis["promotable"] is False
    assert any("billing window" in reason for reason in analysis["extrapolated_reasons"])

    status, text, _ = http_json("GET", f"{stack.api.url}/metrics")
    assert f'phoenix_experiment_phase{{experiment_id="{experiment_id}"}} 5.0' in text
    assert f'phoenix_cardinality_reduction_percent{{experiment_id="{experiment_id}"}}' in text

    # The agent put its deployment back when the run ended.
    wait_running(
        stack.api,
        agent.host_id,
        baseline_deployment["config_hash"],
        "the baseline deployment restored after the run",
        timeout=60,
    )

    # Not promotable (extrapolated, whatever the verdict): 409 unless forced. A reject verdict is named
    # first; a promote verdict is refused for the extrapolation (tests/e2e/cli/test_stack.py has one).
    status, refused, _ = http_json("POST", f"{stack.api.url}/api/v1/experiments/{experiment_id}/promote", {})
    assert status == 409, refused
    if analysis["verdict"] == "promote":
        assert refused["reason"] == "extrapolated" and "billing window" in refused["detail"], refused
    else:
        assert "verdict is reject" in refused["detail"], refused
    # A double click: two promotes at once deploy once; the second finds it promoted.
    url = f"{stack.api.url}/api/v1/experiments/{experiment_id}/promote"
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: http_json("POST", url, {"force": True}), range(2)))
    assert sorted(a[0] for a in answers) == [200, 409], answers
    (promoted,) = [a[1] for a in answers if a[0] == 200]
    assert "already promoted" in next(a[1]["detail"] for a in answers if a[0] == 409)
    (deployment,) = promoted["deployments"]
    status, listing, _ = http_json("GET", f"{stack.api.url}/api/v1/pipeline-deployments?namespace=default")
    assert sum(d.get("experiment_id") == experiment_id for d in listing["deployments"]) == 1, listing
    status, dep, _ = http_json("GET", f"{stack.api.url}/api/v1/pipeline-deployments/{deployment['id']}")
    assert dep["template"] == "process-intelligent-v1" and dep["status"] == "active"
    wait_running(stack.api, agent.host_id, dep["config_hash"], "the agent to run the promoted candidate")

    status, rolled, _ = http_json("POST", f"{stack.api.url}/api/v1/experiments/{experiment_id}/rollback")
    assert status == 200, rolled
    (restored,) = rolled["deployments"]
    status, dep, _ = http_json("GET", f"{stack.api.url}/api/v1/pipeline-deployments/{restored['id']}")
    assert dep["template"] == "process-baseline-v1"
    wait_running(stack.api, agent.host_id, dep["config_hash"], "the agent to run the baseline again")


@pytest.mark.parametrize("phase", ["warming_up", "running"])
def test_stop_restores_the_host_from_an_active_phase(
    stack: Stack, running_agent: tuple[Any, dict[str, Any]], phase: str
) -> None:
    agent, baseline_deployment = running_agent
    warmup = 600 if phase == "warming_up" else 0
    spec = spec_for(agent.host_id, duration=600, warmup=warmup, sample_interval=1, load_profile="steady")
    status, created, _ = http_json("POST", f"{stack.api.url}/api/v1/experiments", spec)
    assert status == 201 and created["phase"] == "deploying", created
    experiment_id = created["id"]
    wait_for(lambda: phase_is(stack.api.url, experiment_id, phase), timeout=120, what=f"phase {phase}")
    status, stopped, _ = http_json("POST", f"{stack.api.url}/api/v1/experiments/{experiment_id}/stop")
    assert status == 200 and stopped["phase"] == "stopped", stopped
    assert http_json("POST", f"{stack.api.url}/api/v1/experiments/{experiment_id}/stop")[0] == 200
    wait_running(
        stack.api,
        agent.host_id,
        baseline_deployment["config_hash"],
        "the baseline config restored after stop",
        timeout=60,
    )


def register(api_url: str, host: str, namespace: str = "default") -> None:
    status, body, _ = http_json(
        "POST", f"{api_url}/api/v1/agent/heartbeat", {"namespace": namespace}, {"X-Agent-Host-ID": host}
    )
    assert status == 200, body


def test_stop_from_pending_and_deploying_and_illegal_transitions(stack: Stack) -> None:
    register(stack.api.url, "silent-host")
    spec = spec_for("silent-host", start=False)
    _, pending, _ = http_json("POST", f"{stack.api.url}/api/v1/experiments", spec)
    status, body, _ = http_json("POST", f"{stack.api.url}/api/v1/experiments/{pending['id']}/stop")
    assert status == 200 and body["phase"] == "stopped"
    assert http_json("POST", f"{stack.api.url}/api/v1/experiments/{pending['id']}/start")[0] == 409
    assert http_json("POST", f"{stack.api.url}/api/v1/experiments/{pending['id']}/promote", {})[0] == 409

    # A host that never polls keeps the experiment deploying; stop still completes and cancels its task.
    _, deploying, _ = http_json("POST", f"{stack.api.url}/api/v1/experiments", spec_for("silent-host"))
    assert deploying["phase"] == "deploying", deploying
    status, body, _ = http_json("POST", f"{stack.api.url}/api/v1/experiments/{deploying['id']}/stop")
    assert status == 200 and body["phase"] == "stopped"
    _, tasks, _ = http_json("GET", f"{stack.api.url}/api/v1/tasks?experiment_id={deploying['id']}")
    assert [t["status"] for t in tasks["tasks"] if t["action"] == "start"] == ["failed"]
    status, listed, _ = http_json("GET", f"{stack.api.url}/api/v1/experiments?phase=stopped")
    assert {e["id"] for e in listed["experiments"]} == {pending["id"], deploying["id"]}


def test_hosts_that_never_acknowledge_fail_the_experiment(stack: Stack, tmp_path: Path) -> None:
    api = start_api(
        stack.database_url,
        tmp_path,
        generator_url=stack.generator.url,
        name="api-ack",
        env={"PHOENIX_EXPERIMENT_ACK_TIMEOUT": "2"},
    )
    try:
        register(api.url, "mute-1")
        register(api.url, "mute-2")
        # The generator reads experiments from the first API; both share the database.
        _, body, _ = http_json("POST", f"{api.url}/api/v1/experiments", spec_for("mute-1"))
        assert body["phase"] == "deploying", body
        wait_for(lambda: phase_is(api.url, body["id"], "failed"), timeout=60, what="the ack timeout")
        row = experiment(api.url, body["id"])
        assert "never acknowledged" in row["phase_reason"] and "mute-1" in row["phase_reason"]
        assert "mute-2" in row["phase_reason"]
        assert http_json("POST", f"{api.url}/api/v1/experiments/{body['id']}/stop")[0] == 409
    finally:
        api.stop()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"baseline_pipeline": "a", "candidate_pipeline": "b", "target_namespaces": ["default"]}, "'name'"),
        ({"name": "x", "candidate_pipeline": "b", "target_namespaces": ["default"]}, "'baseline_pipeline'"),
        ({"name": "x", "baseline_pipeline": "a", "candidate_pipeline": "b"}, "target_namespaces"),
        (
            {
                "name": "x",
                "baseline_pipeline": "a",
                "candidate_pipeline": "b",
                "target_namespaces": "default",
            },
            "must be an array",
        ),
        (
            {
                "name": "x",
                "baseline_pipeline": "a",
                "candidate_pipeline": "b",
                "target_namespaces": ["default"],
                "duration": "forever",
            },
            "duration",
        ),
        (
            {
                "name": "x",
                "baseline_pipeline": "a",
                "candidate_pipeline": "b",
                "target_namespaces": ["default"],
                "load_profile": "chaos",
            },
            "load_profile",
        ),
        (
            {
                "name": "x",
                "baseline_pipeline": "a",
                "candidate_pipeline": "b",
                "target_namespaces": ["default"],
                "min_reduction_percent": 170,
            },
            "min_reduction_percent",
        ),
        (
            {
                "name": "x",
                "baseline_pipeline": "a",
                "candidate_pipeline": "b",
                "target_namespaces": ["default"],
                "critical_processes": ["ok", "bad\nname"],
            },
            "critical_processes",
        ),
    ],
)
def test_bad_experiment_specs_are_400(stack: Stack, body: dict[str, Any], words: str) -> None:
    status, answer, headers = http_json("POST", f"{stack.api.url}/api/v1/experiments", body)
    assert status == 400 and words in answer["detail"], answer
    assert headers["Content-Type"].startswith("application/problem+json")


def test_unknown_experiment_is_404_everywhere(stack: Stack) -> None:
    for method, suffix in (
        ("GET", ""),
        ("GET", "/results"),
        ("GET", "/analysis"),
        ("POST", "/start"),
        ("POST", "/stop"),
        ("POST", "/promote"),
        ("POST", "/rollback"),
    ):
        status, body, _ = http_json(
            method, f"{stack.api.url}/api/v1/experiments/exp-nope{suffix}", {} if method == "POST" else None
        )
        assert status == 404, (method, suffix, body)
    status, body, _ = http_json(
        "POST", f"{stack.generator.url}/api/v1/generate", {"experiment_id": "exp-nope"}
    )
    assert status == 404, body
