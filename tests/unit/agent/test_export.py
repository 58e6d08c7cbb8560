"""Export health from the collector's own telemetry: agent.export, without a collector."""

from __future__ import annotations

from typing import Any

import pytest

from agent.export import Reading, parse, shipping_of, state, telemetry_endpoint

SPOOL = "otlphttp/ship"
_SCOPE = (
    'otel_scope_name="go.opentelemetry.io/collector/exporter/exporterhelper",otel_scope_version="",'
    'service_instance_id="4f0c1c5e-7b1a-4e35-9a57-0d3c2f1d9b11",service_name="otelcol-phoenix",'
    'service_version="0.161.0"'
)


def sample(exporter: str, sent: int, failed: int, dropped: int, queue: int, capacity: int) -> str:
    """The exporterhelper series of one exporter, as the collector's Prometheus reader writes them."""
    return (
        f'otelcol_exporter_sent_metric_points_total{{exporter="{exporter}",{_SCOPE}}} {sent}\n'
        f'otelcol_exporter_send_failed_metric_points_total{{exporter="{exporter}",{_SCOPE}}} {failed}\n'
        f'otelcol_exporter_enqueue_failed_metric_points_total{{exporter="{exporter}",{_SCOPE}}} {dropped}\n'
        f'otelcol_exporter_queue_size{{data_type="metrics",exporter="{exporter}",{_SCOPE}}} {queue}\n'
        f'otelcol_exporter_queue_capacity{{data_type="metrics",exporter="{exporter}",{_SCOPE}}} {capacity}\n'
    )


EXPOSITION = (
    "# HELP otelcol_exporter_sent_metric_points_total Number of metric points successfully sent to "
    "destination. [alpha]\n"
    "# TYPE otelcol_exporter_sent_metric_points_total counter\n"
    + sample(SPOOL, 10, 3, 2, 7, 5_000_000)
    + sample("otlphttp/ship-candidate", 1000, 900, 800, 700, 600)
    + sample("prometheusremotewrite/ship", 2000, 20, 0, 0, 0)
    + sample("prometheus/main", 5000, 0, 0, 0, 0)
    + "# TYPE otelcol_process_uptime_seconds_total counter\n"
    f"otelcol_process_uptime_seconds_total{{{_SCOPE}}} 123.4\n"
    f'otelcol_processor_batch_batch_send_size_bucket{{processor="batch/main",le="10",{_SCOPE}}} 4\n'
    f'target_info{{service_name="otelcol-phoenix",service_version="0.161.0"}} 1\n'
)


def reading(sent: int = 0, failed: int = 0, dropped: int = 0, queue: int = 0, at: float = 0.0) -> Reading:
    return Reading(at, sent, failed, dropped, queue, 1000)


def test_parse_reads_the_shipping_exporter_and_ignores_the_others() -> None:
    assert parse(EXPOSITION, SPOOL, 12.5) == Reading(
        at=12.5, sent_points=10, failed_points=3, dropped_points=2, queue_size=7, queue_capacity=5_000_000
    )
    assert parse(EXPOSITION, "otlphttp/ship-candidate", 0.0).sent_points == 1000


def test_parse_takes_counters_with_or_without_the_total_suffix() -> None:
    text = f'otelcol_exporter_sent_metric_points{{exporter="{SPOOL}"}} 10\n'
    assert parse(text, SPOOL, 1.0) == Reading(1.0, sent_points=10)


def test_parse_sums_the_series_of_one_exporter() -> None:
    text = sample(SPOOL, 10, 0, 0, 1, 100) + sample(SPOOL, 5, 1, 0, 2, 100).replace("4f0c", "aaaa")
    current = parse(text, SPOOL, 0.0)
    assert (current.sent_points, current.failed_points, current.queue_size) == (15, 1, 3)


def test_counters_not_yet_exposed_are_zero() -> None:
    assert parse(sample("prometheus/main", 5, 5, 5, 5, 5), SPOOL, 3.0) == Reading(3.0)
    assert parse("", SPOOL, 3.0) == Reading(3.0)


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (None, reading(), "starting"),
        (None, reading(sent=50, queue=3), "starting"),
        (None, reading(failed=1), "failing"),
        (None, reading(dropped=1), "failing"),
        (reading(sent=10), reading(sent=20), "ok"),
        (reading(sent=10, queue=5), reading(sent=20, queue=9), "ok"),
        (reading(sent=10), reading(sent=20, failed=1), "failing"),
        (reading(sent=10, failed=4), reading(sent=20, failed=4), "ok"),
        (reading(sent=10), reading(sent=20, dropped=1), "failing"),
        (reading(sent=10, queue=5), reading(sent=10, queue=5), "failing"),
        (reading(sent=10, queue=5), reading(sent=10, queue=9), "failing"),
        (reading(sent=10), reading(sent=10), "ok"),
        (reading(sent=10, queue=5), reading(sent=10, queue=0), "ok"),
        # A restarted collector starts its counters again.
        (reading(sent=500, failed=3), reading(sent=2), "starting"),
        (reading(sent=500), reading(sent=0, failed=1), "failing"),
    ],
)
def test_state_compares_a_reading_with_the_one_before(
    previous: Reading | None, current: Reading, expected: str
) -> None:
    assert state(previous, current) == expected


def telemetry(prometheus: Any) -> dict[str, Any]:
    return {
        "service": {
            "telemetry": {"metrics": {"readers": [{"pull": {"exporter": {"prometheus": prometheus}}}]}}
        }
    }


@pytest.mark.parametrize(
    ("config", "endpoint"),
    [
        (telemetry({"host": "127.0.0.1", "port": 8888}), "127.0.0.1:8888"),
        (telemetry({"host": "localhost", "port": "18888"}), "localhost:18888"),
        (telemetry({"port": 8888}), "127.0.0.1:8888"),
        (telemetry({"host": "127.0.0.1"}), None),
        (telemetry({"host": "127.0.0.1", "port": "http"}), None),
        ({"service": {"telemetry": {"metrics": {"readers": []}}}}, None),
        ({"service": {"telemetry": {"metrics": {"level": "normal"}}}}, None),
        ({"service": {}}, None),
        ({}, None),
    ],
)
def test_telemetry_endpoint_is_where_the_config_serves_its_metrics(
    config: dict[str, Any], endpoint: str | None
) -> None:
    assert telemetry_endpoint(config) == endpoint


def test_a_telemetry_block_that_is_not_a_mapping_has_no_endpoint() -> None:
    assert telemetry_endpoint(telemetry("prometheus")) is None


def exporters(*names: str) -> dict[str, Any]:
    return {"exporters": {name: {} for name in names}}


@pytest.mark.parametrize(
    ("config", "exporter"),
    [
        (exporters("prometheus/main", SPOOL, "prometheusremotewrite/ship"), SPOOL),
        (exporters("prometheus/main", "otlp/ship"), "otlp/ship"),
        (exporters("prometheus/baseline", SPOOL, "otlphttp/ship-candidate"), SPOOL),
        # A stream that is not the namespace's production stream is not reported.
        (exporters("prometheus/candidate", "otlphttp/ship-candidate", "otlphttp/ship-candidate-out"), None),
        (exporters("prometheus/main", "prometheusremotewrite/ship", "otlp/ship-out"), None),
        (exporters("prometheus/main"), None),
        ({"exporters": ["otlphttp/ship"]}, None),
        ({"exporters": None}, None),
        ({}, None),
    ],
)
def test_shipping_of_names_the_production_spool(config: dict[str, Any], exporter: str | None) -> None:
    assert shipping_of(config) == exporter
