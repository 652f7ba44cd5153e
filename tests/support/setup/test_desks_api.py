"""/v1/support/desks: a desk is made only for a forum where the bot manages topics, one per bot."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from tgrelay.groups.models import ConnectionStatus
from tgrelay.support import desks, store
from tgrelay.support.models import DEFAULT_REOPEN_WINDOW_SECONDS

from .conftest import ALICE, STAMP, START, Desk, Tenant, problem


def desk_view(desk_id: str, bot_id: int, connection_id: str, **changes: Any) -> dict[str, Any]:
    """The JSON of a desk with the defaults, some settings changed."""
    return {
        "id": desk_id,
        "bot_id": bot_id,
        "connection_id": connection_id,
        "name": "Support",
        "assignment": "claim_on_reply",
        "reopen_window_seconds": DEFAULT_REOPEN_WINDOW_SECONDS,
        "greeting_text": desks.DEFAULT_GREETING,
        "closing_text": desks.DEFAULT_CLOSING,
        "kb_auto_answer_threshold": None,
        "kb_answer_wait_seconds": 600,
        "created_at": STAMP,
        "updated_at": STAMP,
        **changes,
    }


async def test_create_with_defaults_then_read_it(desk: Desk) -> None:
    """A desk takes the group's title, claim_on_reply, 7 days and the default texts; GET shows it."""
    acme = await desk.tenant("Acme")
    bot = await desk.bot(acme, "acme_desk_bot")
    connection_id = await desk.connection(acme, bot, desk.forum(bot))

    created = await desk.api.post(
        "/v1/support/desks",
        json={"bot_id": bot.id, "connection_id": connection_id},
        headers=acme.admin,
    )
    desk_id = created.json()["id"]
    listed = await desk.api.get("/v1/support/desks", headers=acme.reader)
    one = await desk.api.get(f"/v1/support/desks/{desk_id}", headers=acme.reader)

    expected = desk_view(desk_id, bot.id, connection_id)
    assert (created.status_code, created.json()) == (201, expected)
    assert desk_id.startswith("dsk_")
    assert (listed.status_code, listed.json()) == (200, [expected])
    # GET of one desk adds its bot's Telegram Business connections (none here).
    assert (one.status_code, one.json()) == (200, {**expected, "business_connections": []})
    assert await desk.audit(acme.workspace_id) == [
        (
            "desk.created",
            {
                "desk_id": desk_id,
                "connection_id": connection_id,
                "name": "Support",
                "assignment": "claim_on_reply",
                "reopen_window_seconds": DEFAULT_REOPEN_WINDOW_SECONDS,
                "greeting_text": desks.DEFAULT_GREETING,
                "closing_text": desks.DEFAULT_CLOSING,
                "kb_auto_answer_threshold": None,
                "kb_answer_wait_seconds": 600,
            },
        )
    ]


async def test_create_with_every_setting(desk: Desk) -> None:
    """Given settings are kept as given; null texts turn greeting and closing off."""
    acme = await desk.tenant("Acme")
    bot = await desk.bot(acme, "acme_desk_bot")
    connection_id = await desk.connection(acme, bot, desk.forum(bot))

    created = await desk.api.post(
        "/v1/support/desks",
        json={
            "bot_id": bot.id,
            "connection_id": connection_id,
            "name": "Billing",
            "assignment": "round_robin",
            "reopen_window_seconds": 0,
            "greeting_text": None,
            "closing_text": "Bye!",
            "kb_auto_answer_threshold": 2.5,
            "kb_answer_wait_seconds": 60,
        },
        headers=acme.admin,
    )

    assert (created.status_code, created.json()) == (
        201,
        desk_view(
            created.json()["id"],
            bot.id,
            connection_id,
            name="Billing",
            assignment="round_robin",
            reopen_window_seconds=0,
            greeting_text=None,
            closing_text="Bye!",
            kb_auto_answer_threshold=2.5,
            kb_answer_wait_seconds=60,
        ),
    )


async def test_the_group_must_be_a_forum_where_the_bot_manages_topics(desk: Desk) -> None:
    """Not a forum, the bot no admin, or an admin without "Manage topics": each its own 409."""
    acme = await desk.tenant("Acme")
    telegram = desk.telegram.emulator
    answers = []
    for name in ("plain_bot", "member_bot", "lacking_bot", "kicked_bot"):
        bot = await desk.bot(acme, name)
        if name == "plain_bot":
            chat = telegram.create_chat("supergroup", "Ops")
            telegram.add_bot(chat["id"], bot.id, ALICE, status="administrator")
        elif name == "member_bot":
            chat = telegram.create_chat("supergroup", "Support", is_forum=True)
            telegram.add_bot(chat["id"], bot.id, ALICE)
        elif name == "lacking_bot":
            chat = desk.forum(bot, can_manage_topics=False)
        else:
            chat = desk.forum(bot)
            telegram.remove_bot(chat["id"], bot.id, by=ALICE)
        connection_id = await desk.connection(acme, bot, chat)
        response = await desk.api.post(
            "/v1/support/desks",
            json={"bot_id": bot.id, "connection_id": connection_id},
            headers=acme.admin,
        )
        answers.append((response.status_code, response.json()))

    kicked_chat = answers[3][1]["detail"].split()[5]
    assert answers == [
        (409, problem(409, "NotAForum", "group Ops has no topics: turn on Topics in its settings")),
        (
            409,
            problem(
                409,
                "BotNotAdministrator",
                "the bot is member in Support: make it an administrator",
            ),
        ),
        (
            409,
            problem(
                409,
                "MissingRight",
                'the bot lacks the administrator right "Manage topics" in Support',
            ),
        ),
        (
            409,
            problem(
                409,
                "GroupNotReady",
                f"Telegram refused to show group {kicked_chat} to the bot: "
                "getChat: Forbidden: bot was kicked from the supergroup chat",
            ),
        ),
    ]
    assert await store_desks(desk, acme.workspace_id) == []


async def test_the_bot_and_connection_must_be_the_workspaces_and_match(desk: Desk) -> None:
    """Another workspace's bot or connection is 404, another bot's connection 422, an
    inactive connection 409."""
    acme = await desk.tenant("Acme")
    rival = await desk.tenant("Rival")
    bot = await desk.bot(acme, "acme_desk_bot")
    other = await desk.bot(acme, "acme_other_bot")
    rival_bot = await desk.bot(rival, "rival_bot")
    rival_connection = await desk.connection(rival, rival_bot, desk.forum(rival_bot))
    others_connection = await desk.connection(acme, other, desk.forum(other))
    removed = await desk.connection(acme, bot, desk.forum(bot), status=ConnectionStatus.BOT_REMOVED)

    async def create(bot_id: int, connection_id: str) -> tuple[int, Any]:
        response = await desk.api.post(
            "/v1/support/desks",
            json={"bot_id": bot_id, "connection_id": connection_id},
            headers=acme.admin,
        )
        return response.status_code, response.json()

    assert await create(rival_bot.id, rival_connection) == (
        404,
        problem(404, "NotFound", f"no bot {rival_bot.id} in this workspace"),
    )
    assert await create(bot.id, rival_connection) == (
        404,
        problem(404, "NotFound", f"no connection {rival_connection}"),
    )
    assert await create(bot.id, others_connection) == (
        422,
        problem(
            422,
            "InvalidInput",
            f"connection {others_connection} is bot {other.id}'s; the desk's bot is {bot.id}",
        ),
    )
    assert await create(bot.id, removed) == (
        409,
        problem(409, "Conflict", f"connection {removed} is bot_removed: bot removed"),
    )


async def test_one_desk_per_bot(desk: Desk) -> None:
    """A second desk for a bot is 409 naming the first; once it is deleted the bot may have one."""
    acme = await desk.tenant("Acme")
    bot = await desk.bot(acme, "acme_desk_bot")
    connection_id = await desk.connection(acme, bot, desk.forum(bot))
    body = {"bot_id": bot.id, "connection_id": connection_id}
    first = (await desk.api.post("/v1/support/desks", json=body, headers=acme.admin)).json()

    again = await desk.api.post("/v1/support/desks", json=body, headers=acme.admin)
    deleted = await desk.api.delete(f"/v1/support/desks/{first['id']}", headers=acme.admin)
    after = await desk.api.post("/v1/support/desks", json=body, headers=acme.admin)

    assert (again.status_code, again.json()) == (
        409,
        problem(409, "DeskExists", f"bot {bot.id} already serves desk {first['id']} (Support)"),
    )
    assert deleted.status_code == 204
    assert after.status_code == 201
    assert [d.id for d in await store_desks(desk, acme.workspace_id)] == [after.json()["id"]]


async def test_the_database_refuses_a_second_live_desk_of_a_bot(desk: Desk) -> None:
    """A second live desk row for a bot is refused by the database itself; deleted rows are not
    counted, so a bot may have any number of those."""
    acme = await desk.tenant("Acme")
    bot = await desk.bot(acme, "acme_desk_bot")
    connection_id = await desk.connection(acme, bot, desk.forum(bot))
    now = desk.clock()
    async with desk.rt.db.transaction() as conn:
        await store.add_desk(conn, desk_row("dsk_old", acme, bot.id, connection_id, deleted_at=now))
        await store.add_desk(conn, desk_row("dsk_live", acme, bot.id, connection_id))
        await store.add_desk(
            conn, desk_row("dsk_older", acme, bot.id, connection_id, deleted_at=now)
        )

    with pytest.raises(IntegrityError):
        async with desk.rt.db.transaction() as conn:
            await store.add_desk(conn, desk_row("dsk_second", acme, bot.id, connection_id))

    assert [d.id for d in await store_desks(desk, acme.workspace_id)] == ["dsk_live"]


@pytest.mark.postgres
async def test_racing_creates_make_one_desk(desk_on_postgres: Desk) -> None:
    """On PostgreSQL a create that found no desk, while a racing create had yet to commit its
    own, is 409 naming the winner's desk: the unique index decides, not the check."""
    desk = desk_on_postgres
    acme = await desk.tenant("Acme")
    bot = await desk.bot(acme, "acme_desk_bot")
    connection_id = await desk.connection(acme, bot, desk.forum(bot))

    async with desk.rt.db.transaction() as racer:
        await store.add_desk(racer, desk_row("dsk_racer", acme, bot.id, connection_id))
        create = asyncio.create_task(
            desk.api.post(
                "/v1/support/desks",
                json={"bot_id": bot.id, "connection_id": connection_id},
                headers=acme.admin,
            )
        )
        await blocked_on_a_lock(desk, create)
    refused = await create

    assert (refused.status_code, refused.json()) == (
        409,
        problem(409, "DeskExists", f"bot {bot.id} already serves desk dsk_racer (Racer)"),
    )
    assert [d.id for d in await store_desks(desk, acme.workspace_id)] == ["dsk_racer"]


async def test_settings_are_validated(desk: Desk) -> None:
    """Unknown assignments, windows out of range and over-long texts are 422 before Telegram."""
    acme = await desk.tenant("Acme")
    base: dict[str, Any] = {"bot_id": 1, "connection_id": "conn_x"}
    bad: list[dict[str, Any]] = [
        {"assignment": "random"},
        {"reopen_window_seconds": -1},
        {"reopen_window_seconds": desks.MAX_REOPEN_WINDOW_SECONDS + 1},
        {"greeting_text": "x" * 4097},
        {"closing_text": ""},
        {"name": ""},
        {"kb_auto_answer_threshold": -0.5},
        {"kb_answer_wait_seconds": 9},
        {"kb_answer_wait_seconds": desks.MAX_KB_ANSWER_WAIT_SECONDS + 1},
        {"colour": "red"},
    ]

    answers = [
        await desk.api.post("/v1/support/desks", json={**base, **b}, headers=acme.admin)
        for b in bad
    ]

    assert [(a.status_code, a.json()["title"]) for a in answers] == [(422, "InvalidRequest")] * len(
        bad
    )
    assert [a.json()["errors"][0]["loc"][-1] for a in answers] == [
        "assignment",
        "reopen_window_seconds",
        "reopen_window_seconds",
        "greeting_text",
        "closing_text",
        "name",
        "kb_auto_answer_threshold",
        "kb_answer_wait_seconds",
        "kb_answer_wait_seconds",
        "colour",
    ]


async def test_patch_changes_settings_and_checks_a_new_connection(desk: Desk) -> None:
    """PATCH changes what it names (an empty one nothing, unaudited); a new connection is
    checked with Telegram again."""
    acme = await desk.tenant("Acme")
    bot = await desk.bot(acme, "acme_desk_bot")
    connection_id = await desk.connection(acme, bot, desk.forum(bot))
    desk_id = (
        await desk.api.post(
            "/v1/support/desks",
            json={"bot_id": bot.id, "connection_id": connection_id},
            headers=acme.admin,
        )
    ).json()["id"]
    plain = desk.telegram.emulator.create_chat("supergroup", "Ops")
    desk.telegram.emulator.add_bot(plain["id"], bot.id, ALICE, status="administrator")
    not_forum = await desk.connection(acme, bot, plain)
    new_forum = await desk.connection(acme, bot, desk.forum(bot, "Support 2"))
    desk.clock.advance(60)

    empty = await desk.api.patch(f"/v1/support/desks/{desk_id}", json={}, headers=acme.admin)
    changed = await desk.api.patch(
        f"/v1/support/desks/{desk_id}",
        json={"assignment": "manual", "greeting_text": None, "reopen_window_seconds": 3600},
        headers=acme.admin,
    )
    refused = await desk.api.patch(
        f"/v1/support/desks/{desk_id}", json={"connection_id": not_forum}, headers=acme.admin
    )
    null_name = await desk.api.patch(
        f"/v1/support/desks/{desk_id}", json={"name": None}, headers=acme.admin
    )
    moved = await desk.api.patch(
        f"/v1/support/desks/{desk_id}", json={"connection_id": new_forum}, headers=acme.admin
    )

    later = "2026-01-05T09:01:00Z"
    assert (empty.status_code, empty.json()) == (200, desk_view(desk_id, bot.id, connection_id))
    assert (changed.status_code, changed.json()) == (
        200,
        desk_view(
            desk_id,
            bot.id,
            connection_id,
            assignment="manual",
            greeting_text=None,
            reopen_window_seconds=3600,
            updated_at=later,
        ),
    )
    assert (refused.status_code, refused.json()["title"]) == (409, "NotAForum")
    assert (null_name.status_code, null_name.json()) == (
        422,
        problem(422, "InvalidInput", "name cannot be null; only the texts and the threshold can"),
    )
    assert (moved.status_code, moved.json()) == (
        200,
        desk_view(
            desk_id,
            bot.id,
            new_forum,
            assignment="manual",
            greeting_text=None,
            reopen_window_seconds=3600,
            updated_at=later,
        ),
    )
    assert [action for action, _ in await desk.audit(acme.workspace_id)] == [
        "desk.created",
        "desk.updated",
        "desk.updated",
    ]


async def test_delete_is_soft_and_stops_the_bot_serving(desk: Desk) -> None:
    """DELETE hides the desk (404 after) and frees its bot; the row stays for its tickets."""
    acme = await desk.tenant("Acme")
    bot = await desk.bot(acme, "acme_desk_bot")
    connection_id = await desk.connection(acme, bot, desk.forum(bot))
    desk_id = (
        await desk.api.post(
            "/v1/support/desks",
            json={"bot_id": bot.id, "connection_id": connection_id},
            headers=acme.admin,
        )
    ).json()["id"]

    deleted = await desk.api.delete(f"/v1/support/desks/{desk_id}", headers=acme.admin)
    gone = await desk.api.get(f"/v1/support/desks/{desk_id}", headers=acme.admin)
    again = await desk.api.delete(f"/v1/support/desks/{desk_id}", headers=acme.admin)

    assert deleted.status_code == 204
    assert (gone.status_code, gone.json()) == (404, problem(404, "NotFound", f"no desk {desk_id}"))
    assert again.status_code == 404
    async with desk.rt.db.engine.connect() as conn:
        assert await store.desk_of_bot(conn, bot.id) is None
        assert await store.list_desks(conn, acme.workspace_id) == []
    assert (await desk.audit(acme.workspace_id))[-1] == ("desk.deleted", {"desk_id": desk_id})


async def test_reads_need_a_key_writes_an_admin_key_and_workspaces_are_apart(desk: Desk) -> None:
    """A read key reads but cannot write; another workspace's desk is 404 to read and write."""
    acme = await desk.tenant("Acme")
    rival = await desk.tenant("Rival")
    bot = await desk.bot(acme, "acme_desk_bot")
    connection_id = await desk.connection(acme, bot, desk.forum(bot))
    body = {"bot_id": bot.id, "connection_id": connection_id}
    refused = await desk.api.post("/v1/support/desks", json=body, headers=acme.reader)
    desk_id = (await desk.api.post("/v1/support/desks", json=body, headers=acme.admin)).json()["id"]

    anonymous = await desk.api.get("/v1/support/desks")
    rival_get = await desk.api.get(f"/v1/support/desks/{desk_id}", headers=rival.admin)
    rival_patch = await desk.api.patch(
        f"/v1/support/desks/{desk_id}", json={"name": "Mine"}, headers=rival.admin
    )
    rival_delete = await desk.api.delete(f"/v1/support/desks/{desk_id}", headers=rival.admin)
    rival_list = await desk.api.get("/v1/support/desks", headers=rival.admin)

    assert (refused.status_code, refused.json()["title"]) == (403, "Forbidden")
    assert anonymous.status_code == 401
    assert [rival_get.status_code, rival_patch.status_code, rival_delete.status_code] == [404] * 3
    assert rival_list.json() == []
    assert [d.name for d in await store_desks(desk, acme.workspace_id)] == ["Support"]


async def store_desks(desk: Desk, workspace_id: str) -> list[Any]:
    async with desk.rt.db.engine.connect() as conn:
        return await store.list_desks(conn, workspace_id)


def desk_row(
    desk_id: str, tenant: Tenant, bot_id: int, connection_id: str, **values: Any
) -> dict[str, Any]:
    """A desk row as create_desk writes it, named after its id's tail."""
    return {
        "id": desk_id,
        "workspace_id": tenant.workspace_id,
        "bot_id": bot_id,
        "connection_id": connection_id,
        "name": desk_id.removeprefix("dsk_").capitalize(),
        "assignment": "claim_on_reply",
        "reopen_window_seconds": DEFAULT_REOPEN_WINDOW_SECONDS,
        "greeting_text": None,
        "closing_text": None,
        "created_at": START,
        "updated_at": START,
        **values,
    }


async def blocked_on_a_lock(desk: Desk, task: asyncio.Task[Any]) -> None:
    """Wait (10 s at most) until a PostgreSQL session of this database waits for a lock."""
    deadline = asyncio.get_running_loop().time() + 10
    while asyncio.get_running_loop().time() < deadline:
        assert not task.done(), f"the create did not wait for the racing insert: {task.result()}"
        async with desk.rt.db.engine.connect() as conn:
            waiting = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no session waited for a lock within 10 s")


async def test_patch_turns_auto_answers_on_and_off(desk: Desk) -> None:
    """The threshold is set, then turned off with null; the wait cannot be null."""
    acme = await desk.tenant("Acme")
    bot = await desk.bot(acme, "acme_desk_bot")
    connection_id = await desk.connection(acme, bot, desk.forum(bot))
    desk_id = (
        await desk.api.post(
            "/v1/support/desks",
            json={"bot_id": bot.id, "connection_id": connection_id},
            headers=acme.admin,
        )
    ).json()["id"]
    url = f"/v1/support/desks/{desk_id}"

    on = await desk.api.patch(
        url,
        json={"kb_auto_answer_threshold": 1.5, "kb_answer_wait_seconds": 30},
        headers=acme.admin,
    )
    off = await desk.api.patch(url, json={"kb_auto_answer_threshold": None}, headers=acme.admin)
    null_wait = await desk.api.patch(url, json={"kb_answer_wait_seconds": None}, headers=acme.admin)

    assert (on.status_code, on.json()) == (
        200,
        desk_view(
            desk_id, bot.id, connection_id, kb_auto_answer_threshold=1.5, kb_answer_wait_seconds=30
        ),
    )
    assert (off.status_code, off.json()) == (
        200,
        desk_view(desk_id, bot.id, connection_id, kb_answer_wait_seconds=30),
    )
    assert (null_wait.status_code, null_wait.json()) == (
        422,
        problem(
            422,
            "InvalidInput",
            "kb_answer_wait_seconds cannot be null; only the texts and the threshold can",
        ),
    )
