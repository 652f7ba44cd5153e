"""The support desk's setup pages over plain HTTP: desks, agents and snippets, each form's
refusal shown on the form, and each page scoped to the signed-in workspace."""

from __future__ import annotations

import html
import re

from tests.e2e.harness import Tgrelay
from tgrelay.support import desks
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.workspaces import service as workspaces

from .harness import browser, table_rows
from .support_scene import desk_bot, forum_connection

ALERT = re.compile(r'<p class="flash (?:error|notice)" role="(?:alert|status)">(.*?)</p>')
SHOWN_TIME = re.compile(r"just now|\d+ (s|min|h) ago|\d+ days? ago")


def flash(page: str) -> list[str]:
    """The error and notice lines at the top of a page, unescaped."""
    return [html.unescape(line) for line in ALERT.findall(page)]


def timeless(rows: list[list[str]]) -> list[list[str]]:
    return [[SHOWN_TIME.sub("<time>", cell) for cell in row] for row in rows]


async def test_desks_page_creates_edits_and_deletes_a_desk(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """The create form makes a desk of a bot and its forum; a forum where the bot lacks
    Manage topics is refused on the form; settings save; delete empties the list."""
    bot = await desk_bot(relay, emulator, "help_bot")
    lacking = await desk_bot(relay, emulator, "lacking_bot")
    forum = await forum_connection(relay, emulator, bot, "Help desk")
    no_topics = await forum_connection(relay, emulator, lacking, "Sales", can_manage_topics=False)
    async with browser(relay, relay.api_key) as client:
        empty = await client.get("/ui/desks")
        refused = await client.post(
            "/ui/desks", data={"bot_id": str(lacking.id), "connection_id": no_topics}
        )
        created = await client.post(
            "/ui/desks",
            data={"bot_id": str(bot.id), "connection_id": forum, "assignment": "round_robin"},
            follow_redirects=True,
        )
        desk_path = str(created.url.path)
        saved = await client.post(
            desk_path,
            data={
                "name": "Help",
                "connection_id": forum,
                "assignment": "manual",
                "reopen_window_seconds": "3600",
                "greeting_text": "",
                "closing_text": "Bye!",
            },
            follow_redirects=True,
        )
        bad_window = await client.post(
            desk_path,
            data={
                "name": "Help",
                "connection_id": forum,
                "assignment": "manual",
                "reopen_window_seconds": "-5",
            },
        )
        listed = await client.get("/ui/desks")
        deleted = await client.post(f"{desk_path}/delete", follow_redirects=True)

    assert await desks.list_desks(relay.runtime, relay.workspace_id) == []
    assert table_rows(empty.text) == [["No desks yet."]]
    assert (refused.status_code, flash(refused.text)) == (
        409,
        ['No desk created: the bot lacks the administrator right "Manage topics" in Sales'],
    )
    assert flash(created.text) == ["Desk created."]
    assert "<dt>Assignment</dt><dd>round robin</dd>" in created.text
    assert flash(saved.text) == ["Settings saved."]
    assert '<textarea id="greeting_text" name="greeting_text" maxlength="4096"></textarea>' in (
        saved.text
    )
    assert (bad_window.status_code, flash(bad_window.text)) == (
        422,
        ["Not saved: reopen_window_seconds must be 0 to 31536000 (365 days)"],
    )
    assert timeless(table_rows(listed.text)) == [
        ["Help", "@help_bot", "Help desk", "manual", "1 hour", "<time>"]
    ]
    assert (str(deleted.url.path), flash(deleted.text)) == ("/ui/desks", ["Desk deleted."])
    assert table_rows(deleted.text) == [["No desks yet."]]


async def test_agents_page_adds_and_edits_an_agent(relay: Tgrelay) -> None:
    """The form adds an agent, Edit fills it in again, saving replaces; a bad capacity is
    refused on the form with what was typed."""
    async with browser(relay, relay.api_key) as client:
        empty = await client.get("/ui/agents")
        added = await client.post(
            "/ui/agents",
            data={"telegram_user_id": "5002", "name": "Bob", "active": "on"},
            follow_redirects=True,
        )
        editing = await client.get("/ui/agents?edit=5002")
        replaced = await client.post(
            "/ui/agents",
            data={
                "telegram_user_id": "5002",
                "name": "Bob B.",
                "external_id": "E-7",
                "capacity": "3",
            },
            follow_redirects=True,
        )
        refused = await client.post(
            "/ui/agents",
            data={"telegram_user_id": "5003", "name": "Cy", "capacity": "0", "active": "on"},
        )

    assert table_rows(empty.text) == [["No agents yet."]]
    assert flash(added.text) == ["Agent 5002 saved."]
    assert timeless(table_rows(added.text)) == [
        ["Bob", "5002", "—", "no limit", "active", "—", "Edit"]
    ]
    assert 'value="Bob"' in editing.text
    assert "Edit agent" in editing.text
    assert timeless(table_rows(replaced.text)) == [
        ["Bob B.", "5002", "E-7", "3", "inactive", "—", "Edit"]
    ]
    assert (refused.status_code, flash(refused.text)) == (
        422,
        ["Not saved: capacity must be at least 1, or null for no limit"],
    )
    assert 'value="Cy"' in refused.text


async def test_snippets_page_shows_the_save_time_error_on_the_form(relay: Tgrelay) -> None:
    """An unknown variable is refused on the form, the text kept; a valid snippet is saved,
    edited on its page and deleted."""
    async with browser(relay, relay.api_key) as client:
        refused = await client.post(
            "/ui/snippets", data={"name": "hello", "text": "Hi {{ customer.email }}"}
        )
        created = await client.post(
            "/ui/snippets",
            data={"name": "hello", "text": "Hi {{ customer.first_name }}"},
            follow_redirects=True,
        )
        snippet_path = str(created.url.path)
        bad_edit = await client.post(snippet_path, data={"name": "hello", "text": "{% if %}"})
        edited = await client.post(
            snippet_path,
            data={"name": "hi", "text": "Hello {{ customer.name }}"},
            follow_redirects=True,
        )
        listed = await client.get("/ui/snippets")
        deleted = await client.post(f"{snippet_path}/delete", follow_redirects=True)

    assert refused.status_code == 422
    assert flash(refused.text)[0].startswith(
        "Not saved: unknown variable: customer.email; known: customer.id, customer.first_name"
    )
    assert "Hi {{ customer.email }}</textarea>" in html.unescape(refused.text)
    assert flash(created.text) == ["Snippet saved."]
    assert (bad_edit.status_code, flash(bad_edit.text)) == (
        422,
        ["Not saved: syntax error on line 1: Expected an expression, got 'end of statement block'"],
    )
    assert flash(edited.text) == ["Snippet saved."]
    assert timeless(table_rows(listed.text)) == [["hi", "Hello {{ customer.name }}", "<time>"]]
    assert (str(deleted.url.path), flash(deleted.text)) == ("/ui/snippets", ["Snippet hi deleted."])
    assert table_rows(deleted.text) == [["No snippets yet."]]


async def test_another_workspaces_desk_and_snippet_are_not_found(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """A desk or snippet of another workspace is a 404 page and is not changed by its forms."""
    bot = await desk_bot(relay, emulator, "help_bot")
    forum = await forum_connection(relay, emulator, bot, "Help desk")
    async with browser(relay, relay.api_key) as client:
        made = await client.post("/ui/desks", data={"bot_id": str(bot.id), "connection_id": forum})
        snippet = await client.post("/ui/snippets", data={"name": "hello", "text": "Hi"})
    desk_path, snippet_path = (
        made.headers["location"].split("?")[0],
        snippet.headers["location"].split("?")[0],
    )
    _, other_key = await workspaces.create_workspace(
        relay.runtime.db, "Other", now=relay.runtime.clock()
    )
    async with browser(relay, other_key) as other:
        pages = [await other.get(desk_path), await other.get(snippet_path)]
        writes = [
            await other.post(f"{desk_path}/delete"),
            await other.post(f"{snippet_path}/delete"),
        ]

    assert [p.status_code for p in pages] == [404, 404]
    assert [w.status_code for w in writes] == [404, 404]
    assert [d.name for d in await desks.list_desks(relay.runtime, relay.workspace_id)] == [
        "Help desk"
    ]
