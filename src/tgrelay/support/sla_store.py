"""SLA rows: desks' policies, tickets' breaches and fired escalation steps. Functions join
the caller's transaction; the once-only rows insert with ON CONFLICT DO NOTHING and say
whether this call was the one that wrote them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.db import dialects, tables
from tgrelay.support.sla import Metric
from tgrelay.support.sla_policy import PolicySpec

policies = tables.support_sla_policies
breaches = tables.ticket_sla_breaches
escalations = tables.ticket_sla_escalations


@dataclass(frozen=True, kw_only=True)
class StoredPolicy:
    desk_id: str
    spec: PolicySpec
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, kw_only=True)
class Breach:
    ticket_id: str
    metric: Metric
    due_at: datetime
    breached_at: datetime
    recorded_at: datetime


async def policy(conn: AsyncConnection, desk_id: str) -> StoredPolicy | None:
    row = (await conn.execute(select(policies).where(policies.c.desk_id == desk_id))).first()
    if row is None:
        return None
    return StoredPolicy(
        desk_id=row.desk_id,
        spec=PolicySpec.model_validate_json(row.policy),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def put_policy(
    conn: AsyncConnection, workspace_id: str, desk_id: str, spec: PolicySpec, now: datetime
) -> bool:
    """Create or replace the desk's policy; True when it was created."""
    text = spec.model_dump_json()
    changed = await conn.execute(
        update(policies).where(policies.c.desk_id == desk_id).values(policy=text, updated_at=now)
    )
    if changed.rowcount:
        return False
    await _insert_once(
        conn,
        policies,
        {
            "desk_id": desk_id,
            "workspace_id": workspace_id,
            "policy": text,
            "created_at": now,
            "updated_at": now,
        },
    )
    return True


async def delete_policy(conn: AsyncConnection, desk_id: str) -> bool:
    gone = await conn.execute(delete(policies).where(policies.c.desk_id == desk_id))
    return bool(gone.rowcount)


async def add_breach(conn: AsyncConnection, breach: Breach) -> bool:
    """Record a breach; False when this run's breach is recorded already."""
    return await _insert_once(
        conn,
        breaches,
        {
            "ticket_id": breach.ticket_id,
            "metric": breach.metric.value,
            "due_at": breach.due_at,
            "breached_at": breach.breached_at,
            "recorded_at": breach.recorded_at,
        },
    )


async def list_breaches(conn: AsyncConnection, ticket_id: str) -> list[Breach]:
    rows = await conn.execute(
        select(breaches).where(breaches.c.ticket_id == ticket_id).order_by(breaches.c.id)
    )
    return [
        Breach(
            ticket_id=row.ticket_id,
            metric=Metric(row.metric),
            due_at=row.due_at,
            breached_at=row.breached_at,
            recorded_at=row.recorded_at,
        )
        for row in rows
    ]


async def add_escalation(
    conn: AsyncConnection,
    ticket_id: str,
    metric: Metric,
    due_at: datetime,
    step: int,
    now: datetime,
) -> bool:
    """Record that a step fired for this run; False when it had fired already."""
    return await _insert_once(
        conn,
        escalations,
        {
            "ticket_id": ticket_id,
            "metric": metric.value,
            "due_at": due_at,
            "step": step,
            "fired_at": now,
        },
    )


async def fired_steps(conn: AsyncConnection, ticket_id: str) -> set[tuple[Metric, datetime, int]]:
    """(metric, due_at, step) of each step fired for the ticket."""
    rows = await conn.execute(select(escalations).where(escalations.c.ticket_id == ticket_id))
    return {(Metric(row.metric), row.due_at, row.step) for row in rows}


async def _insert_once(conn: AsyncConnection, table: Any, values: dict[str, Any]) -> bool:
    result = await conn.execute(
        dialects.upsert(conn.dialect.name, table).values(**values).on_conflict_do_nothing()
    )
    return bool(result.rowcount)
