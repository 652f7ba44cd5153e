"""/v1/support/snippets, validated at save; render_named as the relay's /s command calls it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.support.test_templates import AGENT, DESK, TICKET
from tgrelay.support import snippets, store
from tgrelay.support.models import Snippet
from tgrelay.support.templates import KNOWN

from .conftest import STAMP, Desk, problem


def snippet_view(snippet_id: str, name: str, text: str, **changes: Any) -> dict[str, Any]:
    return {
        "id": snippet_id,
        "name": name,
        "text": text,
        "created_at": STAMP,
        "updated_at": STAMP,
        **changes,
    }


async def test_create_read_update_delete(desk: Desk) -> None:
    """A snippet is created (201), listed by name, renamed and re-worded, then deleted."""
    acme = await desk.tenant("Acme")
    text = "Hi {{ customer.first_name }}, this is {{ agent.name }}."

    created = await desk.api.post(
        "/v1/support/snippets", json={"name": "hello", "text": text}, headers=acme.admin
    )
    snippet_id = created.json()["id"]
    await desk.api.post(
        "/v1/support/snippets", json={"name": "bye", "text": "Bye!"}, headers=acme.admin
    )
    listed = await desk.api.get("/v1/support/snippets", headers=acme.reader)
    desk.clock.advance(60)
    changed = await desk.api.patch(
        f"/v1/support/snippets/{snippet_id}",
        json={"name": "hi-there", "text": "Hello {{ customer.name }}"},
        headers=acme.admin,
    )
    one = await desk.api.get(f"/v1/support/snippets/{snippet_id}", headers=acme.reader)
    deleted = await desk.api.delete(f"/v1/support/snippets/{snippet_id}", headers=acme.admin)
    gone = await desk.api.get(f"/v1/support/snippets/{snippet_id}", headers=acme.reader)

    after = snippet_view(
        snippet_id, "hi-there", "Hello {{ customer.name }}", updated_at="2026-01-05T09:01:00Z"
    )
    assert (created.status_code, created.json()) == (201, snippet_view(snippet_id, "hello", text))
    assert [s["name"] for s in listed.json()] == ["bye", "hello"]
    assert (changed.status_code, changed.json()) == (200, after)
    assert (one.status_code, one.json()) == (200, after)
    assert deleted.status_code == 204
    assert (gone.status_code, gone.json()) == (
        404,
        problem(404, "NotFound", f"no snippet {snippet_id}"),
    )
    assert [a for a, _ in await desk.audit(acme.workspace_id)] == [
        "snippet.created",
        "snippet.created",
        "snippet.updated",
        "snippet.deleted",
    ]


async def test_save_time_validation(desk: Desk) -> None:
    """Syntax errors and unknown variables are 422 saying what; bad names and taken names refused."""
    acme = await desk.tenant("Acme")
    await desk.api.post(
        "/v1/support/snippets", json={"name": "hello", "text": "Hi"}, headers=acme.admin
    )

    syntax = await desk.api.post(
        "/v1/support/snippets", json={"name": "a", "text": "{{ oops }"}, headers=acme.admin
    )
    unknown = await desk.api.post(
        "/v1/support/snippets",
        json={"name": "a", "text": "{{ customer.email }}"},
        headers=acme.admin,
    )
    escape = await desk.api.post(
        "/v1/support/snippets",
        json={"name": "a", "text": "{{ ''.__class__ }}"},
        headers=acme.admin,
    )
    taken = await desk.api.post(
        "/v1/support/snippets", json={"name": "hello", "text": "Hey"}, headers=acme.admin
    )
    bad_names = [
        await desk.api.post(
            "/v1/support/snippets", json={"name": n, "text": "x"}, headers=acme.admin
        )
        for n in ("Hello", "", "a" * 65, "hi there")
    ]
    reader = await desk.api.post(
        "/v1/support/snippets", json={"name": "b", "text": "x"}, headers=acme.reader
    )

    assert (syntax.status_code, syntax.json()) == (
        422,
        problem(422, "TemplateInvalid", "syntax error on line 1: unexpected '}'"),
    )
    assert (unknown.status_code, unknown.json()) == (
        422,
        problem(
            422, "TemplateInvalid", f"unknown variable: customer.email; known: {', '.join(KNOWN)}"
        ),
    )
    assert (escape.status_code, escape.json()["title"]) == (422, "TemplateInvalid")
    assert (taken.status_code, taken.json()) == (
        409,
        problem(409, "SnippetExists", "a snippet named hello exists"),
    )
    assert [(r.status_code, r.json()["errors"][0]["loc"][-1]) for r in bad_names] == [
        (422, "name")
    ] * 4
    assert (reader.status_code, reader.json()["title"]) == (403, "Forbidden")
    listed = await desk.api.get("/v1/support/snippets", headers=acme.admin)
    assert [s["name"] for s in listed.json()] == ["hello"]


async def test_patch_validates_and_workspaces_are_apart(desk: Desk) -> None:
    """PATCH validates the new text and name; another workspace's snippet is 404; names are
    unique per workspace only."""
    acme = await desk.tenant("Acme")
    rival = await desk.tenant("Rival")
    body = {"name": "hello", "text": "Hi"}
    snippet_id = (
        await desk.api.post("/v1/support/snippets", json=body, headers=acme.admin)
    ).json()["id"]
    await desk.api.post(
        "/v1/support/snippets", json={"name": "bye", "text": "Bye"}, headers=acme.admin
    )

    rival_same_name = await desk.api.post("/v1/support/snippets", json=body, headers=rival.admin)
    bad_text = await desk.api.patch(
        f"/v1/support/snippets/{snippet_id}", json={"text": "{{ x }}"}, headers=acme.admin
    )
    clash = await desk.api.patch(
        f"/v1/support/snippets/{snippet_id}", json={"name": "bye"}, headers=acme.admin
    )
    rival_patch = await desk.api.patch(
        f"/v1/support/snippets/{snippet_id}", json={"text": "Mine"}, headers=rival.admin
    )
    rival_delete = await desk.api.delete(f"/v1/support/snippets/{snippet_id}", headers=rival.admin)

    assert rival_same_name.status_code == 201
    assert (bad_text.status_code, bad_text.json()["title"]) == (422, "TemplateInvalid")
    assert (clash.status_code, clash.json()) == (
        409,
        problem(409, "SnippetExists", "a snippet named bye exists"),
    )
    assert [rival_patch.status_code, rival_delete.status_code] == [404, 404]
    kept = await desk.api.get(f"/v1/support/snippets/{snippet_id}", headers=acme.admin)
    assert (kept.json()["name"], kept.json()["text"]) == ("hello", "Hi")


async def test_render_named_renders_for_the_ticket(desk: Desk) -> None:
    """render_named renders the workspace's snippet with the ticket, desk and agent."""
    acme = await desk.tenant("Acme")
    await desk.api.post(
        "/v1/support/snippets",
        json={
            "name": "hello",
            "text": "Hi {{ customer.first_name }}, {{ agent.name }} of "
            "{{ desk.name }} here about #{{ ticket.number }}.",
        },
        headers=acme.admin,
    )
    ticket = replace(TICKET, workspace_id=acme.workspace_id)

    async with desk.rt.db.engine.connect() as conn:
        text = await snippets.render_named(
            conn, name="hello", ticket=ticket, desk=DESK, agent=AGENT
        )
        no_agent = await snippets.render_named(
            conn, name="hello", ticket=ticket, desk=DESK, agent=None
        )

    assert text == "Hi Alice, Bob of Billing here about #42."
    assert no_agent == "Hi Alice,  of Billing here about #42."


async def test_render_named_explains_what_is_unavailable(desk: Desk) -> None:
    """An unknown name lists the workspace's snippets (or says there are none); a snippet that
    fails to render says what failed."""
    acme = await desk.tenant("Acme")
    ticket = replace(TICKET, workspace_id=acme.workspace_id)
    async with desk.rt.db.engine.connect() as conn:
        with pytest.raises(snippets.SnippetUnavailable) as none_yet:
            await snippets.render_named(conn, name="hello", ticket=ticket, desk=DESK, agent=None)
    for name in ("thanks", "hello"):
        await desk.api.post(
            "/v1/support/snippets", json={"name": name, "text": "x"}, headers=acme.admin
        )
    # Written around the save-time check, as a snippet saved before a variable was retired.
    await snippets_store_text(desk, acme.workspace_id, "thanks", "{{ ticket.number / 0 }}")

    async with desk.rt.db.engine.connect() as conn:
        with pytest.raises(snippets.SnippetUnavailable) as unknown:
            await snippets.render_named(conn, name="helo", ticket=ticket, desk=DESK, agent=None)
        with pytest.raises(snippets.SnippetUnavailable) as failing:
            await snippets.render_named(conn, name="thanks", ticket=ticket, desk=DESK, agent=None)

    assert str(none_yet.value) == "No snippet named “hello”. This workspace has no snippets."
    assert str(unknown.value) == "No snippet named “helo”. Snippets: hello, thanks."
    assert str(failing.value) == (
        "Snippet “thanks” did not render: ZeroDivisionError: division by zero"
    )


async def snippets_store_text(desk: Desk, workspace_id: str, name: str, text: str) -> Snippet:
    async with desk.rt.db.transaction() as conn:
        found = await store.snippet_named(conn, workspace_id, name)
        assert found is not None
        await store.change_snippet(conn, found.id, text=text)
    return found
