"""The exporters that ship a variant to its destination, with a persistent, bounded queue
(docs/destinations.md). The generator never sees a header value: the config refers to a file the agent
writes (`${file:...}`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from config_generator.catalog import ParameterError
from phoenix_common.wire import DNS_LABEL

# Paths under the agent's state directory as the contract names them; the agent points them at its own.
STATE_ROOT = "/var/lib/phoenix-agent"
QUEUE_DIR = f"{STATE_ROOT}/queue"
SECRETS_DIR = f"{STATE_ROOT}/secrets"
STORAGE = "file_storage/phoenix-queue"
# The prefix of every shipping component's name (so no variant may be called so).
SHIP = "ship"
TYPES = ("otlp_grpc", "otlp_http", "prometheus_remote_write")
COMPRESSIONS = ("gzip", "zstd", "snappy", "none")
_NAME = DNS_LABEL
_SPEC_FIELDS = frozenset(
    {"name", "type", "endpoint", "header_names", "tls", "compression", "timeout_seconds"}
)


@dataclass(frozen=True)
class Shipping:
    """The pieces to add to a variant's config, and what the agent needs to know of them."""

    exporter: str  # the queue-owning exporter the variant's pipeline feeds (its telemetry is export health)
    exporters: dict[str, Any]
    receivers: dict[str, Any]
    processors: dict[str, Any]
    pipelines: dict[str, Any]
    extensions: dict[str, Any]
    info: dict[str, Any]


def check_spec(spec: Any) -> dict[str, Any]:
    """The destination spec the control plane sends (no secrets), or ParameterError naming the field."""
    if not isinstance(spec, Mapping):
        raise ParameterError("destination", "destination must be an object")
    unknown = sorted(set(spec) - _SPEC_FIELDS)
    if unknown:
        raise ParameterError("destination", f"destination has unknown field {unknown[0][:40]!r}")
    if not isinstance(spec.get("name"), str) or not _NAME.match(spec["name"]):
        raise ParameterError("destination", "destination.name must be a DNS label")
    if spec.get("type") not in TYPES:
        raise ParameterError("destination", f"destination.type must be one of {', '.join(TYPES)}")
    endpoint = spec.get("endpoint")
    if (
        not isinstance(endpoint, str)
        or not endpoint
        or "${" in endpoint
        or any(ord(c) < 0x20 for c in endpoint)
    ):
        raise ParameterError("destination", "destination.endpoint must be a URL or host:port without '${'")
    names = spec.get("header_names") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ParameterError("destination", "destination.header_names must be a list of strings")
    tls = spec.get("tls") or {}
    if not isinstance(tls, Mapping) or any("${" in str(v) for v in tls.values()):
        raise ParameterError("destination", "destination.tls must be an object without '${'")
    timeout = spec.get("timeout_seconds", 10.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 1 <= timeout <= 300:
        raise ParameterError("destination", "destination.timeout_seconds must be a number from 1 to 300")
    if spec.get("compression", "gzip") not in COMPRESSIONS:
        raise ParameterError(
            "destination", f"destination.compression must be one of {', '.join(COMPRESSIONS)}"
        )
    return dict(spec)


def headers_file(name: str) -> str:
    return f"{SECRETS_DIR}/{name}.headers.yaml"


def _retry() -> dict[str, Any]:
    # Never give up while the queue holds the data: an outage of minutes or hours loses nothing.
    return {"enabled": True, "initial_interval": "1s", "max_interval": "30s", "max_elapsed_time": 0}


def _queue(points: int) -> dict[str, Any]:
    # One consumer: batches reach the backend in the order they were collected (no out-of-order samples).
    return {
        "enabled": True,
        "storage": STORAGE,
        "num_consumers": 1,
        "sizer": "items",
        "queue_size": points,
    }


def _client(spec: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"endpoint": spec["endpoint"], "timeout": f"{spec.get('timeout_seconds', 10):g}s"}
    if spec.get("header_names"):
        out["headers"] = f"${{file:{headers_file(spec['name'])}}}"
    tls = {
        k: v
        for k, v in (spec.get("tls") or {}).items()
        if k in ("insecure", "insecure_skip_verify", "ca_pem")
    }
    if tls:
        out["tls"] = tls
    return out


# Phoenix's measurement labels: which variant and experiment a series came from. Shipped data leaves
# them out, so that the namespace's series in the backend stay the same series when an experiment's
# baseline takes over from the deployment and back (no churn, nothing billed twice).
MEASUREMENT_LABELS = ("phoenix.variant", "phoenix.experiment_id")


def ship(spec: Mapping[str, Any], variant: str, production: bool, p: Mapping[str, Any]) -> Shipping:
    """The spool, relay and destination exporter that ship `variant` to `spec`.

    The queue sits in an otlphttp spool with a persistent sending_queue (the remote write exporter has
    none of its own). It posts to an OTLP receiver on a loopback port of the same collector, whose
    pipeline drops the measurement labels and exports synchronously (no queue, no retry of its own): a
    failed export fails the relay's request, and the spool keeps and retries the batch. The namespace's
    production stream always uses the names `.../ship`, so that its persisted queue carries over from a
    deployment to an experiment's baseline and back."""
    suffix = SHIP if production else f"{SHIP}-{variant}"
    points, port, kind = p["ship_queue_points"], p["relay_port"], spec["type"]
    spool, relay, strip = f"otlphttp/{suffix}", f"otlp/{suffix}-relay", f"resource/{suffix}"
    writer = {
        "otlp_grpc": f"otlp/{suffix}-out",
        "otlp_http": f"otlphttp/{suffix}-out",
        "prometheus_remote_write": f"prometheusremotewrite/{suffix}",
    }[kind]
    out: dict[str, Any] = {**_client(spec), "retry_on_failure": {"enabled": False}}
    if kind == "prometheus_remote_write":
        out["remote_write_queue"] = {"enabled": False}
        # Every resource attribute is a label, as the measuring exporter shows it (what is billed).
        out["resource_constant_labels"] = {"included": ["*"]}
    else:
        out["sending_queue"] = {"enabled": False}
        out["compression"] = spec.get("compression") or "gzip"
    exporters = {
        spool: {
            "endpoint": f"http://127.0.0.1:{port}",
            "compression": "none",
            "retry_on_failure": _retry(),
            "sending_queue": _queue(points),
        },
        writer: out,
    }
    receivers = {relay: {"protocols": {"http": {"endpoint": f"127.0.0.1:{port}"}}}}
    processors = {strip: {"attributes": [{"key": k, "action": "delete"} for k in MEASUREMENT_LABELS]}}
    pipelines = {
        f"metrics/{suffix}-relay": {"receivers": [relay], "processors": [strip], "exporters": [writer]}
    }
    info = {
        "destination": spec["name"],
        "type": kind,
        "exporter": spool,
        "writer": writer,
        "headers_file": headers_file(spec["name"]) if spec.get("header_names") else None,
        "queue_directory": QUEUE_DIR,
        "queue_points": points,
    }
    extensions = {STORAGE: {"directory": QUEUE_DIR, "create_directory": True}}
    return Shipping(spool, exporters, receivers, processors, pipelines, extensions, info)
