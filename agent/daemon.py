"""The agent loop: heartbeat, long-poll for tasks, hand them to the handlers, report, shut down cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
import socket
from typing import Any

import aiohttp
import psutil
import structlog

from agent import __version__
from agent.client import ApiRejected, ApiUnavailable, ControlPlaneClient, Reporter
from agent.collector import Collector
from agent.config import AgentSettings
from agent.loops import supervised
from agent.state import Outbox, StateDir, atomic_write, read_text
from agent.supervisor import Supervisor, make_supervisor
from agent.tasks import TaskHandlers
from agent.timing import jittered

log = structlog.get_logger("phoenix.agent")

# On shutdown, how long queued reports may take to reach a reachable control plane; the rest stay in
# the outbox for the next start.
FLUSH_SECONDS = 5.0
TOKEN_FILE = "agent_token"


def host_facts() -> dict[str, Any]:
    """What the control plane shows about the host."""
    return {
        "hostname": socket.gethostname(),
        "os": platform.platform(),
        "cpus": os.cpu_count() or 1,
        "memory_bytes": psutil.virtual_memory().total,
        "boot_time": psutil.boot_time(),
    }


class Agent:
    """One host agent: owns the HTTP session, the collector supervisor, the outbox and the task handlers."""

    def __init__(self, settings: AgentSettings, *, supervisor: Supervisor | None = None) -> None:
        self.settings = settings
        self.state = StateDir(settings.state_dir)
        c = settings.collector
        self.supervisor = supervisor or make_supervisor(
            c.supervisor,
            binary=c.binary,
            config_path=c.config_path,
            systemctl=c.systemctl,
            unit=c.unit,
            backoff_initial=c.restart_backoff_initial,
            backoff_max=c.restart_backoff_max,
        )
        self.poll_wait = settings.poll_interval
        self.handlers: TaskHandlers | None = None
        self._facts: dict[str, Any] | None = None
        self._current: asyncio.Task[None] | None = None

    def _stored_token(self) -> str | None:
        text = read_text(self.state.root / TOKEN_FILE)
        return text.strip() if text and text.strip() else None

    def _store_token(self, token: str) -> None:
        atomic_write(self.state.root / TOKEN_FILE, token, mode=0o600)

    def _drop_stored_token(self) -> None:
        """The configured token works and the stored one was refused: do not try the stored one again."""
        (self.state.root / TOKEN_FILE).unlink(missing_ok=True)

    async def heartbeat_body(self, handlers: TaskHandlers) -> dict[str, Any]:
        if self._facts is None:
            self._facts = host_facts()
        return {
            "version": __version__,
            "namespace": self.settings.namespace,
            "labels": dict(self.settings.labels),
            "collector": await handlers.sampler.collector_report(),
            "facts": self._facts,
            "running_tasks": handlers.running_task_ids(),
        }

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set, then shut down without losing a report."""
        settings = self.settings
        structlog.contextvars.bind_contextvars(host_id=settings.host_id)
        self.state.ensure()
        if shutil.which(settings.collector.binary) is None:
            log.error("collector_binary_missing", binary=settings.collector.binary)
        outbox = Outbox(self.state.outbox_dir)
        async with aiohttp.ClientSession() as session:
            client = ControlPlaneClient(
                session,
                settings.api_url,
                settings.host_id,
                settings.token,
                stored_token=self._stored_token(),
                backoff_max=settings.backoff_max,
                on_token=self._store_token,
                on_stored_token_dropped=self._drop_stored_token,
            )
            reporter = Reporter(client, outbox)
            collector = Collector(settings.collector, self.supervisor, self.state, session)
            handlers = TaskHandlers(state=self.state, collector=collector, session=session, reporter=reporter)
            self.handlers = handlers
            await collector.start()
            await handlers.recover()
            await handlers.refreshers.resume()
            log.info(
                "agent_started",
                version=__version__,
                api_url=settings.api_url,
                pending_reports=len(outbox),
                supervisor=settings.collector.supervisor,
            )
            background: list[asyncio.Task[Any]] = [
                asyncio.create_task(
                    supervised("reporter", reporter.run, cap=settings.backoff_max), name="reporter"
                )
            ]
            main = asyncio.create_task(self._main(client, handlers), name="agent-main")
            stopper = asyncio.create_task(stop.wait(), name="stop")
            try:
                done, _ = await asyncio.wait({main, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if main in done and main.exception() is not None:
                    # The loop never ends by itself: this is a bug; stop cleanly, then show it.
                    log.error("agent_loop_crashed", error=repr(main.exception()))
                    main.result()
            finally:
                log.info("agent_stopping")
                stopper.cancel()
                await self._stop_main(main)
                await handlers.shutdown()
                delivered = await reporter.flush(FLUSH_SECONDS)
                if not delivered:
                    log.warning("reports_kept_for_next_start", pending=len(outbox))
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
                if self.supervisor.owns_process:
                    await self.supervisor.stop()
                log.info("agent_stopped")

    async def _stop_main(self, main: asyncio.Task[None]) -> None:
        """Cancel polling; a task being handled finishes first, so no config is left half-applied."""
        current = self._current
        main.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await main
        if current is not None and not current.done():
            with contextlib.suppress(Exception):
                await current

    async def _main(self, client: ControlPlaneClient, handlers: TaskHandlers) -> None:
        """Heartbeat first (so namespace and labels are known), then poll and heartbeat on their schedules."""
        while True:
            try:
                answer = await client.with_backoff(
                    "heartbeat", lambda: self._heartbeat_once(client, handlers)
                )
                break
            except ApiRejected as exc:
                # The control plane refuses what we say about ourselves: keep trying, loudly, at the cap.
                log.error("heartbeat_rejected", status=exc.status, detail=exc.detail)
                await asyncio.sleep(jittered(client.backoff_max))
        self._adopt(answer)
        cap = client.backoff_max
        loops = [
            asyncio.create_task(
                supervised("heartbeat", lambda: self._heartbeat_loop(client, handlers), cap=cap),
                name="heartbeat",
            )
        ]
        if self.settings.emission_interval > 0:
            loops.append(
                asyncio.create_task(
                    supervised("emissions", lambda: self._emission_loop(client, handlers), cap=cap),
                    name="emissions",
                )
            )
        try:
            await supervised("poll", lambda: self._poll_loop(client, handlers), cap=cap)
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _heartbeat_once(self, client: ControlPlaneClient, handlers: TaskHandlers) -> dict[str, Any]:
        return await client.heartbeat(await self.heartbeat_body(handlers))

    def _adopt(self, answer: dict[str, Any]) -> None:
        """Follow the control plane's suggested long-poll wait if it is shorter than ours."""
        suggested = answer.get("poll_wait_seconds")
        if isinstance(suggested, int | float) and not isinstance(suggested, bool) and suggested >= 1:
            self.poll_wait = min(self.settings.poll_interval, float(suggested))

    async def _heartbeat_loop(self, client: ControlPlaneClient, handlers: TaskHandlers) -> None:
        while True:
            await asyncio.sleep(jittered(self.settings.heartbeat_interval))
            try:
                self._adopt(await self._heartbeat_once(client, handlers))
            except (ApiUnavailable, ApiRejected) as exc:
                # The poll loop backs off on its own; a missed heartbeat is retried on schedule.
                log.warning("heartbeat_failed", error=str(exc))

    async def _emission_loop(self, client: ControlPlaneClient, handlers: TaskHandlers) -> None:
        """Tell the control plane what the running pipelines emit now (its cost view); a missed report
        is not retried, the next one supersedes it."""
        while True:
            await asyncio.sleep(jittered(self.settings.emission_interval))
            if handlers.experiment is not None or not self.collector_configured():
                continue
            try:
                pipelines = await handlers.sample_pipelines()
                samples = [s for s in pipelines.values() if "error" not in s]
                if samples:
                    await client.post("/measurements", {"samples": samples})
                    log.debug("emissions_reported", pipelines=len(samples))
            except (ApiUnavailable, ApiRejected) as exc:
                log.info("emissions_not_reported", error=str(exc))
            except Exception as exc:
                log.warning("emissions_failed", error=f"{type(exc).__name__}: {exc}")

    def collector_configured(self) -> bool:
        return self.settings.collector.config_path.exists()

    async def _poll_loop(self, client: ControlPlaneClient, handlers: TaskHandlers) -> None:
        while True:
            try:
                tasks = await client.with_backoff("poll", lambda: client.poll_tasks(self.poll_wait))
            except ApiRejected as exc:
                # A 4xx on the poll is a bug or a misconfiguration; keep trying at the backoff cap.
                log.error("poll_rejected", status=exc.status, detail=exc.detail)
                await asyncio.sleep(jittered(client.backoff_max))
                continue
            handlers.accept(tasks)
            for task in tasks:
                # Shielded: stopping the agent lets the current task finish (see _stop_main).
                self._current = asyncio.create_task(handlers.execute(task))
                await asyncio.shield(self._current)
