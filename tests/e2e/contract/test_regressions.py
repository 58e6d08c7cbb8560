"""Bugs the contract tests found, pinned with a direct request each."""

from __future__ import annotations

from tests.support import http_json
from tests.support.services import Service


def test_heartbeat_null_fields_keep_what_was_reported(api: Service) -> None:
    """`"facts": null` means "not reported" (as everywhere in the API), not "store JSON null"."""
    agent = {"X-Agent-Host-ID": "null-host"}
    first = {"namespace": "nulls", "labels": {"role": "db"}, "facts": {"cpus": 2}}
    status, _, _ = http_json("POST", f"{api.url}/api/v1/agent/heartbeat", first, headers=agent)
    assert status == 200
    status, answer, _ = http_json(
        "POST",
        f"{api.url}/api/v1/agent/heartbeat",
        {"labels": None, "facts": None, "version": None, "collector": None},
        headers=agent,
    )
    assert status == 200, answer
    status, stored, _ = http_json("GET", f"{api.url}/api/v1/agents/null-host")
    assert status == 200
    assert (stored["labels"], stored["facts"], stored["namespace"]) == ({"role": "db"}, {"cpus": 2}, "nulls")
