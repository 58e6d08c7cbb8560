"""A session-wide real collector and probe processes for the measurement tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# Names the folded pipeline keeps; every other process becomes `other` (as the selection templates do).
FOLDED_KEEP = ("otelcol-phoenix", "phx-probe")


_CONFIG = """\
receivers:
  hostmetrics/phoenix:
    collection_interval: 1s
    scrapers:
      process:
        mute_process_name_error: true
        mute_process_exe_error: true
        mute_process_io_error: true
        mute_process_user_error: true
        mute_process_cgroup_error: true
processors:
  transform/folded:
    error_mode: ignore
    metric_statements:
      - context: resource
        statements:
          - keep_keys(resource.attributes, ["process.executable.name"]) where {not_kept}
          - set(resource.attributes["process.executable.name"], "other") where {not_kept}
  groupbyattrs/folded: {{}}
exporters:
  prometheus/full:
    endpoint: 127.0.0.1:{full}
    resource_constant_labels: {{included: ["*"]}}
    without_scope_info: true
    metric_expiration: 30s
  prometheus/stamped:
    endpoint: 127.0.0.1:{stamped}
    resource_constant_labels: {{included: ["*"]}}
    without_scope_info: true
    send_timestamps: true
    metric_expiration: 30s
  prometheus/folded:
    endpoint: 127.0.0.1:{folded}
    resource_constant_labels: {{included: ["*"]}}
    without_scope_info: true
    metric_expiration: 30s
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics/full:
      receivers: [hostmetrics/phoenix]
      exporters: [prometheus/full]
    metrics/stamped:
      receivers: [hostmetrics/phoenix]
      exporters: [prometheus/stamped]
    metrics/folded:
      receivers: [hostmetrics/phoenix]
      processors: [transform/folded, groupbyattrs/folded]
      exporters: [prometheus/folded]
"""


@dataclass(frozen=True)
class Collector:
    """A running real collector with three Prometheus exporters on loopback."""

    pid: int
    full: str  # every process at full detail, no timestamps
    stamped: str  # the same with send_timestamps
    folded: str  # only FOLDED_KEEP at full detail, the rest folded into `other`


def _metrics(endpoint: str) -> str:
    with urllib.request.urlopen(f"http://{endpoint}/metrics", timeout=5) as response:
        return str(response.read().decode())


_PROBE_CODE = """\
import os, sys, time
ballast = b"\\x01" * (int(sys.argv[1]) * 1024 * 1024)
duty, ppid = float(sys.argv[2]), int(sys.argv[3])
while os.getppid() == ppid:
    until = time.monotonic() + duty * 0.05
    while time.monotonic() < until:
        pass
    time.sleep((1 - duty) * 0.05)
"""


@dataclass
class Probe:
    """A child process with a known executable name, resident memory and CPU duty cycle."""

    name: str
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextlib.contextmanager
def run_probe(directory: Path, name: str, memory_mib: int, duty: float) -> Iterator[Probe]:
    """Run a copy of this interpreter named `name` holding `memory_mib` MiB and burning `duty` of a core."""
    binary = directory / name
    shutil.copy2(os.path.realpath(sys.executable), binary)
    env = {"PYTHONHOME": sys.base_prefix, "LD_LIBRARY_PATH": str(sysconfig.get_config_var("LIBDIR") or "")}
    proc = subprocess.Popen(
        [str(binary), "-S", "-s", "-c", _PROBE_CODE, str(memory_mib), str(duty), str(os.getpid())],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield Probe(name, proc)
    finally:
        proc.kill()
        proc.wait(10)
