"""The code style the project holds itself to (ruff, configured in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def _tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert path, f"{name} is part of the test extra: pip install -e '.[test]'"
    return path


def test_ruff_finds_nothing() -> None:
    run = subprocess.run([_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:]


def test_mypy_finds_nothing_in_the_services() -> None:
    packages = ["control_plane", "config_generator", "agent", "phoenix_common", "phoenix_cli"]
    run = subprocess.run([_tool("mypy"), *packages], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:]
