"""Shipping a variant to a destination: config_generator.shipping as render() puts it in a config, and
merging a shipping config with one that does not ship (phoenix_common.configmerge)."""

from __future__ import annotations

from typing import Any

import pytest

from config_generator.catalog import ParameterError, Template, load_catalog
from config_generator.render import Rendered, render
from config_generator.shipping import check_spec
from phoenix_common.configmerge import MergeConflict, merge_configs

CATALOG: dict[str, Template] = load_catalog()
TEMPLATE = "process-topk-v1"
STORAGE = "file_storage/phoenix-queue"
QUEUE_DIR = "/var/lib/phoenix-agent/queue"
MEASUREMENT_LABELS = ["phoenix.variant", "phoenix.experiment_id"]
ENDPOINTS = {
    "otlp_grpc": "collector.example.com:4317",
    "otlp_http": "https://otlp.example.com",
    "prometheus_remote_write": "https://mimir.example.com/api/v1/push",
}
WRITERS = {
    "otlp_grpc": "otlp/{suffix}-out",
    "otlp_http": "otlphttp/{suffix}-out",
    "prometheus_remote_write": "prometheusremotewrite/{suffix}",
}


def spec(kind: str = "prometheus_remote_write", **overrides: Any) -> dict[str, Any]:
    """A destination as the control plane sends it to the generator (header names, no values)."""
    return {
        "name": "prod",
        "type": kind,
        "endpoint": ENDPOINTS[kind],
        "header_names": ["Authorization"],
        "tls": {},
        "compression": "snappy" if kind == "prometheus_remote_write" else "gzip",
        "timeout_seconds": 10.0,
        **overrides,
    }


def shipped(
    kind: str = "prometheus_remote_write",
    variant: str = "main",
    production: bool = True,
    template: str = TEMPLATE,
    destination: dict[str, Any] | None = None,
    **parameters: Any,
) -> Rendered:
    """`template` rendered for `variant`, shipping to spec(kind) changed by `destination`."""
    target = spec(kind, **(destination or {}))
    return render(CATALOG[template], parameters, variant, destination=target, production=production)


def pipeline(rendered: Rendered, name: str) -> dict[str, Any]:
    return dict(rendered.config["service"]["pipelines"][name])


@pytest.mark.parametrize("kind", list(ENDPOINTS))
def test_the_spool_holds_a_persistent_bounded_queue_that_never_gives_up(kind: str) -> None:
    rendered = shipped(kind, ship_queue_points=20_000, relay_port=15000)
    spool = rendered.config["exporters"]["otlphttp/ship"]
    assert spool["endpoint"] == "http://127.0.0.1:15000"
    assert spool["sending_queue"] == {
        "enabled": True,
        "storage": STORAGE,
        "num_consumers": 1,
        "sizer": "items",
        "queue_size": 20_000,
    }
    assert spool["retry_on_failure"]["enabled"] is True
    assert spool["retry_on_failure"]["max_elapsed_time"] == 0
    assert rendered.config["extensions"][STORAGE] == {"directory": QUEUE_DIR, "create_directory": True}
    assert rendered.config["service"]["extensions"] == ["health_check", STORAGE]


def test_the_queue_takes_the_default_size() -> None:
    spool = shipped().config["exporters"]["otlphttp/ship"]
    assert spool["sending_queue"]["queue_size"] == 5_000_000


@pytest.mark.parametrize("kind", list(ENDPOINTS))
def test_the_relay_drops_the_measurement_labels_and_writes_synchronously(kind: str) -> None:
    rendered = shipped(kind, relay_port=15000)
    config = rendered.config
    writer = WRITERS[kind].format(suffix="ship")
    assert config["receivers"]["otlp/ship-relay"] == {"protocols": {"http": {"endpoint": "127.0.0.1:15000"}}}
    assert pipeline(rendered, "metrics/ship-relay") == {
        "receivers": ["otlp/ship-relay"],
        "processors": ["resource/ship"],
        "exporters": [writer],
    }
    deleted = config["processors"]["resource/ship"]["attributes"]
    assert deleted == [{"key": key, "action": "delete"} for key in MEASUREMENT_LABELS]
    out = config["exporters"][writer]
    assert out["endpoint"] == ENDPOINTS[kind] and out["timeout"] == "10s"
    assert out["retry_on_failure"] == {"enabled": False}
    queue = "remote_write_queue" if kind == "prometheus_remote_write" else "sending_queue"
    assert out[queue] == {"enabled": False}
    assert out["headers"] == "${file:/var/lib/phoenix-agent/secrets/prod.headers.yaml}"


def test_the_remote_write_exporter_labels_every_resource_attribute() -> None:
    out = shipped().config["exporters"]["prometheusremotewrite/ship"]
    assert out["resource_constant_labels"] == {"included": ["*"]}
    assert "compression" not in out and "sending_queue" not in out


@pytest.mark.parametrize("kind", ["otlp_grpc", "otlp_http"])
def test_otlp_exporters_take_the_destinations_compression(kind: str) -> None:
    rendered = shipped(kind, destination={"compression": "zstd"})
    assert rendered.config["exporters"][WRITERS[kind].format(suffix="ship")]["compression"] == "zstd"


def test_headers_are_read_from_a_file_only_when_the_destination_has_some() -> None:
    rendered = shipped(destination={"header_names": []})
    assert "headers" not in rendered.config["exporters"]["prometheusremotewrite/ship"]
    assert rendered.shipping is not None and rendered.shipping["headers_file"] is None
    assert "secrets" not in rendered.config_yaml


def test_tls_settings_reach_the_destinations_exporter() -> None:
    tls = {"insecure": True, "insecure_skip_verify": False}
    rendered = shipped("otlp_grpc", destination={"tls": tls, "timeout_seconds": 2.5})
    out = rendered.config["exporters"]["otlp/ship-out"]
    assert out["tls"] == tls and out["timeout"] == "2.5s"


@pytest.mark.parametrize("template", sorted(CATALOG))
def test_the_variants_pipeline_feeds_its_prometheus_exporter_and_the_spool(template: str) -> None:
    rendered = shipped(template=template)
    assert pipeline(rendered, "metrics/main")["exporters"] == ["prometheus/main", "otlphttp/ship"]
    # The measuring side still labels what it measures; only the relay strips the labels.
    labels = rendered.config["processors"]["resource/main"]["attributes"]
    assert {"key": "phoenix.variant", "value": "main", "action": "upsert"} in labels


@pytest.mark.parametrize("kind", list(ENDPOINTS))
def test_the_shipping_block_tells_the_agent_what_it_needs(kind: str) -> None:
    rendered = shipped(kind, ship_queue_points=1000)
    assert rendered.shipping == {
        "destination": "prod",
        "type": kind,
        "exporter": "otlphttp/ship",
        "writer": WRITERS[kind].format(suffix="ship"),
        "headers_file": "/var/lib/phoenix-agent/secrets/prod.headers.yaml",
        "queue_directory": QUEUE_DIR,
        "queue_points": 1000,
    }
    assert rendered.to_dict()["shipping"] == rendered.shipping


def test_a_stream_that_is_not_production_uses_names_of_its_own() -> None:
    rendered = shipped("otlp_http", variant="candidate", production=False, relay_port=15001)
    config = rendered.config
    assert "otlphttp/ship" not in config["exporters"]
    assert {"otlphttp/ship-candidate", "otlphttp/ship-candidate-out"} <= set(config["exporters"])
    assert set(config["receivers"]) == {"hostmetrics/phoenix", "otlp/ship-candidate-relay"}
    assert "resource/ship-candidate" in config["processors"]
    assert pipeline(rendered, "metrics/ship-candidate-relay")["exporters"] == ["otlphttp/ship-candidate-out"]
    assert pipeline(rendered, "metrics/candidate")["exporters"] == [
        "prometheus/candidate",
        "otlphttp/ship-candidate",
    ]
    assert rendered.shipping is not None and rendered.shipping["exporter"] == "otlphttp/ship-candidate"


def test_without_a_destination_nothing_ships() -> None:
    rendered = render(CATALOG[TEMPLATE], {}, "main")
    config = rendered.config
    assert rendered.shipping is None and rendered.to_dict()["shipping"] is None
    assert list(config["receivers"]) == ["hostmetrics/phoenix"]
    assert list(config["extensions"]) == ["health_check"] == config["service"]["extensions"]
    assert all(not name.startswith(("otlp", "prometheusremotewrite")) for name in config["exporters"])
    assert all("ship" not in name for name in config["service"]["pipelines"])
    assert pipeline(rendered, "metrics/main")["exporters"] == ["prometheus/main"]
    assert "ship" not in rendered.config_yaml and "file_storage" not in rendered.config_yaml


def test_shipping_changes_the_config_and_its_hash() -> None:
    assert shipped().config_hash != render(CATALOG[TEMPLATE], {}, "main").config_hash


@pytest.mark.parametrize("taken", ["prometheus_port", "health_port", "telemetry_port", "observe_port"])
def test_a_relay_port_already_taken_is_a_parameter_error(taken: str) -> None:
    port = CATALOG[TEMPLATE].resolve({}, "main")[taken]
    with pytest.raises(ParameterError, match=f"already taken by '{taken}'") as caught:
        shipped(relay_port=port)
    assert caught.value.parameter == "relay_port"


def test_the_relay_port_is_free_to_clash_when_nothing_ships() -> None:
    render(CATALOG[TEMPLATE], {"relay_port": 9464}, "main")


@pytest.mark.parametrize(
    ("destination", "words"),
    [
        ("prod", "must be an object"),
        ({**spec(), "password": "x"}, "unknown field 'password'"),
        ({**spec(), "name": "Prod"}, "destination.name"),
        ({**spec(), "type": "kafka"}, "destination.type"),
        ({**spec(), "endpoint": "https://${env:HOST}/push"}, "destination.endpoint"),
        ({**spec(), "endpoint": ""}, "destination.endpoint"),
        ({**spec(), "endpoint": "https://mimir.example.com/\npush"}, "destination.endpoint"),
        ({**spec(), "header_names": "Authorization"}, "destination.header_names"),
        ({**spec(), "header_names": [7]}, "destination.header_names"),
        ({**spec(), "tls": ["insecure"]}, "destination.tls"),
        ({**spec(), "tls": {"ca_pem": "${file:/etc/shadow}"}}, "destination.tls"),
        ({**spec(), "timeout_seconds": {}}, "destination.timeout_seconds"),
        ({**spec(), "timeout_seconds": None}, "destination.timeout_seconds"),
        ({**spec(), "timeout_seconds": 0.5}, "destination.timeout_seconds"),
        ({**spec(), "compression": "brotli"}, "destination.compression"),
    ],
)
def test_a_bad_destination_is_a_parameter_error(destination: Any, words: str) -> None:
    with pytest.raises(ParameterError, match=words) as caught:
        check_spec(destination)
    assert caught.value.parameter == "destination"
    with pytest.raises(ParameterError):
        render(CATALOG[TEMPLATE], {}, "main", destination=destination)


def test_a_good_destination_passes_as_given() -> None:
    assert check_spec(spec()) == spec()


def test_a_variant_may_not_take_the_shipping_components_names() -> None:
    with pytest.raises(ParameterError) as caught:
        shipped(variant="ship")
    assert caught.value.parameter == "variant" and "reserved" in str(caught.value)


# -- merging with a config that does not ship ---------------------------------------------------------


def experiment(candidate_parameters: dict[str, Any] | None = None) -> tuple[Rendered, Rendered]:
    """A shipping baseline and a candidate in shadow, on the default experiment ports."""
    baseline = render(
        CATALOG["process-baseline-v1"], {"relay_port": 14318}, "baseline", "exp-1", destination=spec()
    )
    parameters = {"prometheus_port": 9466, "observe_port": 9467, **(candidate_parameters or {})}
    candidate = render(CATALOG[TEMPLATE], parameters, "candidate", "exp-1")
    return baseline, candidate


def test_merging_a_shipping_config_with_a_shadow_one_unites_the_extensions() -> None:
    baseline, candidate = experiment()
    merged = merge_configs(baseline.config, candidate.config)
    assert merged["service"]["extensions"] == ["health_check", STORAGE]
    assert merge_configs(candidate.config, baseline.config)["service"]["extensions"] == [
        "health_check",
        STORAGE,
    ]
    assert set(merged["extensions"]) == {"health_check", STORAGE}
    assert {"metrics/baseline", "metrics/candidate", "metrics/ship-relay"} <= set(
        merged["service"]["pipelines"]
    )


def test_merging_still_refuses_other_lists_that_differ() -> None:
    baseline, candidate = experiment()
    other = {**candidate.config, "service": {**candidate.config["service"]}}
    readers = [{"pull": {"exporter": {"prometheus": {"host": "127.0.0.1", "port": 8889}}}}]
    other["service"]["telemetry"] = {"metrics": {"level": "normal", "readers": readers}}
    with pytest.raises(MergeConflict) as caught:
        merge_configs(baseline.config, other)
    assert caught.value.path == "service.telemetry.metrics.readers"
    with pytest.raises(MergeConflict, match=r"receivers\.hostmetrics/phoenix\.collection_interval"):
        merge_configs(baseline.config, experiment({"collection_interval": 30})[1].config)
