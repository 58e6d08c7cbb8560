"""A deployed pipeline ships to real backends: Debian's Prometheus by remote write, a collector's OTLP
receiver (gRPC and HTTP) behind a bearer token; a host that cannot deliver fails the rollout; the header
value is nowhere but the agent's 0600 file (and, sealed, the database)."""

from __future__ import annotations

import stat
import urllib.request
from typing import Any

import psycopg

from tests.support import http_json, wait_for
from tests.support.agents import agent_row, wait_registered, wait_running
from tests.support.backends import OtlpSink, Prometheus
from tests.support.services import Stack
from tests.support.shipping import SECRET, create_destination, deployed_to, ship, task_of


def export_of(stack: Stack, host_id: str) -> dict[str, Any]:
    return dict(agent_row(stack.api, host_id).get("export") or {})


def test_remote_write_reaches_prometheus_and_the_secret_stays_on_the_host(
    stack: Stack, agent_factory: Any, prometheus: Prometheus
) -> None:
    agent = agent_factory(stack.api.url)
    wait_registered(stack.api, agent)
    url = prometheus.write_url
    created = deployed_to(
        stack.api, agent.host_id, "prom", "prometheus_remote_write", url, headers={"Authorization": SECRET}
    )
    assert created["destination"] == "prom"
    assert task_of(stack.api, agent.host_id, created["id"])["result"]["destination"] == "prom"

    # Prometheus holds the host's process series, labelled as the pipeline's exporter shows them.
    found = wait_for(
        lambda: prometheus.query(
            'count(process_cpu_time_seconds_total{phoenix_pipeline="process-baseline-v1"})'
        ),
        timeout=60,
        what="the host's process series in Prometheus",
    )
    assert float(found[0]["value"][1]) > 0
    # Export health reaches the fleet view and /metrics.
    health = wait_for(
        lambda: (
            (e := export_of(stack, agent.host_id)).get("state") == "ok" and e.get("sent_points", 0) > 0 and e
        ),
        timeout=60,
        what="the heartbeat's export block to say ok",
    )
    assert health["destination"] == "prom" and health["exporter"] == "otlphttp/ship"
    with urllib.request.urlopen(f"{stack.api.url}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert f'phoenix_agent_export_failing{{host_id="{agent.host_id}"}} 0.0' in metrics
    assert f'phoenix_agent_export_sent_points{{host_id="{agent.host_id}"}}' in metrics

    # The header value: in the agent's own file, mode 0600, and nowhere else it could leak.
    headers = agent.state_dir / "secrets" / "prom.headers.yaml"
    assert SECRET in headers.read_text()
    assert stat.S_IMODE(headers.stat().st_mode) == 0o600
    assert "${file:" in agent.config_path.read_text() and SECRET not in agent.config_path.read_text()
    places = {
        "agent log": agent.process.log_path.read_text(errors="replace"),
        "API log": stack.api.process.log_path.read_text(errors="replace"),
        "generator log": stack.generator.process.log_path.read_text(errors="replace"),
        "collector.yaml": agent.config_path.read_text(),
        "last_good.yaml": (agent.state_dir / "last_good.yaml").read_text(),
    }
    for path in (
        f"/api/v1/tasks?host_id={agent.host_id}",
        "/api/v1/agents",
        "/api/v1/destinations",
        f"/api/v1/pipeline-deployments/{created['id']}",
    ):
        status, body, _ = http_json("GET", stack.api.url + path)
        assert status == 200, (path, body)
        places[path] = str(body)
    with psycopg.connect(stack.database_url) as conn:
        events = conn.execute("SELECT row_to_json(e)::text FROM events e").fetchall()
    places["events"] = "\n".join(r[0] for r in events)
    assert "destination_created" in places["events"]
    leaked = [where for where, text in places.items() if SECRET.split()[-1] in text]
    assert leaked == []


def test_otlp_carries_the_header_to_the_backend_and_a_host_that_cannot_deliver_fails_the_rollout(
    stack: Stack, agent_factory: Any, sink: OtlpSink
) -> None:
    agent = agent_factory(stack.api.url)
    wait_registered(stack.api, agent)
    create_destination(
        stack.api,
        "grpc",
        "otlp_grpc",
        f"127.0.0.1:{sink.grpc_port}",
        headers={"Authorization": SECRET},
        tls={"insecure": True},
    )
    good = ship(stack.api, "grpc")
    assert task_of(stack.api, agent.host_id, good["id"])["status"] == "completed"
    wait_for(
        lambda: sink.accepted("grpc") > 0, timeout=60, what="the sink to accept OTLP/gRPC with the token"
    )

    # Over HTTP with the token: accepted too.
    create_destination(
        stack.api,
        "http",
        "otlp_http",
        f"http://127.0.0.1:{sink.http_port}",
        headers={"Authorization": SECRET},
    )
    over_http = ship(stack.api, "http")
    assert task_of(stack.api, agent.host_id, over_http["id"])["status"] == "completed"
    wait_for(
        lambda: sink.accepted("http") > 0, timeout=60, what="the sink to accept OTLP/HTTP with the token"
    )

    # Without the header the backend refuses every batch: the host fails the task, the rollout fails
    # and the deployment before it ships again.
    create_destination(stack.api, "no-token", "otlp_http", f"http://127.0.0.1:{sink.http_port}")
    bad = ship(stack.api, "no-token")
    task = task_of(stack.api, agent.host_id, bad["id"])
    assert task["status"] == "failed", task
    assert "cannot deliver to its destination" in task["error"] and "refused" in task["error"], task

    def restored() -> bool:
        status, body, _ = http_json("GET", f"{stack.api.url}/api/v1/pipeline-deployments/{bad['id']}")
        return status == 200 and body["status"] == "failed"

    wait_for(restored, timeout=60, what="the failed rollout to be marked failed")
    _, back, _ = http_json("GET", f"{stack.api.url}/api/v1/pipeline-deployments/{over_http['id']}")
    assert back["status"] == "active", back
    wait_running(stack.api, agent.host_id, over_http["config_hash"], "the previous deployment to run again")
    before = sink.accepted("http")
    wait_for(lambda: sink.accepted("http") > before, timeout=60, what="the restored deployment to ship again")
