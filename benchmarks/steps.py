"""What each step of the intelligent pipeline buys, measured on one real collector's output.

One collector (bin/otelcol-phoenix) runs, from one hostmetrics collection, the baseline and the
intelligent pipeline built up a step at a time, on one load profile of real processes:

  baseline   process-baseline-v1: every pid, every default metric, every resource attribute
  tiers      + the non-critical processes keep only CPU (user, system) and memory (still per pid)
  by-name    + those processes aggregated by executable name (pid, parent, command line, owner gone)
  rollup     + names outside the agent's live keep list rolled into `other`: process-intelligent-v1

`tiers` and `by-name` are process-intelligent-v1's own rendered pipeline with the later processors
taken out (the keep-list processor for `by-name`; that and the aggregation for `tiers`); `rollup` is
the template as rendered, its keep list ranked by the agent's own refresher (agent/keeprefresh.py).
Each pipeline's exposition is read settled at every collection and counted as a backend bills it
(agent.measure.BillingCounter): distinct series over the trailing --window, datapoints per minute.
Per run: each step's billed series (p95 over the run after the first full window) and datapoints per
minute (mean), as a ratio to the baseline measured in the same run; then the medians over --runs.

    .venv/bin/python benchmarks/steps.py [--profile process-churn] [--runs 3] [--seconds 180]
        [--window 60] [--interval 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent import measure  # noqa: E402
from agent.keeprefresh import KeepListRefresher  # noqa: E402
from agent.loadgen import LoadProfile  # noqa: E402
from config_generator.catalog import load_catalog  # noqa: E402
from config_generator.render import KEEPLIST_PROCESSOR, render  # noqa: E402
from control_plane.stats import rank  # noqa: E402
from phoenix_common import wire  # noqa: E402
from phoenix_common.configmerge import merge_configs  # noqa: E402
from phoenix_common.keeplist import render_keep_file  # noqa: E402
from tests.support import free_port  # noqa: E402

CRITICAL = ["phx-db", "otelcol-phoenix"]
STEPS = ("baseline", "tiers", "by-name", "rollup")
# Processors of the rendered intelligent pipeline each partial step leaves out (by name prefix).
LEFT_OUT = {
    "tiers": (
        "cumulativetodelta/",
        f"{KEEPLIST_PROCESSOR}/",
        "transform/",
        "groupbyattrs/",
        "deltatocumulative/",
    ),
    "by-name": (f"{KEEPLIST_PROCESSOR}/",),
}


def _variant(step: str) -> str:
    return step.replace("-", "_")


def build(workdir: Path, interval: int) -> tuple[dict[str, Any], dict[str, str], Any]:
    """The merged config, each step's exporter endpoint, and the rollup's keep list (rendered spec)."""
    catalog = load_catalog()
    common = {"collection_interval": interval, "health_port": free_port(), "telemetry_port": free_port()}
    configs, endpoints, keep = [], {}, None
    for step in STEPS:
        v = _variant(step)
        if step == "baseline":
            r = render(catalog["process-baseline-v1"], {**common, "prometheus_port": free_port()}, variant=v)
        else:
            params = {
                **common,
                "prometheus_port": free_port(),
                "observe_port": free_port(),
                "keep_list_path": str(workdir / f"keep-{v}.json"),
                "critical_processes": CRITICAL,
            }
            r = render(catalog["process-intelligent-v1"], params, variant=v)
            pipeline = r.config["service"]["pipelines"][f"metrics/{v}"]
            cut = LEFT_OUT.get(step, ())
            # `transform/<v>-rollup` and `transform/<v>` go with the aggregation; the tier filter stays.
            pipeline["processors"] = [
                p for p in pipeline["processors"] if not any(p.startswith(prefix) for prefix in cut)
            ]
            r.config["processors"] = {
                k: val
                for k, val in r.config["processors"].items()
                if any(k in p["processors"] for p in r.config["service"]["pipelines"].values())
            }
            if step == "rollup":
                keep = r
            else:
                # A partial step keeps every name: none goes to `other`.
                del r.config["service"]["pipelines"][f"metrics/{v}-observe"]
                r.config["exporters"] = {
                    k: val for k, val in r.config["exporters"].items() if not k.endswith("-observe")
                }
            (workdir / f"keep-{v}.json").write_text(render_keep_file(CRITICAL))
        configs.append(r.config)
        endpoints[step] = r.prometheus_endpoint
    return merge_configs(*configs), endpoints, keep


async def run_once(args: argparse.Namespace, index: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="phoenix-steps-") as tmp:
        workdir = Path(tmp)
        config, endpoints, rollup = build(workdir, args.interval)
        (workdir / "otelcol.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        log = open(workdir / "otelcol.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [str(ROOT / "bin" / "otelcol-phoenix"), "--config", str(workdir / "otelcol.yaml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        load = LoadProfile(args.profile, seed=index)
        billed: dict[str, list[float]] = {s: [] for s in STEPS}
        dpm: dict[str, list[float]] = {s: [] for s in STEPS}
        refresher_task = None
        try:
            await load.start()
            async with aiohttp.ClientSession() as session:
                spec = wire.check(wire.KeepList, rollup.keep_list, "keep_list")
                period = 4.0 * args.interval  # as an experiment ranks (agent/experiment.py)
                refresher = KeepListRefresher(
                    None,  # type: ignore[arg-type] - a live keep list never reloads the collector
                    session,
                    variant=rollup.variant,
                    pipeline=rollup.template,
                    spec=spec,
                    keep_path=Path(spec.path),
                    observe_endpoint=rollup.observe_endpoint,
                    period=period,
                    min_hold_seconds=period,
                    collection_interval=args.interval,
                )
                refresher_task = asyncio.create_task(refresher.run())
                counters = {s: measure.BillingCounter(args.window) for s in STEPS}
                start = time.time()
                while time.time() - start < args.seconds:
                    await asyncio.sleep(args.interval - (time.time() - start) % args.interval)
                    for step in STEPS:
                        try:
                            series = await measure.read_settled(session, endpoints[step], 0.5 * args.interval)
                        except measure.MeasureError:
                            continue  # not up yet
                        figures = counters[step].observe(series, time.time())
                        if figures["observed_seconds"] >= args.window:
                            billed[step].append(figures["billed_series"])
                            if "datapoints_per_minute" in figures:
                                dpm[step].append(figures["datapoints_per_minute"])
        finally:
            if refresher_task is not None:
                refresher_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher_task
            await load.stop()
            proc.terminate()
            proc.wait(10)
            log.close()
        if not all(billed.values()):
            sys.exit(
                f"no full billing window measured: see {workdir / 'otelcol.log'} (run longer than --window)"
            )
        return {
            s: {"billed_p95": rank(billed[s], 0.95), "dpm": statistics.fmean(dpm[s]) if dpm[s] else 0.0}
            for s in STEPS
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="process-churn")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--window", type=float, default=60.0, help="billing window, seconds")
    parser.add_argument("--interval", type=int, default=2, help="collection interval, seconds")
    args = parser.parse_args()
    if args.seconds <= args.window + 2 * args.interval:
        parser.error("--seconds must exceed --window by at least two collections")
    runs = []
    for i in range(args.runs):
        runs.append(asyncio.run(run_once(args, i)))
        print(f"run {i + 1}: " + ", ".join(f"{s} {runs[-1][s]['billed_p95']:.0f}" for s in STEPS), flush=True)
    print()
    print(f"profile {args.profile}, {args.runs} runs of {args.seconds:g} s, billing window {args.window:g} s")
    header = (
        f"{'step':<10}{'billed p95':>12}{'x baseline':>12}{'this step':>11}{'dp/min':>10}{'x baseline':>12}"
    )
    print(header)
    print("-" * len(header))
    previous = None
    for step in STEPS:
        billed = statistics.median(r[step]["billed_p95"] for r in runs)
        ratio = statistics.median(r[step]["billed_p95"] / r["baseline"]["billed_p95"] for r in runs)
        dpm = statistics.median(r[step]["dpm"] for r in runs)
        dpm_ratio = statistics.median(
            r[step]["dpm"] / r["baseline"]["dpm"] for r in runs if r["baseline"]["dpm"]
        )
        cut = "" if previous is None else f"-{100 * (1 - ratio / previous):.1f}%"
        print(f"{step:<10}{billed:>12.0f}{ratio:>12.3f}{cut:>11}{dpm:>10.0f}{dpm_ratio:>12.3f}")
        previous = ratio
    print("\nx baseline: median over runs of the step's figure / the baseline's in the same run;")
    print("this step: the billed series it removes from what the step before it left.")


if __name__ == "__main__":
    main()
