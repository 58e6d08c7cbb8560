"""Issue 7, agent faults: an agent SIGKILLed in the middle of a task, and the control plane SIGKILLed under
polling agents. Real API, generator, PostgreSQL, agents and collectors, all as subprocesses."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

from tests.support import free_port, http_json, wait_for
from tests.support.agents import agent_row, scrape, wait_registered, wait_running
from tests.support.faults import (
    alive,
    collector_pid,
    control_plane,
    deploy_to,
    deployment_task,
    events,
    log_time,
    parse_time,
    sha256_file,
    sigkill,
    task_events,
)

NAMESPACE = "default"
# A lease short enough that a dead agent's task comes back within seconds, reaped twice a second.
SHORT_LEASE = {"PHOENIX_LEASE_SECONDS": "4", "PHOENIX_REAP_INTERVAL": "0.5"}


def _ports() -> dict[str, int]:
    return {"prometheus_port": free_port(), "health_port": free_port(), "telemetry_port": free_port()}


def test_agent_killed_mid_task_gets_the_task_again_and_completes_it_once(
    database_url: str, tmp_path: Path, agent_factory: Any
) -> None:
    with control_plane(database_url, tmp_path, env=SHORT_LEASE) as cp:
        api = cp.api
        agent = agent_factory(api.url)
        wait_registered(api, agent)
        first_ports, second_ports = _ports(), _ports()
        first = deploy_to(api, NAMESPACE, first_ports, "before")
        wait_running(api, agent.host_id, first["config_hash"], "the first deployment to run")

        second = deploy_to(api, NAMESPACE, second_ports, "interrupted")

        def running() -> dict[str, Any]:
            row = deployment_task(api, agent.host_id, second["id"])
            return row if row.get("status") == "running" else {}

        task = wait_for(
            running,
            timeout=60,
            what="the agent to report the second deployment running",
        )
        task_id = str(task["id"])
        assert task["attempts"] == 1
        # Kill it at the worst moment: the new config is swapped in, not yet proven healthy.
        wait_for(
            lambda: events(agent, "collector_config_swapped", task_id=task_id),
            timeout=30,
            interval=0.02,
            what="the agent to swap the new config in",
        )
        old_collector = collector_pid(agent)
        assert agent.process.proc is not None
        sigkill(agent.process.proc.pid)
        agent.process.proc.wait(10)
        killed_at = time.time()
        # It really died mid-task: nothing reported the task finished, here or queued in its outbox.
        assert deployment_task(api, agent.host_id, second["id"])["status"] == "running"
        assert not [e for e in agent.outbox() if e["body"].get("status") in ("completed", "failed")]
        assert not events(agent, "collector_config_applied", task_id=task_id)
        # Its collector gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and exits: no orphan keeps the ports.
        wait_for(lambda: not alive(old_collector), timeout=15, what="the collector to die with its agent")

        agent.process.start()
        restarted_at = time.time()

        def completed() -> dict[str, Any]:
            row = deployment_task(api, agent.host_id, second["id"])
            assert row["status"] != "failed", row
            return row if row["status"] == "completed" else {}

        done = wait_for(completed, timeout=60, what="the redelivered task to complete")
        completed_at = time.time()
        assert done["attempts"] == 2, done
        assert done["result"] == {"config_hash": second["config_hash"], "health": "ok"}
        kinds = task_events(cp.database_url, task_id)
        assert kinds.count("task_requeued") == 1, kinds
        assert kinds.count("task_completed") == 1, kinds
        assert "task_failed" not in kinds, kinds
        # Requeued by lease expiry, after the restart (the restarted agent does not list the dead one's
        # task in its heartbeats, so nothing extends that lease).
        assert kinds.index("task_requeued") < kinds.index("task_completed")

        # The restarted agent first put back the proven config (the swapped-in one was never confirmed) ...
        restored = events(agent, "collector_config_restored", since=restarted_at - 1)
        assert [r["reason"] for r in restored] == ["unconfirmed"], restored
        # ... then applied the redelivered task, once: the collector ends on the deployed config.
        applied = events(agent, "collector_config_applied", config_hash=second["config_hash"])
        assert len(applied) == 1, applied
        wait_running(api, agent.host_id, second["config_hash"], "the heartbeat to report the new hash")
        assert sha256_file(agent.config_path) == second["config_hash"]
        wait_for(
            lambda: "process_cpu_time_seconds_total" in scrape(second_ports["prometheus_port"]),
            timeout=30,
            what="the deployed config's exporter",
        )
        assert scrape(first_ports["prometheus_port"]) == ""
        assert agent_row(api, agent.host_id)["collector"]["state"] == "running"
        print(
            f"\nSIGKILL mid-task: redelivered and completed {completed_at - killed_at:.1f}s after the kill "
            f"({completed_at - restarted_at:.1f}s after the restart; lease 4s, reaper 0.5s)"
        )


def test_agents_ride_out_a_control_plane_crash_and_reconnect_with_jitter(
    database_url: str, tmp_path: Path, agent_factory: Any
) -> None:
    backoff_max = 4.0
    with control_plane(database_url, tmp_path) as cp:
        api = cp.api
        agents = []
        deployed: dict[str, dict[str, Any]] = {}
        ports: dict[str, dict[str, int]] = {}
        for i in range(3):
            # One namespace per agent: their collectors run side by side on this machine, on their own ports.
            namespace = f"fault-{i}"
            agent = agent_factory(
                api.url,
                root=tmp_path / f"host-{i}",
                host_id=f"fault-host-{i}-{free_port()}",
                poll="10s",
                env={"PHOENIX_AGENT_NAMESPACE": namespace, "PHOENIX_AGENT_BACKOFF_MAX": f"{backoff_max:g}s"},
            )
            wait_registered(api, agent)
            agents.append(agent)
            ports[agent.host_id] = _ports()
            deployed[agent.host_id] = deploy_to(api, namespace, ports[agent.host_id], f"good-{i}")
        for agent in agents:
            wait_running(api, agent.host_id, deployed[agent.host_id]["config_hash"], "each deployment to run")
        before = {a.host_id: agent_row(api, a.host_id)["collector"]["pid"] for a in agents}
        for agent in agents:
            assert before[agent.host_id] == collector_pid(agent)

        assert api.process.proc is not None
        killed_at = time.time()
        sigkill(api.process.proc.pid)
        api.process.proc.wait(10)

        def last_good_config_runs() -> None:
            for agent in agents:
                assert alive(before[agent.host_id]), f"{agent.host_id}'s collector died"
                assert collector_pid(agent) == before[agent.host_id]
                assert sha256_file(agent.config_path) == deployed[agent.host_id]["config_hash"]
                assert "process_cpu_time_seconds_total" in scrape(ports[agent.host_id]["prometheus_port"])

        last_good_config_runs()

        # Wait (on the agents' own logs) until each has retried its poll five times against the dead API.
        def retries(agent: Any) -> list[dict[str, Any]]:
            return events(agent, "control_plane_unavailable", since=killed_at, call="poll")

        wait_for(
            lambda: all(len(retries(a)) >= 5 for a in agents),
            timeout=60,
            interval=0.2,
            what="five poll retries per agent while the API is down",
        )
        # Down for many seconds now: every collector still runs its last good config, untouched.
        last_good_config_runs()

        api.start()
        restarted_at = time.time()

        # Backoff with full jitter: each delay random in [0, min(cap, 0.5 s x 2^(n-1))], per agent.
        delays = {a.host_id: [float(r["retry_in_seconds"]) for r in retries(a)] for a in agents}
        for agent in agents:
            lines = retries(agent)
            assert [r["attempt"] for r in lines] == list(range(1, len(lines) + 1)), lines
            for r in lines:
                ceiling = min(backoff_max, 0.5 * 2 ** (r["attempt"] - 1))
                assert 0 <= r["retry_in_seconds"] <= ceiling + 0.01, (agent.host_id, delays[agent.host_id])
        assert len({tuple(seq[:5]) for seq in delays.values()}) == len(agents), delays
        # When each agent's attempts were due: not in lockstep although they all lost the API at once.
        attempt_times = {
            a.host_id: [log_time(r) + float(r["retry_in_seconds"]) for r in retries(a)] for a in agents
        }

        def reconnected(agent: Any) -> list[dict[str, Any]]:
            return events(agent, "control_plane_reachable", since=restarted_at - 1, call="poll")

        wait_for(
            lambda: all(reconnected(a) for a in agents),
            timeout=60,
            interval=0.2,
            what="every agent to reconnect",
        )
        # The attempt that got through started when the last failed one's backoff ended (its answer, a
        # long poll, came back up to poll_interval later, when `control_plane_reachable` was logged).
        back = sorted(log_time(retries(a)[-1]) + float(retries(a)[-1]["retry_in_seconds"]) for a in agents)
        assert back[-1] - back[0] >= 0.05, f"the agents reconnected in lockstep: {back}"

        # Heartbeats are seen again ...
        def heartbeats_after_restart() -> bool:
            return all(parse_time(agent_row(api, a.host_id)["last_seen_at"]) > restarted_at for a in agents)

        wait_for(heartbeats_after_restart, timeout=30, what="heartbeats after the restart")
        # ... and a new task reaches each agent and completes.
        asked = {}
        for agent in agents:
            code, body, _ = http_json(
                "POST", f"{api.url}/api/v1/tasks", {"type": "health", "host_id": agent.host_id}
            )
            assert code == 202, body
            asked[agent.host_id] = body["task_ids"][0]

        def health_done(agent: Any) -> dict[str, Any]:
            code, body, _ = http_json("GET", f"{api.url}/api/v1/tasks?host_id={agent.host_id}")
            assert code == 200, body
            found = [t for t in body["tasks"] if str(t["id"]) == asked[agent.host_id]]
            return dict(found[0]) if found and found[0]["status"] == "completed" else {}

        for agent in agents:
            result = wait_for(
                functools.partial(health_done, agent), timeout=60, what="a health task after the restart"
            )
            collector = result["result"]["collector"]
            assert collector["state"] == "running"
            assert collector["pid"] == before[agent.host_id]
            assert collector["config_hash"] == deployed[agent.host_id]["config_hash"]
        print(
            f"\nAPI down {restarted_at - killed_at:.1f}s; poll retry delays per agent (s): "
            + "; ".join(" ".join(f"{d:.2f}" for d in seq) for seq in delays.values())
            + "\nfirst retry due at (s after the kill): "
            + " ".join(f"{min(t) - killed_at:.2f}" for t in attempt_times.values())
            + f"\nreconnected {back[0] - restarted_at:.2f}..{back[-1] - restarted_at:.2f}s after the restart "
            f"(spread {back[-1] - back[0]:.2f}s)"
        )
