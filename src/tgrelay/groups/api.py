"""HTTP routes: connect sessions (with QR codes), connections, notifications."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from tgrelay import errors
from tgrelay.groups import qr, service
from tgrelay.groups.models import (
    Connection,
    ConnectionStatus,
    Notification,
    NotificationStatus,
    SessionState,
)
from tgrelay.runtime import Runtime, runtime
from tgrelay.workspaces import service as workspaces

router = APIRouter(tags=["groups"])

CurrentRuntime = Annotated[Runtime, Depends(runtime)]
CurrentPrincipal = workspaces.CurrentPrincipal
AdminPrincipal = workspaces.AdminPrincipal


class SessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bot_id: int
    # A forum topic to create for alerts when the group turns out to be a forum.
    topic: str | None = Field(default=None, min_length=1, max_length=128)


class TelegramUserView(BaseModel):
    id: int
    first_name: str | None
    username: str | None


class ConnectionView(BaseModel):
    id: str
    bot_id: int
    chat_id: int
    chat_type: str
    title: str | None
    is_forum: bool
    topic: str | None
    message_thread_id: int | None
    status: ConnectionStatus
    status_reason: str | None
    connected_by_user_id: int | None
    session_id: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, connection: Connection) -> ConnectionView:
        return cls.model_validate(connection, from_attributes=True)


class SessionView(BaseModel):
    """A connect session. `token` and the links are null once the token is spent or void."""

    id: str
    bot_id: int
    state: SessionState
    token: str | None
    start_link: str | None
    startgroup_link: str | None
    qr_svg_url: str | None
    qr_png_url: str | None
    topic: str | None
    created_at: datetime
    expires_at: datetime
    user: TelegramUserView | None  # verified in phase 1 by Telegram, never by a browser
    verified_at: datetime | None
    group_started_at: datetime | None
    connection: ConnectionView | None

    @classmethod
    def of(cls, view: service.SessionView, request: Request) -> SessionView:
        session, links = view.session, view.links
        qr = str(request.url_for("session_qr", session_id=session.id, extension="svg"))
        return cls(
            id=session.id,
            bot_id=session.bot_id,
            state=session.state,
            token=session.token if links else None,
            start_link=links.start_link if links else None,
            startgroup_link=links.startgroup_link if links else None,
            qr_svg_url=qr if links else None,
            qr_png_url=qr.removesuffix(".svg") + ".png" if links else None,
            topic=session.topic,
            created_at=session.created_at,
            expires_at=session.expires_at,
            user=None
            if session.user is None
            else TelegramUserView.model_validate(session.user, from_attributes=True),
            verified_at=session.verified_at,
            group_started_at=session.group_started_at,
            connection=None if view.connection is None else ConnectionView.of(view.connection),
        )


class NotificationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connection_id: str = Field(max_length=40)
    # Longer texts are split on line boundaries into several messages.
    text: str = Field(min_length=1, max_length=65_536)
    parse_mode: Literal["HTML", "MarkdownV2", "Markdown"] | None = None
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)


class NotificationView(BaseModel):
    id: str
    connection_id: str
    status: NotificationStatus
    message_ids: list[int]  # Telegram's ids of the messages sent, one per part
    parts: int  # how many messages the text needs
    error: str | None
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None

    @classmethod
    def of(cls, notification: Notification) -> NotificationView:
        return cls(
            id=notification.id,
            connection_id=notification.connection_id,
            status=notification.status,
            message_ids=list(notification.message_ids),
            parts=len(notification.parts),
            error=notification.error,
            idempotency_key=notification.idempotency_key,
            created_at=notification.created_at,
            updated_at=notification.updated_at,
            sent_at=notification.sent_at,
        )


# --- connect sessions ----------------------------------------------------------------------


@router.post(
    "/v1/connect-sessions",
    status_code=status.HTTP_201_CREATED,
    summary="Start linking a Telegram group (deep link / QR code)",
)
async def create_session(
    body: SessionRequest, request: Request, principal: AdminPrincipal, rt: CurrentRuntime
) -> SessionView:
    """A single-use token for `/start` in a private chat; it replaces the bot's previous one."""
    view = await service.create_session(rt, principal, bot_id=body.bot_id, topic=body.topic)
    return SessionView.of(view, request)


@router.get("/v1/connect-sessions/{session_id}")
async def get_session(
    session_id: str, request: Request, principal: CurrentPrincipal, rt: CurrentRuntime
) -> SessionView:
    view = await service.get_session(rt, principal.workspace_id, session_id)
    return SessionView.of(view, request)


@router.post("/v1/connect-sessions/{session_id}/reset-group")
async def reset_group(
    session_id: str, request: Request, principal: AdminPrincipal, rt: CurrentRuntime
) -> SessionView:
    """Restart phase 2 (adding the bot to a group) from now, keeping the verified user."""
    view = await service.reset_group(rt, principal, session_id)
    return SessionView.of(view, request)


@router.get(
    "/v1/connect-sessions/{session_id}/qr.{extension}",
    name="session_qr",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}, "image/png": {}}}},
)
async def session_qr(
    session_id: str,
    extension: Literal["svg", "png"],
    principal: CurrentPrincipal,
    rt: CurrentRuntime,
) -> Response:
    """The start link as a QR code; 409 once the token is spent, expired or replaced."""
    view = await service.get_session(rt, principal.workspace_id, session_id)
    if view.links is None:
        raise errors.Conflict(f"session {session_id} is {view.session.state.value}: no link")
    return qr_response(view.links.start_link, extension)


def qr_response(link: str, extension: Literal["svg", "png"]) -> Response:
    if extension == "svg":
        return Response(qr.svg(link), media_type="image/svg+xml")
    return Response(qr.png(link), media_type="image/png")


# --- connections ---------------------------------------------------------------------------


@router.get("/v1/connections")
async def list_connections(principal: CurrentPrincipal, rt: CurrentRuntime) -> list[ConnectionView]:
    return [
        ConnectionView.of(c) for c in await service.list_connections(rt, principal.workspace_id)
    ]


@router.get("/v1/connections/{connection_id}")
async def get_connection(
    connection_id: str, principal: CurrentPrincipal, rt: CurrentRuntime
) -> ConnectionView:
    return ConnectionView.of(
        await service.get_connection(rt, principal.workspace_id, connection_id)
    )


@router.delete("/v1/connections/{connection_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_connection(
    connection_id: str, principal: AdminPrincipal, rt: CurrentRuntime
) -> None:
    """Unlink a group; its notifications' history stays readable."""
    await service.delete_connection(rt, principal, connection_id)


# --- notifications -------------------------------------------------------------------------


@router.post("/v1/notifications", status_code=status.HTTP_202_ACCEPTED)
async def create_notification(
    body: NotificationRequest, principal: AdminPrincipal, rt: CurrentRuntime
) -> NotificationView:
    """Queue an alert; the same idempotency key returns the first alert and sends nothing."""
    notification, _ = await service.notify(
        rt,
        principal,
        connection_id=body.connection_id,
        text=body.text,
        parse_mode=body.parse_mode,
        idempotency_key=body.idempotency_key,
    )
    return NotificationView.of(notification)


@router.get("/v1/notifications/{notification_id}")
async def get_notification(
    notification_id: str, principal: CurrentPrincipal, rt: CurrentRuntime
) -> NotificationView:
    return NotificationView.of(
        await service.get_notification(rt, principal.workspace_id, notification_id)
    )
