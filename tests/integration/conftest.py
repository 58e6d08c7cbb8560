"""The stores' tests share one fixture: a Database on a fresh, migrated database of the test's own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from control_plane.db import Database, make_pool


@contextlib.asynccontextmanager
async def database(url: str, connections: int = 2) -> AsyncIterator[Database]:
    """A Database on a pool of up to `connections`, closed on exit."""
    pool = make_pool(url, min_size=1, max_size=connections)
    await pool.open(wait=True)
    try:
        yield Database(pool)
    finally:
        await pool.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    async with database(database_url) as opened:
        yield opened
