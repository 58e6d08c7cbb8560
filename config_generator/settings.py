"""Config-generator settings: defaults, then a YAML file, then PHOENIX_GENERATOR_* environment variables."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from phoenix_common.settings import MIN_TOKEN_CHARS, SettingsError, check_allowed_hosts, is_loopback

ENV_PREFIX = "PHOENIX_GENERATOR_"
REPO_ROOT = Path(__file__).resolve().parent.parent


def default_otelcol_binary() -> str:
    """`otelcol` on PATH, else the repo's own build (bin/otelcol-phoenix)."""
    return shutil.which("otelcol") or str(REPO_ROOT / "bin" / "otelcol-phoenix")


@dataclass(frozen=True)
class Settings:
    """Everything the generator reads at start-up."""

    host: str = "127.0.0.1"
    port: int = 8082
    control_plane_url: str = "http://127.0.0.1:8080"
    api_token: str | None = None
    otelcol_binary: str = field(default_factory=default_otelcol_binary)
    log_level: str = "info"
    request_timeout: float = 10.0
    validate_timeout: float = 20.0
    max_body_bytes: int = 262_144
    insecure: bool = False
    # Host names the generator answers to besides loopback addresses and localhost.
    allowed_hosts: tuple[str, ...] = ()

    def validate(self) -> None:
        """Raise SettingsError naming the first invalid setting."""
        if not 0 < self.port < 65536:
            raise SettingsError(f"port must be between 1 and 65535, got {self.port}")
        if not self.control_plane_url.startswith(("http://", "https://")):
            raise SettingsError("control_plane_url must be an http:// or https:// URL")
        if self.api_token is not None and len(self.api_token) < MIN_TOKEN_CHARS:
            raise SettingsError(f"api_token must be at least {MIN_TOKEN_CHARS} characters long")
        check_allowed_hosts(self.allowed_hosts)
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise SettingsError("log_level must be one of debug, info, warning, error")
        if not 0 < self.request_timeout <= 300:
            raise SettingsError("request_timeout must be between 0 and 300 seconds")
        if not 0 < self.validate_timeout <= 300:
            raise SettingsError("validate_timeout must be between 0 and 300 seconds")
        if self.max_body_bytes < 1024:
            raise SettingsError("max_body_bytes must be at least 1024")
        if not is_loopback(self.host) and not self.insecure and not self.api_token:
            raise SettingsError(
                f"host {self.host} is not a loopback address: set api_token, "
                "or start with --insecure to serve without one"
            )
