"""/v1/flows and /v1/conversations over HTTP, on SQLite and PostgreSQL: versions, the
problems of an invalid document, trigger conflicts, disabling, the conversations' lists and
history, and one workspace never seeing another's. Conversations are written with the store,
as the runtime would."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from pydantic import SecretStr

from tests.conversations.rows import write_conversation
from tgrelay import problems
from tgrelay.conversations import api, registry, store
from tgrelay.conversations.models import Status
from tgrelay.conversations.schema import flow_schema
from tgrelay.crypto import TokenCipher
from tgrelay.db.engine import Database
from tgrelay.events import service as events
from tgrelay.observability import Metrics
from tgrelay.runtime import Runtime, send_limits
from tgrelay.settings import Settings
from tgrelay.telegram import ratelimit
from tgrelay.telegram.client import TelegramClients
from tgrelay.testing.clock import Clock
from tgrelay.workspaces import keys
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import KeyScope

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
STAMP = "2026-03-01T09:00:00Z"

BILLING: dict[str, Any] = {
    "name": "billing",
    "trigger": {"type": "command", "command": "/billing"},
    "steps": [
        {
            "id": "card",
            "kind": "ask",
            "message": "Your card number?",
            "input": {"type": "text", "pattern": "[0-9]{16}"},
            "variable": "card",
            "sensitive": True,
        },
        {
            "id": "city",
            "kind": "ask",
            "message": "Your city?",
            "input": {"type": "text"},
            "variable": "city",
        },
        {"id": "done", "kind": "end", "message": "Thanks {{ user.first_name }}!"},
    ],
}


@dataclass(frozen=True, kw_only=True)
class Tenant:
    workspace_id: str
    admin: dict[str, str]
    reader: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class Hub:
    rt: Runtime
    clock: Clock
    http: httpx.AsyncClient

    async def tenant(self, name: str) -> Tenant:
        _workspace, admin_key = await workspaces.create_workspace(
            self.rt.db, name, now=self.clock()
        )
        principal = await workspaces.authenticate(self.rt.db, admin_key)
        _key, read_key = await keys.create(
            self.rt.db, principal, name="reader", scope=KeyScope.READ, now=self.clock()
        )
        return Tenant(
            workspace_id=principal.workspace_id,
            admin={"Authorization": f"Bearer {admin_key}"},
            reader={"Authorization": f"Bearer {read_key}"},
        )

    async def post(self, tenant: Tenant, document: dict[str, Any]) -> httpx.Response:
        return await self.http.post("/v1/flows", json=document, headers=tenant.admin)


@pytest.fixture
async def hub(database: Database, tmp_path: Path) -> AsyncIterator[Hub]:
    """The conversations routes on a runtime over `database` (each backend in turn)."""
    settings = Settings.model_validate(
        {
            "data_dir": tmp_path,
            "telegram_api_url": "http://127.0.0.1:9",
            "public_url": None,
            "webhooks_allow_private": True,  # the team's app runs on this machine
        }
    )
    metrics = Metrics()
    clock = Clock(start=START)
    rt = Runtime(
        settings=settings,
        db=database,
        cipher=TokenCipher([SecretStr(Fernet.generate_key().decode())]),
        telegram=TelegramClients(settings.telegram_api_url, metrics),
        metrics=metrics,
        rate_limiter=ratelimit.InProcessRateLimiter(send_limits(settings)),
        clock=clock,
    )
    app = FastAPI()
    problems.install(app)
    app.include_router(api.router)
    app.state.runtime = rt
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tgrelay") as http:
        yield Hub(rt=rt, clock=clock, http=http)
    await rt.telegram.aclose()


def flow_view(document: dict[str, Any], version: int, **changes: Any) -> dict[str, Any]:
    return {
        "name": document["name"],
        "version": version,
        "trigger": document["trigger"],
        "document": document,
        "created_at": STAMP,
        "enabled": True,
        "disabled_at": None,
        **changes,
    }


def problem(status: int, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}


def with_city_prompt(text: str) -> dict[str, Any]:
    changed = copy.deepcopy(BILLING)
    changed["steps"][1]["message"] = text
    return changed


async def test_posting_stores_versions_and_the_same_document_again_stores_nothing(
    hub: Hub,
) -> None:
    """A new name is version 1 (201), its own document again is 200 with version 1, a
    changed document is version 2; the list shows the newest with its count, the flow its
    versions, and each version reads back; read keys read but cannot post."""
    acme = await hub.tenant("Acme")
    first = await hub.post(acme, BILLING)
    again = await hub.post(acme, BILLING)
    hub.clock.advance(60)
    changed = with_city_prompt("Which city do you live in?")
    second = await hub.post(acme, changed)
    listed = await hub.http.get("/v1/flows", headers=acme.reader)
    detail = await hub.http.get("/v1/flows/billing", headers=acme.reader)
    old = await hub.http.get("/v1/flows/billing/versions/1", headers=acme.reader)
    missing = await hub.http.get("/v1/flows/billing/versions/3", headers=acme.reader)
    by_reader = await hub.http.post("/v1/flows", json=BILLING, headers=acme.reader)

    later = "2026-03-01T09:01:00Z"
    assert (first.status_code, first.json()) == (201, flow_view(BILLING, 1))
    assert (again.status_code, again.json()) == (200, flow_view(BILLING, 1))
    assert (second.status_code, second.json()) == (201, flow_view(changed, 2, created_at=later))
    assert listed.json() == [flow_view(changed, 2, created_at=later, versions=2)]
    assert detail.json() == flow_view(
        changed,
        2,
        created_at=later,
        versions=[
            {
                "version": 2,
                "trigger": BILLING["trigger"],
                "created_at": later,
                "enabled": True,
                "disabled_at": None,
            },
            {
                "version": 1,
                "trigger": BILLING["trigger"],
                "created_at": STAMP,
                "enabled": False,
                "disabled_at": None,
            },
        ],
    )
    assert (old.status_code, old.json()) == (200, flow_view(BILLING, 1, enabled=False))
    assert (missing.status_code, missing.json()) == (
        404,
        problem(404, "NotFound", "no version 3 of flow billing"),
    )
    assert (by_reader.status_code, by_reader.json()["title"]) == (403, "Forbidden")


async def test_an_invalid_document_is_422_with_every_problem_at_its_step_and_field(
    hub: Hub,
) -> None:
    """A bad regex at steps[2], an unknown next and an unknown variable are all listed, each
    naming its step and field; text that is not JSON and the reserved name are refused too,
    a body over 1 MiB is 413; nothing is stored."""
    acme = await hub.tenant("Acme")
    bad = {
        "name": "address",
        "trigger": {"type": "command", "command": "/address"},
        "steps": [
            {
                "id": "street",
                "kind": "ask",
                "message": "Street?",
                "input": {"type": "text"},
                "variable": "street",
            },
            {
                "id": "city",
                "kind": "ask",
                "message": "City in {{ country }}?",
                "input": {"type": "text"},
                "variable": "city",
                "next": "nowhere",
            },
            {
                "id": "zip",
                "kind": "ask",
                "message": "Postal code?",
                "input": {"type": "text", "pattern": "[0-9"},
                "variable": "zip",
            },
            {"id": "done", "kind": "end"},
        ],
    }
    refused = await hub.post(acme, bad)
    not_json = await hub.http.post("/v1/flows", content=b"{steps", headers=acme.admin)
    reserved = await hub.post(acme, {**BILLING, "name": "schema"})
    too_large = await hub.http.post(
        "/v1/flows", content=b" " * (registry.MAX_DOCUMENT_BYTES + 1), headers=acme.admin
    )
    listed = await hub.http.get("/v1/flows", headers=acme.admin)

    assert (refused.status_code, refused.json()) == (
        422,
        problem(
            422,
            "FlowInvalid",
            "the flow is not valid: 4 problems",
            errors=[
                'steps[1] (id "city").next: no step has the id "nowhere"',
                'steps[1] (id "city").message: unknown variable: country; known: user.id, '
                "user.first_name, user.last_name, user.username, user.language_code, chat.id, "
                "street, city, zip",
                'steps[2] (id "zip").input.pattern: not a valid regex: unterminated character '
                "set at position 0",
                "steps: no end or handoff step can be reached from the first step",
            ],
        ),
    )
    assert refused.headers["content-type"] == problems.PROBLEM_JSON
    assert (not_json.status_code, not_json.json()["errors"]) == (
        422,
        ["not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"],
    )
    assert (reserved.status_code, reserved.json()["errors"]) == (
        422,
        ['name: "schema" is reserved (GET /v1/flows/schema is the JSON Schema)'],
    )
    assert (too_large.status_code, too_large.json()) == (
        413,
        problem(413, "PayloadTooLarge", "a flow document is at most 1048576 bytes"),
    )
    assert listed.json() == []


async def test_two_enabled_flows_may_not_share_a_trigger(hub: Hub) -> None:
    """A second flow on /billing is 409 naming the first; once the first is disabled it is
    stored, and the first cannot come back on the same command while the second holds it;
    API-started flows never clash, and another workspace has its own triggers."""
    acme, globex = await hub.tenant("Acme"), await hub.tenant("Globex")
    await hub.post(acme, BILLING)
    rival = {**BILLING, "name": "payments"}
    clash = await hub.post(acme, rival)
    elsewhere = await hub.post(globex, rival)
    disabled = await hub.http.delete("/v1/flows/billing", headers=acme.admin)
    taken_over = await hub.post(acme, rival)
    back = await hub.post(acme, BILLING)
    by_api = [
        await hub.post(acme, {**BILLING, "name": name, "trigger": {"type": "api"}})
        for name in ("one", "two")
    ]

    assert (clash.status_code, clash.json()) == (
        409,
        problem(
            409,
            "Conflict",
            "flow billing (version 1) already starts on the command /billing; "
            "disable it or choose another trigger",
        ),
    )
    assert (elsewhere.status_code, disabled.status_code) == (201, 204)
    assert (taken_over.status_code, taken_over.json()) == (201, flow_view(rival, 1))
    assert (back.status_code, back.json()["detail"]) == (
        409,
        "flow payments (version 1) already starts on the command /billing; "
        "disable it or choose another trigger",
    )
    assert [(r.status_code, r.json()["version"]) for r in by_api] == [(201, 1), (201, 1)]


async def test_posts_at_the_same_time_never_share_a_trigger_or_a_version(hub: Hub) -> None:
    """Ten flows posted at once on one command: one is stored, nine are 409; ten versions of
    one name posted at once are versions 1 to 10."""
    acme = await hub.tenant("Acme")
    rivals = await asyncio.gather(
        *(hub.post(acme, {**BILLING, "name": f"rival-{n}"}) for n in range(10))
    )
    edits = await asyncio.gather(
        *(
            hub.post(
                acme,
                {**with_city_prompt(f"City {n}?"), "trigger": {"type": "api"}, "name": "edited"},
            )
            for n in range(10)
        )
    )

    assert sorted(r.status_code for r in rivals) == [201] + [409] * 9
    assert sorted(r.json()["version"] for r in edits) == list(range(1, 11))


async def test_disabling_stops_new_starts_and_posting_again_makes_an_enabled_version(
    hub: Hub,
) -> None:
    """DELETE disables the newest version (its trigger starts nothing, a running
    conversation is untouched); the same document posted again is version 2, enabled; an
    unknown flow is 404 and a read key cannot disable."""
    acme = await hub.tenant("Acme")
    await hub.post(acme, BILLING)
    await _conversation(hub, acme, "cnv_running", step="city")
    by_reader = await hub.http.delete("/v1/flows/billing", headers=acme.reader)
    hub.clock.advance(60)
    disabled = await hub.http.delete("/v1/flows/billing", headers=acme.admin)
    twice = await hub.http.delete("/v1/flows/billing", headers=acme.admin)
    shown = await hub.http.get("/v1/flows/billing", headers=acme.reader)
    async with hub.rt.db.engine.connect() as conn:
        starts = await store.flow_for_trigger(conn, acme.workspace_id, "command", "/billing")
    running = await hub.http.get("/v1/conversations/cnv_running", headers=acme.reader)
    again = await hub.post(acme, BILLING)
    unknown = await hub.http.delete("/v1/flows/nope", headers=acme.admin)

    off = "2026-03-01T09:01:00Z"
    assert (by_reader.status_code, disabled.status_code, twice.status_code) == (403, 204, 204)
    assert (shown.json()["enabled"], shown.json()["disabled_at"]) == (False, off)
    assert starts is None
    assert (running.json()["status"], running.json()["step"]) == ("active", "city")
    assert (again.status_code, again.json()) == (
        201,
        flow_view(BILLING, 2, created_at=off),
    )
    assert (unknown.status_code, unknown.json()) == (
        404,
        problem(404, "NotFound", "no flow nope"),
    )


async def test_the_schema_is_public(hub: Hub) -> None:
    """GET /v1/flows/schema answers without a key, with the published JSON Schema."""
    found = await hub.http.get("/v1/flows/schema")

    assert (found.status_code, found.json()) == (200, flow_schema())


async def test_conversations_list_newest_first_filtered_and_paged(hub: Hub) -> None:
    """The list is newest first, filtered by flow and status, and `next_before` pages on
    without skipping conversations that started in the same instant; an unknown `before`
    is 422."""
    acme = await hub.tenant("Acme")
    await hub.post(acme, BILLING)
    await hub.post(acme, {**BILLING, "name": "survey", "trigger": {"type": "api"}})
    await _conversation(hub, acme, "cnv_a", user_id=1, started=0)
    await _conversation(hub, acme, "cnv_b", user_id=2, started=60, flow="survey")
    await _conversation(hub, acme, "cnv_c", user_id=3, started=60, status=Status.COMPLETED)
    await _conversation(hub, acme, "cnv_d", user_id=4, started=120)

    async def ids(**params: Any) -> tuple[list[str], str | None]:
        found = await hub.http.get("/v1/conversations", params=params, headers=acme.reader)
        assert found.status_code == 200, found.text
        body = found.json()
        return [c["id"] for c in body["conversations"]], body["next_before"]

    first = await ids(limit=2)
    second = await ids(limit=2, before=first[1])
    billing = await ids(flow="billing")
    completed = await ids(status="completed")
    bad = await hub.http.get("/v1/conversations", params={"before": "cnv_zz"}, headers=acme.reader)

    assert first == (["cnv_d", "cnv_c"], "cnv_c")
    assert second == (["cnv_b", "cnv_a"], None)
    assert billing == (["cnv_d", "cnv_c", "cnv_a"], None)
    assert completed == (["cnv_c"], None)
    assert (bad.status_code, bad.json()) == (
        422,
        problem(422, "InvalidInput", "before names no conversation: cnv_zz"),
    )


async def test_a_conversation_shows_its_state_and_history_with_sensitive_values_masked(
    hub: Hub,
) -> None:
    """One conversation reads with its flow version, step, status, variables (the sensitive
    step's masked and named) and every transition in order."""
    acme = await hub.tenant("Acme")
    await hub.post(acme, BILLING)
    await _conversation(
        hub,
        acme,
        "cnv_1",
        step="done",
        status=Status.COMPLETED,
        variables={"card": "4111111111111111", "city": "Lyon"},
        moves=[(None, "card", "/billing"), ("card", "city", "***"), ("city", "done", "Lyon")],
    )

    found = await hub.http.get("/v1/conversations/cnv_1", headers=acme.reader)

    at = [f"2026-03-01T09:00:0{second}Z" for second in range(3)]
    assert (found.status_code, found.json()) == (
        200,
        {
            "id": "cnv_1",
            "flow": "billing",
            "version": 1,
            "bot_id": 42,
            "chat_id": 7001,
            "user_id": 7001,
            "status": "completed",
            "step": "done",
            "end_reason": None,
            "started_at": STAMP,
            "updated_at": STAMP,
            "ended_at": STAMP,
            "variables": {"card": "***", "city": "Lyon"},
            "sensitive": ["card"],
            "history": [
                {"from": None, "to": "card", "input": "/billing", "at": at[0]},
                {"from": "card", "to": "city", "input": "***", "at": at[1]},
                {"from": "city", "to": "done", "input": "Lyon", "at": at[2]},
            ],
        },
    )


async def test_another_workspace_sees_none_of_it(hub: Hub) -> None:
    """Another workspace's key finds neither the flow, its versions, nor its conversations,
    cannot disable it, and lists nothing."""
    acme, globex = await hub.tenant("Acme"), await hub.tenant("Globex")
    await hub.post(acme, BILLING)
    await _conversation(hub, acme, "cnv_1")

    reads = [
        await hub.http.get(path, headers=globex.admin)
        for path in (
            "/v1/flows/billing",
            "/v1/flows/billing/versions/1",
            "/v1/conversations/cnv_1",
        )
    ]
    delete = await hub.http.delete("/v1/flows/billing", headers=globex.admin)
    flows = await hub.http.get("/v1/flows", headers=globex.admin)
    conversations = await hub.http.get("/v1/conversations", headers=globex.admin)
    still = await hub.http.get("/v1/flows/billing", headers=acme.admin)

    assert [r.status_code for r in reads] == [404, 404, 404]
    assert delete.status_code == 404
    assert (flows.json(), conversations.json()) == (
        [],
        {"conversations": [], "next_before": None},
    )
    assert still.json()["enabled"] is True


async def _conversation(
    hub: Hub,
    tenant: Tenant,
    conversation_id: str,
    *,
    started: int = 0,
    user_id: int = 7001,
    **values: Any,
) -> None:
    await write_conversation(
        hub.rt.db,
        tenant.workspace_id,
        conversation_id,
        started_at=START + timedelta(seconds=started),
        user_id=user_id,
        **values,
    )


async def test_a_call_no_endpoint_can_sign_is_refused_until_the_app_is_an_endpoint(
    hub: Hub,
) -> None:
    """A call step's URL must share its origin with an endpoint of the workspace, whose secret
    signs the call: without one the flow is 422 at the step's url, with one it is stored."""
    acme = await hub.tenant("Acme")
    flow = {
        "name": "address",
        "trigger": {"type": "command", "command": "/address"},
        "steps": [
            {
                "id": "check",
                "kind": "call",
                "url": "http://127.0.0.1:8765/flows/check",
                "fallback_text": "One moment.",
                "next": "done",
                "on_failure": "done",
            },
            {"id": "done", "kind": "end"},
        ],
    }

    refused = await hub.post(acme, flow)
    principal = await workspaces.authenticate(hub.rt.db, acme.admin["Authorization"][7:])
    await events.create_endpoint(
        hub.rt,
        principal,
        url="http://127.0.0.1:8765/events",
        event_types=["conversation.*"],
        description="The team's app",
    )
    stored = await hub.post(acme, flow)

    assert (refused.status_code, refused.json()["errors"]) == (
        422,
        ['steps[0] (id "check").url: no endpoint of this workspace has this origin'],
    )
    assert (stored.status_code, stored.json()["version"]) == (201, 1)
