"""Pipeline deployments: render once, fan out to a namespace in one statement, restore the previous one."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from control_plane.db import Database, Tx
from control_plane.names import new_id
from control_plane.queue import TaskQueue
from control_plane.services.destinations import DestinationService
from control_plane.stores.agents import AgentStore
from control_plane.stores.deployments import DeploymentStore
from control_plane.stores.events import EventStore
from phoenix_common.problems import Conflict, NotFound

if TYPE_CHECKING:  # generator_client reaches keys.py, which holds this service
    from control_plane.generator_client import GeneratorClient

log = structlog.get_logger("phoenix.deployments")

DEPLOYMENT_PRIORITY = 10


class Keep(enum.Enum):
    """`destination` left out: keep the one of the namespace's active deployment."""

    KEEP = "keep"


KEEP = Keep.KEEP


@dataclass
class DeploymentService:
    """Every change to a namespace's deployments, on the deployment, agent, task and event stores."""

    db: Database
    deployments: DeploymentStore
    agents: AgentStore
    tasks: TaskQueue
    events: EventStore
    generator: GeneratorClient
    destinations: DestinationService

    async def create(
        self,
        *,
        name: str,
        namespace: str,
        template: str,
        parameters: dict[str, Any],
        max_failed_hosts: int,
        allow_empty_namespace: bool,
        destination: str | Keep | None = KEEP,
    ) -> dict[str, Any]:
        """The operator's deploy: render `template`, make it active; the new deployment's row and hosts."""
        if not allow_empty_namespace and await self.agents.count(namespace) == 0:
            raise NotFound(
                f"namespace {namespace!r} has no registered agents; start an agent in it first "
                'or pass "allow_empty_namespace": true to deploy ahead of them',
                field="namespace",
            )
        created = await self.ship(
            name=name,
            namespace=namespace,
            template=template,
            parameters=parameters,
            max_failed_hosts=max_failed_hosts,
            destination=destination,
        )
        row = await self.deployments.get(created["id"])
        assert row is not None
        return {**row, "hosts": created["hosts"]}

    async def destination_of(self, namespace: str) -> str | None:
        """Where the namespace's active deployment ships (None: nowhere, or no deployment)."""
        active = await self.deployments.active(namespace)
        return active["destination"] if active else None

    async def ship(
        self,
        *,
        name: str,
        namespace: str,
        template: str,
        parameters: dict[str, Any],
        destination: str | Keep | None = KEEP,
        experiment_id: str | None = None,
        reason: str = "created",
        max_failed_hosts: int = 0,
    ) -> dict[str, Any]:
        """Render `template` for `destination` (KEEP: the namespace's current one) and deploy it."""
        if destination is KEEP:
            destination = await self.destination_of(namespace)
        target = await self.destinations.target(destination) if destination else None
        rendered = await self.generator.render(
            template, parameters, variant="main", destination=target.spec if target else None
        )
        return await self.deploy(
            name=name,
            namespace=namespace,
            template=template,
            parameters=parameters,
            rendered=rendered,
            experiment_id=experiment_id,
            reason=reason,
            max_failed_hosts=max_failed_hosts,
            destination=destination,
            secret_files=target.secret_files(rendered) if target else {},
        )

    async def deploy(
        self,
        *,
        name: str,
        namespace: str,
        template: str,
        parameters: dict[str, Any],
        rendered: dict[str, Any],
        experiment_id: str | None = None,
        reason: str = "created",
        max_failed_hosts: int = 0,
        destination: str | None = None,
        secret_files: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Make `rendered` the namespace's active deployment and queue it for every agent there.

        It is failed, and the previous one restored, once more than `max_failed_hosts` hosts fail it
        (control_plane/rollouts.py).
        """
        deployment_id = new_id("dep")
        async with self.db.transaction() as tx:
            # Held until commit, so that the destination cannot be deleted under a deployment naming it.
            if destination and not await self.destinations.store.lock(destination, tx):
                raise NotFound(f"destination {destination!r} does not exist", field="destination")
            await self.deployments.lock_namespace(namespace, tx)
            previous = await self.deployments.active(namespace, tx)
            if previous:
                await self.deployments.set_status(previous["id"], "superseded", tx=tx)
                await self.tasks.cancel_pending(
                    previous["id"],
                    f"not applied: deployment {previous['id']} is superseded by {deployment_id}",
                    tx,
                )
            deployment = {
                "id": deployment_id,
                "name": name,
                "namespace": namespace,
                "template": template,
                "parameters": parameters,
                "previous_id": previous["id"] if previous else None,
                "experiment_id": experiment_id,
                "max_failed_hosts": max_failed_hosts,
                "destination": destination,
            }
            await self.deployments.insert(deployment, rendered, tx, secret_files=secret_files or {})
            hosts = await self.tasks.enqueue_namespace(
                tx,
                namespace,
                type="deployment",
                action="apply",
                payload={"reason": reason},
                priority=DEPLOYMENT_PRIORITY,
                deployment_id=deployment_id,
                deployment_version=1,
            )
            await self.events.publish(
                "deployments",
                "deployment_created",
                deployment_id,
                data={
                    "deployment_id": deployment_id,
                    "namespace": namespace,
                    "template": template,
                    "hosts": hosts,
                    "experiment_id": experiment_id,
                    "destination": destination,
                },
                reason=reason,
                tx=tx,
            )
        log.info(
            "deployment_created",
            deployment_id=deployment_id,
            namespace=namespace,
            template=template,
            hosts=hosts,
        )
        return {"id": deployment_id, "hosts": hosts, "previous_id": previous["id"] if previous else None}

    async def rollback(self, deployment_id: str, reason: str) -> dict[str, Any]:
        """Retire an active deployment and restore the one it replaced."""
        async with self.db.transaction() as tx:
            row = await self.deployments.get(deployment_id, tx)
            if row is None:
                raise NotFound(f"pipeline deployment {deployment_id!r} does not exist")
            await self.deployments.lock_namespace(row["namespace"], tx)
            active = await self.deployments.active(row["namespace"], tx)
            if not active or active["id"] != deployment_id:
                raise Conflict(
                    f"pipeline deployment {deployment_id} is {row['status']}, not the active one of "
                    f"namespace {row['namespace']}; only the active deployment can be rolled back"
                )
            await self.deployments.set_status(deployment_id, "rolled_back", reason, tx)
            restored, hosts = await self.restore_previous(row, f"rollback of {deployment_id}", tx)
            await self.events.publish(
                "deployments",
                "deployment_rolled_back",
                deployment_id,
                data={
                    "deployment_id": deployment_id,
                    "namespace": row["namespace"],
                    "restored": restored,
                    "hosts": hosts,
                },
                reason=reason,
                tx=tx,
            )
        return {
            "id": deployment_id,
            "status": "rolled_back",
            "restored_deployment_id": restored,
            "hosts": hosts,
        }

    async def restore_previous(self, retired: dict[str, Any], why: str, tx: Tx) -> tuple[str | None, int]:
        """Make the deployment `retired` (id, namespace, previous_id) replaced active again and send it to
        the hosts that may not run it; (its id or None, hosts sent to). Run under the namespace lock."""
        if not retired["previous_id"]:
            return None, 0
        previous = await self.deployments.get(retired["previous_id"], tx)
        if previous is None:
            return None, 0
        await self.deployments.restore(previous["id"], f"restored: {why}", tx)
        hosts = await self.tasks.enqueue_restored(previous, retired["id"], why, DEPLOYMENT_PRIORITY, tx)
        return previous["id"], hosts
