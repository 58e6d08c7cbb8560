"""Overhead per arm: run one variant's config alone in a short-lived probe collector and measure it.

During an experiment both arms run in one collector, so its CPU and memory belong to the pair. A probe
runs one arm's pipelines (its Prometheus exporters only: nothing is shipped) in a second collector
process on free loopback ports, beside the running one, which is left untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import socket
import tempfile
from pathlib import Path
from typing import Any

import structlog
import yaml

from agent.measure import CollectorUsage

log = structlog.get_logger("phoenix.agent.probe")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def probe_config(config: dict[str, Any], variant: str) -> dict[str, Any]:
    """`config` reduced to `variant`'s own pipelines, exporting to Prometheus only, on free ports."""
    out = copy.deepcopy(config)
    service = out.setdefault("service", {})
    pipelines = {
        name: p
        for name, p in (service.get("pipelines") or {}).items()
        if name == f"metrics/{variant}" or name.startswith(f"metrics/{variant}-")
    }
    for p in pipelines.values():
        p["exporters"] = [e for e in p.get("exporters") or [] if e.startswith("prometheus/")]
        p["receivers"] = [r for r in p.get("receivers") or [] if r.startswith("hostmetrics/")]
    service["pipelines"] = {n: p for n, p in pipelines.items() if p["exporters"] and p["receivers"]}
    used_exporters = {e for p in service["pipelines"].values() for e in p["exporters"]}
    used_processors = {x for p in service["pipelines"].values() for x in p.get("processors") or []}
    used_receivers = {r for p in service["pipelines"].values() for r in p["receivers"]}
    out["exporters"] = {k: v for k, v in (out.get("exporters") or {}).items() if k in used_exporters}
    out["processors"] = {k: v for k, v in (out.get("processors") or {}).items() if k in used_processors}
    out["receivers"] = {k: v for k, v in (out.get("receivers") or {}).items() if k in used_receivers}
    for exporter in out["exporters"].values():
        exporter["endpoint"] = f"127.0.0.1:{_free_port()}"
    out["extensions"] = {}
    service["extensions"] = []
    service["telemetry"] = {"metrics": {"level": "none"}}
    return out


async def measure_alone(binary: str, config: dict[str, Any], variant: str, seconds: float) -> dict[str, Any]:
    """Run `variant` alone for `seconds` and return its collector's CPU (percent of one core, measured
    after its first second) and peak resident memory; {"error": ...} when the probe cannot run."""
    probe = probe_config(config, variant)
    with tempfile.TemporaryDirectory(prefix="phoenix-probe-") as tmp:
        path = Path(tmp) / "probe.yaml"
        path.write_text(yaml.safe_dump(probe, sort_keys=False))
        try:
            proc = await asyncio.create_subprocess_exec(
                binary,
                "--config",
                str(path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as exc:
            return {"error": f"cannot run {binary}: {exc.strerror or exc}"}
        try:
            usage = CollectorUsage(proc.pid)
            await asyncio.sleep(1.0)
            usage.sample()  # start-up is not steady-state cost
            peak = 0
            loop = asyncio.get_running_loop()
            start = loop.time()
            cpu = 0.0
            while loop.time() - start < max(seconds - 1.0, 1.0):
                await asyncio.sleep(1.0)
                if proc.returncode is not None:
                    return {"error": f"probe collector exited with {proc.returncode}"}
                reading = usage.sample()
                cpu += reading["collector_cpu_percent"]
                peak = max(peak, int(reading["collector_memory_bytes"]))
            steps = max(round(loop.time() - start), 1)
            return {
                "collector_cpu_percent": round(cpu / steps, 3),
                "collector_memory_bytes": peak,
                "seconds": round(loop.time() - start, 3),
            }
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
