"""What the intelligent pipeline saves, measured as a backend bills it, over several identical runs.

Against a running dev stack (`make dev-up`: API, generator, one real agent and collector on this host),
runs --runs experiments of process-baseline-v1 against process-intelligent-v1 on one load profile, one
after the other, and prints each run's measured figures (docs/analysis.md), then their medians and the
spread (max - min) between the identical runs. Nothing is estimated: every figure is the analysis the
control plane computed from the agent's samples.

    .venv/bin/python benchmarks/savings.py [--profile realistic|process-churn] [--runs 3]
        [--duration 3m] [--warmup 30s] [--billing-window 1m] [--interval 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PHOENIX = [str(ROOT / ".venv" / "bin" / "phoenix"), "--json"]
CRITICAL = ["phx-db", "otelcol-phoenix"]
COLUMNS = (
    ("billed red. %", lambda a: a["fleet"].get("billed_series_reduction_percent")),
    ("billed base p95", lambda a: a["pipelines"]["baseline"].get("billed_series")),
    ("billed cand p95", lambda a: a["pipelines"]["candidate"].get("billed_series")),
    ("dpm red. %", lambda a: a["fleet"].get("datapoints_per_minute_reduction_percent")),
    ("snapshot red. %", lambda a: a["fleet"].get("snapshot_series_reduction_percent")),
    ("cpu cov. %", lambda a: a["fleet"].get("cpu_coverage_percent")),
    ("cpu cov. p10 %", lambda a: a["fleet"].get("cpu_coverage_p10_percent")),
    ("fidelity med", lambda a: (a["fleet"].get("cpu_rate_fidelity") or {}).get("median")),
    ("fidelity worst", lambda a: (a["fleet"].get("cpu_rate_fidelity") or {}).get("worst")),
    ("reload pairs", lambda a: (a["fleet"].get("cpu_rate_fidelity") or {}).get("reload_pairs")),
    ("critical missing", lambda a: len(a["fleet"].get("critical_missing") or [])),
)


def phoenix(*args: str) -> Any:
    out = subprocess.run([*PHOENIX, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"phoenix {' '.join(args)} failed: {out.stderr.strip() or out.stdout.strip()}")
    return json.loads(out.stdout)


def run_once(args: argparse.Namespace, index: int) -> dict[str, Any]:
    created = phoenix(
        "experiment", "create", "--name", f"savings-{args.profile}-{index}",
        "--baseline", "process-baseline-v1", "--candidate", "process-intelligent-v1",
        "--namespace", args.namespace, "--critical", *CRITICAL,
        "--param-baseline", f"collection_interval={args.interval}",
        "--param-candidate", f"collection_interval={args.interval}",
        "--warmup", args.warmup, "--duration", args.duration, "--sample-interval", f"{args.interval}s",
        "--billing-window", args.billing_window, "--load-profile", args.profile,
    )  # fmt: skip
    experiment = created["id"]
    while True:
        shown = phoenix("experiment", "status", experiment)
        if shown["phase"] in ("completed", "failed", "stopped"):
            break
        time.sleep(5)  # a benchmark polling a minutes-long run, not a test
    if shown["phase"] != "completed":
        sys.exit(f"experiment {experiment} ended {shown['phase']}: {shown.get('phase_reason')}")
    analysis = phoenix("experiment", "analysis", experiment)
    return {"id": experiment, "verdict": analysis.get("verdict"), "analysis": analysis}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="realistic")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", default="3m")
    parser.add_argument("--warmup", default="30s")
    parser.add_argument("--billing-window", default="1m")
    parser.add_argument("--interval", type=int, default=5, help="collection and sample interval, seconds")
    parser.add_argument("--namespace", default="default")
    args = parser.parse_args()
    runs = [run_once(args, i) for i in range(args.runs)]
    width = max(len(name) for name, _ in COLUMNS) + 2
    print(f"profile {args.profile}: {args.runs} runs of {args.duration} (warm-up {args.warmup}), "
          f"billing window {args.billing_window}, interval {args.interval}s")  # fmt: skip
    print(
        "figure".ljust(width)
        + "".join(f"{'run ' + str(i + 1):>12}" for i in range(len(runs)))
        + f"{'median':>12}{'spread':>12}"
    )
    for name, read in COLUMNS:
        values = [read(r["analysis"]) for r in runs]
        numbers = [float(v) for v in values if v is not None]
        cells = "".join(f"{'-' if v is None else round(float(v), 4):>12}" for v in values)
        median = round(statistics.median(numbers), 4) if numbers else "-"
        spread = round(max(numbers) - min(numbers), 4) if numbers else "-"
        print(name.ljust(width) + cells + f"{median:>12}{spread:>12}")
    print("verdict".ljust(width) + "".join(f"{r['verdict']!s:>12}" for r in runs))
    print("experiments: " + ", ".join(r["id"] for r in runs))


if __name__ == "__main__":
    main()
