"""Groups over the control surface: bots joining, leaving, kicked, blocked, and migrations."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tgrelay.testing.emulator import BotRecord, Emulator

from .conftest import (
    ALICE,
    BOB,
    FIXTURE_BOT_ID,
    NOW,
    OPS_GROUP,
    OPS_SUPERGROUP_ID,
    load_fixture,
    swap,
)


async def send(client: httpx.AsyncClient, bot: BotRecord, chat_id: int) -> tuple[int, Any]:
    response = await client.post(
        f"/bot{bot.token}/sendMessage", json={"chat_id": chat_id, "text": "status: green"}
    )
    return response.status_code, response.json()


async def create_chat(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/_emulator/chats", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def add(
    client: httpx.AsyncClient, chat_id: int, bot: BotRecord, by: dict[str, Any], **extra: Any
) -> list[dict[str, Any]]:
    response = await client.post(
        f"/_emulator/chats/{chat_id}/members", json={"bot_id": bot.id, "by": by, **extra}
    )
    assert response.status_code == 200, response.text
    received: list[dict[str, Any]] = response.json()
    return received


def like(fixture: str, bot: BotRecord, update: dict[str, Any]) -> dict[str, Any]:
    """A fixture rebased on this bot, this update's id and the emulator's clock."""
    expected = load_fixture(fixture)
    replacements = {FIXTURE_BOT_ID: bot.id, expected["update_id"]: update["update_id"]}
    for body in expected.values():
        if isinstance(body, dict) and "date" in body:
            replacements[body["date"]] = NOW
    rebased: dict[str, Any] = swap(expected, replacements)
    return rebased


async def test_create_chats_and_read_them(client: httpx.AsyncClient) -> None:
    """New groups get Telegram-shaped ids; a forum is a supergroup with is_forum; GET shows them."""
    group = await create_chat(client, type="group", title="Ops Alerts")
    forum = await create_chat(client, type="supergroup", title="Support Desk", is_forum=True)
    chosen = await create_chat(client, id=OPS_SUPERGROUP_ID, type="supergroup", title="Ops")
    shown = [(await client.get(f"/_emulator/chats/{c['id']}")).json() for c in (group, forum)]
    assert (-5_000_000_000 < group["id"] < -4_000_000_000, str(forum["id"])[:4]) == (True, "-100")
    assert (group, forum, chosen, shown) == (
        {"id": group["id"], "title": "Ops Alerts", "type": "group"},
        {"id": forum["id"], "title": "Support Desk", "type": "supergroup", "is_forum": True},
        {"id": OPS_SUPERGROUP_ID, "title": "Ops", "type": "supergroup"},
        [{**group, "members": []}, {**forum, "members": [], "topics": []}],
    )


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (
            {"type": "group", "title": "T", "is_forum": True},
            400,
            "only a supergroup can be a forum",
        ),
        (
            {"type": "group", "title": "T", "id": OPS_SUPERGROUP_ID},
            400,
            "a group id is negative; a supergroup id is -100 followed by 10 digits",
        ),
        (
            {"type": "supergroup", "title": "T", "id": -4012345678},
            400,
            "a group id is negative; a supergroup id is -100 followed by 10 digits",
        ),
        ({"type": "group", "title": "T", "id": OPS_GROUP["id"]}, 400, "chat -4012345678 exists"),
        ({"type": "channel", "title": "T"}, 400, None),
    ],
    ids=["forum-group", "group-id-shape", "supergroup-id-shape", "taken-id", "channel"],
)
async def test_create_chat_refusals(
    client: httpx.AsyncClient, body: dict[str, Any], status: int, error: str | None
) -> None:
    """Chats that Telegram could not have are refused with a 400 saying why."""
    await create_chat(client, id=OPS_GROUP["id"], type="group", title="Ops Alerts")
    response = await client.post("/_emulator/chats", json=body)
    assert (response.status_code, list(response.json())) == (status, ["error"])
    if error is not None:
        assert response.json() == {"error": error}


async def test_unknown_chat_is_404(client: httpx.AsyncClient, bot: BotRecord) -> None:
    """Reading, joining or migrating a chat the emulator does not know answers 404."""
    answers = [
        await client.get("/_emulator/chats/-4000000001"),
        await client.post(
            "/_emulator/chats/-4000000001/members", json={"bot_id": bot.id, "by": ALICE}
        ),
        await client.post("/_emulator/chats/-4000000001/migrate"),
    ]
    assert [(r.status_code, r.json()) for r in answers] == [
        (404, {"error": "chat -4000000001 not found"})
    ] * 3


async def test_adding_the_bot_to_a_group_sends_what_telegram_sends(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """The bot gets my_chat_member (left → member) and the new_chat_members message, then may write."""
    await create_chat(client, id=OPS_GROUP["id"], type="group", title="Ops Alerts")
    before = await send(client, bot, OPS_GROUP["id"])
    member_update, message_update = await add(client, OPS_GROUP["id"], bot, ALICE)
    after = await send(client, bot, OPS_GROUP["id"])
    shown = (await client.get(f"/_emulator/chats/{OPS_GROUP['id']}")).json()
    joined = like("update_new_chat_members_service_message", bot, message_update)
    joined["message"]["message_id"] = 1
    assert (member_update, message_update) == (
        like("update_my_chat_member_added_to_group", bot, member_update),
        joined,
    )
    assert emulator.pending_updates(bot.id) == [member_update, message_update]
    assert (before, after[0], shown["members"]) == (
        (
            403,
            {
                "ok": False,
                "error_code": 403,
                "description": "Forbidden: bot is not a member of the group chat",
            },
        ),
        200,
        [{"bot_id": bot.id, "status": "member"}],
    )


async def test_supergroup_join_and_promotion_in_a_forum(
    client: httpx.AsyncClient, bot: BotRecord
) -> None:
    """A supergroup's join message has only new_chat_members; a promotion sends my_chat_member alone."""
    forum = await create_chat(
        client, id=-1003456789012, type="supergroup", title="Support Desk", is_forum=True
    )
    _, joined = await add(client, forum["id"], bot, ALICE)
    [promoted] = await add(client, forum["id"], bot, ALICE, status="administrator")
    again = await client.post(
        f"/_emulator/chats/{forum['id']}/members",
        json={"bot_id": bot.id, "by": ALICE, "status": "administrator"},
    )
    assert (joined["message"], promoted, again.status_code) == (
        {
            "message_id": 1,
            "from": ALICE,
            "chat": forum,
            "date": NOW,
            "new_chat_members": [bot.user_json()],
        },
        like("update_my_chat_member_promoted_in_forum", bot, promoted),
        400,
    )


@pytest.mark.parametrize(
    ("chat_type", "chat_id", "description"),
    [
        ("group", OPS_GROUP["id"], load_fixture("error_403_kicked")["description"]),
        ("supergroup", OPS_SUPERGROUP_ID, "Forbidden: bot was kicked from the supergroup chat"),
    ],
)
async def test_kicked_bot_gets_told_and_may_not_write(
    client: httpx.AsyncClient, bot: BotRecord, chat_type: str, chat_id: int, description: str
) -> None:
    """A kick sends my_chat_member (→ kicked, from the kicker) and left_chat_member; then 403."""
    await create_chat(client, id=chat_id, type=chat_type, title="Ops Alerts")
    await add(client, chat_id, bot, ALICE)
    response = await client.request(
        "DELETE", f"/_emulator/chats/{chat_id}/members/{bot.id}", json={"by": BOB}
    )
    kicked, left = response.json()
    expected_kick = like("update_my_chat_member_kicked_from_group", bot, kicked)
    expected_kick["my_chat_member"]["chat"] = {
        "id": chat_id,
        "title": "Ops Alerts",
        "type": chat_type,
    }
    legacy = {"left_chat_participant": bot.user_json()} if chat_type == "group" else {}
    assert (kicked, left["message"]) == (
        expected_kick,
        {
            "message_id": 2,
            "from": BOB,
            "chat": expected_kick["my_chat_member"]["chat"],
            "date": NOW,
            **legacy,
            "left_chat_member": bot.user_json(),
        },
    )
    assert await send(client, bot, chat_id) == (
        403,
        {"ok": False, "error_code": 403, "description": description},
    )


async def test_bot_leaving_on_its_own_is_left_not_kicked(
    client: httpx.AsyncClient, bot: BotRecord
) -> None:
    """Removed without `by`, the bot itself is the actor, its status is left, and sending is 403."""
    await create_chat(client, id=OPS_SUPERGROUP_ID, type="supergroup", title="Ops Alerts")
    await add(client, OPS_SUPERGROUP_ID, bot, ALICE)
    left = await client.delete(f"/_emulator/chats/{OPS_SUPERGROUP_ID}/members/{bot.id}")
    again = await client.delete(f"/_emulator/chats/{OPS_SUPERGROUP_ID}/members/{bot.id}")
    change = left.json()[0]["my_chat_member"]
    shown = (await client.get(f"/_emulator/chats/{OPS_SUPERGROUP_ID}")).json()
    assert (change["from"], change["new_chat_member"], again.status_code, shown["members"]) == (
        bot.user_json(),
        {"user": bot.user_json(), "status": "left"},
        400,
        [{"bot_id": bot.id, "status": "left"}],
    )
    assert await send(client, bot, OPS_SUPERGROUP_ID) == (
        403,
        {
            "ok": False,
            "error_code": 403,
            "description": "Forbidden: bot is not a member of the supergroup chat",
        },
    )


async def test_migration_sends_both_service_messages_and_moves_the_bots(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """Each bot gets migrate_to_chat_id in the old group and migrate_from_chat_id in the new one."""
    other = emulator.create_bot("other_bot")
    await create_chat(client, id=OPS_GROUP["id"], type="group", title="Ops Alerts")
    await add(client, OPS_GROUP["id"], bot, ALICE)
    await add(client, OPS_GROUP["id"], other, ALICE, status="administrator")
    migrated = await client.post(f"/_emulator/chats/{OPS_GROUP['id']}/migrate", json={"by": ALICE})
    new_id = migrated.json()["migrated_to_chat_id"]
    old_note, new_note = emulator.pending_updates(bot.id)[-2:]
    expected_old = like("update_group_migrated_to_supergroup", bot, old_note)
    expected_old = swap(expected_old, {-1002345678901: new_id})
    expected_old["message"]["message_id"] = 3
    expected_new = swap(
        like("update_supergroup_migrated_from_group", bot, new_note), {-1002345678901: new_id}
    )
    shown_old = (await client.get(f"/_emulator/chats/{OPS_GROUP['id']}")).json()
    shown_new = (await client.get(f"/_emulator/chats/{new_id}")).json()
    assert (migrated.json(), str(new_id)[:4]) == (
        {"chat_id": OPS_GROUP["id"], "migrated_to_chat_id": new_id},
        "-100",
    )
    assert (old_note, new_note) == (expected_old, expected_new)
    assert [u["message"] for u in emulator.pending_updates(other.id)[-2:]] == [
        old_note["message"],
        new_note["message"],
    ]
    assert (shown_old["migrated_to_chat_id"], shown_new) == (
        new_id,
        {
            "id": new_id,
            "title": "Ops Alerts",
            "type": "supergroup",
            "members": [
                {"bot_id": bot.id, "status": "member"},
                {"bot_id": other.id, "status": "administrator"},
            ],
        },
    )
    assert (await send(client, bot, OPS_GROUP["id"]), (await send(client, bot, new_id))[0]) == (
        (400, swap(load_fixture("error_400_group_upgraded"), {-1002345678901: new_id})),
        200,
    )


async def test_migration_by_an_anonymous_admin_and_refusals(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """Without `by` the messages come from GroupAnonymousBot for the group; upgrading twice is 400."""
    await create_chat(client, id=OPS_GROUP["id"], type="group", title="Ops Alerts")
    await add(client, OPS_GROUP["id"], bot, ALICE)
    first = await client.post(f"/_emulator/chats/{OPS_GROUP['id']}/migrate")
    new_id = first.json()["migrated_to_chat_id"]
    twice = await client.post(f"/_emulator/chats/{OPS_GROUP['id']}/migrate")
    supergroup = await client.post(f"/_emulator/chats/{new_id}/migrate")
    old_note, _ = emulator.pending_updates(bot.id)[-2:]
    assert old_note["message"] == {
        "message_id": 2,
        "from": {
            "id": 1087968824,
            "is_bot": True,
            "first_name": "Group",
            "username": "GroupAnonymousBot",
        },
        "sender_chat": OPS_GROUP,
        "chat": OPS_GROUP,
        "date": NOW,
        "migrate_to_chat_id": new_id,
    }
    assert [(r.status_code, r.json()) for r in (twice, supergroup)] == [
        (400, {"error": "chat -4012345678 was upgraded to a supergroup"}),
        (400, {"error": "only a basic group can be upgraded to a supergroup"}),
    ]


async def test_blocking_and_unblocking_the_bot(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """A block sends my_chat_member (→ kicked) and makes sendMessage 403; unblocking undoes it."""
    emulator.send_message(bot.id, ALICE, None, "/start")
    blocked = await client.post(f"/_emulator/users/{ALICE['id']}/block", json={"bot_id": bot.id})
    refused = await send(client, bot, ALICE["id"])
    twice = await client.post(f"/_emulator/users/{ALICE['id']}/block", json={"bot_id": bot.id})
    unblocked = await client.post(
        f"/_emulator/users/{ALICE['id']}/unblock", json={"bot_id": bot.id}
    )
    allowed = await send(client, bot, ALICE["id"])
    stranger = await client.post(f"/_emulator/users/{BOB['id']}/block", json={"bot_id": bot.id})
    assert (blocked.json(), refused) == (
        like("update_my_chat_member_user_blocked_bot", bot, blocked.json()),
        (403, load_fixture("error_403_blocked")),
    )
    change = unblocked.json()["my_chat_member"]
    assert (
        (change["old_chat_member"]["status"], change["new_chat_member"]["status"]),
        allowed[0],
        (twice.status_code, stranger.status_code),
    ) == (("kicked", "member"), 200, (400, 400))


async def test_writing_to_a_blocked_bot_unblocks_it_first(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """A user who blocked the bot and writes again restarts it: my_chat_member, then the message."""
    emulator.send_message(bot.id, ALICE, None, "/start")
    emulator.block_bot(ALICE["id"], bot.id)
    queued = emulator.send_message(bot.id, ALICE, None, "/start")
    *_, restart, message = emulator.pending_updates(bot.id)
    assert (
        restart["my_chat_member"]["old_chat_member"]["status"],
        restart["my_chat_member"]["new_chat_member"]["status"],
        message,
        (await send(client, bot, ALICE["id"]))[0],
    ) == ("kicked", "member", queued, 200)


async def test_users_cannot_write_where_the_bot_is_not(
    client: httpx.AsyncClient, bot: BotRecord
) -> None:
    """A user message to a bot kicked from the group, or into an upgraded group, is refused."""
    await create_chat(client, id=OPS_GROUP["id"], type="group", title="Ops Alerts")
    await add(client, OPS_GROUP["id"], bot, ALICE)
    await client.request(
        "DELETE", f"/_emulator/chats/{OPS_GROUP['id']}/members/{bot.id}", json={"by": ALICE}
    )
    kicked = await client.post(
        "/_emulator/updates",
        json={"bot_id": bot.id, "from": BOB, "chat": {"id": OPS_GROUP["id"]}, "text": "hi"},
    )
    assert (kicked.status_code, kicked.json()) == (
        400,
        {"error": f"bot {bot.id} is not a member of chat {OPS_GROUP['id']}"},
    )


async def test_raw_my_chat_member_updates_set_the_status(
    client: httpx.AsyncClient, emulator: Emulator, bot: BotRecord
) -> None:
    """An injected my_chat_member about the bot changes what sendMessage answers, as on Telegram."""
    kicked = swap(load_fixture("update_my_chat_member_kicked_from_group"), {FIXTURE_BOT_ID: bot.id})
    del kicked["update_id"]
    emulator.inject_update(bot.id, kicked)
    assert await send(client, bot, OPS_SUPERGROUP_ID) == (
        403,
        {
            "ok": False,
            "error_code": 403,
            "description": "Forbidden: bot was kicked from the supergroup chat",
        },
    )
