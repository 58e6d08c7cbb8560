"""The CLI against the control plane and the config generator together."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from phoenix_cli.render import num
from tests.support import free_port, http_json
from tests.support.agents import deploy, free_ports, wait_registered, wait_running
from tests.support.cli import LiveProcess, clean_env, cli_json, register, row_of, run_cli
from tests.support.services import Stack


@pytest.fixture
def env(tmp_path: Path, stack: Stack) -> dict[str, str]:
    return clean_env(
        tmp_path / "home", PHOENIX_API_URL=stack.api.url, PHOENIX_GENERATOR_URL=stack.generator.url
    )


def test_templates_come_from_the_generator(stack: Stack, env: dict[str, str]) -> None:
    status, catalog, _ = http_json("GET", f"{stack.generator.url}/api/v1/templates")
    assert status == 200
    result = run_cli(env, "templates")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for template in catalog["templates"]:
        row = row_of(lines, template["name"])
        assert str(len(template["parameters"])) in row.split()
    assert cli_json(env, "templates") == catalog

    one = catalog["templates"][0]
    shown = run_cli(env, "templates", one["name"])
    assert shown.returncode == 0
    for parameter in one["parameters"]:
        assert row_of(shown.stdout.splitlines(), parameter)

    unknown = run_cli(env, "templates", "no-such-template")
    assert unknown.returncode == 3 and "has no template 'no-such-template'" in unknown.stderr
    # The generator URL has its own flag, and its own unreachable message.
    down = run_cli(env, "--generator-url", "http://127.0.0.1:9", "templates")
    assert down.returncode == 5 and "cannot reach the config generator at http://127.0.0.1:9" in down.stderr


def test_deploy_create_list_show_rollback(stack: Stack, env: dict[str, str]) -> None:
    register(stack.api.url, "web-1", "prod")
    first = cli_json(
        env, "deploy", "create", "--name", "base", "--namespace", "prod", "--template", "process-baseline-v1"
    )
    created = run_cli(
        env,
        "deploy",
        "create",
        "--name",
        "topk",
        "--namespace",
        "prod",
        "--template",
        "process-topk-v1",
        "--param",
        "k=7",
    )
    assert created.returncode == 0, created.stderr
    assert "sent to 1 host(s)" in created.stdout and f"replacing {first['id']}" in created.stdout
    dep_id = created.stdout.split()[1]

    listed = run_cli(env, "deploy", "list", "--namespace", "prod")
    lines = listed.stdout.splitlines()
    assert row_of(lines, dep_id).split()[1:5] == ["topk", "prod", "process-topk-v1", "active"]
    assert row_of(lines, first["id"]).split()[4] == "superseded"

    shown = cli_json(env, "deploy", "show", dep_id)
    assert shown["parameters"] == {"k": 7}
    config = run_cli(env, "deploy", "show", dep_id, "--config")
    assert config.stdout.strip() == shown["config_yaml"].strip()

    rejected = run_cli(
        env,
        "deploy",
        "create",
        "--name",
        "x",
        "--namespace",
        "prod",
        "--template",
        "process-topk-v1",
        "--param",
        "k=0",
    )
    assert rejected.returncode == 3 and "'k'" in rejected.stderr

    rolled = run_cli(env, "deploy", "rollback", dep_id)
    assert rolled.returncode == 0, rolled.stderr
    assert f"restored {first['id']} on 1 host(s)" in rolled.stdout
    assert run_cli(env, "deploy", "rollback", dep_id).returncode == 3


def test_watch_follows_an_experiment_to_its_analysis(
    stack: Stack, env: dict[str, str], agent_factory: Any
) -> None:
    """The real agent and collector measure; the CLI follows it live and prints the analysis."""
    agent = agent_factory(stack.api.url)
    wait_registered(stack.api, agent)
    created_dep = deploy(stack.api, free_ports())
    wait_running(stack.api, agent.host_id, created_dep["config_hash"], "the baseline deployment to run")
    shared = [f"health_port={free_port()}", f"telemetry_port={free_port()}", "collection_interval=1"]
    params: list[str] = []
    for item in shared:
        params += ["--param-baseline", item, "--param-candidate", item]
    params += [
        "--param-baseline",
        f"prometheus_port={free_port()}",
        "--param-candidate",
        f"prometheus_port={free_port()}",
        "--param-candidate",
        f"observe_port={free_port()}",
        "--param-candidate",
        "k=12",
    ]
    created = cli_json(
        env,
        "experiment",
        "create",
        "--name",
        "live",
        "--namespace",
        "default",
        "--baseline",
        "process-baseline-v1",
        "--candidate",
        "process-intelligent-v1",
        "--critical",
        "otelcol-phoenix",
        "--duration",
        "20s",
        "--warmup",
        "2s",
        "--sample-interval",
        "4s",
        "--billing-window",
        "1m",
        # Lenient criteria, so the verdict is promote and what keeps it from promotion is the run being
        # shorter than one billing window (extrapolated), which --check and promote must honour.
        "--min-reduction",
        "50",
        "--min-cpu-coverage",
        "0",
        "--min-cpu-coverage-p10",
        "0",
        "--max-cpu-rate-deviation",
        "100",
        "--min-samples-per-host",
        "3",
        *params,
    )
    exp_id = created["id"]
    assert "start_error" not in created, created
    watch = LiveProcess(env, "experiment", "watch", exp_id)
    try:
        watch.wait_line(
            lambda line: " measurement " in line and "fewer)" in line, timeout=120, what="a measurement"
        )
        code = watch.wait(timeout=120)
    finally:
        watch.kill()
    out = watch.text()
    assert code == 0, (out, watch.stderr)
    assert "-> analyzing" in out and "phase analyzing -> completed: verdict" in out

    # The table shows the control plane's own figures.
    analysis = cli_json(env, "experiment", "analysis", exp_id)
    assert analysis["final"] is True
    table = out[out.index(f"Analysis of experiment {exp_id} (completed, final)") :]
    lines = table.splitlines()
    for variant in ("baseline", "candidate"):
        pipeline = analysis["pipelines"][variant]
        template, *figures = row_of(lines, variant).split()[1:7]
        assert template == pipeline["template"]
        keys = ("billed_series", "billed_series_mean", "snapshot_series", "datapoints_per_minute")
        for key, shown in zip(keys, figures, strict=False):
            assert float(shown.replace(",", "")) == pytest.approx(pipeline[key], abs=0.01), key
    fleet, cost = analysis["fleet"], analysis["cost"]

    def fleet_row(key: str) -> str:
        """The value of a `key   value` line of the fleet block."""
        for line in lines:
            if line.startswith(f"  {key}  "):
                return line[len(key) + 2 :].strip()
        raise AssertionError(f"no fleet line {key!r} in:\n{table}")

    assert fleet_row("billed series reduction").startswith(
        f"{fleet['billed_series_reduction_percent']:.1f} %"
    )
    assert fleet["series_reduction_percent"] == fleet["billed_series_reduction_percent"]
    assert fleet_row("snapshot series reduction") == f"{fleet['snapshot_series_reduction_percent']:.1f} %"
    dpm = fleet["datapoints_per_minute_reduction_percent"]
    assert fleet_row("datapoints/min reduction") == f"{dpm:.1f} %"
    coverage = fleet_row("CPU coverage")
    assert coverage.startswith(f"{fleet['cpu_coverage_percent']:.1f} %")
    assert coverage.endswith(f", p10 {fleet['cpu_coverage_p10_percent']:.1f} %")
    assert fleet_row("memory coverage").startswith(f"{fleet['memory_coverage_percent']:.1f} %, p10 ")
    fidelity = fleet["cpu_rate_fidelity"]
    assert fleet_row("CPU rate fidelity").startswith(
        f"median {num(fidelity['median'], 4)}, worst {num(fidelity['worst'], 4)} "
        f"over {fidelity['pairs']} pair(s)"
    )
    assert fleet_row("samples per host").startswith(f"{fleet['samples_per_host']} ")
    assert fleet_row("billing window").startswith("1m, measured ")
    for row in ("before", "after", "savings"):
        expected = [f"{cost['monthly_' + row]:,.2f}", f"{cost['annual_' + row]:,.2f}"]
        assert row_of(lines, row).split()[1:] == expected
    assert f"(price model {cost['price_model']}: " in table
    # 20 s of a 1 m billing window: a promote verdict, final, but extrapolated and so not promotable.
    assert analysis["extrapolated"] is True and analysis["promotable"] is False
    assert "  EXTRAPOLATED: " in table
    assert analysis["verdict"] == "promote", [c for c in analysis["criteria"] if not c["passed"]]
    assert "Verdict: PROMOTE - not promotable without --force (extrapolated)" in table
    passed = sum(1 for criterion in analysis["criteria"] if criterion["passed"])
    assert table.count(" pass") == passed
    # --check exits 0 only for a final analysis that may be promoted: not an extrapolated one.
    assert run_cli(env, "experiment", "analysis", exp_id, "--check").returncode == 1

    results = run_cli(env, "experiment", "results", exp_id)
    assert results.returncode == 0
    assert row_of(results.stdout.splitlines(), agent.host_id).split()[1] in ("baseline", "candidate")

    refused = run_cli(env, "experiment", "promote", exp_id)
    assert refused.returncode == 3 and "is extrapolated" in refused.stderr, refused.stderr
    promoted = run_cli(env, "experiment", "promote", exp_id, "--force")
    assert promoted.returncode == 0, promoted.stderr
    assert "candidate promoted through 1 deployment(s)" in promoted.stdout
    again = run_cli(env, "experiment", "promote", exp_id, "--force")
    assert again.returncode == 3 and "already promoted" in again.stderr
    rolled = json.loads(run_cli(env, "--json", "experiment", "rollback", exp_id).stdout)
    assert rolled["experiment_id"] == exp_id and len(rolled["deployments"]) == 1
    costs = run_cli(env, "cost-flow")
    projection = ["default", exp_id, "process-intelligent-v1"]
    assert any(line.split()[:3] == projection for line in costs.stdout.splitlines())
