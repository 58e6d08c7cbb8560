"""Layers of the control plane: handlers name no SQL, stores know no HTTP, services stay apart."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("control_plane", "config_generator", "agent")
# The composition root builds the pool and the stores; keys.py types the keys that hold them.
WIRING = {"app.py", "keys.py", "__main__.py"}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _top(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def _is_store(path: Path) -> bool:
    return path.parent.name == "stores" or path.name == "queue.py"


def test_handlers_import_no_sql_layer() -> None:
    for path in sorted((ROOT / "control_plane").rglob("*.py")):
        names = _imports(path)
        if "aiohttp" not in _top(names) or path.name in WIRING or _is_store(path):
            continue
        assert "psycopg" not in _top(names), f"{path.name} is a handler module and imports psycopg"
        assert not any(n == "control_plane.db" or n.startswith("control_plane.db.") for n in names), (
            f"{path.name} is a handler module and imports control_plane.db"
        )


def test_stores_import_no_aiohttp() -> None:
    stores = [p for p in (ROOT / "control_plane").rglob("*.py") if _is_store(p)]
    assert stores
    for path in stores:
        assert "aiohttp" not in _top(_imports(path)), f"{path.name} is a store and imports aiohttp"


def test_services_import_nothing_of_each_other() -> None:
    for service in SERVICES:
        for path in (ROOT / service).rglob("*.py"):
            others = _top(_imports(path)) & (set(SERVICES) - {service})
            assert not others, f"{path.relative_to(ROOT)} imports {sorted(others)}"
