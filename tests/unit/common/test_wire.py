"""The wire contracts: what they accept, and error messages that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from phoenix_common import wire

KEEP = {"path": "/var/lib/phoenix-agent/keep/candidate.yaml", "strategy": "topk", "k": 3}
RENDERED = {
    "template": "process-topk-v1",
    "variant": "candidate",
    "config_yaml": "receivers: {}",
    "prometheus_endpoint": "127.0.0.1:9464",
}
START = {"experiment_id": "e", "duration_seconds": 60, "baseline": RENDERED, "candidate": RENDERED}
SAMPLE = {"variant": "baseline", "ts": 1_760_000_000.5, "active_series": 10}


def fails(kind: Any, value: Any, root: str = "payload") -> wire.WireError:
    with pytest.raises(wire.WireError) as caught:
        wire.check(kind, value, root)
    return caught.value


def test_a_full_experiment_start_decodes_with_defaults() -> None:
    start = wire.check(wire.ExperimentStart, {**START, "candidate": {**RENDERED, "keep_list": KEEP}})
    assert start.warmup_seconds == 0.0 and start.sample_interval_seconds == 10.0
    assert start.candidate is not None and start.candidate.keep_list == wire.KeepList(
        KEEP["path"], "topk", 3, [], [], 120.0
    )
    assert start.baseline is not None and start.baseline.keep_list is None


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        (wire.DeploymentApply, "rm -rf /", "payload must be an object"),
        (wire.DeploymentApply, {}, "payload.pipeline is required"),
        (wire.DeploymentApply, {"pipeline": "p", "config_yaml": 42}, "payload.config_yaml must be a string"),
        (
            wire.DeploymentApply,
            {"pipeline": "p", "config_yaml": "a", "keep_list": {**KEEP, "strategy": "random"}},
            "payload.keep_list.strategy must be one of topk, adaptive, intelligent, got 'random'",
        ),
        (
            wire.DeploymentApply,
            {"pipeline": "p", "config_yaml": "a", "keep_list": {**KEEP, "k": True}},
            "payload.keep_list.k must be an integer",
        ),
        (
            wire.DeploymentApply,
            {"pipeline": "p", "config_yaml": "a", "keep_list": {**KEEP, "k": -1}},
            "payload.keep_list.k must not be negative",
        ),
        (
            wire.DeploymentApply,
            {"pipeline": "p", "config_yaml": "a", "keep_list": {**KEEP, "path": "keep/x.yaml"}},
            "payload.keep_list.path must be absolute",
        ),
        (
            wire.DeploymentApply,
            {"pipeline": "p", "config_yaml": "a", "keep_list": {**KEEP, "initial": ["sshd", " "]}},
            "payload.keep_list.initial is invalid: process name must not be empty or blank",
        ),
        (
            wire.DeploymentApply,
            {"pipeline": "p", "config_yaml": "a", "keep_list": {**KEEP, "critical": [1]}},
            "payload.keep_list.critical must be an array of strings",
        ),
        (
            wire.DeploymentApply,
            {"pipeline": "p", "config_yaml": "a", "keep_list": {**KEEP, "critical": ["sshd", wire.OTHER]}},
            "payload.keep_list.critical must not name 'other'",
        ),
        (wire.ExperimentStart, {}, "payload.experiment_id is required"),
        (
            wire.ExperimentStart,
            {"experiment_id": "e", "duration_seconds": "long"},
            "payload.duration_seconds must be a number",
        ),
        (
            wire.ExperimentStart,
            {"experiment_id": "e", "duration_seconds": 5},
            "payload.baseline must be a Rendered object",
        ),
        (wire.ExperimentStart, {**START, "candidate": 5}, "payload.candidate must be a Rendered object"),
        (
            wire.ExperimentStart,
            {**START, "duration_seconds": float("inf")},
            "payload.duration_seconds must be between 0 and 604800",
        ),
        (
            wire.ExperimentStart,
            {**START, "sample_interval_seconds": 0.01},
            "payload.sample_interval_seconds must be at least 1",
        ),
        (
            wire.ExperimentStart,
            {**START, "sample_interval_seconds": float("nan")},
            "payload.sample_interval_seconds must be at least 1",
        ),
        (
            wire.ExperimentStart,
            {**START, "warmup_seconds": -1},
            "payload.warmup_seconds must not be negative",
        ),
        (wire.ExperimentStart, {**START, "load_profile": 5}, "payload.load_profile must be a string"),
        (
            wire.ExperimentStart,
            {**START, "candidate": {**RENDERED, "prometheus_endpoint": "10.0.0.8:9464"}},
            "payload.candidate.prometheus_endpoint must be a loopback host:port such as 127.0.0.1:9464, "
            "got '10.0.0.8:9464'",
        ),
        (
            wire.ExperimentStart,
            {**START, "baseline": {**RENDERED, "observe_endpoint": "localhost"}},
            "payload.baseline.observe_endpoint must be a loopback host:port",
        ),
        (
            wire.ExperimentStart,
            {**START, "baseline": {**RENDERED, "keep_list": {**KEEP, "refresh_seconds": 0}}},
            "payload.baseline.keep_list.refresh_seconds must be positive",
        ),
        (wire.ExperimentStop, {"experiment_id": 7}, "payload.experiment_id must be a string"),
    ],
)
def test_task_payload_errors_name_the_field(kind: Any, value: Any, message: str) -> None:
    assert str(fails(kind, value)).startswith(message)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ts": 5}, "samples[1].ts must be a unix time in seconds"),
        ({"ts": "now"}, "samples[1].ts must be a unix time in seconds"),
        ({"variant": ""}, "samples[1].variant must be a string of 1-64 characters"),
        ({"variant": "v" * 65}, "samples[1].variant must be a string of 1-64 characters"),
        ({"active_series": None}, "samples[1].active_series must be a number between 0 and 1e+15"),
        ({"active_series": -1}, "samples[1].active_series must be a number between 0 and 1e+15"),
        (
            {"datapoints_per_second": True},
            "samples[1].datapoints_per_second must be a number between 0 and 1e+15",
        ),
        (
            {"datapoints_per_second": 1e308},
            "samples[1].datapoints_per_second must be a number between 0 and 1e+15",
        ),
        (
            {"process_memory_bytes": {"sshd": -1}},
            "samples[1].process_memory_bytes must map names to numbers between 0 and 1e+15",
        ),
        (
            {"series_per_metric": [1]},
            "samples[1].series_per_metric must map names to numbers between 0 and 1e+15",
        ),
        ({"critical_present": {"sshd": 1}}, "samples[1].critical_present must map names to booleans"),
        ({"kept_processes": "sshd"}, "samples[1].kept_processes must be an array of strings"),
    ],
)
def test_sample_errors_name_the_sample_and_field(change: dict[str, Any], message: str) -> None:
    error = fails(list[wire.Sample], [SAMPLE, {**SAMPLE, **change}], "samples")
    assert str(error) == message
    assert error.field == message.split(" ")[0].removeprefix("samples")


def test_a_missing_sample_figure_is_required() -> None:
    sample = {k: v for k, v in SAMPLE.items() if k != "active_series"}
    assert str(fails(list[wire.Sample], [sample], "samples")) == "samples[0].active_series is required"


def test_a_measurements_body_holds_1_to_200_samples() -> None:
    assert str(fails(wire.Measurements, {"samples": []}, "")) == "samples must hold 1-200 samples"
    assert str(fails(wire.Measurements, {"samples": [SAMPLE] * 201}, "")) == "samples must hold 1-200 samples"
    body = wire.check(wire.Measurements, {"experiment_id": "e", "samples": [SAMPLE]})
    assert body.samples[0].active_series == 10 and body.samples[0].process_cpu_seconds_rate is None


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"namespace": 3}, "namespace", "must be a string"),
        ({"labels": {"a": 1}}, "labels", "must map strings to strings"),
        ({"collector": {"restarts": -1}}, "collector.restarts", "must be a non-negative integer"),
        ({"collector": {"restarts": True}}, "collector.restarts", "must be a non-negative integer"),
        ({"collector": {"state": 5}}, "collector.state", "must be a string"),
        ({"running_tasks": [5]}, "running_tasks", "must be an array of task ids"),
    ],
)
def test_heartbeat_errors_give_field_and_reason(body: dict[str, Any], field: str, reason: str) -> None:
    error = fails(wire.Heartbeat, body, "")
    assert (error.field, error.reason, str(error)) == (field, reason, f"{field} {reason}")


def test_null_means_absent_and_unknown_fields_are_ignored() -> None:
    beat = wire.check(wire.Heartbeat, {"namespace": None, "collector": {"state": "running", "new": 1}})
    assert beat.namespace is None and beat.collector == wire.CollectorReport(state="running")
    assert wire.to_json(beat.collector) == {"state": "running"}
