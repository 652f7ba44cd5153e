"""HTTP routes of tickets: list, read, their messages (with edit history), answer, change."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from tgrelay.runtime import Runtime, runtime
from tgrelay.support import service
from tgrelay.support.models import (
    Direction,
    MessageSource,
    RelayStatus,
    Ticket,
    TicketMessage,
    TicketStatus,
)
from tgrelay.support.sla import Clock, Metric
from tgrelay.telegram.outbox.messages import MAX_TEXT_CHARS
from tgrelay.workspaces import service as workspaces

router = APIRouter(tags=["tickets"])

CurrentRuntime = Annotated[Runtime, Depends(runtime)]
CurrentPrincipal = workspaces.CurrentPrincipal
AdminPrincipal = workspaces.AdminPrincipal


class CustomerView(BaseModel):
    id: int
    first_name: str
    last_name: str | None
    username: str | None
    language_code: str | None


class TicketView(BaseModel):
    id: str
    number: int
    desk_id: str
    bot_id: int
    customer: CustomerView
    subject: str
    status: TicketStatus
    assignee: int | None  # the agent's Telegram user id
    topic_chat_id: int
    topic_id: int | None  # the forum topic's message_thread_id, once created
    resolution_note: str | None
    created_at: datetime
    updated_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    # Its channel: null, the bot's private chat; else the Telegram Business connection whose
    # account's chat it lives in (see GET /v1/support/desks/{id}).
    business_connection_id: str | None = None

    @classmethod
    def of(cls, ticket: Ticket) -> TicketView:
        return cls(
            id=ticket.id,
            number=ticket.number,
            desk_id=ticket.desk_id,
            bot_id=ticket.bot_id,
            customer=CustomerView.model_validate(ticket.customer, from_attributes=True),
            subject=ticket.subject,
            status=ticket.status,
            assignee=ticket.assignee_id,
            topic_chat_id=ticket.topic_chat_id,
            topic_id=ticket.topic_thread_id,
            resolution_note=ticket.resolution_note,
            created_at=ticket.created_at,
            updated_at=ticket.updated_at,
            first_response_at=ticket.first_response_at,
            resolved_at=ticket.resolved_at,
            closed_at=ticket.closed_at,
            business_connection_id=ticket.business_connection_id,
        )


class ClockView(BaseModel):
    """An SLA clock: due_at null while it is not running (paused, stopped)."""

    metric: Metric
    started_at: datetime
    due_at: datetime | None
    paused: bool
    met_at: datetime | None
    breached_at: datetime | None


class TicketDetail(TicketView):
    # The desk's SLA clocks of the ticket (each metric's latest run); null: no SLA policy.
    sla: list[ClockView] | None

    @classmethod
    def with_clocks(cls, ticket: Ticket, clocks: list[Clock] | None) -> TicketDetail:
        return cls(
            **TicketView.of(ticket).model_dump(),
            sla=None
            if clocks is None
            else [ClockView.model_validate(c, from_attributes=True) for c in clocks],
        )


class TicketPage(BaseModel):
    tickets: list[TicketView]
    # Pass as `before` for the next (older) page; null when this page is the last one.
    next_before: int | None


class VersionView(BaseModel):
    text: str | None
    written_at: datetime
    replaced_at: datetime


class MessageView(BaseModel):
    id: int
    ticket_id: str
    direction: Direction
    source: MessageSource
    author_id: int | None
    kind: str
    text: str | None
    customer_message_id: int | None
    topic_message_id: int | None
    relay_status: RelayStatus
    relay_error: str | None
    created_at: datetime
    edited_at: datetime | None
    versions: list[VersionView]  # earlier texts, oldest first

    @classmethod
    def of(cls, message: TicketMessage) -> MessageView:
        return cls(
            id=message.id,
            ticket_id=message.ticket_id,
            direction=message.direction,
            source=message.source,
            author_id=message.author_id,
            kind=message.kind,
            text=message.text,
            customer_message_id=message.customer_message_id,
            topic_message_id=message.topic_message_id,
            relay_status=message.relay_status,
            relay_error=message.relay_error,
            created_at=message.created_at,
            edited_at=message.edited_at,
            versions=[
                VersionView.model_validate(v, from_attributes=True) for v in message.versions
            ],
        )


class MessageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    internal: bool = False  # a note in the topic only, never sent to the customer
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)


class TicketPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: TicketStatus | None = None
    assignee: int | None = None  # an agent's Telegram user id; null unassigns


@router.get("/v1/tickets")
async def list_tickets(
    principal: CurrentPrincipal,
    rt: CurrentRuntime,
    status_: Annotated[TicketStatus | None, Query(alias="status")] = None,
    assignee: int | None = None,
    desk_id: Annotated[str | None, Query(max_length=40)] = None,
    before: Annotated[
        int | None, Query(ge=1, description="a ticket number (from next_before): older ones")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
) -> TicketPage:
    """The workspace's tickets, newest first."""
    page = await service.list_tickets(
        rt,
        principal.workspace_id,
        status=status_,
        assignee_id=assignee,
        desk_id=desk_id,
        before=before,
        limit=limit,
    )
    return TicketPage(
        tickets=[TicketView.of(t) for t in page.tickets], next_before=page.next_before
    )


@router.get("/v1/tickets/{ticket_id}")
async def get_ticket(
    ticket_id: str, principal: CurrentPrincipal, rt: CurrentRuntime
) -> TicketDetail:
    """The ticket, with its SLA clocks (`sla`) when its desk has a policy."""
    ticket, clocks = await service.ticket_with_clocks(rt, principal.workspace_id, ticket_id)
    return TicketDetail.with_clocks(ticket, clocks)


@router.get("/v1/tickets/{ticket_id}/messages")
async def list_messages(
    ticket_id: str, principal: CurrentPrincipal, rt: CurrentRuntime
) -> list[MessageView]:
    """The conversation, oldest first, each message with its edit history."""
    found = await service.list_messages(rt, principal.workspace_id, ticket_id)
    return [MessageView.of(m) for m in found]


@router.post("/v1/tickets/{ticket_id}/messages", status_code=status.HTTP_201_CREATED)
async def post_message(
    ticket_id: str,
    body: MessageRequest,
    response: Response,
    principal: AdminPrincipal,
    rt: CurrentRuntime,
) -> MessageView:
    """An app answers (relayed to the customer, mirrored in the topic) or adds an internal
    note; the same idempotency key returns the first message (200) and sends nothing."""
    message, created = await service.post_message(
        rt,
        principal,
        ticket_id,
        text=body.text,
        internal=body.internal,
        idempotency_key=body.idempotency_key,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return MessageView.of(message)


@router.patch("/v1/tickets/{ticket_id}")
async def change_ticket(
    ticket_id: str, body: TicketPatch, principal: AdminPrincipal, rt: CurrentRuntime
) -> TicketView:
    """Change the status (by the state machine: 409 with the reason when refused) and/or the
    assignee (an explicit null unassigns)."""
    given = body.model_fields_set
    changes: dict[str, Any] = {}
    if "status" in given and body.status is not None:
        changes["status"] = body.status
    if "assignee" in given:
        changes["assignee_id"] = body.assignee
    return TicketView.of(await service.change_ticket(rt, principal, ticket_id, **changes))
