"""Turns a template and its parameters into an OpenTelemetry Collector config (the Rendered object)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from config_generator.catalog import VARIANT, ParameterError, Template
from config_generator.shipping import SHIP, Shipping, check_spec, ship
from phoenix_common.keeplist import ottl_list
from phoenix_common.wire import OTHER

# libyaml's emitter is ~10x faster; the pure-Python one gives the same text.
_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

RECEIVER = "hostmetrics/phoenix"
HEALTH = "health_check"
NAME_ATTR = "process.executable.name"
NO_PID = 'resource.attributes["process.pid"] == nil'
# Resource attributes the observation exporter keeps: enough for the agent to rank processes by name.
OBSERVE_ATTRS = (NAME_ATTR, "process.pid")
OBSERVE_METRICS = ("process.cpu.time", "process.memory.usage")
# Datapoint attributes of the default process metrics (cpu.time: state, disk.io: direction); the
# roll-up sums over every other dimension, which after the resource merge is the process.
ROLLUP_LABELS = ("state", "direction", "type")


@dataclass(frozen=True)
class Rendered:
    """One variant's collector config and what the agent needs to run it."""

    template: str
    variant: str
    config: dict[str, Any]
    config_yaml: str
    config_hash: str
    prometheus_endpoint: str
    observe_endpoint: str | None
    keep_list: dict[str, Any] | None
    shipping: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The Rendered object of docs/contracts.md."""
        return {
            "template": self.template,
            "variant": self.variant,
            "config_yaml": self.config_yaml,
            "config_hash": self.config_hash,
            "prometheus_endpoint": self.prometheus_endpoint,
            "observe_endpoint": self.observe_endpoint,
            "keep_list": self.keep_list,
            "shipping": self.shipping,
        }


def dump_yaml(config: Mapping[str, Any]) -> str:
    """Block-style YAML of a config map, keys in insertion order."""
    return yaml.dump(
        config, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1_000_000, allow_unicode=True
    )


def _not_kept(keep_path: str, critical: list[str]) -> str:
    """OTTL condition true for a process that is neither in the keep-list file nor critical."""
    name = f'resource.attributes["{NAME_ATTR}"]'
    # The file provider pastes the file's text (an OTTL list literal) in place of ${file:...}.
    condition = f"not ContainsValue(${{file:{keep_path}}}, {name})"
    if critical:
        condition += f" and not ContainsValue({ottl_list(critical)}, {name})"
    return condition


def _exporter(port: int, p: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "endpoint": f"127.0.0.1:{port}",
        # Every resource attribute (process identity, phoenix.*) becomes a label; this is the
        # v0.161 replacement of the deprecated resource_to_telemetry_conversion.
        "resource_constant_labels": {"included": ["*"]},
        "metric_expiration": f"{p['metric_expiration_seconds']}s",
        "send_timestamps": p["send_timestamps"],
        "without_scope_info": True,
    }


# What a non-critical process keeps in the tiered pipeline: CPU time (user and system; `wait` is I/O
# wait, not CPU) and resident memory. Critical processes keep every metric the receiver sends.
TIER_METRICS = ("process.cpu.time", "process.memory.usage")
KEEPLIST_PROCESSOR = "phoenixkeeplist"
# Monotonic counters among TIER_METRICS: summed as deltas, then accumulated again.
TIER_COUNTERS = ("process.cpu.time",)
# Resource attributes a critical process drops: a process may rewrite its command line (postgres
# does), and every rewrite would be a new series.
CRITICAL_DROPPED = ("process.command_line", "process.command")


def _tiers(
    processors: dict[str, Any], chain: list[str], v: str, keep_path: str, critical: list[str]
) -> list[str]:
    """The tiered roll-up: add its processors to `processors` and the main `chain`; return the chain of
    the critical pipeline ([] without critical processes).

    Main pipeline (every non-critical process): keep TIER_METRICS without the `wait` state; turn CPU
    counters into deltas per process (cumulativetodelta, keyed by the process's full identity, first
    point dropped as a backend's rate() has nothing to compare it with); rename a process not in the
    keep file to `other` (phoenixkeeplist, which reads the file live and starts a newly kept name's
    series at 0 for one collection); reduce the resource to the executable name; merge equal resources
    (groupbyattrs) and sum their points (aggregate_on_attributes, which merges equal timestamps only,
    so points get time 0 first and the current time once summed); accumulate the deltas again
    (deltatocumulative). A process that exits or changes tier only stops adding to its sum: no counter
    of the output falls unless the collector restarts (a true reset, with a new start time).
    """
    name = f'resource.attributes["{NAME_ATTR}"]'
    is_critical = f"ContainsValue({ottl_list(critical)}, {name})" if critical else None
    not_tier = " and ".join(f'metric.name != "{m}"' for m in TIER_METRICS)
    drop_metrics = [not_tier] + ([is_critical] if is_critical else [])
    processors[f"filter/{v}-tier"] = {
        "error_mode": "ignore",
        "metrics": {
            "metric": drop_metrics,
            "datapoint": ['metric.name == "process.cpu.time" and attributes["state"] == "wait"'],
        },
    }
    processors[f"cumulativetodelta/{v}"] = {
        "include": {"metrics": list(TIER_COUNTERS), "match_type": "strict"},
        "initial_value": "drop",
    }
    # Phoenix's own processor (deploy/otelcol/keeplistprocessor): re-reads the keep file while the
    # collector runs, so a keep-list change needs no reload and deltatocumulative keeps its sums.
    processors[f"{KEEPLIST_PROCESSOR}/{v}"] = {"path": keep_path, "attribute": NAME_ATTR, "other": OTHER}
    processors[f"transform/{v}"] = {
        "error_mode": "ignore",
        "metric_statements": [
            {"context": "resource", "statements": [f'keep_keys(attributes, ["{NAME_ATTR}"])']},
            {
                "context": "datapoint",
                "statements": ["set(time_unix_nano, 0)", "set(start_time_unix_nano, 0)"],
            },
        ],
    }
    processors[f"groupbyattrs/{v}"] = {}
    dims = ", ".join(f'"{a}"' for a in ROLLUP_LABELS)
    processors[f"transform/{v}-rollup"] = {
        "error_mode": "ignore",
        "metric_statements": [
            {"context": "metric", "statements": [f'aggregate_on_attributes("sum", [{dims}])']},
            {"context": "datapoint", "statements": ["set(time, Now()) where time_unix_nano == 0"]},
        ],
    }
    processors[f"deltatocumulative/{v}"] = {}
    chain += [
        f"filter/{v}-tier",
        f"cumulativetodelta/{v}",
        f"{KEEPLIST_PROCESSOR}/{v}",
        f"transform/{v}",
        f"groupbyattrs/{v}",
        f"transform/{v}-rollup",
        f"deltatocumulative/{v}",
    ]
    if not critical:
        return []
    processors[f"filter/{v}-critical"] = {
        "error_mode": "ignore",
        "metrics": {"metric": [f"not {is_critical}"]},
    }
    processors[f"transform/{v}-critical"] = {
        "error_mode": "ignore",
        "metric_statements": [
            {
                "context": "resource",
                "statements": [f'delete_key(attributes, "{a}")' for a in CRITICAL_DROPPED],
            }
        ],
    }
    return [f"memory_limiter/{v}", f"filter/{v}-critical", f"transform/{v}-critical"]


def build_config(
    template: Template, p: Mapping[str, Any], variant: str, shipping: Shipping | None = None
) -> dict[str, Any]:
    """The collector config map of `template` for `variant` with resolved parameters `p`, shipping to
    a destination when `shipping` says so."""
    v = variant
    processors: dict[str, Any] = {
        f"memory_limiter/{v}": {
            "check_interval": "1s",
            "limit_mib": p["memory_limit_mib"],
            "spike_limit_mib": max(p["memory_limit_mib"] // 5, 1),
        },
    }
    chain = [f"memory_limiter/{v}"]
    critical_pipeline: list[str] = []
    exporters: dict[str, Any] = {f"prometheus/{v}": _exporter(p["prometheus_port"], p)}
    pipelines: dict[str, Any] = {}

    if template.builder == "selection":
        critical = p.get("critical_processes") or []
        not_kept = _not_kept(p["keep_list_path"], critical)
        if template.rollup:
            critical_pipeline = _tiers(processors, chain, v, p["keep_list_path"], critical)
        else:
            processors[f"filter/{v}"] = {"error_mode": "ignore", "metrics": {"metric": [not_kept]}}
            chain.append(f"filter/{v}")

        observe = f"{v}-observe"
        wanted = " and ".join(f'metric.name != "{m}"' for m in OBSERVE_METRICS)
        processors[f"filter/{observe}"] = {"error_mode": "ignore", "metrics": {"metric": [wanted]}}
        keys = ", ".join(f'"{a}"' for a in OBSERVE_ATTRS)
        processors[f"transform/{observe}"] = {
            "error_mode": "ignore",
            "metric_statements": [
                {"context": "resource", "statements": [f"keep_keys(resource.attributes, [{keys}])"]}
            ],
        }
        exporters[f"prometheus/{observe}"] = _exporter(p["observe_port"], p)
        pipelines[f"metrics/{observe}"] = {
            "receivers": [RECEIVER],
            "processors": [f"memory_limiter/{v}", f"filter/{observe}", f"transform/{observe}"],
            "exporters": [f"prometheus/{observe}"],
        }

    labels = [
        {"key": "phoenix.pipeline", "value": template.name, "action": "upsert"},
        {"key": "phoenix.variant", "value": v, "action": "upsert"},
    ]
    if p.get("experiment_id"):
        labels.append({"key": "phoenix.experiment_id", "value": p["experiment_id"], "action": "upsert"})
    processors[f"resource/{v}"] = {"attributes": labels}
    processors[f"batch/{v}"] = {"timeout": f"{p['batch_timeout_ms']}ms"}
    chain += [f"resource/{v}", f"batch/{v}"]
    main_exporters = [f"prometheus/{v}"]
    receivers: dict[str, Any] = {}
    extensions: dict[str, Any] = {HEALTH: {"endpoint": f"127.0.0.1:{p['health_port']}"}}
    if shipping is not None:
        main_exporters.append(shipping.exporter)
        exporters.update(shipping.exporters)
        receivers.update(shipping.receivers)
        processors.update(shipping.processors)
        pipelines.update(shipping.pipelines)
        extensions.update(shipping.extensions)
    main: dict[str, Any] = {
        f"metrics/{v}": {"receivers": [RECEIVER], "processors": chain, "exporters": main_exporters}
    }
    if critical_pipeline:
        # Critical processes bypass the roll-up: their counters are the receiver's own, per pid.
        main[f"metrics/{v}-critical"] = {
            "receivers": [RECEIVER],
            "processors": [*critical_pipeline, f"resource/{v}", f"batch/{v}"],
            "exporters": list(main_exporters),
        }
    pipelines = {**main, **pipelines}

    return {
        "receivers": {
            RECEIVER: {
                "collection_interval": f"{p['collection_interval']}s",
                "scrapers": {
                    "process": {
                        # Without root most processes' exe/io/owner are unreadable; scrape what is.
                        "mute_process_name_error": True,
                        "mute_process_exe_error": True,
                        "mute_process_io_error": True,
                        "mute_process_user_error": True,
                        "mute_process_cgroup_error": True,
                    }
                },
            },
            **receivers,
        },
        "processors": processors,
        "exporters": exporters,
        "extensions": extensions,
        "service": {
            "extensions": list(extensions),
            "telemetry": {
                "metrics": {
                    "level": "normal",
                    "readers": [
                        {
                            "pull": {
                                "exporter": {"prometheus": {"host": "127.0.0.1", "port": p["telemetry_port"]}}
                            }
                        }
                    ],
                }
            },
            "pipelines": pipelines,
        },
    }


def _expiration(p: dict[str, Any]) -> None:
    """Fill in the exporter's series expiration; it must outlive at least two scrapes."""
    interval = p["collection_interval"]
    if p["metric_expiration_seconds"] is None:
        p["metric_expiration_seconds"] = max(60, 3 * interval)
    elif p["metric_expiration_seconds"] < 2 * interval:
        raise ParameterError(
            "metric_expiration_seconds",
            f"parameter 'metric_expiration_seconds' must be at least twice collection_interval "
            f"({2 * interval}), got {p['metric_expiration_seconds']}",
        )


def _check_ports(p: Mapping[str, Any], selection: bool, relay: bool) -> None:
    names = ["prometheus_port", "health_port", "telemetry_port"] + (["observe_port"] if selection else [])
    names += ["relay_port"] if relay else []
    seen: dict[int, str] = {}
    for name in names:
        port = p[name]
        if port in seen:
            raise ParameterError(
                name, f"parameter '{name}' uses port {port}, already taken by '{seen[port]}'"
            )
        seen[port] = name


def render(
    template: Template,
    parameters: Mapping[str, Any] | None = None,
    variant: str = "main",
    experiment_id: str | None = None,
    destination: Mapping[str, Any] | None = None,
    production: bool = True,
) -> Rendered:
    """Validate `parameters` against `template` and render the config for `variant`, shipping to
    `destination` (a spec without secrets) when given: as the namespace's production stream, or not."""
    if not isinstance(variant, str) or not VARIANT.match(variant):
        raise ParameterError("variant", f"variant must match {VARIANT.pattern}, got {str(variant)[:40]!r}")
    if variant == SHIP:
        raise ParameterError(
            "variant", f"variant {variant!r} is reserved: '{SHIP}' names the shipping components"
        )
    raw = dict(parameters or {})
    if experiment_id is not None:
        if raw.get("experiment_id") not in (None, experiment_id):
            raise ParameterError("experiment_id", "experiment_id is given twice with different values")
        raw["experiment_id"] = experiment_id
    p = template.resolve(raw, variant)
    selection = template.builder == "selection"
    spec = check_spec(destination) if destination is not None else None
    _check_ports(p, selection, relay=spec is not None)
    _expiration(p)
    shipping = ship(spec, variant, production, p) if spec else None
    config = build_config(template, p, variant, shipping)
    text = dump_yaml(config)
    keep_list = None
    if selection:
        keep_list = {
            "path": p["keep_list_path"],
            "strategy": template.strategy,
            "k": p["k"],
            "critical": list(p.get("critical_processes") or []),
            "initial": list(p.get("critical_processes") or []),
            "refresh_seconds": p["refresh_seconds"],
            # The roll-up reads its keep file live: a change needs no collector reload.
            "live": template.rollup,
        }
        if "cpu_coverage_target_percent" in p:
            keep_list["coverage_target"] = p["cpu_coverage_target_percent"]
    return Rendered(
        template=template.name,
        variant=variant,
        config=config,
        config_yaml=text,
        config_hash=hashlib.sha256(text.encode()).hexdigest(),
        prometheus_endpoint=f"127.0.0.1:{p['prometheus_port']}",
        observe_endpoint=f"127.0.0.1:{p['observe_port']}" if selection else None,
        keep_list=keep_list,
        shipping=shipping.info if shipping else None,
    )
