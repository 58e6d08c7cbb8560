"""install-agent.sh, run for real into a directory tree (--root): venv, config, units; idempotent; uninstall.

Under --root the script creates no users and calls no systemctl (systemd is not PID 1 here); everything
else (the venv, pip installing this repository, files and modes) is real.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support import ROOT, otelcol_binary, unavailable
from tests.support.deploy import (
    EMBEDDED,
    POLKIT_RULE,
    SCRIPT,
    UNITS_DIR,
    Run,
    findings,
    prepare_verify_root,
    run_script,
    snapshot,
    stand_in,
    verify,
)

API_URL = "http://127.0.0.1:8080"
# Characters that need YAML quoting, so the test also shows the config is written safely.
TOKEN = 'Tk-9f2c"b\\x: #not-a-comment'
SECRET_PART = "Tk-9f2c"
VENV = Path("opt/phoenix-agent/venv")
CONFIG = Path("etc/phoenix-agent/config.yaml")
AGENT_UNITS = ("phoenix-agent.service", "otelcol.service")


@dataclass(frozen=True)
class Installation:
    """Three runs of install-agent.sh into one tree, and the tree after each."""

    root: Path
    first: Run
    second: Run
    third: Run
    after_first: dict[str, str]
    after_second: dict[str, str]
    after_third: dict[str, str]
    collector: Path | None


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Installation:
    """One real install (pip into a fresh venv), the same command again, then a run with other settings.

    The first run is fed to bash on stdin from another directory, as `curl ... | sudo bash -s --` does.
    """
    root = tmp_path_factory.mktemp("install-root")
    base = ["--root", str(root), "--package", str(ROOT), "--no-start"]
    first = run_script(
        [*base, "--api-url", API_URL, "--token", TOKEN], piped=True, cwd=tmp_path_factory.mktemp("elsewhere")
    )
    assert first.returncode == 0, first.output
    after_first = snapshot(root)
    second = run_script([*base, "--api-url", API_URL, "--token", TOKEN])
    assert second.returncode == 0, second.output
    after_second = snapshot(root)
    collector = otelcol_binary()
    third_args = [
        *base,
        "--api-url",
        "http://127.0.0.2:8080",
        "--token",
        "other-token",
        "--namespace",
        "prod",
    ]
    if collector is not None:
        third_args += ["--otelcol-binary", str(collector)]
    third = run_script(third_args)
    assert third.returncode == 0, third.output
    return Installation(root, first, second, third, after_first, after_second, snapshot(root), collector)


def test_fresh_install_tree(installation: Installation) -> None:
    root = installation.root
    for unit in AGENT_UNITS:
        installed = root / "etc/systemd/system" / unit
        assert installed.read_text() == (UNITS_DIR / unit).read_text()
        assert installed.stat().st_mode & 0o777 == 0o644
    rule = root / "etc/polkit-1/rules.d" / POLKIT_RULE
    assert rule.read_text() == (UNITS_DIR / POLKIT_RULE).read_text()
    for directory in ("etc/phoenix-agent", "etc/otelcol", "var/lib/phoenix-agent"):
        assert (root / directory).stat().st_mode & 0o777 == 0o750, directory
    # The control-plane units are not for agent hosts.
    assert sorted(p.name for p in (root / "etc/systemd/system").iterdir()) == sorted(AGENT_UNITS)
    # No collector was given on the first run: it says so.
    assert "no collector at /usr/local/bin/otelcol" in installation.first.stderr
    # Users and systemctl are left out under --root, and the output says so.
    assert "skipped (--root): create system users otel and phoenix-agent" in installation.first.stdout
    assert "skipped (--root): systemctl daemon-reload" in installation.first.stdout


def test_config_written_with_settings_and_mode(installation: Installation) -> None:
    config_path = installation.root / CONFIG
    assert config_path.stat().st_mode & 0o777 == 0o640
    config = yaml.safe_load(config_path.read_text())
    assert config == {
        "api_url": API_URL,
        "host_id": socket.gethostname(),
        "namespace": "default",
        "poll_interval": "30s",
        "log_level": "info",
        "token": TOKEN,
        "state_dir": "/var/lib/phoenix-agent",
        "collector": {
            "supervisor": "systemd",
            "unit": "otelcol.service",
            "binary": "/usr/local/bin/otelcol",
            "config_path": "/etc/otelcol/collector.yaml",
        },
    }


def test_venv_has_a_working_agent(installation: Installation) -> None:
    agent = installation.root / VENV / "bin" / "phoenix-agent"
    assert os.access(agent, os.X_OK)
    shown = subprocess.run([str(agent), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "--config" in shown.stdout
    # The agent itself accepts the config the script wrote.
    checked = subprocess.run(
        [str(agent), "--config", str(installation.root / CONFIG), "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_AGENT_")},
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # psutil comes with the agent extra.
    python = installation.root / VENV / "bin" / "python"
    probe = subprocess.run(
        [str(python), "-c", "import psutil, agent.config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr


def test_second_run_changes_nothing(installation: Installation) -> None:
    first, second = installation.after_first, installation.after_second
    changed = sorted(k for k in first.keys() | second.keys() if first.get(k) != second.get(k))
    assert changed == []
    assert "is up to date" in installation.second.stdout
    assert "installed /etc/systemd" not in installation.second.stdout


def test_existing_config_is_kept(installation: Installation) -> None:
    """A later run with other settings leaves config.yaml alone and says which flags it did not apply."""
    assert installation.after_third[str(CONFIG)] == installation.after_first[str(CONFIG)]
    assert "kept the existing /etc/phoenix-agent/config.yaml; --api-url --token --namespace not applied" in (
        installation.third.stdout
    )
    # Nothing else changed either, except the collector binary when one was given.
    changed = sorted(
        k
        for k in installation.after_first.keys() | installation.after_third.keys()
        if installation.after_first.get(k) != installation.after_third.get(k)
    )
    new_binary = ["usr", "usr/local", "usr/local/bin", "usr/local/bin/otelcol"]
    expected = new_binary if installation.collector else []
    assert changed == expected


def test_collector_binary_is_installed(installation: Installation) -> None:
    if installation.collector is None:
        message = "the collector is not built: run `make otelcol`"
        unavailable(message)
    installed = installation.root / "usr/local/bin/otelcol"
    assert installed.read_bytes() == installation.collector.read_bytes()
    assert installed.stat().st_mode & 0o777 == 0o755


def test_token_is_never_printed(installation: Installation) -> None:
    for run in (installation.first, installation.second, installation.third):
        assert SECRET_PART not in run.output
        assert "other-token" not in run.output


def test_installed_tree_passes_verify(installation: Installation, tmp_path: Path) -> None:
    """verify over what was installed: the real venv entry point, and the real collector when built."""
    root = tmp_path / "tree"
    # A copy (hard links), so that the systemd units verify needs do not land in the installation's tree.
    shutil.copytree(installation.root, root, symlinks=True, copy_function=os.link)
    prepare_verify_root(root)
    stand_in(root / "bin" / "kill")
    if not (root / "usr/local/bin/otelcol").exists():
        stand_in(root / "usr/local/bin/otelcol")
    result = verify(root, AGENT_UNITS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert findings(result, AGENT_UNITS) == []


def test_uninstall_removes_units_and_venv_keeps_config(installation: Installation, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    # Hard links: uninstalling removes names in the copy and leaves the installation alone.
    shutil.copytree(installation.root, root, symlinks=True, copy_function=os.link)
    config_before = (root / CONFIG).read_bytes()
    run = run_script(["--uninstall", "--root", str(root)])
    assert run.returncode == 0, run.output
    for unit in AGENT_UNITS:
        assert not (root / "etc/systemd/system" / unit).exists()
    assert not (root / "etc/polkit-1/rules.d" / POLKIT_RULE).exists()
    assert not (root / "opt/phoenix-agent").exists()
    assert (root / CONFIG).read_bytes() == config_before
    assert (root / "var/lib/phoenix-agent").is_dir()
    assert "skipped (--root): systemctl disable --now" in run.stdout

    purge = run_script(["--uninstall", "--purge", "--root", str(root)])
    assert purge.returncode == 0, purge.output
    for gone in ("etc/phoenix-agent", "var/lib/phoenix-agent", "etc/otelcol"):
        assert not (root / gone).exists(), gone


def test_the_enrolment_token_leaves_the_config_once_the_agent_holds_its_own(
    installation: Installation, tmp_path: Path
) -> None:
    """The enrolment token is shared by the fleet: a run after the agent enrolled (it writes its own
    token to its state directory) removes it from config.yaml, unless --keep-token."""
    root = tmp_path / "tree"
    shutil.copytree(installation.root, root, symlinks=True, copy_function=os.link)
    base = ["--root", str(root), "--package", str(ROOT), "--no-start"]
    # Not enrolled yet: kept.
    before = run_script(base)
    assert before.returncode == 0, before.output
    assert "token:" in (root / CONFIG).read_text()
    stored = root / "var/lib/phoenix-agent/agent_token"
    stored.write_text("the-host-own-token\n")
    config_mtime = (root / CONFIG).stat().st_mtime_ns
    os.utime(stored, ns=(config_mtime + 10**9, config_mtime + 10**9))
    kept = run_script([*base, "--keep-token"])
    assert kept.returncode == 0 and "token:" in (root / CONFIG).read_text(), kept.output
    forgot = run_script(base)
    assert forgot.returncode == 0, forgot.output
    assert "removed the enrolment token from /etc/phoenix-agent/config.yaml" in forgot.stdout
    config = (root / CONFIG).read_text()
    assert "token:" not in config and SECRET_PART not in config
    assert yaml.safe_load(config)["api_url"] == API_URL  # the rest of the file is intact
    assert oct((root / CONFIG).stat().st_mode & 0o777) == "0o640"
    assert SECRET_PART not in forgot.output


def test_an_older_stored_token_does_not_remove_a_rotated_configured_one(
    installation: Installation, tmp_path: Path
) -> None:
    """A token an operator wrote into the config after the agent enrolled stays: the agent's stored
    one is refused and the agent falls back to the configured one."""
    root = tmp_path / "tree"
    shutil.copytree(installation.root, root, symlinks=True, copy_function=os.link)
    stored = root / "var/lib/phoenix-agent/agent_token"
    stored.write_text("old-own-token\n")
    config_mtime = (root / CONFIG).stat().st_mtime_ns
    os.utime(stored, ns=(config_mtime - 10**9, config_mtime - 10**9))
    run = run_script(["--root", str(root), "--package", str(ROOT), "--no-start"])
    assert run.returncode == 0, run.output
    assert "token:" in (root / CONFIG).read_text()


# Errors: one clear line on stderr and a non-zero exit, before anything is changed.


def one_line_error(run: Run) -> str:
    assert run.returncode != 0
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("install-agent.sh: error: ")
    return lines[0]


def test_fresh_install_without_api_url_fails(tmp_path: Path) -> None:
    line = one_line_error(run_script(["--root", str(tmp_path / "r"), "--token", TOKEN]))
    assert "--api-url is required" in line
    assert SECRET_PART not in line
    assert not (tmp_path / "r").exists()


def test_unknown_flag_fails(tmp_path: Path) -> None:
    run = run_script(["--root", str(tmp_path), "--api-url", API_URL, "--colour", "blue"])
    assert "unknown argument '--colour'" in one_line_error(run)
    assert run.returncode == 2


def test_stray_value_is_not_echoed() -> None:
    """A value without its flag (here, the token) is refused without printing it."""
    run = run_script(["--api-url", API_URL, TOKEN])
    assert "unexpected value without a flag" in one_line_error(run)
    assert SECRET_PART not in run.output


def test_flag_without_value_fails() -> None:
    assert "--token needs a value" in one_line_error(run_script(["--api-url", API_URL, "--token"]))


def test_purge_without_uninstall_fails(tmp_path: Path) -> None:
    run = run_script(["--root", str(tmp_path), "--purge"])
    assert "--purge only goes with --uninstall" in one_line_error(run)


def test_missing_python3_fails(tmp_path: Path) -> None:
    """A PATH with every system tool but python3 (as on a minimal VM image)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        for entry in Path(directory).iterdir() if Path(directory).is_dir() else ():
            target = bin_dir / entry.name
            if entry.name.startswith("python") or target.exists() or not os.access(entry, os.X_OK):
                continue
            target.symlink_to(entry)
    run = run_script(
        ["--root", str(tmp_path / "r"), "--api-url", API_URL], env={**os.environ, "PATH": str(bin_dir)}
    )
    assert "python3 was not found" in one_line_error(run)
    assert not (tmp_path / "r").exists()


def test_bad_collector_binary_fails(tmp_path: Path) -> None:
    not_executable = tmp_path / "otelcol"
    not_executable.write_text("not a program")
    run = run_script(
        ["--root", str(tmp_path / "r"), "--api-url", API_URL, "--otelcol-binary", str(not_executable)]
    )
    assert "is not an executable file" in one_line_error(run)


def test_real_install_needs_root_or_root_dir() -> None:
    """Without --root the script changes the real system, so it refuses to run as an ordinary user."""
    if os.geteuid() == 0:
        run = run_script(["--api-url", API_URL], user=65534)
    else:
        run = run_script(["--api-url", API_URL])
    assert "must run as root" in one_line_error(run)


def test_help() -> None:
    run = run_script(["--help"])
    assert run.returncode == 0
    for flag in (
        "--api-url",
        "--token",
        "--host-id",
        "--namespace",
        "--package",
        "--index-url",
        "--otelcol-binary",
        "--python",
        "--root",
        "--no-start",
        "--keep-token",
        "--enrol-wait",
        "--uninstall",
        "--purge",
    ):
        assert flag in run.stdout, flag
    assert run.stderr == ""


def test_embedded_files_are_the_agent_host_files() -> None:
    """--print-file knows exactly the embedded files, and rejects others."""
    for name in EMBEDDED:
        assert run_script(["--print-file", name]).returncode == 0
    bad = run_script(["--print-file", "phoenix-api.service"])
    assert "no embedded file named 'phoenix-api.service'" in one_line_error(bad)
    assert SCRIPT.stat().st_mode & 0o111, "install-agent.sh should be executable"
