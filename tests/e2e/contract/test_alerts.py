"""deploy/prometheus: the alert rules are valid, pass their unit tests and use metrics the services expose.

promtool comes from Debian's `prometheus` package; these tests fail (never skip) without it in CI.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.support import ROOT, http_json, unavailable
from tests.support.services import Stack

PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
GUIDE_NAMES = ("AgentDown", "TaskQueueBackup")
# The Operations Guide's rules, word for word (shared/OPERATIONS-GUIDE.md, "Alert Rules").
GUIDE_RULES = yaml.safe_load("""
- alert: AgentDown
  expr: time() - phoenix_agent_last_seen_seconds > 300
  for: 5m
  labels:
    severity: warning
  annotations:
    summary: "Phoenix agent {{ $labels.host_id }} is down"

- alert: TaskQueueBackup
  expr: phoenix_task_queue_depth{status="pending"} > 100
  for: 10m
  labels:
    severity: critical
  annotations:
    summary: "Phoenix task queue backing up: {{ $value }} pending tasks"
""")
# Metrics the rules use that the control plane does not expose yet (see the header of alerts.yml).


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = (
            "promtool is missing: install Debian's `prometheus` package "
            "(apt-get install --no-install-recommends prometheus; `make system-deps`)"
        )
        unavailable(message)
    return path


def _promtool(promtool: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args],
        cwd=PROMETHEUS,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert [g["name"] for g in groups] == ["phoenix.rules"]
    rules: list[dict[str, Any]] = groups[0]["rules"]
    return rules


def test_rules_are_valid(promtool: str) -> None:
    result = _promtool(promtool, "check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass(promtool: str) -> None:
    result = _promtool(promtool, "test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_config_is_valid(promtool: str) -> None:
    result = _promtool(promtool, "check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_is_tested_firing_and_silent() -> None:
    """alerts_test.yml has, for every alert, a case where it fires and one where it does not."""
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    firing: set[str] = set()
    silent: set[str] = set()
    for group in tests:
        for case in group.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {rule["alert"] for rule in _rules()}
    assert names - firing == set(), "rules never shown firing"
    assert names - silent == set(), "rules never shown silent"


def test_guide_rules_are_kept_word_for_word() -> None:
    rules = {rule["alert"]: rule for rule in _rules()}
    for expected in GUIDE_RULES:
        assert rules[expected["alert"]] == expected
    # The guide itself, where it is checked out beside the repository (as in CI and on developer machines).
    guide = ROOT.parent / "shared" / "OPERATIONS-GUIDE.md"
    if guide.exists():
        section = guide.read_text().split("### Alert Rules", 1)[1]
        block = re.search(r"```yaml\n(.*?)```", section, re.S)
        assert block is not None, "the guide's Alert Rules section has no yaml block"
        in_guide = yaml.safe_load(block.group(1))["groups"][0]["rules"]
        assert [r for r in in_guide if r["alert"] in GUIDE_NAMES] == GUIDE_RULES


def _families(exposition: str) -> set[str]:
    return set(re.findall(r"^# TYPE (\S+) \S+$", exposition, re.M))


def test_rules_use_metrics_the_services_expose(stack: Stack, promtool: str) -> None:
    """Every phoenix_* metric in an expression is exposed by the running control plane,
    and both services' expositions pass promtool's lint."""
    status, api_text, _ = http_json("GET", f"{stack.api.url}/metrics")
    assert status == 200
    status, generator_text, _ = http_json("GET", f"{stack.generator.url}/metrics")
    assert status == 200
    exposed = _families(api_text)
    used = set()
    for rule in _rules():
        for name in re.findall(r"\bphoenix_[a-z0-9_]+", rule["expr"]):
            used.add(re.sub(r"_(bucket|count|sum)$", "", name))
    missing = sorted(used - exposed)
    assert not missing, f"not exposed by the control plane: {missing}"
    for text in (api_text, generator_text):
        lint = _promtool(promtool, "check", "metrics", stdin=text)
        assert lint.returncode == 0, lint.stdout + lint.stderr
