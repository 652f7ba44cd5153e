"""Endpoints pin a type's schema version: validated, stored, shown, and honoured by emit."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from pydantic import SecretStr

from tests.databases import PostgresServer
from tgrelay import problems
from tgrelay.events import api as events_api
from tgrelay.events import catalog, service
from tgrelay.events.catalog import EventType
from tgrelay.runtime import Runtime, open_runtime
from tgrelay.settings import Settings
from tgrelay.testing.clock import Clock
from tgrelay.workspaces import service as workspaces

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
HOOK = "http://127.0.0.1:9/hook"  # never called: no worker runs here


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def rt(
    request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresServer
) -> AsyncIterator[Runtime]:
    """A runtime on a fresh database of each kind: pins and rendered bodies are columns."""
    async with contextlib.AsyncExitStack() as stack:
        url = None
        if request.param == "postgres":
            url = await stack.enter_async_context(postgres.fresh_database())
        settings = Settings(
            _env_file=None,
            data_dir=tmp_path,
            database_url=url,
            secret_keys=(SecretStr(Fernet.generate_key().decode()),),
            webhooks_allow_private=True,
            log_level="WARNING",
        )
        yield await stack.enter_async_context(open_runtime(settings, clock=Clock(start=T0)))


@pytest.fixture
async def acme(rt: Runtime) -> tuple[str, str]:
    """A workspace's id and an admin API key of it."""
    workspace, key = await workspaces.create_workspace(rt.db, "Acme", now=T0)
    return workspace.id, key


@pytest.fixture
async def api(rt: Runtime, acme: tuple[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """The events routes of a small app, authenticated with Acme's admin key."""
    app = FastAPI()
    problems.install(app)
    app.include_router(events_api.router)
    app.state.runtime = rt
    _workspace_id, key = acme
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://tgrelay",
        headers={"Authorization": f"Bearer {key}"},
    ) as client:
        yield client


async def test_a_pin_is_stored_and_shown(api: httpx.AsyncClient) -> None:
    """A pin given at create time is in the answer, in GET and in the list; none given: {}."""
    pinned = await api.post(
        "/v1/endpoints", json={"url": HOOK, "versions": {"message.received": 1}}
    )
    plain = await api.post("/v1/endpoints", json={"url": HOOK})
    shown = await api.get(f"/v1/endpoints/{pinned.json()['id']}")
    listed = await api.get("/v1/endpoints")

    assert (pinned.status_code, plain.status_code) == (201, 201)
    assert (pinned.json()["versions"], shown.json()["versions"], plain.json()["versions"]) == (
        {"message.received": 1},
        {"message.received": 1},
        {},
    )
    assert {e["id"]: e["versions"] for e in listed.json()} == {
        pinned.json()["id"]: {"message.received": 1},
        plain.json()["id"]: {},
    }


@pytest.mark.parametrize(
    ("versions", "detail"),
    [
        (
            {"message.received": 3},
            "versions: message.received has no version 3 (its versions: 1, 2)",
        ),
        ({"group.*": 1}, "versions: unknown event type 'group.*' (pin a type, not a family)"),
        (
            {"message.deleted": 1, "bot.connected": 2},
            "versions: bot.connected has no version 2 (its versions: 1); "
            "unknown event type 'message.deleted' (pin a type, not a family)",
        ),
    ],
)
async def test_a_pin_of_no_such_type_or_version_is_refused(
    api: httpx.AsyncClient, versions: dict[str, int], detail: str
) -> None:
    """Create and update refuse a pin the catalog has not got, naming each one, and keep
    nothing of it."""
    created = await api.post("/v1/endpoints", json={"url": HOOK, "versions": versions})
    endpoint = (await api.post("/v1/endpoints", json={"url": HOOK})).json()
    updated = await api.patch(f"/v1/endpoints/{endpoint['id']}", json={"versions": versions})

    assert (created.status_code, updated.status_code) == (422, 422)
    assert (created.json()["detail"], updated.json()["detail"]) == (
        f"{detail} (GET /v1/event-types lists them)",
    ) * 2
    assert [e["versions"] for e in (await api.get("/v1/endpoints")).json()] == [{}]


async def test_a_version_below_one_is_refused_by_the_schema(api: httpx.AsyncClient) -> None:
    """Versions count from 1: a 0 never reaches the catalog."""
    refused = await api.post("/v1/endpoints", json={"url": HOOK, "versions": {"bot.connected": 0}})
    assert refused.status_code == 422


async def test_update_replaces_the_pins_and_null_clears_them(api: httpx.AsyncClient) -> None:
    """A PATCH with versions replaces every pin; without versions keeps them; null clears."""
    endpoint = (
        await api.post("/v1/endpoints", json={"url": HOOK, "versions": {"message.received": 1}})
    ).json()
    path = f"/v1/endpoints/{endpoint['id']}"

    replaced = (await api.patch(path, json={"versions": {"callback.received": 1}})).json()
    kept = (await api.patch(path, json={"description": "ops"})).json()
    cleared = (await api.patch(path, json={"versions": None})).json()

    assert (replaced["versions"], kept["versions"], cleared["versions"]) == (
        {"callback.received": 1},
        {"callback.received": 1},
        {},
    )


async def test_a_pinned_endpoint_is_sent_its_version_and_the_others_the_latest(
    rt: Runtime, acme: tuple[str, str], api: httpx.AsyncClient
) -> None:
    """One emit: the endpoint pinned to message.received 1 gets that event rendered as
    version 1 (no consumed_by), the unpinned one version 2; message.edited, which the pin
    does not name, comes to both in its latest version."""
    pinned = (
        await api.post("/v1/endpoints", json={"url": HOOK, "versions": {"message.received": 1}})
    ).json()
    latest = (await api.post("/v1/endpoints", json={"url": HOOK})).json()
    data = catalog.MessageData.model_validate(
        {**catalog.SPECS[EventType.MESSAGE_RECEIVED].example, "consumed_by": "groups"}
    )
    edited = catalog.MessageData.model_validate(catalog.SPECS[EventType.MESSAGE_EDITED].example)
    workspace_id, _key = acme
    async with rt.db.transaction() as conn:
        await service.emit_many(
            conn,
            rt,
            workspace_id=workspace_id,
            events=[
                service.NewEvent(event_type=EventType.MESSAGE_RECEIVED, data=data),
                service.NewEvent(event_type=EventType.MESSAGE_EDITED, data=edited),
            ],
        )

    old_received, old_edited = await _bodies(api, pinned["id"])
    new_received, new_edited = await _bodies(api, latest["id"])
    assert old_received == {
        **new_received,
        "version": 1,
        "data": {k: v for k, v in new_received["data"].items() if k != "consumed_by"},
    }
    assert (new_received["version"], new_received["data"]["consumed_by"]) == (2, "groups")
    assert old_edited == new_edited
    assert new_edited["version"] == 2


async def _bodies(api: httpx.AsyncClient, endpoint_id: str) -> list[dict[str, Any]]:
    """The bodies the endpoint is sent, oldest first, as GET /v1/deliveries/{id} shows them."""
    listed = (await api.get(f"/v1/endpoints/{endpoint_id}/deliveries")).json()["deliveries"]
    return [
        orjson.loads((await api.get(f"/v1/deliveries/{d['id']}")).json()["body"])
        for d in reversed(listed)
    ]
