"""Records and states of the support desk (DESIGN.md, "Support desk")."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

# A desk's default reopen window: a resolved ticket's customer may write again this long.
DEFAULT_REOPEN_WINDOW_SECONDS = 7 * 24 * 3600
# How long a customer has to answer an auto-answer's question before agents take the ticket.
DEFAULT_KB_ANSWER_WAIT_SECONDS = 600


class Assignment(enum.StrEnum):
    """How a desk gives its new tickets an agent."""

    MANUAL = "manual"  # only /assign, the button or the API
    CLAIM_ON_REPLY = "claim_on_reply"  # the first agent to answer takes it
    ROUND_ROBIN = "round_robin"  # the longest idle active agent with free capacity


class TicketStatus(enum.StrEnum):
    NEW = "new"  # opened by the customer, no agent has answered yet
    OPEN = "open"  # an agent answered; the team owes the next move
    PENDING = "pending"  # waiting for the customer; their next message makes it open
    RESOLVED = "resolved"  # done; a customer message within the reopen window reopens it
    CLOSED = "closed"  # final; the customer's next message opens a new ticket


# Tickets a customer's message still goes to (resolved ones only within the reopen window).
LIVE_STATUSES = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING)


class Direction(enum.StrEnum):
    CUSTOMER = "customer"  # from the customer, relayed into the topic
    AGENT = "agent"  # from an agent (or an app through the API), relayed to the customer
    NOTE = "note"  # internal: kept in the topic, never relayed


class MessageSource(enum.StrEnum):
    TELEGRAM = "telegram"  # written in Telegram (the private chat or the topic)
    API = "api"  # POST /v1/tickets/{id}/messages


class RelayStatus(enum.StrEnum):
    PENDING = "pending"  # queued in the outbox
    SENT = "sent"  # the other side has it
    FAILED = (
        "failed"  # Telegram refused it (relay_error says why; e.g. the customer blocked the bot)
    )
    INTERNAL = "internal"  # a note: nothing to relay


class ChangedField(enum.StrEnum):
    STATUS = "status"
    ASSIGNEE = "assignee"


@dataclass(frozen=True, kw_only=True)
class Desk:
    id: str
    workspace_id: str
    bot_id: int
    connection_id: str  # a forum supergroup connection where the bot manages topics
    name: str
    assignment: Assignment
    reopen_window_seconds: int
    greeting_text: str | None
    closing_text: str | None
    created_at: datetime
    updated_at: datetime
    kb_auto_answer_threshold: float | None = None  # auto-answers above this score; None: off
    kb_answer_wait_seconds: int = DEFAULT_KB_ANSWER_WAIT_SECONDS


@dataclass(frozen=True, kw_only=True)
class Agent:
    workspace_id: str
    telegram_user_id: int
    name: str
    username: str | None
    external_id: str | None
    capacity: int | None  # open tickets round robin may give them; None: no limit
    active: bool  # takes round-robin assignments
    last_assigned_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, kw_only=True)
class Customer:
    """Who opened a ticket, as Telegram showed them."""

    id: int
    first_name: str
    last_name: str | None
    username: str | None
    language_code: str | None

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}" if self.last_name else self.first_name


@dataclass(frozen=True, kw_only=True)
class Ticket:
    id: str
    workspace_id: str
    number: int  # per workspace, from 1
    desk_id: str
    bot_id: int
    customer_chat_id: int
    customer: Customer
    subject: str  # the first words of the first message
    status: TicketStatus
    assignee_id: int | None  # an agent's telegram_user_id
    topic_chat_id: int
    topic_thread_id: int | None  # None until the topic is created
    header_message_id: int | None
    header_version: int  # bumped on every change the header shows; older edits are dropped
    resolution_note: str | None
    created_at: datetime
    updated_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    # Its channel: None, the bot's private chat; else the Telegram Business connection whose
    # account's chat with the customer it lives in (replies go out as that account).
    business_connection_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class MessageVersion:
    """An earlier text of an edited message."""

    text: str | None
    written_at: datetime
    replaced_at: datetime


@dataclass(frozen=True, kw_only=True)
class TicketMessage:
    id: int
    ticket_id: str
    direction: Direction
    source: MessageSource
    author_id: int | None
    kind: str  # text | photo | document | video | voice | sticker | other
    text: str | None  # as it reads now
    customer_message_id: int | None
    topic_message_id: int | None
    relay_status: RelayStatus
    relay_error: str | None
    created_at: datetime
    edited_at: datetime | None
    versions: tuple[MessageVersion, ...] = ()  # earlier texts, oldest first


@dataclass(frozen=True, kw_only=True)
class TicketChange:
    """One line of a ticket's history (statuses and assignments)."""

    ticket_id: str
    field: ChangedField
    previous: str | None
    value: str | None
    changed_by: str  # "agent:<telegram id>", "customer", "api", "system"
    note: str | None
    at: datetime


@dataclass(frozen=True, kw_only=True)
class Snippet:
    id: str
    workspace_id: str
    name: str  # what agents type after /s
    text: str  # a sandboxed Jinja2 template (support.templates)
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, kw_only=True)
class Article:
    """A knowledge-base article agents send from a topic (and, if auto_answer, the desk)."""

    id: str
    workspace_id: str
    title: str
    body: str
    tags: tuple[str, ...]
    language: str | None  # a primary language subtag ("en"); None: any language
    auto_answer: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, kw_only=True)
class Hit:
    """A search result: the article and its score (higher is better; the engine's own)."""

    article: Article
    score: float


class AutoAnswerOutcome(enum.StrEnum):
    WAITING = "waiting"  # the customer has the article and the Yes / No buttons
    DEFLECTED = "deflected"  # Yes: the article answered them; the ticket is resolved
    DECLINED = "declined"  # No, I need a person: agents take it
    TIMED_OUT = "timed_out"  # no answer within the desk's wait: agents take it


@dataclass(frozen=True, kw_only=True)
class AutoAnswer:
    ticket_id: str
    article_id: str
    title: str  # the article's title as it was sent
    score: float
    outcome: AutoAnswerOutcome
    asked_at: datetime
    settled_at: datetime | None


class ConnectionState(enum.StrEnum):
    """Where a desk bot's Telegram Business connection stands (what replies through it do)."""

    ACTIVE = "active"  # enabled, may reply: agents' replies go out as the account
    CANNOT_REPLY = "cannot_reply"  # enabled, but the account withheld the right to reply
    # is_enabled false: paused by the account, or removed (Telegram says both the same way)
    DISABLED = "disabled"
    # Telegram refused a send with BUSINESS_CONNECTION_INVALID: the connection is gone
    REMOVED = "removed"


@dataclass(frozen=True, kw_only=True)
class BusinessAccount:
    """The Telegram Business account (a user) that connected the desk's bot."""

    id: int
    first_name: str
    last_name: str | None
    username: str | None

    @property
    def name(self) -> str:
        """How the desk names it: @username, else its name."""
        if self.username:
            return f"@{self.username}"
        return f"{self.first_name} {self.last_name}" if self.last_name else self.first_name


@dataclass(frozen=True, kw_only=True)
class BusinessConnection:
    id: str  # Telegram's business_connection_id
    workspace_id: str
    bot_id: int
    account: BusinessAccount
    can_reply: bool
    is_enabled: bool
    state: ConnectionState
    connected_at: datetime  # Telegram's date of the connection (or its last change)
    created_at: datetime
    updated_at: datetime
