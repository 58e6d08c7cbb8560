"""The destinations store on PostgreSQL: insert, replace, who ships there, and the sealed files a
deployment's tasks carry."""

from __future__ import annotations

from control_plane.db import Database
from control_plane.queue import TaskQueue
from control_plane.stores.agents import AgentStore
from control_plane.stores.deployments import DeploymentStore
from control_plane.stores.destinations import DestinationStore
from control_plane.stores.experiments import ExperimentStore

ROW = {
    "name": "prod",
    "type": "otlp_http",
    "endpoint": "https://otlp.example.com",
    "header_names": ["Authorization"],
    "headers_sealed": "gAAAA-sealed",
    "tls": {},
    "compression": "gzip",
    "timeout_seconds": 10.0,
}


async def test_destinations_are_inserted_once_replaced_and_listed_with_their_namespaces(db: Database) -> None:
    store, deployments, agents = DestinationStore(db), DeploymentStore(db), AgentStore(db)
    assert await store.insert(ROW)
    assert not await store.insert(ROW), "a name is taken once"
    assert await store.update({**ROW, "endpoint": "https://other.example.com"})
    assert not await store.update({**ROW, "name": "missing"})
    await agents.upsert("vm-1", {"namespace": "web"})
    await agents.upsert("vm-2", {"namespace": "batch"})
    deployment = {
        "id": "dep-1",
        "name": "d",
        "namespace": "web",
        "template": "process-baseline-v1",
        "parameters": {},
        "previous_id": None,
        "experiment_id": None,
        "max_failed_hosts": 0,
        "destination": "prod",
    }
    rendered = {"config_yaml": "receivers: {}\n", "config_hash": "sha256:aa"}
    path = "/var/lib/phoenix-agent/secrets/prod.headers.yaml"
    async with db.transaction() as tx:
        assert await store.lock("prod", tx)
        await deployments.insert(deployment, rendered, tx, secret_files={path: "gAAAA-sealed"})
    row = await store.get("prod")
    assert row is not None and row["endpoint"] == "https://other.example.com" and row["namespaces"] == ["web"]
    assert [(u["kind"], u["id"]) for u in await store.users("prod")] == [("deployment", "dep-1")]
    assert [d["name"] for d in await store.list_all()] == ["prod"]
    assert sorted(await deployments.destinations_of_hosts(["vm-1", "vm-2"]), key=str) == [None, "prod"]

    # A claimed task of the deployment carries the sealed file (opened only by the API's poll path).
    tasks = TaskQueue(db, lease_seconds=30, max_attempts=3)
    await tasks.enqueue_hosts(
        None, ["vm-1"], type="deployment", action="apply", deployment_id="dep-1", deployment_version=1
    )
    (claimed,) = await tasks.claim_hosts(["vm-1"])
    assert claimed["payload"]["secret_files"] == {path: "gAAAA-sealed"}
    assert claimed["payload"]["config_hash"] == "sha256:aa"

    # An experiment not yet finished that names it as the candidate's destination uses it too.
    await deployments.set_status("dep-1", "superseded")
    assert await store.users("prod") == []
    await ExperimentStore(db).insert("exp-1", "e", {"candidate_destination": "prod"})
    assert [(u["kind"], u["id"]) for u in await store.users("prod")] == [("experiment", "exp-1")]
    assert await store.delete("prod")
    assert await store.get("prod") is None
