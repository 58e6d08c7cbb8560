"""Destinations through the real API and generator: create, read masked, replace, delete while in use,
bad input named, and a database holding ciphertext only."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support import http_json
from tests.support.services import Service, Stack

SECRET = "s3cr3t-header-value-7f2a9c"
PEM = """-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIUGyO0tdoK5c9eOnW0zV6t1n1GmQowCgYIKoZIzj0EAwIw
LzEtMCsGA1UEAwwkcGhvZW5peC10ZXN0LWNhLmV4YW1wbGUuaW52YWxpZC50ZXN0
MB4XDTI2MDEwMTAwMDAwMFoXDTM2MDEwMTAwMDAwMFowLzEtMCsGA1UEAwwkcGhv
ZW5peC10ZXN0LWNhLmV4YW1wbGUuaW52YWxpZC50ZXN0MFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAEjCjCQ8b2xY8E3pS0e0E6k7Y4nZ0a8m7m9zP7cJ0Q8lqfGm3r
e0dZt3xJ9cIY5pT9dQK8y6wmV2m6zNQ1Yb4dKqNTMFEwHQYDVR0OBBYEFF0pB6bH
"""


def post(api: Service, body: dict[str, Any]) -> tuple[int, Any]:
    status, data, _ = http_json("POST", f"{api.url}/api/v1/destinations", body)
    return status, data


def prometheus(name: str = "prod", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "prometheus_remote_write",
        "endpoint": "http://127.0.0.1:9/api/v1/write",
        "headers": {"Authorization": f"Bearer {SECRET}", "X-Scope-OrgID": "team-a"},
        **extra,
    }


def test_a_destination_reads_back_with_its_header_values_masked(stack: Stack) -> None:
    status, body = post(stack.api, prometheus(timeout="5s"))
    assert status == 201, body
    assert body["headers"] == {"Authorization": "********", "X-Scope-OrgID": "********"}
    assert body["compression"] == "snappy" and body["timeout_seconds"] == 5.0
    assert body["namespaces"] == []
    for url in ("/api/v1/destinations", "/api/v1/destinations/prod"):
        status, data, _ = http_json("GET", stack.api.url + url)
        assert status == 200 and SECRET not in str(data) and "team-a" not in str(data)
    status, data = post(stack.api, prometheus())
    assert status == 409, data

    # A PUT without headers keeps the stored ones; with headers it replaces them.
    replaced = {k: v for k, v in prometheus().items() if k != "headers"}
    status, data, _ = http_json("PUT", f"{stack.api.url}/api/v1/destinations/prod", replaced)
    assert status == 200 and data["headers"] == body["headers"], data
    status, data, _ = http_json(
        "PUT", f"{stack.api.url}/api/v1/destinations/prod", prometheus(headers={"X-Key": "other"})
    )
    assert status == 200 and data["headers"] == {"X-Key": "********"}, data

    # Headers kept by a PUT must suit its type: remote write fixes Content-Type.
    otlp = {"name": "typed", "type": "otlp_http", "endpoint": "https://otlp.example.com"}
    assert post(stack.api, {**otlp, "headers": {"Content-Type": "application/x-protobuf"}})[0] == 201
    as_remote_write = {**otlp, "type": "prometheus_remote_write", "endpoint": "https://m.example.com/push"}
    status, data, _ = http_json("PUT", f"{stack.api.url}/api/v1/destinations/typed", as_remote_write)
    assert status == 400 and data["field"] == "headers", data


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "kafka"}, "type"),
        ({"endpoint": "not a url"}, "endpoint"),
        ({"endpoint": "ftp://example.com/write"}, "endpoint"),
        ({"endpoint": "https://user:pw@example.com/write"}, "endpoint"),
        ({"endpoint": "http://example.com/${env:HOME}"}, "endpoint"),
        ({"headers": {"X-Key": f"{SECRET}\r\nX-Injected: 1"}}, "headers.X-Key"),
        ({"headers": {"X-Key": f"{SECRET}\x07"}}, "headers.X-Key"),
        ({"headers": {"Bad Name": "v"}}, "headers"),
        ({"tls": {"ca_pem": PEM}}, "tls.ca_pem"),
        ({"tls": {"ca_pem": "not a pem"}}, "tls.ca_pem"),
        ({"compression": "gzip"}, "compression"),
        ({"timeout": "1h"}, "timeout"),
        ({"name": "Not_A_Label"}, "name"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_never_echoes_a_secret(
    stack: Stack, body: dict[str, Any], field: str
) -> None:
    status, data, headers = http_json(
        "POST", f"{stack.api.url}/api/v1/destinations", {**prometheus(), **body}
    )
    assert status == 400, data
    assert headers["Content-Type"].startswith("application/problem+json")
    assert data["field"] == field, data
    assert SECRET not in str(data)


def test_grpc_takes_host_port_and_insecure(stack: Stack) -> None:
    status, body = post(
        stack.api,
        {"name": "grpc", "type": "otlp_grpc", "endpoint": "127.0.0.1:4317", "tls": {"insecure": True}},
    )
    assert status == 201, body
    status, body = post(stack.api, {"name": "http", "type": "otlp_http", "endpoint": "127.0.0.1:4318"})
    assert status == 400 and body["field"] == "endpoint", body


def test_deployments_name_keep_and_drop_their_destination(stack: Stack) -> None:
    assert post(stack.api, prometheus())[0] == 201

    def deploy(**extra: Any) -> tuple[int, Any]:
        body = {
            "name": "d",
            "namespace": "web",
            "template": "process-baseline-v1",
            "allow_empty_namespace": True,
            **extra,
        }
        status, data, _ = http_json("POST", f"{stack.api.url}/api/v1/pipeline-deployments", body)
        return status, data

    status, data = deploy(destination="nowhere")
    assert status == 404 and data["field"] == "destination", data
    status, first = deploy()
    assert status == 201 and first["destination"] is None, first
    status, shipped = deploy(destination="prod")
    assert status == 201 and shipped["destination"] == "prod", shipped
    status, kept = deploy()  # left out: the namespace's destination stays
    assert status == 201 and kept["destination"] == "prod", kept
    status, full, _ = http_json("GET", f"{stack.api.url}/api/v1/pipeline-deployments/{kept['id']}")
    assert status == 200 and "${file:/var/lib/phoenix-agent/secrets/prod.headers.yaml}" in full["config_yaml"]
    assert SECRET not in str(full)
    status, listed, _ = http_json("GET", f"{stack.api.url}/api/v1/destinations/prod")
    assert listed["namespaces"] == ["web"]

    status, data, _ = http_json("DELETE", f"{stack.api.url}/api/v1/destinations/prod")
    assert status == 409 and kept["id"] in data["detail"], data
    status, local = deploy(destination=None)  # null: measured locally, shipped nowhere
    assert status == 201 and local["destination"] is None, local
    status, _, _ = http_json("DELETE", f"{stack.api.url}/api/v1/destinations/prod")
    assert status == 204
    status, _, _ = http_json("GET", f"{stack.api.url}/api/v1/destinations/prod")
    assert status == 404

    # The database holds the headers as ciphertext only: no table row shows the value.
    with psycopg.connect(stack.database_url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            rows = conn.execute(f'SELECT row_to_json(t)::text FROM "{table}" t').fetchall()
            assert not any(SECRET in r[0] for r in rows), table
