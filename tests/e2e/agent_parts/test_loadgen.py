"""agent.loadgen: real processes with distinct names, bounded, and never left behind."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import psutil
import pytest

from agent.keeplist import KeepListTracker
from agent.loadgen import MAX_CHILDREN, PROFILES, SPIKY, LoadError, LoadProfile
from agent.measure import Snapshot, parse_exposition, scrape, summarize
from tests.support import ROOT, eventually, wait_for
from tests.support.collector import Collector


def _alive(pid: int) -> bool:
    """True if `pid` is a live (not zombie) process."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _exe_name(pid: int) -> str | None:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return None


@pytest.mark.parametrize("name", PROFILES)
async def test_profile_runs_distinct_real_processes_and_stop_leaves_none(name: str) -> None:
    profile = LoadProfile(name, seed=7)
    assert len(profile.names) == len(set(profile.names)) >= 4
    seen_pids: set[int] = set()
    seen_names: set[str] = set()

    def observe() -> None:
        for pid in profile.pids:
            exe = _exe_name(pid)
            if exe is not None:
                seen_pids.add(pid)
                seen_names.add(exe)
                # The kernel's own name (what /proc/<pid>/status and the collector report) matches too.
                assert psutil.Process(pid).name() == exe

    # Long-lived profiles: every planned long-lived name runs; churn: several names come and go.
    want = 3 if name == "process-churn" else {"realistic": 8, "spike": 5}.get(name, len(profile.names))
    await profile.start()
    try:
        bindir = profile._bindir
        assert bindir is not None and os.path.isdir(bindir)

        def enough() -> bool:
            observe()
            return len(seen_names) >= want

        await eventually(enough, 20, f"{want} distinct names of {name}")
        assert seen_names <= set(profile.names)
        assert len(profile.pids) <= MAX_CHILDREN
    finally:
        await profile.stop()
    assert profile.pids == [] and profile.all_pids == []
    assert not [pid for pid in seen_pids if _alive(pid)]
    assert not os.path.exists(bindir)
    await profile.stop()  # a second stop is harmless


async def test_churn_keeps_starting_and_reaping_short_lived_processes() -> None:
    profile = LoadProfile("process-churn", seed=3)
    seen: set[int] = set()
    await profile.start()
    try:

        def churned() -> bool:
            seen.update(profile.pids)
            return len(seen) >= 8 and any(not _alive(p) for p in seen)

        await eventually(churned, 30, "eight churn processes, some already gone")
    finally:
        await profile.stop()
    assert not [pid for pid in seen if _alive(pid)]


async def test_bounds_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown load profile 'heavy'; choose one of realistic"):
        LoadProfile("heavy")
    for scale in (0.0, -1.0, float("nan"), 100.0):
        with pytest.raises(ValueError, match="scale must be a number in"):
            LoadProfile("steady", scale=scale)
    assert len(LoadProfile("high-cardinality", scale=4.0).names) == MAX_CHILDREN
    assert len(LoadProfile("high-cardinality", scale=0.2).names) == 10
    profile = LoadProfile("steady", scale=0.5)
    await profile.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            await profile.start()
    finally:
        await profile.stop()


async def test_a_failed_start_leaves_nothing_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    # An "interpreter" that cannot run the workers: start() must fail clearly and clean up.
    monkeypatch.setattr(sys, "executable", "/bin/false")
    profile = LoadProfile("steady")
    with pytest.raises(LoadError, match=r"copied interpreter failed to start \(exit 1\)"):
        await profile.start()
    assert profile.all_pids == [] and profile._bindir is None


_ORPHAN_SCRIPT = """
import asyncio, atexit, os, signal, sys
PIDS, PROFILES = [], []

# Registered before agent.loadgen's own handler, so it runs after it (atexit is last in, first out).
@atexit.register
def report():
    print("LEFT", *[p for p in PIDS if os.path.exists(f"/proc/{p}")], flush=True)

from agent.loadgen import LoadProfile

async def main():
    profile = LoadProfile("steady")
    await profile.start()
    PIDS.extend(profile.pids)
    PROFILES.append(profile)  # still referenced at exit, so only atexit (not __del__) can clean up
    print("PIDS", *profile.pids, flush=True)
    if sys.argv[1] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)  # no stop(), no atexit: the children must notice alone

asyncio.run(main())  # "exit": returns without stop(); the atexit safety net must act
"""


@pytest.mark.parametrize("how", ["kill", "exit"])
def test_children_do_not_outlive_their_parent(
    how: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "parent.py"
    script.write_text(_ORPHAN_SCRIPT)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    done = subprocess.run(
        [sys.executable, str(script), how],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    marked = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("PIDS ")]
    assert marked, done.stdout + done.stderr
    pids = [int(p) for p in marked[0]]
    if how == "exit":
        # The safety net killed and reaped every child before the interpreter was gone.
        assert "LEFT\n" in done.stdout
    assert len(pids) == 4, done.stderr
    wait_for(lambda: not any(_alive(p) for p in pids), timeout=10, what="every load child to be gone")
    leftovers = os.listdir(tmp)
    if how == "exit":
        assert leftovers == []
    else:
        # A SIGKILLed owner cannot remove its binaries; the next profile started sweeps them.
        assert len(leftovers) == 1
        monkeypatch.setenv("TMPDIR", str(tmp))
        monkeypatch.setattr(tempfile, "tempdir", None)
        profile = LoadProfile("steady", scale=0.25)
        asyncio.run(profile.start())
        try:
            assert os.listdir(tmp) == [os.path.basename(profile._bindir or "")]
        finally:
            asyncio.run(profile.stop())
        assert os.listdir(tmp) == []


# -- with the real collector -----------------------------------------------------------------------


@pytest.mark.collector
async def test_the_collector_reports_every_profile_process_by_name(collector: Collector) -> None:
    profile = LoadProfile("high-cardinality", seed=1, scale=0.5)
    await profile.start()
    try:
        pids = set(profile.pids)
        assert len(pids) == len(profile.names) == 25
        async with aiohttp.ClientSession() as session:
            expected = {(_exe_name(p), p) for p in pids}
            text = ""

            async def all_reported() -> bool:
                nonlocal text
                text = await scrape(session, collector.full)
                reported = {
                    (s.labels.get("process_executable_name"), int(s.labels.get("process_pid", "0")))
                    for s in parse_exposition(text)
                    if s.name == "process_memory_usage_bytes"
                }
                return {(n, p) for n, p in reported if p in pids} == expected

            await eventually(all_reported, 30, "the collector to report every profile process")
        sample, _ = summarize(text, variant="baseline", pipeline="p", previous=None, critical=[])
        assert set(profile.names) <= set(sample["kept_processes"])
        assert all(sample["process_memory_bytes"][n] > 2**20 for n in profile.names)
    finally:
        await profile.stop()


@pytest.mark.collector
async def test_a_spike_is_measured_and_kept_by_the_adaptive_selection(collector: Collector) -> None:
    """End to end: spike profile -> real collector -> summary rates -> keep list."""
    profile = LoadProfile("spike", seed=1)
    tracker = KeepListTracker("intelligent", 1, ["phx-quiet-a"], min_hold_seconds=0.0)
    await profile.start()  # the spiky worker spikes first, for SPIKE_SECONDS
    try:
        names = set(profile.names)
        async with aiohttp.ClientSession() as session:

            async def spiking() -> Snapshot | None:
                text = await scrape(session, collector.stamped)
                first, snap = summarize(text, variant="b", pipeline="p", previous=None, critical=[])
                return snap if names <= set(first["kept_processes"]) else None

            snap = await eventually(spiking, timeout=20, what="the collector to report the spike profile")
            assert snap.data_ts is not None

            async def two_collections_later() -> str | None:
                text = await scrape(session, collector.stamped)
                stamps = [s.timestamp for s in parse_exposition(text) if s.timestamp is not None]
                if not stamps or max(stamps) < snap.data_ts + 2.0:
                    return None
                # A scrape can see a collection half taken in (the exporter takes it one series at a
                # time): only one that shows every worker is a whole collection.
                seen, _ = summarize(text, variant="b", pipeline="p", previous=None, critical=[])
                return text if names <= set(seen["kept_processes"]) else None

            text = await eventually(two_collections_later, timeout=30, what="two collections later")
        sample, _ = summarize(text, variant="b", pipeline="p", previous=snap, critical=[])
    finally:
        await profile.stop()
    rates = {n: sample["process_cpu_seconds_rate"][n] for n in names}
    quiet = max(r for n, r in rates.items() if n != SPIKY)
    assert rates[SPIKY] > 0.15 and rates[SPIKY] > 4 * quiet, rates
    memory = {n: sample["process_memory_bytes"][n] for n in names}
    assert tracker.update(rates, memory, now=sample["ts"]) == ["phx-quiet-a", SPIKY]
