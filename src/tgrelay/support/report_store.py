"""The rows the support report reads for a window, as `report.Facts`: a few set queries (the
window's tickets, their messages, status changes and auto-answers in pages of ids), never
one query per ticket.

Tickets opened in the window give first responses, SLA attainment and deflection (each
ticket judged as of now); resolutions, assignments and breaches count when they happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.db import tables
from tgrelay.support import sla, sla_store
from tgrelay.support.models import (
    AutoAnswerOutcome,
    ChangedField,
    Direction,
    TicketStatus,
)
from tgrelay.support.report import Assigned, Facts, Opened, Resolved
from tgrelay.support.sla import History, Metric

tickets = tables.tickets
messages = tables.ticket_messages
changes = tables.ticket_changes
PAGE = 500  # ids per IN (...) list: well under SQLite's and asyncpg's parameter limits
AGENT_PREFIX = "agent:"


@dataclass(frozen=True, kw_only=True)
class Scope:
    workspace_id: str
    desk_id: str | None  # None: every desk of the workspace
    start: datetime
    end: datetime  # exclusive


async def facts(conn: AsyncConnection, scope: Scope, now: datetime) -> Facts:
    """Everything the report needs for `scope`, SLA runs as of `now`."""
    opened = await _opened(conn, scope, now)
    return Facts(
        opened=opened,
        resolved=await _resolved(conn, scope),
        assigned=await _assigned(conn, scope),
        breaches=await _breaches(conn, scope),
        agent_names=await _agent_names(conn, scope.workspace_id),
    )


def _in_scope(query: Select[Any], scope: Scope) -> Select[Any]:
    query = query.where(tickets.c.workspace_id == scope.workspace_id)
    if scope.desk_id is not None:
        query = query.where(tickets.c.desk_id == scope.desk_id)
    return query


async def _opened(conn: AsyncConnection, scope: Scope, now: datetime) -> list[Opened]:
    query = _in_scope(
        select(tickets.c.id, tickets.c.desk_id, tickets.c.created_at, tickets.c.first_response_at),
        scope,
    ).where(tickets.c.created_at >= scope.start, tickets.c.created_at < scope.end)
    rows = (await conn.execute(query.order_by(tickets.c.created_at, tickets.c.id))).all()
    policies: dict[str, sla.Policy | None] = {}
    for desk_id in {row.desk_id for row in rows}:
        stored = await sla_store.policy(conn, desk_id)
        policies[desk_id] = None if stored is None else stored.spec.calculator()
    found: list[Opened] = []
    for start in range(0, len(rows), PAGE):
        page = rows[start : start + PAGE]
        ids = [row.id for row in page]
        said = await _messages(conn, ids)
        statuses = await _statuses(conn, ids)
        answers = await _auto_answers(conn, ids)
        for row in page:
            policy = policies[row.desk_id]
            moves = statuses.get(row.id, [])
            # As sla_timer.history: `new` at creation unless a status was recorded then.
            if not moves or moves[0][0] > row.created_at:
                moves = [(row.created_at, TicketStatus.NEW), *moves]
            history = History(
                created_at=row.created_at,
                statuses=tuple(moves),
                messages=tuple((at, direction) for at, direction, _ in said.get(row.id, ())),
            )
            found.append(
                Opened(
                    ticket_id=row.id,
                    created_at=row.created_at,
                    first_response_at=row.first_response_at,
                    first_responder=next(
                        (
                            author
                            for _, direction, author in said.get(row.id, ())
                            if direction is Direction.AGENT
                        ),
                        None,
                    ),
                    runs=() if policy is None else tuple(sla.runs(history, policy, now)),
                    auto_answer=answers.get(row.id),
                )
            )
    return found


async def _messages(
    conn: AsyncConnection, ids: Sequence[str]
) -> dict[str, list[tuple[datetime, Direction, int | None]]]:
    rows = await conn.execute(
        select(messages.c.ticket_id, messages.c.created_at, messages.c.direction)
        .add_columns(messages.c.author_id)
        .where(messages.c.ticket_id.in_(ids))
        .order_by(messages.c.created_at, messages.c.id)
    )
    said: dict[str, list[tuple[datetime, Direction, int | None]]] = {}
    for row in rows:
        said.setdefault(row.ticket_id, []).append(
            (row.created_at, Direction(row.direction), row.author_id)
        )
    return said


async def _statuses(
    conn: AsyncConnection, ids: Sequence[str]
) -> dict[str, list[tuple[datetime, TicketStatus]]]:
    rows = await conn.execute(
        select(changes.c.ticket_id, changes.c.at, changes.c.value)
        .where(changes.c.ticket_id.in_(ids), changes.c.field == ChangedField.STATUS.value)
        .order_by(changes.c.at, changes.c.id)
    )
    found: dict[str, list[tuple[datetime, TicketStatus]]] = {}
    for row in rows:
        if row.value is not None:
            found.setdefault(row.ticket_id, []).append((row.at, TicketStatus(row.value)))
    return found


async def _auto_answers(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, AutoAnswerOutcome]:
    answers = tables.support_auto_answers
    rows = await conn.execute(
        select(answers.c.ticket_id, answers.c.outcome).where(answers.c.ticket_id.in_(ids))
    )
    return {row.ticket_id: AutoAnswerOutcome(row.outcome) for row in rows}


def _changes_in_window(scope: Scope, field: ChangedField) -> Select[Any]:
    query = select(
        changes.c.ticket_id, changes.c.at, changes.c.value, changes.c.changed_by
    ).add_columns(tickets.c.created_at.label("ticket_created_at"))
    query = query.join(tickets, tickets.c.id == changes.c.ticket_id).where(
        changes.c.field == field.value,
        changes.c.at >= scope.start,
        changes.c.at < scope.end,
    )
    return _in_scope(query, scope).order_by(changes.c.at, changes.c.id)


async def _resolved(conn: AsyncConnection, scope: Scope) -> list[Resolved]:
    query = _changes_in_window(scope, ChangedField.STATUS).where(
        changes.c.value == TicketStatus.RESOLVED.value
    )
    return [
        Resolved(
            ticket_id=row.ticket_id,
            created_at=row.ticket_created_at,
            at=row.at,
            agent_id=_agent(row.changed_by),
        )
        for row in await conn.execute(query)
    ]


async def _assigned(conn: AsyncConnection, scope: Scope) -> list[Assigned]:
    query = _changes_in_window(scope, ChangedField.ASSIGNEE).where(changes.c.value.is_not(None))
    return [
        Assigned(ticket_id=row.ticket_id, agent_id=int(row.value), at=row.at)
        for row in await conn.execute(query)
    ]


async def _breaches(conn: AsyncConnection, scope: Scope) -> list[Metric]:
    breaches = tables.ticket_sla_breaches
    query = _in_scope(
        select(breaches.c.metric).join(tickets, tickets.c.id == breaches.c.ticket_id), scope
    ).where(breaches.c.breached_at >= scope.start, breaches.c.breached_at < scope.end)
    return [Metric(row.metric) for row in await conn.execute(query)]


async def _agent_names(conn: AsyncConnection, workspace_id: str) -> dict[int, str]:
    agents = tables.support_agents
    rows = await conn.execute(
        select(agents.c.telegram_user_id, agents.c.name).where(
            agents.c.workspace_id == workspace_id
        )
    )
    return {row.telegram_user_id: row.name for row in rows}


def _agent(changed_by: str) -> int | None:
    if changed_by.startswith(AGENT_PREFIX):
        return int(changed_by.removeprefix(AGENT_PREFIX))
    return None
