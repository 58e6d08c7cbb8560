"""agent.measure: the exposition parser, the Sample summary and the collector's own usage."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import psutil
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from agent.measure import (
    CollectorUsage,
    MeasureError,
    Snapshot,
    parse_exposition,
    read_settled,
    scrape,
    summarize,
)
from tests.support import eventually, free_port, serving, wait_for
from tests.support.collector import Collector, run_probe

CPU = "process_cpu_time_seconds_total"
MEM = "process_memory_usage_bytes"


def _line(metric: str, value: float, **labels: str) -> str:
    body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{metric}{{{body}}} {value}"


def _process(name: str, pid: str, user: float, system: float, rss: float, **extra: str) -> list[str]:
    """The series the hostmetrics process scraper exports for one process (cpu states + memory)."""
    ident = {"process_executable_name": name, "process_pid": pid, **extra}
    return [
        _line(CPU, user, state="user", **ident),
        _line(CPU, system, state="system", **ident),
        _line(CPU, 0, state="wait", **ident),
        _line(MEM, rss, **ident),
    ]


def _text(*groups: list[str]) -> str:
    lines = [f"# TYPE {CPU} counter", f"# TYPE {MEM} gauge"]
    for group in groups:
        lines += group
    return "\n".join(lines) + "\n"


def _summ(text: str, previous: Snapshot | None = None, **kw: object) -> tuple[dict, Snapshot]:
    return summarize(
        text,
        variant="baseline",
        pipeline="process-baseline-v1",
        previous=previous,
        critical=kw.pop("critical", ["sshd"]),
        **kw,
    )  # type: ignore[arg-type]


# -- pure: the parser ------------------------------------------------------------------------------


def test_parser_reads_escapes_timestamps_and_special_values() -> None:
    text = (
        "# HELP m help\n# TYPE m gauge\n"
        'm{a="x\\"y",b="back\\\\slash",c="new\\nline",d="} 1 2"} 1.5e+06 1700000000123\n'
        "n NaN\n"
        "o{} +Inf\n"
        'p{a="1",} -2\n'
    )
    series = parse_exposition(text)
    assert [(s.name, dict(s.labels)) for s in series] == [
        ("m", {"a": 'x"y', "b": "back\\slash", "c": "new\nline", "d": "} 1 2"}),
        ("n", {}),
        ("o", {}),
        ("p", {"a": "1"}),
    ]
    assert series[0].value == 1.5e6 and series[0].timestamp == pytest.approx(1700000000.123)
    assert series[1].value != series[1].value  # NaN
    assert series[2].value == float("inf") and series[3].value == -2


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("m{a=1} 2", "malformed labels on exposition line 2"),
        ('m{a="1"}', "malformed exposition line 2"),
        ("m 1 2 3", "malformed exposition line 2"),
        ("m abc", "bad sample value 'abc' on exposition line 2"),
        ('m{a="1" b="2"} 1', "malformed labels on exposition line 2"),
    ],
)
def test_parser_rejects_malformed_lines_naming_them(line: str, why: str) -> None:
    with pytest.raises(MeasureError, match=re.escape(why)):
        parse_exposition(f"ok 1\n{line}\n")


# -- pure: the summary -----------------------------------------------------------------------------


def test_summary_counts_series_rates_and_memory_per_name() -> None:
    first = _text(
        _process("web", "10", 1.0, 0.5, 100e6),
        _process("web", "11", 2.0, 0.0, 50e6),
        _process("db", "20", 10.0, 2.0, 400e6),
        [
            _line(
                "process_disk_io_bytes_total",
                5,
                direction="read",
                process_executable_name="db",
                process_pid="20",
            )
        ],
    )
    sample, snap = _summ(first, now=1000.0, critical=["db", "sshd"])
    assert sample["active_series"] == 13
    assert sample["series_per_metric"] == {CPU: 9, MEM: 3, "process_disk_io_bytes_total": 1}
    assert sample["process_cpu_seconds_rate"] == {}  # no reference yet
    assert sample["datapoints_per_second"] == 0.0 and sample["interval_seconds"] is None
    assert sample["process_memory_bytes"] == {"web": 150_000_000, "db": 400_000_000}
    assert sample["process_cpu_seconds_total"] == {"web": 3.5, "db": 12.0}
    assert sample["kept_processes"] == ["db", "web"]
    assert sample["critical_present"] == {"db": True, "sshd": False}

    second = _text(
        _process("web", "10", 1.5, 0.5, 100e6),  # +0.5 s
        _process("web", "11", 2.0, 1.0, 50e6),  # +1.0 s
        _process("db", "20", 10.0, 2.0, 400e6),  # idle
        _process("cron", "30", 0.2, 0.1, 1e6),  # new: as in a backend's rate(), nothing until its 2nd point
    )
    sample, snap = _summ(second, snap, now=1010.0)
    assert sample["interval_seconds"] == 10.0
    assert sample["process_cpu_seconds_rate"] == pytest.approx({"web": 0.15, "db": 0.0, "cron": 0.0})
    assert sample["active_series"] == 16 and sample["datapoints_per_second"] == pytest.approx(1.6)
    assert snap.ts == 1010.0 and snap.interval == 10.0


def test_other_is_whatever_is_named_or_pid_labelled_other() -> None:
    text = _text(
        _process("nginx", "5", 1, 0, 10e6),
        _process("other", "", 3, 0, 30e6),
        _process("bash", "other", 4, 0, 40e6),
        [_line(MEM, 2e6, process_executable_name="other")],  # a roll-up without a pid label
    )
    sample, _ = _summ(text, now=1.0)
    assert sample["process_memory_bytes"] == {"nginx": 10_000_000, "other": 72_000_000}
    assert sample["kept_processes"] == ["nginx"]


def test_name_falls_back_to_the_command_basename() -> None:
    text = _text(
        [
            _line(CPU, 2.0, state="user", process_command="/usr/sbin/sshd", process_pid="7"),
            _line(MEM, 5e6, process_command="/usr/sbin/sshd", process_pid="7"),
            _line("system_cpu_load_average_1m", 0.5),  # not a process series: counted, never a process
        ]
    )
    sample, _ = _summ(text, now=1.0)
    assert sample["process_memory_bytes"] == {"sshd": 5_000_000}
    assert sample["critical_present"] == {"sshd": True}
    assert sample["active_series"] == 3


def test_stale_label_sets_of_one_pid_are_not_double_counted() -> None:
    # The exporter keeps an old label set (here: before the command line was readable, and a kernel
    # worker's previous name) until it expires; the live one holds the most CPU time.
    text = _text(
        _process("app", "9", 1.0, 0.0, 0, process_command=""),
        _process("app", "9", 3.0, 1.0, 80e6, process_command="/opt/app"),
        _process("kworker/0:1-events", "12", 0.5, 0, 0),
        _process("kworker/0:1-mm_wq", "12", 0.7, 0, 0),
    )
    first, snap = _summ(text, now=0.0)
    assert first["active_series"] == 16
    assert first["process_memory_bytes"]["app"] == 80_000_000
    assert first["process_cpu_seconds_total"]["app"] == 4.0
    # Each label set is its own counter, as in a backend: the kworker's series under its old name
    # grew by 0.3 s; the one under the name it takes back grew by nothing.
    text2 = _text(
        _process("app", "9", 3.0, 1.0, 80e6, process_command="/opt/app"),
        _process("kworker/0:1-events", "12", 0.8, 0, 0),
    )
    second, _ = _summ(text2, snap, now=2.0)
    assert second["process_cpu_seconds_rate"] == pytest.approx({"app": 0.0, "kworker/0:1-events": 0.15})


def test_a_reused_pid_is_a_new_series_and_a_falling_counter_is_a_reset() -> None:
    _, snap = _summ(_text(_process("a", "5", 50.0, 0, 1), _process("other", "", 100.0, 0, 1)), now=0.0)
    sample, _ = _summ(_text(_process("b", "5", 2.0, 0, 1), _process("other", "", 90.0, 0, 1)), snap, now=4.0)
    # b: a new label set, nothing to compare yet; other fell: a reset, so its 90 s are the increase.
    assert sample["process_cpu_seconds_rate"] == pytest.approx({"b": 0.0, "other": 22.5})


def test_no_collection_between_scrapes_keeps_the_reference() -> None:
    a = _text(_process("a", "5", 1.0, 0, 1))
    b = _text(_process("a", "5", 2.0, 0, 1))
    _, s0 = _summ(a, now=0.0)
    first, s1 = _summ(b, s0, now=10.0)
    assert first["process_cpu_seconds_rate"] == {"a": pytest.approx(0.1)}
    # Same counters again: the collector has not run; rates stand and the reference stays at t=10.
    again, s2 = _summ(b, s1, now=12.0)
    assert again["process_cpu_seconds_rate"] == {"a": pytest.approx(0.1)}
    assert s2.ts == 10.0
    later, _ = _summ(_text(_process("a", "5", 4.0, 0, 1)), s2, now=20.0)
    assert later["process_cpu_seconds_rate"] == {"a": pytest.approx(0.2)}  # 2 s over the 10 s since t=10


def test_exposition_timestamps_drive_the_interval() -> None:
    def stamped(value: float, ms: int) -> str:
        series = _line(CPU, value, state="user", process_executable_name="a", process_pid="5")
        return _text([f"{series} {ms}"])

    _, s0 = _summ(stamped(1.0, 1_000_000), now=0.0)
    # Wall clock says 3 s, the collections were 2 s apart: the collections win.
    sample, s1 = _summ(stamped(2.0, 1_002_000), s0, now=3.0)
    assert sample["interval_seconds"] == 2.0
    assert sample["process_cpu_seconds_rate"] == {"a": pytest.approx(0.5)}
    same, s2 = _summ(stamped(2.0, 1_002_000), s1, now=4.0)
    assert same["process_cpu_seconds_rate"] == {"a": pytest.approx(0.5)} and s2.data_ts == 1002.0


def test_collection_interval_given_sets_datapoints_per_second_and_meta_series_are_excluded() -> None:
    meta = ['target_info{job="x"} 1', 'otel_scope_info{otel_scope_name="s"} 1']
    text = _text(_process("a", "5", 1.0, 0, 1), meta)
    sample, _ = _summ(text, now=0.0, collection_interval=10.0, kept=["a", "z"])
    assert sample["active_series"] == 4
    assert sample["datapoints_per_second"] == pytest.approx(0.4)
    assert sample["keep_list"] == ["a", "z"]


# -- the real collector ----------------------------------------------------------------------------


async def _scrape_until(
    session: aiohttp.ClientSession, endpoint: str, ok: Callable[[str], bool], timeout: float = 30.0
) -> str:
    """Scrape `endpoint` until `ok(text)`; fail after `timeout` seconds."""

    async def satisfied() -> str | None:
        text = await scrape(session, endpoint)
        return text if ok(text) else None

    return str(await eventually(satisfied, timeout=timeout, what=f"{endpoint} to satisfy the condition"))


def _has(name: str, pid: int) -> Callable[[str], bool]:
    return lambda text: f'process_executable_name="{name}"' in text and f'process_pid="{pid}"' in text


def _probe_cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


@pytest.mark.collector
async def test_parser_agrees_with_prometheus_client_on_real_expositions(collector: Collector) -> None:
    async with aiohttp.ClientSession() as session:
        for endpoint in (collector.full, collector.stamped, collector.folded):
            text = await scrape(session, endpoint)
            ours = [(s.name, dict(s.labels), s.value, s.timestamp) for s in parse_exposition(text)]
            theirs = [
                (s.name, dict(s.labels), s.value, None if s.timestamp is None else float(s.timestamp))
                for family in text_string_to_metric_families(text)
                for s in family.samples
            ]
            assert ours == theirs and len(ours) > 10


@pytest.mark.collector
async def test_summary_of_the_real_collector_matches_the_probe(collector: Collector, probe_dir: Path) -> None:
    """Memory, CPU time and CPU rate of a known process, as the collector reports them, against psutil."""
    with run_probe(probe_dir, "phx-probe-m", memory_mib=64, duty=0.3) as probe:
        async with aiohttp.ClientSession() as session:
            text = await _scrape_until(session, collector.stamped, _has(probe.name, probe.pid))
            first, snap = summarize(
                text, variant="baseline", pipeline="p", previous=None, critical=[probe.name, "no-such-proc"]
            )
            cpu_at_first = _probe_cpu(probe.pid)
            assert snap.data_ts is not None

            # At least four collections later (send_timestamps makes them visible).
            def advanced(t: str) -> bool:
                stamps = [s.timestamp for s in parse_exposition(t) if s.timestamp is not None]
                return bool(stamps) and max(stamps) >= (snap.data_ts or 0) + 4.0

            text = await _scrape_until(session, collector.stamped, advanced)
            rss = psutil.Process(probe.pid).memory_info().rss
            cpu_now = _probe_cpu(probe.pid)
            second, _ = summarize(
                text, variant="baseline", pipeline="p", previous=snap, critical=[probe.name, "no-such-proc"]
            )

    series = parse_exposition(text)
    # Series of gone processes linger (with their old timestamp) until they expire; a backend stores only
    # the fresh ones, which are those of processes still alive (give or take one that just exited).
    distinct = {(s.name, tuple(sorted(s.labels.items()))): s for s in series}
    alive = [
        s
        for s in distinct.values()
        if "process_pid" not in s.labels or psutil.pid_exists(int(s.labels["process_pid"]))
    ]
    assert second["active_series"] <= len(distinct)
    assert abs(second["active_series"] - len(alive)) <= max(15, 0.15 * len(alive))
    assert second["series_per_metric"][CPU] <= sum(1 for s in series if s.name == CPU)
    assert second["critical_present"] == {probe.name: True, "no-such-proc": False}
    assert probe.name in second["kept_processes"]
    # Resident memory: the 64 MiB ballast plus the interpreter, stable while the probe runs.
    assert second["process_memory_bytes"][probe.name] == pytest.approx(rss, abs=2 * 2**20)
    assert second["process_memory_bytes"][probe.name] > 64 * 2**20
    # Cumulative CPU: read at the last collection, at most about one interval behind psutil now.
    total = second["process_cpu_seconds_total"][probe.name]
    assert cpu_now - 1.0 <= total <= cpu_now + 0.02
    # The rate spans the collections' own timestamps: compare with psutil over about the same time.
    assert second["interval_seconds"] >= 4.0
    expected = (cpu_now - cpu_at_first) / (second["ts"] - first["ts"])
    assert second["process_cpu_seconds_rate"][probe.name] == pytest.approx(expected, abs=0.08)
    assert second["process_cpu_seconds_rate"][probe.name] > 0.05


@pytest.mark.collector
async def test_summary_without_timestamps_uses_the_scrape_clock(
    collector: Collector, probe_dir: Path
) -> None:
    with run_probe(probe_dir, "phx-probe-w", memory_mib=8, duty=0.3) as probe:
        async with aiohttp.ClientSession() as session:
            text = await _scrape_until(session, collector.full, _has(probe.name, probe.pid))
            _, snap = summarize(text, variant="baseline", pipeline="p", previous=None, critical=[])
            cpu_before = _probe_cpu(probe.pid)
            started = time.time()
            reference_total = snap.cpu_seconds[(probe.name, str(probe.pid))]

            def moved(t: str) -> bool:
                # A later collection (the probe's CPU counter moved) at least 4 s after the reference.
                parsed = summarize(t, variant="b", pipeline="p", previous=None, critical=[])[1]
                return (
                    time.time() - started >= 4.0
                    and parsed.cpu_seconds.get((probe.name, str(probe.pid)), 0.0) > reference_total
                )

            text = await _scrape_until(session, collector.full, moved)
            cpu_after = _probe_cpu(probe.pid)
            sample, _ = summarize(text, variant="baseline", pipeline="p", previous=snap, critical=[])
    assert sample["interval_seconds"] == pytest.approx(sample["ts"] - snap.ts)
    expected = (cpu_after - cpu_before) / (time.time() - started)
    # Collections lag the scrapes by up to 1 s at either end, so the tolerance is wider than above.
    assert sample["process_cpu_seconds_rate"][probe.name] == pytest.approx(expected, abs=0.12)
    dps = sample["active_series"] / sample["interval_seconds"]
    assert sample["datapoints_per_second"] == pytest.approx(dps)


@pytest.mark.collector
async def test_folded_pipeline_reports_other_and_only_kept_names(
    collector: Collector, probe_dir: Path
) -> None:
    with run_probe(probe_dir, "phx-probe", memory_mib=8, duty=0.05) as probe:
        async with aiohttp.ClientSession() as session:
            text = await _scrape_until(session, collector.folded, _has(probe.name, probe.pid))
            sample, _ = summarize(
                text,
                variant="candidate",
                pipeline="process-intelligent-v1",
                previous=None,
                critical=["phx-probe", "sshd"],
                kept=["phx-probe"],
            )
            full, _ = summarize(
                await scrape(session, collector.full),
                variant="baseline",
                pipeline="p",
                previous=None,
                critical=[],
            )
    assert set(sample["kept_processes"]) <= {"otelcol-phoenix", "phx-probe"}
    assert "phx-probe" in sample["kept_processes"]
    # This stand-in fold does not sum (no aggregation processor): only the presence of `other` is checked.
    assert "other" in sample["process_memory_bytes"] and "other" in sample["process_cpu_seconds_total"]
    assert sample["critical_present"] == {"phx-probe": True, "sshd": False}
    assert sample["active_series"] < full["active_series"]
    assert len(full["kept_processes"]) > len(sample["kept_processes"])


# -- scrape errors ---------------------------------------------------------------------------------


async def test_scrape_failures_raise_measure_error_naming_the_url() -> None:
    release = asyncio.Event()

    async def slow(_: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="x 1\n")

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=503, text="exporter not ready")

    app = web.Application()
    app.router.add_get("/slow/metrics", slow)
    app.router.add_get("/broken/metrics", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(MeasureError, match=r"HTTP 503: exporter not ready"):
                await scrape(session, f"127.0.0.1:{port}/broken")
            with pytest.raises(MeasureError, match=r"timed out after 0.2s"):
                await scrape(session, f"127.0.0.1:{port}/slow", timeout=0.2)
            closed = free_port()
            with pytest.raises(MeasureError, match=rf"127\.0\.0\.1:{closed}/metrics failed"):
                await scrape(session, f"127.0.0.1:{closed}")
    finally:
        release.set()
        await runner.cleanup()


async def test_a_read_while_the_exporter_takes_in_a_collection_is_read_again() -> None:
    """The Prometheus exporter stores a collection one series at a time, and one pipeline's batch can
    come after another's: a scrape meanwhile shows one process with the new timestamp beside another's
    old one. read_settled reads a collection once it is old enough and two reads agree (and gives up
    after a few reads of an endpoint that never settles)."""

    def exposition(stamps: list[int]) -> str:
        lines = [f'{CPU}{{process_pid="{i}",state="user"}} {i} {ms}' for i, ms in enumerate(stamps)]
        return "\n".join(lines) + "\n"

    reads = {"settling": 0, "restless": 0, "plain": 0}
    partial, whole = exposition([2000, 1000, 1000]), exposition([2000, 2000, 2000])

    async def settling(_: web.Request) -> web.Response:
        reads["settling"] += 1
        return web.Response(text=partial if reads["settling"] == 1 else whole)

    async def restless(_: web.Request) -> web.Response:
        reads["restless"] += 1
        return web.Response(text=exposition([1000 * reads["restless"]]))

    young_from: list[float] = []

    async def young(_: web.Request) -> web.Response:
        # A collection stamped at the first read, whose last batch comes 0.3 s later.
        now = time.time()
        young_from.append(now)
        ms = int(young_from[0] * 1000)
        stamps = [ms, ms - 2000] if now - young_from[0] < 0.3 else [ms, ms]
        return web.Response(text=exposition(stamps))

    async def plain(_: web.Request) -> web.Response:
        reads["plain"] += 1
        return web.Response(text=f"{CPU} 1\n")

    app = web.Application()
    for route in (settling, restless, young, plain):
        app.router.add_get(f"/{route.__name__}/metrics", route)
    async with serving(app) as port, aiohttp.ClientSession() as session:
        got = await read_settled(session, f"127.0.0.1:{port}/settling", tolerance=0.5)
        assert [s.timestamp for s in got] == [2.0, 2.0, 2.0] and reads["settling"] == 3
        got = await read_settled(session, f"127.0.0.1:{port}/restless", tolerance=0.5)
        assert reads["restless"] == 4 and got[0].timestamp == 4.0
        # A collection younger than the tolerance is read again once it is that old.
        got = await read_settled(session, f"127.0.0.1:{port}/young", tolerance=1.0)
        assert got[0].timestamp == got[1].timestamp and len(young_from) == 3
        # Without timestamps there is nothing to compare: one read.
        await read_settled(session, f"127.0.0.1:{port}/plain", tolerance=0.5)
        assert reads["plain"] == 1


# -- the collector's own usage ---------------------------------------------------------------------


def test_collector_usage_follows_a_real_process_and_survives_its_exit(probe_dir: Path) -> None:
    with run_probe(probe_dir, "phx-usage", memory_mib=32, duty=0.5) as probe:
        usage = CollectorUsage(probe.pid)
        assert usage.pid == probe.pid
        first = usage.sample()  # since the process started
        assert first["collector_memory_bytes"] > 0
        proc = psutil.Process(probe.pid)
        cpu0, t0 = _probe_cpu(probe.pid), time.monotonic()
        # Wait until the probe has burnt a measurable amount of CPU.
        wait_for(
            lambda: _probe_cpu(probe.pid) - cpu0 >= 0.3, timeout=10, what="the probe to burn 0.3 s of CPU"
        )
        usage_now = usage.sample()
        expected = 100 * (_probe_cpu(probe.pid) - cpu0) / (time.monotonic() - t0)
        assert usage_now["collector_cpu_percent"] == pytest.approx(expected, abs=15)
        assert usage_now["collector_memory_bytes"] == pytest.approx(proc.memory_info().rss, abs=2**20)
        assert usage_now["collector_memory_bytes"] > 32 * 2**20
    # The pid is gone: zeros, no exception; then a new pid is followed afresh.
    assert usage.sample() == {"collector_cpu_percent": 0.0, "collector_memory_bytes": 0}
    usage.set_pid(os.getpid())
    assert usage.sample()["collector_memory_bytes"] > 0
    assert CollectorUsage(None).sample() == {"collector_cpu_percent": 0.0, "collector_memory_bytes": 0}
