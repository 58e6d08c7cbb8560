"""Render latency per template, against peers measured in the same run.

Run: python benchmarks/render.py [--renders 2000]

For each template it times `render()` in-process (parameter validation, config build, YAML dump,
sha256) and, on the same config dict, two peers: PyYAML's pure-Python `yaml.safe_dump` and
`json.dumps`. Absolute times drift on shared machines; the ratio to the peers does not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config_generator.catalog import load_catalog
from config_generator.render import render

TARGET_P50_MS = 2.0
PARAMETERS: dict[str, dict[str, Any]] = {
    "process-intelligent-v1": {"critical_processes": ["sshd", "systemd", "postgres", "nginx", 'odd"$name']},
}


def timings(fn: Callable[[], object], runs: int) -> list[float]:
    """Milliseconds of `runs` calls of `fn`, after a short warm-up."""
    for _ in range(min(50, runs)):
        fn()
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=2000, help="renders per template (default 2000)")
    args = parser.parse_args(argv)
    catalog = load_catalog()
    rows = []
    for name, template in sorted(catalog.items()):
        params = PARAMETERS.get(name, {})
        config = render(template, params, variant="candidate", experiment_id="bench").config
        ours = timings(
            partial(render, template, params, variant="candidate", experiment_id="bench"), args.renders
        )
        pure = timings(partial(yaml.safe_dump, config, sort_keys=False), args.renders)
        js = timings(partial(json.dumps, config), args.renders)
        rows.append(
            (name, percentile(ours, 50), percentile(ours, 95), percentile(pure, 50), percentile(js, 50))
        )

    header = (
        f"{'template':<24} {'render p50':>11} {'render p95':>11} {'safe_dump p50':>14} "
        f"{'json p50':>9} {'render/safe_dump':>17} {'render/json':>12}"
    )
    print(f"{args.renders} renders per template, times in ms (python {sys.version.split()[0]})")
    print(header)
    print("-" * len(header))
    for name, p50, p95, pure50, js50 in rows:
        print(
            f"{name:<24} {p50:>11.3f} {p95:>11.3f} {pure50:>14.3f} {js50:>9.3f} "
            f"{p50 / pure50:>16.2f}x {p50 / js50:>11.1f}x"
        )
    worst = max(r[1] for r in rows)
    verdict = "meets" if worst < TARGET_P50_MS else "MISSES"
    print(f"\nslowest render p50 {worst:.3f} ms {verdict} the {TARGET_P50_MS:g} ms target")
    return 0 if worst < TARGET_P50_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
