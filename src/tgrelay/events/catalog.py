"""The event catalog: every event type tgrelay emits, its payload schema and an example.

An event's body is an envelope, `{"id", "type", "timestamp", "workspace_id", "data"}`, whose
`data` follows the type's model below. `docs/events.md` is generated from this module
(`tgrelay events catalog --markdown`), and `GET /v1/event-types` serves it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EventType(enum.StrEnum):
    MESSAGE_RECEIVED = "message.received"  # a user wrote to a bot, privately or in a group
    MESSAGE_EDITED = "message.edited"  # a user edited a message the bot had seen
    CALLBACK_RECEIVED = "callback.received"  # a user pressed an inline button
    CHAT_THROTTLED = "chat.throttled"  # a chat went over TGRELAY_INBOUND_CHAT_LIMIT
    BOT_CONNECTED = "bot.connected"  # a bot was connected (or reconnected) by its token
    # token_revoked, webhook_conflict, healthy, or disconnected by a takeover
    BOT_STATUS_CHANGED = "bot.status_changed"
    BOT_DISCONNECTED = "bot.disconnected"  # the workspace let the bot go
    # Forged requests moved its webhook secret on.
    BOT_SECRET_ROTATED = "bot.secret_rotated"  # noqa: S105 (an event name, not a password)
    GROUP_CONNECTED = "group.connected"  # a connect session linked a Telegram group
    # bot_removed, migrated to a supergroup, suspended, or active again
    GROUP_STATUS_CHANGED = "group.status_changed"
    NOTIFICATION_SENT = "notification.sent"  # every part of an alert is in its group
    NOTIFICATION_FAILED = "notification.failed"  # an alert will not be sent
    ENDPOINT_DISABLED = "endpoint.disabled"  # an endpoint stopped receiving events
    # Reserved for the support desk: subscribable now, emitted once tickets exist.
    TICKET_CREATED = "ticket.created"
    TICKET_UPDATED = "ticket.updated"
    TICKET_MESSAGE_ADDED = "ticket.message_added"


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ChatRef(_Data):
    id: int
    type: str  # private | group | supergroup | channel
    title: str | None = None
    username: str | None = None


class UserRef(_Data):
    id: int
    is_bot: bool
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None


class MessageData(_Data):
    """message.received and message.edited: the Telegram Message, with its essentials lifted."""

    bot_id: int
    update_id: int
    message_id: int
    chat: ChatRef
    from_: UserRef | None = Field(default=None, alias="from")
    date: datetime
    message_thread_id: int | None = None
    text: str | None = None  # the text, or a media message's caption
    message: dict[str, Any]  # the Message object exactly as Telegram sent it
    # A connect link's /start is the groups handler's: the app should not answer it too.
    consumed_by: str | None  # the tgrelay handler that kept the update ("groups"); null: none


class CallbackData(_Data):
    """callback.received: an inline keyboard button press."""

    bot_id: int
    update_id: int
    callback_query_id: str
    from_: UserRef = Field(alias="from")
    data: str | None = None  # the button's callback_data
    chat: ChatRef | None = None  # the chat of the message carrying the button
    message_id: int | None = None
    callback_query: dict[str, Any]  # the CallbackQuery object exactly as Telegram sent it
    consumed_by: str | None  # the tgrelay handler that kept the press; null: none did


class ChatThrottledData(_Data):
    """chat.throttled: once per window, at the first update of a chat over the limit."""

    bot_id: int
    chat_id: int
    update_id: int  # the first update kept back; later ones of the window are too
    limit: int  # updates handled per window (TGRELAY_INBOUND_CHAT_LIMIT's count)
    window_seconds: float
    window_started_at: datetime  # when the chat's first update of the window arrived


class BotData(_Data):
    """bot.connected and bot.disconnected."""

    bot_id: int
    username: str
    mode: str  # webhook | polling
    status: str


class BotStatusData(_Data):
    """bot.status_changed."""

    bot_id: int
    username: str
    status: str  # token_revoked | webhook_conflict | healthy | disconnected (taken over)
    previous_status: str
    conflict_kind: str | None = None  # foreign | empty, with webhook_conflict
    reason: str | None = None


class BotSecretRotatedData(_Data):
    """bot.secret_rotated."""

    bot_id: int
    username: str
    secret_generation: int  # the generation Telegram now sends the secret of
    # Until then the previous generation's secret is accepted too (pushes in flight).
    previous_secret_valid_until: datetime
    reason: str  # why: "forged requests"
    forged_requests: int  # requests with a wrong or missing secret counted in the minute
    threshold: int  # TGRELAY_FORGED_ROTATE_THRESHOLD when it tripped


class GroupData(_Data):
    """group.connected."""

    connection_id: str
    bot_id: int
    chat_id: int
    chat_type: str  # group | supergroup
    title: str | None
    is_forum: bool
    topic: str | None = None
    message_thread_id: int | None = None
    connected_by_user_id: int | None
    session_id: str | None


class GroupStatusData(_Data):
    """group.status_changed."""

    connection_id: str
    bot_id: int
    chat_id: int  # the chat's id now (the supergroup's, after a migration)
    status: str  # bot_removed | migrated | suspended | active (after suspended)
    previous_chat_id: int | None = None  # the basic group's id, with migrated
    reason: str | None = None


class NotificationData(_Data):
    """notification.sent and notification.failed."""

    notification_id: str
    connection_id: str
    idempotency_key: str | None
    status: str  # sent | failed
    message_ids: list[int]  # one per part sent
    error: str | None = None  # with failed: why


class EndpointDisabledData(_Data):
    """endpoint.disabled."""

    endpoint_id: str
    url: str
    reason: str


class TicketData(_Data):
    """ticket.*: reserved; the support desk will define the fields it adds."""

    ticket_id: str


DataModel = type[_Data]


@dataclass(frozen=True, kw_only=True)
class EventSpec:
    type: EventType
    description: str
    data: DataModel
    example: dict[str, Any]  # an example `data`, validated against the model by the tests
    reserved: bool = False  # documented and subscribable, not emitted yet


_USER = {"id": 777000123, "is_bot": False, "first_name": "Ada", "username": "ada"}
_GROUP = {"id": -1001234567890, "type": "supergroup", "title": "Ops alerts"}
_MESSAGE = {
    "message_id": 42,
    "from": _USER,
    "chat": _GROUP,
    "date": 1795263000,
    "text": "the deploy is stuck",
}

CATALOG: tuple[EventSpec, ...] = (
    EventSpec(
        type=EventType.MESSAGE_RECEIVED,
        description="A user sent a message to a bot, in a private chat or a group.",
        data=MessageData,
        example={
            "bot_id": 123456789,
            "update_id": 100200300,
            "message_id": 42,
            "chat": _GROUP,
            "from": _USER,
            "date": "2026-11-21T12:10:00Z",
            "text": "the deploy is stuck",
            "message": _MESSAGE,
            "consumed_by": None,
        },
    ),
    EventSpec(
        type=EventType.MESSAGE_EDITED,
        description="A user edited a message the bot had received.",
        data=MessageData,
        example={
            "bot_id": 123456789,
            "update_id": 100200301,
            "message_id": 42,
            "chat": _GROUP,
            "from": _USER,
            "date": "2026-11-21T12:10:00Z",
            "text": "the deploy is stuck again",
            "message": {**_MESSAGE, "edit_date": 1795263060, "text": "the deploy is stuck again"},
            "consumed_by": None,
        },
    ),
    EventSpec(
        type=EventType.CALLBACK_RECEIVED,
        description="A user pressed an inline keyboard button of a bot's message.",
        data=CallbackData,
        example={
            "bot_id": 123456789,
            "update_id": 100200302,
            "callback_query_id": "4382bfdwdsb323b2d9",
            "from": _USER,
            "data": "ack:incident-17",
            "chat": _GROUP,
            "message_id": 43,
            "callback_query": {
                "id": "4382bfdwdsb323b2d9",
                "from": _USER,
                "chat_instance": "-8123456789",
                "data": "ack:incident-17",
            },
            "consumed_by": None,
        },
    ),
    EventSpec(
        type=EventType.CHAT_THROTTLED,
        description=(
            "A chat sent more updates than TGRELAY_INBOUND_CHAT_LIMIT allows: the rest of "
            "the window's updates are stored, marked throttled and not handled. Once per "
            "window and chat."
        ),
        data=ChatThrottledData,
        example={
            "bot_id": 123456789,
            "chat_id": -1001234567890,
            "update_id": 100200331,
            "limit": 30,
            "window_seconds": 60.0,
            "window_started_at": "2026-11-21T12:10:00Z",
        },
    ),
    EventSpec(
        type=EventType.BOT_CONNECTED,
        description="A bot was connected by its token (getMe verified it).",
        data=BotData,
        example={
            "bot_id": 123456789,
            "username": "acme_bot",
            "mode": "webhook",
            "status": "healthy",
        },
    ),
    EventSpec(
        type=EventType.BOT_STATUS_CHANGED,
        description=(
            "A bot's health changed: token_revoked, webhook_conflict or healthy again; or"
            " disconnected because another workspace took it over."
        ),
        data=BotStatusData,
        example={
            "bot_id": 123456789,
            "username": "acme_bot",
            "status": "webhook_conflict",
            "previous_status": "healthy",
            "conflict_kind": "foreign",
            "reason": "getWebhookInfo shows another URL",
        },
    ),
    EventSpec(
        type=EventType.BOT_DISCONNECTED,
        description="The workspace disconnected a bot; its webhook was deleted.",
        data=BotData,
        example={
            "bot_id": 123456789,
            "username": "acme_bot",
            "mode": "webhook",
            "status": "disconnected",
        },
    ),
    EventSpec(
        type=EventType.BOT_SECRET_ROTATED,
        description=(
            "More forged webhook requests than TGRELAY_FORGED_ROTATE_THRESHOLD reached a bot"
            " within a minute, so its webhook secret was rotated (setWebhook with the next"
            " generation); the previous secret is accepted until previous_secret_valid_until."
        ),
        data=BotSecretRotatedData,
        example={
            "bot_id": 123456789,
            "username": "acme_bot",
            "secret_generation": 3,
            "previous_secret_valid_until": "2026-11-21T12:20:00Z",
            "reason": "forged requests",
            "forged_requests": 1001,
            "threshold": 1000,
        },
    ),
    EventSpec(
        type=EventType.GROUP_CONNECTED,
        description="A connect session linked a Telegram group (optionally a forum topic).",
        data=GroupData,
        example={
            "connection_id": "conn_5kq2v7",
            "bot_id": 123456789,
            "chat_id": -1001234567890,
            "chat_type": "supergroup",
            "title": "Ops alerts",
            "is_forum": False,
            "connected_by_user_id": 777000123,
            "session_id": "cs_9x8y7z",
        },
    ),
    EventSpec(
        type=EventType.GROUP_STATUS_CHANGED,
        description=(
            "A group connection changed: the bot was removed, the group migrated, or the"
            " connection was suspended (bot disconnected) or made active again."
        ),
        data=GroupStatusData,
        example={
            "connection_id": "conn_5kq2v7",
            "bot_id": 123456789,
            "chat_id": -1001234567890,
            "status": "migrated",
            "previous_chat_id": -4012345678,
            "reason": "the group became a supergroup",
        },
    ),
    EventSpec(
        type=EventType.NOTIFICATION_SENT,
        description="Every part of an alert reached its group.",
        data=NotificationData,
        example={
            "notification_id": "ntf_3h4j5k",
            "connection_id": "conn_5kq2v7",
            "idempotency_key": "incident-17-opened",
            "status": "sent",
            "message_ids": [44],
        },
    ),
    EventSpec(
        type=EventType.NOTIFICATION_FAILED,
        description="An alert will not be sent; error says why.",
        data=NotificationData,
        example={
            "notification_id": "ntf_3h4j5k",
            "connection_id": "conn_5kq2v7",
            "idempotency_key": None,
            "status": "failed",
            "message_ids": [],
            "error": "the bot was removed from the group",
        },
    ),
    EventSpec(
        type=EventType.ENDPOINT_DISABLED,
        description="An endpoint was disabled: it answered 410, or failed for days.",
        data=EndpointDisabledData,
        example={
            "endpoint_id": "ep_7m8n9p",
            "url": "https://example.com/webhooks/tgrelay",
            "reason": "the endpoint answered 410 Gone",
        },
    ),
    *(
        EventSpec(
            type=event_type,
            description="Reserved for the support desk.",
            data=TicketData,
            example={"ticket_id": "tkt_1a2b3c"},
            reserved=True,
        )
        for event_type in (
            EventType.TICKET_CREATED,
            EventType.TICKET_UPDATED,
            EventType.TICKET_MESSAGE_ADDED,
        )
    ),
)

SPECS: dict[EventType, EventSpec] = {spec.type: spec for spec in CATALOG}


class Envelope(BaseModel):
    """What an endpoint receives: the same bytes on every attempt of a delivery."""

    id: str  # "evt_…", also the webhook-id header
    type: EventType
    timestamp: datetime  # when the event happened
    workspace_id: str
    data: dict[str, Any]


def envelope_schema(event_type: EventType) -> dict[str, Any]:
    """The JSON schema of one type's whole body, its `data` per the catalog's model."""
    schema = Envelope.model_json_schema()
    data = SPECS[event_type].data.model_json_schema(by_alias=True)
    # The data's `$ref`s say "#/$defs/…", from the document's root: its $defs move there
    # (replacing EventType's, which the `const` below no longer uses).
    schema.pop("$defs", None)
    if "$defs" in data:
        schema["$defs"] = data.pop("$defs")
    schema["title"] = event_type.value
    schema["properties"]["type"] = {"const": event_type.value}
    schema["properties"]["data"] = data
    return schema


def matches(subscribed: tuple[str, ...] | None, event_type: str) -> bool:
    """Whether an endpoint subscribed to these types (None: all; "group.*": a family) gets it."""
    if subscribed is None:
        return True
    family = event_type.split(".", 1)[0] + ".*"
    return event_type in subscribed or family in subscribed


def is_known_filter(pattern: str) -> bool:
    """A subscription entry names a catalog type or a family of them ("ticket.*")."""
    if pattern.endswith(".*"):
        family = pattern[:-1]
        return any(spec.type.startswith(family) for spec in CATALOG)
    return pattern in SPECS


def example_body(spec: EventSpec) -> dict[str, Any]:
    """A whole example body of the type, as an endpoint would receive it."""
    return {
        "id": "evt_0f1e2d3c4b5a69788796a5b4",
        "type": spec.type.value,
        "timestamp": "2026-11-21T12:10:00.123456Z",
        "workspace_id": "ws_8h2k4m6n8p0r2t4v",
        "data": spec.example,
    }
