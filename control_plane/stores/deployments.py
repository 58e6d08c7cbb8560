"""Pipeline deployments and their rendered versions."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from control_plane.db import Executor, Tx


class DeploymentStore:
    """The pipeline_deployments and pipeline_deployment_versions tables."""

    def __init__(self, db: Executor):
        self.db = db

    async def lock_namespace(self, namespace: str, tx: Tx) -> None:
        """Serialise deployment changes of a namespace until the transaction ends."""
        await tx.fetch("lock_namespace", {"namespace": namespace})

    async def try_lock_namespace(self, namespace: str, tx: Tx) -> bool:
        """lock_namespace without waiting; False when someone holds it."""
        row = await tx.fetch_one("try_lock_namespace", {"namespace": namespace})
        return bool(row and row["locked"])

    async def active(self, namespace: str, tx: Tx | None = None) -> dict[str, Any] | None:
        return await (tx or self.db).fetch_one("active_deployment", {"namespace": namespace})

    async def get(self, deployment_id: str, tx: Tx | None = None) -> dict[str, Any] | None:
        """The deployment with its latest version and task counts."""
        return await (tx or self.db).fetch_one("get_deployment", {"id": deployment_id})

    async def destinations_of_hosts(self, hosts: list[str]) -> list[str | None]:
        """The distinct destinations the namespaces of `hosts` ship to now (None: nowhere)."""
        return [r["destination"] for r in await self.db.fetch("destinations_of_hosts", {"hosts": hosts})]

    async def list_deployments(self, namespace: str | None, limit: int) -> list[dict[str, Any]]:
        return await self.db.fetch("list_deployments", {"namespace": namespace, "limit": limit})

    async def insert(
        self,
        deployment: dict[str, Any],
        rendered: dict[str, Any],
        tx: Tx | None = None,
        *,
        secret_files: dict[str, str] | None = None,
    ) -> None:
        """An active deployment (id, name, namespace, template, parameters, previous_id, experiment_id,
        max_failed_hosts, destination) and its version 1, with the sealed files it refers to."""
        db = tx or self.db
        await db.fetch(
            "insert_deployment",
            {"destination": None, **deployment, "parameters": Jsonb(deployment["parameters"])},
        )
        await db.execute(
            "insert_deployment_version",
            {
                "deployment_id": deployment["id"],
                "version": 1,
                "config_yaml": rendered["config_yaml"],
                "config_hash": rendered["config_hash"],
                "rendered": Jsonb({k: v for k, v in rendered.items() if k != "config_yaml"}),
                "secret_files": Jsonb(secret_files or {}),
            },
        )

    async def set_status(
        self, deployment_id: str, status: str, reason: str | None = None, tx: Tx | None = None
    ) -> None:
        if reason is None:
            await (tx or self.db).execute("set_deployment_status", {"id": deployment_id, "status": status})
        else:
            await (tx or self.db).execute(
                "set_deployment_status_reason", {"id": deployment_id, "status": status, "reason": reason}
            )

    async def restore(self, deployment_id: str, reason: str, tx: Tx | None = None) -> None:
        """Make a deployment active again, marked restored (never failed automatically then)."""
        await (tx or self.db).execute("restore_deployment", {"id": deployment_id, "reason": reason})

    async def fail(self, deployment_id: str, reason: str, tx: Tx | None = None) -> bool:
        """Mark an active deployment failed; False when it was no longer active."""
        row = await (tx or self.db).fetch_one("fail_deployment", {"id": deployment_id, "reason": reason})
        return row is not None

    async def failing(self) -> list[str]:
        """Watched active deployments failed by more hosts than they tolerate."""
        return [r["id"] for r in await self.db.fetch("failing_deployments")]

    async def lock_failing(self, deployment_id: str, tx: Tx) -> dict[str, Any] | None:
        """The watched deployment's row, locked; None when another replica has it or it is not watched."""
        return await tx.fetch_one("lock_failing_deployment", {"id": deployment_id})

    async def failed_hosts(
        self, deployment_id: str, limit: int, tx: Tx | None = None
    ) -> list[dict[str, Any]]:
        """Hosts that failed it (host_id, latest error, failed_at), earliest first, each with the total."""
        return await (tx or self.db).fetch("deployment_failed_hosts", {"id": deployment_id, "limit": limit})
