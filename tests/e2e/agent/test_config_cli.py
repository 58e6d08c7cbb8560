"""The agent CLI on bad and good config files, as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT
from tests.support.agent_config import GUIDE, write


def test_cli_exits_2_with_one_line_naming_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, "api_url: http://127.0.0.1:8080\ncollector:\n  config_path: relative.yaml\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_AGENT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["configuration error: collector.config_path must be absolute"]


def test_cli_check_config_accepts_the_guide_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_AGENT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "--config", str(write(tmp_path, GUIDE)), "--check-config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "config_ok" in proc.stdout
