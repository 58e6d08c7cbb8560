"""Helpers for the deployment tests: required host tools, running install-agent.sh, tree snapshots."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support import ROOT, unavailable

SCRIPT = ROOT / "install-agent.sh"
UNITS_DIR = ROOT / "deploy" / "systemd"
UNITS = (
    "phoenix-agent.service",
    "otelcol.service",
    "phoenix-api.service",
    "phoenix-config-generator.service",
)
POLKIT_RULE = "50-phoenix-agent-otelcol.rules"
# What install-agent.sh carries inside itself (the control-plane units are not for agent hosts).
EMBEDDED = ("phoenix-agent.service", "otelcol.service", POLKIT_RULE)


def require_tool(command: str, apt_package: str) -> str:
    """The path of `command`; a missing tool fails under CI (it must be installed) and skips elsewhere."""
    # sbin is not on every user's PATH.
    path = shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin")
    if path:
        return path
    return unavailable(f"{command} is missing: install it with `apt-get install -y {apt_package}`")


def require_root(why: str) -> None:
    """Fail under CI (which runs as root) and skip elsewhere when not running as root."""
    if os.geteuid() == 0:
        return
    message = f"needs root: {why}"
    unavailable(message)


@dataclass(frozen=True)
class Run:
    """One run of install-agent.sh."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_script(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
    user: int | None = None,
    piped: bool = False,
    cwd: Path | None = None,
) -> Run:
    """Run install-agent.sh with bash and capture everything it prints.

    piped=True feeds the script on stdin, as `curl -fsSL .../install-agent.sh | sudo bash -s -- ARGS` does.
    """
    command = ["bash", "-s", "--", *args] if piped else ["bash", str(SCRIPT), *args]
    if user is not None:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=dict(os.environ if env is None else env),
        check=False,
        input=SCRIPT.read_text() if piped else None,
        stdin=None if piped else subprocess.DEVNULL,
    )
    return Run(tuple(args), proc.returncode, proc.stdout, proc.stderr)


def snapshot(root: Path, *, skip_dirs: Sequence[str] = ("__pycache__",)) -> dict[str, str]:
    """Every entry under `root` with its type, mode and content hash (symlinks: their target)."""
    entries: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip_dirs]
        for name in (*dirnames, *filenames):
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            mode = f"{st.st_mode & 0o7777:o}"
            if path.is_symlink():
                entries[rel] = f"link {os.readlink(path)}"
            elif path.is_dir():
                entries[rel] = f"dir {mode}"
            else:
                entries[rel] = f"file {mode} {hashlib.sha256(path.read_bytes()).hexdigest()}"
    return entries


def system_unit_dir() -> Path:
    """Where this machine keeps systemd's own units (sysinit.target & co), which verify resolves."""
    for candidate in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if (candidate / "sysinit.target").exists():
            return candidate
    return unavailable("systemd's unit directory was not found: install it with `apt-get install -y systemd`")


def prepare_verify_root(root: Path) -> None:
    """Give `root` the systemd units that `systemd-analyze verify --root` resolves dependencies against."""
    target = root / "usr" / "lib" / "systemd" / "system"
    if not target.exists():
        shutil.copytree(system_unit_dir(), target, symlinks=True)


def stand_in(path: Path) -> None:
    """A do-nothing executable at `path`, where verify only checks that an ExecStart= target exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n# stand-in for systemd-analyze verify\nexit 0\n")
    path.chmod(0o755)


def verify(root: Path, units: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify --root=ROOT UNIT...` over units in ROOT/etc/systemd/system."""
    analyze = require_tool("systemd-analyze", "systemd")
    return subprocess.run(
        [analyze, "verify", f"--root={root}", *units],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def findings(result: subprocess.CompletedProcess[str], units: Sequence[str]) -> list[str]:
    """The lines of verify's output that are about our units (it also reports on unrelated system units)."""
    text = result.stdout + result.stderr
    return [line for line in text.splitlines() if any(unit in line for unit in units)]
