"""The support_sla_check job: record each breach once (ticket.sla_breached), fire the
ladder's due steps once each, and plan the ticket's next wake.

A step fires only for a live run (sla_timer.live): answering the ticket (the metric met),
pausing it or resolving it stops the ladder. The fired row and the step's sends or event
are written in one transaction, so a step is neither lost nor repeated across a crash.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.events import catalog
from tgrelay.events import service as events
from tgrelay.events.catalog import EventType
from tgrelay.groups import service as groups
from tgrelay.queue import worker
from tgrelay.queue.models import Job
from tgrelay.runtime import Runtime
from tgrelay.support import lifecycle, sends, sla_store, sla_timer, store, ticket_store
from tgrelay.support.models import Ticket
from tgrelay.support.sla import Clock
from tgrelay.support.sla_policy import Action, Step
from tgrelay.telegram.outbox import jobs as outbox
from tgrelay.telegram.outbox import messages

log = structlog.get_logger(__name__)

BREACHED = "⏰ SLA: {metric} breached (was due {due})"
WARNING = "⏰ SLA: {metric} due {due}"


def register(registry: worker.Registry, rt: Runtime) -> None:
    async def run(conn: AsyncConnection, job: Job) -> None:
        await check(
            conn, rt, str(job.payload["ticket_id"]), datetime.fromisoformat(job.payload["wake_at"])
        )

    registry.register(sla_timer.SLA_CHECK, run)


async def check(conn: AsyncConnection, rt: Runtime, ticket_id: str, wake_at: datetime) -> None:
    """The timer's run: nothing when a later plan replaced it."""
    ticket = await ticket_store.ticket(conn, ticket_id, for_update=True)
    if ticket is None or await sla_timer.current_wake(conn, ticket_id) != wake_at:
        return
    now = rt.clock()
    # Read once: breaches, steps, the header and the next plan all follow from this history
    # (nothing below adds a status or a customer/agent message to it).
    reading = await sla_timer.read(conn, ticket)
    if reading is not None:
        clocks = reading.runs(now)
        breached = [await _record_breach(conn, rt, ticket, clock, now) for clock in clocks]
        if any(breached):  # the header says "breached" from now on
            ticket = await lifecycle.show(conn, rt, ticket.id, clocks=reading.clocks(now))
        for clock in clocks:
            if not sla_timer.live(clock, ticket):
                continue
            for due in sla_timer.steps_of(reading.spec, clock):
                if due.at > now:
                    continue
                assert clock.due_at is not None
                if await sla_store.add_escalation(
                    conn, ticket.id, clock.metric, clock.due_at, due.index, now
                ):
                    ticket = await _fire(conn, rt, ticket, due.index, due.step, clock)
    await sla_timer.forget(conn, ticket_id)
    await sla_timer.plan_from(conn, rt, ticket, reading)


async def _record_breach(
    conn: AsyncConnection, rt: Runtime, ticket: Ticket, clock: Clock, now: datetime
) -> bool:
    """Record and announce the run's breach unless it was; whether this call did."""
    if clock.breached_at is None or clock.due_at is None or clock.breached_at > now:
        return False
    breach = sla_store.Breach(
        ticket_id=ticket.id,
        metric=clock.metric,
        due_at=clock.due_at,
        breached_at=clock.breached_at,
        recorded_at=now,
    )
    if not await sla_store.add_breach(conn, breach):
        return False
    log.info("ticket.sla_breached", ticket_id=ticket.id, metric=clock.metric.value)
    await events.emit(
        conn,
        rt,
        workspace_id=ticket.workspace_id,
        event_type=EventType.TICKET_SLA_BREACHED,
        data=catalog.TicketSlaBreachedData(
            ticket_id=ticket.id,
            metric=clock.metric.value,
            due_at=clock.due_at,
            breached_at=clock.breached_at,
        ),
        now=now,
    )
    return True


async def _fire(
    conn: AsyncConnection, rt: Runtime, ticket: Ticket, index: int, step: Step, clock: Clock
) -> Ticket:
    """Do one step; the ticket as it is after (a reassignment changes it)."""
    reason = reason_of(clock)
    text = step.text or f"{reason_text(clock)} · ticket #{ticket.number} {ticket.subject}"
    log.info("ticket.escalation_step", ticket_id=ticket.id, step=index, action=step.action)
    if step.action is Action.MENTION:
        await _mention(conn, rt, ticket, step, text)
    elif step.action is Action.MESSAGE_USER:
        assert step.user_id is not None
        await _send(conn, rt, ticket, ticket.bot_id, step.user_id, text)
    elif step.action is Action.POST_TO_CONNECTION:
        assert step.connection_id is not None
        group = await groups.connection_on(conn, step.connection_id)
        if group is None or group.workspace_id != ticket.workspace_id:
            log.warning("support.escalation_no_connection", connection_id=step.connection_id)
        else:
            await _send(conn, rt, ticket, group.bot_id, group.chat_id, text)
    elif step.action is Action.REASSIGN:
        if step.to == "round_robin":
            agent = await store.next_in_rotation(conn, ticket.workspace_id)
        else:
            assert isinstance(step.to, int)
            agent = await store.agent(conn, ticket.workspace_id, step.to)
        if agent is None:
            log.warning("support.escalation_no_agent", ticket_id=ticket.id, to=step.to)
        else:
            ticket = await lifecycle.assign(conn, rt, ticket, agent, changed_by=lifecycle.SYSTEM)
    else:
        await events.emit(
            conn,
            rt,
            workspace_id=ticket.workspace_id,
            event_type=EventType.TICKET_ESCALATED,
            data=catalog.TicketEscalatedData(ticket_id=ticket.id, step=index, reason=reason),
        )
    return ticket


def reason_of(clock: Clock) -> str:
    """Why a step fired, as ticket.escalated says it."""
    assert clock.due_at is not None
    if clock.breached_at is not None:
        return f"{clock.metric.value} breached at {clock.breached_at.isoformat()}"
    return f"{clock.metric.value} due at {clock.due_at.isoformat()}"


def reason_text(clock: Clock) -> str:
    assert clock.due_at is not None
    due = clock.due_at.strftime("%Y-%m-%d %H:%M UTC")
    template = BREACHED if clock.breached_at is not None else WARNING
    return template.format(metric=clock.metric.value.replace("_", " "), due=due)


async def _mention(
    conn: AsyncConnection, rt: Runtime, ticket: Ticket, step: Step, text: str
) -> None:
    """The text in the topic followed by the users: @usernames as written, ids as links."""
    entities: list[messages.Entity] = []
    body = text
    for user in step.users or ():
        body += " "
        if isinstance(user, int):
            label = f"user {user}"
            entities.append(
                messages.Entity(
                    type="text_link",
                    offset=_utf16(body),
                    length=_utf16(label),
                    url=f"tg://user?id={user}",
                )
            )
            body += label
        else:
            body += user if user.startswith("@") else f"@{user}"
    await sends.in_topic(conn, rt, ticket, body, entities=tuple(entities))


async def _send(
    conn: AsyncConnection, rt: Runtime, ticket: Ticket, bot_id: int, chat_id: int, text: str
) -> None:
    await outbox.enqueue(
        conn,
        rt,
        messages.SendText(bot_id=bot_id, chat_id=chat_id, text=text[: messages.MAX_TEXT_CHARS]),
        ordering_key=f"sla:{ticket.id}",
    )


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2
