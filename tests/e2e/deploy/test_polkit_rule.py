"""The polkit rule, judged by a real polkitd: phoenix-agent may manage otelcol.service and nothing else.

systemd cannot run as PID 1 here, so pkcheck stands in for it: it asks polkitd the same question
(action org.freedesktop.systemd1.manage-units, details unit and verb) about a process of the user.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.deploy import POLKIT_RULE, UNITS_DIR, require_root, require_tool

PROBE = Path(__file__).with_name("polkit_probe.py")
# pkcheck: 0 authorized; 1 not authorized; 2 authentication would be needed (the default for
# manage-units, which non-interactive systemctl cannot give): both of the latter mean "no".
ALLOWED = 0
DENIED = (1, 2)
AGENT_VERBS = ("start", "stop", "restart", "reload", "try-restart", "reload-or-restart", "reset-failed")


def probe(tmp_path: Path, rules: list[Path], cases: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Run polkit_probe.py in fresh mount and PID namespaces and return its decisions."""
    require_root("bind-mounts the rule over /etc/polkit-1/rules.d in a private mount namespace")
    for command, package in (
        ("unshare", "util-linux"),
        ("setpriv", "util-linux"),
        ("dbus-daemon", "dbus-daemon"),
        ("pkcheck", "polkitd"),
        ("busctl", "systemd"),
    ):
        require_tool(command, package)
    if not any(Path(p).exists() for p in ("/usr/lib/polkit-1/polkitd", "/usr/libexec/polkitd")):
        require_tool("polkitd", "polkitd")
    rules_dir = tmp_path / "rules.d"
    rules_dir.mkdir()
    for rule in rules:
        shutil.copy(rule, rules_dir / rule.name)
        (rules_dir / rule.name).chmod(0o644)
    work = tmp_path / "work"
    work.mkdir()
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
            str(rules_dir),
            str(work),
            json.dumps(cases),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results: list[dict[str, Any]] = json.loads(proc.stdout)["cases"]
    return results


def case(user: str, unit: str, verb: str) -> dict[str, str]:
    return {"user": user, "unit": unit, "verb": verb}


def test_rule_allows_the_agent_to_manage_only_otelcol(tmp_path: Path) -> None:
    allowed = [case("phoenix-agent", "otelcol.service", verb) for verb in AGENT_VERBS]
    denied = [
        case("phoenix-agent", "ssh.service", "restart"),
        case("phoenix-agent", "phoenix-agent.service", "stop"),
        case("phoenix-agent", "otelcol.service", "kill"),
        case("phoenix-agent", "otelcol.service", "set-property"),
        case("phoenix-intruder", "otelcol.service", "restart"),
        case("phoenix-intruder", "otelcol.service", "start"),
    ]
    results = probe(tmp_path, [UNITS_DIR / POLKIT_RULE], allowed + denied)
    decisions = {(r["user"], r["unit"], r["verb"]): r["pkcheck_exit"] for r in results}
    for c in allowed:
        assert decisions[(c["user"], c["unit"], c["verb"])] == ALLOWED, results
    for c in denied:
        assert decisions[(c["user"], c["unit"], c["verb"])] in DENIED, results


def test_without_the_rule_the_agent_is_refused(tmp_path: Path) -> None:
    """Control: the same question with no rule installed is refused, so the rule is what grants it."""
    results = probe(tmp_path, [], [case("phoenix-agent", "otelcol.service", "restart")])
    assert results[0]["pkcheck_exit"] in DENIED, results
