"""The stores' tests share one fixture: a Database on a fresh, migrated database of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from control_plane.db import Database, make_pool


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    pool = make_pool(database_url, min_size=1, max_size=2)
    await pool.open(wait=True)
    try:
        yield Database(pool)
    finally:
        await pool.close()
