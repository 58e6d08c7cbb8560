"""The control-plane application factory."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from control_plane import (
    agent_api,
    compaction,
    cost,
    deployments,
    destinations,
    experiments,
    fleet,
    keys,
    openapi,
    retention,
    rollouts,
    tokens,
    ws,
)
from control_plane import web as dashboard
from control_plane.auth import agent_tokens_required, auth_middleware
from control_plane.db import Database, make_pool, migrate
from control_plane.dispatch import Dispatcher
from control_plane.generator_client import for_app as generator_for
from control_plane.jsonutil import respond
from control_plane.listener import EventHub, Listener
from control_plane.metrics import (
    METRIC_HOOKS,
    METRICS,
    ApiMetrics,
    MetricHook,
    metrics_handler,
    metrics_middleware,
)
from control_plane.periodic import every
from control_plane.presence import Presence
from control_plane.queue import ReportBatcher, TaskQueue
from control_plane.secrets import Sealer, load_key
from control_plane.services.agents import AgentService
from control_plane.services.deployments import DeploymentService
from control_plane.services.destinations import DestinationService
from control_plane.services.tokens import AgentTokens
from control_plane.settings import Settings
from control_plane.stores.agents import AgentStore
from control_plane.stores.deployments import DeploymentStore
from control_plane.stores.destinations import DestinationStore
from control_plane.stores.events import EventStore
from control_plane.stores.experiments import ExperimentStore
from control_plane.stores.retention import RetentionStore
from control_plane.stores.tokens import TokenStore
from phoenix_common.guard import guard_middleware
from phoenix_common.problems import Unavailable, problem_middleware

log = structlog.get_logger("phoenix.api")

# A gap this much longer than the reap interval between two database contacts of the reaper is an outage.
OUTAGE_SECONDS = 5.0


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    url = app[keys.DATABASE_URL]
    await migrate(settings.direct_database_url or url)
    pool = make_pool(
        url, settings.pool_min_size, settings.pool_max_size, prepare=settings.prepared_statements
    )
    await pool.open(wait=True, timeout=30)
    db = Database(pool)
    app[keys.DB] = db
    app[keys.QUEUE] = TaskQueue(
        db,
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
        claim_limit=settings.claim_limit,
    )
    app[keys.DISPATCHER] = Dispatcher(
        app[keys.QUEUE],
        wakeup=settings.long_poll_wakeup,
        batch_max=settings.claim_batch_max,
        interval=settings.long_poll_interval,
        per_host=settings.long_polls_per_host,
    )
    agents, events = AgentStore(db), EventStore(db)
    sealer = Sealer(load_key(settings.secrets_key, settings.state_dir))
    app[keys.PRESENCE] = Presence(agents, app[keys.QUEUE], flush_interval=settings.presence_flush_interval)
    app[keys.REPORTS] = ReportBatcher(app[keys.QUEUE])
    app[keys.AGENTS] = AgentService(
        db,
        agents,
        app[keys.QUEUE],
        events,
        app[keys.PRESENCE],
        app[keys.DISPATCHER],
        sealer,
        bind_namespaces=agent_tokens_required(settings),
    )
    app[keys.DESTINATIONS] = DestinationService(db, DestinationStore(db), events, sealer)
    app[keys.DEPLOYMENTS] = DeploymentService(
        db, DeploymentStore(db), agents, app[keys.QUEUE], events, generator_for(app), app[keys.DESTINATIONS]
    )
    app[keys.TOKENS] = AgentTokens(
        TokenStore(db),
        settings.agent_token_cache_seconds,
        enrolment_expires=settings.enrolment_expires(),
        enrolment_max_hosts=settings.agent_token_max_hosts,
    )
    dispatcher, presence, reports = app[keys.DISPATCHER], app[keys.PRESENCE], app[keys.REPORTS]
    app[METRICS].process.source = lambda: {
        "phoenix_long_poll_claim_statements": dispatcher.claims,
        "phoenix_long_poll_claims_skipped": dispatcher.skipped,
        "phoenix_report_statements": reports.statements,
        "phoenix_presence_flushes": presence.flushes,
    }
    yield
    await app[keys.PRESENCE].flush()
    await pool.close()


async def _background(app: web.Application) -> AsyncIterator[None]:
    """The LISTEN loop, the lease reaper, the failed-rollout watcher, retention and compaction; cancelled
    and awaited on exit."""
    dispatcher, settings = app[keys.DISPATCHER], app[keys.SETTINGS]
    watch = functools.partial(rollouts.fail_failing, app[keys.DEPLOYMENTS])
    listener = Listener(settings.direct_database_url or app[keys.DATABASE_URL], dispatcher, app[keys.HUB])
    app[keys.LISTENER] = listener
    tasks = [
        asyncio.create_task(listener.run(), name="listener"),
        asyncio.create_task(dispatcher.run(), name="dispatcher"),
        asyncio.create_task(app[keys.PRESENCE].run(), name="presence"),
        asyncio.create_task(app[keys.REPORTS].run(), name="reports"),
        asyncio.create_task(_reaper(app[keys.DB], app[keys.QUEUE], settings, app[METRICS]), name="reaper"),
        asyncio.create_task(
            every(
                settings.deployment_watch_interval,
                "deployment_watch",
                watch,
                app[METRICS].passes.labels("deployment_watch").inc,
            ),
            name="rollouts",
        ),
        asyncio.create_task(
            retention.run(RetentionStore(app[keys.DB]), settings, app[METRICS]), name="retention"
        ),
        asyncio.create_task(compaction.run(ExperimentStore(app[keys.DB]), settings), name="compaction"),
    ]
    app[keys.BACKGROUND] = tasks
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(listener.connected.wait(), timeout=10)
    yield
    for task in app[keys.BACKGROUND]:
        task.cancel()
    for task in app[keys.BACKGROUND]:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _reaper(db: Database, queue: TaskQueue, settings: Settings, metrics: ApiMetrics) -> None:
    """Take back the tasks of agents that went quiet; after an outage, renew every lease first."""
    clock = asyncio.get_running_loop().time
    last_contact = clock()

    async def one_pass() -> None:
        nonlocal last_contact
        await db.ping()
        unreachable = clock() - last_contact
        last_contact = clock()
        if unreachable > settings.reap_interval * 1.2 + OUTAGE_SECONDS:
            # The database was out of reach (or this process stalled), so agents could not renew
            # their leases either: renew them all before reaping, rather than requeue work in hand.
            renewed = await queue.renew_leases()
            log.warning(
                "leases_renewed_after_outage", unreachable_seconds=round(unreachable, 1), tasks=renewed
            )
        for row in await queue.reap():
            metrics.leases_expired.labels("failed" if row["status"] == "failed" else "requeued").inc()

    await every(settings.reap_interval, "reaper", one_pass)


async def _http_client(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as session:
        app[keys.HTTP] = session
        yield


async def health(request: web.Request) -> web.Response:
    """200 when the database answers, 503 otherwise."""
    try:
        await asyncio.wait_for(request.app[keys.DB].ping(), timeout=3)
    except Exception as exc:
        raise Unavailable(f"database is unreachable: {type(exc).__name__}") from None
    listening = request.app[keys.LISTENER].connected.is_set()
    return respond({"status": "ok", "database": "ok", "listener": "ok" if listening else "reconnecting"})


def create_app(settings: Settings, database_url: str) -> web.Application:
    """Build the API for an already resolved database URL."""
    app = web.Application(
        middlewares=[
            metrics_middleware,
            problem_middleware,
            guard_middleware(
                bind_host=settings.host,
                allowed_hosts=settings.allowed_hosts,
                allowed_origins=settings.allowed_origins,
            ),
            auth_middleware,
        ],
        client_max_size=settings.max_body_bytes,
    )
    app[keys.SETTINGS] = settings
    app[keys.DATABASE_URL] = database_url
    app[keys.HUB] = EventHub()
    registry = CollectorRegistry()
    app[keys.REGISTRY] = registry
    app[METRICS] = ApiMetrics(registry)
    app[METRICS].long_polls.set_function(lambda: len(app[keys.DISPATCHER]) if keys.DISPATCHER in app else 0)
    app.cleanup_ctx.extend([_http_client, _database, _background, experiments.driver_ctx])
    hooks: list[MetricHook] = [experiments.experiment_metrics]
    app[METRIC_HOOKS] = hooks
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics_handler)
    app.add_routes(agent_api.routes)
    app.add_routes(deployments.routes)
    app.add_routes(destinations.routes)
    app.add_routes(fleet.routes)
    app.add_routes(tokens.routes)
    app.add_routes(experiments.routes)
    app.add_routes(cost.routes)
    app.add_routes(ws.routes)
    app.add_routes(openapi.routes)
    app[ws.SOCKETS] = set()
    app.on_shutdown.append(ws.close_all)
    dashboard.setup(app)
    return app
