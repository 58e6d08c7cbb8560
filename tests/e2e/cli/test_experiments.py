"""`phoenix experiment`, `deploy list` and `cost-flow` against a real control plane (no generator)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support import http_json
from tests.support.cli import LiveProcess, clean_env, cli_json, register, row_of, run_cli
from tests.support.services import Service


@pytest.fixture
def env(tmp_path: Path, api: Service) -> dict[str, str]:
    register(api.url, "web-1", "prod")
    register(api.url, "web-2", "prod")
    return clean_env(tmp_path / "home", PHOENIX_API_URL=api.url)


def _create(env: dict[str, str], *extra: str) -> dict:
    return cli_json(
        env,
        "experiment",
        "create",
        "--name",
        "topk trial",
        "--baseline",
        "process-baseline-v1",
        "--candidate",
        "process-topk-v1",
        "--namespace",
        "prod",
        *extra,
    )


def test_create_status_stop(env: dict[str, str]) -> None:
    created = _create(
        env,
        "--no-start",
        "--critical",
        "sshd",
        "postgres",
        "--duration",
        "10m",
        "--warmup",
        "1m",
        "--load-profile",
        "process-churn",
        "--param-candidate",
        "k=5",
        "--param-baseline",
        "critical_processes=[sshd,postgres]",
        "--min-reduction",
        "60",
        "--min-cpu-coverage-p10",
        "80",
        "--max-cpu-rate-deviation",
        "2",
        "--max-collector-overhead-ratio",
        "2.5",
        "--min-samples-per-host",
        "3",
        "--billing-window",
        "5m",
        "--overhead-probe",
        "30s",
    )
    exp_id = created["id"]
    assert created["phase"] == "pending"
    # --param values are YAML: an integer and a list arrive typed.
    assert created["parameters"] == {
        "baseline": {"critical_processes": ["sshd", "postgres"]},
        "candidate": {"k": 5},
    }
    assert created["critical_processes"] == ["sshd", "postgres"]
    assert (created["duration_seconds"], created["warmup_seconds"]) == (600, 60)
    assert (created["billing_window_seconds"], created["overhead_probe_seconds"]) == (300, 30)
    # --min-reduction is the billed-series reduction; criteria not given keep the API's defaults.
    assert created["success_criteria"] == {
        "min_billed_reduction_percent": 60,
        "min_cpu_coverage_percent": 95,
        "min_cpu_coverage_p10_percent": 80,
        "max_cpu_rate_deviation_percent": 2,
        "max_collector_overhead_ratio": 2.5,
        "min_samples_per_host": 3,
    }

    status = run_cli(env, "experiment", "status", exp_id)
    assert status.returncode == 0, status.stderr
    assert f"{exp_id} (topk trial)" in status.stdout
    assert "phase          pending since" in status.stdout
    assert "candidate      process-topk-v1 (k=5)" in status.stdout
    assert "warm-up 1m, measure 10m" in status.stdout
    assert "billing        window 5m, overhead probe 30s per arm" in status.stdout
    criteria_line = next(line for line in status.stdout.splitlines() if line.startswith("criteria "))
    for label in (
        "billed series reduction >= 60 %",
        "CPU coverage >= 95 %",
        "CPU coverage p10 >= 80 %",
        "CPU rate within 2 %",
        "collector overhead <= 2.5x baseline",
        "samples per host >= 3",
    ):
        assert label in criteria_line, (label, criteria_line)

    listed = run_cli(env, "experiment", "list", "--phase", "pending")
    assert row_of(listed.stdout.splitlines(), exp_id).split()[:2] == [exp_id, "topk"]

    stopped = run_cli(env, "experiment", "stop", exp_id)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith(f"experiment {exp_id}: stopped (stopped by operator")
    assert cli_json(env, "experiment", "status", exp_id)["phase"] == "stopped"
    assert run_cli(env, "experiment", "list", "--phase", "pending").stdout.strip() == "No experiments."

    # A stopped experiment cannot start: the API's 409 is exit 3 with its detail.
    again = run_cli(env, "experiment", "start", exp_id)
    assert again.returncode == 3
    assert again.stderr.startswith(f"phoenix: error: experiment {exp_id} is stopped")


def test_created_but_not_started_is_exit_1(env: dict[str, str]) -> None:
    # Starting needs the generator, which the `api` fixture does not run: the experiment stays pending.
    result = run_cli(
        env,
        "experiment",
        "create",
        "--name",
        "n",
        "--baseline",
        "process-baseline-v1",
        "--candidate",
        "process-topk-v1",
        "--namespace",
        "prod",
    )
    assert result.returncode == 1
    exp_id = result.stdout.split()[1]
    assert f"experiment {exp_id} was created but did not start" in result.stderr
    assert f"phoenix experiment start {exp_id}" in result.stderr
    assert cli_json(env, "experiment", "status", exp_id)["phase"] == "pending"


def test_bad_spec_is_exit_3_naming_the_field(env: dict[str, str]) -> None:
    result = run_cli(
        env,
        "experiment",
        "create",
        "--name",
        "n",
        "--baseline",
        "b",
        "--candidate",
        "c",
        "--namespace",
        "prod",
        "--duration",
        "5s",
        "--no-start",
    )
    assert result.returncode == 3
    assert result.stderr.strip() == "phoenix: error: field 'duration' must be between 10 and 604800 seconds"


def test_unknown_experiment_is_exit_3(env: dict[str, str]) -> None:
    for action in ("status", "stop", "analysis", "results", "watch"):
        result = run_cli(env, "experiment", action, "exp-missing")
        assert result.returncode == 3, (action, result.stderr)
        assert result.stderr.strip() == "phoenix: error: experiment 'exp-missing' does not exist"


def test_analysis_without_measurements_and_check(env: dict[str, str]) -> None:
    exp_id = _create(env, "--no-start")["id"]
    result = run_cli(env, "experiment", "analysis", exp_id)
    assert result.returncode == 0
    assert "provisional" in result.stdout and "insufficient_data" in result.stdout
    # --check passes only a final analysis that is promotable (verdict promote on a full billing window).
    assert run_cli(env, "experiment", "analysis", exp_id, "--check").returncode == 1
    raw = cli_json(env, "experiment", "analysis", exp_id)
    assert raw["final"] is False and raw["status"] == "insufficient_data"


def test_watch_prints_the_phase_change_and_exits_1_when_stopped(api: Service, env: dict[str, str]) -> None:
    status, created, _ = http_json(
        "POST",
        f"{api.url}/api/v1/experiments",
        {
            "name": "watched",
            "baseline_pipeline": "process-baseline-v1",
            "candidate_pipeline": "process-topk-v1",
            "target_namespaces": ["prod"],
            "start": False,
        },
    )
    assert status == 201, created
    exp_id = created["id"]
    watch = LiveProcess(env, "experiment", "watch", exp_id)
    try:
        # The first line appears once the WebSocket subscription is live.
        first = watch.wait_line(
            lambda line: f"experiment {exp_id} (watched): pending" in line, what="the initial state"
        )
        assert first.startswith("[")
        assert http_json("POST", f"{api.url}/api/v1/experiments/{exp_id}/stop")[0] == 200
        code = watch.wait(timeout=30)
    finally:
        watch.kill()
    out = watch.text()
    assert code == 1, (out, watch.stderr)
    assert "phase pending -> stopped: stopped by operator" in out
    assert f"Analysis of experiment {exp_id} (stopped" in out
    assert watch.stderr == ""


def test_watch_survives_a_control_plane_restart(api: Service, env: dict[str, str]) -> None:
    exp_id = _create(env, "--no-start")["id"]
    watch = LiveProcess(env, "experiment", "watch", exp_id)
    try:
        watch.wait_line(lambda line: f"experiment {exp_id} (topk trial): pending" in line, what="the state")
        api.stop()
        api.start()
        # Stopped while the watch reconnects or after: it sees the event or reads the new state.
        assert http_json("POST", f"{api.url}/api/v1/experiments/{exp_id}/stop")[0] == 200
        code = watch.wait(timeout=60)
    finally:
        watch.kill()
    assert code == 1, (watch.text(), watch.stderr)
    assert "lost the connection to the control plane" in watch.stderr and "reconnecting" in watch.stderr
    assert "stopped" in watch.text().split("Analysis of experiment")[0]


def test_watch_of_a_finished_experiment_returns_at_once(env: dict[str, str]) -> None:
    exp_id = _create(env, "--no-start")["id"]
    run_cli(env, "experiment", "stop", exp_id)
    result = run_cli(env, "experiment", "watch", exp_id, "--json", timeout=30)
    assert result.returncode == 1
    frames = [json.loads(line) for line in result.stdout.splitlines()]
    assert frames[0]["phase"] == "stopped" and frames[-1]["experiment_id"] == exp_id


def test_deploy_list_and_rollback_errors(env: dict[str, str]) -> None:
    empty = run_cli(env, "deploy", "list")
    assert empty.returncode == 0 and empty.stdout.strip() == "No pipeline deployments."
    assert cli_json(env, "deploy", "list", "--namespace", "prod") == {"deployments": []}
    bad = run_cli(env, "deploy", "list", "--namespace", "Not_A_Label")
    assert bad.returncode == 3 and "must be a DNS label" in bad.stderr
    missing = run_cli(env, "deploy", "rollback", "dep-nope")
    assert missing.returncode == 3
    assert missing.stderr.strip() == "phoenix: error: pipeline deployment 'dep-nope' does not exist"


def test_cost_flow_renders_the_measured_emissions(api: Service, env: dict[str, str]) -> None:
    # web-1 is a current agent (billed series over its window, datapoints counted per minute); web-2 an
    # older one that sends only the snapshot and datapoints per second, priced on those and named so.
    for host, series, billed in (("web-1", 1500, 2400), ("web-2", 500, None)):
        sample = {
            "variant": "main",
            "pipeline": "process-baseline-v1",
            "ts": time.time(),
            "active_series": series,
            "datapoints_per_second": series / 10,
            "series_per_metric": {
                "process_cpu_time_seconds_total": series * 0.6,
                "process_memory_usage_bytes": series * 0.4,
            },
        }
        if billed is not None:
            sample |= {"billed_series": billed, "datapoints_per_minute": series * 6.5}
        status, body, _ = http_json(
            "POST", f"{api.url}/api/v1/agent/measurements", {"samples": [sample]}, {"X-Agent-Host-ID": host}
        )
        assert status == 202, body
    raw = cli_json(env, "cost-flow")
    now = raw["now"]
    assert now["hosts_reporting"] == 2
    assert now["billed_series"] == pytest.approx(2400 + 500)
    assert now["datapoints_per_minute"] == pytest.approx(1500 * 6.5 + 500 / 10 * 60)
    assert (now["series_source"], now["datapoints_source"]) == ("mixed", "mixed")
    result = run_cli(env, "cost-flow")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "  hosts reporting  2" in lines
    billed = (
        f"  billed series    {now['billed_series']:,.0f} (snapshot: an older agent sent no billed series)"
    )
    assert billed in lines
    assert any(
        line.split()[:2] == ["datapoints/min", f"{now['datapoints_per_minute']:,.0f}"] for line in lines
    )
    assert any(line.split()[:3] == ["monthly", "cost", f"{now['monthly_cost']:,.2f}"] for line in lines)
    prices = raw["prices"]
    assert (
        f"model {prices['model']}: {prices['per_series_month']} per billed series per month" in result.stdout
    )
    by_host = {r["key"]: r for r in now["by_host"]}
    for host in ("web-1", "web-2"):
        assert row_of(lines, host).split()[-1] == f"{by_host[host]['monthly_cost']:,.2f}"
    assert "process_cpu_time_seconds_total" in result.stdout
    assert "none yet: run an experiment" in result.stdout
    top = run_cli(env, "cost-flow", "--top", "1")
    assert "(top 1 of 2 by cost" in top.stdout
