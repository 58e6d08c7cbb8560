"""A secured stack: the API with an operator token (and optionally an enrolment token), the generator with
the same operator token, both real subprocesses on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.security import (
    start_secured_stack,
)
from tests.support.services import Stack


@pytest.fixture
def secured_stack(database_url: str, tmp_path: Path) -> Iterator[Stack]:
    """Both services with tokens: operator token on both, enrolment token on the API."""
    stack = start_secured_stack(database_url, tmp_path)
    yield stack
    stack.api.stop()
    stack.generator.stop()
