"""Ask a real polkitd what it decides for `systemctl VERB UNIT` run by a given user, with our rule installed.

Run as root inside fresh mount and PID namespaces (test_polkit_rule.py does that with
`unshare --mount --propagation private --pid --fork --mount-proc`), so that the bind mounts below and
every daemon started here vanish with it:

- the rule directory is bind-mounted over /etc/polkit-1/rules.d, and copies of /etc/passwd and
  /etc/group that add the users phoenix-agent and phoenix-intruder over the real ones;
- a private system bus (dbus-daemon) and polkitd run on it;
- for each case a process runs as the user, and pkcheck asks polkitd, as root, whether that process
  may do action org.freedesktop.systemd1.manage-units with the details {unit, verb}: exactly the
  question systemd (PID 1, not running here) asks polkitd when a non-root user runs systemctl.

Prints one JSON object: {"cases": [{"user", "unit", "verb", "pkcheck_exit"}...]}.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ACTION = "org.freedesktop.systemd1.manage-units"
USERS = ("phoenix-agent", "phoenix-intruder")
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll `condition` until it holds or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"polkit probe: timed out waiting for {what}")
        time.sleep(0.05)


def runs_as(pid: int, uid: int, name: str) -> bool:
    """True once process `pid` runs `name` as `uid` (setpriv has switched user and exec'd)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return f"Uid:\t{uid}\t" in status and f"Name:\t{name}\n" in status


def polkitd_path() -> str:
    for candidate in ("/usr/lib/polkit-1/polkitd", "/usr/libexec/polkitd", "/usr/libexec/polkit-1/polkitd"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise SystemExit("polkit probe: polkitd not found")


def free_ids(count: int) -> list[int]:
    """Ids used by no user and no group here."""
    taken = {
        int(line.split(":")[2])
        for name in ("/etc/passwd", "/etc/group")
        for line in Path(name).read_text().splitlines()
        if line.count(":") >= 3
    }
    return [i for i in range(61000, 62000) if i not in taken][:count]


def bind_user_database(work: Path, ids: dict[str, int]) -> None:
    """Over /etc/passwd and /etc/group, copies that also hold our users (any same-named ones replaced)."""
    for name, line_for in (
        ("passwd", lambda user, uid: f"{user}:x:{uid}:{uid}::/nonexistent:/usr/sbin/nologin"),
        ("group", lambda user, uid: f"{user}:x:{uid}:"),
    ):
        lines = [
            line for line in Path(f"/etc/{name}").read_text().splitlines() if line.split(":")[0] not in ids
        ]
        lines += [line_for(user, uid) for user, uid in ids.items()]
        copy = work / name
        copy.write_text("\n".join(lines) + "\n")
        copy.chmod(0o644)
        subprocess.run(["mount", "--bind", str(copy), f"/etc/{name}"], check=True)


def main() -> None:
    rules_dir, work = Path(sys.argv[1]), Path(sys.argv[2])
    cases = json.loads(sys.argv[3])
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    rules_dir.chmod(0o755)
    Path("/etc/polkit-1/rules.d").mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", str(rules_dir), "/etc/polkit-1/rules.d"], check=True)
    ids = dict(zip(USERS, free_ids(len(USERS)), strict=True))
    bind_user_database(work, ids)

    # polkitd drops to its own user, so the socket must sit where that user can reach it (not under
    # pytest's root-only temporary directories).
    bus_dir = Path(tempfile.mkdtemp(prefix="phoenix-polkit-bus-"))
    bus_dir.chmod(0o755)
    socket = bus_dir / "system_bus_socket"
    (work / "bus.conf").write_text(BUS_CONFIG.format(socket=socket))
    address = f"unix:path={socket}"
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address}
    daemons = [
        subprocess.Popen(
            ["dbus-daemon", f"--config-file={work / 'bus.conf'}", "--nofork"],
            stdout=subprocess.DEVNULL,
            stderr=(work / "dbus.log").open("w"),
        )
    ]
    try:
        wait_until(socket.exists, "the bus socket")
        daemons.append(
            subprocess.Popen(
                [polkitd_path(), "--no-debug"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(work / "polkitd.log").open("w"),
            )
        )
        busctl = shutil.which("busctl") or "busctl"

        def polkit_on_bus() -> bool:
            asked = subprocess.run(
                [
                    busctl,
                    f"--address={address}",
                    "call",
                    "org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus",
                    "NameHasOwner",
                    "s",
                    "org.freedesktop.PolicyKit1",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            return asked.stdout.strip() == "b true"

        wait_until(polkit_on_bus, "polkitd on the bus")
        results = []
        for case in cases:
            uid = ids[case["user"]]
            subject = subprocess.Popen(
                ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "sleep", "300"]
            )
            try:
                wait_until(functools.partial(runs_as, subject.pid, uid, "sleep"), "the subject process")
                checked = subprocess.run(
                    [
                        "pkcheck",
                        "--action-id",
                        ACTION,
                        "--process",
                        str(subject.pid),
                        "--detail",
                        "unit",
                        case["unit"],
                        "--detail",
                        "verb",
                        case["verb"],
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
            finally:
                subject.kill()
                subject.wait()
            results.append(
                {**case, "pkcheck_exit": checked.returncode, "pkcheck_stderr": checked.stderr.strip()}
            )
        print(json.dumps({"cases": results}))
    finally:
        for daemon in reversed(daemons):
            daemon.terminate()
            daemon.wait(timeout=10)
        shutil.rmtree(bus_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
