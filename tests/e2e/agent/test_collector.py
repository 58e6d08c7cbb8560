"""Safe apply with the real collector: validate, swap, reload, health; roll back with its own words."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from agent.collector import (
    ApplyError,
    Collector,
    MergeError,
    health_url_of,
    merge_configs,
    observe_endpoints,
    parse_config,
    prometheus_endpoints,
)
from agent.config import CollectorSettings
from agent.state import StateDir
from agent.supervisor import ProcessSupervisor
from tests.support import eventually
from tests.support.agent_harness import Ports, collector_yaml, serves


@pytest_asyncio.fixture(loop_scope="function")
async def collector(
    collector_settings: CollectorSettings, state: StateDir, http: aiohttp.ClientSession
) -> AsyncIterator[Collector]:
    sup = ProcessSupervisor(collector_settings.binary, collector_settings.config_path, backoff_initial=0.2)
    managed = Collector(collector_settings, sup, state, http, settle_seconds=0.5)
    yield managed
    await sup.stop()


def metrics_url(ports: Ports) -> str:
    return f"http://127.0.0.1:{ports.prometheus}/metrics"


async def test_apply_runs_the_new_config_and_records_last_good(
    collector: Collector, http: aiohttp.ClientSession
) -> None:
    a, b = Ports.pick(), Ports.pick()
    await collector.apply(collector_yaml(a))
    assert await serves(http, metrics_url(a))
    assert collector.state.last_good.read_text() == collector_yaml(a)
    pid = await collector.supervisor.pid()

    await collector.apply(collector_yaml(b))
    assert await serves(http, metrics_url(b))
    assert not await serves(http, metrics_url(a))
    assert collector.config_path.read_text() == collector_yaml(b)
    assert collector.state.last_good.read_text() == collector_yaml(b)
    assert collector.state.last_received.read_text() == collector_yaml(b)
    assert await collector.supervisor.pid() == pid  # reloaded by SIGHUP, not restarted
    # No temp files are left next to the target.
    assert sorted(p.name for p in collector.config_path.parent.iterdir()) == ["collector.yaml"]


async def test_rejected_config_keeps_the_previous_one_running(
    collector: Collector, http: aiohttp.ClientSession
) -> None:
    good = Ports.pick()
    await collector.apply(collector_yaml(good))
    pid = await collector.supervisor.pid()
    bad = collector_yaml(Ports.pick()).replace("prometheus/main]", "prometheus/missing]")
    with pytest.raises(ApplyError) as err:
        await collector.apply(bad)
    message = str(err.value)
    assert message.startswith("collector rejected the config: Error:")
    assert "prometheus/missing" in message  # the collector's own words
    assert "\n" not in message
    assert collector.config_path.read_text() == collector_yaml(good)
    assert collector.state.last_received.read_text() == bad
    assert await collector.supervisor.pid() == pid
    assert await serves(http, metrics_url(good))
    assert sorted(p.name for p in collector.config_path.parent.iterdir()) == ["collector.yaml"]


async def test_config_that_fails_at_runtime_is_rolled_back(
    collector: Collector, http: aiohttp.ClientSession
) -> None:
    """Valid on paper, but its port is taken: the collector dies on reload; the last good comes back."""
    good = Ports.pick()
    await collector.apply(collector_yaml(good))
    taken = Ports.pick()
    blocker = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", taken.prometheus)
    try:
        with pytest.raises(ApplyError) as err:
            await collector.apply(collector_yaml(taken))
    finally:
        blocker.close()
    message = str(err.value)
    assert "address already in use" in message
    assert "restored the last good config" in message
    assert collector.config_path.read_text() == collector_yaml(good)
    await eventually(lambda: serves(http, metrics_url(good)), what="the last good config running again")
    assert (await collector.supervisor.state()).state == "running"


async def test_side_files_are_put_back_when_a_config_is_rejected(
    collector: Collector, tmp_path: Path
) -> None:
    keep = tmp_path / "keep.yaml"
    keep.write_text('["old"]')
    fresh = tmp_path / "fresh.yaml"
    bad = collector_yaml(Ports.pick()).replace("cpu: {}", "nosuch: {}")
    with pytest.raises(ApplyError, match="nosuch"):
        await collector.apply(bad, files={keep: '["new"]', fresh: "[]"})
    assert keep.read_text() == '["old"]'
    assert not fresh.exists()


async def test_start_restores_the_last_good_config_when_the_file_is_gone(
    collector: Collector, http: aiohttp.ClientSession
) -> None:
    ports = Ports.pick()
    collector.state.last_good.write_text(collector_yaml(ports))
    assert not collector.config_path.exists()
    await collector.start()
    assert collector.config_path.read_text() == collector_yaml(ports)
    await eventually(lambda: serves(http, metrics_url(ports)), what="the restored config running")


async def test_start_without_any_config_does_not_start_the_collector(collector: Collector) -> None:
    await collector.start()
    assert (await collector.supervisor.state()).state == "stopped"


def test_merge_shares_equal_components_and_rejects_conflicts() -> None:
    a, b = Ports.pick(), Ports.pick()
    base = parse_config(collector_yaml(a, variant="baseline"))
    cand = parse_config(collector_yaml(a, variant="candidate").replace(str(a.prometheus), str(b.prometheus)))
    merged = merge_configs(base, cand)
    assert set(merged["service"]["pipelines"]) == {"metrics/baseline", "metrics/candidate"}
    assert merged["service"]["extensions"] == ["health_check"]
    assert prometheus_endpoints(merged) == {
        "baseline": f"127.0.0.1:{a.prometheus}",
        "candidate": f"127.0.0.1:{b.prometheus}",
    }
    assert health_url_of(merged, "http://x/") == f"http://127.0.0.1:{a.health}/"

    other = parse_config(collector_yaml(a, variant="candidate", interval="5s"))
    with pytest.raises(MergeError, match=r"disagree at receivers\.hostmetrics/phoenix\.collection_interval"):
        merge_configs(base, other)


def test_endpoints_of_selection_configs() -> None:
    config = {
        "exporters": {
            "prometheus/c": {"endpoint": "127.0.0.1:1"},
            "prometheus/c-observe": {"endpoint": "0.0.0.0:2"},
        },
        "service": {
            "pipelines": {
                "metrics/c": {"exporters": ["prometheus/c"]},
                "metrics/c-observe": {"exporters": ["prometheus/c-observe"]},
            }
        },
    }
    assert prometheus_endpoints(config) == {"c": "127.0.0.1:1"}
    assert observe_endpoints(config) == {"c": "127.0.0.1:2"}
    assert health_url_of(config, "http://fallback/") is None
