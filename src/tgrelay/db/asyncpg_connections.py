"""asyncpg connections of our own beside SQLAlchemy's pool, opened as the engine opens its.

The intake's writer (inbox/postgres_writer.py) and the jobs listener (db/notifications.py)
each hold one: the first for its prepared batch statements, the second to LISTEN.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import URL, make_url

# URL options that SQLAlchemy's asyncpg adapter keeps for itself (its `connect`): passed on,
# asyncpg.connect refuses them.
ADAPTER_OPTIONS = (
    "async_creator_fn",
    "prepared_statement_cache_size",
    "prepared_statement_name_func",
)


def connect_arguments(
    url: str | URL, *, timeout: float, application_name: str | None = None
) -> tuple[list[Any], dict[str, Any]]:
    """asyncpg.connect's arguments for the engine's URL (host, credentials, SSL and its other
    options, as SQLAlchemy translates them); `application_name` names the connection in
    pg_stat_activity."""
    url = make_url(url)
    args, kwargs = url.get_dialect()().create_connect_args(url)
    for adapter_option in ADAPTER_OPTIONS:
        kwargs.pop(adapter_option, None)
    kwargs.setdefault("timeout", timeout)
    if application_name is not None:
        kwargs["server_settings"] = {
            **kwargs.get("server_settings", {}),
            "application_name": application_name,
        }
    return list(args), dict(kwargs)
