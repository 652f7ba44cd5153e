"""The bot ownership migration's data steps, on rows written in the schema before it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from tests.databases import PostgresServer
from tgrelay.db import migrate, tables

BEFORE = "0006"  # the revision the bot ownership migration follows
CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
HELD, DISCONNECTED, ELSEWHERE = 101, 102, 103  # bot ids


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresServer
) -> AsyncIterator[str]:
    """An empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'tgrelay.db'}"
        return
    async with postgres.fresh_database() as fresh:
        yield fresh


def _bot(bot_id: int, workspace_id: str, status: str, created_at: datetime) -> dict[str, Any]:
    return {
        "id": bot_id,
        "workspace_id": workspace_id,
        "username": f"bot{bot_id}_bot",
        "first_name": "Bot",
        "token_ciphertext": "ciphertext",
        "token_fingerprint": f"{bot_id}:…abcd",
        "mode": "webhook",
        "status": status,
        "created_at": created_at,
        "updated_at": created_at + timedelta(days=1),
    }


def _connection(
    connection_id: str, bot_id: int, status: str, reason: str | None = None
) -> dict[str, Any]:
    return {
        "id": connection_id,
        "workspace_id": "ws_a",
        "bot_id": bot_id,
        "chat_id": -100 - bot_id,
        "chat_type": "supergroup",
        "status": status,
        "status_reason": reason,
        "created_at": CREATED,
        "updated_at": CREATED,
    }


async def _write_rows_of_the_schema_before(conn: AsyncConnection) -> None:
    """Workspace A holds one bot and disconnected another; B holds a bot A has a group of.

    Only columns the schema before has: `insert` names just the columns given.
    """
    await conn.execute(
        insert(tables.workspaces),
        [
            {"id": "ws_a", "name": "A", "created_at": CREATED},
            {"id": "ws_b", "name": "B", "created_at": CREATED},
        ],
    )
    await conn.execute(
        insert(tables.bots),
        [
            _bot(HELD, "ws_a", "healthy", CREATED),
            _bot(DISCONNECTED, "ws_a", "disconnected", CREATED + timedelta(hours=1)),
            _bot(ELSEWHERE, "ws_b", "webhook_conflict", CREATED + timedelta(hours=2)),
        ],
    )
    await conn.execute(
        insert(tables.group_connections),
        [
            _connection("conn_held", HELD, "active"),
            _connection("conn_disconnected", DISCONNECTED, "active"),
            _connection("conn_elsewhere", ELSEWHERE, "active"),
            _connection("conn_removed", DISCONNECTED, "bot_removed", "the bot was removed"),
        ],
    )


async def test_existing_bots_and_connections_get_their_ownership(url: str) -> None:
    """Upgrading fills bots.connected_since from created_at, and suspends (reason "bot
    disconnected") the active connections of bots their workspace disconnected or no longer
    holds; the others keep their status."""
    await migrate.upgrade(url, BEFORE)
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await _write_rows_of_the_schema_before(conn)
        await migrate.upgrade(url)
        async with engine.connect() as conn:
            bots = (
                await conn.execute(
                    select(tables.bots.c.id, tables.bots.c.connected_since).order_by(
                        tables.bots.c.id
                    )
                )
            ).all()
            connections = (
                await conn.execute(
                    select(
                        tables.group_connections.c.id,
                        tables.group_connections.c.status,
                        tables.group_connections.c.status_reason,
                    ).order_by(tables.group_connections.c.id)
                )
            ).all()
    finally:
        await engine.dispose()

    assert [tuple(row) for row in bots] == [
        (HELD, CREATED),
        (DISCONNECTED, CREATED + timedelta(hours=1)),
        (ELSEWHERE, CREATED + timedelta(hours=2)),
    ]
    assert [tuple(row) for row in connections] == [
        ("conn_disconnected", "suspended", "bot disconnected"),
        ("conn_elsewhere", "suspended", "bot disconnected"),
        ("conn_held", "active", None),
        ("conn_removed", "bot_removed", "the bot was removed"),
    ]
