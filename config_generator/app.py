"""The config-generator application factory and its HTTP handlers."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from config_generator import keys, openapi
from config_generator.catalog import TEMPLATE_NAME, ParameterError, Template, load_catalog
from config_generator.control_plane import ControlPlaneClient
from config_generator.experiment import SPEC_FIELDS, check_shareable, variants
from config_generator.metrics import GeneratorMetrics
from config_generator.render import Rendered, render
from config_generator.settings import Settings
from config_generator.validate import validate_with_collector
from phoenix_common.guard import guard_middleware
from phoenix_common.problems import NotFound, Problem, Unauthorized, field, json_body, problem_middleware
from phoenix_common.tokens import bearer, same_token

log = structlog.get_logger("phoenix.generator")

EXPERIMENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")
RENDER_FIELDS = frozenset({"template", "parameters", "variant", "experiment_id", "validate", "destination"})
GENERATE_FIELDS = frozenset({"experiment_id", "validate", "destinations", *SPEC_FIELDS})


def _auth_middleware(token: str | None) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Require the API token on /api/ when one is configured."""
        if token and request.path.startswith("/api/"):
            given = bearer(request)
            if given is None or not same_token(given, token):
                raise Unauthorized("a valid 'Authorization: Bearer <token>' header is required")
        return await handler(request)

    return middleware


def _reject_unknown(body: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Problem(
            f"unknown field '{unknown[0][:64]}'; allowed: {', '.join(sorted(allowed))}", field=unknown[0][:64]
        )


def _template(request: web.Request, name: str, where: str = "template") -> Template:
    # The catalog is read once at start-up, so a name is only a dict key here, never a file path; one
    # that cannot be a template name is refused as such rather than looked up.
    if not TEMPLATE_NAME.match(name):
        raise Problem(
            f"field '{where}' must be a template name (lowercase letters, digits and '-', starting with a "
            f"letter), got {name[:64]!r}",
            field=where,
        )
    catalog = request.app[keys.CATALOG]
    template = catalog.get(name)
    if template is None:
        raise NotFound(
            f"{where} '{name[:64]}' is not a known template; known: {', '.join(sorted(catalog))}", field=where
        )
    return template


def _render(
    request: web.Request,
    template: Template,
    parameters: dict[str, Any],
    variant: str,
    experiment_id: str | None,
    where: str = "parameters",
    status: int = 400,
    destination: dict[str, Any] | None = None,
    production: bool = True,
) -> Rendered:
    metrics = request.app[keys.METRICS]
    started = time.perf_counter()
    try:
        rendered = render(
            template,
            parameters,
            variant=variant,
            experiment_id=experiment_id,
            destination=destination,
            production=production,
        )
    except ParameterError as exc:
        metrics.render_errors.labels("parameter").inc()
        name = exc.parameter if exc.parameter in ("variant", "destination") else f"{where}.{exc.parameter}"
        raise Problem(
            str(exc), status=status, title="Unprocessable Content" if status == 422 else None, field=name[:80]
        ) from None
    seconds = time.perf_counter() - started
    metrics.renders.labels(template.name).inc()
    metrics.render_seconds.labels(template.name).observe(seconds)
    log.info(
        "rendered",
        template=template.name,
        variant=variant,
        experiment_id=experiment_id,
        config_hash=rendered.config_hash[:12],
        ms=round(seconds * 1000, 3),
    )
    return rendered


async def health(request: web.Request) -> web.Response:
    """Liveness: the templates are loaded."""
    catalog = request.app[keys.CATALOG]
    return web.json_response({"status": "ok", "templates": sorted(catalog)})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition of the generator's metrics."""
    return request.app[keys.METRICS].response()


async def list_templates(request: web.Request) -> web.Response:
    """Every template with its parameter schema."""
    catalog = request.app[keys.CATALOG]
    return web.json_response({"templates": [catalog[name].schema() for name in sorted(catalog)]})


async def render_one(request: web.Request) -> web.Response:
    """POST /api/v1/render: one template, one variant."""
    body = await json_body(request)
    _reject_unknown(body, RENDER_FIELDS)
    template = _template(request, field(body, "template", str))
    parameters = field(body, "parameters", dict, default={})
    variant = field(body, "variant", str, default="main")
    experiment_id = field(body, "experiment_id", str, default=None)
    destination = field(body, "destination", dict, default=None)
    rendered = _render(request, template, parameters, variant, experiment_id, destination=destination)
    if field(body, "validate", bool, default=False):
        settings = request.app[keys.SETTINGS]
        await validate_with_collector(settings.otelcol_binary, rendered, settings.validate_timeout)
    return web.json_response(rendered.to_dict())


async def generate(request: web.Request) -> web.Response:
    """POST /api/v1/generate: an experiment's two configs, from the spec sent, else the control plane's."""
    body = await json_body(request)
    _reject_unknown(body, GENERATE_FIELDS)
    experiment_id = field(body, "experiment_id", str)
    if not EXPERIMENT_ID.match(experiment_id):
        raise Problem(f"field 'experiment_id' must match {EXPERIMENT_ID.pattern}", field="experiment_id")
    spec = {k: body[k] for k in SPEC_FIELDS if k in body}
    if not spec:
        spec = await request.app[keys.CONTROL_PLANE].experiment(experiment_id)
    # Where each variant ships (docs/destinations.md): the baseline is the namespace's production stream;
    # a candidate ships only to a destination of its own, else runs in shadow.
    destinations = field(body, "destinations", dict, default={})
    unknown = sorted(set(destinations) - {"baseline", "candidate"})
    if unknown:
        raise Problem(
            f"field 'destinations' may name baseline and candidate only, got {unknown[0][:40]!r}",
            field="destinations",
        )
    out = {
        v.name: _render(
            request,
            v.template,
            v.parameters,
            v.name,
            experiment_id,
            f"parameters.{v.name}",
            422,
            destination=destinations.get(v.name),
            production=v.name == "baseline",
        )
        for v in variants(request.app[keys.CATALOG], experiment_id, spec)
    }
    check_shareable(experiment_id, out["baseline"], out["candidate"])
    if field(body, "validate", bool, default=False):
        settings = request.app[keys.SETTINGS]
        for rendered in out.values():
            await validate_with_collector(settings.otelcol_binary, rendered, settings.validate_timeout)
    log.info(
        "generated",
        experiment_id=experiment_id,
        baseline=out["baseline"].template,
        candidate=out["candidate"].template,
    )
    return web.json_response({"experiment_id": experiment_id, **{v: r.to_dict() for v, r in out.items()}})


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    async with aiohttp.ClientSession() as session:
        app[keys.HTTP] = session
        app[keys.CONTROL_PLANE] = ControlPlaneClient(
            session, settings.control_plane_url, settings.api_token, settings.request_timeout
        )
        yield


def create_app(settings: Settings) -> web.Application:
    """The generator service: templates, render, generate, health and metrics."""
    app = web.Application(
        middlewares=[
            problem_middleware,
            guard_middleware(bind_host=settings.host, allowed_hosts=settings.allowed_hosts),
            _auth_middleware(settings.api_token),
        ],
        client_max_size=settings.max_body_bytes,
    )
    app[keys.SETTINGS] = settings
    app[keys.CATALOG] = load_catalog()
    app[keys.METRICS] = GeneratorMetrics.create()
    app.cleanup_ctx.append(_http_client)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/templates", list_templates)
    app.router.add_post("/api/v1/render", render_one)
    app.router.add_post("/api/v1/generate", generate)
    app.add_routes(openapi.routes)
    return app
