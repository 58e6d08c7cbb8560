"""The collector's config: validate, swap in atomically, reload, check health, roll back on failure."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import structlog
import yaml

from agent.config import CollectorSettings
from agent.state import StateDir, atomic_write, read_text
from agent.supervisor import Supervisor, SupervisorError, error_line
from phoenix_common import configmerge

log = structlog.get_logger("phoenix.agent.collector")

HEALTH_EXTENSION = "health_check"
# After the health endpoint answers, the collector must stay up this long before an apply counts.
SETTLE_SECONDS = 1.0
MAX_ERROR_CHARS = 1000


class ApplyError(Exception):
    """A config could not be applied; the message is one line (the collector's own words if it has any)."""


class MergeError(ValueError):
    """Two variant configs cannot run in one collector; the message names the conflicting key."""


def sha256_text(text: str) -> str:
    """The config hash as the generator computes it: sha256 hex of the YAML text."""
    return hashlib.sha256(text.encode()).hexdigest()


def one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """Collapse whitespace so that an error fits the contract's one-line `error`."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def parse_config(text: str, what: str = "config_yaml") -> dict[str, Any]:
    """A collector config map from YAML text; ValueError naming `what` otherwise."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{what} is not valid YAML: {one_line(str(exc), 300)}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{what} must be a YAML mapping of collector sections")
    return loaded


def merge_configs(baseline: Mapping[str, Any], candidate: Mapping[str, Any]) -> dict[str, Any]:
    """One collector config running both variants; keys both set must be equal (the shared ones)."""
    try:
        return configmerge.merge_configs(baseline, candidate)
    except configmerge.MergeConflict as exc:
        raise MergeError(
            f"baseline and candidate configs disagree at {exc.path}; shared components "
            "(hostmetrics/phoenix, health_check, service.telemetry) must be identical"
        ) from None


def dump_config(config: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False, width=1_000_000)


def health_url_of(config: Mapping[str, Any], fallback: str) -> str | None:
    """Where the health_check extension of `config` answers; None when the config enables none."""
    service = config.get("service") or {}
    enabled = (service.get("extensions") or []) if isinstance(service, Mapping) else []
    if HEALTH_EXTENSION not in enabled:
        return None
    extensions = config.get("extensions") or {}
    ext = (extensions.get(HEALTH_EXTENSION) or {}) if isinstance(extensions, Mapping) else {}
    endpoint = ext.get("endpoint") if isinstance(ext, Mapping) else None
    if not isinstance(endpoint, str) or "${" in endpoint:
        return fallback
    host, _, port = endpoint.rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    path = ext.get("path") or "/"
    return f"http://{host}:{port}{path if str(path).startswith('/') else '/' + str(path)}"


def _pipeline_exporter_endpoints(config: Mapping[str, Any], observe: bool) -> dict[str, str]:
    """variant -> Prometheus exporter endpoint of metrics/<variant> (or metrics/<variant>-observe)."""
    service = config.get("service") or {}
    pipelines = (service.get("pipelines") or {}) if isinstance(service, Mapping) else {}
    exporters = config.get("exporters") or {}
    out: dict[str, str] = {}
    for name, pipeline in pipelines.items():
        if not isinstance(name, str) or not name.startswith("metrics/") or not isinstance(pipeline, Mapping):
            continue
        variant = name.removeprefix("metrics/")
        if variant.endswith("-observe") != observe:
            continue
        variant = variant.removesuffix("-observe")
        if "-" in variant:
            continue  # metrics/<variant>-<purpose> (e.g. -critical) feeds its variant's exporter
        for exporter in pipeline.get("exporters") or []:
            spec = exporters.get(exporter) if isinstance(exporters, Mapping) else None
            if str(exporter).split("/")[0] == "prometheus" and isinstance(spec, Mapping):
                endpoint = spec.get("endpoint")
                if isinstance(endpoint, str):
                    out[variant] = endpoint.replace("0.0.0.0", "127.0.0.1")
                    break
    return out


def prometheus_endpoints(config: Mapping[str, Any]) -> dict[str, str]:
    """variant -> the loopback Prometheus endpoint its main pipeline exports to."""
    return _pipeline_exporter_endpoints(config, observe=False)


def observe_endpoints(config: Mapping[str, Any]) -> dict[str, str]:
    """variant -> the loopback full-detail observation endpoint of a selection pipeline."""
    return _pipeline_exporter_endpoints(config, observe=True)


@dataclass(frozen=True)
class Health:
    """One answer of the health endpoint: whether it is serving, and since when (changes on reload)."""

    ok: bool
    up_since: str | None
    detail: str


class Collector:
    """Owns the collector config file; every change goes through `apply` and is serialised by `lock`."""

    def __init__(
        self,
        settings: CollectorSettings,
        supervisor: Supervisor,
        state: StateDir,
        session: aiohttp.ClientSession,
        *,
        settle_seconds: float = SETTLE_SECONDS,
    ) -> None:
        self.settings = settings
        self.supervisor = supervisor
        self.state = state
        self.session = session
        self.settle_seconds = settle_seconds
        self.lock = asyncio.Lock()
        self.config_path = settings.config_path
        # When the collector last (re)loaded a config: its exporters are empty until the next collection.
        self.reloaded_at = time.monotonic()

    def current_text(self) -> str | None:
        """The config the collector runs (or would run on start)."""
        return read_text(self.config_path)

    def current_config(self) -> dict[str, Any]:
        text = self.current_text()
        if not text:
            return {}
        try:
            return parse_config(text)
        except ValueError:
            return {}

    def health_url(self, config: Mapping[str, Any] | None = None) -> str | None:
        return health_url_of(self.current_config() if config is None else config, self.settings.health_url)

    async def start(self) -> None:
        """At start: restore the last good config if the file is gone or was never confirmed; run it."""
        good = read_text(self.state.last_good)
        current = self.current_text()
        # The agent stopped between swapping a config in and seeing it healthy: that config is unproven.
        unconfirmed = (
            current is not None and current != good and current == read_text(self.state.last_received)
        )
        if good and (current is None or unconfirmed):
            atomic_write(self.config_path, good, mode=0o640)
            log.warning(
                "collector_config_restored",
                path=str(self.config_path),
                source=str(self.state.last_good),
                reason="unconfirmed" if unconfirmed else "missing",
            )
        if not self.config_path.exists():
            log.info("collector_not_started", reason="no config yet", path=str(self.config_path))
            return
        try:
            await self.supervisor.start()
        except SupervisorError as exc:
            log.error("collector_start_failed", error=str(exc))

    async def validate(self, path: Path) -> None:
        """Run `<binary> validate --config <path>`; ApplyError with the collector's message on rejection."""
        try:
            proc = await asyncio.create_subprocess_exec(
                self.settings.binary,
                "validate",
                "--config",
                str(path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as exc:
            raise ApplyError(
                f"cannot run collector binary {self.settings.binary}: {exc.strerror or exc}"
            ) from None
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.settings.apply_timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise ApplyError(f"collector validate timed out after {self.settings.apply_timeout:g}s") from None
        if proc.returncode != 0:
            lines = [line for line in out.decode("utf-8", "replace").splitlines() if line.strip()]
            message = error_line(lines) or " ".join(lines[-3:]) or f"exit code {proc.returncode}"
            raise ApplyError(one_line(f"collector rejected the config: {message}"))

    async def probe(self, url: str) -> Health:
        """Ask the health endpoint once."""
        try:
            async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                text = await response.text()
                up_since = None
                with contextlib.suppress(ValueError, AttributeError):
                    up_since = (await response.json(content_type=None)).get("upSince")
                return Health(
                    response.status == 200, up_since, f"HTTP {response.status} {one_line(text, 120)}"
                )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Health(False, None, f"{type(exc).__name__}: {exc}")

    async def _wait_healthy(self, url: str | None, before: str | None, restarts: int, timeout: float) -> None:
        """Wait until the reloaded collector serves health and stays up; ApplyError saying why it did not."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            state = await self.supervisor.state()
            if state.restarts > restarts:
                raise ApplyError(state.last_error or "collector exited after the reload")
            if url is None:
                # No health endpoint in this config: staying up is all there is to check.
                if await self.supervisor.is_active():
                    await asyncio.sleep(self.settle_seconds * 2)
                    if await self._still_up(restarts):
                        return
            else:
                health = await self.probe(url)
                last = health.detail
                # A reload restarts the health_check extension: a fresh `upSince` proves the new config runs.
                if health.ok and (health.up_since is None or health.up_since != before):
                    await asyncio.sleep(self.settle_seconds)
                    again = await self.probe(url)
                    if again.ok and again.up_since == health.up_since and await self._still_up(restarts):
                        return
            if time.monotonic() >= deadline:
                raise ApplyError(f"collector did not become healthy within {timeout:g}s ({last})")
            await asyncio.sleep(0.2)

    async def _still_up(self, restarts: int) -> bool:
        state = await self.supervisor.state()
        return state.restarts == restarts and await self.supervisor.is_active()

    async def _reload_and_wait(self, url: str | None, timeout: float) -> None:
        before = (await self.probe(url)).up_since if url else None
        restarts = (await self.supervisor.state()).restarts
        self.reloaded_at = time.monotonic()
        try:
            await self.supervisor.reload()
        except SupervisorError as exc:
            raise ApplyError(one_line(str(exc))) from None
        await self._wait_healthy(url, before, restarts, timeout)

    def _write_temp(self, text: str) -> Path:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.config_path.name}.", suffix=".new", dir=self.config_path.parent
        )
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        # Owner (the agent) and its group (otel, the collector's: install-agent.sh) only: a config may
        # hold endpoints and paths other local users have no business reading.
        os.chmod(tmp, 0o640)
        return Path(tmp)

    async def apply(
        self,
        text: str,
        files: Mapping[Path, str] | None = None,
        *,
        remember: bool = True,
        check: Callable[[], Awaitable[str | None]] | None = None,
    ) -> None:
        """Validate, swap in, reload and health-check `text`; on failure restore the last good config.

        `files` are side files the config reads (keep-lists, headers files): written before validation,
        those in the secrets directory readable by the collector only, and put back as they were if the
        config does not take. `check`, once the collector is healthy, says why the config still fails
        (it cannot deliver to its destination), or None. With `remember=False` (an experiment's temporary
        config) a healthy `text` does not become the last good config.
        """
        async with self.lock:
            backups = {path: read_text(path) for path in files or {}}
            for path, content in (files or {}).items():
                atomic_write(path, content, self._mode(path))
            restore = functools.partial(self._restore_files, backups)
            try:
                await self._apply_locked(text, on_rollback=restore, remember=remember, check=check)
            except BaseException:
                restore()
                raise

    def _mode(self, path: Path) -> int:
        return self.settings.secrets_mode() if path.parent == self.state.secrets_dir else 0o644

    def _restore_files(self, backups: Mapping[Path, str | None]) -> None:
        """Put side files back as they were (removing those that did not exist)."""
        for path, content in backups.items():
            if content is None:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            else:
                atomic_write(path, content, self._mode(path))

    async def _apply_locked(
        self,
        text: str,
        on_rollback: Callable[[], None],
        remember: bool,
        check: Callable[[], Awaitable[str | None]] | None = None,
    ) -> None:
        config = parse_config(text)
        atomic_write(self.state.last_received, text)
        tmp = self._write_temp(text)
        try:
            await self.validate(tmp)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        previous = self.current_text()
        mark = self.supervisor.output_mark()
        os.replace(tmp, self.config_path)
        log.info("collector_config_swapped", path=str(self.config_path), config_hash=sha256_text(text))
        try:
            await self._reload_and_wait(self.health_url(config), self.settings.apply_timeout)
        except ApplyError as exc:
            reason: str | None = error_line(self.supervisor.output_since(mark)) or str(exc)
        else:
            failure = await check() if check is not None else None
            reason = f"it cannot deliver to its destination: {failure}" if failure else None
        if reason is not None:
            on_rollback()
            restored = await self._rollback(previous)
            raise ApplyError(
                one_line(f"collector failed with the new config: {reason}; {restored}")
            ) from None
        if remember:
            atomic_write(self.state.last_good, text)
        log.info("collector_config_applied", config_hash=sha256_text(text))

    async def _rollback(self, previous: str | None) -> str:
        """Put back the last good config (else what ran before) and reload; says what it did."""
        good = read_text(self.state.last_good) or previous
        if not good:
            with contextlib.suppress(FileNotFoundError):
                self.config_path.unlink()
            with contextlib.suppress(SupervisorError):
                await self.supervisor.stop()
            log.error("collector_rollback_nothing_to_restore")
            return "no earlier config to restore; collector stopped"
        atomic_write(self.config_path, good, mode=0o640)
        try:
            await self._reload_and_wait(self.health_url(parse_config(good)), self.settings.apply_timeout)
        except (ApplyError, ValueError) as exc:
            log.error("collector_rollback_unhealthy", error=str(exc))
            return f"restored the last good config but it is not healthy either: {exc}"
        log.warning("collector_rolled_back", config_hash=sha256_text(good))
        return "restored the last good config"

    async def reload_checked(self) -> None:
        """Reload the unchanged config file (its keep-list files changed) and wait for health."""
        async with self.lock:
            await self._reload_and_wait(self.health_url(), self.settings.apply_timeout)

    async def remove_config(self) -> None:
        """Stop the collector and remove its config (nothing ran before an experiment)."""
        async with self.lock:
            with contextlib.suppress(SupervisorError):
                await self.supervisor.stop()
            with contextlib.suppress(FileNotFoundError):
                self.config_path.unlink()

    async def uptime_seconds(self) -> float | None:
        pid = await self.supervisor.pid()
        if pid is None:
            return None
        try:
            return max(0.0, time.time() - psutil.Process(pid).create_time())
        except (psutil.Error, OSError):
            return None
