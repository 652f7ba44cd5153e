"""The event catalog: every event type tgrelay emits, its payload schema and an example.

An event's body is an envelope, `{"id", "type", "version", "timestamp", "workspace_id",
"data"}`, whose `data` follows the model of the type's `version` below. Each type lists its
versions, oldest first; events are emitted in the latest, and an endpoint that pinned an
older one gets the body `render`ed down to it. `docs/events.md` is generated from this
module (`tgrelay events catalog --markdown`), and `GET /v1/event-types` serves it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
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
    TICKET_CREATED = "ticket.created"  # a customer's message opened a ticket (and its topic)
    TICKET_ASSIGNED = "ticket.assigned"  # a ticket got an agent, or lost one
    TICKET_STATUS_CHANGED = "ticket.status_changed"  # new → open → pending → resolved → closed
    TICKET_FIRST_RESPONSE = "ticket.first_response"  # the first agent reply reached the customer
    TICKET_RESOLVED = "ticket.resolved"  # /resolve, the button or the API
    TICKET_MESSAGE_ADDED = "ticket.message_added"  # a customer or agent message, or a note
    TICKET_SLA_BREACHED = "ticket.sla_breached"  # a metric passed its due time unmet
    TICKET_ESCALATED = "ticket.escalated"  # an escalation step with the emit action fired
    # a desk bot's Telegram Business connection was made, paused, resumed, lost or gained the
    # right to reply, was removed, or a send found it gone
    DESK_BUSINESS_CONNECTION_CHANGED = "desk.business_connection_changed"
    CONVERSATION_STARTED = "conversation.started"  # a flow's trigger (or the API) started one
    CONVERSATION_COMPLETED = "conversation.completed"  # it reached an end or handoff step
    CONVERSATION_ABANDONED = "conversation.abandoned"  # timeout, /cancel, or failed
    CONVERSATION_STEP_FAILED = "conversation.step_failed"  # tries ran out, or a call failed


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


class MessageDataV1(_Data):
    """message.received and message.edited, version 1: the Telegram Message, its essentials
    lifted."""

    bot_id: int
    update_id: int
    message_id: int
    chat: ChatRef
    from_: UserRef | None = Field(default=None, alias="from")
    date: datetime
    message_thread_id: int | None = None
    text: str | None = None  # the text, or a media message's caption
    message: dict[str, Any]  # the Message object exactly as Telegram sent it


class MessageData(MessageDataV1):
    """message.received and message.edited: the Telegram Message, with its essentials lifted."""

    # A connect link's /start is the groups handler's: the app should not answer it too.
    consumed_by: str | None  # the tgrelay handler that kept the update ("groups"); null: none


class CallbackDataV1(_Data):
    """callback.received, version 1: an inline keyboard button press."""

    bot_id: int
    update_id: int
    callback_query_id: str
    from_: UserRef = Field(alias="from")
    data: str | None = None  # the button's callback_data
    chat: ChatRef | None = None  # the chat of the message carrying the button
    message_id: int | None = None
    callback_query: dict[str, Any]  # the CallbackQuery object exactly as Telegram sent it


class CallbackData(CallbackDataV1):
    """callback.received: an inline keyboard button press."""

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


class TicketCustomer(_Data):
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None


class TicketCreatedData(_Data):
    """ticket.created."""

    ticket_id: str
    number: int  # per workspace, from 1
    desk_id: str
    customer_id: int  # the customer's Telegram user id
    customer: TicketCustomer
    message_text: str | None  # the first message's text or caption
    topic_id: int | None  # the forum topic's message_thread_id; null: it could not be made
    timestamp: datetime  # when the ticket opened


class TicketAssignedData(_Data):
    """ticket.assigned."""

    ticket_id: str
    agent_id: int | None  # the agent's Telegram user id; null: unassigned
    external_id: str | None  # the team's own id for the agent
    previous_agent_id: int | None
    assignment_time: datetime


class TicketStatusChangedData(_Data):
    """ticket.status_changed."""

    ticket_id: str
    previous_status: str
    new_status: str  # new | open | pending | resolved | closed
    changed_by: str  # "agent:<telegram id>", "customer", "api", "system"


class TicketFirstResponseData(_Data):
    """ticket.first_response."""

    ticket_id: str
    agent_id: int | None  # null: an app answered through the API
    response_time: float  # seconds from the ticket's opening


class TicketSlaBreachedData(_Data):
    """ticket.sla_breached."""

    ticket_id: str
    metric: str  # first_response | next_response | resolution
    due_at: datetime
    breached_at: datetime  # the due time: a breach happens when the due time passes unmet


class TicketEscalatedData(_Data):
    """ticket.escalated."""

    ticket_id: str
    step: int  # the step's index in the desk's escalation list, from 0
    reason: str  # e.g. "first_response breached at 2026-12-01T10:00:00+00:00"


class DeskBusinessConnectionChangedData(_Data):
    """desk.business_connection_changed."""

    desk_id: str
    business_connection_id: str
    user: UserRef  # the Telegram Business account
    state: str  # active | cannot_reply | disabled | removed
    can_reply: bool
    is_enabled: bool


class TicketResolvedData(_Data):
    """ticket.resolved."""

    ticket_id: str
    resolution_time: float  # seconds from the ticket's opening
    resolution_note: str | None


class TicketMessageData(_Data):
    """ticket.message_added."""

    ticket_id: str
    direction: str  # customer | agent | note
    text: str | None  # the text or caption
    agent_id: int | None  # the agent who wrote it (agent, note); null for the customer or API
    customer_message_id: int | None  # in the customer's private chat
    topic_message_id: int | None  # in the ticket's forum topic


# The conversations' data: the same shapes as conversations.models' payloads, which the
# engine builds (events sits below conversations, so it declares its own; a test compares).


class ConversationStartedData(_Data):
    """conversation.started."""

    flow: str  # the flow's name
    version: int  # the flow's version the conversation runs
    chat_id: int
    user_id: int


class ConversationCompletedData(ConversationStartedData):
    """conversation.completed: the variables in full, sensitive ones included."""

    variables: dict[str, Any]


class ConversationAbandonedData(ConversationStartedData):
    """conversation.abandoned."""

    reason: str  # timeout | cancel | failed
    step: str  # where it stopped


class ConversationStepFailedData(ConversationStartedData):
    """conversation.step_failed."""

    step: str
    reason: str  # never the user's answer


DataModel = type[_Data]
# Pure: one version's `data` (JSON) as the version before it.
Downgrade = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class SchemaVersion:
    """One version of a type's `data`: its model, what changed, how to render the one before."""

    number: int
    data: DataModel
    change: str  # what this version changed, for the docs
    downgrade: Downgrade | None = None  # to version number - 1; None for version 1


@dataclass(frozen=True, kw_only=True)
class EventSpec:
    type: EventType
    description: str
    versions: tuple[SchemaVersion, ...]  # oldest first, numbered 1, 2, …; emitted in the last
    example: dict[str, Any]  # an example `data` of the latest version, validated by the tests
    reserved: bool = False  # documented and subscribable, not emitted yet

    @property
    def data(self) -> DataModel:
        """The model of the latest version, the one events are emitted in."""
        return self.versions[-1].data

    @property
    def version(self) -> int:
        return self.versions[-1].number


def first_version(model: DataModel) -> tuple[SchemaVersion, ...]:
    """The versions of a type that never changed."""
    return (SchemaVersion(number=1, data=model, change="The first version."),)


def without_consumed_by(data: dict[str, Any]) -> dict[str, Any]:
    """message.* and callback.received, version 2 → 1: version 1 had no consumed_by."""
    return {key: value for key, value in data.items() if key != "consumed_by"}


CONSUMED_BY_CHANGE = "Adds consumed_by: which tgrelay handler consumed the update."
MESSAGE_VERSIONS = (
    *first_version(MessageDataV1),
    SchemaVersion(
        number=2, data=MessageData, change=CONSUMED_BY_CHANGE, downgrade=without_consumed_by
    ),
)
CALLBACK_VERSIONS = (
    *first_version(CallbackDataV1),
    SchemaVersion(
        number=2, data=CallbackData, change=CONSUMED_BY_CHANGE, downgrade=without_consumed_by
    ),
)


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
        versions=MESSAGE_VERSIONS,
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
        versions=MESSAGE_VERSIONS,
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
        versions=CALLBACK_VERSIONS,
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
        versions=first_version(ChatThrottledData),
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
        versions=first_version(BotData),
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
        versions=first_version(BotStatusData),
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
        versions=first_version(BotData),
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
        versions=first_version(BotSecretRotatedData),
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
        versions=first_version(GroupData),
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
        versions=first_version(GroupStatusData),
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
        versions=first_version(NotificationData),
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
        versions=first_version(NotificationData),
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
        versions=first_version(EndpointDisabledData),
        example={
            "endpoint_id": "ep_7m8n9p",
            "url": "https://example.com/webhooks/tgrelay",
            "reason": "the endpoint answered 410 Gone",
        },
    ),
    EventSpec(
        type=EventType.TICKET_CREATED,
        description=(
            "A customer's private message to a desk's bot opened a ticket; sent once its forum"
            " topic was created (topic_id null when it could not be)."
        ),
        versions=first_version(TicketCreatedData),
        example={
            "ticket_id": "tkt_1a2b3c4d",
            "number": 17,
            "desk_id": "dsk_5e6f7a",
            "customer_id": 777000123,
            "customer": {
                "first_name": "Ada",
                "last_name": "Lovelace",
                "username": "ada",
                "language_code": "en",
            },
            "message_text": "my order never arrived",
            "topic_id": 4021,
            "timestamp": "2026-11-21T12:10:00Z",
        },
    ),
    EventSpec(
        type=EventType.TICKET_ASSIGNED,
        description="A ticket was given to an agent (or unassigned: agent_id null).",
        versions=first_version(TicketAssignedData),
        example={
            "ticket_id": "tkt_1a2b3c4d",
            "agent_id": 555000111,
            "external_id": "crm-agent-9",
            "previous_agent_id": None,
            "assignment_time": "2026-11-21T12:12:00Z",
        },
    ),
    EventSpec(
        type=EventType.TICKET_STATUS_CHANGED,
        description="A ticket moved between new, open, pending, resolved and closed.",
        versions=first_version(TicketStatusChangedData),
        example={
            "ticket_id": "tkt_1a2b3c4d",
            "previous_status": "new",
            "new_status": "open",
            "changed_by": "agent:555000111",
        },
    ),
    EventSpec(
        type=EventType.TICKET_FIRST_RESPONSE,
        description="The first agent reply of a ticket was relayed to the customer.",
        versions=first_version(TicketFirstResponseData),
        example={"ticket_id": "tkt_1a2b3c4d", "agent_id": 555000111, "response_time": 120.5},
    ),
    EventSpec(
        type=EventType.TICKET_RESOLVED,
        description="A ticket was resolved; its customer may reopen it within the window.",
        versions=first_version(TicketResolvedData),
        example={
            "ticket_id": "tkt_1a2b3c4d",
            "resolution_time": 3600.0,
            "resolution_note": "refund sent",
        },
    ),
    EventSpec(
        type=EventType.TICKET_MESSAGE_ADDED,
        description="A message joined a ticket: the customer's, an agent's, or an internal note.",
        versions=first_version(TicketMessageData),
        example={
            "ticket_id": "tkt_1a2b3c4d",
            "direction": "agent",
            "text": "Sorry about that, the refund is on its way.",
            "agent_id": 555000111,
            "customer_message_id": 88,
            "topic_message_id": 4025,
        },
    ),
    EventSpec(
        type=EventType.TICKET_SLA_BREACHED,
        description="A ticket's SLA metric passed its due time without being met.",
        versions=first_version(TicketSlaBreachedData),
        example={
            "ticket_id": "tkt_1a2b3c4d",
            "metric": "first_response",
            "due_at": "2026-12-01T10:00:00Z",
            "breached_at": "2026-12-01T10:00:00Z",
        },
    ),
    EventSpec(
        type=EventType.TICKET_ESCALATED,
        description="A step of the desk's escalation ladder with the emit action fired.",
        versions=first_version(TicketEscalatedData),
        example={
            "ticket_id": "tkt_1a2b3c4d",
            "step": 1,
            "reason": "first_response breached at 2026-12-01T10:00:00+00:00",
        },
    ),
    EventSpec(
        type=EventType.DESK_BUSINESS_CONNECTION_CHANGED,
        description=(
            "A Telegram Business account connected the desk's bot, or its connection changed: "
            "paused or resumed, the right to reply granted or withheld, removed."
        ),
        versions=first_version(DeskBusinessConnectionChangedData),
        example={
            "desk_id": "dsk_5e6f7a8b",
            "business_connection_id": "AbCdEfGhIjKlMnOpQrStUvWx",
            "user": {
                "id": 5550001,
                "is_bot": False,
                "first_name": "Acme Shop",
                "last_name": None,
                "username": "acme_shop",
                "language_code": None,
            },
            "state": "cannot_reply",
            "can_reply": False,
            "is_enabled": True,
        },
    ),
    EventSpec(
        type=EventType.CONVERSATION_STARTED,
        description="A conversation of a flow started: its trigger fired, or the API started it.",
        versions=first_version(ConversationStartedData),
        example={
            "flow": "billing-address",
            "version": 3,
            "chat_id": 777000123,
            "user_id": 777000123,
        },
    ),
    EventSpec(
        type=EventType.CONVERSATION_COMPLETED,
        description="A conversation reached an end or handoff step; variables in full.",
        versions=first_version(ConversationCompletedData),
        example={
            "flow": "billing-address",
            "version": 3,
            "chat_id": 777000123,
            "user_id": 777000123,
            "variables": {"street": "1 Main St", "zip": "10115", "city": "Berlin", "country": "DE"},
        },
    ),
    EventSpec(
        type=EventType.CONVERSATION_ABANDONED,
        description="A conversation stopped before its end: idle timeout, /cancel, or failed.",
        versions=first_version(ConversationAbandonedData),
        example={
            "flow": "billing-address",
            "version": 3,
            "chat_id": 777000123,
            "user_id": 777000123,
            "reason": "timeout",
            "step": "zip",
        },
    ),
    EventSpec(
        type=EventType.CONVERSATION_STEP_FAILED,
        description=(
            "A step failed: invalid answers ran out, a call to the app failed (at its first"
            " failure and again at its deadline), or the app's answer was unusable."
        ),
        versions=first_version(ConversationStepFailedData),
        example={
            "flow": "billing-address",
            "version": 3,
            "chat_id": 777000123,
            "user_id": 777000123,
            "step": "validate",
            "reason": "HTTP 503",
        },
    ),
)

SPECS: dict[EventType, EventSpec] = {spec.type: spec for spec in CATALOG}


class Envelope(BaseModel):
    """What an endpoint receives: the same bytes on every attempt of a delivery."""

    id: str  # "evt_…", also the webhook-id header
    type: EventType
    version: int  # the version of the type's schema that `data` follows
    timestamp: datetime  # when the event happened
    workspace_id: str
    data: dict[str, Any]


def envelope_schema(event_type: EventType, version: int | None = None) -> dict[str, Any]:
    """The JSON schema of one type's whole body in `version` (None: the latest), its `data`
    per that version's model."""
    spec = SPECS[event_type]
    schema = Envelope.model_json_schema()
    data = schema_version(spec, version or spec.version).data.model_json_schema(by_alias=True)
    # The data's `$ref`s say "#/$defs/…", from the document's root: its $defs move there
    # (replacing EventType's, which the `const` below no longer uses).
    schema.pop("$defs", None)
    if "$defs" in data:
        schema["$defs"] = data.pop("$defs")
    schema["title"] = event_type.value
    schema["properties"]["type"] = {"const": event_type.value}
    schema["properties"]["version"] = {"const": version or spec.version}
    schema["properties"]["data"] = data
    return schema


def schema_version(spec: EventSpec, number: int) -> SchemaVersion:
    """The type's version `number`; KeyError when it has none such."""
    for version in spec.versions:
        if version.number == number:
            return version
    raise KeyError(f"{spec.type.value} has no version {number}")


def version_problem(event_type: str, version: int) -> str | None:
    """Why an endpoint cannot pin `event_type` to `version`, or None when it can."""
    try:
        spec = SPECS[EventType(event_type)]
    except ValueError:
        return f"unknown event type {event_type!r} (pin a type, not a family)"
    numbers = [v.number for v in spec.versions]
    if version not in numbers:
        listed = ", ".join(str(n) for n in numbers)
        return f"{event_type} has no version {version} (its versions: {listed})"
    return None


def render(body: dict[str, Any], version: int) -> dict[str, Any]:
    """An emitted body (its type's latest version) as `version` of its type: `data` taken
    down one version at a time by each newer version's downgrade. Pure."""
    spec = SPECS[EventType(body["type"])]
    data = body["data"]
    for newer in reversed(spec.versions):
        if newer.number <= version:
            break
        assert newer.downgrade is not None  # only version 1 has none, and 1 <= version
        data = newer.downgrade(data)
    return {**body, "version": version, "data": data}


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


def example_body(spec: EventSpec, version: int | None = None) -> dict[str, Any]:
    """A whole example body of the type in `version` (None: the latest), as an endpoint
    would receive it."""
    body = {
        "id": "evt_0f1e2d3c4b5a69788796a5b4",
        "type": spec.type.value,
        "version": spec.version,
        "timestamp": "2026-11-21T12:10:00.123456Z",
        "workspace_id": "ws_8h2k4m6n8p0r2t4v",
        "data": spec.example,
    }
    return body if version is None else render(body, version)
