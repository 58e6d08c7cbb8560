"""The control plane and the config generator as real subprocesses, for tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.support import ServiceProcess, free_port


@dataclass
class Service:
    url: str
    port: int
    process: ServiceProcess

    def stop(self) -> int | None:
        return self.process.stop()

    def start(self) -> None:
        self.process.start()


def start_api(
    database_url: str,
    tmp_path: Path,
    *,
    generator_url: str = "http://127.0.0.1:9",
    env: dict[str, str] | None = None,
    port: int | None = None,
    name: str = "api",
) -> Service:
    port = port or free_port()
    proc = ServiceProcess(
        "control_plane",
        {
            "PHOENIX_DATABASE_URL": database_url,
            "PHOENIX_PORT": str(port),
            "PHOENIX_GENERATOR_URL": generator_url,
            "PHOENIX_LOG_LEVEL": "info",
            **(env or {}),
        },
        tmp_path / f"{name}-{port}.log",
        health_url=f"http://127.0.0.1:{port}/health",
    )
    return Service(f"http://127.0.0.1:{port}", port, proc.start())


def start_generator(tmp_path: Path, control_plane_url: str, port: int | None = None) -> Service:
    port = port or free_port()
    proc = ServiceProcess(
        "config_generator",
        {
            "PHOENIX_GENERATOR_PORT": str(port),
            "PHOENIX_GENERATOR_CONTROL_PLANE_URL": control_plane_url,
        },
        tmp_path / f"generator-{port}.log",
        health_url=f"http://127.0.0.1:{port}/health",
    )
    return Service(f"http://127.0.0.1:{port}", port, proc.start())


@dataclass
class Stack:
    api: Service
    generator: Service
    database_url: str
