"""The conversations tables (flows, conversations, transitions): rows in, records out.
Functions join the caller's transaction; documents and states stay JSON text here and
become typed values in the modules that understand them.

Only the conversations domain calls this; other domains ask `conversations.service`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.db import prepared, tables

flows = tables.flows
conversations = tables.conversations
transitions = tables.conversation_transitions


@dataclass(frozen=True, kw_only=True)
class StoredFlow:
    """One stored version of a flow."""

    id: str
    workspace_id: str
    name: str
    version: int
    document: str  # JSON, as validated when posted
    trigger_kind: str
    trigger_value: str | None
    created_at: datetime
    disabled_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class StoredConversation:
    id: str
    workspace_id: str
    flow_id: str
    flow_name: str
    bot_id: int
    chat_id: int
    user_id: int
    status: str
    step_id: str | None
    state: str  # JSON, the engine's state
    end_reason: str | None
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class StoredTransition:
    id: int
    conversation_id: str
    from_step: str | None
    to_step: str | None
    input_summary: str | None
    at: datetime


# --- flows ---------------------------------------------------------------------------------


async def add_flow(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    await conn.execute(insert(flows).values(**values))


async def latest_version(conn: AsyncConnection, workspace_id: str, name: str) -> StoredFlow | None:
    """The newest version of a flow (disabled or not)."""
    row = (
        await conn.execute(
            select(flows)
            .where(flows.c.workspace_id == workspace_id, flows.c.name == name)
            .order_by(flows.c.version.desc())
            .limit(1)
        )
    ).first()
    return None if row is None else _to_flow(row)


async def flow_version(
    conn: AsyncConnection, workspace_id: str, name: str, version: int
) -> StoredFlow | None:
    row = (
        await conn.execute(
            select(flows).where(
                flows.c.workspace_id == workspace_id,
                flows.c.name == name,
                flows.c.version == version,
            )
        )
    ).first()
    return None if row is None else _to_flow(row)


async def flow_by_id(conn: AsyncConnection, flow_id: str) -> StoredFlow | None:
    row = (await conn.execute(select(flows).where(flows.c.id == flow_id))).first()
    return None if row is None else _to_flow(row)


async def versions(conn: AsyncConnection, workspace_id: str, name: str) -> list[StoredFlow]:
    """Every version of a flow, newest first."""
    rows = await conn.execute(
        select(flows)
        .where(flows.c.workspace_id == workspace_id, flows.c.name == name)
        .order_by(flows.c.version.desc())
    )
    return [_to_flow(row) for row in rows]


async def list_latest(conn: AsyncConnection, workspace_id: str) -> list[StoredFlow]:
    """Each flow of the workspace at its newest version, by name."""
    newest = (
        select(flows.c.name, func.max(flows.c.version).label("version"))
        .where(flows.c.workspace_id == workspace_id)
        .group_by(flows.c.name)
        .subquery()
    )
    rows = await conn.execute(
        select(flows)
        .join(newest, (flows.c.name == newest.c.name) & (flows.c.version == newest.c.version))
        .where(flows.c.workspace_id == workspace_id)
        .order_by(flows.c.name)
    )
    return [_to_flow(row) for row in rows]


async def flow_for_trigger(
    conn: AsyncConnection, workspace_id: str, kind: str, value: str | None
) -> StoredFlow | None:
    """The enabled flow whose newest version starts on this trigger, if any.

    Only a name's newest version counts: an older version's trigger no longer starts anything.
    """
    candidates = await conn.execute(
        select(flows.c.name)
        .where(
            flows.c.workspace_id == workspace_id,
            flows.c.trigger_kind == kind,
            flows.c.trigger_value.is_(None) if value is None else flows.c.trigger_value == value,
        )
        .distinct()
    )
    for (name,) in candidates:
        newest = await latest_version(conn, workspace_id, name)
        if (
            newest is not None
            and newest.disabled_at is None
            and (newest.trigger_kind, newest.trigger_value) == (kind, value)
        ):
            return newest
    return None


async def disable_flow(conn: AsyncConnection, flow_id: str, at: datetime) -> None:
    await conn.execute(update(flows).where(flows.c.id == flow_id).values(disabled_at=at))


def _to_flow(row: Row[Any]) -> StoredFlow:
    return StoredFlow(
        id=row.id,
        workspace_id=row.workspace_id,
        name=row.name,
        version=row.version,
        document=row.document,
        trigger_kind=row.trigger_kind,
        trigger_value=row.trigger_value,
        created_at=row.created_at,
        disabled_at=row.disabled_at,
    )


# --- conversations -------------------------------------------------------------------------


async def add_conversation(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    await conn.execute(insert(conversations).values(**values))


async def live_conversation(
    conn: AsyncConnection, bot_id: int, chat_id: int, user_id: int
) -> StoredConversation | None:
    """The conversation not ended of this user in this chat (at most one: a unique index).

    No row lock: per-chat ordering of the jobs that move conversations is their lock.
    """
    row = (
        await conn.execute(
            select(conversations).where(
                conversations.c.bot_id == bot_id,
                conversations.c.chat_id == chat_id,
                conversations.c.user_id == user_id,
                conversations.c.ended_at.is_(None),
            )
        )
    ).first()
    return None if row is None else _to_conversation(row)


async def conversation(
    conn: AsyncConnection, conversation_id: str, *, workspace_id: str | None = None
) -> StoredConversation | None:
    query = select(conversations).where(conversations.c.id == conversation_id)
    if workspace_id is not None:
        query = query.where(conversations.c.workspace_id == workspace_id)
    row = (await conn.execute(query)).first()
    return None if row is None else _to_conversation(row)


async def list_conversations(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    flow: str | None = None,
    status: str | None = None,
    before: datetime | None = None,
    limit: int,
) -> list[StoredConversation]:
    """Newest first by start; `before` a start time: the page after the one that ended there."""
    query = select(conversations).where(conversations.c.workspace_id == workspace_id)
    if flow is not None:
        query = query.where(conversations.c.flow_name == flow)
    if status is not None:
        query = query.where(conversations.c.status == status)
    if before is not None:
        query = query.where(conversations.c.started_at < before)
    rows = await conn.execute(
        query.order_by(conversations.c.started_at.desc(), conversations.c.id.desc()).limit(limit)
    )
    return [_to_conversation(row) for row in rows]


async def change_conversation(conn: AsyncConnection, conversation_id: str, **values: Any) -> None:
    await conn.execute(
        update(conversations).where(conversations.c.id == conversation_id).values(**values)
    )


def _to_conversation(row: Row[Any]) -> StoredConversation:
    return StoredConversation(
        id=row.id,
        workspace_id=row.workspace_id,
        flow_id=row.flow_id,
        flow_name=row.flow_name,
        bot_id=row.bot_id,
        chat_id=row.chat_id,
        user_id=row.user_id,
        status=row.status,
        step_id=row.step_id,
        state=row.state,
        end_reason=row.end_reason,
        started_at=row.started_at,
        updated_at=row.updated_at,
        ended_at=row.ended_at,
    )


# --- transitions ---------------------------------------------------------------------------


async def add_transition(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    await conn.execute(insert(transitions).values(**values))


async def history(conn: AsyncConnection, conversation_id: str) -> list[StoredTransition]:
    """A conversation's transitions, oldest first."""
    rows = await conn.execute(
        select(transitions)
        .where(transitions.c.conversation_id == conversation_id)
        .order_by(transitions.c.id)
    )
    return [
        StoredTransition(
            id=row.id,
            conversation_id=row.conversation_id,
            from_step=row.from_step,
            to_step=row.to_step,
            input_summary=row.input_summary,
            at=row.at,
        )
        for row in rows
    ]


# --- reads for the API and the pages (issue 21's flows API) ----------------------------------


async def version_counts(conn: AsyncConnection, workspace_id: str) -> dict[str, int]:
    """How many versions each flow of the workspace has, by name."""
    rows = await conn.execute(
        select(flows.c.name, func.count())
        .where(flows.c.workspace_id == workspace_id)
        .group_by(flows.c.name)
    )
    return {str(name): int(count) for name, count in rows}


async def live_counts(conn: AsyncConnection, workspace_id: str) -> dict[str, int]:
    """How many conversations not yet ended each flow of the workspace has, by name."""
    rows = await conn.execute(
        select(conversations.c.flow_name, func.count())
        .where(conversations.c.workspace_id == workspace_id, conversations.c.ended_at.is_(None))
        .group_by(conversations.c.flow_name)
    )
    return {str(name): int(count) for name, count in rows}


async def conversations_page(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    flow: str | None = None,
    status: str | None = None,
    after: StoredConversation | None = None,
    limit: int,
) -> list[StoredConversation]:
    """Newest first by start, then id; `after` the last conversation of the previous page
    (a (started_at, id) cursor: conversations started in the same instant are not skipped)."""
    query = select(conversations).where(conversations.c.workspace_id == workspace_id)
    if flow is not None:
        query = query.where(conversations.c.flow_name == flow)
    if status is not None:
        query = query.where(conversations.c.status == status)
    if after is not None:
        query = query.where(
            (conversations.c.started_at < after.started_at)
            | ((conversations.c.started_at == after.started_at) & (conversations.c.id < after.id))
        )
    rows = await conn.execute(
        query.order_by(conversations.c.started_at.desc(), conversations.c.id.desc()).limit(limit)
    )
    return [_to_conversation(row) for row in rows]


async def lock_flows(conn: AsyncConnection, workspace_id: str) -> None:
    """Hold the workspace's flows for this transaction: posts of flows wait for each other, so
    the trigger check and the next version number see every earlier post. PostgreSQL takes a
    transaction advisory lock; SQLite's one writer at a time already serialises them."""
    if conn.dialect.name == "postgresql":
        key = func.hashtextextended(f"flows:{workspace_id}", 0)
        await conn.execute(select(func.pg_advisory_xact_lock(key)))


# --- the runtime's writes (issue 21) -------------------------------------------------------


async def move_conversation(
    conn: AsyncConnection, conversation_id: str, *, expected_state: str, **values: Any
) -> bool:
    """Change the conversation only if its state is still `expected_state` (compare-and-set):
    false when another job moved it since it was read."""
    changed = await conn.execute(
        update(conversations)
        .where(conversations.c.id == conversation_id, conversations.c.state == expected_state)
        .values(**values)
    )
    return bool(changed.rowcount)


async def live_participants(
    conn: AsyncConnection, participants: Collection[tuple[int, int, int]]
) -> set[tuple[int, int, int]]:
    """Which of these (bot_id, chat_id, user_id) have a live conversation: one query for a
    batch of updates, so the many that belong to none cost one statement between them."""
    if not participants:
        return set()
    rows = await _LIVE_PARTICIPANTS(
        conn,
        {
            "bot_ids": sorted({bot_id for bot_id, _, _ in participants}),
            "chat_ids": sorted({chat_id for _, chat_id, _ in participants}),
        },
    )
    found = {(int(row.bot_id), int(row.chat_id), int(row.user_id)) for row in rows}
    return found & set(participants)


# Built once: a batch's thousand chat ids made a fresh `in_` coerce each of them.
_LIVE_PARTICIPANTS = prepared.Prepared(
    select(conversations.c.bot_id, conversations.c.chat_id, conversations.c.user_id).where(
        conversations.c.ended_at.is_(None),
        conversations.c.bot_id.in_(bindparam("bot_ids", expanding=True)),
        conversations.c.chat_id.in_(bindparam("chat_ids", expanding=True)),
    )
)
