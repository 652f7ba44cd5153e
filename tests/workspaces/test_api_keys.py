"""The API key lifecycle over HTTP: created once, listed without secrets, scoped, revoked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.harness import (
    Tgrelay,
    free_port,
    key_id,
    polling_relay,
    settings_for,
)
from tgrelay.app import TgrelayApp
from tgrelay.testing.clock import Clock
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.testing.serving import serving
from tgrelay.workspaces import service as workspaces

START = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(start=START)


@pytest.fixture
async def relay(emulator: RunningEmulator, tmp_path: Path, clock: Clock) -> AsyncIterator[Tgrelay]:
    async with polling_relay(emulator, tmp_path, clock) as relay:
        yield relay


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def create_key(relay: Tgrelay, name: str, scope: str) -> dict[str, Any]:
    response = await relay.api.post("/v1/api-keys", json={"name": name, "scope": scope})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_created_key_is_shown_once_and_listed_without_secrets(
    relay: Tgrelay, clock: Clock
) -> None:
    """POST answers the plaintext once; GET lists every live key's id, name, prefix, scope and times, never the key."""
    clock.advance(1)  # listed oldest first
    created = await create_key(relay, "CI reader", "read")
    listed = (await relay.api.get("/v1/api-keys")).json()
    first_id = key_id(relay.api_key)
    assert created["key"].startswith(created["id"] + "_")
    assert {k: v for k, v in created.items() if k != "key"} == {
        "id": created["id"],
        "name": "CI reader",
        "prefix": f"{created['id']}_…",
        "scope": "read",
        "created_at": "2026-12-08T09:00:01Z",
        "last_used_at": None,
    }
    assert listed == [
        {
            "id": first_id,
            "name": "first key",
            "prefix": f"{first_id}_…",
            "scope": "admin",
            "created_at": "2026-12-08T09:00:00Z",
            "last_used_at": "2026-12-08T09:00:01Z",  # its first use: the POST above
        },
        {k: v for k, v in created.items() if k != "key"},
    ]
    async with httpx.AsyncClient(base_url=relay.base_url, headers=bearer(created["key"])) as reader:
        assert (await reader.get("/v1/bots")).status_code == 200


async def test_a_read_key_reads_but_every_write_is_forbidden(relay: Tgrelay) -> None:
    """A read key lists what an admin key lists, and gets 403 problem+json on writes of every router."""
    reader_key = (await create_key(relay, "dashboard", "read"))["key"]
    writes = [
        ("POST", "/v1/bots", {"token": "123456:" + "A" * 35}),
        ("DELETE", "/v1/bots/123456", None),
        ("POST", "/v1/endpoints", {"url": "https://example.com/hook"}),
        ("POST", "/v1/notifications", {"connection_id": "conn_x", "text": "hi"}),
        ("POST", "/v1/bots/123456/updates/1/retry", None),
        ("POST", "/v1/api-keys", {"name": "mine", "scope": "admin"}),
        ("DELETE", f"/v1/api-keys/{key_id(relay.api_key)}", None),
    ]
    async with httpx.AsyncClient(base_url=relay.base_url, headers=bearer(reader_key)) as reader:
        answers = [await reader.request(m, path, json=body) for m, path, body in writes]
        reads = [(await reader.get(path)).status_code for path in ("/v1/bots", "/v1/api-keys")]
    assert [a.status_code for a in answers] == [403] * len(writes)
    assert answers[0].headers["content-type"] == "application/problem+json"
    assert answers[0].json() == {
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
        "detail": "this API key has the 'read' scope and cannot change anything; "
        "use a key with the 'admin' scope",
    }
    assert reads == [200, 200]
    assert len((await relay.api.get("/v1/api-keys")).json()) == 2


async def test_the_last_admin_key_cannot_be_revoked(relay: Tgrelay, clock: Clock) -> None:
    """Revoking the only admin key is refused with 409 even when read keys remain; with a second admin key it goes."""
    first_id = key_id(relay.api_key)
    await create_key(relay, "reader", "read")
    refused = await relay.api.delete(f"/v1/api-keys/{first_id}")
    clock.advance(1)  # listed oldest first
    second = await create_key(relay, "second admin", "admin")
    revoked = await relay.api.delete(f"/v1/api-keys/{first_id}")
    async with httpx.AsyncClient(base_url=relay.base_url, headers=bearer(second["key"])) as admin:
        last = await admin.delete(f"/v1/api-keys/{second['id']}")
        listed = [k["name"] for k in (await admin.get("/v1/api-keys")).json()]
    assert (refused.status_code, refused.json()["title"]) == (409, "Conflict")
    assert refused.json()["detail"].startswith(f"{first_id} is the workspace's last admin key")
    assert (revoked.status_code, last.status_code) == (204, 409)
    assert listed == ["reader", "second admin"]


async def test_revocation_holds_at_once_in_another_process(
    relay: Tgrelay, emulator: RunningEmulator, tmp_path: Path
) -> None:
    """A key revoked through one process is refused by another process on the same database at its next request."""
    doomed = await create_key(relay, "leaked", "admin")
    port = free_port()
    other = TgrelayApp(
        settings_for(emulator, tmp_path, webhook=False, port=port).model_copy(
            update={"secret_keys": relay.runtime.settings.secret_keys}
        ),
        run_worker=False,
    )
    async with (
        serving(other, port=port),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=bearer(doomed["key"])
        ) as leaked,
    ):
        before = await leaked.get("/v1/bots")
        revoked = await relay.api.delete(f"/v1/api-keys/{doomed['id']}")
        after = await leaked.get("/v1/bots")
    assert [before.status_code, revoked.status_code, after.status_code] == [200, 204, 401]
    assert after.json()["detail"] == "unknown or revoked API key"


async def test_last_use_is_written_at_most_once_a_minute(relay: Tgrelay, clock: Clock) -> None:
    """Requests within a minute of the stored last use write nothing; the first after it moves it."""

    async def last_used() -> str | None:
        [key] = (await relay.api.get("/v1/api-keys")).json()
        found: str | None = key["last_used_at"]
        return found

    first = await last_used()
    clock.advance(59)
    within = await last_used()
    clock.advance(1)
    after = await last_used()
    assert [first, within, after] == [
        "2026-12-08T09:00:00Z",
        "2026-12-08T09:00:00Z",
        "2026-12-08T09:01:00Z",
    ]


async def test_bad_key_requests_get_specific_errors(relay: Tgrelay) -> None:
    """An unknown scope or an empty name is 422; an unknown or another workspace's key id is 404."""
    rt = relay.runtime
    _, foreign = await workspaces.create_workspace(rt.db, "other team", now=rt.clock())
    scope = await relay.api.post("/v1/api-keys", json={"name": "x", "scope": "owner"})
    name = await relay.api.post("/v1/api-keys", json={"name": "", "scope": "read"})
    unknown = await relay.api.delete("/v1/api-keys/tgr_nope")
    theirs = await relay.api.delete(f"/v1/api-keys/{key_id(foreign)}")
    assert [r.status_code for r in (scope, name, unknown, theirs)] == [422, 422, 404, 404]
    assert [e["loc"] for e in scope.json()["errors"]] == [["body", "scope"]]
    assert theirs.json()["detail"] == f"no API key {key_id(foreign)}"


async def test_creating_and_revoking_keys_is_audited(relay: Tgrelay, clock: Clock) -> None:
    """Each creation and revocation leaves an audit row naming the key, its name and scope, and who acted."""
    created = await create_key(relay, "CI", "read")
    clock.advance(1)
    await relay.api.delete(f"/v1/api-keys/{created['id']}")
    page = (await relay.api.get("/v1/audit", params={"limit": 10})).json()
    actor = f"api_key:{key_id(relay.api_key)}"
    detail = {"api_key_id": created["id"], "name": "CI", "scope": "read"}
    assert [(e["action"], e["actor"], e["detail"]) for e in page["entries"]] == [
        ("api_key.revoked", actor, detail),
        ("api_key.created", actor, detail),
    ]
