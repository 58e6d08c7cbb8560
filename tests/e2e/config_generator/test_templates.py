"""Templates render configs that follow the component conventions and that the real collector accepts."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from config_generator.catalog import ParameterError, Template
from config_generator.render import RECEIVER, Rendered, render
from phoenix_common.configmerge import MergeConflict, merge_configs
from phoenix_common.keeplist import render_keep_file

TEMPLATES = ["process-baseline-v1", "process-topk-v1", "process-adaptive-v1", "process-intelligent-v1"]
SELECTION = TEMPLATES[1:]
NASTY_CRITICAL = [
    'q"uote',
    "back\\slash",
    "${env:HOME}",
    "re.*[a-z]+(x|y)?^$",
    "yaml: #x",
    "- dash",
    "{b}",
    "sshd",
]


def with_keep_file(rendered: Rendered, tmp_path: Path, names: list[str] | None = None) -> str:
    """The config text with its keep-list file relocated into tmp_path (as the agent may do)."""
    if rendered.keep_list is None:
        return rendered.config_yaml
    keep = tmp_path / f"keep-{rendered.variant}.yaml"
    keep.write_text(render_keep_file(rendered.keep_list["initial"] if names is None else names))
    return rendered.config_yaml.replace(rendered.keep_list["path"], str(keep))


def collector_validate(binary: Path, text: str, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text)
    result = subprocess.run(
        [str(binary), "validate", f"--config={config}"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"collector rejected the config:\n{result.stderr}\n---\n{text}"


def edge_cases(template: Template) -> list[tuple[str, dict[str, Any], list[str] | None]]:
    """(case id, parameters, keep-list names) worth validating for `template`."""
    cases: list[tuple[str, dict[str, Any], list[str] | None]] = [("defaults", {}, None)]
    cases.append(
        (
            "fast-interval-timestamps",
            {"collection_interval": 1, "send_timestamps": True, "experiment_id": "exp-1.a:b_c"},
            None,
        )
    )
    if "k" in template.parameters:
        k = template.parameters["k"]
        cases.append(("k-min-empty-keep-list", {"k": int(k.minimum or 1)}, []))
        cases.append(("k-max-nasty-keep-list", {"k": int(k.maximum or 1)}, NASTY_CRITICAL))
    if "critical_processes" in template.parameters:
        cases.append(("nasty-critical", {"critical_processes": NASTY_CRITICAL}, None))
        cases.append(("nasty-critical-empty-keep-list", {"critical_processes": NASTY_CRITICAL}, []))
    return cases


@pytest.mark.collector
@pytest.mark.parametrize("name", TEMPLATES)
def test_template_renders_configs_the_collector_accepts(
    name: str, catalog: dict[str, Template], otelcol_bin: Path, tmp_path: Path
) -> None:
    template = catalog[name]
    for case, params, names in edge_cases(template):
        case_dir = tmp_path / case
        case_dir.mkdir()
        rendered = render(template, params, variant="candidate")
        collector_validate(otelcol_bin, with_keep_file(rendered, case_dir, names), case_dir)


@pytest.mark.collector
def test_variants_merge_into_one_config_the_collector_accepts(
    catalog: dict[str, Template], otelcol_bin: Path, tmp_path: Path
) -> None:
    parts = [
        render(catalog["process-baseline-v1"], {"prometheus_port": 9464}, "baseline", "e1"),
        render(
            catalog["process-intelligent-v1"],
            {"prometheus_port": 9466, "observe_port": 9467, "critical_processes": NASTY_CRITICAL},
            "candidate",
            "e1",
        ),
        render(catalog["process-topk-v1"], {"prometheus_port": 9468, "observe_port": 9469}, "topk", "e1"),
    ]
    merged = merge_configs(*(yaml.safe_load(with_keep_file(p, tmp_path)) for p in parts))
    assert set(merged["service"]["pipelines"]) == {
        "metrics/baseline",
        "metrics/candidate",
        "metrics/candidate-critical",
        "metrics/candidate-observe",
        "metrics/topk",
        "metrics/topk-observe",
    }
    collector_validate(otelcol_bin, yaml.safe_dump(merged), tmp_path)


@pytest.mark.parametrize("name", TEMPLATES)
def test_component_ids_follow_the_contract(name: str, catalog: dict[str, Template]) -> None:
    rendered = render(catalog[name], {}, variant="candidate", experiment_id="exp-7")
    config = yaml.safe_load(rendered.config_yaml)
    assert rendered.config_hash == hashlib.sha256(rendered.config_yaml.encode()).hexdigest()
    assert list(config["receivers"]) == [RECEIVER]
    assert list(config["extensions"]) == ["health_check"]
    assert config["extensions"]["health_check"]["endpoint"] == "127.0.0.1:13133"
    for section in ("processors", "exporters"):
        for cid in config[section]:
            assert cid.endswith(
                (
                    "/candidate",
                    "/candidate-observe",
                    "/candidate-rollup",
                    "/candidate-tier",
                    "/candidate-critical",
                )
            ), cid
    pipelines = config["service"]["pipelines"]
    expected = {"metrics/candidate"} | ({"metrics/candidate-observe"} if name in SELECTION else set())
    assert set(pipelines) == expected
    main = pipelines["metrics/candidate"]
    assert main["receivers"] == [RECEIVER]
    assert main["exporters"] == ["prometheus/candidate"]
    assert main["processors"][0] == "memory_limiter/candidate"
    assert main["processors"][-1] == "batch/candidate"
    exporter = config["exporters"]["prometheus/candidate"]
    assert exporter["endpoint"] == "127.0.0.1:9464"
    assert exporter["resource_constant_labels"] == {"included": ["*"]}
    assert exporter["metric_expiration"] == "60s"
    attrs = {a["key"]: a["value"] for a in config["processors"]["resource/candidate"]["attributes"]}
    assert attrs == {
        "phoenix.pipeline": name,
        "phoenix.variant": "candidate",
        "phoenix.experiment_id": "exp-7",
    }
    reader = config["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    assert reader == {"host": "127.0.0.1", "port": 8888}
    assert rendered.prometheus_endpoint == "127.0.0.1:9464"
    if name in SELECTION:
        assert rendered.observe_endpoint == "127.0.0.1:9465"
        assert config["exporters"]["prometheus/candidate-observe"]["endpoint"] == "127.0.0.1:9465"
        assert rendered.keep_list is not None
        assert rendered.keep_list["path"] == "/var/lib/phoenix-agent/keep/candidate.yaml"
        # The roll-up reads its keep file live (phoenixkeeplist); the others embed it with ${file:}.
        keep_path = "/var/lib/phoenix-agent/keep/candidate.yaml"
        embedded = f"${{file:{keep_path}}}" in rendered.config_yaml
        assert embedded != rendered.keep_list["live"] and keep_path in rendered.config_yaml
    else:
        assert rendered.observe_endpoint is None and rendered.keep_list is None


def test_shared_sections_are_identical_across_templates_and_variants(catalog: dict[str, Template]) -> None:
    configs = [
        yaml.safe_load(render(catalog[n], {}, variant=f"v{i}").config_yaml) for i, n in enumerate(TEMPLATES)
    ]
    for config in configs[1:]:
        assert config["receivers"] == configs[0]["receivers"]
        assert config["extensions"] == configs[0]["extensions"]
        assert config["service"]["telemetry"] == configs[0]["service"]["telemetry"]


def test_keep_list_metadata(catalog: dict[str, Template]) -> None:
    intelligent = render(
        catalog["process-intelligent-v1"],
        {"k": 5, "refresh_seconds": 60, "critical_processes": ["sshd", "bash", "sshd"]},
        "c",
    )
    assert intelligent.keep_list == {
        "path": "/var/lib/phoenix-agent/keep/c.yaml",
        "strategy": "intelligent",
        "k": 5,
        "critical": ["bash", "sshd"],
        "initial": ["bash", "sshd"],
        "refresh_seconds": 60,
        "coverage_target": 98,
        "live": True,
    }
    topk = render(catalog["process-topk-v1"], {"keep_list_path": "/srv/keep/t.yaml"}, "t")
    assert topk.keep_list is not None
    assert topk.keep_list["strategy"] == "topk" and topk.keep_list["initial"] == []
    assert topk.keep_list["path"] == "/srv/keep/t.yaml"
    assert render(catalog["process-adaptive-v1"], {}, "a").keep_list["strategy"] == "adaptive"  # type: ignore[index]


@pytest.mark.parametrize(
    ("name", "params", "variant", "parameter", "message"),
    [
        ("process-baseline-v1", {"k": 3}, "main", "k", "unknown parameter 'k'"),
        ("process-topk-v1", {"critical_processes": []}, "main", "critical_processes", "unknown parameter"),
        ("process-topk-v1", {"k": "10"}, "main", "k", "must be an integer, got a string"),
        ("process-topk-v1", {"k": True}, "main", "k", "must be an integer, got a boolean"),
        ("process-topk-v1", {"k": 1.5}, "main", "k", "must be an integer"),
        ("process-topk-v1", {"k": 0}, "main", "k", "must be >= 1"),
        ("process-topk-v1", {"k": 501}, "main", "k", "must be <= 500"),
        ("process-baseline-v1", {"collection_interval": 301}, "main", "collection_interval", "<= 300"),
        ("process-baseline-v1", {"prometheus_port": 80}, "main", "prometheus_port", ">= 1024"),
        ("process-baseline-v1", {"send_timestamps": "yes"}, "main", "send_timestamps", "must be a boolean"),
        ("process-baseline-v1", {"experiment_id": "${env:HOME}"}, "main", "experiment_id", "must match"),
        ("process-baseline-v1", {"experiment_id": "a\nb"}, "main", "experiment_id", "must match"),
        ("process-baseline-v1", {"health_port": 9464}, "main", "health_port", "already taken"),
        ("process-topk-v1", {"observe_port": 9464}, "main", "observe_port", "already taken"),
        ("process-topk-v1", {"keep_list_path": "relative/k.yaml"}, "main", "keep_list_path", "must match"),
        ("process-topk-v1", {"keep_list_path": "/k}/x.yaml"}, "main", "keep_list_path", "must match"),
        ("process-topk-v1", {"keep_list_path": "/k/${env:HOME}"}, "main", "keep_list_path", "must match"),
        ("process-intelligent-v1", {"critical_processes": "sshd"}, "main", "critical_processes", "array"),
        (
            "process-intelligent-v1",
            {"critical_processes": ["ok", "a\nb"]},
            "main",
            "critical_processes",
            "[1]: process name 'a\\nb' holds control character",
        ),
        ("process-intelligent-v1", {"critical_processes": [""]}, "main", "critical_processes", "empty"),
        (
            "process-intelligent-v1",
            {"critical_processes": [7]},
            "main",
            "critical_processes",
            "must be a string",
        ),
        (
            "process-intelligent-v1",
            {"critical_processes": ["p"] * 201},
            "main",
            "critical_processes",
            "limit",
        ),
        (
            "process-baseline-v1",
            {"collection_interval": 60, "metric_expiration_seconds": 100},
            "main",
            "metric_expiration_seconds",
            "at least twice collection_interval (120)",
        ),
        ("process-baseline-v1", {}, "Main", "variant", "variant must match"),
        ("process-baseline-v1", {}, "a/b", "variant", "variant must match"),
        ("process-baseline-v1", {}, "a-observe", "variant", "variant must match"),
    ],
)
def test_invalid_parameters_name_the_parameter(
    catalog: dict[str, Template],
    name: str,
    params: dict[str, Any],
    variant: str,
    parameter: str,
    message: str,
) -> None:
    with pytest.raises(ParameterError) as info:
        render(catalog[name], params, variant=variant)
    assert info.value.parameter == parameter
    assert message in str(info.value)


def test_series_expiration_outlives_the_scrape_interval(catalog: dict[str, Template]) -> None:
    def expiration(params: dict[str, Any]) -> str:
        config = render(catalog["process-topk-v1"], params).config
        values = {e["metric_expiration"] for e in config["exporters"].values()}
        assert len(values) == 1
        return values.pop()

    assert expiration({}) == "60s"
    assert expiration({"collection_interval": 300}) == "900s"
    assert expiration({"collection_interval": 5, "metric_expiration_seconds": 10}) == "10s"


def test_experiment_id_given_twice_must_agree(catalog: dict[str, Template]) -> None:
    template = catalog["process-baseline-v1"]
    assert render(template, {"experiment_id": "e1"}, experiment_id="e1").config_yaml.count("e1") == 1
    with pytest.raises(ParameterError, match="twice"):
        render(template, {"experiment_id": "e1"}, experiment_id="e2")


def test_merge_reports_the_conflicting_key(catalog: dict[str, Template]) -> None:
    a = render(catalog["process-baseline-v1"], {"collection_interval": 10}, "baseline").config
    b = render(
        catalog["process-topk-v1"],
        {"collection_interval": 5, "prometheus_port": 9466, "observe_port": 9467},
        "candidate",
    ).config
    with pytest.raises(MergeConflict) as info:
        merge_configs(a, b)
    assert info.value.path == "receivers.hostmetrics/phoenix.collection_interval"


def test_rendering_is_deterministic(catalog: dict[str, Template]) -> None:
    params = {"critical_processes": ["b", "a"], "experiment_id": "e"}
    first = render(catalog["process-intelligent-v1"], params, "candidate")
    second = render(
        catalog["process-intelligent-v1"], {**params, "critical_processes": ["a", "b", "a"]}, "candidate"
    )
    assert first.config_hash == second.config_hash
