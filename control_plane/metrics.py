"""Prometheus metrics of the API: request counts and latencies, queue depth, agent last-seen."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterator

import prometheus_client
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily

from control_plane import keys
from control_plane.phases import Phase
from phoenix_common.problems import Unauthorized
from phoenix_common.tokens import bearer, same_token

# Series with a _created twin double the exposition for nothing a dashboard uses.
prometheus_client.disable_created_metrics()

TASK_STATUSES = ("pending", "assigned", "running", "completed", "failed")
# phoenix_retention_pruned_rows_total{table} values (control_plane/retention.py).
RETENTION_TABLES = ("tasks", "events", "experiment_measurements")


class ApiMetrics:
    """The API's metric families on a registry of its own (one per app)."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        # When the database-derived gauges were last read (monotonic), and the lock one refresh holds.
        self.refreshed_at = -math.inf
        self.refresh_lock = asyncio.Lock()
        self.requests = Counter(
            "phoenix_http_requests_total",
            "HTTP requests served",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "phoenix_http_request_duration_seconds",
            "HTTP request latency (long polls included)",
            ["method", "route"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.last_seen = Gauge(
            "phoenix_agent_last_seen_seconds",
            "Unix time of the agent's last contact",
            ["host_id"],
            registry=registry,
        )
        # Export health per host (agent/export.py): the collector's own counters as last reported; they
        # restart with the collector, so they are gauges of its lifetime totals.
        self.export = {
            key: Gauge(f"phoenix_agent_export_{key}", text, ["host_id"], registry=registry)
            for key, text in (
                ("failing", "1 when the host's collector cannot deliver to its destination, else 0"),
                ("queue_size", "Datapoints waiting in the host's persistent sending queue"),
                ("sent_points", "Datapoints the host's collector delivered since it started"),
                ("failed_points", "Datapoints the destination refused since the collector started"),
                ("dropped_points", "Datapoints refused by the full queue since the collector started"),
            )
        }
        self.queue_depth = Gauge(
            "phoenix_task_queue_depth", "Tasks per status", ["status"], registry=registry
        )
        self.reduction = Gauge(
            "phoenix_cardinality_reduction_percent",
            "Measured fleet-wide series reduction of the experiment's candidate",
            ["experiment_id"],
            registry=registry,
        )
        self.phase = Gauge(
            "phoenix_experiment_phase",
            "Experiment phase: " + ", ".join(f"{p.gauge} {p}" for p in Phase),
            ["experiment_id"],
            registry=registry,
        )
        self.long_polls = Gauge(
            "phoenix_long_polls_waiting",
            "Agent long polls waiting for a task in this process",
            registry=registry,
        )
        self.counters = DatabaseCounters()
        registry.register(self.counters)
        self.process = ProcessCounters()
        registry.register(self.process)
        self.passes = Counter(
            "phoenix_background_passes_total",
            "Completed passes of a periodic background job of this process",
            ["job"],
            registry=registry,
        )
        self.leases_expired = Counter(
            "phoenix_task_leases_expired_total", "Tasks whose lease expired", ["outcome"], registry=registry
        )
        self.pruned = Counter(
            "phoenix_retention_pruned_rows_total",
            "Rows this replica's retention deleted, per table",
            ["table"],
            registry=registry,
        )
        for table in RETENTION_TABLES:
            self.pruned.labels(table)


class ProcessCounters:
    """This process's own statement counts, read when scraped (the benchmark's view of batching)."""

    def __init__(self) -> None:
        self.source: Callable[[], dict[str, int]] = dict

    def collect(self) -> Iterator[CounterMetricFamily]:
        values = self.source()
        for name, help_text in (
            ("phoenix_long_poll_claim_statements", "Claim statements the long-poll dispatcher ran"),
            ("phoenix_long_poll_claims_skipped", "Long polls that needed no claim (host known idle)"),
            ("phoenix_report_statements", "Statements that applied agent reports (batched across hosts)"),
            ("phoenix_presence_flushes", "Batched last-seen writes"),
        ):
            family = CounterMetricFamily(name, help_text)
            family.add_metric([], values.get(name, 0))
            yield family


class DatabaseCounters:
    """Counters whose truth lives in the database, so every replica exposes the same values."""

    def __init__(self) -> None:
        self.restarts: dict[str, int] = {}
        self.finished: dict[tuple[str, str], int] = {}

    def collect(self) -> Iterator[CounterMetricFamily]:
        restarts = CounterMetricFamily(
            "phoenix_agent_collector_restarts", "Collector restarts each agent reported", labels=["host_id"]
        )
        for host_id, n in sorted(self.restarts.items()):
            restarts.add_metric([host_id], n)
        yield restarts
        finished = CounterMetricFamily(
            "phoenix_tasks_finished", "Tasks that reached completed or failed", labels=["type", "status"]
        )
        for (kind, status), n in sorted(self.finished.items()):
            finished.add_metric([kind, status], n)
        yield finished


METRICS = web.AppKey("metrics", ApiMetrics)


@web.middleware
async def metrics_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    start = time.perf_counter()
    route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics = request.app[METRICS]
        metrics.requests.labels(request.method, route, str(status)).inc()
        metrics.latency.labels(request.method, route).observe(time.perf_counter() - start)


async def metrics_handler(request: web.Request) -> web.Response:
    """Refresh database-derived gauges (at most once per `metrics_cache_seconds`, one refresh however
    many scrapers ask at once), then expose everything."""
    settings, metrics = request.app[keys.SETTINGS], request.app[METRICS]
    if settings.metrics_token and not same_token(bearer(request) or "", settings.metrics_token):
        raise Unauthorized("a metrics token is required: send Authorization: Bearer <metrics_token>")
    async with metrics.refresh_lock:
        if time.monotonic() - metrics.refreshed_at >= settings.metrics_cache_seconds:
            await _refresh(request.app, metrics)
            metrics.refreshed_at = time.monotonic()
    body = generate_latest(metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _refresh(app: web.Application, metrics: ApiMetrics) -> None:
    """The gauges read from the database: queue depth, agents' contact and export health, counters."""
    tasks, agents = app[keys.QUEUE], app[keys.AGENTS].agents
    depth = await tasks.depth()
    for status in TASK_STATUSES:
        metrics.queue_depth.labels(status).set(depth.get(status, 0))
    metrics.last_seen.clear()
    for host_id, last_seen in (await agents.last_seen()).items():
        metrics.last_seen.labels(host_id).set(last_seen)
    for gauge in metrics.export.values():
        gauge.clear()
    for host_id, export in (await agents.export_health()).items():
        metrics.export["failing"].labels(host_id).set(1 if export.get("state") == "failing" else 0)
        for key in ("queue_size", "sent_points", "failed_points", "dropped_points"):
            if isinstance(export.get(key), int | float):
                metrics.export[key].labels(host_id).set(export[key])
    metrics.counters.restarts = await agents.collector_restarts()
    metrics.counters.finished = await tasks.finished()
    for hook in app.get(METRIC_HOOKS, []):
        await hook(app, metrics)


MetricHook = Callable[[web.Application, ApiMetrics], Awaitable[None]]
METRIC_HOOKS = web.AppKey("metric_hooks", list[MetricHook])
