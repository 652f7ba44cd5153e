"""POST /v1/conversations over HTTP: the app starts a flow with a chat (201), unknown flows
and bots are 404, a second live conversation of the participant is 409, and the start's
question goes out through the outbox."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.conversations.running import ADA
from tests.dispatching import dispatching
from tgrelay import problems
from tgrelay.bots import service as bots
from tgrelay.conversations import start_api, store
from tgrelay.conversations.models import State
from tgrelay.db import tables
from tgrelay.runtime import Runtime
from tgrelay.telegram.outbox import jobs as outbox
from tgrelay.telegram.outbox import messages
from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.workspaces import service as workspaces

START = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
NOTIFY: dict[str, Any] = {
    "name": "renewal",
    "trigger": {"type": "api", "variables": ["plan"]},
    "steps": [
        {
            "id": "renew",
            "kind": "confirm",
            "message": "Your {{ plan }} plan ends soon, {{ user.first_name }}. Renew it?",
            "yes": "thanks",
            "no": "bye",
        },
        {"id": "thanks", "kind": "end", "message": "Renewed."},
        {"id": "bye", "kind": "end", "message": "Noted."},
    ],
    "timeout_seconds": 3600,
}


@dataclass(frozen=True, kw_only=True)
class Served:
    api: httpx.AsyncClient
    rt: Runtime
    admin: dict[str, str]
    bot_id: int
    other_bot_id: int  # of another workspace
    workspace_id: str


@pytest.fixture
async def served(emulator: RunningEmulator, tmp_path: Path) -> AsyncIterator[Served]:
    clock = Clock(start=START)
    async with dispatching(emulator, tmp_path, clock=clock) as relay:
        rt = relay.rt
        workspace, key = await workspaces.create_workspace(rt.db, "Acme", now=clock())
        principal = await workspaces.authenticate(rt.db, key)
        bot = emulator.emulator.create_bot("renew_bot")
        await bots.connect(rt, principal, bot.token)
        other = await relay.connect_bot("other_bot")  # the dispatching helper's workspace
        # Ada wrote to the bot once: tgrelay knows her name from that update.
        emulator.emulator.send_message(bot.id, ADA, None, "hello")
        await relay.process_pending(bot.id)
        async with rt.db.transaction() as conn:
            await store.add_flow(
                conn,
                {
                    "id": "flw_renewal_1",
                    "workspace_id": workspace.id,
                    "name": "renewal",
                    "version": 1,
                    "document": json.dumps(NOTIFY),
                    "trigger_kind": "api",
                    "trigger_value": None,
                    "created_at": clock(),
                },
            )
        app = FastAPI()
        problems.install(app)
        app.include_router(start_api.router)
        app.state.runtime = rt
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tgrelay") as api:
            yield Served(
                api=api,
                rt=rt,
                admin={"Authorization": f"Bearer {key}"},
                bot_id=bot.id,
                other_bot_id=other.id,
                workspace_id=workspace.id,
            )


async def _sent(served: Served) -> list[tuple[int, str]]:
    async with served.rt.db.engine.connect() as conn:
        payloads = (
            await conn.scalars(
                select(tables.jobs.c.payload).where(tables.jobs.c.kind == outbox.SEND)
            )
        ).all()
    found = []
    for payload in payloads:
        request = messages.load(orjson.loads(payload)[outbox.REQUEST])
        assert isinstance(request, messages.SendText)
        found.append((request.chat_id, request.text))
    return found


async def _variables(served: Served, conversation_id: str) -> dict[str, Any]:
    async with served.rt.db.engine.connect() as conn:
        row = await store.conversation(conn, conversation_id)
    assert row is not None
    return dict(State.model_validate_json(row.state).variables)


async def test_the_api_starts_a_conversation_and_refuses_a_second(served: Served) -> None:
    """A start with variables is 201 with the conversation waiting at its first step, and
    its question is queued for the chat; the same participant again is 409."""
    body = {
        "flow": "renewal",
        "bot_id": served.bot_id,
        "chat_id": ADA["id"],
        "variables": {"plan": "Pro"},
    }
    created = await served.api.post("/v1/conversations", json=body, headers=served.admin)
    again = await served.api.post("/v1/conversations", json=body, headers=served.admin)

    view = created.json()
    assert created.status_code == 201, created.text
    assert view == {
        "id": view["id"],
        "flow": "renewal",
        "version": 1,
        "bot_id": served.bot_id,
        "chat_id": ADA["id"],
        "user_id": ADA["id"],
        "status": "active",
        "step": "renew",
        "end_reason": None,
        "started_at": "2026-12-06T12:00:00Z",
    }
    assert view["id"].startswith("cnv_")
    assert await _sent(served) == [(ADA["id"], "Your Pro plan ends soon, Ada. Renew it?")]
    assert await _variables(served, view["id"]) == {"plan": "Pro"}
    assert (again.status_code, again.json()["detail"]) == (409, start_api._LIVE)


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        pytest.param({"flow": "nope"}, "no enabled flow named 'nope'", id="flow"),
        pytest.param({"bot_id": 424242}, "no bot 424242 in this workspace", id="bot"),
    ],
)
async def test_unknown_flow_or_bot_is_404(
    served: Served, changes: dict[str, Any], detail: str
) -> None:
    """A flow or bot the workspace does not have is 404, and nothing is sent."""
    body = {"flow": "renewal", "bot_id": served.bot_id, "chat_id": ADA["id"], **changes}
    refused = await served.api.post("/v1/conversations", json=body, headers=served.admin)

    assert (refused.status_code, refused.json()["detail"]) == (404, detail)
    assert await _sent(served) == []


async def test_another_workspaces_bot_is_404(served: Served) -> None:
    """A bot connected to another workspace is as unknown as one that does not exist."""
    body = {"flow": "renewal", "bot_id": served.other_bot_id, "chat_id": ADA["id"]}
    refused = await served.api.post("/v1/conversations", json=body, headers=served.admin)

    assert (refused.status_code, refused.json()["detail"]) == (
        404,
        f"no bot {served.other_bot_id} in this workspace",
    )


async def test_only_the_variables_the_api_trigger_declares_may_be_given(served: Served) -> None:
    """A variable the flow does not declare is 422 naming it and the declared ones, and no
    conversation starts; a user the bot never saw is greeted without a name."""
    body = {"flow": "renewal", "bot_id": served.bot_id, "chat_id": 7002}
    refused = await served.api.post(
        "/v1/conversations",
        json={**body, "variables": {"plan": "Pro", "pln": "typo"}},
        headers=served.admin,
    )
    started = await served.api.post(
        "/v1/conversations", json={**body, "variables": {"plan": "Team"}}, headers=served.admin
    )

    assert (refused.status_code, refused.json()["detail"]) == (
        422,
        "variables not declared by the flow's api trigger: pln; declared: plan",
    )
    assert started.status_code == 201, started.text
    assert await _sent(served) == [(7002, "Your Team plan ends soon, . Renew it?")]
