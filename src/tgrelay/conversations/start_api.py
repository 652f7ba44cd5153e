"""POST /v1/conversations: the app starts a conversation of a flow with a chat (admin key).

The flow's newest version runs, whatever its trigger (an `api` trigger is started only so).
The bot must be the workspace's; one live conversation per (bot, chat, user): a second is
409. The start's messages go out through the outbox like any other.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import errors
from tgrelay.bots import service as bots
from tgrelay.conversations import runtime, store
from tgrelay.conversations.flow import ApiTrigger, Flow
from tgrelay.conversations.models import Facts
from tgrelay.inbox import service as inbox
from tgrelay.runtime import Runtime
from tgrelay.runtime import runtime as current_runtime
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import Principal

router = APIRouter(prefix="/v1", tags=["conversations"])

CurrentRuntime = Annotated[Runtime, Depends(current_runtime)]
AdminPrincipal = workspaces.AdminPrincipal
MAX_VARIABLES = 100


class StartRequest(BaseModel):
    """Start `flow` with the user in `chat_id` (`user_id` defaults to the chat: a private
    chat's id is its user's). `variables` are set before the first step runs."""

    model_config = ConfigDict(extra="forbid")

    flow: Annotated[str, Field(min_length=1, max_length=100)]
    bot_id: int
    chat_id: int
    user_id: int | None = None
    variables: Annotated[dict[str, Any], Field(max_length=MAX_VARIABLES)] | None = None


class ConversationView(BaseModel):
    id: str
    flow: str
    version: int
    bot_id: int
    chat_id: int
    user_id: int
    status: str  # active | calling | completed | abandoned
    step: str  # where it waits, ended or stopped
    end_reason: str | None  # timeout | cancel | failed, when abandoned
    started_at: datetime


@router.post(
    "/conversations",
    status_code=status.HTTP_201_CREATED,
    responses={404: {"description": "No such flow or bot"}, 409: {"description": "Live one"}},
)
async def start_conversation(
    body: StartRequest, rt: CurrentRuntime, principal: AdminPrincipal
) -> ConversationView:
    """Start a conversation of a flow's newest version with a chat."""
    return await start(rt, principal, body)


async def start(rt: Runtime, principal: Principal, body: StartRequest) -> ConversationView:
    """The use case behind the route, in one transaction."""
    user_id = body.chat_id if body.user_id is None else body.user_id
    try:
        async with rt.db.transaction() as conn:
            flow_row = await store.latest_version(conn, principal.workspace_id, body.flow)
            if flow_row is None or flow_row.disabled_at is not None:
                raise errors.NotFound(f"no enabled flow named {body.flow!r}")
            if await bots.workspace_of(conn, body.bot_id) != principal.workspace_id:
                raise errors.NotFound(f"no bot {body.bot_id} in this workspace")
            if await store.live_conversation(conn, body.bot_id, body.chat_id, user_id):
                raise errors.Conflict(_LIVE)
            flow = runtime.flow_of(flow_row.document)
            _check_variables(flow, body.variables or {})
            facts = await _facts(conn, body.bot_id, body.chat_id, user_id)
            outcome = await runtime.start(
                conn, rt, flow_row, bot_id=body.bot_id, facts=facts, variables=body.variables
            )
    except IntegrityError:  # the same participant started at the same moment elsewhere
        raise errors.Conflict(_LIVE) from None
    state = outcome.state
    return ConversationView(
        id=outcome.conversation_id,
        flow=state.flow,
        version=state.version,
        bot_id=body.bot_id,
        chat_id=body.chat_id,
        user_id=user_id,
        status=state.status.value,
        step=state.step,
        end_reason=None if state.reason is None else state.reason.value,
        started_at=state.started_at,
    )


_LIVE = "this user already has a live conversation in this chat: end it (/cancel) first"


def _check_variables(flow: Flow, given: dict[str, Any]) -> None:
    """Only the variables the flow's api trigger declares may be given: any other name would
    be set where no template or condition can read it (a typo, most likely)."""
    declared = flow.trigger.variables if isinstance(flow.trigger, ApiTrigger) else ()
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise errors.InvalidInput(
            f"variables not declared by the flow's api trigger: {', '.join(unknown)}; "
            f"declared: {', '.join(declared) or 'none'}"
        )


async def _facts(conn: AsyncConnection, bot_id: int, chat_id: int, user_id: int) -> Facts:
    """Who the conversation is with, as the bot's updates last showed them (templates greet
    by `user.first_name`); only the ids for a user the bot has never seen."""
    seen = await inbox.user_seen(conn, bot_id, user_id)
    if seen is None:
        return Facts(user_id=user_id, chat_id=chat_id, first_name="")
    return Facts(
        user_id=user_id,
        chat_id=chat_id,
        first_name=seen.first_name,
        last_name=seen.last_name,
        username=seen.username,
        language_code=seen.language_code,
    )
