"""Shipping to a destination from a real agent: create one, deploy to it, wait for the host's task."""

from __future__ import annotations

from typing import Any

from tests.support import free_port, http_json, wait_for
from tests.support.agents import NAMESPACE, free_ports, tasks_of
from tests.support.services import Service

# A header value the tests look for everywhere it must not be.
SECRET = "Bearer phx-e2e-7d1c0b5e9a"


def create_destination(api: Service, name: str, kind: str, endpoint: str, **extra: Any) -> dict[str, Any]:
    body = {"name": name, "type": kind, "endpoint": endpoint, "timeout": "5s", **extra}
    status, data, _ = http_json("POST", f"{api.url}/api/v1/destinations", body)
    assert status == 201, data
    return dict(data)


def ship(
    api: Service, destination: str | None, template: str = "process-baseline-v1", **parameters: Any
) -> dict[str, Any]:
    """Deploy `template` to the namespace, shipping to `destination`, on free ports, every second."""
    body: dict[str, Any] = {
        "name": "shipping",
        "namespace": NAMESPACE,
        "template": template,
        "parameters": {"collection_interval": 1, "relay_port": free_port(), **free_ports(), **parameters},
        "destination": destination,
    }
    status, data, _ = http_json("POST", f"{api.url}/api/v1/pipeline-deployments", body)
    assert status == 201, data
    return dict(data)


def task_of(api: Service, host_id: str, deployment_id: str) -> dict[str, Any]:
    """The host's task of the deployment once it is final."""

    def final() -> dict[str, Any]:
        for task in tasks_of(api, host_id):
            if task["deployment_id"] == deployment_id and task["status"] in ("completed", "failed"):
                return dict(task)
        return {}

    return dict(wait_for(final, timeout=120, what=f"the task of {deployment_id} to finish"))


def deployed_to(
    api: Service,
    host_id: str,
    name: str,
    kind: str,
    endpoint: str,
    *,
    headers: dict[str, str] | None = None,
    **parameters: Any,
) -> dict[str, Any]:
    """Create destination `name` and ship the baseline there; the deployment once `host_id` applied it."""
    create_destination(api, name, kind, endpoint, **({"headers": headers} if headers else {}))
    created = ship(api, name, **parameters)
    task = task_of(api, host_id, created["id"])
    assert task["status"] == "completed", task
    return created
