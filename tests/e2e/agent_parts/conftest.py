"""Fixtures for the agent's measurement, keep-list and load-profile modules: a real collector, real probes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port, wait_for
from tests.support.collector import _CONFIG, FOLDED_KEEP, Collector, _metrics


@pytest.fixture(scope="session")
def collector(otelcol_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """One real collector (hostmetrics process scraper, 1s interval) for the whole session."""
    workdir = tmp_path_factory.mktemp("otelcol")
    ports = {"full": free_port(), "stamped": free_port(), "folded": free_port()}
    keep = "[" + ", ".join(f'"{n}"' for n in FOLDED_KEEP) + "]"
    not_kept = f'not ContainsValue({keep}, resource.attributes["process.executable.name"])'
    config = workdir / "config.yaml"
    config.write_text(_CONFIG.format(not_kept=not_kept, **ports))
    log_path = workdir / "collector.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(otelcol_bin), "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"collector exited {proc.returncode}: {log_path.read_text()[-2000:]}")
        return all("process_cpu_time_seconds_total" in _metrics(f"127.0.0.1:{p}") for p in ports.values())

    try:
        wait_for(ready, timeout=60, interval=0.2, what="the collector's prometheus exporters")
        yield Collector(proc.pid, **{k: f"127.0.0.1:{p}" for k, p in ports.items()})
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture
def probe_dir(tmp_path: Path) -> Path:
    """A directory for probe binaries."""
    path = tmp_path / "bin"
    path.mkdir()
    return path
