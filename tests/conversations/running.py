"""Helpers of the runtime's tests: flows stored as the API would, updates by hand, and the
jobs the runtime queued, run as their workers would run them."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from tests.dispatching import Dispatching, Produced
from tests.support.desks import requests
from tgrelay import app
from tgrelay.conversations import checks, runtime, store
from tgrelay.conversations.models import State
from tgrelay.db import tables
from tgrelay.http import breakers, transport
from tgrelay.lanes import webhooks as webhooks_lane
from tgrelay.queue import retry
from tgrelay.queue import store as job_store
from tgrelay.queue.models import Job
from tgrelay.queue.worker import NonTransactional, Transactional
from tgrelay.telegram.outbox import messages
from tgrelay.telegram.outbox.messages import CallbackButton

ADA: dict[str, Any] = {"id": 7001, "is_bot": False, "first_name": "Ada", "language_code": "en"}
BOB: dict[str, Any] = {"id": 7002, "is_bot": False, "first_name": "Bob"}
UPDATE_IDS = itertools.count(910001)
QUERY_IDS = itertools.count(1)


async def add_flow(
    relay: Dispatching,
    document: dict[str, Any],
    *,
    version: int = 1,
    workspace_id: str | None = None,
) -> str:
    """Store a checked flow version of the workspace (as POST /v1/flows would); its id."""
    flow = checks.parse(document)
    trigger = flow.trigger
    value = {"command": "command", "deep_link": "start", "callback": "data"}.get(trigger.type)
    workspace = workspace_id or relay.principal.workspace_id
    flow_id = f"flw_{flow.name}_{version}_{workspace}"
    async with relay.rt.db.transaction() as conn:
        await store.add_flow(
            conn,
            {
                "id": flow_id,
                "workspace_id": workspace,
                "name": flow.name,
                "version": version,
                "document": json.dumps(document),
                "trigger_kind": trigger.type,
                "trigger_value": None if value is None else getattr(trigger, value),
                "created_at": relay.rt.clock(),
            },
        )
    return flow_id


async def says(relay: Dispatching, bot_id: int, text: str, who: dict[str, Any] = ADA) -> Produced:
    """The user writes `text` in their private chat with the bot; what processing it wrote."""
    relay.emulator.emulator.send_message(bot_id, who, None, text)
    return await relay.process_pending(bot_id)


def press_update(data: str, who: dict[str, Any] = ADA, *, message_id: int = 50) -> dict[str, Any]:
    return {
        "update_id": next(UPDATE_IDS),
        "callback_query": {
            "id": f"q{next(QUERY_IDS)}",
            "from": who,
            "chat_instance": "1",
            "data": data,
            "message": {
                "message_id": message_id,
                "date": 0,
                "chat": {"id": who["id"], "type": "private"},
            },
        },
    }


async def presses(
    relay: Dispatching, bot_id: int, data: str, who: dict[str, Any] = ADA
) -> Produced:
    return await relay.process(bot_id, [press_update(data, who)])


def replies(produced: Produced) -> list[tuple[str, list[str]]]:
    """Each SendText the batch queued: its text and its buttons' callback data."""
    found = []
    for request in requests(produced):
        if isinstance(request, messages.SendText):
            rows = () if request.keyboard is None else request.keyboard.rows
            data = [b.callback_data for row in rows for b in row if isinstance(b, CallbackButton)]
            found.append((request.text, data))
    return found


def answers(produced: Produced) -> list[str | None]:
    """The notices of the callback answers the batch queued."""
    return [r.text for r in requests(produced) if isinstance(r, messages.AnswerCallback)]


def conversation_events(produced: Produced) -> list[tuple[str, dict[str, Any]]]:
    return [(e.type, e.data) for e in produced.events if e.type.startswith("conversation.")]


async def only_conversation(relay: Dispatching) -> store.StoredConversation:
    async with relay.rt.db.engine.connect() as conn:
        rows = await store.list_conversations(conn, relay.principal.workspace_id, limit=10)
    [row] = rows
    return row


def state_of(row: store.StoredConversation) -> State:
    return State.model_validate_json(row.state)


async def history(
    relay: Dispatching, conversation_id: str
) -> list[tuple[str | None, str | None, str | None]]:
    async with relay.rt.db.engine.connect() as conn:
        found = await store.history(conn, conversation_id)
    return [(t.from_step, t.to_step, t.input_summary) for t in found]


async def queued(relay: Dispatching, kind: str) -> list[Job]:
    """The pending jobs of `kind`, oldest first."""
    async with relay.rt.db.engine.connect() as conn:
        ids = (
            await conn.scalars(
                select(tables.jobs.c.id)
                .where(tables.jobs.c.kind == kind, tables.jobs.c.state == "pending")
                .order_by(tables.jobs.c.id)
            )
        ).all()
        found = [await job_store.get(conn, int(job_id)) for job_id in ids]
    return [job for job in found if job is not None]


async def run_timer(relay: Dispatching, job: Job) -> Produced:
    """Run an idle timer's job in a transaction, as the worker would; what it wrote."""
    registration = app.job_registry(relay.rt).lookup(runtime.TIMEOUT)
    assert isinstance(registration, Transactional)
    return await _producing(relay, lambda conn: registration.handler(conn, job))


async def run_call(
    relay: Dispatching, job: Job, client: transport.Client, origins: breakers.Breakers
) -> tuple[Produced, float | None]:
    """Run a call job as the webhooks worker would: the POST, then its outcome recorded in a
    transaction; what that wrote, and the delay when it was rescheduled."""
    registration = webhooks_lane.registry(relay.rt, client, origins).lookup(runtime.CALL)
    assert isinstance(registration, NonTransactional)
    delay: float | None = None
    try:
        finish = await registration.handler(job)
    except retry.Reschedule as exc:
        finish, delay = exc.record, exc.delay
    if finish is None:
        return Produced(jobs=[], events=[]), delay
    return await _producing(relay, finish), delay


async def _producing(relay: Dispatching, work: Any) -> Produced:
    """Run `work(conn)` in a transaction; the jobs and events it wrote (through the helper)."""
    async with relay.rt.db.engine.connect() as conn:
        last_job = await conn.scalar(
            select(tables.jobs.c.id).order_by(tables.jobs.c.id.desc()).limit(1)
        )
        before = set((await conn.scalars(select(tables.events.c.id))).all())
    async with relay.rt.db.transaction() as conn:
        await work(conn)
    return await relay._produced(after_job=int(last_job or 0), events_before=before)


def texts(found: Sequence[tuple[str, list[str]]]) -> list[str]:
    return [text for text, _ in found]
