"""The backend down for a minute loses nothing: the persistent queue holds every datapoint, also across a
collector restart during the outage, and delivers them when Prometheus is back.

Run with `-s` to see the figures: per outage, the datapoints of one steady series expected over the
outage window (one per collection; none while the collector itself was down) and those Prometheus holds.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from typing import Any

from tests.support import wait_for
from tests.support.agents import agent_row, wait_registered
from tests.support.backends import Prometheus
from tests.support.services import Stack
from tests.support.shipping import deployed_to

OUTAGE_SECONDS = float(os.environ.get("PHOENIX_OUTAGE_SECONDS", "60"))
INTERVAL = 1.0


def _export(stack: Stack, host_id: str) -> dict[str, Any]:
    return dict(agent_row(stack.api, host_id).get("export") or {})


def _outage(
    stack: Stack, prometheus: Prometheus, host_id: str, selector: str, restart_collector: bool
) -> dict[str, float]:
    """Stop Prometheus for OUTAGE_SECONDS (restarting the collector halfway if asked); the figures."""
    stopped_at = time.time()
    prometheus.stop()
    # While it is down the host says so: data waits in the queue and nothing is delivered.
    wait_for(
        lambda: (e := _export(stack, host_id)).get("state") == "failing" and e.get("queue_size", 0) > 0,
        timeout=30,
        what="the heartbeat to report the export failing with a growing queue",
    )
    down = 0.0
    if restart_collector:
        time.sleep(max(0.0, stopped_at + OUTAGE_SECONDS / 2 - time.time()))
        pid = agent_row(stack.api, host_id)["collector"]["pid"]
        killed = time.time()
        os.kill(pid, signal.SIGTERM)
        wait_for(
            lambda: (
                (c := agent_row(stack.api, host_id)["collector"]).get("pid") not in (None, pid)
                and c.get("state") == "running"
            ),
            timeout=60,
            what="the agent to restart its collector",
        )
        down = time.time() - killed
    time.sleep(max(0.0, stopped_at + OUTAGE_SECONDS - time.time()))
    started_at = time.time()
    prometheus.start()
    wait_for(
        lambda: (e := _export(stack, host_id)).get("queue_size") == 0 and e.get("state") == "ok",
        timeout=180,
        what="the queue to drain into Prometheus",
    )
    wait_for(
        lambda: prometheus.samples(selector, started_at, time.time() + 1),
        timeout=60,
        what="fresh samples after the outage",
    )
    samples = prometheus.samples(selector, stopped_at, started_at)
    times = [t for t, _ in samples]
    gaps = sorted((b - a for a, b in itertools.pairwise(times)), reverse=True)
    window = started_at - stopped_at
    figures = {
        "outage_s": round(window, 1),
        "collector_down_s": round(down, 1),
        "expected": int((window - down) // INTERVAL),
        "received": len(samples),
        "largest_gap_s": round(gaps[0], 2) if gaps else 0.0,
    }
    print(f"\noutage figures (restart_collector={restart_collector}): {figures}")
    return figures


def test_a_minute_of_backend_outage_loses_no_datapoint_even_across_a_collector_restart(
    stack: Stack, agent_factory: Any, prometheus: Prometheus
) -> None:
    agent = agent_factory(stack.api.url)
    wait_registered(stack.api, agent)
    deployed_to(stack.api, agent.host_id, "prom", "prometheus_remote_write", prometheus.write_url)
    # One steady series: the agent's own process, user CPU, for the whole test.
    assert agent.process.proc is not None
    selector = f'process_cpu_time_seconds_total{{process_pid="{agent.process.proc.pid}",state="user"}}'
    wait_for(lambda: prometheus.query(selector), timeout=60, what="the steady series in Prometheus")

    for restart in (False, True):
        figures = _outage(stack, prometheus, agent.host_id, selector, restart_collector=restart)
        # One datapoint per collection of the window (the boundary collections may fall either side);
        # only the seconds the collector itself was down have none, and no other gap exists.
        assert figures["received"] >= figures["expected"] - 1, figures
        assert figures["largest_gap_s"] <= figures["collector_down_s"] + 2 * INTERVAL, figures
        if not restart:
            assert figures["largest_gap_s"] <= 1.5 * INTERVAL, figures


def test_a_full_queue_refuses_the_newest_counts_them_and_keeps_running(
    stack: Stack, agent_factory: Any, prometheus: Prometheus
) -> None:
    agent = agent_factory(stack.api.url)
    wait_registered(stack.api, agent)
    # The smallest queue the template allows: a few seconds of this host's process series.
    url = prometheus.write_url
    deployed_to(stack.api, agent.host_id, "prom", "prometheus_remote_write", url, ship_queue_points=1000)
    prometheus.stop()
    full = wait_for(
        lambda: (e := _export(stack, agent.host_id)).get("dropped_points", 0) > 0 and e,
        timeout=60,
        what="the full queue to refuse points",
    )
    assert full["state"] == "failing" and full["queue_capacity"] == 1000, full
    assert full["queue_size"] <= 1000, full
    collector = agent_row(stack.api, agent.host_id)["collector"]
    assert collector["state"] == "running" and collector["restarts"] == 0, collector
    prometheus.start()
    wait_for(
        lambda: _export(stack, agent.host_id).get("state") == "ok",
        timeout=120,
        what="delivery to resume once the backend is back",
    )
