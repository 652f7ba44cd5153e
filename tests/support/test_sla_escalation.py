"""The SLA timer with a movable clock (tests/dispatching.py): each change plans the ticket's
one timer; when it runs a breach is recorded and announced once, and the ladder's steps
fire once each and stop once the ticket is answered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, literal_column, select

from tests.dispatching import Dispatching
from tests.support.desks import ADA, BOB, DeskSetup, latest, topic_made
from tgrelay import app
from tgrelay.db import tables
from tgrelay.queue import store as job_store
from tgrelay.queue import worker
from tgrelay.support import (
    header,
    sla_api,
    sla_escalation,
    sla_replan,
    sla_store,
    sla_timer,
    store,
    ticket_store,
)
from tgrelay.support.sla import Metric
from tgrelay.support.sla_policy import PolicySpec
from tgrelay.telegram.outbox import jobs as outbox
from tgrelay.telegram.outbox import messages
from tgrelay.testing.clock import Clock

HOUR = 3600


@dataclass(frozen=True, kw_only=True)
class Ran:
    """What one run of the timer wrote: events (type, data) and sends (the requests)."""

    events: list[tuple[str, dict[str, Any]]]
    sends: list[messages.Request]


async def policy(relay: Dispatching, desk: DeskSetup, **spec: Any) -> None:
    await sla_api.put_policy(relay.rt, relay.principal, desk.desk_id, PolicySpec(**spec))


async def opened(relay: Dispatching, desk: DeskSetup) -> tuple[str, int]:
    relay.emulator.emulator.send_message(desk.bot.id, ADA, None, "my order never arrived")
    await relay.process_pending(desk.bot.id)
    async with relay.rt.db.engine.connect() as conn:
        found = await ticket_store.latest_of_customer(conn, desk.bot.id, ADA["id"])
    assert found is not None
    return found.id, await topic_made(relay, desk, found.id)


async def wake_of(relay: Dispatching, ticket_id: str) -> datetime | None:
    async with relay.rt.db.engine.connect() as conn:
        return await sla_timer.current_wake(conn, ticket_id)


async def run_timer(relay: Dispatching, clock: Clock, ticket_id: str) -> Ran:
    """Move the clock to the ticket's timer and run it as the worker would."""
    wake = await wake_of(relay, ticket_id)
    assert wake is not None
    clock.advance(max((wake - clock()).total_seconds(), 0))
    return await run_at(relay, ticket_id, wake)


async def run_at(relay: Dispatching, ticket_id: str, wake: datetime) -> Ran:
    jobs, events = tables.jobs, tables.events
    async with relay.rt.db.engine.connect() as conn:
        last_job = await conn.scalar(select(func.coalesce(func.max(jobs.c.id), 0)))
        last_event = await conn.scalar(select(func.count()).select_from(events))
    async with relay.rt.db.transaction() as conn:
        await sla_escalation.check(conn, relay.rt, ticket_id, wake)
    async with relay.rt.db.engine.connect() as conn:
        sent = await conn.scalars(
            select(jobs.c.payload).where(jobs.c.id > last_job, jobs.c.kind == outbox.SEND)
        )
        bodies = await conn.scalars(
            select(events.c.body).order_by(literal_column("rowid")).offset(last_event)
        )
        return Ran(
            events=[
                (body["type"], body["data"]) for body in (orjson.loads(b) for b in bodies.all())
            ],
            sends=[messages.load(orjson.loads(p)[outbox.REQUEST]) for p in sent.all()],
        )


async def breached_header(relay: Dispatching, desk: DeskSetup, ticket_id: str) -> messages.Request:
    """The header edit a breach queues: the header as before, and the breached clock (the
    header's draft; the recipient renders the same at send time)."""
    ticket = await latest(relay, ticket_id)
    due = ticket.created_at + timedelta(seconds=HOUR)
    text = header.header_text(ticket, assignee=None)
    return messages.SendText(
        bot_id=desk.bot.id,
        chat_id=desk.chat_id,
        text=f"{text}\n⏱ First response: breached {due.strftime('%H:%M UTC')}",
    )


async def test_an_unanswered_ticket_breaches_once(
    relay: Dispatching, desk: DeskSetup, clock: Clock
) -> None:
    """First response due in an hour: the timer wakes then, records the breach and emits
    ticket.sla_breached once; its job run again does nothing."""
    await policy(relay, desk, first_response=HOUR)
    ticket_id, _ = await opened(relay, desk)
    ticket = await latest(relay, ticket_id)
    due = ticket.created_at + timedelta(seconds=HOUR)
    assert await wake_of(relay, ticket_id) == due

    ran = await run_timer(relay, clock, ticket_id)
    again = await run_at(relay, ticket_id, due)
    async with relay.rt.db.engine.connect() as conn:
        breaches = await sla_store.list_breaches(conn, ticket_id)

    assert ran == Ran(
        events=[
            (
                "ticket.sla_breached",
                {
                    "ticket_id": ticket_id,
                    "metric": "first_response",
                    "due_at": due.isoformat().replace("+00:00", "Z"),
                    "breached_at": due.isoformat().replace("+00:00", "Z"),
                },
            )
        ],
        sends=[await breached_header(relay, desk, ticket_id)],
    )
    assert again == Ran(events=[], sends=[])
    assert [(b.metric, b.due_at, b.breached_at) for b in breaches] == [
        (Metric.FIRST_RESPONSE, due, due)
    ]
    assert await wake_of(relay, ticket_id) is None


LADDER: list[dict[str, Any]] = [
    {"warn_before_seconds": 600, "action": "mention", "users": ["@lead_agent", 4242]},
    {"after_seconds": 0, "action": "emit"},
    {"after_seconds": 1800, "action": "message_user", "user_id": 555, "text": "Look at #1"},
]


async def test_the_ladder_warns_emits_then_messages_each_once(
    relay: Dispatching, desk: DeskSetup, clock: Clock
) -> None:
    """Ten minutes ahead the topic mentions the lead; at the breach ticket.escalated;
    half an hour later a private message; each step once."""
    await policy(relay, desk, first_response=HOUR, escalation=LADDER)
    ticket_id, thread_id = await opened(relay, desk)
    due = (await latest(relay, ticket_id)).created_at + timedelta(seconds=HOUR)
    stamp = due.strftime("%Y-%m-%d %H:%M UTC")

    warned = await run_timer(relay, clock, ticket_id)
    breached = await run_timer(relay, clock, ticket_id)
    messaged = await run_timer(relay, clock, ticket_id)

    text = f"⏰ SLA: first response due {stamp} · ticket #1 my order never arrived @lead_agent "
    assert warned == Ran(
        events=[],
        sends=[
            messages.SendText(
                bot_id=desk.bot.id,
                chat_id=desk.chat_id,
                text=text + "user 4242",
                entities=(
                    messages.Entity(
                        type="text_link",
                        offset=len(text.encode("utf-16-le")) // 2,
                        length=9,
                        url="tg://user?id=4242",
                    ),
                ),
            )
        ],
    )
    assert [t for t, _ in breached.events] == ["ticket.sla_breached", "ticket.escalated"]
    assert breached.events[1][1] == {
        "ticket_id": ticket_id,
        "step": 1,
        "reason": f"first_response breached at {due.isoformat()}",
    }
    assert breached.sends == [await breached_header(relay, desk, ticket_id)]
    assert messaged == Ran(
        events=[],
        sends=[messages.SendText(bot_id=desk.bot.id, chat_id=555, text="Look at #1")],
    )
    assert await wake_of(relay, ticket_id) is None
    assert thread_id > 0


async def test_an_answer_stops_the_ladder(
    relay: Dispatching, desk: DeskSetup, clock: Clock
) -> None:
    """After the warning an agent answers: the timer is dropped and its old job, run at the
    due time, records no breach and fires no step."""
    await policy(relay, desk, first_response=HOUR, escalation=LADDER)
    ticket_id, thread_id = await opened(relay, desk)
    due = (await latest(relay, ticket_id)).created_at + timedelta(seconds=HOUR)
    await run_timer(relay, clock, ticket_id)
    relay.emulator.emulator.send_message(
        desk.bot.id, BOB, {"id": desk.chat_id}, "on it", message_thread_id=thread_id
    )
    await relay.process_pending(desk.bot.id)
    planned = await wake_of(relay, ticket_id)

    clock.advance((due - clock()).total_seconds() + 1)
    late = await run_at(relay, ticket_id, due)

    assert planned is None
    assert late == Ran(events=[], sends=[])


async def test_a_reassign_step_gives_the_ticket_to_the_next_agent(
    relay: Dispatching, desk: DeskSetup, clock: Clock
) -> None:
    """A round-robin reassign step at the breach assigns the ticket and says so in events."""
    now = clock()
    async with relay.rt.db.transaction() as conn:
        await store.add_agent(
            conn,
            {
                "workspace_id": relay.principal.workspace_id,
                "telegram_user_id": 9001,
                "name": "Dee",
                "active": True,
                "created_at": now,
                "updated_at": now,
            },
        )
    await policy(
        relay,
        desk,
        first_response=HOUR,
        escalation=[{"after_seconds": 0, "action": "reassign", "to": "round_robin"}],
    )
    ticket_id, _ = await opened(relay, desk)

    ran = await run_timer(relay, clock, ticket_id)

    assert (await latest(relay, ticket_id)).assignee_id == 9001
    assert [t for t, _ in ran.events] == ["ticket.sla_breached", "ticket.assigned"]


async def test_a_policy_plans_the_timers_of_tickets_already_open(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """A ticket opened before the desk had a policy gets its timer when one is set, and
    loses it when the policy is deleted and the timer runs."""
    ticket_id, _ = await opened(relay, desk)
    before = await wake_of(relay, ticket_id)
    await policy(relay, desk, resolution=2 * HOUR)
    planned = await wake_of(relay, ticket_id)
    await sla_api.delete_policy(relay.rt, relay.principal, desk.desk_id)
    assert planned is not None
    ran = await run_at(relay, ticket_id, planned)

    created = (await latest(relay, ticket_id)).created_at
    assert (before, planned) == (None, created + timedelta(seconds=2 * HOUR))
    assert ran == Ran(events=[], sends=[])
    assert await wake_of(relay, ticket_id) is None


async def agent_writes(relay: Dispatching, desk: DeskSetup, thread_id: int, text: str) -> None:
    relay.emulator.emulator.send_message(
        desk.bot.id, BOB, {"id": desk.chat_id}, text, message_thread_id=thread_id
    )
    await relay.process_pending(desk.bot.id)


async def customer_writes(relay: Dispatching, desk: DeskSetup, text: str) -> None:
    relay.emulator.emulator.send_message(desk.bot.id, ADA, None, text)
    await relay.process_pending(desk.bot.id)


async def test_pending_drops_the_timer_and_the_customers_answer_resumes_it(
    relay: Dispatching, desk: DeskSetup, clock: Clock
) -> None:
    """Twenty minutes in, /pending: no timer while the clock is paused; the customer writes
    forty minutes later and the first response falls due forty minutes after that."""
    await policy(relay, desk, first_response=HOUR)
    ticket_id, thread_id = await opened(relay, desk)
    created = (await latest(relay, ticket_id)).created_at
    clock.advance(20 * 60)
    await agent_writes(relay, desk, thread_id, "/pending")
    paused = await wake_of(relay, ticket_id)
    clock.advance(40 * 60)
    await customer_writes(relay, desk, "here is the order number")
    resumed = await wake_of(relay, ticket_id)

    assert paused is None
    assert resumed == created + timedelta(minutes=100)


async def test_each_customer_message_after_an_answer_starts_a_next_response_clock(
    relay: Dispatching, desk: DeskSetup, clock: Clock
) -> None:
    """After the first answer nothing is due; the customer's next message plans the next
    response half an hour on, and its breach is recorded for that run."""
    await policy(relay, desk, first_response=HOUR, next_response=1800)
    ticket_id, thread_id = await opened(relay, desk)
    await agent_writes(relay, desk, thread_id, "on it")
    answered = await wake_of(relay, ticket_id)
    clock.advance(600)
    written_at = clock()
    await customer_writes(relay, desk, "any news?")
    planned = await wake_of(relay, ticket_id)
    ran = await run_timer(relay, clock, ticket_id)

    assert answered is None
    assert planned == written_at + timedelta(seconds=1800)
    assert [(t, d["metric"]) for t, d in ran.events] == [("ticket.sla_breached", "next_response")]


async def test_a_breach_passed_while_nobody_looked_is_recorded_when_paused(
    relay: Dispatching, desk: DeskSetup, clock: Clock
) -> None:
    """The due time passes before the timer ran and the ticket is then set pending: the
    timer wakes at once and records the breach, though the clock is paused now."""
    await policy(relay, desk, first_response=HOUR)
    ticket_id, thread_id = await opened(relay, desk)
    due = (await latest(relay, ticket_id)).created_at + timedelta(seconds=HOUR)
    clock.advance(HOUR + 60)
    await agent_writes(relay, desk, thread_id, "/pending")
    wake = await wake_of(relay, ticket_id)
    ran = await run_timer(relay, clock, ticket_id)

    assert wake == clock()
    assert [(t, d["due_at"]) for t, d in ran.events] == [
        ("ticket.sla_breached", due.isoformat().replace("+00:00", "Z"))
    ]
    assert await wake_of(relay, ticket_id) is None


async def test_a_post_to_connection_step_goes_through_the_connections_bot(
    relay: Dispatching, desk: DeskSetup, clock: Clock
) -> None:
    """A post_to_connection step sends its text to the group of the connection named."""
    await policy(
        relay,
        desk,
        first_response=HOUR,
        escalation=[
            {
                "after_seconds": 0,
                "action": "post_to_connection",
                "connection_id": "conn_desk",
                "text": "Ticket #1 waits",
            }
        ],
    )
    ticket_id, _ = await opened(relay, desk)

    ran = await run_timer(relay, clock, ticket_id)

    assert ran.sends[1:] == [
        messages.SendText(bot_id=desk.bot.id, chat_id=desk.chat_id, text="Ticket #1 waits")
    ]


async def test_a_policy_replans_a_large_desk_a_page_per_transaction(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """Re-planning walks the desk's live tickets a page at a time: the first page in the
    change's transaction, the rest in a support_sla_replan job that plans what is left and
    queues nothing more once the desk is done."""
    customers = [{"id": 9100 + n, "is_bot": False, "first_name": f"C{n}"} for n in range(3)]
    for customer in customers:
        relay.emulator.emulator.send_message(desk.bot.id, customer, None, "where is my order")
    await relay.process_pending(desk.bot.id)
    spec = PolicySpec(resolution=2 * HOUR)
    async with relay.rt.db.transaction() as conn:
        await sla_store.put_policy(
            conn, relay.principal.workspace_id, desk.desk_id, spec, relay.rt.clock()
        )
        await sla_replan.replan(conn, relay.rt, relay.principal.workspace_id, desk.desk_id, page=2)
    first_page, queued = await _planned(relay), await _replan_jobs(relay)

    # The rest as the worker runs it: the handler `serve` registers for the job.
    registration = app.job_registry(relay.rt).lookup(sla_replan.SLA_REPLAN)
    assert isinstance(registration, worker.Transactional)
    async with relay.rt.db.transaction() as conn:
        [job_id] = await _replan_job_ids(relay)
        job = await job_store.get(conn, job_id)
        assert job is not None
        await registration.handler(conn, job)
    after_job, queued_after = await _planned(relay), await _replan_jobs(relay)

    assert (len(first_page), len(after_job)) == (2, 3)
    assert queued == [
        {
            "workspace_id": relay.principal.workspace_id,
            "desk_id": desk.desk_id,
            "status_index": 0,
            "before": min(first_page),
        }
    ]
    assert queued_after == queued  # the job itself is the queue's to complete; none was added


async def _planned(relay: Dispatching) -> list[int]:
    """The numbers of the tickets that have an SLA timer."""
    tickets, timers = tables.tickets, tables.ticket_sla_timers
    async with relay.rt.db.engine.connect() as conn:
        rows = await conn.scalars(
            select(tickets.c.number).join(timers, timers.c.ticket_id == tickets.c.id)
        )
        return sorted(rows.all())


async def _replan_job_ids(relay: Dispatching) -> list[int]:
    jobs = tables.jobs
    async with relay.rt.db.engine.connect() as conn:
        found = await conn.scalars(
            select(jobs.c.id).where(jobs.c.kind == sla_replan.SLA_REPLAN).order_by(jobs.c.id)
        )
        return list(found.all())


async def _replan_jobs(relay: Dispatching) -> list[dict[str, Any]]:
    jobs = tables.jobs
    async with relay.rt.db.engine.connect() as conn:
        payloads = await conn.scalars(
            select(jobs.c.payload).where(jobs.c.kind == sla_replan.SLA_REPLAN).order_by(jobs.c.id)
        )
        return [orjson.loads(p) for p in payloads.all()]
