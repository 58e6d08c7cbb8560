"""An experiment against the real collector: both variants side by side, sampled, then the old config back."""

from __future__ import annotations

from typing import Any

import aiohttp

from agent.collector import sha256_text
from phoenix_common.keeplist import parse_keep_file
from tests.support import eventually, free_port
from tests.support.agent_harness import Harness, Ports, collector_yaml, outbox_reports, serves


def render(template: str, variant: str, experiment_id: str, **parameters: Any) -> dict[str, Any]:
    """A Rendered object from the real generator code (the agent itself never imports it)."""
    from config_generator.catalog import load_catalog
    from config_generator.render import render as do_render

    ports = {
        "prometheus_port": free_port(),
        "health_port": parameters.pop("health_port"),
        "telemetry_port": parameters.pop("telemetry_port"),
    }
    if template != "process-baseline-v1":
        ports["observe_port"] = free_port()
    out = do_render(
        load_catalog()[template],
        {"collection_interval": 1, **ports, **parameters},
        variant=variant,
        experiment_id=experiment_id,
    )
    return out.to_dict()


async def test_experiment_measures_both_variants_and_restores(
    harness: Harness, http: aiohttp.ClientSession
) -> None:
    h = harness.handlers
    before = Ports.pick()
    await h.execute(
        {
            "id": "dep",
            "type": "deployment",
            "action": "apply",
            "payload": {"pipeline": "hand-written", "config_yaml": collector_yaml(before)},
        }
    )
    assert harness.final("dep")["status"] == "completed"

    shared = {"health_port": free_port(), "telemetry_port": free_port()}
    baseline = render("process-baseline-v1", "baseline", "exp-1", **shared)
    candidate = render(
        "process-intelligent-v1", "candidate", "exp-1", k=3, critical_processes=["otelcol-phoenix"], **shared
    )
    payload = {
        "experiment_id": "exp-1",
        "duration_seconds": 4,
        "warmup_seconds": 1,
        "sample_interval_seconds": 1,
        "critical_processes": ["otelcol-phoenix"],
        "load_profile": None,
        "baseline": baseline,
        "candidate": candidate,
    }
    await h.execute({"id": "exp-task", "type": "experiment", "action": "start", "payload": payload})
    # The experiment runs in the background; other tasks are still handled meanwhile.
    assert h.experiment is not None
    await eventually(
        lambda: serves(http, f"http://{candidate['prometheus_endpoint']}/metrics"),
        what="the candidate exporter",
    )
    await h.execute({"id": "metrics", "type": "metrics", "action": "collect", "payload": {}})
    pipelines = harness.final("metrics")["result"]["pipelines"]
    assert set(pipelines) == {"baseline", "candidate"}
    # A second experiment on the same host is refused while one runs.
    await h.execute({"id": "exp-2", "type": "experiment", "action": "start", "payload": payload})
    assert "already running" in harness.final("exp-2")["error"]
    # The keep-list file was relocated into the state dir and holds the initial (critical) list.
    assert parse_keep_file((harness.state.keep_dir / "candidate.yaml").read_text()) == ["otelcol-phoenix"]

    await eventually(lambda: h.experiment is None, timeout=60, what="the experiment to finish")
    final = harness.final("exp-task")
    assert final["status"] == "completed", final
    summary = final["result"]
    assert summary["experiment_id"] == "exp-1" and summary["ended_by"] == "duration"
    assert summary["restored_config_hash"] == sha256_text(collector_yaml(before))

    batches = [r["body"] for r in outbox_reports(harness.state.root) if r["kind"] == "measurements"]
    samples = [s for b in batches for s in b["samples"]]
    assert all(b["experiment_id"] == "exp-1" and b["task_id"] == "exp-task" for b in batches)
    by_variant = {v: [s for s in samples if s["variant"] == v] for v in ("baseline", "candidate")}
    assert by_variant["baseline"] and by_variant["candidate"]
    assert summary["samples_posted"] == len(samples)
    for variant, got in by_variant.items():
        # Warm-up samples are posted too; the summary counts only the measured window.
        measured = [s for s in got if s["ts"] >= summary["measured_from"]]
        assert summary["variants"][variant]["samples"] == len(measured) > 0
        for sample in got:
            assert sample["collector_memory_bytes"] > 0
            assert sample["active_series"] > 0
    # The candidate keeps at most k processes plus the critical one at full detail; the baseline all.
    base_series = summary["variants"]["baseline"]["active_series"]["mean"]
    cand_series = summary["variants"]["candidate"]["active_series"]["mean"]
    # The agent reports raw figures only; the control plane derives the reduction (control_plane/analysis.py).
    assert cand_series < base_series

    # The config that ran before is back, with the deployment's record.
    assert h.collector.config_path.read_text() == collector_yaml(before)
    assert await serves(http, f"http://127.0.0.1:{before.prometheus}/metrics")
    assert not await serves(http, f"http://{candidate['prometheus_endpoint']}/metrics")
    assert harness.state.load_applied()["pipeline"] == "hand-written"


async def test_stop_task_ends_a_running_experiment(harness: Harness, http: aiohttp.ClientSession) -> None:
    h = harness.handlers
    shared = {"health_port": free_port(), "telemetry_port": free_port()}
    baseline = render("process-baseline-v1", "baseline", "exp-s", **shared)
    candidate = render("process-topk-v1", "candidate", "exp-s", k=2, **shared)
    payload = {
        "experiment_id": "exp-s",
        "duration_seconds": 600,
        "warmup_seconds": 0,
        "sample_interval_seconds": 1,
        "critical_processes": [],
        "load_profile": "steady",
        "baseline": baseline,
        "candidate": candidate,
    }
    await h.execute({"id": "long", "type": "experiment", "action": "start", "payload": payload})
    experiment = h.experiment
    assert experiment is not None
    await eventually(lambda: experiment.load is not None and experiment.load.pids, what="load processes")
    load_pids = list(experiment.load.pids)
    await eventually(
        lambda: [r for r in outbox_reports(harness.state.root) if r["kind"] == "measurements"],
        what="a first batch of samples",
    )

    await h.execute(
        {"id": "stop", "type": "experiment", "action": "stop", "payload": {"experiment_id": "exp-s"}}
    )
    assert harness.final("stop")["status"] == "completed"
    assert harness.final("stop")["result"]["restored_config_hash"] is None  # nothing ran before
    start = harness.final("long")
    assert start["status"] == "completed" and start["result"]["ended_by"] == "stop task"
    assert h.experiment is None
    # Nothing ran before the experiment, so nothing runs after it; no load process is left.
    assert not h.collector.config_path.exists()
    assert (await h.collector.supervisor.state()).state == "stopped"
    await eventually(lambda: not any(_running(pid) for pid in load_pids), 10, "no load process left")


def _running(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


async def test_agent_shutdown_stops_the_experiment_and_restores(harness: Harness) -> None:
    h = harness.handlers
    before = Ports.pick()
    await h.execute(
        {
            "id": "dep",
            "type": "deployment",
            "action": "apply",
            "payload": {"pipeline": "hand-written", "config_yaml": collector_yaml(before)},
        }
    )
    shared = {"health_port": free_port(), "telemetry_port": free_port()}
    payload = {
        "experiment_id": "exp-x",
        "duration_seconds": 600,
        "warmup_seconds": 0,
        "sample_interval_seconds": 1,
        "baseline": render("process-baseline-v1", "baseline", "exp-x", **shared),
        "candidate": render("process-adaptive-v1", "candidate", "exp-x", k=2, **shared),
    }
    await h.execute({"id": "exp", "type": "experiment", "action": "start", "payload": payload})
    await eventually(
        lambda: h.experiment is not None and h.experiment.started_at, what="the experiment to run"
    )
    await h.shutdown()
    final = harness.final("exp")
    assert final["status"] == "failed"
    assert final["error"].startswith("the agent stopped during the experiment; previous config restored")
    assert h.collector.config_path.read_text() == collector_yaml(before)
    assert harness.state.load_applied()["pipeline"] == "hand-written"


async def test_keep_list_refresh_reloads_only_on_change(
    harness: Harness, http: aiohttp.ClientSession
) -> None:
    from pathlib import Path

    from agent.keeprefresh import KeepListRefresher
    from phoenix_common import wire

    h = harness.handlers
    rendered = render(
        "process-topk-v1", "main", "keep", k=2, health_port=free_port(), telemetry_port=free_port()
    )
    await h.execute(
        {
            "id": "dep",
            "type": "deployment",
            "action": "apply",
            "payload": {
                "pipeline": "process-topk-v1",
                "config_yaml": rendered["config_yaml"],
                "keep_list": rendered["keep_list"],
            },
        }
    )
    assert harness.final("dep")["status"] == "completed"
    keep_path = harness.state.keep_dir / "main.yaml"
    spec = wire.check(wire.KeepList, rendered["keep_list"], "keep_list")
    refresher = KeepListRefresher(
        h.collector,
        http,
        variant="main",
        pipeline="process-topk-v1",
        spec=spec,
        keep_path=Path(keep_path),
        observe_endpoint=rendered["observe_endpoint"],
        period=30,
        min_hold_seconds=3600,
    )
    await eventually(lambda: refresher._observe(), what="observation data")
    reloads = h.collector.reloaded_at
    assert await refresher.refresh_once() is True  # the first ranking fills the k free slots
    assert len(parse_keep_file(keep_path.read_text())) == 2
    assert h.collector.reloaded_at > reloads
    await eventually(
        lambda: serves(http, f"http://{rendered['prometheus_endpoint']}/metrics"), what="exporter"
    )
    reloads = h.collector.reloaded_at
    # Held for an hour and hysteresis: the same processes stay, so no rewrite and no reload.
    for _ in range(3):
        await refresher.refresh_once()
    assert refresher.changes == 1
    assert h.collector.reloaded_at == reloads
