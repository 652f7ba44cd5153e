"""Canned replies' use cases: snippets saved only once their template validates, and
rendered for a ticket when an agent types `/s <name>` in its topic."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import audit, errors
from tgrelay.runtime import Runtime
from tgrelay.support import store, templates
from tgrelay.support.models import Agent, Desk, Snippet, Ticket
from tgrelay.workspaces.models import Principal

NAME = re.compile(r"[a-z0-9_-]{1,64}")
NAME_RULE = "1 to 64 of a-z, 0-9, _ and -"


class SnippetUnavailable(Exception):
    """A snippet could not be sent; str() is the sentence the topic shows the agent."""


class SnippetExists(errors.Conflict):
    """A snippet of that name exists in the workspace."""


async def create_snippet(rt: Runtime, principal: Principal, *, name: str, text: str) -> Snippet:
    _check_name(name)
    templates.validate(text)
    now = rt.clock()
    snippet_id = f"snp_{secrets.token_hex(8)}"
    try:
        async with rt.db.transaction() as conn:
            await store.add_snippet(
                conn,
                {
                    "id": snippet_id,
                    "workspace_id": principal.workspace_id,
                    "name": name,
                    "text": text,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            await _audit(conn, principal, "snippet.created", snippet_id, name, now=now)
    except IntegrityError:
        raise SnippetExists(f"a snippet named {name} exists") from None
    return await get_snippet(rt, principal.workspace_id, snippet_id)


async def list_snippets(rt: Runtime, workspace_id: str) -> list[Snippet]:
    async with rt.db.engine.connect() as conn:
        return await store.list_snippets(conn, workspace_id)


async def get_snippet(rt: Runtime, workspace_id: str, snippet_id: str) -> Snippet:
    async with rt.db.engine.connect() as conn:
        found = await store.snippet(conn, workspace_id, snippet_id)
    if found is None:
        raise errors.NotFound(f"no snippet {snippet_id}")
    return found


async def update_snippet(
    rt: Runtime, principal: Principal, snippet_id: str, changes: Mapping[str, Any]
) -> Snippet:
    """Rename it or change its text (validated again)."""
    if unknown := set(changes) - {"name", "text"}:
        raise errors.InvalidInput(f"not a snippet field: {', '.join(sorted(unknown))}")
    if "name" in changes:
        _check_name(changes["name"])
    if "text" in changes:
        templates.validate(changes["text"])
    now = rt.clock()
    try:
        async with rt.db.transaction() as conn:
            found = await store.snippet(conn, principal.workspace_id, snippet_id)
            if found is None:
                raise errors.NotFound(f"no snippet {snippet_id}")
            await store.change_snippet(conn, snippet_id, **changes, updated_at=now)
            name = changes.get("name", found.name)
            await _audit(conn, principal, "snippet.updated", snippet_id, name, now=now)
    except IntegrityError:
        raise SnippetExists(f"a snippet named {changes['name']} exists") from None
    return await get_snippet(rt, principal.workspace_id, snippet_id)


async def delete_snippet(rt: Runtime, principal: Principal, snippet_id: str) -> None:
    now = rt.clock()
    async with rt.db.transaction() as conn:
        found = await store.snippet(conn, principal.workspace_id, snippet_id)
        if found is None:
            raise errors.NotFound(f"no snippet {snippet_id}")
        await store.delete_snippet(conn, snippet_id)
        await _audit(conn, principal, "snippet.deleted", snippet_id, found.name, now=now)


async def render_named(
    conn: AsyncConnection, *, name: str, ticket: Ticket, desk: Desk, agent: Agent | None
) -> str:
    """The workspace's snippet `name` rendered for the ticket, on the caller's connection;
    SnippetUnavailable (its text for the topic) when there is none or it fails."""
    snippet = await store.snippet_named(conn, ticket.workspace_id, name)
    if snippet is None:
        known = [s.name for s in await store.list_snippets(conn, ticket.workspace_id)]
        raise SnippetUnavailable(
            f"No snippet named “{name}”. "
            + (f"Snippets: {', '.join(known)}." if known else "This workspace has no snippets.")
        )
    try:
        return templates.render(snippet.text, templates.context(ticket, desk, agent))
    except templates.RenderFailed as exc:
        raise SnippetUnavailable(f"Snippet “{name}” did not render: {exc.message}") from None


def _check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise errors.InvalidInput(f"a snippet's name is {NAME_RULE}; got {name!r}")


async def _audit(
    conn: AsyncConnection,
    principal: Principal,
    action: str,
    snippet_id: str,
    name: str,
    *,
    now: datetime,
) -> None:
    await audit.record(
        conn,
        action=action,
        actor=principal.actor,
        now=now,
        workspace_id=principal.workspace_id,
        detail={"snippet_id": snippet_id, "name": name},
    )
