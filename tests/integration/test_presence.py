"""Presence on a real PostgreSQL: one host's collector block the database (or the encoder) refuses
cannot keep the other hosts of this replica from being seen (finding 3 of the hardening issue)."""

from __future__ import annotations

from typing import Any

import pytest

from control_plane.db import Database
from control_plane.presence import Presence
from control_plane.queue import TaskQueue
from control_plane.stores.agents import AgentStore


@pytest.mark.parametrize(
    "poison",
    [
        {"config_hash": "sha256:aa", "state": "bad\u0000nul"},  # refused by PostgreSQL's jsonb
        {"config_hash": "sha256:aa", "cpu": float("nan")},  # refused by the encoder (allow_nan=False)
    ],
    ids=["nul", "nan"],
)
async def test_a_refused_block_is_dropped_and_the_other_hosts_are_written(
    db: Database, poison: dict[str, Any]
) -> None:
    agents = AgentStore(db)
    for host in ("good-1", "bad-1", "good-2"):
        await agents.upsert(host, {"namespace": "default", "collector": {"config_hash": "sha256:aa"}})
    before = await agents.last_seen()
    presence = Presence(agents, TaskQueue(db, lease_seconds=30, max_attempts=3))
    for host in ("good-1", "bad-1", "good-2"):
        presence.remember(host, None, "default")
    presence.touch("good-1", {"config_hash": "sha256:aa", "state": "running"})
    presence.touch("bad-1", poison)
    presence.touch("good-2")
    await presence.flush()
    after = await agents.last_seen()
    assert after["good-1"] > before["good-1"] and after["good-2"] > before["good-2"]
    assert after["bad-1"] == before["bad-1"]
    assert (await agents.get("good-1") or {})["collector"]["state"] == "running"
    # Nothing is left to retry forever, and the host at fault takes the full path on its next contact.
    assert not presence._pending and presence.known("bad-1") is None
    flushes = presence.flushes
    await presence.flush()
    assert presence.flushes == flushes
