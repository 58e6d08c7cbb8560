"""Issue 7, collector faults: a collector that crashes in a loop, and a deployment that makes it crash.
Real API, generator, PostgreSQL, agent and collector, all as subprocesses."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

import psycopg

from agent.supervisor import ProcessSupervisor
from tests.support import eventually, free_port, http_json, wait_for
from tests.support.agents import agent_row, scrape, wait_registered, wait_running
from tests.support.faults import (
    alive,
    collector_pid,
    control_plane,
    deploy_to,
    deployment_task,
    events,
    get_deployment,
    hold_port,
    log_time,
    sha256_file,
)

NAMESPACE = "default"
# Restart delays 0.25, 0.5, 1, 2, 2, ... s: the cap shows within seconds.
CRASH_BACKOFF = {
    "PHOENIX_AGENT_COLLECTOR__RESTART_BACKOFF_INITIAL": "250ms",
    "PHOENIX_AGENT_COLLECTOR__RESTART_BACKOFF_MAX": "2s",
}
PORT_TAKEN = "address already in use"


def _ports() -> dict[str, int]:
    return {"prometheus_port": free_port(), "health_port": free_port(), "telemetry_port": free_port()}


def _try_hold(port: int) -> socket.socket | None:
    try:
        return hold_port(port)
    except OSError:
        return None


def test_crash_looping_collector_is_restarted_with_capped_backoff_and_reported_unhealthy(
    database_url: str, tmp_path: Path, agent_factory: Any
) -> None:
    with control_plane(database_url, tmp_path) as cp:
        api = cp.api
        agent = agent_factory(api.url, env=CRASH_BACKOFF)
        wait_registered(api, agent)
        ports = _ports()
        created = deploy_to(api, NAMESPACE, ports, "good")
        wait_running(api, agent.host_id, created["config_hash"], "the deployment to run")
        first = collector_pid(agent)

        # The collector dies and, before it is back, another program takes its exporter port: every restart
        # now fails. The agent is paused meanwhile so that the port is surely taken before it restarts.
        assert agent.process.proc is not None
        agent_pid = agent.process.proc.pid
        os.kill(agent_pid, signal.SIGSTOP)
        try:
            crashed_at = time.time()
            os.kill(first, signal.SIGKILL)
            holder = wait_for(
                lambda: _try_hold(ports["prometheus_port"]), timeout=10, interval=0.01, what="the freed port"
            )
        finally:
            os.kill(agent_pid, signal.SIGCONT)
        assert holder is not None
        try:

            def exits() -> list[dict[str, Any]]:
                return events(agent, "collector_exited", since=crashed_at)

            def six_exits() -> list[dict[str, Any]]:
                found = exits()
                return found if len(found) >= 6 else []

            found = wait_for(six_exits, timeout=60, interval=0.1, what="six crashes")
            # Restarted with growing, capped delays (all logged) ...
            assert [e["restart_in_seconds"] for e in found[:6]] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0], found
            assert found[0]["code"] == -signal.SIGKILL
            assert all(PORT_TAKEN in e["error"] for e in found[1:]), found
            assert [e["consecutive_crashes"] for e in found[:6]] == [1, 2, 3, 4, 5, 6]
            # ... and it really waited that long before each restart.
            starts = events(agent, "collector_started", since=crashed_at)
            waited = [log_time(s) - log_time(e) for e, s in zip(found[:5], starts, strict=False)]
            assert len(waited) == 5, starts
            for gap, e in zip(waited, found, strict=False):
                assert gap >= e["restart_in_seconds"] - 0.05, (waited, found)

            # The agent reports it unhealthy, with the collector's own error, while it crash-loops.
            def reported_failed() -> dict[str, Any]:
                collector = dict(agent_row(api, agent.host_id).get("collector") or {})
                return collector if collector.get("state") == "failed" and collector["restarts"] >= 6 else {}

            collector = wait_for(reported_failed, timeout=30, what="a heartbeat saying the collector failed")
            assert PORT_TAKEN in collector["last_error"], collector
            assert collector["config_hash"] == created["config_hash"]
            code, text, _ = http_json("GET", f"{api.url}/metrics")
            assert code == 200
            match = re.search(
                rf'^phoenix_agent_collector_restarts_total\{{host_id="{re.escape(agent.host_id)}"\}} (\S+)$',
                str(text),
                re.MULTILINE,
            )
            assert match and float(match.group(1)) >= 6, match
        finally:
            holder.close()
            released_at = time.time()

        # Once the port is free the next restart takes: the same config runs and is reported running again.
        def running_again() -> dict[str, Any]:
            collector = dict(agent_row(api, agent.host_id).get("collector") or {})
            return collector if collector.get("state") == "running" else {}

        collector = wait_for(running_again, timeout=30, what="the collector to run again")
        recovered_at = time.time()
        assert collector["config_hash"] == created["config_hash"]
        assert sha256_file(agent.config_path) == created["config_hash"]
        assert collector["pid"] != first and alive(collector["pid"])
        wait_for(
            lambda: "process_cpu_time_seconds_total" in scrape(ports["prometheus_port"]),
            timeout=30,
            what="the exporter to answer again",
        )
        print(
            f"\ncrash loop: {len(exits())} exits, restart delays "
            + " ".join(f"{e['restart_in_seconds']:g}" for e in exits())
            + " s; waited "
            + " ".join(f"{g:.2f}" for g in waited)
            + f" s; running again {recovered_at - released_at:.1f}s after the port was freed"
        )


def test_deployment_that_crashes_the_collector_fails_and_the_previous_config_runs_again(
    database_url: str, tmp_path: Path, agent_factory: Any
) -> None:
    with control_plane(database_url, tmp_path) as cp:
        api = cp.api
        agent = agent_factory(api.url, env=CRASH_BACKOFF)
        wait_registered(api, agent)
        good_ports = _ports()
        good = deploy_to(api, NAMESPACE, good_ports, "good")
        wait_running(api, agent.host_id, good["config_hash"], "the good deployment to run")

        # A config the collector accepts (`validate` does not bind ports) but cannot run: its exporter's
        # port is taken by another program.
        taken = free_port()
        with hold_port(taken):
            bad = deploy_to(api, NAMESPACE, {**_ports(), "prometheus_port": taken}, "crashes")
            applied_at = time.time()

            def finished() -> dict[str, Any]:
                task = deployment_task(api, agent.host_id, bad["id"])
                return task if task.get("status") in ("completed", "failed") else {}

            task = wait_for(finished, timeout=60, what="the crashing deployment's task to finish")
            failed_at = time.time()
            assert task["status"] == "failed", task
            assert task["attempts"] == 1
            # The collector's own words, then what the agent did about it.
            assert PORT_TAKEN in task["error"] and str(taken) in task["error"], task["error"]
            assert task["error"].endswith("restored the last good config"), task["error"]
            assert get_deployment(api, bad["id"])["tasks"] == {"failed": 1}
            # The control plane fails the deployment, with the host's error, and restores the previous one.
            failed = wait_for(
                lambda: (d := get_deployment(api, bad["id"]))["status"] == "failed" and d,
                timeout=15,
                what="the deployment to be marked failed",
            )
            marked_at = time.time()
            assert agent.host_id in failed["status_reason"] and PORT_TAKEN in failed["status_reason"], failed
            (event,) = deployment_events(cp.database_url, bad["id"], "deployment_failed")
            assert event["failed_hosts"] == {agent.host_id: task["error"]}, event
            assert event["restored"] == good["id"] and event["failed_host_count"] == 1, event
            restored = get_deployment(api, good["id"])
            assert restored["status"] == "active" and restored["restored_at"], restored

            # The previous good config is back and running, and the heartbeat says so.
            def good_again() -> dict[str, Any]:
                row = agent_row(api, agent.host_id)
                collector = dict(row.get("collector") or {})
                # A heartbeat sent after the crash (restarts counted) says the good config runs again.
                ok = (
                    row.get("config_hash") == good["config_hash"]
                    and collector.get("state") == "running"
                    and collector.get("restarts", 0) >= 1
                )
                return collector if ok else {}

            collector = wait_for(good_again, timeout=30, what="the previous config to be reported running")
            assert PORT_TAKEN in collector["last_error"], collector
            assert sha256_file(agent.config_path) == good["config_hash"]
            assert "process_cpu_time_seconds_total" in scrape(good_ports["prometheus_port"])
            crashes = events(agent, "collector_exited", since=applied_at)
            assert crashes and all(PORT_TAKEN in e["error"] for e in crashes), crashes
            assert events(agent, "collector_rolled_back", config_hash=good["config_hash"])
            # The host's agent does not get the failed deployment again by itself.
            assert [t["status"] for t in _deployment_tasks(api, agent.host_id, bad["id"])] == ["failed"]
        assert get_deployment(api, bad["id"])["status"] == "failed"
        assert get_deployment(api, good["id"])["status"] == "active"
        print(
            f"\ncrashing deployment: task failed {failed_at - applied_at:.1f}s after the deploy, "
            f"{len(crashes)} collector crash(es), previous config running; deployment marked failed and "
            f"the previous one active again {marked_at - failed_at:.1f}s after the task failed"
        )


def deployment_events(database_url: str, deployment_id: str, kind: str) -> list[dict[str, Any]]:
    """The data of the audit-log events of one kind about a deployment, oldest first."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT data FROM events WHERE kind = %s AND subject = %s ORDER BY id", (kind, deployment_id)
        ).fetchall()
    return [dict(r[0]) for r in rows]


def _deployment_tasks(api: Any, host_id: str, deployment_id: str) -> list[dict[str, Any]]:
    code, body, _ = http_json("GET", f"{api.url}/api/v1/tasks?host_id={host_id}")
    assert code == 200, body
    return [t for t in body["tasks"] if t["deployment_id"] == deployment_id]


async def test_a_collector_up_between_crashes_is_not_reported_running(
    tmp_path: Path, otelcol_bin: Path
) -> None:
    """In a crash loop the collector is alive for moments between backoffs: those must read as failed, and
    only a collector that says its pipelines run reads as running again."""
    port, health = free_port(), free_port()
    config = tmp_path / "collector.yaml"
    config.write_text(
        "receivers:\n  hostmetrics/phoenix:\n    collection_interval: 1s\n    scrapers:\n      cpu: {}\n"
        f"exporters:\n  prometheus/main:\n    endpoint: 127.0.0.1:{port}\n"
        f"extensions:\n  health_check:\n    endpoint: 127.0.0.1:{health}\n"
        "service:\n  extensions: [health_check]\n  telemetry:\n    metrics:\n      level: none\n"
        "  pipelines:\n    metrics/main:\n      receivers: [hostmetrics/phoenix]\n"
        "      exporters: [prometheus/main]\n"
    )
    sup = ProcessSupervisor(str(otelcol_bin), config, backoff_initial=0.05, backoff_max=0.2)
    seen: list[tuple[str, bool]] = []
    with hold_port(port):
        await sup.start()
        deadline = time.monotonic() + 30
        restarts = 0
        # Sample through several crashes (from the first on), including moments when the process is up.
        while (restarts < 5 or not any(up for _, up in seen)) and time.monotonic() < deadline:
            state = await sup.state()
            restarts = state.restarts
            if restarts:
                seen.append((state.state, await sup.is_active()))
            await asyncio.sleep(0.01)
        try:
            assert restarts >= 5 and any(up for _, up in seen), seen[-20:]
            assert {name for name, _ in seen} == {"failed"}, seen
            state = await sup.state()
            assert state.last_error and PORT_TAKEN in state.last_error
        except BaseException:
            await sup.stop()
            raise
    try:
        await eventually(lambda: _state_is(sup, "running"), 30, "the collector to run once the port is free")
        assert sup.ready
    finally:
        await sup.stop()


async def _state_is(sup: Any, state: str) -> bool:
    return (await sup.state()).state == state
