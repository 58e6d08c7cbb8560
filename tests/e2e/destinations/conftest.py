"""Real backends for the shipping tests (tests/support/backends.py), one per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.backends import OtlpSink, Prometheus
from tests.support.shipping import SECRET


def _prometheus(directory: Path) -> Iterator[Prometheus]:
    directory.mkdir()
    backend = Prometheus(directory).start()
    yield backend
    backend.stop()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    """Production's backend."""
    yield from _prometheus(tmp_path / "prometheus")


@pytest.fixture
def staging(tmp_path: Path) -> Iterator[Prometheus]:
    """A second backend (an experiment's candidate destination)."""
    yield from _prometheus(tmp_path / "staging")


@pytest.fixture
def sink(tmp_path: Path, otelcol_bin: Path) -> Iterator[OtlpSink]:
    directory = tmp_path / "sink"
    directory.mkdir()
    backend = OtlpSink(directory, otelcol_bin, SECRET.removeprefix("Bearer ")).start()
    yield backend
    backend.stop()
