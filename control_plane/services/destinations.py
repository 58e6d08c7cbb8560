"""Destinations as operations: create, replace, delete (not while in use), and what a render needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from control_plane.db import Database, Tx
from control_plane.destination_spec import Destination, check_headers, masked
from control_plane.secrets import Sealer
from control_plane.stores.destinations import DestinationStore
from control_plane.stores.events import EventStore
from phoenix_common.problems import Conflict, NotFound

log = structlog.get_logger("phoenix.destinations")


@dataclass(frozen=True)
class Target:
    """What rendering and shipping to one destination need: the spec the generator renders (no secret
    in it) and the headers, still sealed, for the agents."""

    name: str
    spec: dict[str, Any]
    headers_sealed: str | None

    def secret_files(self, rendered: dict[str, Any]) -> dict[str, str]:
        """The sealed files the rendered config refers to (placeholder path -> ciphertext)."""
        shipping = rendered.get("shipping") or {}
        path = shipping.get("headers_file")
        return {path: self.headers_sealed} if path and self.headers_sealed else {}


@dataclass
class DestinationService:
    db: Database
    store: DestinationStore
    events: EventStore
    sealer: Sealer

    async def create(self, destination: Destination) -> dict[str, Any]:
        async with self.db.transaction() as tx:
            if not await self.store.insert(self._row(destination, None), tx):
                raise Conflict(f"destination {destination.name!r} exists; PUT it to change it", field="name")
            await self._event(tx, "destination_created", destination)
        log.info("destination_created", destination=destination.name, type=destination.type)
        return await self.view(destination.name)

    async def replace(self, destination: Destination) -> dict[str, Any]:
        async with self.db.transaction() as tx:
            current = await self.store.get(destination.name, tx)
            if current is None:
                raise NotFound(f"destination {destination.name!r} does not exist")
            await self.store.update(self._row(destination, current), tx)
            await self._event(tx, "destination_updated", destination)
        log.info("destination_updated", destination=destination.name, type=destination.type)
        return await self.view(destination.name)

    async def delete(self, name: str) -> None:
        async with self.db.transaction() as tx:
            if not await self.store.lock(name, tx):
                raise NotFound(f"destination {name!r} does not exist")
            users = await self.store.users(name, tx)
            if users:
                what = ", ".join(
                    f"deployment {u['id']} (namespace {u['namespace']})"
                    if u["kind"] == "deployment"
                    else f"experiment {u['id']}"
                    for u in users[:5]
                )
                raise Conflict(f"destination {name!r} is still shipped to by {what}; deploy elsewhere first")
            await self.store.delete(name, tx)
            await self.events.publish(
                "destinations", "destination_deleted", name, data={"destination": name}, tx=tx
            )
        log.info("destination_deleted", destination=name)

    async def view(self, name: str) -> dict[str, Any]:
        row = await self.store.get(name)
        if row is None:
            raise NotFound(f"destination {name!r} does not exist")
        return public(row)

    async def list_all(self) -> list[dict[str, Any]]:
        return [public(row) for row in await self.store.list_all()]

    async def target(self, name: str, tx: Tx | None = None, field: str = "destination") -> Target:
        """The destination as a render needs it; 404 naming `field` when there is none of that name."""
        row = await self.store.get(name, tx)
        if row is None:
            raise NotFound(f"destination {name!r} does not exist", field=field)
        spec = {
            "name": row["name"],
            "type": row["type"],
            "endpoint": row["endpoint"],
            "header_names": list(row["header_names"]),
            "tls": row["tls"] or {},
            "compression": row["compression"],
            "timeout_seconds": row["timeout_seconds"],
        }
        return Target(row["name"], spec, row["headers_sealed"])

    def _row(self, destination: Destination, current: dict[str, Any] | None) -> dict[str, Any]:
        if destination.headers is None and current is not None:
            names, sealed = list(current["header_names"]), current["headers_sealed"]
            # The kept headers must suit the new type too (remote write fixes some).
            check_headers(destination.type, {name: "kept" for name in names})
        else:
            headers = destination.headers or {}
            names, sealed = sorted(headers), (self.sealer.seal(headers) if headers else None)
        return {
            "name": destination.name,
            "type": destination.type,
            "endpoint": destination.endpoint,
            "header_names": names,
            "headers_sealed": sealed,
            "tls": destination.tls,
            "compression": destination.compression,
            "timeout_seconds": destination.timeout_seconds,
        }

    async def _event(self, tx: Tx, kind: str, destination: Destination) -> None:
        await self.events.publish(
            "destinations",
            kind,
            destination.name,
            data={
                "destination": destination.name,
                "type": destination.type,
                "endpoint": destination.endpoint,
            },
            tx=tx,
        )


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A destination as every read shows it: header values masked, the ciphertext left out."""
    return {
        "name": row["name"],
        "type": row["type"],
        "endpoint": row["endpoint"],
        "headers": masked(list(row["header_names"])),
        "tls": row["tls"] or {},
        "compression": row["compression"],
        "timeout_seconds": row["timeout_seconds"],
        "namespaces": list(row.get("namespaces") or []),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }
