"""The unit layer: no database, no subprocess. Both are refused here, so a test that needs one fails."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest


def _refuse(what: str) -> Any:
    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a unit test may not {what}: move it to tests/integration or tests/e2e")

    return refused


@pytest.fixture(autouse=True)
def _no_processes_or_databases(monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("start a process"))
    monkeypatch.setattr(psycopg.Connection, "connect", _refuse("connect to a database"))
    monkeypatch.setattr(psycopg.AsyncConnection, "connect", _refuse("connect to a database"))
