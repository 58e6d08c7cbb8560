"""Agent settings: defaults, then /etc/phoenix-agent/config.yaml, then PHOENIX_AGENT_* environment."""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from phoenix_common.settings import SettingsError, load

DEFAULT_CONFIG_PATH = Path("/etc/phoenix-agent/config.yaml")
CONFIG_ENV = "PHOENIX_AGENT_CONFIG"
ENV_PREFIX = "PHOENIX_AGENT_"
REPO_ROOT = Path(__file__).resolve().parent.parent
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# The control plane holds a long poll for at most 60 s (docs/contracts.md).
MAX_POLL_WAIT = 60.0
# The control plane's namespace rule (a DNS label), checked here so that a typo fails at start.
# The control plane's host id rule (X-Agent-Host-ID).
_HOST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,252}$")
_NAMESPACE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def default_binary() -> str:
    """`otelcol` on PATH, else the collector the repository builds."""
    return shutil.which("otelcol") or str(REPO_ROOT / "bin" / "otelcol-phoenix")


def _check_http_url(value: str, name: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{name} must be an http:// or https:// URL, got {value!r}")


@dataclass
class CollectorSettings:
    """How the agent runs, validates and watches the collector."""

    binary: str = field(default_factory=default_binary)
    config_path: Path = Path("/etc/otelcol/collector.yaml")
    supervisor: str = "systemd"
    unit: str = "otelcol.service"
    systemctl: str = "systemctl"
    health_url: str = "http://127.0.0.1:13133/"
    apply_timeout: float = 30.0
    # A collector that keeps dying is restarted after a delay that doubles from the first to the cap
    # (process supervisor; systemd applies the unit's own RestartSec).
    restart_backoff_initial: float = 0.5
    restart_backoff_max: float = 30.0
    # Where the collector keeps its persistent sending queue (it must be able to write there). Default:
    # <state_dir>/queue when the agent runs the collector as its child; with systemd, the collector unit's
    # own StateDirectory (/var/lib/otelcol/queue), as the unit runs as another user.
    queue_dir: Path | None = None
    # After applying a config that ships, how long the collector has to deliver a first batch (at least
    # two collection intervals and 15 s more are always given) before the config counts as failed.
    export_check_seconds: float = 30.0

    def secrets_mode(self) -> int:
        """Mode of the headers files: only the agent's user (its child collector), or with systemd also
        the collector's group (the agent runs in group otel; the unit as user otel)."""
        return 0o600 if self.supervisor == "process" else 0o640

    def validate(self) -> None:
        """Raise SettingsError naming the first invalid collector field."""
        if self.queue_dir is not None and not self.queue_dir.is_absolute():
            raise SettingsError("collector.queue_dir must be absolute")
        if not 1 <= self.export_check_seconds <= 3600:
            raise SettingsError("collector.export_check_seconds must be between 1s and 1h")
        if not self.binary.strip():
            raise SettingsError("collector.binary must not be empty")
        if not self.config_path.is_absolute():
            raise SettingsError("collector.config_path must be absolute")
        if self.supervisor not in ("systemd", "process"):
            raise SettingsError(f"collector.supervisor must be systemd or process, got {self.supervisor!r}")
        if not self.unit.strip() or self.unit.startswith("-"):
            raise SettingsError(f"collector.unit must be a systemd unit name, got {self.unit!r}")
        if not self.systemctl.strip():
            raise SettingsError("collector.systemctl must not be empty")
        _check_http_url(self.health_url, "collector.health_url")
        if self.apply_timeout <= 0:
            raise SettingsError("collector.apply_timeout must be positive")
        if not 0.05 <= self.restart_backoff_initial <= 3600:
            raise SettingsError("collector.restart_backoff_initial must be between 50ms and 1h")
        if not self.restart_backoff_initial <= self.restart_backoff_max <= 3600:
            raise SettingsError(
                "collector.restart_backoff_max must be between collector.restart_backoff_initial and 1h"
            )


@dataclass
class AgentSettings:
    """Everything the agent reads at start; validated once."""

    api_url: str = ""
    host_id: str = field(default_factory=socket.gethostname)
    poll_interval: float = 30.0
    heartbeat_interval: float = 15.0
    log_level: str = "info"
    namespace: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    # repr=False keeps the agent token out of any repr that reaches a log or traceback.
    token: str | None = field(default=None, repr=False)
    state_dir: Path = Path("/var/lib/phoenix-agent")
    # Longest wait between two attempts to reach the control plane.
    backoff_max: float = 30.0
    # How often the agent reports what its pipelines emit (the control plane's cost view); 0 turns it off.
    emission_interval: float = 60.0
    collector: CollectorSettings = field(default_factory=CollectorSettings)

    def validate(self) -> None:
        """Raise SettingsError naming the first invalid field."""
        if not self.api_url:
            raise SettingsError("api_url is required (the control plane URL, e.g. http://127.0.0.1:8080)")
        _check_http_url(self.api_url, "api_url")
        self.api_url = self.api_url.rstrip("/")
        if not _HOST_ID.match(self.host_id):
            raise SettingsError(
                "host_id must be 1-253 letters, digits, '.', '_', ':' or '-', starting with a letter "
                f"or digit, got {self.host_id!r}"
            )
        self._validate_intervals()
        self.log_level = self.log_level.lower()
        if self.log_level not in LOG_LEVELS:
            raise SettingsError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if not _NAMESPACE.match(self.namespace):
            raise SettingsError(
                f"namespace must be a DNS label (lowercase letters, digits, '-'), got {self.namespace!r}"
            )
        if self.token is not None and not self.token.strip():
            self.token = None
        if not self.state_dir.is_absolute():
            raise SettingsError("state_dir must be absolute")
        if self.collector.queue_dir is None:
            child = self.collector.supervisor == "process"
            self.collector.queue_dir = self.state_dir / "queue" if child else Path("/var/lib/otelcol/queue")

    def _validate_intervals(self) -> None:
        """Raise SettingsError naming the first duration out of its range."""
        if not 1.0 <= self.poll_interval <= MAX_POLL_WAIT:
            raise SettingsError(f"poll_interval must be between 1s and {MAX_POLL_WAIT:.0f}s")
        if self.heartbeat_interval < 1.0:
            raise SettingsError("heartbeat_interval must be at least 1s")
        if not 0.1 <= self.backoff_max <= 3600:
            raise SettingsError("backoff_max must be between 100ms and 1h")
        if self.emission_interval and not 5 <= self.emission_interval <= 86400:
            raise SettingsError("emission_interval must be 0 (off) or between 5s and 24h")


def config_path_from(flag: str | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """The settings file to read and whether it was asked for explicitly (so must exist)."""
    if flag:
        return Path(flag), True
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]), True
    return DEFAULT_CONFIG_PATH, False


def load_settings(
    config: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AgentSettings:
    """Load and validate the agent settings; raises SettingsError naming the field."""
    environ = os.environ if env is None else env
    path, explicit = config_path_from(config, environ)
    # The default file is optional so that an agent configured only by environment starts.
    use_path = path if explicit or path.exists() else None
    # PHOENIX_AGENT_CONFIG names the file, not a setting.
    settings_env = {k: v for k, v in environ.items() if k != CONFIG_ENV}
    return load(AgentSettings, path=use_path, env=settings_env, env_prefix=ENV_PREFIX, overrides=overrides)
