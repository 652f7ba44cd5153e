"""The engine running for real: a conversation's input fed to `engine.advance`, and its
effects carried out in the caller's transaction (the job that brought the input).

    feed/start ─▶ advance ─▶ state row (+ status, step_id, ended_at, end_reason)
                          ├▶ a conversation_transitions row per Transition
                          ├▶ SendMessage ─▶ the outbox (per-chat order, buttons tagged `cv:`)
                          ├▶ Emit ─▶ events (conversation.*)
                          ├▶ RequestCall ─▶ a durable conversation_call job
                          ├▶ OpenTicket ─▶ support's handoff (none: the conversation fails)
                          └▶ waiting for the user ─▶ a conversation_timeout job

The state is written with a compare-and-set on the JSON it was read as: per-chat order
keeps a chat's updates apart, and a call's outcome or a timer that raced one finds the
state moved and does nothing (`Moved`).
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.conversations import checks, engine, inputs, store
from tgrelay.conversations.engine import (
    Effect,
    Emit,
    OpenTicket,
    RequestCall,
    SendMessage,
    Transition,
)
from tgrelay.conversations.flow import Flow
from tgrelay.conversations.models import (
    TERMINAL,
    AbandonReason,
    ConversationAbandonedData,
    ConversationStepFailedData,
    Facts,
    Input,
    Start,
    State,
    Status,
)
from tgrelay.db import engine as db_engine
from tgrelay.events import catalog
from tgrelay.events import service as events
from tgrelay.events.catalog import EventType
from tgrelay.http import calls
from tgrelay.queue import store as job_store
from tgrelay.queue.models import NewJob
from tgrelay.runtime import Runtime
from tgrelay.support import service as support
from tgrelay.support.models import Customer
from tgrelay.telegram.outbox import jobs as outbox
from tgrelay.telegram.outbox import messages
from tgrelay.telegram.outbox.messages import CallbackButton, Keyboard

log = structlog.get_logger(__name__)

TIMEOUT = "conversation_timeout"  # {"conversation_id", "last_input_at"}: the idle timer
CALL = "conversation_call"  # {"conversation_id", "step", "url", "body", …}: a call step's POST
# Calls are slow network work: they share the webhooks queue's worker with event deliveries,
# not the slots that updates and Telegram sends need.
CALL_QUEUE = events.WEBHOOKS_QUEUE

# The engine's event types, as the catalog declares them, with the catalog's data models.
_EVENTS: dict[str, tuple[EventType, type[BaseModel]]] = {
    "conversation.started": (EventType.CONVERSATION_STARTED, catalog.ConversationStartedData),
    "conversation.completed": (
        EventType.CONVERSATION_COMPLETED,
        catalog.ConversationCompletedData,
    ),
    "conversation.abandoned": (
        EventType.CONVERSATION_ABANDONED,
        catalog.ConversationAbandonedData,
    ),
    "conversation.step_failed": (
        EventType.CONVERSATION_STEP_FAILED,
        catalog.ConversationStepFailedData,
    ),
}


class Moved(Exception):
    """The conversation's state changed between reading and writing it (another job moved it)."""


@dataclass(frozen=True, kw_only=True)
class Live:
    """A stored conversation as the runtime moves it: its row, flow and state."""

    row: store.StoredConversation
    flow: Flow
    state: State


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What feeding an input did."""

    conversation_id: str
    moved: bool  # false: the input did not fit the state (a stale button, a late timer, …)
    state: State


@functools.lru_cache(maxsize=256)
def flow_of(document: str) -> Flow:
    """A stored flow version's document as a Flow (versions never change: parsed once)."""
    return checks.parse(document)


async def live(conn: AsyncConnection, conversation_id: str) -> Live | None:
    """The conversation with its flow version and state; None when there is no such row."""
    row = await store.conversation(conn, conversation_id)
    return None if row is None else await _loaded(conn, row)


async def live_of(conn: AsyncConnection, bot_id: int, chat_id: int, user_id: int) -> Live | None:
    """The participant's conversation not ended, if any."""
    row = await store.live_conversation(conn, bot_id, chat_id, user_id)
    return None if row is None else await _loaded(conn, row)


async def _loaded(conn: AsyncConnection, row: store.StoredConversation) -> Live:
    stored_flow = await store.flow_by_id(conn, row.flow_id)
    assert stored_flow is not None  # a conversation's flow version is never deleted
    return Live(
        row=row, flow=flow_of(stored_flow.document), state=State.model_validate_json(row.state)
    )


async def start(
    conn: AsyncConnection,
    rt: Runtime,
    flow_row: store.StoredFlow,
    *,
    bot_id: int,
    facts: Facts,
    variables: dict[str, Any] | None = None,
) -> Outcome:
    """Start a conversation of this flow version with the participant (none live: the caller
    checked; the unique index refuses a second one)."""
    flow = flow_of(flow_row.document)
    now = rt.clock()
    start_input = Start(version=flow_row.version, facts=facts, variables=variables)
    state, effects = engine.advance(flow, None, start_input, now)
    assert state is not None
    conversation_id = f"cnv_{secrets.token_hex(10)}"
    row = store.StoredConversation(
        id=conversation_id,
        workspace_id=flow_row.workspace_id,
        flow_id=flow_row.id,
        flow_name=flow_row.name,
        bot_id=bot_id,
        chat_id=facts.chat_id,
        user_id=facts.user_id,
        status=state.status.value,
        step_id=state.step,
        state="",
        end_reason=None,
        started_at=now,
        updated_at=now,
        ended_at=None,
    )
    state = await _apply(conn, rt, row, flow, None, state, effects, now)
    log.info("conversation.started", conversation_id=conversation_id, flow=flow_row.name)
    return Outcome(conversation_id=conversation_id, moved=True, state=state)


async def feed(conn: AsyncConnection, rt: Runtime, found: Live, event: Input) -> Outcome:
    """Give the conversation an input; carry out what the engine says, in `conn`'s transaction.
    Moved when another job changed the state since `found` was read."""
    now = rt.clock()
    state, effects = engine.advance(found.flow, found.state, event, now)
    assert state is not None
    if not effects and state == found.state:
        return Outcome(conversation_id=found.row.id, moved=False, state=state)
    state = await _apply(conn, rt, found.row, found.flow, found.state, state, effects, now)
    return Outcome(conversation_id=found.row.id, moved=True, state=state)


# --- carrying out the effects ------------------------------------------------------------


async def _apply(
    conn: AsyncConnection,
    rt: Runtime,
    row: store.StoredConversation,
    flow: Flow,
    before: State | None,
    state: State,
    effects: Sequence[Effect],
    now: datetime,
) -> State:
    """Write the new state and everything the move asks for; the state as stored."""
    found = list(effects)
    await _write_state(conn, row, before, state, now)  # first: a raced move writes nothing
    if any(isinstance(effect, OpenTicket) for effect in found):
        handed, found = await _handoff(conn, rt, row, state, found, now)
        if handed != state:
            state = handed
            await store.change_conversation(conn, row.id, **_columns(state, now))
    sends: list[SendMessage] = []
    emitted: list[events.NewEvent] = []
    for effect in found:
        if isinstance(effect, Transition):
            await store.add_transition(
                conn,
                {
                    "conversation_id": row.id,
                    "from_step": effect.from_step,
                    "to_step": effect.to_step,
                    "input_summary": effect.summary,
                    "at": effect.at,
                },
            )
        elif isinstance(effect, SendMessage):
            sends.append(effect)
        elif isinstance(effect, Emit):
            event_type, model = _EVENTS[effect.type]
            data = model.model_validate(effect.data.model_dump(mode="json"))
            emitted.append(events.NewEvent(event_type=event_type, data=data))
        elif isinstance(effect, RequestCall):
            await _enqueue_call(conn, rt, row, effect, now)
    for send in sends:
        await outbox.enqueue(conn, rt, _send_request(row, send))
    if emitted:
        await events.emit_many(conn, rt, workspace_id=row.workspace_id, events=emitted, now=now)
    await _plan_timer(conn, rt, row.id, flow, before, state, now)
    return state


async def _write_state(
    conn: AsyncConnection,
    row: store.StoredConversation,
    before: State | None,
    state: State,
    now: datetime,
) -> None:
    values = _columns(state, now)
    if before is None:
        await store.add_conversation(
            conn,
            {
                "id": row.id,
                "workspace_id": row.workspace_id,
                "flow_id": row.flow_id,
                "flow_name": row.flow_name,
                "bot_id": row.bot_id,
                "chat_id": row.chat_id,
                "user_id": row.user_id,
                "started_at": row.started_at,
                **values,
            },
        )
        return
    if not await store.move_conversation(conn, row.id, expected_state=row.state, **values):
        raise Moved(f"conversation {row.id} moved while this input was handled")


def _columns(state: State, now: datetime) -> dict[str, Any]:
    """The conversation's columns for `state`: the JSON and what queries filter on."""
    return {
        "status": state.status.value,
        "step_id": state.step,
        "state": state.model_dump_json(),
        "end_reason": None if state.reason is None else state.reason.value,
        "updated_at": now,
        "ended_at": now if state.status in TERMINAL else None,
    }


def _send_request(row: store.StoredConversation, send: SendMessage) -> messages.SendText:
    keyboard = None
    if send.buttons:
        keyboard = Keyboard.column(
            *(
                CallbackButton(text=choice.text, callback_data=inputs.CALLBACK_TAG + choice.data)
                for choice in send.buttons
            )
        )
    text = send.text.strip() or "…"  # Telegram refuses an empty message
    if len(text) > messages.MAX_TEXT_CHARS:
        text = text[: messages.MAX_TEXT_CHARS - 1] + "…"
    return messages.SendText(bot_id=row.bot_id, chat_id=row.chat_id, text=text, keyboard=keyboard)


async def _enqueue_call(
    conn: AsyncConnection,
    rt: Runtime,
    row: store.StoredConversation,
    request: RequestCall,
    now: datetime,
) -> None:
    """The call step's POST, as a durable job: it goes once this transaction commits."""
    job = NewJob(
        kind=CALL,
        queue=CALL_QUEUE,
        payload={
            "conversation_id": row.id,
            "workspace_id": row.workspace_id,
            "step": request.step,
            "url": request.url,
            "body": request.payload,
            "timeout_seconds": request.timeout_seconds,
            "deadline": request.deadline.isoformat(),
            # The webhook-id of every attempt of this call: the app can drop repeats.
            "call_id": calls.new_call_id(),
        },
    )
    db_engine.after_commit(conn, functools.partial(rt.notify_queue, job.queue))
    await job_store.enqueue(conn, [job], now=now, default_max_attempts=rt.settings.job_max_attempts)


async def _plan_timer(
    conn: AsyncConnection,
    rt: Runtime,
    conversation_id: str,
    flow: Flow,
    before: State | None,
    state: State,
    now: datetime,
) -> None:
    """Waiting for the user anew (a new input, or back from a call): the idle timer, due
    `timeout_seconds` after the last input (at once when that is past). A timer whose
    `last_input_at` is no longer the state's, or that fires while not waiting, does nothing."""
    if state.status is not Status.ACTIVE:
        return
    if (
        before is not None
        and before.status is Status.ACTIVE
        and before.last_input_at == state.last_input_at
    ):
        return  # the timer already queued still holds
    due = max(state.last_input_at + timedelta(seconds=flow.timeout_seconds), now)
    await job_store.enqueue(
        conn,
        [
            NewJob(
                kind=TIMEOUT,
                payload={
                    "conversation_id": conversation_id,
                    "last_input_at": state.last_input_at.isoformat(),
                },
                run_at=due,
            )
        ],
        now=now,
        default_max_attempts=rt.settings.job_max_attempts,
    )


# --- handoff ----------------------------------------------------------------------------

NO_DESK = "Sorry, nobody can take this over in this chat right now."


async def _handoff(
    conn: AsyncConnection,
    rt: Runtime,
    row: store.StoredConversation,
    state: State,
    effects: list[Effect],
    now: datetime,
) -> tuple[State, list[Effect]]:
    """Open the ticket the handoff step asks for; when the bot has no desk, the user is told
    and the conversation fails instead of completing."""
    at = next(i for i, effect in enumerate(effects) if isinstance(effect, OpenTicket))
    ticket = effects[at]
    assert isinstance(ticket, OpenTicket)
    facts = state.facts
    refused = await support.open_handoff(
        conn,
        rt,
        bot_id=row.bot_id,
        chat_id=row.chat_id,
        customer=Customer(
            id=facts.user_id,
            first_name=facts.first_name,
            last_name=facts.last_name,
            username=facts.username,
            language_code=facts.language_code,
        ),
        title=f"Conversation “{state.flow}” handed over",
        summary=ticket.summary,
        at=now,
    )
    if refused is None:
        return state, effects
    # Keep what led into the handoff step; replace its message, ticket and completion.
    entered = max(i for i, effect in enumerate(effects[:at]) if isinstance(effect, Transition))
    failed = state.model_copy(update={"status": Status.ABANDONED, "reason": AbandonReason.FAILED})
    who: dict[str, Any] = {
        "flow": state.flow,
        "version": state.version,
        "chat_id": facts.chat_id,
        "user_id": facts.user_id,
    }
    return failed, [
        *effects[: entered + 1],
        SendMessage(text=NO_DESK),
        Emit(
            type="conversation.step_failed",
            data=ConversationStepFailedData(**who, step=state.step, reason=refused),
        ),
        Transition(from_step=state.step, to_step=None, summary=f"failed: {refused}", at=now),
        Emit(
            type="conversation.abandoned",
            data=ConversationAbandonedData(**who, reason=AbandonReason.FAILED, step=state.step),
        ),
    ]
