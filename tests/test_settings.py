"""Settings: defaults, the generated key file, and failing closed in cluster mode."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tgrelay import errors
from tgrelay.settings import Settings, with_secret_keys


def test_defaults_are_single_node_sqlite_with_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing set, tgrelay uses SQLite in ./.tgrelay, long polling and 127.0.0.1:8000."""
    monkeypatch.chdir(tmp_path)
    settings = Settings(_env_file=None)
    assert (
        settings.resolved_database_url,
        settings.uses_webhooks,
        settings.host,
        settings.port,
        settings.telegram_api_url,
    ) == (
        "sqlite+aiosqlite:///.tgrelay/tgrelay.db",
        False,
        "127.0.0.1",
        8000,
        "https://api.telegram.org",
    )


def test_environment_variables_use_the_tgrelay_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """TGRELAY_* variables configure the service; the public URL decides webhooks."""
    monkeypatch.setenv("TGRELAY_DATABASE_URL", "postgresql://postgres@127.0.0.1/test")
    monkeypatch.setenv("TGRELAY_PUBLIC_URL", "https://relay.example.com/")
    monkeypatch.setenv("TGRELAY_SECRET_KEYS", "a, b")
    monkeypatch.setenv("TGRELAY_REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("TGRELAY_PORT", "9000")
    settings = Settings(_env_file=None)
    assert (
        settings.resolved_database_url,
        settings.webhook_url(42),
        [key.get_secret_value() for key in settings.secret_keys],
        settings.redis_url,
        settings.port,
        settings.public_url_is_insecure,
    ) == (
        "postgresql+asyncpg://postgres@127.0.0.1/test",
        "https://relay.example.com/telegram/42",
        ["a", "b"],
        "redis://127.0.0.1:6379/0",
        9000,
        False,
    )


def test_http_public_url_is_accepted_but_flagged() -> None:
    """An http:// public URL works for trials with the emulator and is marked insecure."""
    settings = Settings(public_url="http://127.0.0.1:8000", _env_file=None)
    assert (settings.uses_webhooks, settings.public_url_is_insecure) == (True, True)


def test_public_url_must_be_http_or_https() -> None:
    """Any other scheme is refused at start-up."""
    with pytest.raises(ValueError, match="must start with https://"):
        Settings(public_url="ftp://example.com", _env_file=None)


def test_first_single_node_start_generates_a_private_key_file(tmp_path: Path) -> None:
    """Without keys, SQLite mode generates one into DATA_DIR (mode 0600) and reuses it."""
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)
    first = with_secret_keys(settings)
    second = with_secret_keys(settings)
    key_file = tmp_path / "data" / "secret_keys"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [k.get_secret_value() for k in first.secret_keys] == [
        k.get_secret_value() for k in second.secret_keys
    ]
    assert len(first.secret_keys) == 1


def test_cluster_mode_without_keys_fails_closed(tmp_path: Path) -> None:
    """With PostgreSQL and no TGRELAY_SECRET_KEYS, start-up stops instead of inventing a key."""
    settings = Settings(
        data_dir=tmp_path,
        database_url="postgresql://postgres@127.0.0.1/test",
        _env_file=None,
    )
    with pytest.raises(errors.ConfigurationError, match="TGRELAY_SECRET_KEYS is required"):
        with_secret_keys(settings)
    assert not (tmp_path / "secret_keys").exists()


def test_postgres_pool_covers_the_worker_and_the_api_unless_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Unset, the pool holds a connection per worker job plus 12; TGRELAY_DATABASE_POOL_SIZE
    overrides it (e.g. to fit many processes under PostgreSQL's max_connections)."""
    monkeypatch.setenv("TGRELAY_WORKER_CONCURRENCY", "16")
    derived = Settings(_env_file=None).resolved_database_pool_size
    monkeypatch.setenv("TGRELAY_DATABASE_POOL_SIZE", "5")
    assert (derived, Settings(_env_file=None).resolved_database_pool_size) == (28, 5)


def test_inbound_limits_are_off_by_default_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No chat limit, no de-duplication and no source allow-list unless set; set, they parse
    from JSON and comma-separated CIDRs."""
    default = Settings(_env_file=None)
    monkeypatch.setenv("TGRELAY_INBOUND_CHAT_LIMIT", "[30, 60]")
    monkeypatch.setenv("TGRELAY_INBOUND_DEDUPLICATE", "true")
    monkeypatch.setenv("TGRELAY_TELEGRAM_SOURCE_NETWORKS", "149.154.160.0/20, 91.108.4.0/22")
    configured = Settings(_env_file=None)
    assert (
        default.inbound_chat_limit,
        default.inbound_deduplicate,
        default.telegram_source_networks,
    ) == (None, False, ())
    assert (
        configured.inbound_chat_limit,
        configured.inbound_deduplicate,
        [str(n) for n in configured.telegram_source_networks],
    ) == ((30, 60.0), True, ["149.154.160.0/20", "91.108.4.0/22"])


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("INBOUND_CHAT_LIMIT", "[0, 60]", "count >= 1 and seconds > 0"),
        ("INBOUND_CHAT_LIMIT", "[30, 0]", "count >= 1 and seconds > 0"),
        ("INBOUND_CHAT_LIMIT", "30", "inbound_chat_limit"),
        ("TELEGRAM_SOURCE_NETWORKS", "149.154.160.0/20, telegram", "telegram_source_networks"),
    ],
)
def test_bad_inbound_limits_are_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    """A limit of no updates or no time, or a network that is no CIDR, stops start-up."""
    monkeypatch.setenv(f"TGRELAY_{name}", value)
    with pytest.raises(ValueError, match=message):
        Settings(_env_file=None)
