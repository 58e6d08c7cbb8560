"""The agent, deployment, event and token stores and the restore path of the tasks store on PostgreSQL."""

from __future__ import annotations

from control_plane.db import Database
from control_plane.queue import TaskQueue
from control_plane.stores.agents import AgentStore
from control_plane.stores.deployments import DeploymentStore
from control_plane.stores.events import EventStore
from control_plane.stores.retention import TABLES, RetentionStore
from control_plane.stores.tokens import TokenStore

RENDERED = {"config_yaml": "receivers: {}\n", "config_hash": "sha256:aa", "keep_list": []}


def _deployment(deployment_id: str, previous_id: str | None = None) -> dict[str, object]:
    return {
        "id": deployment_id,
        "name": deployment_id,
        "namespace": "default",
        "template": "process-baseline-v1",
        "parameters": {},
        "previous_id": previous_id,
        "experiment_id": None,
        "max_failed_hosts": 0,
    }


async def test_agents_register_move_and_are_touched_in_one_batch(db: Database) -> None:
    agents = AgentStore(db)
    first = await agents.upsert("vm-1", {"namespace": "default", "labels": {"a": "b"}})
    assert first["inserted"] and first["namespace"] == "default"
    moved = await agents.upsert("vm-1", {"namespace": "batch"})
    assert (
        not moved["inserted"] and moved["previous_namespace"] == "default" and moved["namespace"] == "batch"
    )
    touched = await agents.touch({"vm-1": {"config_hash": "sha256:bb", "restarts": 3}, "gone": None})
    assert [(r["host_id"], r["config_changed"]) for r in touched] == [("vm-1", True)]
    assert await agents.count("batch") == 1 and await agents.count("default") == 0
    row = await agents.get("vm-1")
    assert row is not None and row["labels"] == {"a": "b"} and row["config_hash"] == "sha256:bb"
    assert [r["host_id"] for r in await agents.list_agents("batch", 10)] == ["vm-1"]
    assert set(await agents.last_seen()) == {"vm-1"}
    assert await agents.collector_restarts() == {"vm-1": 3}


async def test_a_restore_reaches_only_hosts_that_may_not_run_it(db: Database) -> None:
    agents, deployments = AgentStore(db), DeploymentStore(db)
    tasks = TaskQueue(db, lease_seconds=30, max_attempts=3)
    for host in ("runs-it", "got-bad", "queued", "late"):
        await agents.upsert(host, {"namespace": "default", "collector": {"config_hash": "sha256:aa"}})
    async with db.transaction() as tx:
        await deployments.lock_namespace("default", tx)
        await deployments.insert(_deployment("dep-good"), RENDERED, tx)
        await deployments.set_status("dep-good", "superseded", tx=tx)
        await deployments.insert(
            _deployment("dep-bad", "dep-good"), {**RENDERED, "config_hash": "sha256:bb"}, tx
        )
        assert await deployments.try_lock_namespace("default", tx)
    bad = {"type": "deployment", "action": "apply", "deployment_id": "dep-bad", "deployment_version": 1}
    await tasks.enqueue_hosts(None, ["got-bad", "late"], **bad)
    assert [t["host_id"] for t in await tasks.claim_hosts(["got-bad"])] == ["got-bad"]
    await tasks.enqueue_hosts(None, ["queued"], **{**bad, "deployment_id": "dep-good"})
    assert (await deployments.active("default") or {})["id"] == "dep-bad"
    good = await deployments.get("dep-good")
    assert good is not None
    async with db.transaction() as tx:
        assert await deployments.fail("dep-bad", "failed", tx)
        assert await tasks.cancel_undelivered("dep-bad", "not sent", tx) == 1
        await deployments.restore("dep-good", "restored: test", tx)
        sent = await tasks.enqueue_restored(good, "dep-bad", "test", 10, tx)
    # runs-it runs it and never got the bad one, queued has it queued, late's bad task was cancelled:
    # only got-bad, which received the bad one, is sent the good one again.
    assert sent == 1 and not await deployments.fail("dep-bad", "again")
    pending = await tasks.list_tasks(status="pending", host_id=None, experiment_id=None, limit=10)
    assert [(t["host_id"], t["deployment_id"]) for t in pending] == [
        ("got-bad", "dep-good"),
        ("queued", "dep-good"),
    ]
    restored = await deployments.get("dep-good")
    assert restored is not None and restored["status"] == "active" and restored["restored_at"]


async def test_tokens_enrol_once_issue_and_revoke(db: Database) -> None:
    tokens = TokenStore(db)
    assert await tokens.get("vm-1") is None
    assert await tokens.enrol("vm-1", "hash-1")
    assert not await tokens.enrol("vm-1", "hash-2")
    assert await tokens.owner("hash-1") == "vm-1" and await tokens.owner("nobody") is None
    issued = await tokens.issue("vm-1", "hash-3")
    assert issued["replaced"]
    revoked = await tokens.revoke("vm-1")
    assert revoked["had_token"] and (await tokens.get("vm-1") or {})["token_hash"] is None


async def test_events_are_published_and_pruned(db: Database) -> None:
    events = EventStore(db)
    await events.publish("agents", "agent_registered", "vm-1", data={"big": "x" * 7000}, reason="r" * 600)
    retention = RetentionStore(db)
    assert await retention.prune("events", 3600, 100) == 0
    assert await retention.prune("events", 0.000001, 100) == 1
    assert set(TABLES) == {"tasks", "events", "experiment_measurements"}
