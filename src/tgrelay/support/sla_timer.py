"""A ticket's SLA clocks read from its rows, and its one timer: the support_sla_check job
queued for the earliest moment something may happen (a due time, a warning, an escalation
step). Called wherever a ticket changes, inside the caller's transaction.

Only the latest plan counts: ticket_sla_timers keeps its wake_at, and a job queued for an
older one does nothing when it runs (sla_escalation checks), so a busy ticket does not
pile up timers. A job is a row with run_at, so timers survive restarts and kill -9.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.db import dialects, tables
from tgrelay.queue import store as job_store
from tgrelay.queue.models import NewJob
from tgrelay.runtime import Runtime
from tgrelay.support import sla, sla_store, ticket_store
from tgrelay.support.models import ChangedField, Ticket, TicketStatus
from tgrelay.support.sla import Clock, History
from tgrelay.support.sla_policy import PolicySpec, Step

SLA_CHECK = "support_sla_check"
timers = tables.ticket_sla_timers


@dataclass(frozen=True, kw_only=True)
class Due:
    """A step of the ladder due for one run of a metric."""

    index: int
    step: Step
    clock: Clock
    at: datetime


async def history(conn: AsyncConnection, ticket: Ticket) -> History:
    """The ticket's statuses and messages as the calculator takes them."""
    changes = await ticket_store.list_changes(conn, ticket.id)
    statuses = [
        (c.at, TicketStatus(c.value))
        for c in changes
        if c.field is ChangedField.STATUS and c.value is not None
    ]
    if not statuses or statuses[0][0] > ticket.created_at:
        statuses.insert(0, (ticket.created_at, TicketStatus.NEW))
    found = await ticket_store.list_messages(conn, ticket.id)
    return History(
        created_at=ticket.created_at,
        statuses=tuple(statuses),
        messages=tuple((m.created_at, m.direction) for m in found),
    )


@dataclass(frozen=True, kw_only=True)
class Reading:
    """What a ticket's clocks are computed from, read once per transaction: the desk's
    policy and the ticket's history. A timer's check renders the header and plans the next
    wake from one reading (each read is ~3 statements and a policy parse)."""

    spec: PolicySpec
    history: History

    def runs(self, now: datetime) -> list[Clock]:
        """Every run of the ticket's clocks."""
        return sla.runs(self.history, self.spec.calculator(), now)

    def clocks(self, now: datetime) -> list[Clock]:
        """Each tracked metric's latest run."""
        return sla.clocks(self.history, self.spec.calculator(), now)


async def read(conn: AsyncConnection, ticket: Ticket) -> Reading | None:
    """The ticket's policy and history (None: the desk has no policy)."""
    stored = await sla_store.policy(conn, ticket.desk_id)
    if stored is None:
        return None
    return Reading(spec=stored.spec, history=await history(conn, ticket))


async def current_clocks(
    conn: AsyncConnection, ticket: Ticket, now: datetime
) -> list[Clock] | None:
    """Each tracked metric's latest run (None: the desk has no policy)."""
    reading = await read(conn, ticket)
    return None if reading is None else reading.clocks(now)


def live(clock: Clock, ticket: Ticket) -> bool:
    """A run the ladder still acts on: unmet, running, not paused, the ticket not resolved."""
    return (
        clock.met_at is None
        and clock.due_at is not None
        and not clock.paused
        and ticket.status not in sla.STOPPED
    )


def steps_of(spec: PolicySpec, clock: Clock) -> list[Due]:
    """The ladder's steps for a live run, each at the time it fires."""
    found: list[Due] = []
    assert clock.due_at is not None
    for index, step in enumerate(spec.escalation):
        if not step.applies_to(clock.metric):
            continue
        if step.warn_before_seconds is not None:
            at = clock.due_at - timedelta(seconds=step.warn_before_seconds)
        else:
            at = clock.due_at + timedelta(seconds=step.after_seconds or 0)
        found.append(Due(index=index, step=step, clock=clock, at=at))
    return found


async def plan(conn: AsyncConnection, rt: Runtime, ticket: Ticket) -> datetime | None:
    """Queue the ticket's timer for the next moment a breach or step may happen (none when
    nothing will); its wake time. A breach not yet recorded wakes it at once."""
    return await plan_from(conn, rt, ticket, await read(conn, ticket))


async def plan_from(
    conn: AsyncConnection, rt: Runtime, ticket: Ticket, reading: Reading | None
) -> datetime | None:
    """`plan` from a reading the caller already holds (its history must be current)."""
    if reading is None:
        return None  # no policy: a timer left from one finds none when it runs, and ends
    now = rt.clock()
    spec, runs = reading.spec, reading.runs(now)
    fired = await sla_store.fired_steps(conn, ticket.id)
    recorded = {(b.metric, b.due_at) for b in await sla_store.list_breaches(conn, ticket.id)}
    moments: list[datetime] = []
    for run in runs:
        if run.breached_at is not None and (run.metric, run.breached_at) not in recorded:
            moments.append(run.breached_at)
        if not live(run, ticket):
            continue
        assert run.due_at is not None
        if run.breached_at is None:
            moments.append(run.due_at)
        moments += [
            due.at
            for due in steps_of(spec, run)
            if (run.metric, run.due_at, due.index) not in fired
        ]
    wake = max(min(moments), now) if moments else None
    await _set_timer(conn, rt, ticket.id, wake)
    return wake


async def current_wake(conn: AsyncConnection, ticket_id: str) -> datetime | None:
    row = (await conn.execute(timers.select().where(timers.c.ticket_id == ticket_id))).first()
    return None if row is None else row.wake_at


async def forget(conn: AsyncConnection, ticket_id: str) -> None:
    """Drop the ticket's timer row (its job has run); `plan` makes the next."""
    await conn.execute(delete(timers).where(timers.c.ticket_id == ticket_id))


async def _set_timer(
    conn: AsyncConnection, rt: Runtime, ticket_id: str, wake: datetime | None
) -> None:
    if wake is None:
        await forget(conn, ticket_id)
        return
    if await current_wake(conn, ticket_id) == wake:
        return  # that job is queued already
    changed = await conn.execute(
        update(timers).where(timers.c.ticket_id == ticket_id).values(wake_at=wake)
    )
    if not changed.rowcount:
        await conn.execute(
            dialects.upsert(conn.dialect.name, timers)
            .values(ticket_id=ticket_id, wake_at=wake)
            .on_conflict_do_nothing()
        )
    await job_store.enqueue(
        conn,
        [
            NewJob(
                kind=SLA_CHECK,
                payload={"ticket_id": ticket_id, "wake_at": wake.isoformat()},
                run_at=wake,
            )
        ],
        now=rt.clock(),
        default_max_attempts=rt.settings.job_max_attempts,
    )
