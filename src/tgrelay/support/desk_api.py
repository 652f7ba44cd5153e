"""HTTP routes of the desk's setup: /v1/support/desks, /agents and /snippets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response, status
from pydantic import BaseModel, ConfigDict, Field

from tgrelay.runtime import Runtime, runtime
from tgrelay.support import agents, desks, snippets, templates
from tgrelay.support.models import (
    DEFAULT_KB_ANSWER_WAIT_SECONDS,
    DEFAULT_REOPEN_WINDOW_SECONDS,
    Agent,
    Assignment,
    BusinessConnection,
    ConnectionState,
    Desk,
    Snippet,
)
from tgrelay.workspaces import service as workspaces

router = APIRouter(prefix="/v1/support", tags=["support"])

CurrentRuntime = Annotated[Runtime, Depends(runtime)]
CurrentPrincipal = workspaces.CurrentPrincipal
AdminPrincipal = workspaces.AdminPrincipal

Name = Annotated[str, Field(min_length=1, max_length=desks.MAX_NAME_LENGTH)]
Window = Annotated[int, Field(ge=0, le=desks.MAX_REOPEN_WINDOW_SECONDS)]
CustomerText = Annotated[str, Field(min_length=1, max_length=desks.MAX_TEXT_LENGTH)]
SnippetName = Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,64}$")]
SnippetText = Annotated[str, Field(min_length=1, max_length=templates.MAX_TEXT_LENGTH)]
UserId = Annotated[int, Path(ge=1)]
Threshold = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Wait = Annotated[
    int, Field(ge=desks.MIN_KB_ANSWER_WAIT_SECONDS, le=desks.MAX_KB_ANSWER_WAIT_SECONDS)
]


# --- desks ---------------------------------------------------------------------------------


class DeskRequest(BaseModel):
    """A new desk. `name` defaults to the group's title; `greeting_text` (sent when a ticket
    opens) and `closing_text` (sent when it is resolved) default to short thank-you texts
    (desks.DEFAULT_GREETING / DEFAULT_CLOSING); null turns one off."""

    model_config = ConfigDict(extra="forbid")

    bot_id: int
    connection_id: str = Field(max_length=40)
    name: Name | None = None
    assignment: Assignment = Assignment.CLAIM_ON_REPLY
    reopen_window_seconds: Window = DEFAULT_REOPEN_WINDOW_SECONDS
    greeting_text: CustomerText | None = desks.DEFAULT_GREETING
    closing_text: CustomerText | None = desks.DEFAULT_CLOSING
    # An auto_answer article scoring above this answers a new ticket by itself; null: off.
    # Scores are the database engine's own (see GET /v1/support/articles/search).
    kb_auto_answer_threshold: Threshold | None = None
    kb_answer_wait_seconds: Wait = DEFAULT_KB_ANSWER_WAIT_SECONDS


class DeskChange(BaseModel):
    """Any setting; a new connection_id is checked with Telegram again."""

    model_config = ConfigDict(extra="forbid")

    connection_id: str | None = Field(default=None, max_length=40)
    name: Name | None = None
    assignment: Assignment | None = None
    reopen_window_seconds: Window | None = None
    greeting_text: CustomerText | None = None
    closing_text: CustomerText | None = None
    kb_auto_answer_threshold: Threshold | None = None
    kb_answer_wait_seconds: Wait | None = None


class DeskView(BaseModel):
    id: str
    bot_id: int
    connection_id: str
    name: str
    assignment: Assignment
    reopen_window_seconds: int
    greeting_text: str | None
    closing_text: str | None
    kb_auto_answer_threshold: float | None
    kb_answer_wait_seconds: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, desk: Desk) -> DeskView:
        return cls.model_validate(desk, from_attributes=True)


class BusinessAccountView(BaseModel):
    id: int  # the account's Telegram user id
    first_name: str
    last_name: str | None
    username: str | None


class BusinessConnectionView(BaseModel):
    """A Telegram Business account's connection to the desk's bot: where replies to its
    chats stand (`state` active: they go out as the account)."""

    id: str  # Telegram's business_connection_id
    account: BusinessAccountView
    state: ConnectionState
    can_reply: bool
    is_enabled: bool
    updated_at: datetime

    @classmethod
    def of(cls, connection: BusinessConnection) -> BusinessConnectionView:
        return cls.model_validate(connection, from_attributes=True)


class DeskDetail(DeskView):
    # The desk bot's Telegram Business connections, the earliest first.
    business_connections: list[BusinessConnectionView]


@router.post(
    "/desks",
    status_code=status.HTTP_201_CREATED,
    summary="Make a forum group the desk of a bot's private chats",
    responses={
        409: {
            "description": "the group is no forum, the bot no admin allowed to "
            "manage topics, or the bot serves a desk already"
        }
    },
)
async def create_desk(body: DeskRequest, principal: AdminPrincipal, rt: CurrentRuntime) -> DeskView:
    """Checks live with Telegram that the group is a forum where the bot is an administrator
    with "Manage topics"; a bot serves one desk."""
    desk = await desks.create_desk(
        rt,
        principal,
        bot_id=body.bot_id,
        connection_id=body.connection_id,
        name=body.name,
        assignment=body.assignment,
        reopen_window_seconds=body.reopen_window_seconds,
        greeting_text=body.greeting_text,
        closing_text=body.closing_text,
        kb_auto_answer_threshold=body.kb_auto_answer_threshold,
        kb_answer_wait_seconds=body.kb_answer_wait_seconds,
    )
    return DeskView.of(desk)


@router.get("/desks")
async def list_desks(principal: CurrentPrincipal, rt: CurrentRuntime) -> list[DeskView]:
    return [DeskView.of(d) for d in await desks.list_desks(rt, principal.workspace_id)]


@router.get("/desks/{desk_id}")
async def get_desk(desk_id: str, principal: CurrentPrincipal, rt: CurrentRuntime) -> DeskDetail:
    """The desk, with its bot's Telegram Business connections and where each stands."""
    desk = await desks.get_desk(rt, principal.workspace_id, desk_id)
    connections = await desks.business_connections(rt, desk)
    return DeskDetail(
        **DeskView.of(desk).model_dump(),
        business_connections=[BusinessConnectionView.of(c) for c in connections],
    )


@router.patch("/desks/{desk_id}")
async def update_desk(
    desk_id: str, body: DeskChange, principal: AdminPrincipal, rt: CurrentRuntime
) -> DeskView:
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    return DeskView.of(await desks.update_desk(rt, principal, desk_id, changes))


@router.delete("/desks/{desk_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_desk(desk_id: str, principal: AdminPrincipal, rt: CurrentRuntime) -> None:
    """The bot's private messages stop opening tickets; its tickets keep their history."""
    await desks.delete_desk(rt, principal, desk_id)


# --- agents --------------------------------------------------------------------------------


class AgentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    external_id: str | None = Field(default=None, min_length=1, max_length=200)
    capacity: int | None = Field(default=None, ge=1)  # open tickets round robin gives; null: any
    active: bool  # takes round-robin assignments


class AgentView(BaseModel):
    telegram_user_id: int
    name: str
    username: str | None  # as last seen in a ticket's topic
    external_id: str | None
    capacity: int | None
    active: bool
    last_assigned_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, agent: Agent) -> AgentView:
        return cls.model_validate(agent, from_attributes=True)


@router.put(
    "/agents/{telegram_user_id}",
    responses={201: {"model": AgentView, "description": "created"}},
    summary="Create or replace an agent",
)
async def put_agent(
    telegram_user_id: UserId,
    body: AgentRequest,
    principal: AdminPrincipal,
    rt: CurrentRuntime,
    response: Response,
) -> AgentView:
    """201 when created, 200 when replaced; the @username seen in topics is kept."""
    agent, created = await agents.put_agent(
        rt,
        principal,
        telegram_user_id,
        name=body.name,
        external_id=body.external_id,
        capacity=body.capacity,
        active=body.active,
    )
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return AgentView.of(agent)


@router.get("/agents")
async def list_agents(principal: CurrentPrincipal, rt: CurrentRuntime) -> list[AgentView]:
    return [AgentView.of(a) for a in await agents.list_agents(rt, principal.workspace_id)]


@router.get("/agents/{telegram_user_id}")
async def get_agent(
    telegram_user_id: UserId, principal: CurrentPrincipal, rt: CurrentRuntime
) -> AgentView:
    return AgentView.of(await agents.get_agent(rt, principal.workspace_id, telegram_user_id))


# --- snippets ------------------------------------------------------------------------------


class SnippetRequest(BaseModel):
    """A canned reply: `text` is a template with customer.*, agent.*, ticket.* and desk.name
    (support.templates), refused at save if it would not render."""

    model_config = ConfigDict(extra="forbid")

    name: SnippetName  # what agents type after /s
    text: SnippetText


class SnippetChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SnippetName | None = None
    text: SnippetText | None = None


class SnippetView(BaseModel):
    id: str
    name: str
    text: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, snippet: Snippet) -> SnippetView:
        return cls.model_validate(snippet, from_attributes=True)


@router.post("/snippets", status_code=status.HTTP_201_CREATED)
async def create_snippet(
    body: SnippetRequest, principal: AdminPrincipal, rt: CurrentRuntime
) -> SnippetView:
    """422 naming the line of a syntax error or the unknown variables (with the known ones);
    409 when the name is taken."""
    return SnippetView.of(
        await snippets.create_snippet(rt, principal, name=body.name, text=body.text)
    )


@router.get("/snippets")
async def list_snippets(principal: CurrentPrincipal, rt: CurrentRuntime) -> list[SnippetView]:
    return [SnippetView.of(s) for s in await snippets.list_snippets(rt, principal.workspace_id)]


@router.get("/snippets/{snippet_id}")
async def get_snippet(
    snippet_id: str, principal: CurrentPrincipal, rt: CurrentRuntime
) -> SnippetView:
    return SnippetView.of(await snippets.get_snippet(rt, principal.workspace_id, snippet_id))


@router.patch("/snippets/{snippet_id}")
async def update_snippet(
    snippet_id: str, body: SnippetChange, principal: AdminPrincipal, rt: CurrentRuntime
) -> SnippetView:
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    return SnippetView.of(await snippets.update_snippet(rt, principal, snippet_id, changes))


@router.delete("/snippets/{snippet_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_snippet(snippet_id: str, principal: AdminPrincipal, rt: CurrentRuntime) -> None:
    await snippets.delete_snippet(rt, principal, snippet_id)
