"""agent_token_max_hosts holds when many hosts enrol at once (real PostgreSQL, a pool of several
connections): the count and the binding are taken under one lock, so no two enrolments take the last
place."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from control_plane.db import Database
from control_plane.services.tokens import AgentTokens
from control_plane.stores.tokens import TokenStore
from phoenix_common.problems import Forbidden
from tests.integration.conftest import database

ENROLMENT = "enrolment-" + "e" * 20
LIMIT = 5


@pytest.fixture
async def wide(database_url: str) -> AsyncIterator[Database]:
    async with database(database_url, connections=8) as opened:
        yield opened


async def test_thirty_hosts_enrolling_at_once_bind_exactly_the_limit(wide: Database) -> None:
    tokens = AgentTokens(TokenStore(wide), ttl=0, enrolment_max_hosts=LIMIT)

    async def enrol(i: int) -> str | None:
        try:
            return await tokens.verify(f"mass-{i:02d}", ENROLMENT, ENROLMENT)
        except Forbidden as exc:
            assert "limit of 5 hosts" in exc.detail
            return None

    results = await asyncio.gather(*(enrol(i) for i in range(30)))
    assert sum(1 for r in results if r) == LIMIT
    assert await TokenStore(wide).enrolled() == LIMIT
