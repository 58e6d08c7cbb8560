"""Pipeline deployments through the real control plane and the real config generator."""

from __future__ import annotations

import psycopg

from tests.support import http_json, wait_for
from tests.support.services import Stack


def register(stack: Stack, host: str, namespace: str = "default") -> None:
    status, _, _ = http_json(
        "POST", f"{stack.api.url}/api/v1/agent/heartbeat", {"namespace": namespace}, {"X-Agent-Host-ID": host}
    )
    assert status == 200


def poll(stack: Stack, host: str) -> list[dict]:
    status, body, _ = http_json(
        "GET", f"{stack.api.url}/api/v1/agent/tasks?wait=0", headers={"X-Agent-Host-ID": host}
    )
    assert status == 200
    return body["tasks"]


def test_operations_guide_deployment_workflow(stack: Stack) -> None:
    register(stack, "vm-1")
    register(stack, "vm-2")
    register(stack, "other-1", namespace="batch")
    status, dep, _ = http_json(
        "POST",
        f"{stack.api.url}/api/v1/pipeline-deployments",
        {"name": "demo", "namespace": "default", "template": "process-baseline-v1"},
    )
    assert status == 201, dep
    assert dep["hosts"] == 2 and dep["status"] == "active" and dep["config_hash"]
    status, listing, _ = http_json("GET", f"{stack.api.url}/api/v1/pipeline-deployments?namespace=default")
    assert [d["id"] for d in listing["deployments"]] == [dep["id"]]
    (task,) = poll(stack, "vm-1")
    assert task["type"] == "deployment" and task["action"] == "apply"
    assert task["payload"]["config_hash"] == dep["config_hash"]
    assert "hostmetrics/phoenix" in task["payload"]["config_yaml"]
    assert poll(stack, "other-1") == []


def test_the_api_lists_the_generators_templates(stack: Stack) -> None:
    status, through_api, _ = http_json("GET", f"{stack.api.url}/api/v1/templates")
    assert status == 200, through_api
    status, own, _ = http_json("GET", f"{stack.generator.url}/api/v1/templates")
    assert status == 200 and through_api == own
    assert {"process-baseline-v1", "process-intelligent-v1"} <= {t["name"] for t in through_api["templates"]}


def test_a_late_joining_agent_gets_the_active_deployment(stack: Stack) -> None:
    register(stack, "early")
    status, dep, _ = http_json(
        "POST",
        f"{stack.api.url}/api/v1/pipeline-deployments",
        {"name": "d", "namespace": "default", "template": "process-topk-v1", "parameters": {"k": 5}},
    )
    assert status == 201, dep
    register(stack, "late")
    (task,) = poll(stack, "late")
    assert task["deployment_id"] == dep["id"]
    assert task["payload"]["keep_list"]["strategy"] == "topk"
    register(stack, "late")
    assert poll(stack, "late") == [], "a repeated heartbeat must not queue the deployment twice"


def test_delete_rolls_the_namespace_back(stack: Stack) -> None:
    register(stack, "vm-1")
    _, first, _ = http_json(
        "POST",
        f"{stack.api.url}/api/v1/pipeline-deployments",
        {"name": "a", "namespace": "default", "template": "process-baseline-v1"},
    )
    _, second, _ = http_json(
        "POST",
        f"{stack.api.url}/api/v1/pipeline-deployments",
        {"name": "b", "namespace": "default", "template": "process-topk-v1"},
    )
    assert second["previous_id"] == first["id"]
    poll(stack, "vm-1")
    status, body, _ = http_json("DELETE", f"{stack.api.url}/api/v1/pipeline-deployments/{second['id']}")
    assert status == 200 and body["restored_deployment_id"] == first["id"]
    (task,) = poll(stack, "vm-1")
    assert task["deployment_id"] == first["id"] and task["payload"]["config_hash"] == first["config_hash"]
    status, body, _ = http_json("DELETE", f"{stack.api.url}/api/v1/pipeline-deployments/{second['id']}")
    assert status == 409
    _, active, _ = http_json("GET", f"{stack.api.url}/api/v1/pipeline-deployments/{first['id']}")
    assert active["status"] == "active"


def test_unknown_template_and_bad_parameters_are_4xx(stack: Stack) -> None:
    register(stack, "vm-1")
    status, body, headers = http_json(
        "POST",
        f"{stack.api.url}/api/v1/pipeline-deployments",
        {"name": "x", "namespace": "default", "template": "no-such-template"},
    )
    assert status == 404 and "no-such-template" in body["detail"]
    assert headers["Content-Type"].startswith("application/problem+json")
    status, body, _ = http_json(
        "POST",
        f"{stack.api.url}/api/v1/pipeline-deployments",
        {"name": "x", "namespace": "default", "template": "process-topk-v1", "parameters": {"k": "many"}},
    )
    assert status == 422 and "k" in body["detail"]


def test_fan_out_is_one_insert(stack: Stack) -> None:
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO agents (host_id, namespace) "
            "SELECT 'bulk-' || g, 'bulk' FROM generate_series(1, 5000) g"
        )
    status, dep, _ = http_json(
        "POST",
        f"{stack.api.url}/api/v1/pipeline-deployments",
        {"name": "big", "namespace": "bulk", "template": "process-baseline-v1"},
    )
    assert status == 201 and dep["hosts"] == 5000
    with psycopg.connect(stack.database_url) as conn:
        (n,) = conn.execute("SELECT count(*) FROM tasks WHERE deployment_id = %s", (dep["id"],)).fetchone()
        (notes,) = conn.execute("SELECT count(*) FROM events WHERE subject = %s", (dep["id"],)).fetchone()
    assert n == 5000 and notes == 1


def test_a_superseded_deployment_whose_lease_expired_is_never_applied(stack: Stack) -> None:
    """The reaper requeues an expired task; if its deployment was superseded meanwhile, it fails instead
    of being applied after the deployment that replaced it (which the host would then keep)."""
    register(stack, "vm-slow")
    deploy = {"name": "first", "namespace": "default", "template": "process-baseline-v1"}
    status, first, _ = http_json("POST", f"{stack.api.url}/api/v1/pipeline-deployments", deploy)
    assert status == 201, first
    (old,) = poll(stack, "vm-slow")  # delivered, then the host goes quiet before reporting
    status, second, _ = http_json(
        "POST", f"{stack.api.url}/api/v1/pipeline-deployments", {**deploy, "name": "second"}
    )
    assert status == 201, second
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE tasks SET lease_expires_at = now() - interval '1 minute' WHERE id = %s", (old["id"],)
        )

    def old_task() -> dict:
        status, body, _ = http_json("GET", f"{stack.api.url}/api/v1/tasks?host_id=vm-slow")
        assert status == 200, body
        return next(t for t in body["tasks"] if t["id"] == old["id"])

    wait_for(lambda: old_task()["status"] == "failed", timeout=30, what="the reaper to fail the stale task")
    assert f"deployment {first['id']} is superseded" in old_task()["error"]
    assert [t["deployment_id"] for t in poll(stack, "vm-slow")] == [second["id"]]
