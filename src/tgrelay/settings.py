"""tgrelay's settings: one object, built once from `TGRELAY_*` variables and passed down."""

from __future__ import annotations

import ipaddress
import os
import stat
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from tgrelay import errors

TELEGRAM_API_URL = "https://api.telegram.org"
# PostgreSQL connections a process keeps beside its worker's jobs: API requests, the claim
# loops, and the updates worker's batches (app.UPDATES_CONCURRENCY_POSTGRES, each a
# transaction with a read beside it).
POSTGRES_CONNECTIONS_BESIDE_WORKER = 12
SECRET_KEYS_FILE = "secret_keys"  # noqa: S105 (a file name, not a secret)


class Settings(BaseSettings):
    """Everything an operator can set; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix="TGRELAY_", env_file=".env", extra="ignore", frozen=True
    )

    data_dir: Path = Path(".tgrelay")
    # Unset: a SQLite file in data_dir. PostgreSQL: postgresql://user@host/db.
    database_url: str | None = None
    # PostgreSQL connections each process keeps open. Unset: worker_concurrency plus
    # POSTGRES_CONNECTIONS_BESIDE_WORKER, so a busy worker and the API never churn connections.
    database_pool_size: int | None = Field(default=None, ge=1)
    # Unset: bots use long polling. Set: webhooks at {public_url}/telegram/{bot_id}.
    public_url: str | None = None
    telegram_api_url: str = TELEGRAM_API_URL
    # Comma-separated Fernet keys; the first encrypts, all decrypt (rotation).
    secret_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    # Reverse proxies whose X-Forwarded-For is trusted (comma-separated, "*" for any).
    forwarded_allow_ips: str | None = None
    # Inbound abuse limits, all off by default (inbox/screening.py). Updates of one chat
    # beyond (count, per seconds) are stored but not processed; env as JSON, e.g. "[30, 60]".
    inbound_chat_limit: tuple[int, float] | None = None
    # The same message again under a new update_id (same chat, message_id and edit_date) is
    # stored but not processed again.
    inbound_deduplicate: bool = False
    # Webhook requests only from these networks (comma-separated CIDRs); empty: from anywhere.
    telegram_source_networks: Annotated[
        tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], NoDecode
    ] = ()

    # Intake and workers; defaults suit one machine.
    max_update_bytes: int = Field(default=1_048_576, ge=1024)
    worker_concurrency: int = Field(default=8, ge=1)
    job_lease_seconds: float = Field(default=60.0, gt=0)
    job_max_attempts: int = Field(default=8, ge=1)
    poll_timeout_seconds: int = Field(default=25, ge=0, le=50)
    health_interval_seconds: float = Field(default=300.0, gt=0)
    # How long a rotated-out webhook secret is still accepted.
    secret_grace_seconds: float = Field(default=600.0, ge=0)
    # More requests with a wrong or missing secret than this for one bot within a minute
    # (per serving process) rotate the bot's webhook secret.
    forged_rotate_threshold: int = Field(default=1000, ge=1)
    log_level: str = "INFO"
    # Unset: /metrics is open. Set: /metrics answers only `Authorization: Bearer <token>`.
    metrics_token: SecretStr | None = None
    # OTLP/HTTP base URL (e.g. http://collector:4318) to export traces' spans to; needs the
    # `otel` extra. Unset: trace ids still follow every update, job, event and delivery.
    otel_endpoint: str | None = Field(default=None, pattern=r"^https?://")
    # Group linking: how long a connect session's deep-link token (and phase 2) stays valid.
    connect_session_ttl_seconds: float = Field(default=1800.0, gt=0)
    # A bare /start in a private chat gets a short reply on how to link a group; switch it
    # off when the team's own app answers /start.
    reply_to_bare_start: bool = True
    # Telegram's send limits as (count, per seconds); env as JSON, e.g. "[20, 60]".
    send_limit_per_bot: tuple[int, float] = (30, 1.0)
    send_limit_per_chat: tuple[int, float] = (1, 1.0)
    send_limit_per_group: tuple[int, float] = (20, 60.0)
    # Stretch applied to those limits so clock skew never makes us exceed them.
    send_limit_safety: float = Field(default=0.04, ge=0, le=0.05)
    # Per-bot circuit breaker on Bot API calls: after this many consecutive network errors,
    # timeouts or 5xx the bot's calls fail fast; one probe goes after the cool-off (seconds),
    # which doubles per failed probe up to 600 s.
    telegram_breaker_failures: int = Field(default=5, ge=1)
    telegram_breaker_open_seconds: float = Field(default=30.0, gt=0, le=600)
    # FULL survives power loss; NORMAL (WAL) survives process crashes only, and is faster.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"

    # Retention (tgrelay.retention): days a finished row is kept; 0 keeps that kind forever.
    retain_updates_days: float = Field(default=30.0, ge=0)  # once their job is done or dead
    retain_jobs_days: float = Field(default=7.0, ge=0)  # done jobs
    retain_dead_jobs_days: float = Field(default=30.0, ge=0)  # jobs that gave up
    # Events with their deliveries (once delivered or dead-lettered) and attempts.
    retain_events_days: float = Field(default=30.0, ge=0)
    retain_audit_days: float = Field(default=365.0, ge=0)
    # How often the pruner (one process at a time, by lease) looks for rows past their age.
    retention_interval_seconds: float = Field(default=60.0, gt=0)

    # Outgoing event webhooks (events domain).
    # Seconds to wait before each attempt: the first at once, the last a day after the ninth.
    webhooks_retry_schedule: tuple[float, ...] = (
        0,
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        50400,
        72000,
        86400,
    )
    webhooks_retry_jitter: float = Field(default=0.1, ge=0, lt=1)
    webhooks_timeout_seconds: float = Field(default=15.0, gt=0)
    # Both secrets sign for this long after a rotation.
    webhooks_secret_overlap_seconds: float = Field(default=86400.0, ge=0)
    # An endpoint failing without a single success for this long is disabled.
    webhooks_disable_after_seconds: float = Field(default=5 * 86400.0, gt=0)
    webhooks_breaker_failures: int = Field(default=5, ge=1)
    webhooks_breaker_open_seconds: float = Field(default=30.0, gt=0)
    # Deliveries in flight per process: all endpoints together, and per endpoint.
    webhooks_concurrency: int = Field(default=128, ge=1)
    webhooks_concurrency_per_endpoint: int = Field(default=16, ge=1)
    # On-premise targets: every private address, or only these networks (comma-separated).
    webhooks_allow_private: bool = False
    webhooks_allowed_networks: Annotated[
        tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], NoDecode
    ] = ()

    @field_validator("secret_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("webhooks_allowed_networks", "telegram_source_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("inbound_chat_limit")
    @classmethod
    def _check_chat_limit(cls, value: tuple[int, float] | None) -> tuple[int, float] | None:
        if value is not None and (value[0] < 1 or value[1] <= 0):
            raise ValueError(
                "TGRELAY_INBOUND_CHAT_LIMIT is [count, seconds] with count >= 1 and seconds > 0"
            )
        return value

    @field_validator("webhooks_retry_schedule")
    @classmethod
    def _check_schedule(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(delay < 0 for delay in value):
            raise ValueError("the retry schedule needs at least one delay, none negative")
        return value

    @field_validator("public_url")
    @classmethod
    def _check_public_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError("TGRELAY_PUBLIC_URL must start with https:// (or http:// for trials)")
        return value.rstrip("/")

    @cached_property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy async URL: the given one with its async driver, or the SQLite file."""
        url = self.database_url or f"sqlite:///{self.data_dir / 'tgrelay.db'}"
        return async_database_url(url)

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database's file; None for PostgreSQL or an in-memory database."""
        if not self.is_sqlite:
            return None
        path = self.resolved_database_url.partition(":///")[2].partition("?")[0]
        return None if path in ("", ":memory:") else Path(path)

    @property
    def resolved_database_pool_size(self) -> int:
        if self.database_pool_size is not None:
            return self.database_pool_size
        return self.worker_concurrency + POSTGRES_CONNECTIONS_BESIDE_WORKER

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def uses_webhooks(self) -> bool:
        return self.public_url is not None

    @property
    def public_url_is_insecure(self) -> bool:
        """Telegram itself only pushes to HTTPS; http:// is for trials with the emulator."""
        return self.public_url is not None and self.public_url.startswith("http://")

    def webhook_url(self, bot_id: int) -> str:
        if self.public_url is None:
            raise errors.ConfigurationError("webhooks need TGRELAY_PUBLIC_URL")
        return f"{self.public_url}/telegram/{bot_id}"


def async_database_url(url: str) -> str:
    """Map plain `postgresql://` and `sqlite://` URLs onto their async drivers."""
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def with_secret_keys(settings: Settings) -> Settings:
    """Settings whose secret keys are known, generating a key file on first single-node start.

    Fail closed: with PostgreSQL (cluster mode) every process must share configured keys,
    so a missing TGRELAY_SECRET_KEYS stops start-up instead of inventing one.
    """
    if settings.secret_keys:
        return settings
    key_file = settings.data_dir / SECRET_KEYS_FILE
    if not key_file.exists():
        if not settings.is_sqlite:
            raise errors.ConfigurationError(
                "TGRELAY_SECRET_KEYS is required with PostgreSQL: every process must share it"
            )
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
        with os.fdopen(fd, "w") as handle:
            handle.write(Fernet.generate_key().decode() + "\n")
    keys = known_secret_keys(settings)
    if not keys:
        raise errors.ConfigurationError(f"{key_file} holds no key")
    return settings.model_copy(update={"secret_keys": keys})


def known_secret_keys(settings: Settings) -> tuple[SecretStr, ...]:
    """The keys configured, or else those in the data directory's key file; none generated."""
    if settings.secret_keys:
        return settings.secret_keys
    key_file = settings.data_dir / SECRET_KEYS_FILE
    if not key_file.exists():
        return ()
    return tuple(
        SecretStr(line.strip()) for line in key_file.read_text().splitlines() if line.strip()
    )
