"""Run install-agent.sh for real (no --root) with the system directories it writes overlaid.

Run as root inside fresh mount and PID namespaces (test_install_real_system.py does that with
`unshare --mount --propagation private --pid --fork --mount-proc`). /etc, /opt, /var/lib and
/usr/local get an overlay whose upper layer is a scratch directory, so useradd, chown and the files the
script writes land there and vanish with the namespace: the host is left as it was.

It also offers a python that only root can reach (PRIVATE_PYTHON), like a pyenv one under /root.

Prints one JSON object with each run's output and the facts the test checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

KEEP_DIR = "/var/lib/phoenix-agent/keep"
PRIVATE_PYTHON = "/opt/private-python/usr/bin/python3"
OVERLAID = ("/etc", "/opt", "/var/lib", "/usr/local")
PATHS = (
    "/etc/phoenix-agent",
    "/etc/phoenix-agent/config.yaml",
    "/etc/otelcol",
    "/var/lib/phoenix-agent",
    "/opt/phoenix-agent/venv",
    "/opt/phoenix-agent/venv/bin/phoenix-agent",
    "/etc/systemd/system/phoenix-agent.service",
    "/etc/systemd/system/otelcol.service",
    "/etc/polkit-1/rules.d/50-phoenix-agent-otelcol.rules",
    "/usr/local/bin/otelcol",
)


def overlay(scratch: Path) -> None:
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    for directory in OVERLAID:
        name = directory.strip("/").replace("/", "-")
        upper, work = scratch / name / "upper", scratch / name / "work"
        upper.mkdir(parents=True)
        work.mkdir(parents=True)
        subprocess.run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={directory},upperdir={upper},workdir={work}",
                directory,
            ],
            check=True,
        )
    # A python only root can reach, as a pyenv one under /root is: /usr seen through a 0700 directory.
    private = Path(PRIVATE_PYTHON).parents[2]
    (private / "usr").mkdir(parents=True)
    private.chmod(0o700)
    subprocess.run(["mount", "--bind", "/usr", str(private / "usr")], check=True)
    # Should this machine run systemd, hide it, so that the script never starts units on the host.
    if Path("/run/systemd").is_dir():
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run/systemd"], check=True)


def run(script: Path, args: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return {"args": args, "returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}


def facts() -> dict[str, Any]:
    """Owner, group and mode of each path the script manages, and the users it creates."""
    import grp
    import pwd

    found: dict[str, Any] = {"paths": {}, "users": {}}
    for path in PATHS:
        if os.path.lexists(path):
            st = os.stat(path)
            found["paths"][path] = {
                "owner": pwd.getpwuid(st.st_uid).pw_name,
                "group": grp.getgrgid(st.st_gid).gr_name,
                "mode": f"{st.st_mode & 0o7777:o}",
            }
    for user in ("phoenix-agent", "otel"):
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            continue
        found["users"][user] = {
            "uid": entry.pw_uid,
            "home": entry.pw_dir,
            "shell": entry.pw_shell,
            "group": grp.getgrgid(entry.pw_gid).gr_name,
        }
    return found


def as_user(user: str, group: str, extra_groups: str, command: str) -> int:
    """Exit status of `sh -c command` run as the unit would run it: user, group, groups, umask 0027."""
    setpriv = ["setpriv", f"--reuid={user}", f"--regid={group}", "--no-new-privs"]
    setpriv += [f"--groups={extra_groups}"] if extra_groups else ["--clear-groups"]
    proc = subprocess.run(
        [*setpriv, "sh", "-c", f"umask 027; {command}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return proc.returncode


def access() -> dict[str, int]:
    """Who can read and write what, run as the two units run (users, groups, umask)."""
    agent = ("phoenix-agent", "otel", "phoenix-agent")
    collector = ("otel", "otel", "")
    venv = "/opt/phoenix-agent/venv"
    return {
        "agent_checks_its_config": as_user(
            *agent, f"{venv}/bin/phoenix-agent --config /etc/phoenix-agent/config.yaml --check-config"
        ),
        "agent_imports_psutil": as_user(*agent, f"{venv}/bin/python -c 'import psutil'"),
        "agent_writes_collector_config": as_user(*agent, "echo receivers: {} > /etc/otelcol/collector.yaml"),
        "agent_writes_keep_list": as_user(
            *agent, f"mkdir -p {KEEP_DIR} && echo [] > {KEEP_DIR}/candidate.yaml"
        ),
        "collector_reads_its_config": as_user(*collector, "cat /etc/otelcol/collector.yaml"),
        "collector_reads_keep_list": as_user(*collector, f"cat {KEEP_DIR}/candidate.yaml"),
        "collector_reads_agent_config": as_user(*collector, "cat /etc/phoenix-agent/config.yaml"),
    }


def main() -> None:
    script, scratch = Path(sys.argv[1]), Path(sys.argv[2])
    runs_args: list[list[str]] = json.loads(sys.argv[3])
    overlay(scratch)
    report: dict[str, Any] = {"runs": [], "facts": []}
    for args in runs_args:
        report["runs"].append(run(script, args))
        report["facts"].append(facts())
        if report["runs"][-1]["returncode"] == 0 and "access" in report and "repaired" not in report:
            # The run after a manual root run of the agent left its keep directory root's.
            report["repaired"] = access()
        if report["runs"][-1]["returncode"] == 0 and "access" not in report and "--uninstall" not in args:
            report["config"] = Path("/etc/phoenix-agent/config.yaml").read_text()
            # Before the second run, so that run also shows it leaves what the agent wrote alone.
            report["access"] = access()
            # As `sudo phoenix-agent` leaves it: the next install must give it back to the agent.
            os.chown(KEEP_DIR, 0, 0)
            os.chmod(KEEP_DIR, 0o700)
            os.chown(f"{KEEP_DIR}/candidate.yaml", 0, 0)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
