"""agent.probe: each arm of an experiment's merged config alone in a probe collector (the real binary)."""

from __future__ import annotations

from pathlib import Path

import psutil

from agent.probe import measure_alone, probe_config
from config_generator.catalog import load_catalog
from config_generator.render import render
from phoenix_common.configmerge import merge_configs
from phoenix_common.keeplist import render_keep_file
from tests.support import distinct_ports


def _merged(keep: Path) -> dict:
    catalog = load_catalog()
    health, telemetry, base_port, cand_port, observe = distinct_ports(5)
    common = {"collection_interval": 1, "health_port": health, "telemetry_port": telemetry}
    baseline = render(
        catalog["process-baseline-v1"], {**common, "prometheus_port": base_port}, variant="baseline"
    )
    candidate = render(
        catalog["process-intelligent-v1"],
        {
            **common,
            "prometheus_port": cand_port,
            "observe_port": observe,
            "keep_list_path": str(keep),
            "critical_processes": ["sshd"],
        },
        variant="candidate",
    )
    return merge_configs(baseline.config, candidate.config)


def test_a_probe_config_holds_one_arm_exporting_locally_only(tmp_path: Path) -> None:
    config = _merged(tmp_path / "keep.json")
    probe = probe_config(config, "candidate")
    pipelines = probe["service"]["pipelines"]
    assert pipelines and all(
        n == "metrics/candidate" or n.startswith("metrics/candidate-") for n in pipelines
    )
    assert all(e.startswith("prometheus/") for p in pipelines.values() for e in p["exporters"])
    assert not any(k.endswith("baseline") for k in probe["processors"]) and probe["extensions"] == {}
    # The running collector's ports are left to it.
    taken = {e["endpoint"] for e in config["exporters"].values() if "endpoint" in e}
    assert not taken & {e["endpoint"] for e in probe["exporters"].values()}


async def test_each_arm_alone_is_measured_by_a_real_collector_that_then_exits(
    otelcol_bin: Path, tmp_path: Path
) -> None:
    keep = tmp_path / "keep.json"
    keep.write_text(render_keep_file(["python3"]))
    config = _merged(keep)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    for arm in ("baseline", "candidate"):
        got = await measure_alone(str(otelcol_bin), config, arm, 3.0)
        assert "error" not in got, got
        assert got["collector_memory_bytes"] > 10 * 2**20 and got["collector_cpu_percent"] >= 0, got
        assert got["seconds"] >= 2.0, got
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before


async def test_a_probe_that_cannot_run_is_an_error_not_a_crash(otelcol_bin: Path, tmp_path: Path) -> None:
    config = _merged(tmp_path / "keep.json")
    got = await measure_alone(str(tmp_path / "no-such-otelcol"), config, "baseline", 2.0)
    assert got["error"].startswith("cannot run"), got
    config["processors"]["batch/baseline"] = {"timeout": "not a duration"}
    got = await measure_alone(str(otelcol_bin), config, "baseline", 3.0)
    assert "exited" in got["error"], got
