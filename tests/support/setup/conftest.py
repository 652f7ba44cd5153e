"""The desk's setup API over HTTP: a small app with the support routes, SQLite, the emulator
on loopback, and helpers that make workspaces, bots and forum connections."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import select

from tests.databases import PostgresServer
from tgrelay import problems, wiring
from tgrelay.bots import service as bots_service
from tgrelay.crypto import TokenCipher
from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.groups import store as groups_store
from tgrelay.groups.models import ConnectionStatus
from tgrelay.observability import Metrics
from tgrelay.runtime import Runtime, send_limits
from tgrelay.settings import Settings
from tgrelay.support import desk_api, kb_api, report_api, sla_api
from tgrelay.telegram import ratelimit
from tgrelay.telegram.client import TelegramClients
from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator import BotRecord
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.workspaces import keys
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import KeyScope, Principal

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
STAMP = "2026-01-05T09:00:00Z"
ALICE: dict[str, Any] = {"id": 5551234, "is_bot": False, "first_name": "Alice"}


@dataclass(frozen=True, kw_only=True)
class Tenant:
    principal: Principal
    admin_key: str
    read_key: str

    @property
    def workspace_id(self) -> str:
        return self.principal.workspace_id

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_key}"}

    @property
    def reader(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.read_key}"}


@dataclass(kw_only=True)
class Desk:
    """tgrelay's runtime wired to the emulator, the support routes' client, and helpers."""

    rt: Runtime
    clock: Clock
    telegram: RunningEmulator
    api: httpx.AsyncClient

    async def tenant(self, name: str) -> Tenant:
        _workspace, admin_key = await workspaces.create_workspace(
            self.rt.db, name, now=self.clock()
        )
        principal = await workspaces.authenticate(self.rt.db, admin_key)
        _key, read_key = await keys.create(
            self.rt.db, principal, name="reader", scope=KeyScope.READ, now=self.clock()
        )
        return Tenant(principal=principal, admin_key=admin_key, read_key=read_key)

    async def bot(self, tenant: Tenant, username: str) -> BotRecord:
        """A bot made in the emulator and connected to the tenant's workspace (polling)."""
        record = self.telegram.emulator.create_bot(username)
        await bots_service.connect(self.rt, tenant.principal, record.token)
        return record

    def forum(self, bot: BotRecord, title: str = "Support", **rights: bool) -> dict[str, Any]:
        """A forum supergroup where the bot is an administrator (less the rights set False)."""
        chat = self.telegram.emulator.create_chat("supergroup", title, is_forum=True)
        self.telegram.emulator.add_bot(
            chat["id"], bot.id, ALICE, status="administrator", rights=rights or None
        )
        return chat

    async def connection(
        self,
        tenant: Tenant,
        bot: BotRecord,
        chat: dict[str, Any],
        status: ConnectionStatus = ConnectionStatus.ACTIVE,
    ) -> str:
        """A group connection row, as linking the group would have written it."""
        connection_id = f"conn_{secrets.token_hex(6)}"
        async with self.rt.db.transaction() as conn:
            await groups_store.add_connection(
                conn,
                {
                    "id": connection_id,
                    "workspace_id": tenant.workspace_id,
                    "bot_id": bot.id,
                    "chat_id": chat["id"],
                    "chat_type": chat["type"],
                    "title": chat["title"],
                    "is_forum": bool(chat.get("is_forum")),
                    "status": status.value,
                    "status_reason": None if status is ConnectionStatus.ACTIVE else "bot removed",
                    "created_at": self.clock(),
                    "updated_at": self.clock(),
                },
            )
        return connection_id

    async def audit(self, workspace_id: str) -> list[tuple[str, dict[str, Any]]]:
        """The workspace's audit rows (action, detail), oldest first, without the API keys'."""
        log = tables.audit_log
        async with self.rt.db.engine.connect() as conn:
            rows = await conn.execute(
                select(log).where(log.c.workspace_id == workspace_id).order_by(log.c.id)
            )
            return [
                (row.action, orjson.loads(row.detail))
                for row in rows
                if not row.action.startswith(("api_key.", "bot."))
            ]


@pytest.fixture
async def desk(emulator: RunningEmulator, tmp_path: Path) -> AsyncIterator[Desk]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'tgrelay.db'}")
    async with db.transaction() as conn:
        await conn.run_sync(tables.metadata.create_all)
    async with _desk(emulator, tmp_path, db) as running:
        yield running


@pytest.fixture
async def desk_on_postgres(
    emulator: RunningEmulator,
    tmp_path: Path,
    postgres: PostgresServer,
    postgres_template: str | None,
) -> AsyncIterator[Desk]:
    """The same, on a PostgreSQL database of its own at HEAD (a copy of the migrated one)."""
    async with (
        postgres.fresh_database(template=postgres_template) as url,
        _desk(emulator, tmp_path, Database(url)) as running,
    ):
        yield running


@asynccontextmanager
async def _desk(emulator: RunningEmulator, tmp_path: Path, db: Database) -> AsyncIterator[Desk]:
    settings = Settings.model_validate(
        {"data_dir": tmp_path, "telegram_api_url": emulator.base_url, "public_url": None}
    )
    metrics = Metrics()
    clock = Clock(start=START)
    rt = wiring.install(
        Runtime(
            settings=settings,
            db=db,
            cipher=TokenCipher([SecretStr(Fernet.generate_key().decode())]),
            telegram=TelegramClients(settings.telegram_api_url, metrics),
            metrics=metrics,
            rate_limiter=ratelimit.InProcessRateLimiter(send_limits(settings)),
            clock=clock,
        )
    )
    app = FastAPI()
    problems.install(app)
    app.include_router(desk_api.router)
    app.include_router(kb_api.router)
    app.include_router(sla_api.router)
    app.include_router(report_api.router)
    app.state.runtime = rt
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tgrelay") as api:
        yield Desk(rt=rt, clock=clock, telegram=emulator, api=api)
    await rt.telegram.aclose()
    await db.dispose()


def problem(status: int, title: str, detail: str) -> dict[str, Any]:
    return {"type": "about:blank", "title": title, "status": status, "detail": detail}
