"""The billing-true measure against an independent count: the real collector runs the baseline and the
intelligent pipeline side by side on the process-churn profile, a real Prometheus (Debian's package)
scrapes both exporters, and the agent's figures must agree with what that Prometheus stores:

- billed series per arm = count(count_over_time({variant}[W])) at the same instant, within 2%;
- the candidate's roll-up is monotonic: no counter resets and rate() shows no false spike, while the
  keep list changes twice (the collector reads it live: no reload, no rebuilt state);
- the candidate's total CPU rate equals the baseline's within 1.5% (1% on a quiet host) on every pair
  of samples taken from one collection, processes exiting and both keep-list changes included.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from agent import measure
from agent.loadgen import LoadProfile
from config_generator.catalog import load_catalog
from config_generator.render import render
from phoenix_common.configmerge import merge_configs
from phoenix_common.keeplist import render_keep_file
from tests.support import eventually, free_port
from tests.support.backends import Prometheus

WINDOW = 60.0  # the shortest billing window an experiment takes
INTERVAL = 2  # collection interval, seconds
SAMPLE_EVERY = float(INTERVAL)  # every collection: a series that lives between two samples is
# counted by the candidate's delta path but not by a slower reader of the baseline
RUN_SECONDS = WINDOW + 40.0
CRITICAL = "phx-db"


def _configs(keep_path: Path) -> tuple[dict[str, Any], str, str]:
    catalog = load_catalog()
    ports = {"base": free_port(), "cand": free_port(), "observe": free_port()}
    common = {"collection_interval": INTERVAL, "health_port": free_port(), "telemetry_port": free_port()}
    baseline = render(
        catalog["process-baseline-v1"], {**common, "prometheus_port": ports["base"]}, variant="baseline"
    )
    candidate = render(
        catalog["process-intelligent-v1"],
        {
            **common,
            "prometheus_port": ports["cand"],
            "observe_port": ports["observe"],
            "keep_list_path": str(keep_path),
            "critical_processes": [CRITICAL],
        },
        variant="candidate",
    )
    return (
        merge_configs(baseline.config, candidate.config),
        baseline.prometheus_endpoint,
        candidate.prometheus_endpoint,
    )


async def _pair(session: aiohttp.ClientSession, endpoints: dict[str, str]) -> dict[str, list[measure.Series]]:
    """Both expositions, each settled, from one collection (as the agent's experiment loop takes them)."""

    async def consistent() -> dict[str, list[measure.Series]] | None:
        read = {
            role: await measure.read_settled(session, endpoint, 0.5 * INTERVAL)
            for role, endpoint in endpoints.items()
        }
        stamps = [measure.newest_timestamp(series) or 0.0 for series in read.values()]
        return read if max(stamps) - min(stamps) < 0.5 * INTERVAL else None

    return dict(await eventually(consistent, 3 * INTERVAL, "both exporters showing one collection"))


@pytest.mark.timeout(600)
async def test_billed_series_rates_and_resets_agree_with_a_real_prometheus(
    otelcol_bin: Path, tmp_path: Path
) -> None:
    keep = tmp_path / "keep.yaml"
    keep.write_text(render_keep_file(["phx-api"]))
    config, base_ep, cand_ep = _configs(keep)
    (tmp_path / "otelcol.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    log = open(tmp_path / "otelcol.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [str(otelcol_bin), "--config", str(tmp_path / "otelcol.yaml")],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    prometheus = Prometheus(tmp_path / "prometheus", scrape=(base_ep, cand_ep))
    (tmp_path / "prometheus").mkdir()
    load = LoadProfile("process-churn", seed=13)
    endpoints = {"baseline": base_ep, "candidate": cand_ep}
    samples: dict[str, list[dict[str, Any]]] = {"baseline": [], "candidate": []}
    try:
        prometheus.start()
        await load.start()
        async with aiohttp.ClientSession() as session:

            async def both_up() -> bool:
                with contextlib.suppress(measure.MeasureError):
                    texts = [await measure.scrape(session, e) for e in endpoints.values()]
                    return all("process_cpu_time_seconds_total" in t for t in texts)
                return False

            await eventually(both_up, 60, "both exporters serve process metrics")
            billing = {r: measure.BillingCounter(WINDOW) for r in endpoints}
            refs: dict[str, measure.Snapshot | None] = {r: None for r in endpoints}
            start = time.time()
            # Keep-list changes halfway and at three quarters: two long-lived services move out of
            # `other` into series of their own, then one of them moves back.
            changes = [
                (RUN_SECONDS / 2, ["phx-api", "phx-web", "phx-cache"]),
                (RUN_SECONDS * 3 / 4, ["phx-api", "phx-cache"]),
            ]
            while time.time() - start < RUN_SECONDS:
                await asyncio.sleep(SAMPLE_EVERY - (time.time() - start) % SAMPLE_EVERY)
                read = await _pair(session, endpoints)
                for role, series in read.items():
                    sample, ref = measure.summarize(
                        series,
                        variant=role,
                        pipeline=role,
                        previous=refs[role],
                        critical=[CRITICAL],
                        collection_interval=INTERVAL,
                        billing=billing[role],
                    )
                    refs[role] = ref
                    samples[role].append(sample)
                if changes and time.time() - start > changes[0][0]:
                    keep.write_text(render_keep_file(changes.pop(0)[1]))
        await load.stop()

        def ingested() -> bool:
            """Prometheus holds each arm's newest sampled collection."""
            for role in endpoints:
                newest = max(float(s["data_ts"] or 0.0) for s in samples[role])
                got = prometheus.query(
                    f'max(timestamp(process_memory_usage_bytes{{phoenix_variant="{role}"}}))', at=time.time()
                )
                if not got or float(got[0]["value"][1]) < newest - 1e-3:
                    return False
            return True

        await eventually(ingested, 30, "Prometheus to scrape the last sampled collection")

        # 1. Billed series agree with Prometheus' own count over the same window.
        metrics = {r: {m for s in samples[r] for m in s["series_per_metric"]} for r in endpoints}
        checked = 0
        for role in endpoints:
            for sample in samples[role]:
                if sample["observed_seconds"] < WINDOW:
                    continue
                # One count per metric: a range function drops the name, so series of two metrics
                # with the same labels would collide in one vector.
                counted = 0.0
                for metric in metrics[role]:
                    expr = f'count(count_over_time({metric}{{phoenix_variant="{role}"}}[{int(WINDOW)}s]))'
                    result = prometheus.query(expr, at=sample["ts"])
                    counted += float(result[0]["value"][1]) if result else 0.0
                assert counted > 0, f"Prometheus holds no {role} series at {sample['ts']}"
                assert abs(sample["billed_series"] - counted) <= 0.02 * counted, (
                    role,
                    sample["billed_series"],
                    counted,
                )
                checked += 1
        assert checked >= 4
        base_billed = max(s["billed_series"] for s in samples["baseline"])
        cand_billed = max(s["billed_series"] for s in samples["candidate"])
        assert cand_billed < base_billed / 5, (base_billed, cand_billed)

        # 2. The roll-up never falls, and rate() shows no false spike.
        span = int(time.time() - start) + 5
        resets = prometheus.query(
            f'resets(process_cpu_time_seconds_total{{phoenix_variant="candidate",process_executable_name="other"}}[{span}s])'
        )
        assert resets and all(float(r["value"][1]) == 0 for r in resets), resets
        # The collector ran through both changes (it was never reloaded or restarted).
        assert proc.poll() is None and (tmp_path / "otelcol.log").read_text().count("keep-list loaded") >= 3
        spike = prometheus.query(
            f'max_over_time(sum(rate(process_cpu_time_seconds_total{{phoenix_variant="candidate",state=~"user|system"}}[6s]))[{span}s:1s])'
        )
        assert spike and float(spike[0]["value"][1]) <= (os.cpu_count() or 1) * 1.1, spike

        # 3. Total CPU rates agree on every pair from one collection, keep-list changes included.
        pairs = [
            (b, c)
            for b, c in zip(samples["baseline"], samples["candidate"], strict=False)
            if b.get("cpu_total_rate")
            and c.get("cpu_total_rate") is not None
            and abs((b["data_ts"] or 0) - (c["data_ts"] or 0)) < 0.5 * INTERVAL
        ]
        ratios = [c["cpu_total_rate"] / b["cpu_total_rate"] for b, c in pairs]
        assert len(ratios) >= 20, ratios
        worst = max(ratios, key=lambda r: abs(r - 1))
        # Within 1% on this machine alone; 1.5% allowed for the read jitter of a loaded 2-core CI host
        # (0.9892 seen beside the whole suite), while a lost collection of a kept name shows as 0.9 or less.
        assert abs(worst - 1) <= 0.015, f"worst pair {worst:.4f}; all {[round(r, 4) for r in ratios]}"
        # A name that joined the keep list shows under its own name.
        assert "phx-cache" in samples["candidate"][-1]["process_cpu_seconds_rate"]
        # The critical process keeps its per-pid series (full detail) through it all.
        assert all(s["critical_present"][CRITICAL] for s in samples["candidate"])
    finally:
        with contextlib.suppress(Exception):
            await load.stop()
        prometheus.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        log.close()
