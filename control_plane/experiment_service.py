"""Experiments as operations: create, start, stop, promote, roll back and record measurements."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog

from control_plane.analysis import Analyzer
from control_plane.db import Database, Tx
from control_plane.generator_client import GeneratorClient
from control_plane.phases import ACTIVE, FINAL, Phase, check
from control_plane.pricing import Prices
from control_plane.queue import TaskQueue
from control_plane.services.deployments import DeploymentService
from control_plane.services.destinations import Target
from control_plane.settings import Settings
from control_plane.stores.events import EventStore
from control_plane.stores.experiments import ExperimentStore, Row
from phoenix_common import wire
from phoenix_common.problems import BadGateway, Conflict, NotFound, Problem

log = structlog.get_logger("phoenix.experiments")

STOP_PRIORITY = 20
START_PRIORITY = 15
# The control plane ends a run with a stop task; the agent's own limit is only a safety net this much later.
AGENT_LIMIT_MARGIN_SECONDS = 120


class ExperimentService:
    """Every change to an experiment, on its store, the task queue, the generator and the deployments."""

    def __init__(
        self,
        db: Database,
        store: ExperimentStore,
        events: EventStore,
        queue: TaskQueue,
        generator: GeneratorClient,
        deployments: DeploymentService,
        settings: Settings,
    ):
        self.db = db
        self.store = store
        self.events = events
        self.queue = queue
        self.generator = generator
        # Promote and rollback go through the normal deployment path, keeping each namespace's destination.
        self.deployments = deployments
        self.ack_timeout = settings.experiment_ack_timeout
        # Only hosts seen more recently than this (not offline) are sent an experiment.
        self.offline_after = settings.offline_after
        self.prices = Prices(
            settings.price_per_series_month, settings.price_per_million_datapoints, settings.price_model
        )
        # Set when an experiment may have something to advance; the driver waits on it.
        self.wake = asyncio.Event()
        # Provisional analyses by experiment: (monotonic expiry, result), and those being computed.
        self.cache_seconds = settings.analysis_cache_seconds
        self._provisional: dict[str, tuple[float, dict[str, Any]]] = {}
        self._computing: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def get(self, experiment_id: str) -> Row:
        row = await self.store.get(experiment_id)
        if row is None:
            raise NotFound(f"experiment {experiment_id!r} does not exist")
        return row

    async def move(self, tx: Tx, row: Row, phase: Phase, reason: str) -> None:
        """Move an experiment to `phase` if the phase table allows it, recording the event and reason."""
        check(row["phase"], phase)
        await self.store.set_phase(row["id"], phase, reason, tx)
        await self._event(
            tx, "experiment_phase", row["id"], reason, {"from": row["phase"], "to": phase, "phase": phase}
        )
        log.info(
            "experiment_phase",
            experiment_id=row["id"],
            from_phase=row["phase"],
            to_phase=phase,
            reason=reason,
        )
        row["phase"] = phase

    async def recall(self, tx: Tx, experiment_id: str, reason: str) -> int:
        """Cancel undelivered starts and tell every host that got the experiment to restore its config."""
        await self.queue.cancel_experiment_starts(experiment_id, reason, tx)
        hosts = await self.store.hosts_started(experiment_id, tx)
        if hosts:
            await self.queue.enqueue_hosts(
                tx,
                hosts,
                type="experiment",
                action="stop",
                payload={"experiment_id": experiment_id, "reason": reason},
                priority=STOP_PRIORITY,
                experiment_id=experiment_id,
            )
        return len(hosts)

    async def create(self, experiment_id: str, spec: dict[str, Any], start: bool) -> tuple[Row, str | None]:
        """Record a validated spec and, if asked, start it; a failed start leaves it pending, saying why."""
        if spec.get("candidate_destination"):
            # 404 when unknown
            await self.deployments.destinations.target(
                spec["candidate_destination"], field="candidate_destination"
            )
        async with self.db.transaction() as tx:
            await self.store.insert(experiment_id, spec["name"], spec, tx)
            await self._event(
                tx,
                "experiment_created",
                experiment_id,
                "created",
                {"phase": Phase.PENDING, "name": spec["name"]},
            )
        start_error = None
        if start:
            try:
                await self.start(experiment_id)
            except Problem as exc:
                # Kept pending: the operator can fix the cause and POST .../start.
                start_error = exc.detail
        return await self.get(experiment_id), start_error

    async def start(self, experiment_id: str) -> Row:
        """Render both pipelines through the generator and send the experiment to every target host."""
        row = await self.get(experiment_id)
        _must_be_pending(row)
        spec = row["spec"]
        hosts = await self.store.target_hosts(
            spec["target_namespaces"], spec["target_hosts"], self.offline_after
        )
        if not hosts:
            raise Conflict(
                f"experiment {experiment_id} has no agents seen in the last {self.offline_after:g}s in its "
                f"targets (namespaces {spec['target_namespaces']}, hosts {spec['target_hosts']})"
            )
        targets = await self._destinations(experiment_id, hosts, spec.get("candidate_destination"))
        generated = await self.generator.generate(
            experiment_id, spec, {role: t.spec for role, t in targets.items()}
        )
        secret_files = {
            path: sealed
            for role, target in targets.items()
            for path, sealed in target.secret_files(generated.get(role) or {}).items()
        }
        try:
            payload = wire.check(
                wire.ExperimentStart,
                {
                    "experiment_id": experiment_id,
                    "duration_seconds": min(
                        spec["duration_seconds"] + self.ack_timeout + AGENT_LIMIT_MARGIN_SECONDS,
                        wire.MAX_EXPERIMENT_SECONDS,
                    ),
                    "warmup_seconds": spec["warmup_seconds"],
                    "billing_window_seconds": spec.get("billing_window_seconds", wire.DEFAULT_BILLING_WINDOW),
                    "overhead_probe_seconds": spec.get("overhead_probe_seconds", 0.0),
                    "sample_interval_seconds": spec["sample_interval_seconds"],
                    "critical_processes": spec["critical_processes"],
                    "load_profile": spec["load_profile"],
                    "baseline": generated.get("baseline"),
                    "candidate": generated.get("candidate"),
                },
                root="generated",
            )
            # Sealed here; the API opens them only in the long-poll answer to each host (services/agents.py).
            payload_json = {**wire.to_json(payload), "secret_files": secret_files}
        except wire.WireError as exc:
            raise BadGateway(
                f"config generator returned an experiment the agents cannot run: {exc}"
            ) from None
        async with self.db.transaction() as tx:
            locked = await self.store.lock(experiment_id, tx)
            assert locked is not None
            _must_be_pending(locked)
            rendered = {
                v: {k: generated[v].get(k) for k in ("template", "config_hash", "prometheus_endpoint")}
                for v in ("baseline", "candidate")
            }
            await self.store.set_hosts(experiment_id, hosts, rendered, tx)
            await self.queue.enqueue_hosts(
                tx,
                hosts,
                type="experiment",
                action="start",
                payload=payload_json,
                priority=START_PRIORITY,
                experiment_id=experiment_id,
                max_attempts=1,
            )
            await self.move(tx, locked, Phase.DEPLOYING, f"experiment sent to {len(hosts)} host(s)")
        self.wake.set()
        return await self.get(experiment_id)

    async def _destinations(
        self, experiment_id: str, hosts: list[str], candidate: str | None
    ) -> dict[str, Target]:
        """Where each variant ships: the baseline where the hosts' namespaces ship now (one destination
        for all of them), the candidate only to its own destination."""
        current = await self.deployments.deployments.destinations_of_hosts(hosts)
        if len(current) > 1:
            shown = ", ".join(sorted(str(d) if d else "nowhere" for d in current))
            raise Conflict(
                f"experiment {experiment_id}: its hosts' namespaces ship to different destinations "
                f"({shown}); run one experiment per destination"
            )
        out: dict[str, Target] = {}
        if current and current[0]:
            out["baseline"] = await self.deployments.destinations.target(current[0])
        if candidate:
            out["candidate"] = await self.deployments.destinations.target(
                candidate, field="candidate_destination"
            )
        return out

    async def stop(self, experiment_id: str, reason: str) -> Row:
        async with self.db.transaction() as tx:
            row = await self.store.lock(experiment_id, tx)
            if row is None:
                raise NotFound(f"experiment {experiment_id!r} does not exist")
            if row["phase"] == Phase.STOPPED:
                return row
            if row["phase"] in FINAL:
                raise Conflict(
                    f"experiment {experiment_id} is already {row['phase']}; there is nothing to stop"
                )
            hosts = await self.recall(tx, experiment_id, reason)
            await self.move(tx, row, Phase.STOPPED, f"{reason}; restoring {hosts} host(s)")
        return await self.get(experiment_id)

    async def promote(self, experiment_id: str, force: bool) -> list[dict[str, Any]]:
        """Deploy the candidate to the target namespaces through the normal deployment path.

        The experiment row stays locked from the checks until the promotion is recorded, so a second
        promote (a double click, two operators) waits, then finds it promoted: never two deployments.
        """
        async with self.db.transaction() as tx:
            row = await self.store.lock(experiment_id, tx)
            if row is None:
                raise NotFound(f"experiment {experiment_id!r} does not exist")
            return await self._promote(row, force, tx)

    async def _promote(self, row: Row, force: bool, tx: Tx) -> list[dict[str, Any]]:
        experiment_id = row["id"]
        if row["phase"] != Phase.COMPLETED:
            raise Conflict(
                f"experiment {experiment_id} is {row['phase']}; only a completed experiment can be promoted"
            )
        analysis = row["analysis"] or {}
        verdict = analysis.get("verdict")
        if verdict != "promote" and not force:
            raise Conflict(
                f"experiment {experiment_id}'s verdict is {verdict}; "
                'pass {"force": true} to promote anyway'
            )
        if analysis.get("extrapolated") and not force:
            why = "; ".join(analysis.get("extrapolated_reasons") or []) or "less than one billing window"
            raise Conflict(
                f"experiment {experiment_id}'s analysis is extrapolated ({why}), so its billed figures are "
                'not measured over a full billing window; pass {"force": true} to promote anyway',
                reason="extrapolated",
            )
        if row["promoted_deployments"] and not row["rolled_back_at"]:
            raise Conflict(
                f"experiment {experiment_id} is already promoted: {', '.join(row['promoted_deployments'])}"
            )
        spec = row["spec"]
        if not spec["target_namespaces"]:
            raise Conflict("promotion deploys to namespaces; this experiment targeted hosts only")
        params = {**spec["parameters"].get("candidate", {})}
        if spec["critical_processes"] and await self.generator.takes(
            spec["candidate_pipeline"], "critical_processes"
        ):
            params.setdefault("critical_processes", spec["critical_processes"])
        return await self._deploy_everywhere(
            row,
            spec["candidate_pipeline"],
            params,
            name=f"{row['name']} (promoted)",
            reason=f"promoted from experiment {experiment_id}",
            mark=self.store.add_promoted,
            kind="experiment_promoted",
            why="promoted by operator",
            tx=tx,
        )

    async def rollback(self, experiment_id: str) -> list[dict[str, Any]]:
        """Put the baseline pipeline back on every target namespace (stopping the run if it is active)."""
        row = await self.get(experiment_id)
        if row["phase"] in ACTIVE:
            await self.stop(experiment_id, "rolled back by operator")
        elif row["phase"] == Phase.PENDING:
            raise Conflict(f"experiment {experiment_id} never started; there is nothing to roll back")
        spec = row["spec"]
        return await self._deploy_everywhere(
            row,
            spec["baseline_pipeline"],
            spec["parameters"].get("baseline", {}),
            name=f"{row['name']} (baseline restored)",
            reason=f"rollback of experiment {experiment_id}",
            mark=self.store.mark_rolled_back,
            kind="experiment_rolled_back",
            why="rolled back by operator",
        )

    async def _deploy_everywhere(
        self,
        row: Row,
        template: str,
        params: dict[str, Any],
        *,
        name: str,
        reason: str,
        mark: Callable[[str, list[str], Tx], Awaitable[None]],
        kind: str,
        why: str,
        tx: Tx | None = None,
    ) -> list[dict[str, Any]]:
        """Deploy `template` to every target namespace of the experiment (each keeping its destination)
        and record it on the experiment (in `tx` when given, else a transaction of its own)."""
        created = [
            await self.deployments.ship(
                name=name,
                namespace=ns,
                template=template,
                parameters=params,
                experiment_id=row["id"],
                reason=reason,
            )
            for ns in row["spec"]["target_namespaces"]
        ]
        ids = [c["id"] for c in created]
        if tx is not None:
            await self._record(tx, row["id"], ids, mark, kind, why)
            return created
        async with self.db.transaction() as own:
            await self._record(own, row["id"], ids, mark, kind, why)
        return created

    async def _record(
        self,
        tx: Tx,
        experiment_id: str,
        ids: list[str],
        mark: Callable[[str, list[str], Tx], Awaitable[None]],
        kind: str,
        why: str,
    ) -> None:
        await mark(experiment_id, ids, tx)
        await self._event(tx, kind, experiment_id, why, {"deployments": ids})

    async def _event(
        self, tx: Tx | None, kind: str, experiment_id: str, reason: str | None, data: dict[str, Any]
    ) -> None:
        """Record an event on the experiments topic (inside `tx` when given one)."""
        await self.events.publish(
            "experiments",
            kind,
            experiment_id,
            data={"experiment_id": experiment_id, **data},
            reason=reason,
            tx=tx,
        )

    async def detail(self, experiment_id: str) -> tuple[Row, list[Row], list[Row]]:
        """The experiment, its hosts' start-task states and each host's and arm's latest sample."""
        row = await self.get(experiment_id)
        return (
            row,
            await self.store.task_states(experiment_id),
            await self.store.latest_samples(experiment_id),
        )

    async def host_rows(self, row: Row, tx: Tx | None = None) -> AsyncIterator[tuple[str, list[Row]]]:
        """Each host's measurement rows in time order, one host at a time (bounded memory)."""
        for host in sorted(row["hosts"]):
            rows = await self.store.host_measurements(row["id"], host, tx)
            if rows:
                yield host, rows

    async def analyze(
        self,
        row: Row,
        tx: Tx | None = None,
        window: tuple[Any, Any] | None = None,
        overheads: dict[str, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The analysis of an experiment's stored measurements, read and analysed host by host.

        Off the event loop: a long run's analysis must not stall every other request of this replica.
        """
        analyzer = Analyzer(
            spec={**row["spec"], "id": row["id"]}, prices=self.prices, window=window, overheads=overheads
        )
        async for host, rows in self.host_rows(row, tx):
            await asyncio.to_thread(analyzer.add_host, host, rows)
        return await asyncio.to_thread(analyzer.result)

    async def analysis(self, experiment_id: str) -> tuple[Row, dict[str, Any], bool]:
        """The experiment, its analysis and whether that is final (else what has been measured so far).

        A provisional analysis is computed once for all the requests that want it at the same time and
        reused for analysis_cache_seconds, or ten times as long as it took when that is longer: a
        dashboard re-reading a week-long run must not keep a core busy re-analysing it.
        """
        row = await self.get(experiment_id)
        if row["analysis"] is not None:
            self._provisional.pop(experiment_id, None)
            return row, row["analysis"], True
        now = time.monotonic()
        self._provisional = {k: v for k, v in self._provisional.items() if v[0] > now}
        cached = self._provisional.get(experiment_id)
        if cached is not None:
            return row, cached[1], False
        computing = self._computing.get(experiment_id)
        if computing is None:
            computing = asyncio.ensure_future(self._provisional_analysis(row))
            self._computing[experiment_id] = computing
            computing.add_done_callback(lambda _: self._computing.pop(experiment_id, None))
        # Shielded: one caller going away does not cancel what the others wait for.
        return row, await asyncio.shield(computing), False

    async def _provisional_analysis(self, row: Row) -> dict[str, Any]:
        started = time.monotonic()
        result = await self.analyze(row)
        took = time.monotonic() - started
        self._provisional[row["id"]] = (time.monotonic() + max(self.cache_seconds, 10 * took), result)
        return result

    async def record(self, host_id: str, experiment_id: str | None, samples: list[dict[str, Any]]) -> None:
        """Samples an agent measured for an experiment, or (without one) of what its collector emits now."""
        if experiment_id is None:
            await self.store.upsert_emissions(host_id, list({s["variant"]: s for s in samples}.values()))
            return
        row = await self.get(experiment_id)
        if host_id not in row["hosts"]:
            raise Conflict(f"host {host_id} is not part of experiment {experiment_id}")
        await self.store.insert_measurements(experiment_id, host_id, row["phase"], samples)
        points = [
            {
                "variant": s["variant"],
                "ts": s["ts"],
                "active_series": s["active_series"],
                **{k: s[k] for k in POINT_FIGURES if s.get(k) is not None},
            }
            for s in samples
        ]
        data = {
            "host_id": host_id,
            "phase": row["phase"],
            "points": points[-10:],
            "variant": points[-1]["variant"],
        }
        await self._event(None, "measurement", experiment_id, None, data)


# Measured figures a live `measurement` event carries beside the snapshot, when the agent sent them.
POINT_FIGURES = ("billed_series", "datapoints_per_minute")


def _must_be_pending(row: Row) -> None:
    if row["phase"] != Phase.PENDING:
        raise Conflict(f"experiment {row['id']} is {row['phase']}; only a pending experiment can start")
