"""Supervisors: the real collector as a child process; systemd through a recording systemctl stand-in."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from agent.supervisor import ProcessSupervisor, SupervisorError, SupervisorState, SystemdSupervisor
from tests.support import eventually
from tests.support.agent_harness import Ports, collector_yaml, get_text, serves


async def test_process_supervisor_runs_restarts_and_counts(
    tmp_path: Path, otelcol_bin: Path, http: aiohttp.ClientSession
) -> None:
    ports = Ports.pick()
    config = tmp_path / "collector.yaml"
    config.write_text(collector_yaml(ports))
    sup = ProcessSupervisor(str(otelcol_bin), config, backoff_initial=0.2)
    health = f"http://127.0.0.1:{ports.health}/"
    try:
        await sup.start()
        await eventually(lambda: serves(http, health), what="collector health")
        first = await sup.pid()
        assert first is not None
        assert (await sup.state()).state == "running"
        assert (await sup.state()).restarts == 0

        os.kill(first, signal.SIGKILL)
        await eventually(lambda: _restarted(sup, first), what="a new collector process")
        state = await sup.state()
        assert state.restarts == 1
        assert state.last_error is not None and "exited with code" in state.last_error
        await eventually(lambda: serves(http, health), what="collector health after restart")
    finally:
        await sup.stop()
    assert (await sup.state()).state == "stopped"
    assert not await serves(http, health)


async def _restarted(sup: ProcessSupervisor, old: int) -> bool:
    pid = await sup.pid()
    return pid is not None and pid != old


async def test_reload_is_sighup_and_reads_the_new_config(
    tmp_path: Path, otelcol_bin: Path, http: aiohttp.ClientSession
) -> None:
    """The real collector re-reads its config on SIGHUP, so reload keeps the pid."""
    a, b = Ports.pick(), Ports.pick()
    config = tmp_path / "collector.yaml"
    config.write_text(collector_yaml(a))
    sup = ProcessSupervisor(str(otelcol_bin), config)
    try:
        await sup.start()
        await eventually(
            lambda: serves(http, f"http://127.0.0.1:{a.prometheus}/metrics"), what="first exporter"
        )
        await eventually(lambda: sup.ready, what="the collector to say it is ready")
        pid = await sup.pid()
        config.write_text(collector_yaml(b))
        await sup.reload()
        await eventually(
            lambda: serves(http, f"http://127.0.0.1:{b.prometheus}/metrics"), what="new exporter"
        )
        assert not await serves(http, f"http://127.0.0.1:{a.prometheus}/metrics")
        assert await sup.pid() == pid
        assert (await sup.state()).restarts == 0
    finally:
        await sup.stop()


async def test_collector_error_text_is_kept(
    tmp_path: Path, otelcol_bin: Path, http: aiohttp.ClientSession
) -> None:
    """A collector that cannot bind its port dies; its own error line becomes last_error."""
    ports = Ports.pick()
    config = tmp_path / "collector.yaml"
    config.write_text(collector_yaml(ports))
    blocker = await _listen(ports.prometheus)
    sup = ProcessSupervisor(str(otelcol_bin), config, backoff_initial=5.0)
    try:
        await sup.start()
        state = await eventually(lambda: _failed(sup), what="a failed start")
        assert "address already in use" in (state.last_error or "")
        assert state.last_error.startswith("Error:")
        assert any("address already in use" in line for line in sup.stderr_tail())
    finally:
        await sup.stop()
        blocker.close()


async def _failed(sup: ProcessSupervisor) -> SupervisorState | None:
    state = await sup.state()
    return state if state.restarts >= 1 else None


async def _listen(port: int) -> asyncio.Server:
    return await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)


async def test_reload_before_ready_restarts_instead_of_killing(
    tmp_path: Path, otelcol_bin: Path, http: aiohttp.ClientSession
) -> None:
    """SIGHUP before the collector installed its handler would kill it: reload restarts it instead."""
    a, b = Ports.pick(), Ports.pick()
    config = tmp_path / "collector.yaml"
    config.write_text(collector_yaml(a))
    sup = ProcessSupervisor(str(otelcol_bin), config)
    try:
        await sup.start()
        config.write_text(collector_yaml(b))
        await sup.reload()  # at once: the collector is not ready yet
        await eventually(
            lambda: serves(http, f"http://127.0.0.1:{b.prometheus}/metrics"), what="new exporter"
        )
        assert (await sup.state()).restarts == 0
    finally:
        await sup.stop()


async def test_missing_binary_is_reported_not_raised(tmp_path: Path) -> None:
    sup = ProcessSupervisor(str(tmp_path / "no-such-otelcol"), tmp_path / "c.yaml", backoff_initial=5.0)
    try:
        await sup.start()
        state = await sup.state()
        assert state.state == "failed"
        assert "cannot run" in (state.last_error or "")
    finally:
        await sup.stop()


STAND_IN = """\
#!{python}
# Records each call; answers like systemctl for one unit whose state lives in a file.
import json, pathlib, sys, time
here = pathlib.Path({dir!r})
with open(here / "calls.jsonl", "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
state = here / "state"
active = state.exists() and state.read_text() == "active"
verb = sys.argv[1]
if verb in ("start", "restart"):
    state.write_text("active"); sys.exit(0)
if verb == "reload":
    if not active:
        print("Job for otelcol.service failed: unit is not active.", file=sys.stderr); sys.exit(1)
    sys.exit(0)
if verb == "stop":
    state.write_text("inactive"); sys.exit(0)
if verb == "is-active":
    print("active" if active else "inactive"); sys.exit(0 if active else 3)
if verb == "show":
    print("ActiveState=" + ("active" if active else "inactive"))
    print("MainPID=" + ("4242" if active else "0"))
    print("NRestarts=2")
    print("Result=success")
    if "ActiveEnterTimestampMonotonic" in sys.argv:
        # Monotonic microseconds: an hour ago, or now when the test marks the unit as just started.
        ago = 0 if (here / "fresh").exists() else 3600 * 10**6
        print("ActiveEnterTimestampMonotonic=" + str(int(time.monotonic() * 1e6) - ago))
    sys.exit(0)
sys.exit(2)
"""


@pytest.fixture
def systemctl(tmp_path: Path) -> Path:
    """A stand-in for systemctl: systemd cannot run as PID 1 in this test environment, so the
    supervisor is checked against the exact commands it issues instead."""
    script = tmp_path / "systemctl"
    script.write_text(STAND_IN.format(python=sys.executable, dir=str(tmp_path)))
    script.chmod(0o755)
    return script


def calls(tmp_path: Path) -> list[list[str]]:
    import json

    return [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]


async def test_systemd_supervisor_issues_systemctl_commands(tmp_path: Path, systemctl: Path) -> None:
    sup = SystemdSupervisor(str(systemctl), "otelcol.service")
    assert not await sup.is_active()
    assert (await sup.state()).state == "stopped"
    assert await sup.pid() is None
    # Reloading a stopped unit fails; the supervisor restarts it instead.
    await sup.reload()
    assert await sup.is_active()
    assert await sup.pid() == 4242
    state = await sup.state()
    assert (state.state, state.restarts, state.pid) == ("running", 2, 4242)
    await sup.reload()
    await sup.restart()
    await sup.stop()
    await sup.start()
    (tmp_path / "fresh").write_text("")
    await sup.reload()  # just started: restarted instead, so that SIGHUP cannot kill it before it handles it
    show_state = [
        "show",
        "-p",
        "ActiveState",
        "-p",
        "MainPID",
        "-p",
        "NRestarts",
        "-p",
        "Result",
        "otelcol.service",
    ]
    show_start = ["show", "-p", "ActiveEnterTimestampMonotonic", "otelcol.service"]
    assert calls(tmp_path) == [
        ["is-active", "otelcol.service"],
        show_state,
        ["show", "-p", "MainPID", "otelcol.service"],
        show_start,
        ["reload", "otelcol.service"],
        ["restart", "otelcol.service"],
        ["is-active", "otelcol.service"],
        ["show", "-p", "MainPID", "otelcol.service"],
        show_state,
        show_start,
        ["reload", "otelcol.service"],
        ["restart", "otelcol.service"],
        ["stop", "otelcol.service"],
        ["start", "otelcol.service"],
        show_start,
        ["restart", "otelcol.service"],
    ]


async def test_systemd_supervisor_failure_names_the_command(tmp_path: Path) -> None:
    failing = tmp_path / "systemctl"
    failing.write_text(
        f"#!{sys.executable}\nimport sys\nprint('Unit otelcol.service not found.')\nsys.exit(5)\n"
    )
    failing.chmod(0o755)
    sup = SystemdSupervisor(str(failing), "otelcol.service")
    with pytest.raises(SupervisorError, match=r"systemctl start otelcol.service failed \(exit 5\): Unit"):
        await sup.start()
    with pytest.raises(SupervisorError, match="cannot run"):
        await SystemdSupervisor(str(tmp_path / "missing"), "otelcol.service").start()


async def test_health_endpoint_reports_a_new_up_since_after_reload(
    tmp_path: Path, otelcol_bin: Path, http: aiohttp.ClientSession
) -> None:
    """What the safe apply relies on: the health_check extension restarts (new upSince) on SIGHUP."""
    import json

    ports = Ports.pick()
    config = tmp_path / "collector.yaml"
    config.write_text(collector_yaml(ports))
    sup = ProcessSupervisor(str(otelcol_bin), config)
    url = f"http://127.0.0.1:{ports.health}/"
    try:
        await sup.start()
        await eventually(lambda: serves(http, url), what="health")
        before = json.loads((await get_text(http, url))[1])["upSince"]
        await sup.reload()

        async def changed() -> bool:
            status, text = await get_text(http, url)
            return status == 200 and json.loads(text)["upSince"] != before

        await eventually(changed, what="a new upSince")
    finally:
        await sup.stop()
