"""The operators' pages over plain HTTP: bots and their remedies, a bot's updates, a
connection's alerts, the audit trail; each scoped to the signed-in workspace."""

from __future__ import annotations

import html
import re

from tests.e2e.harness import Tgrelay, eventually
from tgrelay.crypto import token_fingerprint
from tgrelay.groups import service as groups
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.workspaces import service as workspaces

from .harness import ANN, Telegram, browser, table_rows
from .test_pages import link_group

ALERT = re.compile(r'<p class="flash (?:error|notice)" role="(?:alert|status)">(.*?)</p>')
SHOWN_TIME = re.compile(r"just now|\d+ (s|min|h) ago|\d+ days? ago")
ACTIONS = "Updates Check health Disconnect Rotate token Rotate"


def flash(page: str) -> list[str]:
    """The error and notice lines at the top of a page, unescaped."""
    return [html.unescape(line) for line in ALERT.findall(page)]


def timeless(rows: list[list[str]]) -> list[list[str]]:
    """Table rows with each relative time written as <time>: they move on between loads."""
    return [[SHOWN_TIME.sub("<time>", cell) for cell in row] for row in rows]


async def test_bots_page_connects_and_leads_each_fault_to_its_remedy(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """A token connects a bot; a revoked token is found by the health check and cured by rotating it, a foreign webhook by reconnecting; disconnecting leaves only Updates and Reconnect; a refused token says why."""
    telegram = emulator.emulator
    bot = telegram.create_bot("ops_bot")
    who = f"@ops_bot ops · {bot.id} · webhook"
    async with browser(relay, relay.api_key) as client:
        empty = await client.get("/ui/bots")
        refused = await client.post("/ui/bots", data={"token": "123:nope"})
        connected = await client.post("/ui/bots", data={"token": bot.token}, follow_redirects=True)
        telegram.revoke(bot.id)
        revoked = await client.post(f"/ui/bots/{bot.id}/check", follow_redirects=True)
        new_token = telegram.rotate_token(bot.id)
        rotated = await client.post(
            f"/ui/bots/{bot.id}/rotate", data={"token": new_token}, follow_redirects=True
        )
        telegram.set_webhook_as_foreign(bot.id, "https://other.example/hook")
        foreign = await client.post(f"/ui/bots/{bot.id}/check", follow_redirects=True)
        reconnected = await client.post(f"/ui/bots/{bot.id}/reconnect", follow_redirects=True)
        gone = await client.post(f"/ui/bots/{bot.id}/disconnect", follow_redirects=True)

    old, new = token_fingerprint(bot.token), token_fingerprint(new_token)
    assert "No bots yet: connect one with its token below." in empty.text
    assert (refused.status_code, flash(refused.text)) == (
        422,
        [
            "No bot connected: Telegram refused this token: it is invalid or was revoked in @BotFather"
        ],
    )
    assert 'value="123:nope"' not in refused.text
    assert [
        flash(page.text) for page in (connected, revoked, rotated, foreign, reconnected, gone)
    ] == [
        ["@ops_bot: connected, now healthy"],
        ["@ops_bot: health checked, now token revoked"],
        ["@ops_bot: token rotated, now healthy"],
        ["@ops_bot: health checked, now webhook conflict"],
        ["@ops_bot: reconnected, now healthy"],
        ["@ops_bot: disconnected, now disconnected"],
    ]
    assert [timeless(table_rows(page.text)) for page in (connected, revoked, foreign, gone)] == [
        [[who, "healthy", "—", "—", old, ACTIONS]],
        [
            [
                who,
                "token revoked Rotate the token: send /token to @BotFather and paste the new one here.",
                "—",
                "<time>",
                old,
                ACTIONS,
            ]
        ],
        [
            [
                who,
                "webhook conflict (foreign webhook) Reconnect: another service took the bot over; "
                "reconnecting takes it back.",
                "—",
                "<time>",
                new,
                "Updates Check health Reconnect Disconnect Rotate token Rotate",
            ]
        ],
        [
            [
                who,
                "disconnected Reconnect to receive its updates again.",
                "—",
                "<time>",
                new,
                "Updates Reconnect",
            ]
        ],
    ]
    assert telegram.webhook_info(bot.id)["url"] == ""


async def test_another_workspaces_bot_is_not_found_on_the_bots_pages(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """Every button and the updates page answer 404 for a bot of another workspace and change nothing."""
    rt = relay.runtime
    _, other_key = await workspaces.create_workspace(rt.db, "other team", now=rt.clock())
    theirs = emulator.emulator.create_bot("their_bot")
    async with browser(relay, other_key) as other:
        await other.post("/ui/bots", data={"token": theirs.token})
    async with browser(relay, relay.api_key) as client:
        listed = await client.get("/ui/bots")
        answers = [
            await client.post(f"/ui/bots/{theirs.id}/{action}", data={"token": theirs.token})
            for action in ("check", "rotate", "reconnect", "disconnect")
        ]
        updates = await client.get(f"/ui/bots/{theirs.id}/updates")
    assert table_rows(listed.text) == []
    assert [(a.status_code, flash(a.text)) for a in answers] == [
        (404, ["Not checked: no bot " + f"{theirs.id} in this workspace"]),
        (404, [f"Token not rotated: no bot {theirs.id} in this workspace"]),
        (404, [f"Not reconnected: no bot {theirs.id} in this workspace"]),
        (404, [f"Not disconnected: no bot {theirs.id} in this workspace"]),
    ]
    assert (updates.status_code, flash(updates.text)) == (
        404,
        [f"no bot {theirs.id} in this workspace"],
    )


async def test_updates_page_lists_newest_first_and_retries_dead_ones(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """A bot's updates are listed newest first with a dead one's error and Retry button; the Dead tab filters; Retry queues it again and a processed update is refused."""
    telegram = emulator.emulator
    bot = telegram.create_bot("relay_bot")
    await relay.connect_bot(bot.token)
    broken = telegram.inject_update(bot.id, {"message": {"text": "no chat, no date"}})
    good = telegram.send_message(bot.id, ANN, None, "fine")

    async def settled() -> bool:
        return [u["status"] for u in await relay.updates(bot.id)] == ["dead", "processed"]

    await eventually(settled)
    path = f"/ui/bots/{bot.id}/updates"
    async with browser(relay, relay.api_key) as client:
        listed = await client.get(path)
        dead = await client.get(path, params={"status": "dead"})
        retried = await client.post(f"{path}/{broken['update_id']}/retry", follow_redirects=True)
        refused = await client.post(f"{path}/{good['update_id']}/retry")

    error = "tgrelay.queue.retry.PermanentFailure: not a valid Telegram Update: 3 errors"
    assert timeless(table_rows(listed.text)) == [
        [
            str(good["update_id"]),
            "message",
            str(ANN["id"]),
            "<time> by webhook",
            "processed",
            "—",
            "",
        ],
        [str(broken["update_id"]), "message", "—", "<time> by webhook", "dead", error, "Retry"],
    ]
    assert timeless(table_rows(dead.text)) == timeless(table_rows(listed.text))[1:]
    assert (retried.url.path, flash(retried.text)) == (
        path,
        [f"Update {broken['update_id']} queued to be processed again"],
    )
    assert (refused.status_code, flash(refused.text)) == (
        409,
        [f"Not retried: update {good['update_id']} is processed, only dead ones re-run"],
    )


async def test_alerts_page_sends_and_follows_a_connections_alerts(
    relay: Tgrelay, telegram: Telegram
) -> None:
    """The alerts page sends an alert through its form, lists it newest first, and its status route reports it sent; a blank alert and another workspace's connection are refused."""
    bot = await telegram.new_bot("alerts_bot")
    await relay.connect_bot(bot["token"])
    async with browser(relay, relay.api_key) as client:
        await link_group(relay, telegram, client, bot["id"], "Ops room")
        [connection] = await groups.list_connections(relay.runtime, relay.workspace_id)
        path = f"/ui/connections/{connection.id}/notifications"
        empty = await client.get(path)
        first = await client.post(path, data={"text": "Deploy started"}, follow_redirects=True)
        second = await client.post(path, data={"text": "Deploy finished"}, follow_redirects=True)
        blank = await client.post(path, data={"text": "  "})

        async def all_sent() -> bool:
            found = (await client.get(f"{path}/status")).json()["notifications"]
            return [n["status"] for n in found] == ["sent", "sent"]

        await eventually(all_sent)
        status = (await client.get(f"{path}/status")).json()["notifications"]
        listed = await client.get(path)
        missing = await client.get("/ui/connections/conn_nope/notifications")

    [sent_id] = second.url.params.get_list("sent")
    assert "No alerts sent to this group yet." in empty.text
    assert flash(first.text) == [f"Alert {first.url.params['sent']} queued"]
    assert flash(second.text) == [f"Alert {sent_id} queued"]
    assert [n["id"] for n in status] == [sent_id, first.url.params["sent"]]
    assert [(n["status"], n["words"], n["tone"], n["error"]) for n in status] == [
        ("sent", "sent", "good", None)
    ] * 2
    assert timeless(table_rows(listed.text)) == [
        ["<time>", "Deploy finished", "sent", "<time>"],
        ["<time>", "Deploy started", "sent", "<time>"],
    ]
    assert (blank.status_code, flash(blank.text)) == (422, ["No alert sent: the alert has no text"])
    assert missing.status_code == 404


async def test_audit_page_filters_by_action_bot_and_time(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """The audit page lists the workspace's rows newest first, and its filters narrow them by action, bot and a time; a malformed time is refused with the reason."""
    telegram = emulator.emulator
    first = telegram.create_bot("first_bot")
    second = telegram.create_bot("second_bot")
    await relay.connect_bot(first.token)
    await relay.connect_bot(second.token)
    actor = (await workspaces.authenticate(relay.runtime.db, relay.api_key)).actor
    async with browser(relay, relay.api_key) as client:
        everything = await client.get("/ui/audit")
        by_action = await client.get("/ui/audit", params={"action": "bot.connected"})
        by_bot = await client.get("/ui/audit", params={"bot": str(first.id)})
        until = await client.get("/ui/audit", params={"until": "2000-01-01T00:00"})
        bad = await client.get("/ui/audit", params={"until": "soon"})

    def connected(username: str, bot_id: int) -> list[str]:
        return [
            "<time>",
            "bot.connected",
            actor,
            f"@{username}",
            "1",
            f'{{"mode": "webhook", "secret_generation": 1, "token_fingerprint": '
            f'"{token_fingerprint((first if bot_id == first.id else second).token)}", '
            f'"username": "{username}"}}',
        ]

    def became_healthy(username: str) -> list[str]:
        return [
            "<time>",
            "bot.status_changed",
            actor,
            f"@{username}",
            "1",
            '{"conflict_kind": null, "new": "healthy", "old": null, '
            '"old_conflict_kind": null, "reason": "connected"}',
        ]

    assert timeless(table_rows(everything.text)) == [
        became_healthy("second_bot"),
        connected("second_bot", second.id),
        became_healthy("first_bot"),
        connected("first_bot", first.id),
    ]
    assert timeless(table_rows(by_action.text)) == [
        connected("second_bot", second.id),
        connected("first_bot", first.id),
    ]
    assert timeless(table_rows(by_bot.text)) == [
        became_healthy("first_bot"),
        connected("first_bot", first.id),
    ]
    assert "No audit rows match these filters." in until.text
    assert (bad.status_code, flash(bad.text)) == (
        422,
        ["before must be a row id or an ISO 8601 time like 2026-01-31T09:00, not 'soon'"],
    )
