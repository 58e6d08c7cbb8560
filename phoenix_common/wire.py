"""Wire contracts of docs/contracts.md as msgspec types, checked one way on both sides of the wire."""

from __future__ import annotations

import re
import typing
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta, Struct

from phoenix_common.keeplist import render_keep_file, validate_process_name
from phoenix_common.settings import is_loopback

# The roll-up series of every process a pipeline does not keep at full detail.
OTHER = "other"
# How a selection pipeline ranks the processes it keeps.
STRATEGIES = ("topk", "adaptive", "intelligent")
# A DNS label: how namespaces and destinations are named (and the files named after a destination).
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
MAX_EXPERIMENT_SECONDS = 7 * 24 * 3600.0
MIN_SAMPLE_INTERVAL = 1.0
# Billed series are distinct label sets with data in a trailing window (Grafana Cloud: 20 minutes).
DEFAULT_BILLING_WINDOW = 1200.0
MIN_BILLING_WINDOW = 60.0
MAX_BILLING_WINDOW = 86400.0
# Unix seconds from 2000 to 2200: anything else is a broken clock or a broken client.
TS_RANGE = (946_684_800, 7_258_118_400)

T = TypeVar("T")


def _says(message: str, **bounds: Any) -> Meta:
    """Constraints whose failure (of the value or anything inside it) reads `<field> <message>`."""
    return Meta(**bounds, extra={"message": message})


# The largest figure a sample may carry (series, datapoints, bytes, CPU seconds): far above any host's,
# and small enough that sums and prices over a fleet and a long run stay finite.
MAX_FIGURE = 1e15
NonNegative = Annotated[float, _says(f"must be a number between 0 and {MAX_FIGURE:g}", ge=0, le=MAX_FIGURE)]
NumberMap = Annotated[
    dict[str, NonNegative], _says(f"must map names to numbers between 0 and {MAX_FIGURE:g}")
]
Strings = Annotated[list[str], _says("must be an array of strings")]


class WireError(ValueError):
    """A payload that breaks its contract; the message names the field (`payload.keep_list.k ...`)."""

    def __init__(self, root: str, field: str, reason: str) -> None:
        self.field = field  # the path below `root`: "keep_list.k", "[3].ts", "" for the whole value
        self.reason = reason
        where = f"{root}.{field}" if root and field and not field.startswith("[") else f"{root}{field}"
        super().__init__(f"{where} {reason}" if where else reason)


class KeepList(Struct, frozen=True):
    """Which processes a selection pipeline keeps, and how it ranks them."""

    path: str
    strategy: str
    k: Annotated[int, Meta(ge=0)]
    critical: Strings = []
    initial: Strings = []
    refresh_seconds: Annotated[float, Meta(gt=0, le=MAX_EXPERIMENT_SECONDS)] = 120.0
    # Intelligent strategy: keep the fewest names whose smoothed CPU covers this share (percent),
    # at most k of them. None: keep the k largest.
    coverage_target: Annotated[float, Meta(gt=0, le=100)] | None = None
    # The collector re-reads the file while it runs (the roll-up's keep-list processor): a change is a
    # file write, not a reload. False: the config embeds the file, and the collector reloads.
    live: bool = False

    def __post_init__(self) -> None:
        if not self.path.startswith("/"):
            raise ValueError("path must be absolute")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if OTHER in self.critical:
            raise ValueError(f"critical must not name {OTHER!r}: it is the roll-up of the processes not kept")
        for name in self.critical:
            try:
                validate_process_name(name)
            except ValueError as exc:
                raise ValueError(f"critical is invalid: {exc}") from None
        try:
            render_keep_file(self.initial)
        except ValueError as exc:
            raise ValueError(f"initial is invalid: {exc}") from None


def check_loopback(name: str, value: str) -> None:
    """ValueError unless `value` is a `host:port` on loopback (the collector only listens there)."""
    parts = urlsplit(f"//{value}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.path or not is_loopback(parts.hostname):
        raise ValueError(f"{name} must be a loopback host:port such as 127.0.0.1:9464, got {value[:80]!r}")


class Shipping(Struct, frozen=True):
    """Where a rendered variant ships (docs/destinations.md): paths are the contract's placeholders under
    /var/lib/phoenix-agent, which the agent points at its own directories."""

    destination: str
    type: str
    exporter: str
    queue_directory: str
    queue_points: Annotated[int, Meta(ge=0)] = 0
    headers_file: str | None = None
    writer: str | None = None


# Secret side files of a task (placeholder path -> header map), opened by the API for the host only.
SecretFiles = Annotated[
    dict[str, dict[str, str]], _says("must map file paths to objects of header names and values")
]


class Rendered(Struct, frozen=True):
    """One collector config the generator rendered for a variant."""

    template: str
    variant: str
    config_yaml: str
    prometheus_endpoint: str
    config_hash: str | None = None
    observe_endpoint: str | None = None
    keep_list: KeepList | None = None
    shipping: Shipping | None = None

    def __post_init__(self) -> None:
        check_loopback("prometheus_endpoint", self.prometheus_endpoint)
        if self.observe_endpoint is not None:
            check_loopback("observe_endpoint", self.observe_endpoint)


AsRendered = Annotated[Rendered | None, _says("must be a Rendered object")]


class DeploymentApply(Struct, frozen=True):
    """Payload of a deployment/apply task."""

    pipeline: str
    config_yaml: str
    deployment_id: str | None = None
    config_hash: str | None = None
    keep_list: KeepList | None = None
    shipping: Shipping | None = None
    secret_files: SecretFiles = {}
    # Set by the API instead of secret_files when it could not open them (the task then fails).
    secret_error: str | None = None


class ExperimentStart(Struct, frozen=True):
    """Payload of an experiment/start task."""

    experiment_id: str
    duration_seconds: float
    baseline: AsRendered = None
    candidate: AsRendered = None
    warmup_seconds: Annotated[float, _says("must not be negative", ge=0, le=MAX_EXPERIMENT_SECONDS)] = 0.0
    sample_interval_seconds: Annotated[
        float, _says(f"must be at least {MIN_SAMPLE_INTERVAL:g}", ge=MIN_SAMPLE_INTERVAL, le=3600)
    ] = 10.0
    critical_processes: Strings = []
    load_profile: str | None = None
    # The trailing window over which the agent counts billed series (distinct label sets with data).
    billing_window_seconds: Annotated[
        float,
        _says(
            f"must be between {MIN_BILLING_WINDOW:g} and {MAX_BILLING_WINDOW:g}",
            ge=MIN_BILLING_WINDOW,
            le=MAX_BILLING_WINDOW,
        ),
    ] = DEFAULT_BILLING_WINDOW
    # Seconds each arm runs alone in a probe collector at the end, to measure its own overhead (0: none).
    overhead_probe_seconds: Annotated[float, _says("must be between 0 and 600", ge=0, le=600)] = 0.0
    secret_files: SecretFiles = {}
    secret_error: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.duration_seconds <= MAX_EXPERIMENT_SECONDS:
            raise ValueError(f"duration_seconds must be between 0 and {MAX_EXPERIMENT_SECONDS:.0f}")
        for role in ("baseline", "candidate"):
            if getattr(self, role) is None:
                raise ValueError(f"{role} must be a Rendered object")


class ExperimentStop(Struct, frozen=True):
    """Payload of an experiment/stop task."""

    experiment_id: str


class NoPayload(Struct, frozen=True):
    """Payload of metrics/collect and health/check tasks: nothing."""


class Sample(Struct, frozen=True):
    """What one pipeline emitted over one sample interval."""

    variant: Annotated[str, _says("must be a string of 1-64 characters", min_length=1, max_length=64)]
    ts: Annotated[float, _says("must be a unix time in seconds", ge=TS_RANGE[0], le=TS_RANGE[1])]
    active_series: NonNegative
    pipeline: str | None = None
    datapoints_per_second: NonNegative | None = None
    collector_cpu_percent: NonNegative | None = None
    collector_memory_bytes: NonNegative | None = None
    interval_seconds: NonNegative | None = None
    data_ts: float | None = None
    series_per_metric: NumberMap | None = None
    process_cpu_seconds_rate: NumberMap | None = None
    process_memory_bytes: NumberMap | None = None
    process_cpu_seconds_total: NumberMap | None = None
    kept_processes: Strings | None = None
    critical_present: Annotated[dict[str, bool], _says("must map names to booleans")] | None = None
    keep_list: Strings | None = None
    # Billing figures, counted from the output (docs/contracts.md#sample).
    billed_series: NonNegative | None = None
    billing_window_seconds: NonNegative | None = None
    observed_seconds: NonNegative | None = None
    new_series_per_hour: NonNegative | None = None
    datapoints_per_minute: NonNegative | None = None
    cpu_total_rate: NonNegative | None = None
    cpu_total_seconds: NonNegative | None = None
    memory_total_bytes: NonNegative | None = None
    reloaded: bool | None = None
    agent_cpu_percent: NonNegative | None = None
    agent_memory_bytes: NonNegative | None = None


class Measurements(Struct, frozen=True):
    """Body of POST /api/v1/agent/measurements."""

    samples: Annotated[list[Sample], _says("must hold 1-200 samples", min_length=1, max_length=200)]
    experiment_id: str | None = None
    task_id: str | None = None


class ExportReport(Struct, frozen=True):
    """How the collector delivers to its destination (agent/export.py), from its own telemetry."""

    destination: str | None = None
    exporter: str | None = None
    state: str | None = None
    sent_points: Annotated[int, Meta(ge=0)] | None = None
    failed_points: Annotated[int, Meta(ge=0)] | None = None
    dropped_points: Annotated[int, Meta(ge=0)] | None = None
    queue_size: Annotated[int, Meta(ge=0)] | None = None
    queue_capacity: Annotated[int, Meta(ge=0)] | None = None
    error: str | None = None


class CollectorReport(Struct, frozen=True):
    """The collector block of a heartbeat and of a health check's result."""

    state: str | None = None
    restarts: Annotated[int, _says("must be a non-negative integer", ge=0)] | None = None
    last_error: str | None = None
    config_hash: str | None = None
    pipeline: str | None = None
    pid: int | None = None
    uptime_seconds: float | None = None
    export: ExportReport | None = None


class Heartbeat(Struct, frozen=True):
    """Body of POST /api/v1/agent/heartbeat."""

    namespace: str | None = None
    labels: Annotated[dict[str, str], _says("must map strings to strings")] | None = None
    version: str | None = None
    facts: dict[str, Any] | None = None
    collector: CollectorReport | None = None
    running_tasks: Annotated[list[str], _says("must be an array of task ids")] | None = None


# -- one way of checking ----------------------------------------------------------------------------------

_AT = re.compile(r"^(?P<text>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_STEP = re.compile(r"\.(\w+)|\[([^\]]*)\]")
_KINDS = {
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "object": "an object",
    "array": "an array",
}


def _said(kind: Any, path: str) -> tuple[str, str] | None:
    """The (path, message) of the outermost `_says` on `path` below its innermost object field."""
    found: tuple[str, str] | None = None
    done = ""
    steps = list(_STEP.finditer(path))
    for index in range(len(steps) + 1):
        while typing.get_origin(kind) is Annotated or type(None) in typing.get_args(kind):
            if typing.get_origin(kind) is Annotated:
                kind, *metas = typing.get_args(kind)
                says = [m.extra["message"] for m in metas if isinstance(m, Meta) and m.extra]
                found = found or ((done, says[0]) if says else None)
            else:
                kind = next(k for k in typing.get_args(kind) if k is not type(None))
        if index == len(steps):
            break
        step = steps[index]
        done += step.group(0)
        if step.group(1) is not None and isinstance(kind, type) and issubclass(kind, Struct):
            kind = typing.get_type_hints(kind, include_extras=True).get(step.group(1))
            found = None
        else:
            kind = (typing.get_args(kind) or (None,))[-1]
    return found


def _reason(text: str) -> tuple[str, str]:
    """A msgspec error text as (sub-field, reason) in the project's words."""
    if missing := re.fullmatch(r"Object missing required field `(\w+)`", text):
        return missing.group(1), "is required"
    if expected := re.fullmatch(r"Expected `([\w |]+)`, got `\w+`", text):
        kinds = [_KINDS.get(k, k) for k in expected.group(1).split(" | ") if k != "null"]
        return "", "must be " + " or ".join(kinds)
    if bound := re.fullmatch(r"Expected `\w+` (>=|>|<=|<) (-?[\d.e+]+)", text):
        op, value = bound.group(1), float(bound.group(2))
        if op == ">=":
            return "", "must not be negative" if value == 0 else f"must be at least {value:g}"
        if op == ">":
            return "", "must be positive" if value == 0 else f"must be greater than {value:g}"
        return "", f"must be at most {value:g}" if op == "<=" else f"must be less than {value:g}"
    if text.startswith(("Expected ", "Invalid ", "Object ")):
        return "", f"is invalid: {text}"
    # Raised by a __post_init__: "<field> <reason>".
    field, _, reason = text.partition(" ")
    return field, reason


def check(kind: type[T], value: Any, root: str = "payload") -> T:
    """`value` (decoded JSON) as a `kind`, or WireError naming the field below `root`."""
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        assert match is not None
        path = match.group("path") or ""
        field, reason = _reason(match.group("text"))
        if field:
            path = f"{path}.{field}"
        elif said := _said(kind, path):
            path, reason = said
        raise WireError(root, path.lstrip("."), reason) from None


def to_json(value: Struct) -> dict[str, Any]:
    """A contract value as plain JSON types, without the optional fields it leaves out."""
    out: dict[str, Any] = msgspec.to_builtins(value)
    return {k: v for k, v in out.items() if v is not None}
