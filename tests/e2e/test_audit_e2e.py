"""`GET /v1/audit`: a workspace's audit trail over HTTP, newest first, filtered, paged, scoped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.workspaces import service as workspaces

from .harness import Tgrelay, free_port, running_tgrelay, settings_for


@pytest.fixture
async def relay(emulator: RunningEmulator, tmp_path: Path) -> AsyncIterator[Tgrelay]:
    port = free_port()
    async with running_tgrelay(
        settings_for(emulator, tmp_path, webhook=True, port=port), port
    ) as relay:
        yield relay


def rows(page: httpx.Response) -> list[tuple[str, int | None]]:
    """(action, bot_id) of each row of an audit page."""
    assert page.status_code == 200, page.text
    return [(e["action"], e["bot_id"]) for e in page.json()["entries"]]


async def test_audit_trail_is_newest_first_filtered_paged_and_scoped(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """A key reads only its workspace's rows, newest first, filtered by action and bot, a page at a time through next_before or up to an instant; rows of another workspace and rows without a workspace (a refused webhook push) never show."""
    first = emulator.emulator.create_bot("first_bot")
    second = emulator.emulator.create_bot("second_bot")
    foreign = emulator.emulator.create_bot("foreign_bot")
    await relay.connect_bot(first.token)
    await relay.connect_bot(second.token)
    gone = await relay.api.delete(f"/v1/bots/{first.id}")
    assert gone.status_code == 200, gone.text
    rt = relay.runtime
    _, other_key = await workspaces.create_workspace(rt.db, "other team", now=rt.clock())
    principal = await workspaces.authenticate(rt.db, relay.api_key)
    async with httpx.AsyncClient(base_url=relay.base_url) as client:
        other = {"Authorization": f"Bearer {other_key}"}
        taken = await client.post("/v1/bots", json={"token": foreign.token}, headers=other)
        assert taken.status_code == 201, taken.text
        refused = await client.post(
            f"/telegram/{second.id}",
            json={"update_id": 1},
            headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"},
        )
        assert refused.status_code == 401
        others = await client.get("/v1/audit", headers=other)

    everything = await relay.api.get("/v1/audit")
    by_action = await relay.api.get("/v1/audit", params={"action": "bot.connected"})
    by_bot = await relay.api.get("/v1/audit", params={"bot_id": first.id})
    first_page = await relay.api.get("/v1/audit", params={"limit": 4})
    next_before = first_page.json()["next_before"]
    second_page = await relay.api.get("/v1/audit", params={"limit": 4, "before": next_before})
    entries: list[dict[str, Any]] = everything.json()["entries"]
    second_connected_at = entries[3]["at"]
    until = await relay.api.get("/v1/audit", params={"before": second_connected_at})

    assert rows(everything) == [
        ("bot.status_changed", first.id),
        ("bot.disconnected", first.id),
        ("bot.status_changed", second.id),
        ("bot.connected", second.id),
        ("bot.status_changed", first.id),
        ("bot.connected", first.id),
    ]
    assert everything.json()["next_before"] is None
    assert {e["actor"] for e in entries} == {principal.actor}
    assert [e["detail"] for e in entries if e["action"] == "bot.disconnected"] == [
        {"mode": "webhook"}
    ]
    assert rows(by_action) == [("bot.connected", second.id), ("bot.connected", first.id)]
    assert rows(by_bot) == [
        ("bot.status_changed", first.id),
        ("bot.disconnected", first.id),
        ("bot.status_changed", first.id),
        ("bot.connected", first.id),
    ]
    assert rows(first_page) == rows(everything)[:4]
    assert next_before == entries[3]["id"]
    assert rows(second_page) == rows(everything)[4:]
    assert second_page.json()["next_before"] is None
    assert rows(until) == [("bot.status_changed", first.id), ("bot.connected", first.id)]
    assert rows(others) == [("bot.status_changed", foreign.id), ("bot.connected", foreign.id)]


async def test_audit_trail_answers_bad_parameters_with_problems(relay: Tgrelay) -> None:
    """A `before` that is neither a row id nor a time, a limit out of range, a malformed action or bot id answer 422 problem+json naming the fault; no key answers 401."""
    answers = [
        await relay.api.get("/v1/audit", params=params)
        for params in (
            {"before": "yesterday"},
            {"limit": 0},
            {"limit": 501},
            {"action": "Bot Connected"},
            {"bot_id": "first_bot"},
        )
    ]
    async with httpx.AsyncClient(base_url=relay.base_url) as client:
        anonymous = await client.get("/v1/audit")
    assert [(a.status_code, a.headers["content-type"]) for a in answers] == [
        (422, "application/problem+json")
    ] * 5
    assert answers[0].json()["detail"] == (
        "before must be a row id or an ISO 8601 time like 2026-01-31T09:00, not 'yesterday'"
    )
    assert [[e["loc"] for e in a.json()["errors"]] for a in answers[1:]] == [
        [["query", "limit"]],
        [["query", "limit"]],
        [["query", "action"]],
        [["query", "bot_id"]],
    ]
    assert (anonymous.status_code, anonymous.headers["content-type"]) == (
        401,
        "application/problem+json",
    )
