"""What the running collector does now: one Sample per pipeline, and the collector block of heartbeats."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from agent import measure
from agent.collector import Collector, prometheus_endpoints, sha256_text
from agent.export import ExportWatch
from agent.payloads import collection_interval
from agent.state import StateDir


class Sampler:
    """Reads the collector's pipelines, keeping the rate references between calls."""

    def __init__(
        self, collector: Collector, state: StateDir, session: aiohttp.ClientSession, export: ExportWatch
    ) -> None:
        self.collector = collector
        self.export = export
        self.state = state
        self.session = session
        self._snapshots: dict[str, measure.Snapshot] = {}
        self._usage: measure.CollectorUsage | None = None

    async def pipelines(self, kept: Mapping[str, list[str]], critical: Sequence[str]) -> dict[str, Any]:
        """One Sample per pipeline the collector runs now (or {"error"} for one that cannot be read)."""
        config = self.collector.current_config()
        record = self.state.load_applied()
        names = record.get("variants") or {}
        pid = await self.collector.supervisor.pid()
        if self._usage is None or self._usage.pid != pid:
            self._usage = measure.CollectorUsage(pid)
        own = self._usage.sample()
        interval_hint = collection_interval(config)
        pipelines: dict[str, Any] = {}
        for variant, endpoint in prometheus_endpoints(config).items():
            pipeline = str(names.get(variant) or record.get("pipeline") or variant)
            try:
                series = await measure.read_settled(self.session, endpoint, 0.5 * (interval_hint or 1.0))
            except measure.MeasureError as exc:
                pipelines[variant] = {"variant": variant, "pipeline": pipeline, "error": str(exc)}
                continue
            sample, snapshot = measure.summarize(
                series,
                variant=variant,
                pipeline=pipeline,
                previous=self._snapshots.get(endpoint),
                critical=critical,
                kept=kept.get(variant),
                collection_interval=interval_hint,
            )
            if sample["active_series"]:
                self._snapshots[endpoint] = snapshot
            sample.update(own)
            pipelines[variant] = sample
        return pipelines

    async def collector_report(self) -> dict[str, Any]:
        """The collector block of heartbeats and health checks."""
        state = await self.collector.supervisor.state()
        record = self.state.load_applied()
        current = self.collector.current_text()
        return {
            "state": state.state,
            "restarts": state.restarts,
            "last_error": state.last_error,
            "config_hash": record.get("config_hash") or (sha256_text(current) if current else None),
            "pipeline": record.get("pipeline"),
            "pid": state.pid,
            "uptime_seconds": await self.collector.uptime_seconds(),
            "export": await self.export.report(self.collector.current_config(), record.get("destination")),
        }
