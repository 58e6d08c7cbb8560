"""Real metrics backends on loopback for the shipping tests: Debian's Prometheus with its remote-write
receiver, and a second otelcol-phoenix whose OTLP receiver (gRPC and HTTP) checks a bearer token."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import Fatal, free_port, unavailable, wait_for


@dataclass
class Process:
    """An external program (not a Phoenix service), its output in a log file; stop/start keep its data."""

    argv: list[str]
    log_path: Path
    ready_url: str
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Process:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_for(self._ready, timeout=timeout, what=f"{Path(self.argv[0]).name} to be ready ({self.tail()})")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise Fatal(f"{self.argv[0]} exited with {self.proc.returncode}: {self.tail()}")
        try:
            with urllib.request.urlopen(self.ready_url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@dataclass
class Prometheus:
    """`prometheus --web.enable-remote-write-receiver` on a free loopback port."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: Process | None = None
    # host:port exporters to scrape every second, honouring their timestamps (none: remote write only).
    scrape: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def write_url(self) -> str:
        return f"{self.url}/api/v1/write"

    def start(self) -> Prometheus:
        binary = shutil.which("prometheus")
        if binary is None:
            unavailable("Debian's prometheus is not installed: run `make system-deps`")
        config = self.directory / "prometheus.yml"
        # No scrape targets: everything it holds came by remote write. Batches a queue replays after an
        # outage may interleave with fresh ones, so late samples are accepted, as Mimir and
        # VictoriaMetrics accept them.
        text = "global: {scrape_interval: 1h}\nstorage:\n  tsdb:\n    out_of_order_time_window: 1h\n"
        if self.scrape:
            targets = ", ".join(f'"{t}"' for t in self.scrape)
            text += (
                "scrape_configs:\n  - job_name: phoenix\n    scrape_interval: 1s\n"
                f"    honor_timestamps: true\n    static_configs: [{{targets: [{targets}]}}]\n"
            )
        config.write_text(text)
        argv = [
            str(binary),
            f"--config.file={config}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-remote-write-receiver",
            f"--storage.tsdb.path={self.directory / 'data'}",
        ]
        self.process = Process(argv, self.directory / "prometheus.log", f"{self.url}/-/ready").start()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant query `expr` (at Unix time `at`, else now); an error names Prometheus' reason."""
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        try:
            return list(
                _get_json(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}")["data"]["result"]
            )
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"Prometheus refused {expr!r}: {exc.read()[:300]!r}") from None

    def samples(self, selector: str, start: float, end: float) -> list[tuple[float, float]]:
        """Every raw sample of the one series `selector` picks between two Unix times."""
        window = max(1, int(end - start) + 1)
        result = self.query(f"{selector}[{window}s] @ {end:.3f}")
        if not result:
            return []
        return [(float(t), float(v)) for t, v in result[0]["values"] if start <= float(t) <= end]


SINK_CONFIG = """
extensions:
  bearertokenauth/sink:
    token: "{token}"
  health_check:
    endpoint: 127.0.0.1:{health}
receivers:
  otlp/sink:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        auth: {{authenticator: bearertokenauth/sink}}
      http:
        endpoint: 127.0.0.1:{http}
        auth: {{authenticator: bearertokenauth/sink}}
exporters:
  debug/sink: {{verbosity: basic}}
service:
  extensions: [bearertokenauth/sink, health_check]
  telemetry:
    metrics:
      level: normal
      readers:
        - pull: {{exporter: {{prometheus: {{host: 127.0.0.1, port: {telemetry}}}}}}}
  pipelines:
    metrics:
      receivers: [otlp/sink]
      exporters: [debug/sink]
"""


@dataclass
class OtlpSink:
    """A collector that accepts OTLP only with `Authorization: Bearer <token>`, counting what it took."""

    directory: Path
    binary: Path
    token: str
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    telemetry_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    process: Process | None = None

    def start(self) -> OtlpSink:
        config = self.directory / "sink.yaml"
        config.write_text(
            SINK_CONFIG.format(
                token=self.token,
                health=self.health_port,
                grpc=self.grpc_port,
                http=self.http_port,
                telemetry=self.telemetry_port,
            )
        )
        argv = [str(self.binary), "--config", str(config)]
        ready = f"http://127.0.0.1:{self.health_port}/"
        self.process = Process(argv, self.directory / "sink.log", ready).start()
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def accepted(self, transport: str) -> float:
        """Datapoints its OTLP receiver accepted over `transport` (grpc or http)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.telemetry_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if (
                line.startswith("otelcol_receiver_accepted_metric_points")
                and f'transport="{transport}"' in line
            ):
                total += float(line.rsplit(" ", 1)[1])
        return total
