"""The real collector runs baseline, intelligent and top-K pipelines side by side on one receiver.

It checks what the templates promise on live data: fewer series in the candidates, critical and
kept processes present at full detail, dropped processes gone, and the intelligent roll-up keeping
the host's total process CPU time and memory equal to the baseline's at the same scrape.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from config_generator.catalog import Template
from config_generator.render import render
from phoenix_common.configmerge import merge_configs
from phoenix_common.keeplist import render_keep_file
from tests.support import free_port, stop_process, wait_for

INTERVAL = 2
CPU = "process_cpu_time_seconds_total"
MEMORY = "process_memory_usage_bytes"


@dataclass(frozen=True)
class Series:
    name: str
    labels: dict[str, str]
    value: float
    ts: float


def scrape(port: int) -> list[Series]:
    """Every sample an exporter serves now (timestamps are on: send_timestamps)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return [
        Series(s.name, dict(s.labels), s.value, float(s.timestamp or 0.0))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def names(series: list[Series]) -> set[str]:
    return {s.labels.get("process_executable_name", "") for s in series}


def latest_total(series: list[Series], metric: str, ref: float) -> float:
    """Sum of `metric` over the series of the scrape at `ref` (older series are exited processes)."""
    return sum(s.value for s in series if s.name == metric and s.ts >= ref - INTERVAL / 2)


def process_key(s: Series) -> tuple[str, str, str, str]:
    return (s.name, s.labels.get("process_pid", ""), s.labels.get("state", ""), s.labels.get("direction", ""))


@contextlib.contextmanager
def running(argv: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, terminated (by its own pid) when the block ends."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        stop_process(proc)


def same_scrape(base_port: int, cand_port: int) -> tuple[list[Series], list[Series], float] | None:
    """Baseline and candidate samples of one receiver scrape, or None if they straddle two.

    Both exporters are fed by the same scrape but update moments apart; they are compared only when
    the baseline did not move meanwhile and every full-detail candidate series carries the
    baseline's exact sample.
    """
    before, cand, after = scrape(base_port), scrape(cand_port), scrape(base_port)
    ref = max(s.ts for s in before if s.name == CPU)
    if ref != max(s.ts for s in after if s.name == CPU):
        return None
    by_key = {process_key(s): s for s in before}
    for s in cand:
        if "process_pid" in s.labels:
            twin = by_key.get(process_key(s))
            if twin is None or twin.ts != s.ts or twin.value != s.value:
                return None
    rolled = [s for s in cand if s.labels.get("process_executable_name") == "other"]
    # The roll-up stamps its sums when it makes them, just after the scrape.
    if not rolled or any(not ref <= s.ts < ref + INTERVAL / 2 for s in rolled):
        return None
    return before, cand, ref


def side_by_side_config(
    catalog: dict[str, Template],
    tmp_path: Path,
    ports: dict[str, int],
    critical: list[str],
    top: str,
    tag: str,
) -> Path:
    """Baseline, intelligent (candidate) and top-K configs merged into one collector config."""
    shared = {
        "collection_interval": INTERVAL,
        "send_timestamps": True,
        "health_port": free_port(),
        "telemetry_port": free_port(),
        "experiment_id": f"exp-{tag}",
    }
    selection = {"critical_processes": critical}
    parts = [
        render(catalog["process-baseline-v1"], {**shared, "prometheus_port": ports["baseline"]}, "baseline")
    ]
    for variant, template in (("candidate", "process-intelligent-v1"), ("topk", "process-topk-v1")):
        params = {
            **shared,
            "prometheus_port": ports[variant],
            "observe_port": ports[f"{variant}_obs"],
            "keep_list_path": str(tmp_path / f"keep-{variant}.yaml"),
            **(selection if variant == "candidate" else {}),
        }
        parts.append(render(catalog[template], params, variant))
        # The agent's top-K choice for this host: one process besides the critical ones.
        (tmp_path / f"keep-{variant}.yaml").write_text(render_keep_file([top]))
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump(merge_configs(*(p.config for p in parts)), sort_keys=False))
    return config


@pytest.mark.collector
def test_intelligent_rollup_keeps_host_totals_with_fewer_series(
    catalog: dict[str, Template], otelcol_bin: Path, tmp_path: Path
) -> None:
    tag = secrets.token_hex(2)
    critical = f"phx-crit-{tag}"
    top = f"phx-top-{tag}"
    dropped = f"phx-drop-{tag}"
    # Quote, ${...} and regex metacharacters in a real process name: kept verbatim, never expanded.
    odd = 'phx"${x}.*'
    own = Path("/proc/self/comm").read_text().strip()
    sleep = shutil.which("sleep")
    assert sleep, "the test needs coreutils sleep"
    ports = {v: free_port() for v in ("baseline", "candidate", "candidate_obs", "topk", "topk_obs")}
    config = side_by_side_config(catalog, tmp_path, ports, [critical, odd, own], top, tag)

    with contextlib.ExitStack() as stack:
        for index, name in enumerate((critical, top, dropped, odd)):
            link = tmp_path / name
            link.symlink_to(sleep)  # the kernel names the process after the link: a distinctive name
            stack.enter_context(running([str(link), "600"], tmp_path / f"child-{index}.log"))
        collector_log = tmp_path / "collector.log"
        collector = stack.enter_context(running([str(otelcol_bin), f"--config={config}"], collector_log))

        def everything_exported() -> bool:
            assert collector.poll() is None, f"collector exited: {collector_log.read_text()[-3000:]}"
            base, cand, topk = scrape(ports["baseline"]), scrape(ports["candidate"]), scrape(ports["topk"])
            return (
                {critical, top, dropped, odd, own} <= names(base)
                and {critical, top, odd, own, "other"} <= names(cand)
                and top in names(topk)
            )

        wait_for(everything_exported, timeout=90, interval=0.3, what="the test processes in all exporters")
        found = wait_for(
            lambda: same_scrape(ports["baseline"], ports["candidate"]),
            timeout=60,
            interval=0.2,
            what="a scrape both exporters show",
        )
        topk = scrape(ports["topk"])
    assert found is not None
    base, cand, ref = found

    # Fewer series: every non-kept process collapses into one `other` series per metric and state.
    assert len(cand) < len(base), (len(cand), len(base))
    assert len(topk) < len(cand)
    # Critical processes stay per pid (their command line, which a process may rewrite, dropped); a kept
    # name is aggregated by name (no pid, no command line); the rest is in `other`.
    for name in (critical, odd, own):
        detail = [s for s in cand if s.labels.get("process_executable_name") == name]
        assert detail and all(
            "process_pid" in s.labels and "process_command_line" not in s.labels for s in detail
        ), name
    kept = [s for s in cand if s.labels.get("process_executable_name") == top]
    assert kept and all("process_pid" not in s.labels for s in kept), top
    assert dropped in names(base) and dropped not in names(cand) and dropped not in names(topk)
    assert names(topk) == {top}, names(topk)
    assert {s.labels["phoenix_variant"] for s in cand} == {"candidate"}
    assert {s.labels["phoenix_pipeline"] for s in cand} == {"process-intelligent-v1"}
    assert {s.labels["phoenix_experiment_id"] for s in base} == {f"exp-{tag}"}
    # The roll-up keeps host totals: memory summed over all processes equals the baseline's at that scrape.
    # CPU counters of the roll-up are accumulated from deltas since the collector started, so their rates
    # (not their lifetime sums) equal the baseline's: tests/e2e/billing/test_billing_truth.py checks that.
    for metric in (MEMORY,):
        expected, actual = latest_total(base, metric, ref), latest_total(cand, metric, ref)
        print(
            f"{metric}: baseline {expected!r} candidate {actual!r} "
            f"relative difference {abs(actual - expected) / expected:.2e} "
            f"(series: baseline {len(base)}, candidate {len(cand)}, top-k {len(topk)})"
        )
        assert expected > 0
        assert abs(actual - expected) <= 0.01 * expected, (metric, expected, actual)


@pytest.mark.collector
def test_keep_list_file_change_is_picked_up_on_restart(
    catalog: dict[str, Template], otelcol_bin: Path, tmp_path: Path
) -> None:
    """The agent rewrites the keep-list file and restarts the collector; the generator is not called again."""
    tag = secrets.token_hex(2)
    first, second = f"phx-a-{tag}", f"phx-b-{tag}"
    sleep = shutil.which("sleep")
    assert sleep
    port = free_port()
    keep = tmp_path / "keep.yaml"
    rendered = render(
        catalog["process-topk-v1"],
        {
            "collection_interval": 1,
            "prometheus_port": port,
            "observe_port": free_port(),
            "health_port": free_port(),
            "telemetry_port": free_port(),
            "keep_list_path": str(keep),
        },
        "candidate",
    )
    config = tmp_path / "collector.yaml"
    config.write_text(rendered.config_yaml)
    with contextlib.ExitStack() as stack:
        for name in (first, second):
            (tmp_path / name).symlink_to(sleep)
            stack.enter_context(running([str(tmp_path / name), "600"], tmp_path / f"{name}.log"))
        for kept, other in ((first, second), (second, first)):
            keep.write_text(render_keep_file([kept]))

            def exported(kept: str = kept) -> set[str] | None:
                shown = names(scrape(port))
                return shown if kept in shown else None

            with running([str(otelcol_bin), f"--config={config}"], tmp_path / f"collector-{kept}.log"):
                shown = wait_for(exported, timeout=60, interval=0.3, what=f"{kept} in the top-k exporter")
            assert shown == {kept}
            assert other not in shown
