"""The tickets pages over plain HTTP: the list's filters and paging, one ticket's facts,
conversation and history, its forms with their refusals, read-only sessions and isolation."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import Tgrelay, eventually
from tgrelay.support import agents, sla_api
from tgrelay.support import service as support
from tgrelay.support.models import Direction, RelayStatus, TicketStatus
from tgrelay.support.sla_policy import PolicySpec
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.workspaces import keys
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import KeyScope, Principal

from .harness import browser, table_rows
from .test_support_pages import flash, timeless
from .ticket_scene import ADA, BEN, CY, customer_writes, make_desk, quick_relay, relayed

OLDER = re.compile(r'<a href="([^"]*)" id="older">')
# A form's own error line: no </form> between the form's start and the line.
FORM_ERROR = re.compile(
    r'<form [^>]*id="([a-z-]+)"[^>]*>(?:(?!</form>).)*?'
    r'<p class="flash error" role="alert">(.*?)</p>',
    re.S,
)
MESSAGE = re.compile(
    r'data-direction="(\w+)">\s*<p class="meta"><strong>(.*?)</strong>.*?'
    r'<p class="text">(.*?)</p>',
    re.S,
)


@pytest.fixture
async def relay(emulator: RunningEmulator, tmp_path: Path) -> AsyncIterator[Tgrelay]:
    async with quick_relay(emulator, tmp_path) as found:
        yield found


def older_link(page: str) -> str | None:
    found = OLDER.search(page)
    return None if found is None else html.unescape(found.group(1))


def form_errors(page: str) -> dict[str, str]:
    """Each form's error line, by the form's id."""
    return {form: html.unescape(text) for form, text in FORM_ERROR.findall(page)}


def conversation(page: str) -> list[tuple[str, str, str]]:
    """(direction, speaker, text) of each message on a ticket page, in order."""
    return [(d, html.unescape(s), html.unescape(t)) for d, s, t in MESSAGE.findall(page)]


async def edited(relay: Tgrelay, ticket_id: str) -> bool:
    """Whether the ticket's first message has an earlier text (the edit reached the relay)."""
    found = await support.list_messages(relay.runtime, relay.workspace_id, ticket_id)
    return bool(found and found[0].versions)


def numbers(page: str) -> list[str]:
    return [row[0] for row in table_rows(page)]


async def test_the_list_filters_by_status_assignee_and_desk_and_pages_with_them(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """Each filter narrows the list (unassigned included); the older-page link keeps the
    filters and the page size; a bad filter is said on the page, not a raw error."""
    help_desk = await make_desk(relay, emulator, "help_bot", "Help forum", "Help")
    sales = await make_desk(relay, emulator, "sales_bot", "Sales forum", "Sales")
    first = await customer_writes(relay, emulator, help_desk, ADA, "my order never arrived")
    second = await customer_writes(relay, emulator, help_desk, BEN, "wrong size")
    await customer_writes(relay, emulator, sales, CY, "a quote for 40 seats?")
    principal = await workspaces.authenticate(relay.runtime.db, relay.api_key)
    await agents.put_agent(
        relay.runtime, principal, 5002, name="Bob", external_id=None, capacity=None, active=True
    )
    await support.change_ticket(relay.runtime, principal, second.id, assignee_id=5002)
    await support.change_ticket(relay.runtime, principal, first.id, status=TicketStatus.RESOLVED)

    async with browser(relay, relay.api_key) as client:
        everything = await client.get("/ui/tickets")
        resolved = await client.get("/ui/tickets?status=resolved")
        bobs = await client.get("/ui/tickets?assignee=5002")
        nobodys = await client.get("/ui/tickets?assignee=unassigned")
        sales_only = await client.get(f"/ui/tickets?desk={sales.id}")
        none_match = await client.get(f"/ui/tickets?desk={sales.id}&status=closed")
        paged = await client.get(f"/ui/tickets?desk={help_desk.id}&limit=1")
        link = older_link(paged.text)
        assert link is not None
        second_page = await client.get(link)
        bad = await client.get("/ui/tickets?status=done&assignee=bob")
        bad_page = await client.get("/ui/tickets?before=two")

    assert timeless(table_rows(everything.text)) == [
        ["#3", "a quote for 40 seats?", "Cy @cy", "new", "—", "Sales", "<time>", "—"],
        ["#2", "wrong size", "Ben", "new", "Bob", "Help", "<time>", "—"],
        [
            "#1",
            "my order never arrived",
            "Ada Lovelace @ada",
            "resolved",
            "—",
            "Help",
            "<time>",
            "—",
        ],
    ]
    assert older_link(everything.text) is None
    assert numbers(resolved.text) == ["#1"]
    assert numbers(bobs.text) == ["#2"]
    assert numbers(nobodys.text) == ["#3", "#1"]
    assert numbers(sales_only.text) == ["#3"]
    assert table_rows(none_match.text) == []
    assert "No tickets match these filters." in none_match.text
    assert numbers(paged.text) == ["#2"]
    assert link == f"/ui/tickets?desk={help_desk.id}&limit=1&before=2"
    assert numbers(second_page.text) == ["#1"]
    assert older_link(second_page.text) is None
    assert (bad.status_code, flash(bad.text)) == (
        422,
        ["Not filtered: unknown status 'done': one of new, open, pending, resolved, closed"],
    )
    assert (bad_page.status_code, flash(bad_page.text)) == (
        422,
        ["Not filtered: before is a ticket number, not 'two'"],
    )
    assert '<option value="unassigned" selected>' in nobodys.text


async def test_a_ticket_page_shows_facts_conversation_versions_and_history(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """An edited customer message lists its earlier text; the form's answer and note appear
    as agent and note messages (one each, however often the form is sent); the history says
    who moved and assigned the ticket."""
    desk = await make_desk(relay, emulator, "help_bot", "Help forum", "Help")
    written = emulator.emulator.send_message(desk.bot.id, ADA, None, "my order never arived")
    ticket = await customer_writes(relay, emulator, desk, ADA, "order #1042")
    emulator.emulator.edit_message(
        desk.bot.id, ADA, ADA["id"], written["message"]["message_id"], "my order never arrived"
    )
    principal = await workspaces.authenticate(relay.runtime.db, relay.api_key)
    await agents.put_agent(
        relay.runtime, principal, 5002, name="Bob", external_id=None, capacity=None, active=True
    )
    path = f"/ui/tickets/{ticket.id}"
    async with browser(relay, relay.api_key) as client:
        answer = {"text": "We are on it.", "kind": "answer", "idempotency_key": "ui-once"}
        answered = await client.post(f"{path}/messages", data=answer, follow_redirects=True)
        again = await client.post(f"{path}/messages", data=answer)
        noted = await client.post(
            f"{path}/messages",
            data={"text": "Check the warehouse", "kind": "note"},
            follow_redirects=True,
        )
        assigned = await client.post(
            f"{path}/assignee", data={"assignee": "5002"}, follow_redirects=True
        )
        await relayed(relay, ticket.id, 4)
        await eventually(lambda: edited(relay, ticket.id))
        versions = await support.list_messages(relay.runtime, relay.workspace_id, ticket.id)
        page = await client.get(path)

    assert (answered.status_code, flash(answered.text)) == (
        200,
        ["Answer queued for the customer (and shown in the topic)."],
    )
    assert again.status_code == 303
    assert flash(noted.text) == [
        "Internal note added (shown in the topic, never sent to the customer)."
    ]
    assert flash(assigned.text) == ["Assignee changed."]
    assert conversation(page.text) == [
        ("customer", "Customer", "my order never arrived"),
        ("customer", "Customer", "order #1042"),
        ("agent", "Agent · API", "We are on it."),
        ("note", "Note · API", "Check the warehouse"),
    ]
    assert "1 earlier text</summary>" in page.text
    assert "my order never arived" in page.text
    facts = re.search(r'<dl id="ticket-facts">(.*?)</dl>', page.text, re.S)
    assert facts is not None
    shown = " ".join(re.sub(r"<[^>]+>", " ", html.unescape(facts.group(1))).split())
    assert re.fullmatch(
        r"Status open Assignee Bob Customer Ada Lovelace @ada · language en · Telegram id 7001 "
        r"Desk Help Created (just now|\d+ s ago) First response (just now|\d+ s ago) "
        r"Resolved — Closed — Resolution note —",
        shown,
    ), shown
    assert timeless(table_rows(page.text)) == [
        ["<time>", "status", "—", "new", "customer"],
        ["<time>", "status", "new", "open", "api"],
        ["<time>", "assignee", "nobody", "Bob", "api"],
    ]
    assert [m.direction for m in versions] == [
        Direction.CUSTOMER,
        Direction.CUSTOMER,
        Direction.AGENT,
        Direction.NOTE,
    ]


async def test_refusals_show_on_their_forms_and_a_failed_relay_says_why(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """A move the state machine refuses, an unknown agent and an empty answer are each said
    on their own form; an answer to a customer who blocked the bot shows as failed, with
    Telegram's reason."""
    desk = await make_desk(relay, emulator, "help_bot", "Help forum", "Help")
    ticket = await customer_writes(relay, emulator, desk, ADA, "my order never arrived")
    path = f"/ui/tickets/{ticket.id}"
    async with browser(relay, relay.api_key) as client:
        resolved = await client.post(
            f"{path}/status", data={"status": "resolved"}, follow_redirects=True
        )
        same = await client.post(
            f"{path}/status", data={"status": "resolved"}, follow_redirects=True
        )
        refused = await client.post(f"{path}/status", data={"status": "pending"})
        unknown = await client.post(f"{path}/assignee", data={"assignee": "999"})
        empty = await client.post(f"{path}/messages", data={"text": "  ", "kind": "answer"})
        emulator.emulator.block_bot(ADA["id"], desk.bot.id)
        await client.post(f"{path}/messages", data={"text": "Still there?", "kind": "answer"})
        await relayed(relay, ticket.id, 2)
        page = await client.get(path)

    assert flash(resolved.text) == ["Status changed."]
    assert flash(same.text) == ["Nothing changed: the ticket was like that already."]
    assert (refused.status_code, form_errors(refused.text)) == (
        409,
        {
            "status-form": f"Not done: ticket {ticket.id} cannot become pending: a resolved "
            "ticket must be reopened before it can wait on the customer"
        },
    )
    assert (unknown.status_code, list(form_errors(unknown.text))) == (422, ["assignee-form"])
    assert form_errors(unknown.text)["assignee-form"].startswith("Not done: no agent 999")
    assert (empty.status_code, form_errors(empty.text)) == (
        422,
        {"reply-form": "Not done: write the text first"},
    )
    [_, failed] = await support.list_messages(relay.runtime, relay.workspace_id, ticket.id)
    assert failed.relay_status is RelayStatus.FAILED
    assert failed.relay_error
    assert f"Not relayed: {html.escape(failed.relay_error)}" in page.text
    current = await support.get_ticket(relay.runtime, relay.workspace_id, ticket.id)
    assert current.status is TicketStatus.RESOLVED


async def test_a_read_key_sees_no_forms_and_cannot_post(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """A read-only session reads both pages without the action forms; its posts are refused
    with 403 and change nothing."""
    desk = await make_desk(relay, emulator, "help_bot", "Help forum", "Help")
    ticket = await customer_writes(relay, emulator, desk, ADA, "my order never arrived")
    owner = Principal(workspace_id=relay.workspace_id, actor="test")
    _, read_key = await keys.create(
        relay.runtime.db, owner, name="viewer", scope=KeyScope.READ, now=relay.runtime.clock()
    )
    path = f"/ui/tickets/{ticket.id}"
    async with browser(relay, read_key) as client:
        listed = await client.get("/ui/tickets")
        page = await client.get(path)
        posts = [
            await client.post(f"{path}/status", data={"status": "closed"}),
            await client.post(f"{path}/assignee", data={"assignee": ""}),
            await client.post(f"{path}/messages", data={"text": "hi", "kind": "answer"}),
        ]

    assert numbers(listed.text) == ["#1"]
    assert page.status_code == 200
    assert 'id="read-only"' in page.text
    assert not re.search(r'<form method="post" action="/ui/tickets/', page.text)
    assert [p.status_code for p in posts] == [403, 403, 403]
    current = await support.get_ticket(relay.runtime, relay.workspace_id, ticket.id)
    messages = await support.list_messages(relay.runtime, relay.workspace_id, ticket.id)
    assert (current.status, len(messages)) == (TicketStatus.NEW, 1)


async def test_another_workspaces_ticket_is_not_found(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """Another workspace's session gets a 404 page for the ticket and its forms, an empty
    list, and the ticket is not changed."""
    desk = await make_desk(relay, emulator, "help_bot", "Help forum", "Help")
    ticket = await customer_writes(relay, emulator, desk, ADA, "my order never arrived")
    _, other_key = await workspaces.create_workspace(
        relay.runtime.db, "Other", now=relay.runtime.clock()
    )
    path = f"/ui/tickets/{ticket.id}"
    async with browser(relay, other_key) as other:
        listed = await other.get("/ui/tickets")
        responses: list[httpx.Response] = [
            await other.get(path),
            await other.post(f"{path}/status", data={"status": "closed"}),
            await other.post(f"{path}/assignee", data={"assignee": ""}),
            await other.post(f"{path}/messages", data={"text": "hi", "kind": "note"}),
        ]

    assert table_rows(listed.text) == []
    assert "No tickets." in listed.text
    assert [(r.status_code, flash(r.text)) for r in responses] == [
        (404, [f"no ticket {ticket.id}"])
    ] * 4
    current = await support.get_ticket(relay.runtime, relay.workspace_id, ticket.id)
    messages = await support.list_messages(relay.runtime, relay.workspace_id, ticket.id)
    assert (current.status, len(messages)) == (TicketStatus.NEW, 1)


async def test_a_ticket_page_shows_its_sla_clocks_once_the_desk_has_a_policy(
    relay: Tgrelay, emulator: RunningEmulator
) -> None:
    """Without a policy the page has no SLA section; with one, each tracked metric's clock:
    the first response met at the answer, the resolution due."""
    desk = await make_desk(relay, emulator, "help_bot", "Help forum", "Help")
    ticket = await customer_writes(relay, emulator, desk, ADA, "my order never arrived")
    principal = await workspaces.authenticate(relay.runtime.db, relay.api_key)
    path = f"/ui/tickets/{ticket.id}"
    async with browser(relay, relay.api_key) as client:
        without = await client.get(path)
        await sla_api.put_policy(
            relay.runtime,
            principal,
            desk.id,
            PolicySpec(first_response=3600, resolution=86400),
        )
        await client.post(
            f"{path}/messages",
            data={"text": "We are on it.", "kind": "answer", "idempotency_key": "ui-sla"},
        )
        page = await client.get(path)

    shown = re.search(r'<dl id="ticket-sla">(.*?)</dl>', page.text, re.S)
    assert shown is not None
    text = " ".join(re.sub(r"<[^>]+>", " ", html.unescape(shown.group(1))).split())
    assert 'id="ticket-sla"' not in without.text
    assert re.fullmatch(
        r"First response met (just now|\d+ s ago) Resolution due in (23|24) h", text
    ), text
