"""What bots tests work with: tgrelay's runtime, the emulator's control surface, audit rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import orjson
from fastapi import FastAPI
from sqlalchemy import select

from tgrelay import problems
from tgrelay.bots import api as bots_api
from tgrelay.db import tables
from tgrelay.runtime import Runtime
from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import Principal

PUBLIC_URL = "https://relay.example"
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
GRACE_SECONDS = 600.0
HEALTH_INTERVAL_SECONDS = 300.0


@dataclass(frozen=True, kw_only=True)
class Tenant:
    """A workspace, as the service (principal) and the API (key) see it."""

    principal: Principal
    api_key: str

    @property
    def workspace_id(self) -> str:
        return self.principal.workspace_id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@dataclass(frozen=True, kw_only=True)
class AuditRow:
    action: str
    actor: str
    workspace_id: str | None
    detail: dict[str, Any]


@dataclass(kw_only=True)
class Bench:
    """tgrelay's runtime wired to the emulator, plus the emulator's control surface."""

    rt: Runtime
    clock: Clock
    telegram: RunningEmulator
    control: httpx.AsyncClient  # the emulator's /_emulator routes

    async def new_bot(self, username: str) -> dict[str, Any]:
        """Create a bot in the emulator: {"id", "token", "username", …}."""
        return await self._call("POST", "/bots", {"username": username})

    async def emulated(self, bot_id: int) -> dict[str, Any]:
        """The bot as the emulator sees it, "webhook" included."""
        return await self._call("GET", f"/bots/{bot_id}")

    async def revoke(self, bot_id: int) -> None:
        await self._call("POST", f"/bots/{bot_id}/revoke")

    async def rotate(self, bot_id: int) -> str:
        """A new token for the same bot, as BotFather's /revoke gives one."""
        answer = await self._call("POST", f"/bots/{bot_id}/rotate")
        token: str = answer["token"]
        return token

    async def set_foreign_webhook(self, bot_id: int, url: str) -> None:
        """Another service calls setWebhook for this bot."""
        await self._call("POST", f"/bots/{bot_id}/webhook", {"url": url})

    async def delete_webhook(self, bot_id: int) -> None:
        """Another service calls deleteWebhook for this bot."""
        await self._call("DELETE", f"/bots/{bot_id}/webhook")

    async def tenant(self, name: str) -> Tenant:
        _workspace, api_key = await workspaces.create_workspace(self.rt.db, name, now=self.clock())
        principal = await workspaces.authenticate(self.rt.db, api_key)
        return Tenant(principal=principal, api_key=api_key)

    async def audit_rows(self, bot_id: int) -> list[AuditRow]:
        log = tables.audit_log
        async with self.rt.db.engine.connect() as conn:
            rows = await conn.execute(select(log).where(log.c.bot_id == bot_id).order_by(log.c.id))
            return [
                AuditRow(
                    action=row.action,
                    actor=row.actor,
                    workspace_id=row.workspace_id,
                    detail=orjson.loads(row.detail),
                )
                for row in rows
            ]

    async def stored(self, bot_id: int) -> Any:
        """The raw bots row (to look at what is stored, e.g. the token's ciphertext)."""
        async with self.rt.db.engine.connect() as conn:
            return (await conn.execute(select(tables.bots).where(tables.bots.c.id == bot_id))).one()

    async def _call(self, verb: str, path: str, body: Any = None) -> dict[str, Any]:
        response = await self.control.request(verb, f"/_emulator{path}", json=body)
        assert response.status_code in (200, 201), response.text
        answer: dict[str, Any] = response.json()
        return answer


class BenchFactory(Protocol):
    """Builds a bench on the shared database and emulator (the `make_bench` fixture)."""

    async def __call__(
        self,
        *,
        public_url: str | None,
        api_url: str | None = None,
        health_interval_seconds: float = HEALTH_INTERVAL_SECONDS,
    ) -> Bench: ...


def api_client(bench: Bench) -> httpx.AsyncClient:
    """An HTTP client for a small app serving only the bots routes."""
    app = FastAPI()
    problems.install(app)
    app.include_router(bots_api.router)
    app.state.runtime = bench.rt
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tgrelay")
