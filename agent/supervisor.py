"""Run the collector: as a child process the agent restarts, or as a systemd unit driven by systemctl."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("phoenix.agent.supervisor")

STDERR_LINES = 50
# What the collector logs once its pipelines run; it handles SIGHUP (reload) from then on.
READY_MARK = "Everything is ready"
# Under systemd the agent cannot read that line; a unit active for less than this is restarted, not reloaded.
RELOAD_GRACE_SECONDS = 3.0


class SupervisorError(Exception):
    """The collector could not be started, reloaded or stopped; the message says why."""


@dataclass(frozen=True)
class SupervisorState:
    """What the agent reports about the collector process."""

    state: str  # "running" | "stopped" | "failed"
    restarts: int
    last_error: str | None
    pid: int | None


def error_line(lines: list[str]) -> str | None:
    """The collector's own error message among its last stderr lines, as one line."""
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].startswith("Error:"):
            # The detail of a config error follows on the next lines ("...the following error(s):").
            return " ".join(" ".join(line.split()) for line in lines[index:] if line.strip())
    for line in reversed(lines):
        fields = line.split("\t")
        if len(fields) > 2 and fields[1] in ("error", "fatal", "panic"):
            return " ".join(fields[2:4]).strip()
    return None


class Supervisor(ABC):
    """One interface over the ways the collector can be run."""

    @abstractmethod
    async def start(self) -> None:
        """Start the collector if it is not running."""

    @abstractmethod
    async def reload(self) -> None:
        """Make the running collector read its config file again (start it if it is not running)."""

    @abstractmethod
    async def restart(self) -> None:
        """Stop and start the collector now."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop the collector."""

    @abstractmethod
    async def is_active(self) -> bool:
        """True while the collector process is up."""

    @abstractmethod
    async def state(self) -> SupervisorState:
        """Running state, restart count and last error."""

    @abstractmethod
    async def pid(self) -> int | None:
        """The collector's process id, if it runs."""

    def output_mark(self) -> int:
        """A position in the collector's output, for `output_since`."""
        return 0

    def output_since(self, mark: int) -> list[str]:
        """Collector stderr lines written after `mark` (only a child process has them)."""
        return []

    @property
    def owns_process(self) -> bool:
        """True when the collector dies with the agent (so the agent stops it on shutdown)."""
        return False


def _die_with_parent() -> None:
    """In the child: receive SIGTERM if the agent dies, so that no orphan collector holds its ports."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ProcessSupervisor(Supervisor):
    """Runs `<binary> --config <path>` as a child and restarts it with capped backoff when it dies."""

    def __init__(
        self,
        binary: str,
        config_path: Path,
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        stable_after: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.binary = binary
        self.config_path = config_path
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.stop_timeout = stop_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._runner: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self._started = asyncio.Event()
        self._restarts = 0
        self._last_error: str | None = None
        self._stderr: deque[str] = deque(maxlen=STDERR_LINES)
        self._lines_total = 0
        self._planned_exit = False
        self._ready = False
        # Unplanned exits since the collector last said its pipelines run: > 0 means it is crash-looping.
        self._crashes = 0

    @property
    def owns_process(self) -> bool:
        return True

    @property
    def ready(self) -> bool:
        """True once the running collector said its pipelines run (and so handles SIGHUP)."""
        return self._alive() and self._ready

    def output_mark(self) -> int:
        return self._lines_total

    def output_since(self, mark: int) -> list[str]:
        count = min(self._lines_total - mark, len(self._stderr))
        return list(self._stderr)[len(self._stderr) - count :] if count > 0 else []

    def stderr_tail(self) -> list[str]:
        """The last lines the collector wrote to stderr."""
        return list(self._stderr)

    async def _spawn(self) -> asyncio.subprocess.Process:
        self._started.clear()
        self._ready = False
        # No shell: the binary path comes from local settings only, the config path is ours.
        return await asyncio.create_subprocess_exec(
            self.binary,
            "--config",
            str(self.config_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    async def _read_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while True:
            try:
                raw = await proc.stderr.readline()
            except ValueError:  # a line longer than the stream limit: drop it, keep reading
                continue
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip()
            if READY_MARK in line:
                self._ready = True
                self._crashes = 0
            self._stderr.append(line)
            self._lines_total += 1

    async def _run(self) -> None:
        """Keep the collector running until stopped; a death is counted and followed by a backoff."""
        delay = self.backoff_initial
        while True:
            try:
                proc = await self._spawn()
            except OSError as exc:
                self._last_error = f"cannot run {self.binary}: {exc.strerror or exc}"
                self._restarts += 1
                self._crashes += 1
                log.error(
                    "collector_spawn_failed",
                    binary=self.binary,
                    error=self._last_error,
                    restart_in_seconds=round(delay, 2),
                )
                self._started.set()
                await self._backoff(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            self._proc = proc
            self._started.set()
            began = time.monotonic()
            log.info("collector_started", pid=proc.pid, config=str(self.config_path))
            await self._read_stderr(proc)
            code = await proc.wait()
            if self._planned_exit:
                self._planned_exit = False
                delay = self.backoff_initial
                continue
            self._restarts += 1
            self._crashes += 1
            self._last_error = error_line(list(self._stderr)) or f"collector exited with code {code}"
            if time.monotonic() - began >= self.stable_after:
                delay = self.backoff_initial
            log.warning(
                "collector_exited",
                pid=proc.pid,
                code=code,
                error=self._last_error,
                restart_in_seconds=round(delay, 2),
                restarts=self._restarts,
                consecutive_crashes=self._crashes,
            )
            await self._backoff(delay)
            delay = min(delay * 2, self.backoff_max)

    async def _backoff(self, delay: float) -> None:
        """Sleep before a restart; a reload or restart request cuts it short."""
        self._kick.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._kick.wait(), delay)

    def _alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="collector-supervisor")
        await self._started.wait()

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.stop_timeout)
        except TimeoutError:
            log.warning("collector_kill", pid=proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def restart(self) -> None:
        if self._runner is None or self._runner.done():
            await self.start()
            return
        proc = self._proc
        if proc is not None and proc.returncode is None:
            self._planned_exit = True
            self._started.clear()
            await self._terminate(proc)
        else:
            self._started.clear()
            self._kick.set()
        await self._started.wait()

    async def reload(self) -> None:
        # The collector re-reads its config on SIGHUP (checked against the real binary in the tests), but
        # only once it is ready: before, SIGHUP's default action would kill it. So restart it then.
        if self._alive() and self._proc is not None and self._ready:
            try:
                self._proc.send_signal(signal.SIGHUP)
                log.info("collector_reload", pid=self._proc.pid)
                return
            except ProcessLookupError:
                pass
        await self.restart()

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        if self._proc is not None:
            await self._terminate(self._proc)
            log.info("collector_stopped", pid=self._proc.pid)

    async def is_active(self) -> bool:
        return self._alive()

    async def pid(self) -> int | None:
        return self._proc.pid if self._alive() and self._proc is not None else None

    async def state(self) -> SupervisorState:
        # A collector restarted after a crash counts as failed until it says its pipelines run: in a
        # crash loop it is up for moments between the backoffs, and those must not read as healthy.
        if self._alive() and (self._ready or self._crashes == 0):
            name = "running"
        elif self._runner is not None and not self._runner.done():
            name = "failed"
        else:
            name = "stopped"
        return SupervisorState(name, self._restarts, self._last_error, await self.pid())


class SystemdSupervisor(Supervisor):
    """Drives a systemd unit with `systemctl`, run without a shell, at the configured path."""

    def __init__(self, systemctl: str, unit: str, *, timeout: float = 60.0) -> None:
        self.systemctl = systemctl
        self.unit = unit
        self.timeout = timeout
        self._last_error: str | None = None

    async def _run(self, *args: str) -> tuple[int, str]:
        try:
            proc = await asyncio.create_subprocess_exec(
                self.systemctl,
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as exc:
            raise SupervisorError(f"cannot run {self.systemctl}: {exc.strerror or exc}") from None
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise SupervisorError(
                f"{self.systemctl} {' '.join(args)} timed out after {self.timeout:.0f}s"
            ) from None
        text = out.decode("utf-8", "replace").strip()
        return proc.returncode or 0, text

    async def _control(self, verb: str) -> None:
        code, out = await self._run(verb, self.unit)
        if code != 0:
            self._last_error = (
                f"systemctl {verb} {self.unit} failed (exit {code}): {' '.join(out.split())[:300]}"
            )
            raise SupervisorError(self._last_error)
        log.info("collector_" + verb, unit=self.unit)

    async def start(self) -> None:
        await self._control("start")

    async def reload(self) -> None:
        if await self._just_started():
            # ExecReload sends SIGHUP; a collector that has not set up its handler yet would die of it.
            await self._control("restart")
            return
        try:
            await self._control("reload")
        except SupervisorError as exc:
            # A unit without ExecReload (or a stopped one) cannot reload; a restart reads the config too.
            log.warning("collector_reload_failed_restarting", unit=self.unit, error=str(exc))
            await self._control("restart")

    async def restart(self) -> None:
        await self._control("restart")

    async def stop(self) -> None:
        await self._control("stop")

    async def is_active(self) -> bool:
        code, _ = await self._run("is-active", self.unit)
        return code == 0

    async def _show(self, *props: str) -> dict[str, str]:
        args = ["show"]
        for prop in props:
            args += ["-p", prop]
        code, out = await self._run(*args, self.unit)
        if code != 0:
            return {}
        values = {}
        for line in out.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip()
        return values

    async def _just_started(self) -> bool:
        """True when the unit became active less than RELOAD_GRACE_SECONDS ago (same monotonic clock)."""
        values = await self._show("ActiveEnterTimestampMonotonic")
        try:
            since = int(values.get("ActiveEnterTimestampMonotonic", "0")) / 1e6
        except ValueError:
            return False
        return since > 0 and time.monotonic() - since < RELOAD_GRACE_SECONDS

    async def pid(self) -> int | None:
        values = await self._show("MainPID")
        try:
            pid = int(values.get("MainPID", "0"))
        except ValueError:
            return None
        return pid or None

    async def state(self) -> SupervisorState:
        values = await self._show("ActiveState", "MainPID", "NRestarts", "Result")
        active = values.get("ActiveState", "unknown")
        name = {"active": "running", "reloading": "running", "failed": "failed"}.get(active, "stopped")
        last_error = self._last_error
        if active == "failed":
            last_error = f"unit {self.unit} failed (result {values.get('Result', 'unknown')})"
        try:
            restarts = int(values.get("NRestarts", "0"))
        except ValueError:
            restarts = 0
        try:
            pid = int(values.get("MainPID", "0")) or None
        except ValueError:
            pid = None
        return SupervisorState(name, restarts, last_error, pid)


def make_supervisor(
    kind: str,
    *,
    binary: str,
    config_path: Path,
    systemctl: str,
    unit: str,
    backoff_initial: float = 0.5,
    backoff_max: float = 30.0,
) -> Supervisor:
    """The supervisor the settings ask for."""
    if kind == "process":
        return ProcessSupervisor(
            binary, config_path, backoff_initial=backoff_initial, backoff_max=backoff_max
        )
    return SystemdSupervisor(systemctl, unit)


def process_exists(pid: int) -> bool:
    """True when a process with `pid` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
