"""Control-plane settings: defaults, then a YAML file, then PHOENIX_* environment variables."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from phoenix_common.settings import SettingsError, is_loopback


def default_state_dir() -> Path:
    return Path(platformdirs.user_data_dir("phoenix", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Everything the API service reads at start-up."""

    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str | None = None
    state_dir: Path = field(default_factory=default_state_dir)
    generator_url: str = "http://127.0.0.1:8082"
    api_token: str | None = None
    agent_token: str | None = None
    insecure: bool = False
    log_level: str = "info"
    lease_seconds: float = 90.0
    max_attempts: int = 3
    reap_interval: float = 5.0
    stale_after: float = 90.0
    offline_after: float = 300.0
    long_poll_default: float = 30.0
    long_poll_max: float = 60.0
    claim_limit: int = 10
    max_body_bytes: int = 1_048_576
    pool_min_size: int = 2
    pool_max_size: int = 20
    price_per_series_month: float = 0.10
    price_per_million_datapoints: float = 0.05
    experiment_ack_timeout: float = 120.0
    experiment_sample_interval: float = 10.0

    def validate(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingsError("port must be between 1 and 65535")
        if self.database_url is not None and not self.database_url.startswith(
            ("postgresql://", "postgres://")
        ):
            raise SettingsError("database_url must be a postgresql:// URL")
        if not self.generator_url.startswith(("http://", "https://")):
            raise SettingsError("generator_url must be an http:// or https:// URL")
        if self.lease_seconds < 1:
            raise SettingsError("lease_seconds must be at least 1")
        if self.max_attempts < 1:
            raise SettingsError("max_attempts must be at least 1")
        if not 1 <= self.claim_limit <= 10:
            raise SettingsError("claim_limit must be between 1 and 10")
        if self.long_poll_max < self.long_poll_default:
            raise SettingsError("long_poll_max must not be less than long_poll_default")
        if self.offline_after <= self.stale_after:
            raise SettingsError("offline_after must be greater than stale_after")
        if not 1 <= self.pool_min_size <= self.pool_max_size:
            raise SettingsError("pool_min_size must be between 1 and pool_max_size")
        for name in ("price_per_series_month", "price_per_million_datapoints"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must not be negative")
        if not is_loopback(self.host) and not self.insecure and not (self.api_token and self.agent_token):
            raise SettingsError(
                f"host {self.host} is not a loopback address: set api_token and agent_token, "
                "or start with --insecure to serve without them"
            )
