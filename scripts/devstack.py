"""`make dev-up` / `make dev-down`: the whole stack on this machine, in the background.

State, logs and pid files live under one directory (STATE_DIR, default .state/dev): the embedded
PostgreSQL (inside the API's state), the API on 8080, the config generator on 8082, a local agent
that runs the real collector (bin/otelcol-phoenix) with the process supervisor, and a local Prometheus
on 9090 with its remote-write receiver, the demo's destination (when Debian's `prometheus` is installed:
`make system-deps`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API_PORT = int(os.environ.get("PHOENIX_DEV_API_PORT", "8080"))
GEN_PORT = int(os.environ.get("PHOENIX_DEV_GENERATOR_PORT", "8082"))
HEALTH_PORT = int(os.environ.get("PHOENIX_DEV_COLLECTOR_HEALTH_PORT", "13133"))
PROMETHEUS_PORT = int(os.environ.get("PHOENIX_DEV_PROMETHEUS_PORT", "9090"))
# Stopped in this order; started in reverse.
SERVICES = ("agent", "generator", "api", "prometheus")


def state_dir() -> Path:
    return Path(os.environ.get("STATE_DIR", ROOT / ".state" / "dev")).resolve()


def host_id() -> str:
    return os.environ.get("PHOENIX_DEV_HOST_ID", f"{socket.gethostname()}-dev")


def _pid(name: str) -> int | None:
    path = state_dir() / "run" / f"{name}.pid"
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
        return None
    return pid


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def _agent_healthy(api_url: str) -> bool:
    """The agent has called since it started: its row says healthy (a row left from an earlier run is
    offline, and experiments target only hosts seen recently)."""
    status, body = _get(f"{api_url}/api/v1/agents/{host_id()}")
    try:
        return status == 200 and json.loads(body).get("status") == "healthy"
    except ValueError:
        return False


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait(what: str, check: callable, name: str, timeout: float = 90.0) -> None:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if _pid(name) is None:
            break
        time.sleep(0.2)
    log = state_dir() / "logs" / f"{name}.log"
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:]) if log.exists() else ""
    sys.exit(f"dev-up: {what} did not come up; last lines of {log}:\n{tail}")


def _spawn(name: str, args: list[str], env: dict[str, str], program: list[str] | None = None) -> None:
    """Start `python -m <args>` (or `program`) in the background, its log and pid under the state dir."""
    state = state_dir()
    (state / "logs").mkdir(parents=True, exist_ok=True)
    (state / "run").mkdir(parents=True, exist_ok=True)
    log = open(state / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        program or [sys.executable, "-m", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    (state / "run" / f"{name}.pid").write_text(str(proc.pid))


def _agent_config() -> Path:
    state = state_dir()
    agent_dir = state / "agent"
    agent_dir.mkdir(parents=True, exist_ok=True)
    config = agent_dir / "config.yaml"
    binary = os.environ.get("PHOENIX_OTELCOL", str(ROOT / "bin" / "otelcol-phoenix"))
    lines = {
        "api_url": f"http://127.0.0.1:{API_PORT}",
        "host_id": host_id(),
        "namespace": "default",
        "poll_interval": "30s",
        "heartbeat_interval": "10s",
        "log_level": "info",
        "state_dir": str(agent_dir / "state"),
        "collector": {
            "binary": binary,
            "supervisor": "process",
            "config_path": str(agent_dir / "collector.yaml"),
            "health_url": f"http://127.0.0.1:{HEALTH_PORT}/",
        },
    }
    config.write_text(json.dumps(lines, indent=2) + "\n")  # JSON is YAML
    return config


def _prometheus(state: Path) -> str | None:
    """The demo's destination: Prometheus receiving remote write on loopback; its URL, or None."""
    binary = shutil.which("prometheus")
    url = f"http://127.0.0.1:{PROMETHEUS_PORT}"
    if binary is None:
        print("dev-up: `prometheus` is not installed (make system-deps): pipelines will not ship anywhere")
        return None
    if _pid("prometheus") is None:
        if _port_busy(PROMETHEUS_PORT):
            sys.exit(
                f"dev-up: port {PROMETHEUS_PORT} is taken by another program; set PHOENIX_DEV_PROMETHEUS_PORT"
            )
        directory = state / "prometheus"
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "prometheus.yml"
        # Nothing to scrape: it holds what the pipelines ship by remote write.
        config.write_text(
            "global: {scrape_interval: 1h}\nstorage:\n  tsdb:\n    out_of_order_time_window: 1h\n"
        )
        program = [
            binary,
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
            "--web.enable-remote-write-receiver",
            f"--storage.tsdb.path={directory / 'data'}",
        ]
        _spawn("prometheus", [], {}, program=program)
    _wait("Prometheus", lambda: _get(f"{url}/-/ready")[0] == 200, "prometheus")
    return url


def up() -> None:
    state = state_dir()
    if not (ROOT / "bin" / "otelcol-phoenix").exists() and "PHOENIX_OTELCOL" not in os.environ:
        sys.exit("dev-up: bin/otelcol-phoenix is missing; run `make otelcol` first")
    api_url = f"http://127.0.0.1:{API_PORT}"
    gen_url = f"http://127.0.0.1:{GEN_PORT}"
    prometheus = _prometheus(state)
    if _pid("api") is None:
        if _port_busy(API_PORT):
            sys.exit(f"dev-up: port {API_PORT} is taken by another program; set PHOENIX_DEV_API_PORT")
        _spawn(
            "api",
            ["control_plane"],
            {
                "PHOENIX_STATE_DIR": str(state / "api"),
                "PHOENIX_PORT": str(API_PORT),
                "PHOENIX_GENERATOR_URL": gen_url,
            },
        )
    _wait("the API", lambda: _get(f"{api_url}/health")[0] == 200, "api")
    if _pid("generator") is None:
        if _port_busy(GEN_PORT):
            sys.exit(f"dev-up: port {GEN_PORT} is taken by another program; set PHOENIX_DEV_GENERATOR_PORT")
        _spawn(
            "generator",
            ["config_generator"],
            {"PHOENIX_GENERATOR_PORT": str(GEN_PORT), "PHOENIX_GENERATOR_CONTROL_PLANE_URL": api_url},
        )
    _wait("the config generator", lambda: _get(f"{gen_url}/health")[0] == 200, "generator")
    if _pid("agent") is None:
        _spawn("agent", ["agent", "--config", str(_agent_config())], {})
    _wait("the agent", lambda: _agent_healthy(api_url), "agent")
    print(f"Phoenix is up: API {api_url} (dashboard at {api_url}/), generator {gen_url}, agent {host_id()}")
    if prometheus:
        print(f"Prometheus (remote-write receiver, the demo's destination): {prometheus}")
    print(f"logs and state under {state}; stop with `make dev-down`")


def _postmaster_pid() -> int | None:
    pidfile = state_dir() / "api" / "pgdata" / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, IndexError, ProcessLookupError):
        return None


def _terminate(pid: int, timeout: float = 20.0, group: bool = True) -> None:
    sig_target = os.killpg if group else os.kill
    with contextlib.suppress(ProcessLookupError, PermissionError):
        sig_target(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        sig_target(pid, signal.SIGKILL)


def down() -> None:
    stopped = []
    for name in SERVICES:
        pid = _pid(name)
        if pid is not None:
            _terminate(pid)
            stopped.append(name)
        (state_dir() / "run" / f"{name}.pid").unlink(missing_ok=True)
    # The API stops its embedded PostgreSQL on exit; make sure of it.
    postmaster = _postmaster_pid()
    if postmaster is not None:
        _terminate(postmaster, group=False)
        stopped.append("postgresql")
    print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


def status() -> None:
    for name in reversed(SERVICES):
        pid = _pid(name)
        print(f"{name:10} {'running pid ' + str(pid) if pid else 'stopped'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    args = parser.parse_args()
    {"up": up, "down": down, "status": status}[args.command]()


if __name__ == "__main__":
    main()
