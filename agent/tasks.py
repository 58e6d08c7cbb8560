"""Task dispatch: one handler per type/action, the tasks in flight, and the outcome of each reported."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import structlog

from agent import apply
from agent.client import Reporter
from agent.collector import ApplyError, Collector, one_line, sha256_text
from agent.experiment import Experiment, recover
from agent.export import ExportWatch
from agent.keeprefresh import Refreshers
from agent.payloads import Deployment, ExperimentPlan, TaskError, check
from agent.sampling import Sampler
from agent.state import StateDir
from phoenix_common import wire

log = structlog.get_logger("phoenix.agent.tasks")

Handler = Callable[[str, Any], Awaitable[dict[str, Any]]]


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _failure(exc: Exception) -> str:
    """The one-line reason a task failed with."""
    if isinstance(exc, TaskError | ApplyError):
        return one_line(str(exc))
    return one_line(f"agent error: {type(exc).__name__}: {exc}")


class TaskHandlers:
    """Runs tasks one at a time (an experiment in the background) and reports each through the outbox."""

    def __init__(
        self,
        *,
        state: StateDir,
        collector: Collector,
        session: aiohttp.ClientSession,
        reporter: Reporter,
    ) -> None:
        self.state = state
        self.collector = collector
        self.session = session
        self.reporter = reporter
        self.refreshers = Refreshers(collector, session, state)
        self.export = ExportWatch(session)
        self.sampler = Sampler(collector, state, session, self.export)
        # AgentSettings.validate fills it in; collector settings used on their own keep it in the state dir.
        self.queue_dir = collector.settings.queue_dir or state.root / "queue"
        self.experiment: Experiment | None = None
        self.in_flight: dict[str, str] = {}  # task id -> "type/action"
        self.queued: set[str] = set()
        self._table: dict[tuple[str, str], Handler] = {
            ("deployment", "apply"): self.deployment_apply,
            ("experiment", "stop"): self.experiment_stop,
            ("metrics", "collect"): self.metrics_collect,
            ("health", "check"): self.health_check,
        }

    def accept(self, tasks: Sequence[Any]) -> None:
        """Note a delivered batch, so that heartbeats keep the leases of tasks still waiting their turn."""
        for task in tasks:
            task_id = task.get("id") if isinstance(task, dict) else None
            if isinstance(task_id, str) and task_id:
                self.queued.add(task_id)

    def running_task_ids(self) -> list[str]:
        """Tasks this agent holds: being handled, or delivered and waiting (task ids are UUIDs)."""
        return sorted(t for t in self.queued | set(self.in_flight) if _is_uuid(t))

    async def execute(self, task: Any) -> None:
        """Handle one delivered task; whatever it holds, it ends reported (never raises)."""
        task_id = task.get("id") if isinstance(task, dict) else None
        if not isinstance(task_id, str) or not task_id:
            log.error("task_without_id", task=str(task)[:200])
            return
        self.queued.discard(task_id)
        with structlog.contextvars.bound_contextvars(task_id=task_id):
            if task_id in self.in_flight:
                log.info("task_already_running")
                return
            kind = f"{task.get('type')}/{task.get('action')}"
            self.in_flight[task_id] = kind
            log.info("task_received", kind=kind)
            # JSON null means no payload.
            payload = {} if task.get("payload") is None else task["payload"]
            try:
                if (task.get("type"), task.get("action")) == ("experiment", "start"):
                    # Reported running once both pipelines run: the control plane's warm-up starts then.
                    self._start_experiment(task_id, payload)
                    return
                self.reporter.status(task_id, "running")
                handler = self._table.get((task.get("type"), task.get("action")))
                if handler is None:
                    raise TaskError(
                        f"unknown task type/action {str(task.get('type'))[:40]}/"
                        f"{str(task.get('action'))[:40]}"
                    )
                result = await handler(task_id, payload)
            except Exception as exc:
                if not isinstance(exc, TaskError | ApplyError):
                    log.exception("task_crashed")
                self._finish(task_id, "failed", error=_failure(exc))
            else:
                self._finish(task_id, "completed", result=result)

    def _finish(
        self, task_id: str, status: str, *, result: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        self.reporter.status(task_id, status, result=result, error=error)
        self.in_flight.pop(task_id, None)
        log.info("task_finished", task_id=task_id, status=status, error=error)

    async def deployment_apply(self, task_id: str, payload: Any) -> dict[str, Any]:
        if self.experiment is not None:
            raise TaskError(
                f"experiment {self.experiment.plan.experiment_id} is running on this host; "
                "stop it before applying a deployment"
            )
        deployment = Deployment.parse(payload, self.state, self.queue_dir)
        return await apply.apply_deployment(
            self.collector, self.state, self.refreshers, deployment, self.export
        )

    def _start_experiment(self, task_id: str, payload: Any) -> None:
        if self.experiment is not None:
            raise TaskError(
                f"experiment {self.experiment.plan.experiment_id} is already running on this host"
            )
        experiment = Experiment(
            ExperimentPlan.parse(payload, self.state, self.queue_dir),
            task_id,
            collector=self.collector,
            state=self.state,
            session=self.session,
            refreshers=self.refreshers,
            reporter=self.reporter,
        )
        self.experiment = experiment
        experiment.task = asyncio.create_task(self._run_experiment(experiment), name=f"experiment-{task_id}")

    async def _run_experiment(self, experiment: Experiment) -> None:
        task_id = experiment.task_id
        with structlog.contextvars.bound_contextvars(
            task_id=task_id, experiment_id=experiment.plan.experiment_id
        ):
            log.info("experiment_started")
            try:
                result = await experiment.run()
            except asyncio.CancelledError:
                if experiment.stop_requested:
                    self._finish(task_id, "completed", result=experiment.summary())
                else:
                    self._finish(
                        task_id,
                        "failed",
                        error="the agent stopped during the experiment; "
                        f"previous config restored ({experiment.restore_error or 'ok'})",
                    )
            except Exception as exc:
                if not isinstance(exc, TaskError | ApplyError):
                    log.exception("experiment_crashed")
                self._finish(task_id, "failed", error=_failure(exc))
            else:
                self._finish(task_id, "completed", result=result)
            finally:
                self.experiment = None

    async def recover(self) -> None:
        """At start: undo an experiment the agent was running when it stopped (see experiment.recover)."""
        await recover(self.collector, self.state, self.refreshers, self.reporter)

    async def experiment_stop(self, task_id: str, payload: Any) -> dict[str, Any]:
        experiment_id = check(wire.ExperimentStop, payload).experiment_id
        running = self.experiment
        if running is None or running.plan.experiment_id != experiment_id:
            record = self.state.load_applied()
            current = self.collector.current_text()
            return {
                "restored_config_hash": record.get("config_hash")
                or (sha256_text(current) if current else None),
                "detail": f"experiment {experiment_id} is not running on this host",
            }
        await self.cancel_experiment(operator=True)
        return {"restored_config_hash": running.restored_hash, "experiment_id": experiment_id}

    async def cancel_experiment(self, *, operator: bool) -> None:
        """Stop the running experiment and wait until the previous config is back."""
        running = self.experiment
        if running is None or running.task is None:
            return
        running.stop_requested = operator
        running.task.cancel()
        await asyncio.wait([running.task])

    async def metrics_collect(self, task_id: str, payload: Any) -> dict[str, Any]:
        check(wire.NoPayload, payload)
        return {"pipelines": await self.sample_pipelines()}

    async def sample_pipelines(self) -> dict[str, Any]:
        """One Sample per pipeline the collector runs now, with what the keep lists hold."""
        kept = self.refreshers.kept()
        critical: Sequence[str] = ()
        if self.experiment is not None:
            critical = self.experiment.plan.critical
            kept.update(self.experiment.kept())
        return await self.sampler.pipelines(kept, critical)

    async def health_check(self, task_id: str, payload: Any) -> dict[str, Any]:
        check(wire.NoPayload, payload)
        report = await self.sampler.collector_report()
        url = self.collector.health_url()
        if url is not None:
            probe = await self.collector.probe(url)
            report["health_endpoint"] = {"url": url, "ok": probe.ok, "detail": probe.detail}
        return {"collector": report}

    async def shutdown(self) -> None:
        """Stop the experiment (restoring the previous config) and the keep-list refreshers."""
        await self.cancel_experiment(operator=False)
        await self.refreshers.suspend()
