"""Issue 7: a deployment its hosts fail is marked failed and the previous one restored (rollouts.py).
Real API, generator and PostgreSQL; the agents are played through the agent endpoints."""

from __future__ import annotations

import time
import urllib.request
from typing import Any

import psycopg

from tests.support import http_json, wait_for
from tests.support.services import Stack

BIND_ERROR = (
    "collector exited: listen tcp 127.0.0.1:9464: bind: address already in use; restored the last good config"
)


def heartbeat(stack: Stack, host: str, config_hash: str | None = None) -> None:
    body: dict[str, Any] = {"namespace": "default"}
    if config_hash:
        body["collector"] = {"state": "running", "restarts": 0, "config_hash": config_hash}
    status, answer, _ = http_json(
        "POST", f"{stack.api.url}/api/v1/agent/heartbeat", body, {"X-Agent-Host-ID": host}
    )
    assert status == 200, answer


def poll(stack: Stack, host: str) -> list[dict[str, Any]]:
    status, body, _ = http_json(
        "GET", f"{stack.api.url}/api/v1/agent/tasks?wait=0", headers={"X-Agent-Host-ID": host}
    )
    assert status == 200, body
    return list(body["tasks"])


def report(stack: Stack, host: str, task_id: str, status: str, **extra: Any) -> None:
    code, body, _ = http_json(
        "POST",
        f"{stack.api.url}/api/v1/agent/tasks/{task_id}/status",
        {"status": status, **extra},
        {"X-Agent-Host-ID": host},
    )
    assert code == 200, body


def create(stack: Stack, name: str, template: str, **extra: Any) -> dict[str, Any]:
    status, body, _ = http_json(
        "POST",
        f"{stack.api.url}/api/v1/pipeline-deployments",
        {"name": name, "namespace": "default", "template": template, **extra},
    )
    assert status == 201, body
    return dict(body)


def get(stack: Stack, deployment_id: str) -> dict[str, Any]:
    status, body, _ = http_json("GET", f"{stack.api.url}/api/v1/pipeline-deployments/{deployment_id}")
    assert status == 200, body
    return dict(body)


def apply(stack: Stack, host: str, deployment: dict[str, Any]) -> None:
    """The host receives the deployment, runs it and says so (as a real agent does)."""
    (task,) = poll(stack, host)
    assert task["deployment_id"] == deployment["id"], task
    report(stack, host, task["id"], "completed", result={"config_hash": deployment["config_hash"]})
    heartbeat(stack, host, deployment["config_hash"])
    # The collector block of a heartbeat is written with the API's next batch of contacts (within ~1 s).
    wait_for(
        lambda: (
            http_json("GET", f"{stack.api.url}/api/v1/agents/{host}")[1].get("config_hash")
            == deployment["config_hash"]
        ),
        timeout=15,
        what=f"{host}'s reported config to be recorded",
    )


def fail(stack: Stack, host: str, deployment: dict[str, Any], error: str = BIND_ERROR) -> None:
    """The host receives the deployment, its collector cannot run it, the agent restores its last config."""
    (task,) = poll(stack, host)
    assert task["deployment_id"] == deployment["id"], task
    report(stack, host, task["id"], "running")
    report(stack, host, task["id"], "failed", error=error)


def failed_events(stack: Stack, deployment_id: str) -> list[dict[str, Any]]:
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT reason, data FROM events WHERE kind = 'deployment_failed' AND subject = %s ORDER BY id",
            (deployment_id,),
        ).fetchall()
    return [{"reason": r[0], **r[1]} for r in rows]


def test_a_host_failing_the_rollout_fails_the_deployment_and_restores_the_previous(stack: Stack) -> None:
    for host in ("vm-1", "vm-2"):
        heartbeat(stack, host)
    good = create(stack, "good", "process-baseline-v1")
    for host in ("vm-1", "vm-2"):
        apply(stack, host, good)
    heartbeat(stack, "vm-3")  # joins late, gets the good one queued, and has not polled yet

    bad = create(stack, "bad", "process-topk-v1")
    assert bad["max_failed_hosts"] == 0 and bad["status"] == "active"
    apply(stack, "vm-2", bad)
    started = time.monotonic()
    fail(stack, "vm-1", bad)

    failed = wait_for(
        lambda: (d := get(stack, bad["id"]))["status"] == "failed" and d,
        timeout=15,
        what="the deployment to be marked failed",
    )
    took = time.monotonic() - started
    assert "vm-1" in failed["status_reason"] and "address already in use" in failed["status_reason"], failed
    restored = get(stack, good["id"])
    assert restored["status"] == "active" and restored["restored_at"], restored
    assert bad["id"] in restored["status_reason"]

    (event,) = failed_events(stack, bad["id"])
    assert event["failed_hosts"] == {"vm-1": BIND_ERROR} and event["failed_host_count"] == 1, event
    assert event["restored"] == good["id"] and event["namespace"] == "default", event
    # vm-3 had not received the bad deployment: its task is cancelled, not sent. Its queued good one was
    # failed when the bad one superseded it, so the restore queues good for it as for vm-2.
    assert event["cancelled_tasks"] == 1 and event["hosts"] == 2, event

    # The host that ran the bad config gets the good one again; the one that failed restored it itself;
    # the late joiner receives only the good deployment it had queued.
    (task,) = poll(stack, "vm-2")
    assert task["deployment_id"] == good["id"] and task["payload"]["config_hash"] == good["config_hash"]
    assert poll(stack, "vm-1") == []
    assert [t["deployment_id"] for t in poll(stack, "vm-3")] == [good["id"]]

    # The views list it as failed; a failed deployment is no longer the one to roll back.
    _, listing, _ = http_json("GET", f"{stack.api.url}/api/v1/pipeline-deployments?namespace=default")
    assert {d["id"]: d["status"] for d in listing["deployments"]} == {
        good["id"]: "active",
        bad["id"]: "failed",
    }
    status, body, _ = http_json("DELETE", f"{stack.api.url}/api/v1/pipeline-deployments/{bad['id']}")
    assert status == 409, body
    print(f"\nfailed rollout: deployment failed and previous restored {took:.2f}s after the host's report")


def test_failures_within_max_failed_hosts_are_tolerated_and_without_a_previous_it_is_only_failed(
    stack: Stack,
) -> None:
    for host in ("vm-1", "vm-2", "vm-3"):
        heartbeat(stack, host)
    first = create(stack, "first", "process-baseline-v1", max_failed_hosts=1)
    assert first["max_failed_hosts"] == 1 and first["previous_id"] is None
    apply(stack, "vm-3", first)
    fail(stack, "vm-1", first)
    # One failed host of the one tolerated: still active after the watcher has seen it (two more passes).
    wait_for(
        lambda: get(stack, first["id"])["tasks"] == {"completed": 1, "failed": 1, "pending": 1},
        what="the task counts",
    )
    seen = watcher_passes(stack)
    wait_for(lambda: watcher_passes(stack) >= seen + 2, timeout=15, what="two more watcher passes")
    assert get(stack, first["id"])["status"] == "active"

    fail(stack, "vm-2", first, error="collector rejected the config: unknown exporter")
    failed = wait_for(
        lambda: (d := get(stack, first["id"]))["status"] == "failed" and d,
        timeout=15,
        what="the second failure to fail the deployment",
    )
    assert failed["status_reason"].startswith("2 host(s) failed the rollout (max_failed_hosts 1)"), failed
    (event,) = failed_events(stack, first["id"])
    assert event["restored"] is None and event["hosts"] == 0, event
    assert set(event["failed_hosts"]) == {"vm-1", "vm-2"}
    # No deployment is active in the namespace now; the hosts keep what they run.
    _, listing, _ = http_json("GET", f"{stack.api.url}/api/v1/pipeline-deployments?namespace=default")
    assert [d["status"] for d in listing["deployments"]] == ["failed"]
    assert poll(stack, "vm-3") == []


def watcher_passes(stack: Stack) -> float:
    """Completed passes of the API's failed-rollout watcher, from its /metrics."""
    with urllib.request.urlopen(f"{stack.api.url}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith('phoenix_background_passes_total{job="deployment_watch"}'):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_bad_max_failed_hosts_is_a_400(stack: Stack) -> None:
    heartbeat(stack, "vm-1")
    for value in (-1, "one", 1.5, True):
        status, body, _ = http_json(
            "POST",
            f"{stack.api.url}/api/v1/pipeline-deployments",
            {
                "name": "x",
                "namespace": "default",
                "template": "process-baseline-v1",
                "max_failed_hosts": value,
            },
        )
        assert status == 400 and "max_failed_hosts" in body["detail"], (value, body)
