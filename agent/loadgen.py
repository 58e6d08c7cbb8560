"""Load profiles: real, bounded processes with distinct executable names for experiments to measure."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import weakref
from dataclasses import dataclass

import structlog

PROFILES = ("realistic", "high-cardinality", "process-churn", "spike", "steady")

# Hard bounds whatever the scale: live children at once, and the CPU they may ask for in cores.
MAX_CHILDREN = 80
MAX_TOTAL_DUTY = 0.6
MAX_SCALE = 4.0

log = structlog.get_logger(__name__)


class LoadError(RuntimeError):
    """A load profile could not be started."""


# What every child runs: burn CPU for `duty` of each `period`, hold `mem_kb` of resident memory,
# optionally spike, and exit when its lifetime ends or its parent is gone (re-parented), so that
# no child outlives the agent even if the agent is killed with SIGKILL.
_CHILD_CODE = """\
import os, sys, time
ppid = int(sys.argv[1]); duty = float(sys.argv[2]); period = float(sys.argv[3])
life = float(sys.argv[4]); spike_duty = float(sys.argv[5]); spike_every = float(sys.argv[6])
spike_len = float(sys.argv[7]); ballast = b"\\x01" * (int(sys.argv[8]) * 1024)
start = time.monotonic()
while os.getppid() == ppid:
    now = time.monotonic()
    if life > 0 and now - start >= life:
        break
    d = spike_duty if spike_every > 0 and (now - start) % spike_every < spike_len else duty
    until = now + d * period
    while time.monotonic() < until:
        pass
    time.sleep(max(0.0, (1.0 - d) * period))
"""


@dataclass(frozen=True)
class _Worker:
    """How one child behaves."""

    name: str
    duty: float
    memory_kb: int
    period: float = 0.1
    lifetime: float = 0.0
    spike_duty: float = 0.0
    spike_every: float = 0.0
    spike_seconds: float = 0.0

    def budget(self) -> float:
        """The most CPU, in cores, this worker asks for at any moment."""
        return max(self.duty, self.spike_duty)


# Long-lived services of the realistic profile: (name, duty, memory MiB).
_SERVICES = (
    ("phx-api", 0.05, 24),
    ("phx-db", 0.06, 48),
    ("phx-cache", 0.02, 64),
    ("phx-web", 0.04, 16),
    ("phx-queue", 0.02, 8),
    ("phx-logship", 0.01, 4),
    ("phx-exporter", 0.01, 4),
    ("phx-cron", 0.0, 2),
)
_JOBS = ("phx-backup", "phx-report", "phx-indexer")
_STEADY = ("phx-steady-a", "phx-steady-b", "phx-steady-c", "phx-steady-d")
_QUIET = ("phx-quiet-a", "phx-quiet-b", "phx-quiet-c", "phx-quiet-d")
SPIKY = "phx-spiky"
SPIKE_EVERY_SECONDS = 30.0
SPIKE_SECONDS = 8.0
SPIKE_DUTY = 0.5

_LIVE: weakref.WeakSet[LoadProfile] = weakref.WeakSet()


@atexit.register
def _kill_all_at_exit() -> None:
    """Safety net: no child outlives an interpreter that forgot to call stop()."""
    for profile in list(_LIVE):
        profile.kill_now()


class LoadProfile:
    """Start and stop the processes of one named load profile."""

    def __init__(self, name: str, *, seed: int | None = None, scale: float = 1.0) -> None:
        if name not in PROFILES:
            raise ValueError(f"unknown load profile {name!r}; choose one of {', '.join(PROFILES)}")
        if not math.isfinite(scale) or not 0 < scale <= MAX_SCALE:
            raise ValueError(f"scale must be a number in (0, {MAX_SCALE}], got {scale!r}")
        self.name = name
        self.scale = scale
        self._rng = random.Random(seed)
        self._procs: list[tuple[subprocess.Popen[bytes], _Worker]] = []
        self._bindir: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._names = self._plan_names()
        self._runs = itertools.count(1)

    # -- what the profile runs -------------------------------------------------------------

    def _count(self, base: int) -> int:
        """`base` scaled, at least one."""
        return max(1, round(base * self.scale))

    def _plan_names(self) -> tuple[str, ...]:
        """Every executable name this profile may run."""
        if self.name == "steady":
            names = list(_STEADY[: self._count(len(_STEADY))])
            names += [f"phx-steady-{i}" for i in range(len(_STEADY), self._count(len(_STEADY)))]
        elif self.name == "realistic":
            names = [s[0] for s in _SERVICES] + list(_JOBS)
        elif self.name == "high-cardinality":
            names = [f"phx-hc-{i:02d}" for i in range(min(self._count(50), MAX_CHILDREN))]
        elif self.name == "process-churn":
            names = [s[0] for s in _SERVICES] + [f"phx-churn-{i:02d}" for i in range(self._count(8))]
        else:
            names = [*_QUIET, SPIKY]
        return tuple(sorted(names))

    def _long_lived(self) -> list[_Worker]:
        """The workers started at once and kept until stop()."""
        mib = 1024
        if self.name == "steady":
            return [
                _Worker(name, duty=0.02, memory_kb=(4 + 4 * (i % 4)) * mib)
                for i, name in enumerate(self._names)
            ]
        if self.name in ("realistic", "process-churn"):
            return [_Worker(name, duty=duty, memory_kb=mem * mib) for name, duty, mem in _SERVICES]
        if self.name == "high-cardinality":
            # Nearly idle: these exist to multiply series, not load.
            return [
                _Worker(name, duty=0.0, memory_kb=(1 + i % 4) * mib, period=0.5)
                for i, name in enumerate(self._names)
            ]
        if self.name == "spike":
            quiet = [_Worker(name, duty=0.01, memory_kb=4 * mib) for name in _QUIET]
            # The spike comes first, so that a measurement sees it without waiting a full period.
            spiky = _Worker(
                SPIKY,
                duty=0.01,
                memory_kb=4 * mib,
                spike_duty=SPIKE_DUTY,
                spike_every=SPIKE_EVERY_SECONDS,
                spike_seconds=SPIKE_SECONDS,
            )
            return [*quiet, spiky]
        return []

    def _next_short_lived(self) -> tuple[float, _Worker] | None:
        """The delay before the next short-lived job and the job, or None if the profile has none."""
        if self.name == "realistic":
            job = _Worker(
                self._rng.choice(_JOBS),
                duty=0.15,
                memory_kb=self._rng.randint(8, 32) * 1024,
                lifetime=self._rng.uniform(1.0, 4.0),
            )
            return self._rng.uniform(2.0, 5.0) / self.scale, job
        if self.name == "process-churn":
            # Cron-like jobs: every second or two a new pid, each with its own command line (a run
            # number), living from under a collection interval to several of them.
            job = _Worker(
                self._rng.choice([n for n in self._names if n.startswith("phx-churn-")]),
                duty=0.04,
                memory_kb=self._rng.randint(1, 8) * 1024,
                lifetime=self._rng.uniform(0.5, 12.0),
            )
            return self._rng.uniform(0.5, 2.0) / self.scale, job
        return None

    # -- public face -----------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """The executable names this profile's processes run under."""
        return self._names

    @property
    def pids(self) -> list[int]:
        """Pids of the children still running."""
        return [p.pid for p, _ in self._procs if p.poll() is None]

    @property
    def all_pids(self) -> list[int]:
        """Pids of every child started and not yet reaped by stop()."""
        return [p.pid for p, _ in self._procs]

    async def start(self) -> None:
        """Start the profile's processes; on any error everything started so far is stopped."""
        if self._started:
            raise RuntimeError(f"load profile {self.name!r} already started")
        self._started = True
        _LIVE.add(self)
        try:
            _sweep_stale_bindirs()
            self._bindir = tempfile.mkdtemp(prefix=f"{_BINDIR_PREFIX}{os.getpid()}-")
            source = os.path.realpath(sys.executable)
            for name in self._names:
                _place_binary(source, os.path.join(self._bindir, name))
            await self._check_binary(self._names[0])
            workers = self._long_lived()
            if sum(w.budget() for w in workers) > MAX_TOTAL_DUTY:  # pragma: no cover - static tables
                raise LoadError(f"profile {self.name!r} asks for more than {MAX_TOTAL_DUTY} cores")
            for worker in workers:
                self._spawn(worker)
                await asyncio.sleep(0)
            if self._next_short_lived() is not None:
                self._task = asyncio.create_task(self._run_jobs(), name=f"loadgen-{self.name}")
        except BaseException:
            await self.stop()
            raise
        log.info("load_profile_started", profile=self.name, children=len(self.pids), names=len(self._names))

    async def stop(self) -> None:
        """Stop every child this profile started (TERM, then KILL) and remove its binaries."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        while any(p.poll() is None for p, _ in self._procs) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.kill_now()

    def kill_now(self) -> None:
        """Synchronously kill and reap every child and remove the binaries; safe to call twice."""
        self._signal_all(signal.SIGKILL)
        for proc, _ in self._procs:
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                proc.wait(timeout=2.0)
        self._procs = [(p, w) for p, w in self._procs if p.returncode is None]
        if self._bindir is not None:
            shutil.rmtree(self._bindir, ignore_errors=True)
            self._bindir = None
        _LIVE.discard(self)

    def __del__(self) -> None:
        """Last resort when the owner neither stopped the profile nor reached atexit."""
        with contextlib.suppress(Exception):
            if self._procs or self._bindir:
                self.kill_now()

    # -- machinery -------------------------------------------------------------------------

    def _signal_all(self, sig: signal.Signals) -> None:
        """Send `sig` to the process group of every child that has not been reaped."""
        for proc, _ in self._procs:
            # A child not yet reaped still owns its pid, so the signal cannot reach a stranger.
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)

    def _child_env(self) -> dict[str, str]:
        """A minimal environment that lets a copied interpreter find its stdlib and libpython."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONHOME": sys.base_prefix}
        libdir = sysconfig.get_config_var("LIBDIR")
        if libdir:
            inherited = os.environ.get("LD_LIBRARY_PATH")
            env["LD_LIBRARY_PATH"] = f"{libdir}:{inherited}" if inherited else str(libdir)
        return env

    def _argv(self, worker: _Worker) -> list[str]:
        """Command line of one child."""
        assert self._bindir is not None
        return [
            os.path.join(self._bindir, worker.name),
            "-S",
            "-s",
            "-B",
            "-c",
            _CHILD_CODE,
            str(os.getpid()),
            f"{worker.duty:.4f}",
            f"{worker.period:.3f}",
            f"{worker.lifetime:.3f}",
            f"{worker.spike_duty:.4f}",
            f"{worker.spike_every:.3f}",
            f"{worker.spike_seconds:.3f}",
            str(worker.memory_kb),
            # A command line of its own for every child (cron jobs are runs of a schedule).
            f"--run={next(self._runs)}",
        ]

    async def _check_binary(self, name: str) -> None:
        """Fail clearly if a copied interpreter cannot run here."""
        assert self._bindir is not None
        proc = await asyncio.create_subprocess_exec(
            os.path.join(self._bindir, name),
            "-S",
            "-s",
            "-B",
            "-c",
            "pass",
            env=self._child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), timeout=20.0)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            reason = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            raise LoadError(f"a copied interpreter failed to start (exit {proc.returncode}): {reason[0]}")

    def _reap(self) -> None:
        """Forget children that have exited."""
        self._procs = [(p, w) for p, w in self._procs if p.poll() is None]

    def _spawn(self, worker: _Worker) -> bool:
        """Start one child unless that would break the bounds; True if started."""
        self._reap()
        if len(self._procs) >= MAX_CHILDREN:
            return False
        if sum(w.budget() for _, w in self._procs) + worker.budget() > MAX_TOTAL_DUTY:
            return False
        proc = subprocess.Popen(
            self._argv(worker),
            env=self._child_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            # Its own process group, so that stop() can signal the child and anything it forks.
            start_new_session=True,
        )
        self._procs.append((proc, worker))
        return True

    async def _run_jobs(self) -> None:
        """Keep starting the profile's short-lived jobs until cancelled."""
        while True:
            planned = self._next_short_lived()
            if planned is None:  # pragma: no cover - the task only runs for profiles with jobs
                return
            delay, job = planned
            await asyncio.sleep(delay)
            try:
                self._spawn(job)
            except OSError as exc:
                # Out of pids or memory for a moment: skip this job, the profile goes on.
                log.warning("load_job_spawn_failed", profile=self.name, job=job.name, error=str(exc))


_BINDIR_PREFIX = "phoenix-load-"


def _sweep_stale_bindirs() -> None:
    """Remove binary directories left by an owner that died without cleaning up (e.g. SIGKILL)."""
    root = tempfile.gettempdir()
    try:
        entries = os.listdir(root)
    except OSError:
        return
    for entry in entries:
        owner = entry.removeprefix(_BINDIR_PREFIX).split("-", 1)[0]
        if not entry.startswith(_BINDIR_PREFIX) or not owner.isdigit():
            continue
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
        except (PermissionError, OverflowError):
            continue


def _place_binary(source: str, target: str) -> None:
    """Put `source` at `target` under a new name: a hard link when allowed, else a copy.

    A symlink would not do: the kernel reports the resolved target in /proc/<pid>/exe.
    """
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
