"""install-agent.sh without --root, as on a VM: users, ownership and modes, on overlaid system directories.

The probe overlays /etc, /opt, /var/lib and /usr/local in a private mount namespace, so useradd, chown
and every file land in a scratch layer and the host is untouched. systemd is not PID 1 here (and is
hidden if it were), so the script installs the units and says it did not start them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT, otelcol_binary, unavailable
from tests.support.deploy import SCRIPT, require_root, require_tool

PROBE = Path(__file__).with_name("real_install_probe.py")
# Where real_install_probe.py offers a python only root can reach.
PRIVATE_PYTHON = "/opt/private-python/usr/bin/python3"
TOKEN = "real-Zq81-token"


def system_python() -> str:
    """Debian's python3: the service user must be able to run the venv's interpreter, and the python
    running these tests may live under /root (pyenv), which that user cannot enter."""
    python = "/usr/bin/python3"
    usable = (
        Path(python).exists()
        and subprocess.run(
            [python, "-c", "import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))"],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )
    if not usable:
        message = f"{python} (3.11 or newer, with venv) is missing: `apt-get install -y python3 python3-venv`"
        unavailable(message)
    return python


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This repository built once as a wheel: the install below takes the wheel form of --package."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
        check=True,
        timeout=600,
        capture_output=True,
    )
    (built,) = out.glob("phoenix_metrics-*.whl")
    return built


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> dict[str, Any]:
    """Install with an unreachable python, install, again, uninstall: one namespace, facts after each."""
    require_root("creates users and chowns files inside a private mount namespace")
    require_tool("unshare", "util-linux")
    install = [
        "--api-url",
        "http://127.0.0.1:8080",
        "--token",
        TOKEN,
        "--package",
        str(wheel),
        "--python",
        system_python(),
        "--host-id",
        "web-01.example",
        "--namespace",
        "team-a",
    ]
    collector = otelcol_binary()
    if collector is not None:
        install += ["--otelcol-binary", str(collector)]
    # First with a python the service user cannot run: refused; then as it should be.
    unreachable = [
        *install[: install.index("--python")],
        "--python",
        PRIVATE_PYTHON,
        *install[install.index("--python") + 2 :],
    ]
    runs = [unreachable, install, install, ["--uninstall"]]
    scratch = tmp_path_factory.mktemp("overlay")
    proc = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--pid",
            "--fork",
            "--mount-proc",
            sys.executable,
            str(PROBE),
            str(SCRIPT),
            str(scratch),
            json.dumps(runs),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    result["collector"] = collector
    return result


def test_install_creates_system_users(report: dict[str, Any]) -> None:
    first = report["runs"][1]
    assert first["returncode"] == 0, first["stdout"] + first["stderr"]
    users = report["facts"][1]["users"]
    assert set(users) == {"phoenix-agent", "otel"}
    for name, user in users.items():
        assert user["uid"] < 1000, f"{name} is not a system user: {user}"
        assert user["shell"].endswith(("nologin", "false"))
        assert user["group"] == name
    # By the first run, which got that far before refusing its python.
    assert "created system user otel" in report["runs"][0]["stdout"]
    assert "created system user phoenix-agent" in report["runs"][0]["stdout"]


def test_python_the_service_user_cannot_run_is_refused(report: dict[str, Any]) -> None:
    """A venv whose interpreter phoenix-agent cannot reach would fail at every start: refused, then
    rebuilt by the next run that names a usable python."""
    refused = report["runs"][0]
    assert refused["returncode"] != 0
    lines = refused["stderr"].strip().splitlines()
    assert len(lines) == 1, refused["stderr"]
    assert lines[0].startswith("install-agent.sh: error: user phoenix-agent cannot run ")
    assert "--python /usr/bin/python3" in lines[0]
    assert "recreated /opt/phoenix-agent/venv with /usr/bin/python3" in report["runs"][1]["stdout"]


def test_config_holds_the_given_settings(report: dict[str, Any]) -> None:
    config = yaml.safe_load(report["config"])
    assert (config["api_url"], config["host_id"], config["namespace"], config["token"]) == (
        "http://127.0.0.1:8080",
        "web-01.example",
        "team-a",
        TOKEN,
    )


def test_install_sets_ownership_and_modes(report: dict[str, Any]) -> None:
    paths = report["facts"][1]["paths"]

    def owned(path: str) -> tuple[str, str, str]:
        entry = paths[path]
        return entry["owner"], entry["group"], entry["mode"]

    assert owned("/etc/phoenix-agent") == ("root", "phoenix-agent", "750")
    # The token is in here: root writes it, the agent reads it, the collector (otel) cannot.
    assert owned("/etc/phoenix-agent/config.yaml") == ("root", "phoenix-agent", "640")
    assert owned("/etc/otelcol") == ("phoenix-agent", "otel", "750")
    assert owned("/var/lib/phoenix-agent") == ("phoenix-agent", "otel", "750")
    assert owned("/opt/phoenix-agent/venv")[:2] == ("root", "root")
    for unit in (
        "/etc/systemd/system/phoenix-agent.service",
        "/etc/systemd/system/otelcol.service",
        "/etc/polkit-1/rules.d/50-phoenix-agent-otelcol.rules",
    ):
        assert owned(unit) == ("root", "root", "644")
    if report["collector"] is not None:
        assert owned("/usr/local/bin/otelcol") == ("root", "root", "755")


def test_agent_and_collector_users_reach_what_they_need(report: dict[str, Any]) -> None:
    """As the units run them: the agent reads its config and writes the collector's files, the
    collector reads those, and the collector cannot read the agent's config (it holds the token)."""
    access = report["access"]
    assert access == {
        "agent_checks_its_config": 0,
        "agent_imports_psutil": 0,
        "agent_writes_collector_config": 0,
        "agent_writes_keep_list": 0,
        "collector_reads_its_config": 0,
        "collector_reads_keep_list": 0,
        "collector_reads_agent_config": access["collector_reads_agent_config"],
    }
    assert access["collector_reads_agent_config"] != 0


def test_a_rerun_repairs_a_state_tree_a_root_run_left_behind(report: dict[str, Any]) -> None:
    """After `sudo phoenix-agent` left the keep directory root's (0700), the next install gives it back:
    the agent writes its keep lists again and the collector reads them."""
    repaired = report["repaired"]
    assert repaired["agent_writes_keep_list"] == 0 and repaired["collector_reads_keep_list"] == 0, repaired


def test_without_systemd_the_units_are_not_started(report: dict[str, Any]) -> None:
    assert (
        "systemd is not running here: installed the units but did not start them"
        in (report["runs"][1]["stderr"])
    )


def test_second_run_creates_nothing(report: dict[str, Any]) -> None:
    second = report["runs"][2]
    assert second["returncode"] == 0, second["stdout"] + second["stderr"]
    assert "created" not in second["stdout"]
    assert "installed /" not in second["stdout"]
    assert "is up to date" in second["stdout"]
    assert report["facts"][2] == report["facts"][1]


def test_uninstall_keeps_config_users_and_state(report: dict[str, Any]) -> None:
    third = report["runs"][3]
    assert third["returncode"] == 0, third["stdout"] + third["stderr"]
    after = report["facts"][3]
    for gone in (
        "/opt/phoenix-agent/venv",
        "/etc/systemd/system/phoenix-agent.service",
        "/etc/systemd/system/otelcol.service",
    ):
        assert gone not in after["paths"], gone
    assert "/etc/polkit-1/rules.d/50-phoenix-agent-otelcol.rules" not in after["paths"]
    assert (
        after["paths"]["/etc/phoenix-agent/config.yaml"]
        == report["facts"][1]["paths"]["/etc/phoenix-agent/config.yaml"]
    )
    assert "/var/lib/phoenix-agent" in after["paths"]
    assert set(after["users"]) == {"phoenix-agent", "otel"}


def test_token_is_never_printed(report: dict[str, Any]) -> None:
    for run in report["runs"]:
        assert TOKEN not in run["stdout"] + run["stderr"]
