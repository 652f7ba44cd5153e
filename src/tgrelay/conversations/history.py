"""Conversations as the API and the pages show them: lists newest first, and one
conversation with its state and every transition (GET /v1/conversations, the pages).

Variables set by a `sensitive` ask step read `***` here, as they do in the history: these
views are for operators and read-only keys. The team's app gets them in full where it needs
them (`conversation.completed` and the call steps' requests).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tgrelay import errors
from tgrelay.conversations import store
from tgrelay.conversations.engine import MASK
from tgrelay.conversations.flow import AskStep, Flow
from tgrelay.conversations.models import AbandonReason, State, Status
from tgrelay.runtime import Runtime

MAX_PAGE = 200


@dataclass(frozen=True, kw_only=True)
class Conversation:
    id: str
    flow: str  # the flow's name
    version: int  # the flow's version it runs
    bot_id: int
    chat_id: int
    user_id: int
    user_name: str  # the user's first name (and @username) when it started
    status: Status
    step: str  # where it waits, or where it ended or stopped
    end_reason: AbandonReason | None
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class Transition:
    from_step: str | None  # null: the conversation started
    to_step: str | None  # null: the conversation ended
    input: str | None  # what moved it, a sensitive step's answer masked
    at: datetime


@dataclass(frozen=True, kw_only=True)
class ConversationDetail:
    conversation: Conversation
    variables: dict[str, Any]  # sensitive ones as MASK
    sensitive: list[str]  # the names masked, sorted
    history: list[Transition]  # oldest first


@dataclass(frozen=True, kw_only=True)
class ConversationPage:
    conversations: list[Conversation]
    next_before: str | None  # the last one's id when older ones exist


async def list_conversations(
    rt: Runtime,
    workspace_id: str,
    *,
    flow: str | None = None,
    status: Status | None = None,
    before: str | None = None,
    limit: int = 50,
) -> ConversationPage:
    """Newest first; `before` a conversation id (from `next_before`): the ones that started
    before it. InvalidInput when `before` is no conversation of the workspace."""
    async with rt.db.engine.connect() as conn:
        after = None
        if before is not None:
            after = await store.conversation(conn, before, workspace_id=workspace_id)
            if after is None:
                raise errors.InvalidInput(f"before names no conversation: {before}")
        found = await store.conversations_page(
            conn,
            workspace_id,
            flow=flow,
            status=None if status is None else status.value,
            after=after,
            limit=limit + 1,  # one more than shown: whether an older page exists at all
        )
    shown = [_conversation(row) for row in found[:limit]]
    return ConversationPage(
        conversations=shown, next_before=shown[-1].id if len(found) > limit else None
    )


async def get_conversation(
    rt: Runtime, workspace_id: str, conversation_id: str
) -> ConversationDetail:
    """The conversation with its variables and history; NotFound for another workspace's."""
    async with rt.db.engine.connect() as conn:
        row = await store.conversation(conn, conversation_id, workspace_id=workspace_id)
        if row is None:
            raise errors.NotFound(f"no conversation {conversation_id}")
        flow_row = await store.flow_by_id(conn, row.flow_id)
        moves = await store.history(conn, conversation_id)
    state = State.model_validate_json(row.state)
    hidden = (
        set()
        if flow_row is None
        else sensitive_variables(Flow.model_validate_json(flow_row.document))
    )
    return ConversationDetail(
        conversation=_conversation(row, state),
        variables={
            name: MASK if name in hidden else value for name, value in state.variables.items()
        },
        sensitive=sorted(hidden & state.variables.keys()),
        history=[
            Transition(
                from_step=move.from_step,
                to_step=move.to_step,
                input=move.input_summary,
                at=move.at,
            )
            for move in moves
        ],
    )


async def live_counts(rt: Runtime, workspace_id: str) -> dict[str, int]:
    """How many conversations not yet ended each flow has, by name (flows without: absent)."""
    async with rt.db.engine.connect() as conn:
        return await store.live_counts(conn, workspace_id)


def sensitive_variables(flow: Flow) -> set[str]:
    """The variables a `sensitive` ask step of the flow sets."""
    return {step.variable for step in flow.steps if isinstance(step, AskStep) and step.sensitive}


def _conversation(row: store.StoredConversation, state: State | None = None) -> Conversation:
    state = state or State.model_validate_json(row.state)
    facts = state.facts
    user_name = facts.first_name + (f" @{facts.username}" if facts.username else "")
    return Conversation(
        id=row.id,
        flow=row.flow_name,
        version=state.version,
        bot_id=row.bot_id,
        chat_id=row.chat_id,
        user_id=row.user_id,
        user_name=user_name,
        status=Status(row.status),
        step=state.step,
        end_reason=None if row.end_reason is None else AbandonReason(row.end_reason),
        started_at=row.started_at,
        updated_at=row.updated_at,
        ended_at=row.ended_at,
    )
