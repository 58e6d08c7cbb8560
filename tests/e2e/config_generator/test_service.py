"""The generator over real HTTP: `python -m config_generator` as a subprocess."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT, http_json
from tests.support.generator import API_TOKEN, ControlPlaneStandIn, Service

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
TEMPLATES = ["process-adaptive-v1", "process-baseline-v1", "process-intelligent-v1", "process-topk-v1"]


def call(
    service: Service, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, Any]:
    return http_json(method, f"{service.url}{path}", body, {**AUTH, **(headers or {})})


def assert_problem(status: int, body: Any, headers: Any, expected: int, *words: str) -> None:
    assert status == expected, body
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["status"] == expected
    for word in words:
        assert word in body["detail"], body


def experiment(experiment_id: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": experiment_id,
        "baseline_pipeline": "process-baseline-v1",
        "candidate_pipeline": "process-intelligent-v1",
        "parameters": {"baseline": {}, "candidate": {"k": 7}},
        "critical_processes": ["sshd", "postgres"],
        "status": "pending",
    }
    body.update(overrides)
    return body


def test_health_and_templates(generator: Service) -> None:
    status, body, _ = http_json("GET", f"{generator.url}/health")
    assert status == 200 and body["status"] == "ok"
    status, body, _ = call(generator, "GET", "/api/v1/templates")
    assert status == 200
    assert [t["name"] for t in body["templates"]] == TEMPLATES
    for template in body["templates"]:
        assert template["description"]
        interval = template["parameters"]["collection_interval"]
        assert interval == {
            "type": "integer",
            "default": 10,
            "minimum": 1,
            "maximum": 300,
            "description": interval["description"],
        }
    by_name = {t["name"]: t for t in body["templates"]}
    assert by_name["process-intelligent-v1"]["parameters"]["critical_processes"]["type"] == "string_list"
    assert "k" in by_name["process-topk-v1"]["parameters"]
    assert "k" not in by_name["process-baseline-v1"]["parameters"]


@pytest.mark.parametrize("name", TEMPLATES)
def test_render_returns_the_rendered_object(generator: Service, name: str) -> None:
    status, body, _ = call(
        generator,
        "POST",
        "/api/v1/render",
        {
            "template": name,
            "variant": "candidate",
            "experiment_id": "exp-1",
            "parameters": {"prometheus_port": 9466, "observe_port": 9467}
            if name != "process-baseline-v1"
            else {},
        },
    )
    assert status == 200, body
    assert set(body) == {
        "template",
        "variant",
        "config_yaml",
        "config_hash",
        "prometheus_endpoint",
        "observe_endpoint",
        "keep_list",
        "shipping",
    }
    assert body["shipping"] is None, "without a destination nothing ships"
    assert body["template"] == name and body["variant"] == "candidate"
    assert body["config_hash"] == hashlib.sha256(body["config_yaml"].encode()).hexdigest()
    config = yaml.safe_load(body["config_yaml"])
    assert "metrics/candidate" in config["service"]["pipelines"]
    if name == "process-baseline-v1":
        assert body["prometheus_endpoint"] == "127.0.0.1:9464"
        assert body["observe_endpoint"] is None and body["keep_list"] is None
    else:
        assert body["prometheus_endpoint"] == "127.0.0.1:9466"
        assert body["observe_endpoint"] == "127.0.0.1:9467"
        assert body["keep_list"]["path"] == "/var/lib/phoenix-agent/keep/candidate.yaml"


def test_render_defaults_to_variant_main(generator: Service) -> None:
    status, body, _ = call(generator, "POST", "/api/v1/render", {"template": "process-baseline-v1"})
    assert status == 200 and body["variant"] == "main"
    assert "metrics/main" in yaml.safe_load(body["config_yaml"])["service"]["pipelines"]


@pytest.mark.parametrize(
    ("payload", "expected", "words"),
    [
        (
            {"template": "process-nope-v1"},
            404,
            ["'process-nope-v1' is not a known template", "process-topk-v1"],
        ),
        ({"template": "process-topk-v1", "parameters": {"kk": 1}}, 400, ["unknown parameter 'kk'"]),
        ({"template": "process-topk-v1", "parameters": {"k": "ten"}}, 400, ["'k' must be an integer"]),
        ({"template": "process-topk-v1", "parameters": {"k": 10_000}}, 400, ["'k' must be <= 500"]),
        ({"template": "process-topk-v1", "parameters": {"collection_interval": 0}}, 400, [">= 1"]),
        ({"template": "process-topk-v1", "parameters": []}, 400, ["'parameters' must be an object"]),
        ({"template": 7}, 400, ["'template' must be a string"]),
        ({}, 400, ["'template' is required"]),
        ({"template": "process-topk-v1", "variant": "a/b"}, 400, ["variant must match"]),
        ({"template": "process-topk-v1", "color": "red"}, 400, ["unknown field 'color'"]),
        (
            {"template": "process-intelligent-v1", "parameters": {"critical_processes": ["ok", "x\ny"]}},
            400,
            ["critical_processes'[1]", "control character U+000A"],
        ),
        (
            {"template": "process-intelligent-v1", "parameters": {"critical_processes": ['a"]\nb']}},
            400,
            ["control character"],
        ),
        (
            {"template": "process-baseline-v1", "experiment_id": "${env:HOME}"},
            400,
            ["'experiment_id' must match"],
        ),
        (
            {"template": "process-topk-v1", "parameters": {"keep_list_path": "/x/${file:/etc/passwd}"}},
            400,
            ["'keep_list_path' must match"],
        ),
        ({"template": "process-baseline-v1", "parameters": {"health_port": 9464}}, 400, ["already taken"]),
    ],
)
def test_bad_render_requests_are_problems(
    generator: Service, payload: dict[str, Any], expected: int, words: list[str]
) -> None:
    status, body, headers = call(generator, "POST", "/api/v1/render", payload)
    assert_problem(status, body, headers, expected, *words)


def test_bad_field_is_named(generator: Service) -> None:
    status, body, _ = call(
        generator, "POST", "/api/v1/render", {"template": "process-topk-v1", "parameters": {"k": -1}}
    )
    assert status == 400 and body["field"] == "parameters.k"


@pytest.mark.parametrize(
    ("raw", "content_type", "expected", "word"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"[1, 2]", "application/json", 400, "must be a JSON object"),
        (b"", "application/json", 400, "empty"),
        (b"template=x", "application/x-www-form-urlencoded", 415, "Content-Type"),
        (b'{"template": "' + b"x" * 300_000 + b'"}', "application/json", 413, "larger than"),
    ],
)
def test_malformed_bodies_are_problems(
    generator: Service, raw: bytes, content_type: str, expected: int, word: str
) -> None:
    status, body, headers = call(generator, "POST", "/api/v1/render", raw, {"Content-Type": content_type})
    assert_problem(status, body, headers, expected, word)


def test_api_token_is_required(generator: Service) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": API_TOKEN}):
        status, body, hdrs = http_json("GET", f"{generator.url}/api/v1/templates", headers=headers)
        assert_problem(status, body, hdrs, 401, "Bearer")
    # Health and metrics stay open for probes and scrapers on loopback.
    assert http_json("GET", f"{generator.url}/health")[0] == 200


def test_generate_reads_the_experiment_from_the_control_plane(
    generator: Service, control_plane: ControlPlaneStandIn
) -> None:
    control_plane.experiments["exp-gen-1"] = experiment("exp-gen-1")
    control_plane.authorization.clear()
    status, body, _ = call(generator, "POST", "/api/v1/generate", {"experiment_id": "exp-gen-1"})
    assert status == 200, body
    assert control_plane.authorization == [f"Bearer {API_TOKEN}"]
    assert body["experiment_id"] == "exp-gen-1"
    baseline, candidate = body["baseline"], body["candidate"]
    assert (baseline["template"], baseline["variant"]) == ("process-baseline-v1", "baseline")
    assert (candidate["template"], candidate["variant"]) == ("process-intelligent-v1", "candidate")
    assert baseline["prometheus_endpoint"] == "127.0.0.1:9464" and baseline["observe_endpoint"] is None
    assert candidate["prometheus_endpoint"] == "127.0.0.1:9466"
    assert candidate["observe_endpoint"] == "127.0.0.1:9467"
    assert candidate["keep_list"] == {
        "path": "/var/lib/phoenix-agent/keep/candidate.yaml",
        "strategy": "intelligent",
        "k": 7,
        "critical": ["postgres", "sshd"],
        "initial": ["postgres", "sshd"],
        "refresh_seconds": 120,
        "coverage_target": 98,
        "live": True,
    }
    for rendered in (baseline, candidate):
        config = yaml.safe_load(rendered["config_yaml"])
        attrs = {
            a["key"]: a["value"]
            for a in config["processors"][f"resource/{rendered['variant']}"]["attributes"]
        }
        assert attrs["phoenix.experiment_id"] == "exp-gen-1"


def test_generate_honours_parameter_overrides(generator: Service, control_plane: ControlPlaneStandIn) -> None:
    control_plane.experiments["exp-gen-2"] = experiment(
        "exp-gen-2",
        candidate_pipeline="process-topk-v1",
        parameters={"baseline": {"prometheus_port": 19464}, "candidate": {"prometheus_port": 19466, "k": 3}},
    )
    status, body, _ = call(generator, "POST", "/api/v1/generate", {"experiment_id": "exp-gen-2"})
    assert status == 200, body
    assert body["baseline"]["prometheus_endpoint"] == "127.0.0.1:19464"
    assert body["candidate"]["prometheus_endpoint"] == "127.0.0.1:19466"
    assert body["candidate"]["keep_list"]["critical"] == []  # top-k takes no critical list


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"candidate_pipeline": "process-nope-v1"}, ["candidate_pipeline 'process-nope-v1' is not a known"]),
        ({"baseline_pipeline": None}, ["has no 'baseline_pipeline'"]),
        ({"parameters": {"baseline": {}, "candidate": {"k": 0}}}, ["'k' must be >= 1"]),
        (
            {"parameters": {"baseline": {}, "candidate": {"collection_interval": 30}}},
            ["disagree at receivers.hostmetrics/phoenix.collection_interval"],
        ),
        ({"critical_processes": ["bad\nname"]}, ["control character"]),
        ({"parameters": "nope"}, ["'parameters' must be an object"]),
    ],
)
def test_generate_rejects_experiments_it_cannot_render(
    generator: Service, control_plane: ControlPlaneStandIn, overrides: dict[str, Any], words: list[str]
) -> None:
    control_plane.experiments["exp-bad"] = experiment("exp-bad", **overrides)
    status, body, headers = call(generator, "POST", "/api/v1/generate", {"experiment_id": "exp-bad"})
    assert_problem(status, body, headers, 422, *words)


def test_generate_unknown_experiment_is_404(generator: Service) -> None:
    status, body, headers = call(generator, "POST", "/api/v1/generate", {"experiment_id": "exp-missing"})
    assert_problem(status, body, headers, 404, "exp-missing", "not known to the control plane")


@pytest.mark.parametrize("experiment_id", ["../../etc", "a b", "", "x" * 200, "${env:HOME}"])
def test_generate_rejects_bad_experiment_ids(generator: Service, experiment_id: str) -> None:
    status, body, headers = call(generator, "POST", "/api/v1/generate", {"experiment_id": experiment_id})
    assert_problem(status, body, headers, 400, "experiment_id")


def test_generate_with_control_plane_down_is_502(orphan_generator: Service) -> None:
    status, body, headers = http_json(
        "POST", f"{orphan_generator.url}/api/v1/generate", {"experiment_id": "e1"}
    )
    assert_problem(status, body, headers, 502, "unreachable", "control_plane_url")


def test_generate_renders_the_spec_it_is_sent_without_the_control_plane(orphan_generator: Service) -> None:
    sent = {k: v for k, v in experiment("exp-sent").items() if k not in ("id", "status")}
    status, body, _ = http_json(
        "POST", f"{orphan_generator.url}/api/v1/generate", {"experiment_id": "exp-sent", **sent}
    )
    assert status == 200, body
    assert body["experiment_id"] == "exp-sent"
    assert body["baseline"]["template"] == "process-baseline-v1"
    assert body["candidate"]["template"] == "process-intelligent-v1"
    assert body["candidate"]["keep_list"]["critical"] == ["postgres", "sshd"]
    assert body["candidate"]["keep_list"]["k"] == 7


def test_generate_rejects_a_sent_spec_it_cannot_render(orphan_generator: Service) -> None:
    status, body, headers = http_json(
        "POST",
        f"{orphan_generator.url}/api/v1/generate",
        {"experiment_id": "exp-sent", "candidate_pipeline": "process-topk-v1"},
    )
    assert_problem(status, body, headers, 422, "has no 'baseline_pipeline'")


def test_metrics_count_renders_by_template(generator: Service) -> None:
    for _ in range(3):
        assert call(generator, "POST", "/api/v1/render", {"template": "process-adaptive-v1"})[0] == 200
    status, text, headers = http_json("GET", f"{generator.url}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    lines = text.splitlines()
    count = next(
        ln for ln in lines if ln.startswith('phoenix_generator_renders_total{template="process-adaptive-v1"}')
    )
    assert float(count.split()[-1]) >= 3
    assert any(
        ln.startswith('phoenix_generator_render_seconds_bucket{le="0.005",template="process-adaptive-v1"}')
        for ln in lines
    )


@pytest.mark.collector
def test_render_with_validate_runs_the_collector(generator: Service, otelcol_bin: Path) -> None:
    status, body, _ = call(
        generator,
        "POST",
        "/api/v1/render",
        {
            "template": "process-intelligent-v1",
            "validate": True,
            "parameters": {"critical_processes": ['q"uote', "${env:HOME}", "back\\slash"]},
        },
    )
    assert status == 200, body


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        (["--host", "0.0.0.0"], {}, "is not a loopback address"),
        ([], {"PHOENIX_GENERATOR_PORT": "http"}, "port must be an integer"),
        ([], {"PHOENIX_GENERATOR_PORT": "70000"}, "port must be between 1 and 65535"),
        ([], {"PHOENIX_GENERATOR_CONTROL_PLANE_URL": "ftp://x"}, "control_plane_url must be an http"),
        ([], {"PHOENIX_GENERATOR_API_TOKEN": "short"}, "api_token must be at least 16"),
        (["--config", "/nonexistent/gen.yaml"], {}, "does not exist"),
    ],
)
def test_bad_settings_exit_2_with_one_line(args: list[str], env: dict[str, str], words: str) -> None:
    import os

    result = subprocess.run(
        [sys.executable, "-m", "config_generator", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=ROOT,
        timeout=30,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert words in result.stderr


def test_non_loopback_bind_needs_a_token_or_insecure() -> None:
    from config_generator.settings import ENV_PREFIX, Settings
    from phoenix_common.settings import SettingsError, load

    with pytest.raises(SettingsError, match="not a loopback address"):
        load(Settings, env={}, env_prefix=ENV_PREFIX, overrides={"host": "0.0.0.0"})
    with_token = load(
        Settings,
        env={f"{ENV_PREFIX}API_TOKEN": API_TOKEN},
        env_prefix=ENV_PREFIX,
        overrides={"host": "0.0.0.0"},
    )
    assert with_token.api_token == API_TOKEN
    assert load(
        Settings, env={}, env_prefix=ENV_PREFIX, overrides={"host": "0.0.0.0", "insecure": True}
    ).insecure
