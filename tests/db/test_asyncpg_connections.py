"""Our own asyncpg connections (the intake's writer, the jobs listener) open as the engine's."""

from __future__ import annotations

from tgrelay.db import asyncpg_connections

URL = "postgresql+asyncpg://u:p@db.example:6432/relay?prepared_statement_cache_size=100&ssl=require"


def test_the_engines_settings_less_the_adapters_own() -> None:
    """Host, credentials and asyncpg's options come from the URL; the options SQLAlchemy's
    adapter keeps for itself do not reach asyncpg.connect."""
    assert asyncpg_connections.connect_arguments(URL, timeout=7) == (
        [],
        {
            "host": "db.example",
            "port": 6432,
            "user": "u",
            "password": "p",
            "database": "relay",
            "ssl": "require",
            "timeout": 7,
        },
    )


def test_a_named_connection_says_its_name_to_pg_stat_activity() -> None:
    _, kwargs = asyncpg_connections.connect_arguments(
        URL, timeout=7, application_name="tgrelay-intake"
    )
    assert kwargs["server_settings"] == {"application_name": "tgrelay-intake"}
