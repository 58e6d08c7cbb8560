"""Export health: what the collector's own telemetry says of the exporter that ships to the destination.

The queue-owning exporter (`otlp/ship`, `otlphttp/ship`, or the remote write spool) is named by the
rendered config's shipping block; its counters are the collector's, read from its telemetry endpoint."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from agent import measure

SENT = "otelcol_exporter_sent_metric_points"
FAILED = "otelcol_exporter_send_failed_metric_points"
DROPPED = "otelcol_exporter_enqueue_failed_metric_points"
QUEUE = "otelcol_exporter_queue_size"
CAPACITY = "otelcol_exporter_queue_capacity"
_FIELDS = {
    SENT: "sent_points",
    FAILED: "failed_points",
    DROPPED: "dropped_points",
    QUEUE: "queue_size",
    CAPACITY: "queue_capacity",
}


@dataclass(frozen=True)
class Reading:
    """The exporter's counters at one instant (collector lifetime totals; they restart with it)."""

    at: float
    sent_points: int = 0
    failed_points: int = 0
    dropped_points: int = 0
    queue_size: int = 0
    queue_capacity: int = 0


def telemetry_endpoint(config: Mapping[str, Any]) -> str | None:
    """host:port where the collector serves its own metrics (its first pull reader), as the config says."""
    try:
        readers = config["service"]["telemetry"]["metrics"]["readers"]
    except (KeyError, TypeError):
        return None
    for reader in readers if isinstance(readers, list) else ():
        try:
            prom = reader["pull"]["exporter"]["prometheus"]
            return f"{prom.get('host', '127.0.0.1')}:{int(prom['port'])}"
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
    return None


def shipping_of(config: Mapping[str, Any]) -> str | None:
    """The queue-owning exporter of the production stream (`<type>/ship`), if the config ships."""
    exporters = config.get("exporters") or {}
    for name in exporters if isinstance(exporters, Mapping) else ():
        if str(name).endswith("/ship") and str(name).split("/")[0] in (
            "otlp",
            "otlphttp",
            "otlp_http",
            "otlp_grpc",
        ):
            return str(name)
    return None


def parse(text: str, exporter: str, at: float) -> Reading:
    """The exporter's counters in a telemetry exposition (0 for a counter not yet exposed)."""
    values: dict[str, float] = {}
    for series in measure.parse_exposition(text):
        name = series.name.removesuffix("_total")
        if name in _FIELDS and series.labels.get("exporter") == exporter:
            values[_FIELDS[name]] = values.get(_FIELDS[name], 0.0) + series.value
    return Reading(at, **{k: int(v) for k, v in values.items()})


def state(previous: Reading | None, current: Reading) -> str:
    """ok: something was delivered since the last reading, or nothing waits; failing: points failed or
    were dropped, or data waits in the queue and none was delivered; starting: nothing to compare yet."""
    if previous is None or current.sent_points < previous.sent_points:  # first reading, or a restart
        return "starting" if current.failed_points == 0 and current.dropped_points == 0 else "failing"
    if current.failed_points > previous.failed_points or current.dropped_points > previous.dropped_points:
        return "failing"
    if current.sent_points > previous.sent_points or current.queue_size == 0:
        return "ok"
    return "failing"


class ExportWatch:
    """Reads the shipping exporter's telemetry and keeps the last reading to judge the next."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self._last: dict[str, Reading] = {}

    async def read(self, endpoint: str, exporter: str) -> Reading:
        text = await measure.scrape(self.session, endpoint)
        return parse(text, exporter, time.monotonic())

    async def report(self, config: Mapping[str, Any], destination: str | None) -> dict[str, Any] | None:
        """The heartbeat's export block, or None when the collector ships nowhere."""
        exporter = shipping_of(config)
        endpoint = telemetry_endpoint(config)
        if exporter is None or endpoint is None:
            return None
        base = {"destination": destination, "exporter": exporter}
        try:
            current = await self.read(endpoint, exporter)
        except measure.MeasureError as exc:
            return {**base, "state": "unknown", "error": str(exc)}
        key = f"{endpoint}/{exporter}"
        verdict = state(self._last.get(key), current)
        self._last[key] = current
        return {
            **base,
            "state": verdict,
            "sent_points": current.sent_points,
            "failed_points": current.failed_points,
            "dropped_points": current.dropped_points,
            "queue_size": current.queue_size,
            "queue_capacity": current.queue_capacity,
        }

    async def baseline(self, config: Mapping[str, Any]) -> Reading | None:
        """The shipping exporter's counters now (before a change), if it can be read."""
        exporter, endpoint = shipping_of(config), telemetry_endpoint(config)
        if exporter is None or endpoint is None:
            return None
        try:
            return await self.read(endpoint, exporter)
        except measure.MeasureError:
            return None

    async def delivered(
        self, config: Mapping[str, Any], timeout: float, before: Reading | None = None, poll: float = 0.25
    ) -> str | None:
        """Wait until the shipping exporter of `config` has delivered points since `before` (the reading
        of the config that ran until now, if it shipped with the same exporter); None then, else why it
        did not (points refused, or nothing sent within `timeout` seconds)."""
        exporter, endpoint = shipping_of(config), telemetry_endpoint(config)
        if exporter is None or endpoint is None:
            return None
        deadline = time.monotonic() + timeout
        last: Reading | None = None
        error = ""
        while True:
            try:
                last = await self.read(endpoint, exporter)
                # Counters restart with the collector's telemetry; below `before` means they did.
                base = before if before and last.sent_points >= before.sent_points else None
                sent = last.sent_points - (base.sent_points if base else 0)
                failed = last.failed_points - (base.failed_points if base else 0)
                if sent > 0:
                    return None
                if failed > 0:
                    return f"the destination refused {failed} points (exporter {exporter})"
            except measure.MeasureError as exc:
                error = f" (telemetry: {exc})"
            if time.monotonic() >= deadline:
                queued = f"; {last.queue_size} points wait in its queue" if last else ""
                return f"exporter {exporter} delivered nothing within {timeout:g}s{queued}{error}"
            await asyncio.sleep(poll)
