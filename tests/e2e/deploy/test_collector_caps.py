"""otelcol.service's capabilities on the real collector: its process scraper reads other users' /proc.

systemd cannot start the unit here, so setpriv applies what the unit asks for (another user, the unit's
AmbientCapabilities= and CapabilityBoundingSet=, NoNewPrivileges=) and runs the real binary with a
hostmetrics process scraper. A root-owned process started by the test is the probe: with the unit's
capabilities the collector reports its executable and disk I/O; without them it cannot.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import Fatal, otelcol_binary, unavailable, wait_for
from tests.support.deploy import UNITS_DIR, require_root, require_tool

pytestmark = pytest.mark.collector

COLLECTOR_CONFIG = """\
receivers:
  hostmetrics:
    collection_interval: 1s
    scrapers:
      process:
        mute_process_exe_error: true
        mute_process_io_error: true
        mute_process_user_error: true
exporters:
  file:
    path: {out}
service:
  pipelines:
    metrics:
      receivers: [hostmetrics]
      exporters: [file]
  telemetry:
    metrics:
      level: none
"""


def unit_capabilities() -> list[str]:
    """setpriv's names for otelcol.service's AmbientCapabilities= (CAP_SYS_PTRACE -> sys_ptrace)."""
    for line in (UNITS_DIR / "otelcol.service").read_text().splitlines():
        if line.startswith("AmbientCapabilities="):
            return [cap.removeprefix("CAP_").lower() for cap in line.split("=", 1)[1].split()]
    raise AssertionError("otelcol.service has no AmbientCapabilities=")


def free_uid() -> int:
    lines = Path("/etc/passwd").read_text().splitlines()
    taken = {int(line.split(":")[2]) for line in lines if line.count(":") >= 3}
    return next(uid for uid in range(62000, 63000) if uid not in taken)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory the unprivileged collector can reach (pytest's own temp dirs are root-only)."""
    path = Path(tempfile.mkdtemp(prefix="phoenix-caps-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def root_process() -> Iterator[subprocess.Popen[bytes]]:
    """A process owned by root, which the collector's user cannot inspect without capabilities."""
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.kill()
    proc.wait()


def scrape_as_other_user(binary: Path, workdir: Path, uid: int, caps: list[str], pid: int) -> dict[str, Any]:
    """Run the collector as `uid` with `caps` until it has reported `pid`; return what it said about it."""
    out_dir = workdir / ("with-caps" if caps else "without-caps")
    out_dir.mkdir()
    os.chown(out_dir, uid, uid)
    config = out_dir / "collector.yaml"
    config.write_text(COLLECTOR_CONFIG.format(out=out_dir / "metrics.json"))
    config.chmod(0o644)
    setpriv = [require_tool("setpriv", "util-linux"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    if caps:
        wanted = ",".join(f"+{cap}" for cap in caps)
        setpriv += [f"--inh-caps={wanted}", f"--ambient-caps={wanted}", f"--bounding-set=-all,{wanted}"]
    else:
        setpriv += ["--inh-caps=-all", "--bounding-set=-all"]
    log = (out_dir / "collector.log").open("w")
    proc = subprocess.Popen(
        [*setpriv, "--no-new-privs", str(binary), "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def found() -> Any:
            if proc.poll() is not None:
                raise Fatal((out_dir / "collector.log").read_text()[-2000:])
            return reported(out_dir / "metrics.json", pid)

        return wait_for(found, timeout=60, what=f"the collector to report pid {pid}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def reported(metrics_file: Path, pid: int) -> dict[str, Any] | None:
    """The resource attributes and metric names the collector exported for process `pid`, if any yet."""
    if not metrics_file.exists():
        return None
    for line in metrics_file.read_text().splitlines():
        try:
            batch = json.loads(line)
        except json.JSONDecodeError:
            continue  # the exporter is still writing this line
        for resource in batch.get("resourceMetrics", []):
            attributes = {
                a["key"]: next(iter(a["value"].values())) for a in resource["resource"]["attributes"]
            }
            if str(attributes.get("process.pid")) == str(pid):
                names = {m["name"] for scope in resource["scopeMetrics"] for m in scope["metrics"]}
                return {"attributes": attributes, "metrics": names}
    return None


def test_unit_capabilities_let_the_collector_read_other_users_processes(
    workdir: Path, root_process: subprocess.Popen[bytes]
) -> None:
    binary = otelcol_binary()
    if binary is None:
        message = "the collector is not built: run `make otelcol`"
        unavailable(message)
    require_root("runs the collector as another user with chosen capabilities")
    uid = free_uid()
    sleep_path = os.path.realpath(shutil.which("sleep") or "/usr/bin/sleep")

    without = scrape_as_other_user(binary, workdir, uid, [], root_process.pid)
    # Unreadable /proc/<pid>/exe leaves the path empty.
    assert not without["attributes"].get("process.executable.path")
    assert "process.disk.io" not in without["metrics"]

    caps = unit_capabilities()
    with_caps = scrape_as_other_user(binary, workdir, uid, caps, root_process.pid)
    assert os.path.realpath(with_caps["attributes"]["process.executable.path"]) == sleep_path
    assert with_caps["attributes"]["process.owner"] == "root"
    assert "process.disk.io" in with_caps["metrics"]


@pytest.mark.parametrize("dropped", ["sys_ptrace", "dac_read_search"])
def test_each_unit_capability_is_needed(
    workdir: Path, root_process: subprocess.Popen[bytes], dropped: str
) -> None:
    """Neither capability alone gives the full picture: both stay in the unit."""
    binary = otelcol_binary()
    if binary is None:
        message = "the collector is not built: run `make otelcol`"
        unavailable(message)
    require_root("runs the collector as another user with chosen capabilities")
    caps = [cap for cap in unit_capabilities() if cap != dropped]
    result = scrape_as_other_user(binary, workdir, free_uid(), caps, root_process.pid)
    complete = bool(result["attributes"].get("process.executable.path")) and (
        "process.disk.io" in result["metrics"]
    )
    assert not complete, f"without {dropped} the collector still read everything: {result}"
