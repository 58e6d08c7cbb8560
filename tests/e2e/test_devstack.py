"""`make dev-up` / `make dev-down`: the whole stack in the background, and nothing left after."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil

from tests.support import ROOT, free_port, http_json


def devstack(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scripts/devstack.py", command],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dev_up_twice_then_down_leaves_nothing(tmp_path: Path, otelcol_bin: Path) -> None:
    env = {
        "STATE_DIR": str(tmp_path / "dev"),
        "PHOENIX_DEV_API_PORT": str(free_port()),
        "PHOENIX_DEV_GENERATOR_PORT": str(free_port()),
        "PHOENIX_DEV_COLLECTOR_HEALTH_PORT": str(free_port()),
        "PHOENIX_DEV_PROMETHEUS_PORT": str(free_port()),
        "PHOENIX_DEV_HOST_ID": "devstack-test",
    }
    api = f"http://127.0.0.1:{env['PHOENIX_DEV_API_PORT']}"
    try:
        first = devstack("up", env)
        assert first.returncode == 0, first.stderr + first.stdout
        pids = {p.stem: int(p.read_text()) for p in (tmp_path / "dev" / "run").glob("*.pid")}
        assert set(pids) == {"api", "generator", "agent", "prometheus"}
        status, agent, _ = http_json("GET", f"{api}/api/v1/agents/devstack-test")
        assert status == 200 and agent["status"] == "healthy"
        assert http_json("GET", f"http://127.0.0.1:{env['PHOENIX_DEV_GENERATOR_PORT']}/health")[0] == 200

        second = devstack("up", env)
        assert second.returncode == 0, second.stderr
        again = {p.stem: int(p.read_text()) for p in (tmp_path / "dev" / "run").glob("*.pid")}
        assert again == pids, "a second dev-up must not start anything new"
        family = {pid for pid in pids.values()}
        for pid in pids.values():
            family |= {c.pid for c in psutil.Process(pid).children(recursive=True)}
    finally:
        down = devstack("down", env)
    assert down.returncode == 0, down.stderr
    alive = [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert alive == [], f"left running: {alive}"
    postmaster = tmp_path / "dev" / "api" / "pgdata" / "postmaster.pid"
    assert not postmaster.exists(), "the embedded PostgreSQL must be stopped"
