"""Decode + validate an experiment-start payload and a batch of Samples: msgspec vs pydantic vs hand checks.

    .venv/bin/python benchmarks/contracts.py [--runs 7]

Prints µs per decode (median of the runs) with ratios against msgspec measured in the same run, and
what importing each library adds to an interpreter that has loaded aiohttp, structlog and yaml (as the
agent does anyway).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from phoenix_common import wire

CONFIG = "receivers:\n  hostmetrics/phoenix:\n    collection_interval: 10s\n" + "".join(
    f"processors:\n  transform/x-{i}:\n    metric_statements:\n      - 'set(attr{i}, \"v\")'\n"
    for i in range(40)
)


def rendered(role: str, port: int) -> dict[str, Any]:
    return {
        "template": "process-topk-v1",
        "variant": role,
        "config_yaml": CONFIG,
        "config_hash": "0" * 64,
        "prometheus_endpoint": f"127.0.0.1:{port}",
        "observe_endpoint": f"127.0.0.1:{port + 1}",
        "keep_list": {
            "path": f"/var/lib/phoenix-agent/keep/{role}.yaml",
            "strategy": "topk",
            "k": 10,
            "critical": ["sshd", "systemd", "postgres"],
            "initial": [f"proc-{i}" for i in range(10)],
            "refresh_seconds": 120,
        },
    }


START = {
    "experiment_id": "0d6f5a4e-8f8e-4c55-9a4b-7c6a1f1d2e3f",
    "duration_seconds": 600,
    "warmup_seconds": 60,
    "sample_interval_seconds": 10,
    "critical_processes": ["sshd", "systemd", "postgres"],
    "load_profile": "realistic",
    "baseline": rendered("baseline", 9464),
    "candidate": rendered("candidate", 9466),
}
PROCS = {f"proc-{i}": 0.01 * i for i in range(30)} | {wire.OTHER: 1.5}
SAMPLES = [
    {
        "variant": "candidate",
        "pipeline": "process-topk-v1",
        "ts": 1_760_000_000.0 + 10 * i,
        "active_series": 420,
        "datapoints_per_second": 42.0,
        "interval_seconds": 10.0,
        "series_per_metric": {"process_cpu_time_seconds_total": 60, "process_memory_usage_bytes": 30},
        "process_cpu_seconds_rate": PROCS,
        "process_memory_bytes": {n: int(v * 1e8) for n, v in PROCS.items()},
        "process_cpu_seconds_total": PROCS,
        "kept_processes": sorted(PROCS),
        "critical_present": {"sshd": True, "systemd": True},
        "collector_cpu_percent": 1.2,
        "collector_memory_bytes": 80_000_000,
        "data_ts": None,
    }
    for i in range(50)
]


# -- (c) plain dataclasses + the hand checks Phoenix used before wire.py -----------------------------------


class HandError(ValueError):
    pass


def _get(obj: dict[str, Any], name: str, kind: type, where: str, *, required: bool = True) -> Any:
    value = obj.get(name)
    if value is None:
        if required:
            raise HandError(f"{where}.{name} is required")
        return None
    number = kind is float and isinstance(value, int | float) and not isinstance(value, bool)
    if not (number or (isinstance(value, kind) and not isinstance(value, bool))):
        raise HandError(f"{where}.{name} has the wrong type")
    if kind is float and not math.isfinite(value):
        raise HandError(f"{where}.{name} must be a finite number")
    return value


def _strings(obj: dict[str, Any], name: str, where: str) -> tuple[str, ...]:
    values = _get(obj, name, list, where, required=False) or []
    if not all(isinstance(v, str) for v in values):
        raise HandError(f"{where}.{name} must be an array of strings")
    return tuple(values)


@dataclass(frozen=True)
class HandKeep:
    path: str
    strategy: str
    k: int
    critical: tuple[str, ...]
    initial: tuple[str, ...]
    refresh_seconds: float


@dataclass(frozen=True)
class HandRendered:
    template: str
    variant: str
    config_yaml: str
    prometheus_endpoint: str
    observe_endpoint: str | None
    keep_list: HandKeep | None


@dataclass(frozen=True)
class HandStart:
    experiment_id: str
    duration_seconds: float
    critical_processes: tuple[str, ...]
    baseline: HandRendered
    candidate: HandRendered


def hand_keep(value: dict[str, Any], where: str) -> HandKeep:
    k = _get(value, "k", int, where)
    if k < 0:
        raise HandError(f"{where}.k must not be negative")
    strategy = _get(value, "strategy", str, where)
    if strategy not in wire.STRATEGIES:
        raise HandError(f"{where}.strategy must be one of {wire.STRATEGIES}")
    out = HandKeep(
        _get(value, "path", str, where),
        strategy,
        k,
        _strings(value, "critical", where),
        _strings(value, "initial", where),
        float(_get(value, "refresh_seconds", float, where, required=False) or 120.0),
    )
    wire.KeepList.__post_init__(out)  # type: ignore[arg-type]
    return out


def hand_rendered(value: Any, where: str) -> HandRendered:
    if not isinstance(value, dict):
        raise HandError(f"{where} must be a Rendered object")
    keep = value.get("keep_list")
    out = HandRendered(
        _get(value, "template", str, where),
        _get(value, "variant", str, where),
        _get(value, "config_yaml", str, where),
        _get(value, "prometheus_endpoint", str, where),
        _get(value, "observe_endpoint", str, where, required=False),
        hand_keep(keep, f"{where}.keep_list") if keep else None,
    )
    wire.Rendered.__post_init__(out)  # type: ignore[arg-type]  # the same checks on every peer
    return out


def hand_start(payload: dict[str, Any]) -> HandStart:
    return HandStart(
        _get(payload, "experiment_id", str, "payload"),
        float(_get(payload, "duration_seconds", float, "payload")),
        _strings(payload, "critical_processes", "payload"),
        hand_rendered(payload.get("baseline"), "payload.baseline"),
        hand_rendered(payload.get("candidate"), "payload.candidate"),
    )


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and value == value and value >= 0


def hand_samples(samples: list[Any]) -> list[Any]:
    """The checks control_plane/experiments.py made by hand (a subset of wire.Sample's)."""
    for i, sample in enumerate(samples):
        where = f"samples[{i}]"
        if not isinstance(sample, dict) or not isinstance(sample.get("variant"), str):
            raise HandError(f"{where} must be an object with a variant")
        if not _number(sample.get("ts")):
            raise HandError(f"{where}.ts must be a unix time in seconds")
        for key in ("active_series", "datapoints_per_second", "collector_cpu_percent"):
            if sample.get(key) is not None and not _number(sample[key]):
                raise HandError(f"{where}.{key} must be a non-negative number")
        for key in ("series_per_metric", "process_cpu_seconds_rate", "process_memory_bytes"):
            value = sample.get(key)
            if value is not None and not all(_number(v) for v in value.values()):
                raise HandError(f"{where}.{key} must map names to non-negative numbers")
    return samples


# -- (b) pydantic v2 ---------------------------------------------------------------------------------------


def pydantic_peers() -> tuple[Callable[[Any], Any], ...] | None:
    try:
        import pydantic
    except ImportError:
        return None
    from typing import Annotated

    NonNeg = Annotated[float, pydantic.Field(ge=0)]

    class PKeep(pydantic.BaseModel):
        path: str
        strategy: str
        k: Annotated[int, pydantic.Field(ge=0, strict=True)]
        critical: list[str] = []
        initial: list[str] = []
        refresh_seconds: Annotated[float, pydantic.Field(gt=0)] = 120.0

        @pydantic.model_validator(mode="after")
        def same_checks(self) -> PKeep:
            wire.KeepList.__post_init__(self)  # type: ignore[arg-type]
            return self

    class PRendered(pydantic.BaseModel):
        template: str
        variant: str
        config_yaml: str
        prometheus_endpoint: str
        config_hash: str | None = None
        observe_endpoint: str | None = None
        keep_list: PKeep | None = None

        @pydantic.model_validator(mode="after")
        def same_checks(self) -> PRendered:
            wire.Rendered.__post_init__(self)  # type: ignore[arg-type]
            return self

    class PStart(pydantic.BaseModel):
        experiment_id: str
        duration_seconds: float
        warmup_seconds: NonNeg = 0.0
        sample_interval_seconds: Annotated[float, pydantic.Field(ge=1)] = 10.0
        critical_processes: list[str] = []
        load_profile: str | None = None
        baseline: PRendered
        candidate: PRendered

    class PSample(pydantic.BaseModel):
        variant: Annotated[str, pydantic.Field(min_length=1, max_length=64)]
        ts: Annotated[float, pydantic.Field(ge=wire.TS_RANGE[0], le=wire.TS_RANGE[1])]
        active_series: NonNeg
        pipeline: str | None = None
        datapoints_per_second: NonNeg | None = None
        collector_cpu_percent: NonNeg | None = None
        collector_memory_bytes: NonNeg | None = None
        interval_seconds: NonNeg | None = None
        data_ts: float | None = None
        series_per_metric: dict[str, NonNeg] | None = None
        process_cpu_seconds_rate: dict[str, NonNeg] | None = None
        process_memory_bytes: dict[str, NonNeg] | None = None
        process_cpu_seconds_total: dict[str, NonNeg] | None = None
        kept_processes: list[str] | None = None
        critical_present: dict[str, bool] | None = None

    samples = pydantic.TypeAdapter(list[PSample])
    return PStart.model_validate, samples.validate_python, PStart.model_validate_json, samples.validate_json


# -- measuring ---------------------------------------------------------------------------------------------


def per_call_us(fn: Callable[[Any], Any], data: Any, runs: int) -> float:
    """Median over `runs` of the mean µs per call (each run about 0.2 s)."""
    fn(data)
    count = max(1, int(0.2 / max(1e-7, _once(fn, data))))
    medians = []
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(count):
            fn(data)
        medians.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(medians)


def _once(fn: Callable[[Any], Any], data: Any) -> float:
    started = time.perf_counter()
    fn(data)
    return time.perf_counter() - started


IMPORT_PROBE = (
    "import sys, time\n"
    "import aiohttp, structlog, yaml\n"
    "def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096\n"
    "before = rss()\n"
    "t = time.perf_counter()\n"
    "exec(sys.argv[1])\n"
    "print(time.perf_counter() - t, rss() - before)\n"
)


def import_cost(statement: str, runs: int) -> tuple[float, float]:
    """(ms, MiB of RSS) `statement` adds to an interpreter holding what the agent loads anyway; medians."""
    times, rss = [], []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE, statement], capture_output=True, text=True, check=True
        ).stdout.split()
        times.append(float(out[0]) * 1000)
        rss.append(int(out[1]) / 2**20)
    return statistics.median(times), statistics.median(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    import msgspec

    as_bytes = {"start": json.dumps(START).encode(), "samples": json.dumps(SAMPLES).encode()}
    as_dicts = {"start": START, "samples": SAMPLES}
    # Both services receive dicts (aiohttp's json(), json_body); decoding from bytes is shown for reference.
    peers: dict[str, tuple[Callable[[Any], Any], Callable[[Any], Any], dict[str, Any], str]] = {
        "msgspec (wire.check)": (
            lambda d: wire.check(wire.ExperimentStart, d),
            lambda d: wire.check(list[wire.Sample], d, "samples"),
            as_dicts,
            "import msgspec",
        ),
        "dataclasses + hand checks": (hand_start, hand_samples, as_dicts, "import dataclasses, json"),
    }
    found = pydantic_peers()
    if found is not None:
        peers["pydantic v2"] = (found[0], found[1], as_dicts, "import pydantic; pydantic.BaseModel")
    peers["msgspec from bytes"] = (
        msgspec.json.Decoder(wire.ExperimentStart).decode,
        msgspec.json.Decoder(list[wire.Sample]).decode,
        as_bytes,
        "import msgspec",
    )
    if found is not None:
        peers["pydantic v2 from bytes"] = (
            found[2],
            found[3],
            as_bytes,
            "import pydantic; pydantic.BaseModel",
        )
    rows = []
    for name, (start, samples, data, statement) in peers.items():
        ms, mib = import_cost(statement, args.runs)
        start_us = per_call_us(start, data["start"], args.runs)
        rows.append((name, start_us, per_call_us(samples, data["samples"], args.runs), ms, mib))
    ref = rows[0]
    start_size, samples_size = len(as_bytes["start"]), len(as_bytes["samples"])
    print(f"experiment start: {start_size} bytes; {len(SAMPLES)} samples: {samples_size} bytes")
    print(
        f"{'peer':26} {'start µs':>9} {'x':>6} {'samples µs':>11} {'x':>6} {'import ms':>10} {'+RSS MiB':>9}"
    )
    for name, s_us, b_us, ms, mib in rows:
        ratios = f"{s_us / ref[1]:6.2f} {b_us:11.1f} {b_us / ref[2]:6.2f}"
        print(f"{name:26} {s_us:9.1f} {ratios} {ms:10.1f} {mib:9.1f}")


if __name__ == "__main__":
    main()
