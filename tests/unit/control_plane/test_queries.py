"""Every named query in sql/queries/ is used by a store, and every query a store names is defined."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from control_plane.db import QUERIES, load_queries, sql_dir

ROOT = Path(__file__).resolve().parents[3]
NAME = re.compile(r"^[a-z][a-z0-9_]*\Z")
CALLS = {"fetch", "fetch_one", "execute", "query"}


def _python(*dirs: str) -> list[Path]:
    return [p for d in dirs for p in sorted((ROOT / d).rglob("*.py"))]


def _named(path: Path) -> set[str]:
    """Query names a module passes to fetch/fetch_one/execute/query, or keeps as dict values (a table)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            first = node.args[0]
            if called in CALLS and isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
        if isinstance(node, ast.Dict):
            names.update(v.value for v in node.values if isinstance(v, ast.Constant) and v.value in QUERIES)
    return {n for n in names if NAME.match(n)}


def test_every_defined_query_is_used_and_every_used_one_defined() -> None:
    used: dict[str, set[str]] = {}
    for path in _python("control_plane", "benchmarks"):
        for name in _named(path):
            used.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert sorted(set(QUERIES) - set(used)) == [], "defined in sql/queries/ but never used"
    assert sorted(set(used) - set(QUERIES)) == [], "used but not defined in sql/queries/"


def test_only_stores_name_queries() -> None:
    stores = {"control_plane/db.py", "control_plane/queue.py"}
    for path in _python("control_plane", "benchmarks"):
        rel = str(path.relative_to(ROOT))
        if rel in stores or rel.startswith("control_plane/stores/"):
            continue
        assert _named(path) == set(), f"{rel} names SQL queries; only stores may"


def test_a_name_defined_twice_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.sql").write_text("-- name: one\nSELECT 1;\n")
    (tmp_path / "b.sql").write_text("-- name: one\nSELECT 2;\n")
    try:
        load_queries(tmp_path)
    except ValueError as exc:
        assert "'one' is defined twice" in str(exc)
    else:
        raise AssertionError("a duplicate query name was accepted")


def test_every_file_of_sql_queries_is_loaded() -> None:
    assert load_queries(sql_dir() / "queries") == QUERIES
    assert {p.stem for p in (sql_dir() / "queries").glob("*.sql")} >= {"tasks", "deployments", "agents"}
