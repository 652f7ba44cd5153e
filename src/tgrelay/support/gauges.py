"""The support desk's figures as gauges, read at scrape time: live tickets per desk and
status, SLA breaches recorded and auto-answer outcomes per desk (metric and outcome).

Labels are bounded by desks, statuses, metrics and outcomes, never tickets or agents. Each
read is one grouped SELECT: the live tickets' walks the tickets table (no index leads with
status), the others the breach and auto-answer rows joined to their tickets. A read takes
no lock a writer waits for (SQLite WAL readers, PostgreSQL snapshots).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.db import tables
from tgrelay.observability import Metrics
from tgrelay.support.models import LIVE_STATUSES

tickets = tables.tickets


@dataclass(frozen=True, kw_only=True)
class Figures:
    live_tickets: dict[tuple[str, str], int]  # (desk_id, status)
    breaches: dict[tuple[str, str], int]  # (desk_id, metric), every breach recorded
    auto_answers: dict[tuple[str, str], int]  # (desk_id, outcome)


async def read(conn: AsyncConnection) -> Figures:
    """The three groupings as they stand now."""
    live = await conn.execute(
        select(tickets.c.desk_id, tickets.c.status, func.count())
        .where(tickets.c.status.in_([s.value for s in LIVE_STATUSES]))
        .group_by(tickets.c.desk_id, tickets.c.status)
    )
    breaches = tables.ticket_sla_breaches
    breached = await conn.execute(
        select(tickets.c.desk_id, breaches.c.metric, func.count())
        .join(tickets, tickets.c.id == breaches.c.ticket_id)
        .group_by(tickets.c.desk_id, breaches.c.metric)
    )
    answers = tables.support_auto_answers
    answered = await conn.execute(
        select(tickets.c.desk_id, answers.c.outcome, func.count())
        .join(tickets, tickets.c.id == answers.c.ticket_id)
        .group_by(tickets.c.desk_id, answers.c.outcome)
    )
    return Figures(
        live_tickets={(desk, label): int(n) for desk, label, n in live},
        breaches={(desk, label): int(n) for desk, label, n in breached},
        auto_answers={(desk, label): int(n) for desk, label, n in answered},
    )


def publish(metrics: Metrics, figures: Figures) -> None:
    """Set the gauges to `figures`: a pair no longer counted drops out (no stale values)."""
    for gauge, values in (
        (metrics.support_live_tickets, figures.live_tickets),
        (metrics.support_sla_breaches, figures.breaches),
        (metrics.support_auto_answer_outcomes, figures.auto_answers),
    ):
        gauge.clear()
        for (desk_id, label), count in values.items():
            gauge.labels(desk_id, label).set(count)
