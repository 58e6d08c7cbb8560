"""The generator's own Prometheus metrics, on a registry per application."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

# Renders take about a millisecond; the buckets resolve that and still catch a slow one.
RENDER_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


@dataclass(frozen=True)
class GeneratorMetrics:
    """Counters and histograms the handlers update."""

    registry: CollectorRegistry
    renders: Counter
    render_seconds: Histogram
    render_errors: Counter

    @classmethod
    def create(cls) -> GeneratorMetrics:
        """Fresh metrics on their own registry (so two apps in one process never clash)."""
        registry = CollectorRegistry()
        return cls(
            registry=registry,
            renders=Counter(
                "phoenix_generator_renders", "Configs rendered, by template", ["template"], registry=registry
            ),
            render_seconds=Histogram(
                "phoenix_generator_render_seconds",
                "Time to render one config",
                ["template"],
                buckets=RENDER_BUCKETS,
                registry=registry,
            ),
            render_errors=Counter(
                "phoenix_generator_render_errors",
                "Render requests rejected, by reason",
                ["reason"],
                registry=registry,
            ),
        )

    def response(self) -> web.Response:
        """The Prometheus text exposition of these metrics."""
        resp = web.Response(body=generate_latest(self.registry))
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp
