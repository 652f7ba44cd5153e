"""The /v1/bots routes over HTTP: views without secrets, problem+json errors, tenant isolation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tgrelay.crypto import token_fingerprint

from .bench import PUBLIC_URL, Bench, api_client

CREATED = "2025-03-01T12:00:00Z"


@pytest.fixture
async def api(webhook: Bench) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(webhook) as client:
        yield client


def view(bot: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The JSON the API shows for an emulator bot connected in webhook mode."""
    return {
        "id": bot["id"],
        "username": bot["username"],
        "first_name": bot["first_name"],
        "token_fingerprint": token_fingerprint(bot["token"]),
        "mode": "webhook",
        "status": "healthy",
        "conflict_kind": None,
        "webhook_url": f"{PUBLIC_URL}/telegram/{bot['id']}",
        "last_error_message": None,
        "last_error_at": None,
        "last_checked_at": None,
        "created_at": CREATED,
        "updated_at": CREATED,
        **changes,
    }


def problem(status: int, title: str, detail: str) -> dict[str, Any]:
    return {"type": "about:blank", "title": title, "status": status, "detail": detail}


async def test_connect_answers_201_with_a_view_without_secrets(
    webhook: Bench, api: httpx.AsyncClient
) -> None:
    """POST /v1/bots connects the bot and shows it, without its token or webhook secret."""
    tenant = await webhook.tenant("Acme")
    bot = await webhook.new_bot("acme_bot")

    response = await api.post("/v1/bots", json={"token": bot["token"]}, headers=tenant.headers)

    assert (response.status_code, response.json()) == (201, view(bot))
    secret = webhook.rt.cipher.webhook_secrets(bot["id"], 1)[0]
    assert bot["token"].partition(":")[2] not in response.text
    assert secret not in response.text


async def test_a_refused_token_is_a_422_problem(webhook: Bench, api: httpx.AsyncClient) -> None:
    """A token Telegram refuses answers 422 problem+json saying so."""
    tenant = await webhook.tenant("Acme")
    bot = await webhook.new_bot("acme_bot")
    await webhook.revoke(bot["id"])

    response = await api.post("/v1/bots", json={"token": bot["token"]}, headers=tenant.headers)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == problem(
        422,
        "TelegramUnauthorized",
        "Telegram refused this token: it is invalid or was revoked in @BotFather",
    )


async def test_a_string_that_is_no_token_is_a_422_problem(
    webhook: Bench, api: httpx.AsyncClient
) -> None:
    """A malformed token answers 422 before anything is asked of Telegram."""
    tenant = await webhook.tenant("Acme")

    response = await api.post(
        "/v1/bots", json={"token": "certainly not a token"}, headers=tenant.headers
    )

    assert (response.status_code, response.json()) == (
        422,
        problem(422, "InvalidInput", "that is not a bot token (expected 123456:ABC…)"),
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "token"),
        ({"token": "123:abc"}, "token"),
        ({"token": "1:" + "a" * 200}, "token"),
        ({"token": "123456:" + "a" * 35, "mode": "polling"}, "mode"),
    ],
)
async def test_a_body_off_the_schema_is_a_422_problem(
    webhook: Bench, api: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    """Missing, too short, too long tokens and unknown fields are refused by the schema."""
    tenant = await webhook.tenant("Acme")

    response = await api.post("/v1/bots", json=body, headers=tenant.headers)

    assert response.status_code == 422
    answer = response.json()
    assert (answer["title"], [issue["loc"] for issue in answer["errors"]]) == (
        "InvalidRequest",
        [["body", field]],
    )
    assert "aaaa" not in response.text


async def test_requests_without_a_key_are_401(api: httpx.AsyncClient) -> None:
    """Every bots route needs an API key."""
    response = await api.get("/v1/bots")

    assert response.status_code == 401


async def test_another_workspace_gets_404_for_the_bot(
    webhook: Bench, api: httpx.AsyncClient
) -> None:
    """Another workspace's key gets the same 404 as for a missing id, and changes nothing."""
    owner, other = await webhook.tenant("Owner"), await webhook.tenant("Other")
    bot = await webhook.new_bot("acme_bot")
    await api.post("/v1/bots", json={"token": bot["token"]}, headers=owner.headers)
    new_token = await webhook.rotate(bot["id"])
    missing_id = bot["id"] + 1

    answers = []
    for bot_id in (bot["id"], missing_id):
        answers.append(
            [
                (response.status_code, response.json())
                for response in [
                    await api.get(f"/v1/bots/{bot_id}", headers=other.headers),
                    await api.put(
                        f"/v1/bots/{bot_id}/token",
                        json={"token": new_token},
                        headers=other.headers,
                    ),
                    await api.delete(f"/v1/bots/{bot_id}", headers=other.headers),
                    await api.post(f"/v1/bots/{bot_id}/health-check", headers=other.headers),
                ]
            ]
        )

    assert answers == [
        [(404, problem(404, "NotFound", f"no bot {bot_id} in this workspace"))] * 4
        for bot_id in (bot["id"], missing_id)
    ]
    listed = await api.get("/v1/bots", headers=other.headers)
    assert (listed.status_code, listed.json()) == (200, [])
    kept = await api.get(f"/v1/bots/{bot['id']}", headers=owner.headers)
    assert (kept.status_code, kept.json()) == (200, view(bot))


async def test_list_get_rotate_check_and_disconnect(webhook: Bench, api: httpx.AsyncClient) -> None:
    """A bot's life over HTTP: listed, fetched, token replaced, checked, disconnected."""
    tenant = await webhook.tenant("Acme")
    bot = await webhook.new_bot("acme_bot")
    await api.post("/v1/bots", json={"token": bot["token"]}, headers=tenant.headers)
    new_token = await webhook.rotate(bot["id"])

    listed = await api.get("/v1/bots", headers=tenant.headers)
    fetched = await api.get(f"/v1/bots/{bot['id']}", headers=tenant.headers)
    rotated = await api.put(
        f"/v1/bots/{bot['id']}/token", json={"token": new_token}, headers=tenant.headers
    )
    await webhook.set_foreign_webhook(bot["id"], "https://other.example/hook")
    checked = await api.post(f"/v1/bots/{bot['id']}/health-check", headers=tenant.headers)
    disconnected = await api.delete(f"/v1/bots/{bot['id']}", headers=tenant.headers)

    renewed = {**bot, "token": new_token}
    assert [
        (r.status_code, r.json()) for r in (listed, fetched, rotated, checked, disconnected)
    ] == [
        (200, [view(bot)]),
        (200, view(bot)),
        (200, view(renewed)),
        (
            200,
            view(
                renewed,
                status="webhook_conflict",
                conflict_kind="foreign",
                last_checked_at=CREATED,
            ),
        ),
        (200, view(renewed, status="disconnected", last_checked_at=CREATED)),
    ]
    actions = [(row.action, row.actor) for row in await webhook.audit_rows(bot["id"])]
    assert actions == [
        ("bot.connected", tenant.principal.actor),
        ("bot.status_changed", tenant.principal.actor),
        ("bot.token_rotated", tenant.principal.actor),
        ("bot.status_changed", tenant.principal.actor),
        ("bot.disconnected", tenant.principal.actor),
        ("bot.status_changed", tenant.principal.actor),
    ]


async def test_rotating_to_another_bots_token_is_a_422_problem(
    webhook: Bench, api: httpx.AsyncClient
) -> None:
    """PUT /token with a different bot's token answers 422 and keeps the old token."""
    tenant = await webhook.tenant("Acme")
    bot, other = await webhook.new_bot("acme_bot"), await webhook.new_bot("other_bot")
    await api.post("/v1/bots", json={"token": bot["token"]}, headers=tenant.headers)

    response = await api.put(
        f"/v1/bots/{bot['id']}/token", json={"token": other["token"]}, headers=tenant.headers
    )

    assert (response.status_code, response.json()) == (
        422,
        problem(422, "InvalidInput", "the new token belongs to another bot"),
    )
    kept = await api.get(f"/v1/bots/{bot['id']}", headers=tenant.headers)
    assert kept.json() == view(bot)


async def test_another_workspace_cannot_take_a_connected_bot(
    webhook: Bench, api: httpx.AsyncClient
) -> None:
    """Connecting a bot another workspace holds, without take_over, answers 409 and says how."""
    owner, other = await webhook.tenant("Owner"), await webhook.tenant("Other")
    bot = await webhook.new_bot("acme_bot")
    await api.post("/v1/bots", json={"token": bot["token"]}, headers=owner.headers)

    response = await api.post("/v1/bots", json={"token": bot["token"]}, headers=other.headers)

    assert (response.status_code, response.json()) == (
        409,
        problem(
            409,
            "Conflict",
            'this bot is connected to another workspace; send "take_over": true to move it here',
        ),
    )
