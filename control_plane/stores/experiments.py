"""The experiments store: experiments, their measurements and hosts' emission snapshots."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb

from control_plane.db import Database, Tx
from control_plane.phases import ACTIVE, FINAL, Phase

# The timestamp column each phase stamps when an experiment enters it.
STAMPS = {Phase.DEPLOYING: "started_at", Phase.RUNNING: "running_at", Phase.ANALYZING: "analyzing_at"}
Row = dict[str, Any]


class ExperimentStore:
    """Named operations on experiments, experiment_measurements and host_emissions."""

    def __init__(self, db: Database):
        self.db = db

    async def insert(self, experiment_id: str, name: str, spec: dict[str, Any], tx: Tx | None = None) -> None:
        await (tx or self.db).fetch(
            "insert_experiment", {"id": experiment_id, "name": name, "spec": Jsonb(spec)}
        )

    async def get(self, experiment_id: str, tx: Tx | None = None) -> Row | None:
        return await (tx or self.db).fetch_one("get_experiment", {"id": experiment_id})

    async def lock(self, experiment_id: str, tx: Tx) -> Row | None:
        """The row, locked until `tx` ends."""
        return await tx.fetch_one("lock_experiment", {"id": experiment_id})

    async def recent(self, phase: Phase | None, limit: int = 500) -> list[Row]:
        return await self.db.fetch("list_experiments", {"phase": phase, "limit": limit})

    async def claim_active(self, tx: Tx) -> list[Row]:
        """Active experiments no other replica holds, locked until `tx` ends, with seconds_in_phase."""
        return await tx.fetch("claim_active_experiments", {"phases": sorted(ACTIVE)})

    async def set_phase(self, experiment_id: str, phase: Phase, reason: str, tx: Tx) -> None:
        stamp = "finished_at" if phase in FINAL else STAMPS.get(phase)
        await tx.execute(
            "set_experiment_phase", {"id": experiment_id, "phase": phase, "reason": reason, "stamp": stamp}
        )

    async def set_hosts(self, experiment_id: str, hosts: Sequence[str], rendered: Row, tx: Tx) -> None:
        await tx.execute(
            "set_experiment_hosts", {"id": experiment_id, "hosts": list(hosts), "rendered": Jsonb(rendered)}
        )

    async def set_analysis(self, experiment_id: str, analysis: Row, tx: Tx) -> None:
        await tx.execute("set_experiment_analysis", {"id": experiment_id, "analysis": Jsonb(analysis)})

    async def add_promoted(self, experiment_id: str, deployment_ids: Sequence[str], tx: Tx) -> None:
        await tx.execute("set_experiment_promoted", {"id": experiment_id, "ids": list(deployment_ids)})

    async def mark_rolled_back(self, experiment_id: str, deployment_ids: Sequence[str], tx: Tx) -> None:
        await tx.execute("set_experiment_rolled_back", {"id": experiment_id, "ids": list(deployment_ids)})

    async def target_hosts(
        self, namespaces: Sequence[str], hosts: Sequence[str], seen_within: float
    ) -> list[str]:
        """Registered agents in `namespaces` or named in `hosts`, seen within `seen_within` seconds."""
        rows = await self.db.fetch(
            "experiment_target_hosts",
            {"namespaces": list(namespaces), "hosts": list(hosts), "seen_within": seen_within},
        )
        return [r["host_id"] for r in rows]

    async def task_states(self, experiment_id: str, tx: Tx | None = None) -> list[Row]:
        """Per host, the state of the experiment's latest start task."""
        return await (tx or self.db).fetch("experiment_task_states", {"id": experiment_id})

    async def hosts_started(self, experiment_id: str, tx: Tx) -> list[str]:
        """Hosts that received the experiment, and so have a config to restore."""
        return [r["host_id"] for r in await tx.fetch("experiment_hosts_started", {"id": experiment_id})]

    async def insert_measurements(
        self, experiment_id: str, host_id: str, phase: str, samples: Sequence[Row]
    ) -> None:
        await self.db.execute(
            "insert_measurements",
            {"experiment_id": experiment_id, "host_id": host_id, "phase": phase, "samples": Jsonb(samples)},
        )

    async def measurements(self, experiment_id: str, tx: Tx | None = None) -> list[Row]:
        """Every row of the experiment at once (tests and tools; the services read host by host)."""
        return await (tx or self.db).fetch("experiment_measurements", {"id": experiment_id})

    async def host_measurements(self, experiment_id: str, host_id: str, tx: Tx | None = None) -> list[Row]:
        """One host's rows in time order."""
        return await (tx or self.db).fetch(
            "experiment_host_measurements", {"id": experiment_id, "host_id": host_id}
        )

    async def latest_samples(self, experiment_id: str) -> list[Row]:
        """Per host and arm, the headline figures of the sample received last."""
        return await self.db.fetch("experiment_latest_samples", {"id": experiment_id})

    async def to_compact(self, full_seconds: float, slack_seconds: float) -> list[Row]:
        """Experiments (id, hosts) that may hold rows older than `full_seconds` not yet thinned."""
        return await self.db.fetch("experiments_to_compact", {"full": full_seconds, "slack": slack_seconds})

    async def compact(
        self, experiment_id: str, host_id: str, bucket_seconds: float, full_seconds: float
    ) -> tuple[int, int]:
        """Thin one host's rows older than `full_seconds` to one per bucket: (deleted, kept) rows."""
        row = await self.db.fetch_one(
            "compact_measurements",
            {"id": experiment_id, "host_id": host_id, "bucket": bucket_seconds, "full": full_seconds},
        )
        return (int(row["deleted"]), int(row["kept"])) if row else (0, 0)

    async def upsert_emissions(self, host_id: str, samples: Sequence[Row]) -> None:
        """What the host's collector emits now: one row per variant."""
        await self.db.execute("upsert_emission", {"host_id": host_id, "samples": Jsonb(samples)})

    async def current_emissions(self, max_age_seconds: float) -> list[Row]:
        return await self.db.fetch("current_emissions", {"max_age_seconds": max_age_seconds})

    async def latest_completed(self) -> list[Row]:
        """Per target namespace, the latest completed experiment with an analysis."""
        return await self.db.fetch("latest_completed_experiments", {"phase": Phase.COMPLETED})

    async def gauges(self) -> list[Row]:
        """Phase and measured reduction of the latest experiments, for /metrics."""
        return await self.db.fetch("experiment_gauges")
