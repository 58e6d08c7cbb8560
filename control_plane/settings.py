"""Control-plane settings: defaults, then a YAML file, then PHOENIX_* environment variables."""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from control_plane.names import NAMESPACE as _NAMESPACE
from phoenix_common.settings import MIN_TOKEN_CHARS, SettingsError, check_allowed_hosts, is_loopback


@functools.cache
def _scoped_enrolment(entries: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in entries:
        namespace, sep, token = entry.partition(":")
        if not sep or not _NAMESPACE.match(namespace) or len(token) < MIN_TOKEN_CHARS:
            raise SettingsError(
                "enrolment_tokens must list namespace:token entries, each token at least "
                f"{MIN_TOKEN_CHARS} characters (got an entry for {namespace[:40]!r})"
            )
        if token in out:
            raise SettingsError(f"enrolment_tokens gives one token to {out[token]!r} and {namespace!r}")
        out[token] = namespace
    return out


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\[\]:-]+\Z")


def default_state_dir() -> Path:
    return Path(platformdirs.user_data_dir("phoenix", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Everything the API service reads at start-up."""

    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str | None = None
    # Behind a pooler in transaction mode (pgbouncer): database_url is the pooler; direct_database_url
    # reaches the server itself for what needs a session of its own (migrations under an advisory lock,
    # LISTEN), and prepared_statements false for a pooler that cannot keep them (pgbouncer before 1.21, or
    # with max_prepared_statements 0).
    direct_database_url: str | None = None
    prepared_statements: bool = True
    state_dir: Path = field(default_factory=default_state_dir)
    generator_url: str = "http://127.0.0.1:8082"
    api_token: str | None = None
    agent_token: str | None = None
    # Agent endpoints need a per-host token when agent_token (enrolment) is set or this is true; with this
    # and no agent_token, only operator-issued tokens (POST /api/v1/agents/{host_id}/token) let agents in.
    agent_tokens_required: bool = False
    agent_token_cache_seconds: float = 30.0
    # Bounds on the shared enrolment token (agent_token): when it stops enrolling (ISO 8601 with a
    # time zone, e.g. 2027-01-31T00:00:00Z) and how many hosts it may enrol (0: no limit).
    agent_token_expires: str | None = None
    agent_token_max_hosts: int = 0
    # Enrolment tokens scoped to a namespace, each "namespace:token": a host enrolled with one is bound
    # to that namespace (a heartbeat naming another is refused). The same expiry and limit apply.
    enrolment_tokens: tuple[str, ...] = ()
    # The token the config generator requires (its api_token); the API token when unset.
    generator_token: str | None = None
    # Fernet key (urlsafe base64, 32 bytes) that encrypts destination header values; without one the API
    # makes <state_dir>/secrets.key. Replicas must share it.
    secrets_key: str | None = None
    # Browser origins besides the API's own that may open the WebSocket (scheme://host[:port]).
    allowed_origins: tuple[str, ...] = ()
    # Host names the API answers to besides loopback addresses and localhost (DNS-rebinding guard).
    allowed_hosts: tuple[str, ...] = ()
    ws_max_message_bytes: int = 65_536
    # At most this many WebSockets open at once from one client address; more get 429.
    ws_max_per_client: int = 32
    # A token Prometheus sends to scrape /metrics (open when unset); and how long a scrape's database
    # reads (queue depth, agents, export health) serve the next scrapes.
    metrics_token: str | None = None
    metrics_cache_seconds: float = 2.0
    insecure: bool = False
    log_level: str = "info"
    lease_seconds: float = 90.0
    max_attempts: int = 3
    reap_interval: float = 5.0
    # How often each replica looks for rollouts that failed on more hosts than they tolerate.
    deployment_watch_interval: float = 1.0
    stale_after: float = 90.0
    offline_after: float = 300.0
    long_poll_default: float = 30.0
    long_poll_max: float = 60.0
    # At most this many long polls waiting at once for one host (a reconnect may overlap the poll the
    # API still holds from the dropped connection); more get 429.
    long_polls_per_host: int = 4
    claim_limit: int = 10
    # How waiting long polls learn of new tasks: "notify" (LISTEN/NOTIFY, claims batched across hosts)
    # or "interval" (each poll re-queries every long_poll_interval seconds; for poolers without LISTEN).
    long_poll_wakeup: str = "notify"
    long_poll_interval: float = 1.0
    claim_batch_max: int = 10_000
    presence_flush_interval: float = 1.0
    listen_backlog: int = 2048
    max_body_bytes: int = 1_048_576
    pool_min_size: int = 2
    pool_max_size: int = 20
    price_per_series_month: float = 0.10
    price_per_million_datapoints: float = 0.05
    # What the backend bills (docs/analysis.md): per_series (billed series), per_datapoint, or both.
    price_model: str = "both"
    experiment_ack_timeout: float = 120.0
    experiment_sample_interval: float = 10.0
    # Retention (control_plane/retention.py): final tasks, events and experiment measurements older than
    # these ages are deleted in the background; 0 keeps them forever.
    retention_tasks: float = 30 * 86400.0
    retention_events: float = 30 * 86400.0
    retention_measurements: float = 90 * 86400.0
    retention_interval: float = 3600.0
    retention_batch: int = 5000
    # Compaction (control_plane/compaction.py): an experiment's samples older than
    # measurement_full_resolution are thinned to one per measurement_bucket per host and arm, so a
    # week-long run stays bounded; 0 keeps every sample.
    measurement_full_resolution: float = 3600.0
    measurement_bucket: float = 300.0
    measurement_compact_interval: float = 300.0
    # A provisional analysis (GET .../analysis while running) is reused for this long.
    analysis_cache_seconds: float = 5.0

    def _validate_compaction(self) -> None:
        if self.measurement_full_resolution != 0 and self.measurement_full_resolution < 600:
            raise SettingsError("measurement_full_resolution must be 0 (keep every sample) or at least 10m")
        if not self.experiment_sample_interval < self.measurement_bucket <= 86400:
            raise SettingsError("measurement_bucket must be above experiment_sample_interval and at most 1d")
        if not 1 <= self.measurement_compact_interval <= 86400:
            raise SettingsError("measurement_compact_interval must be between 1s and 1d")
        if not 0 <= self.analysis_cache_seconds <= 300:
            raise SettingsError("analysis_cache_seconds must be between 0 and 300")

    def _validate_prices(self) -> None:
        if self.price_model not in ("per_series", "per_datapoint", "both"):
            raise SettingsError("price_model must be per_series, per_datapoint or both")
        for name in ("price_per_series_month", "price_per_million_datapoints"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must not be negative")

    def validate(self) -> None:
        if not 0 < self.port < 65536:
            raise SettingsError("port must be between 1 and 65535")
        for name in ("database_url", "direct_database_url"):
            url = getattr(self, name)
            if url is not None and not url.startswith(("postgresql://", "postgres://")):
                raise SettingsError(f"{name} must be a postgresql:// URL")
        if not self.generator_url.startswith(("http://", "https://")):
            raise SettingsError("generator_url must be an http:// or https:// URL")
        if self.lease_seconds < 1:
            raise SettingsError("lease_seconds must be at least 1")
        if self.max_attempts < 1:
            raise SettingsError("max_attempts must be at least 1")
        if not 1 <= self.claim_limit <= 10:
            raise SettingsError("claim_limit must be between 1 and 10")
        if self.long_poll_wakeup not in ("notify", "interval"):
            raise SettingsError("long_poll_wakeup must be notify or interval")
        if not 1 <= self.claim_batch_max <= 10_000:
            raise SettingsError("claim_batch_max must be between 1 and 10000")
        if self.long_poll_interval <= 0 or self.presence_flush_interval <= 0:
            raise SettingsError("long_poll_interval and presence_flush_interval must be positive")
        if self.long_poll_max < self.long_poll_default:
            raise SettingsError("long_poll_max must not be less than long_poll_default")
        if self.offline_after <= self.stale_after:
            raise SettingsError("offline_after must be greater than stale_after")
        if not 1 <= self.pool_min_size <= self.pool_max_size:
            raise SettingsError("pool_min_size must be between 1 and pool_max_size")
        self._validate_prices()
        for name in ("retention_tasks", "retention_events", "retention_measurements"):
            age = getattr(self, name)
            # A bare number is seconds: refusing "30" here catches a 30 days meant as 30 seconds.
            if age != 0 and age < 3600:
                raise SettingsError(
                    f"{name} must be 0 (keep forever) or at least 1h, got {age:g}s (write 30d for 30 days)"
                )
        if not 0.1 <= self.deployment_watch_interval <= 3600:
            raise SettingsError("deployment_watch_interval must be between 100ms and 1h")
        if self.retention_interval < 1:
            raise SettingsError("retention_interval must be at least 1s")
        if not 1 <= self.retention_batch <= 100_000:
            raise SettingsError("retention_batch must be between 1 and 100000")
        self._validate_compaction()
        if not 0 <= self.agent_token_cache_seconds <= 3600:
            raise SettingsError("agent_token_cache_seconds must be between 0 and 3600")
        if not 1024 <= self.ws_max_message_bytes <= 16 * 1024 * 1024:
            raise SettingsError("ws_max_message_bytes must be between 1024 and 16777216")
        if not 1 <= self.ws_max_per_client <= 10_000 or not 1 <= self.long_polls_per_host <= 100:
            raise SettingsError("ws_max_per_client must be 1 to 10000 and long_polls_per_host 1 to 100")
        if not 0 <= self.metrics_cache_seconds <= 300:
            raise SettingsError("metrics_cache_seconds must be between 0 and 300")
        self._validate_access()

    def enrolment_expires(self) -> float | None:
        """agent_token_expires as unix time (validated)."""
        if self.agent_token_expires is None:
            return None
        try:
            when = dt.datetime.fromisoformat(self.agent_token_expires.replace("Z", "+00:00"))
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            raise SettingsError(
                "agent_token_expires must be an ISO 8601 time with a zone, such as 2027-01-31T00:00:00Z"
            )
        return when.timestamp()

    def agent_tokens_on(self) -> bool:
        """Whether agent endpoints need a per-host token: with an enrolment token, or when told to."""
        return bool(self.agent_token) or bool(self.enrolment_tokens) or self.agent_tokens_required

    def scoped_enrolment(self) -> dict[str, str]:
        """enrolment_tokens as {token: namespace} (validated; parsed once, as every agent request asks)."""
        return _scoped_enrolment(self.enrolment_tokens)

    def _validate_access(self) -> None:
        """Who may call: origins, host names, token lengths, and tokens off loopback."""
        self.enrolment_expires()
        if self.agent_token_max_hosts < 0:
            raise SettingsError("agent_token_max_hosts must be 0 (no limit) or more")
        for origin in self.allowed_origins:
            if not _ORIGIN.match(origin):
                raise SettingsError(
                    "allowed_origins must list origins such as https://phoenix.example.com:8443, "
                    f"got {origin!r}"
                )
        check_allowed_hosts(self.allowed_hosts)
        for name in ("api_token", "metrics_token"):
            token = getattr(self, name)
            if token is not None and len(token) < MIN_TOKEN_CHARS:
                raise SettingsError(f"{name} must be at least {MIN_TOKEN_CHARS} characters long")
        scoped = self.scoped_enrolment()
        if self.agent_token is not None and self.agent_token in scoped:
            raise SettingsError("agent_token must differ from every enrolment_tokens token")
        if (
            not is_loopback(self.host)
            and not self.insecure
            and not (self.api_token and self.agent_tokens_on())
        ):
            raise SettingsError(
                f"host {self.host} is not a loopback address: set api_token and agent_token (or "
                "agent_tokens_required), or start with --insecure to serve without them"
            )
