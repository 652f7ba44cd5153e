"""Conversations' records: a conversation's state, what moves it, and the events' data.

The state is a pydantic model so the store can keep it as JSON; the inputs are frozen
dataclasses the runtime builds from an update, a call's outcome or a timer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class Status(enum.StrEnum):
    ACTIVE = "active"  # waiting for the user at an ask or confirm step
    CALLING = "calling"  # waiting for the team's app at a call step
    COMPLETED = "completed"  # reached an end or handoff step
    ABANDONED = "abandoned"  # stopped: see AbandonReason


class AbandonReason(enum.StrEnum):
    TIMEOUT = "timeout"  # idle for the flow's timeout_seconds
    CANCEL = "cancel"  # /cancel, or the API
    FAILED = "failed"  # tries ran out, or a call failed past its deadline, with nowhere to go


TERMINAL = frozenset((Status.COMPLETED, Status.ABANDONED))  # never moves again


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Facts(_Record):
    """Who and where, as Telegram told at the start: the flow's `user.*` and `chat.id`."""

    user_id: int
    chat_id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None


class State(_Record):
    """Where a conversation stands."""

    flow: str  # the flow's name
    version: int  # the flow's version it started with, and keeps
    step: str  # the current step's id (where it waits, ended or stopped)
    variables: dict[str, Any]  # JSON values, by name
    tries: int  # invalid answers at an ask step; failed attempts at a call step
    status: Status
    facts: Facts
    started_at: datetime
    # The idle clock: the start, the user's latest input, or the end of a call's wait.
    last_input_at: datetime
    reason: AbandonReason | None = None  # set when abandoned


# --- inputs: what moves a conversation --------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Start:
    """Start a conversation of the flow (its trigger fired, or the API asked)."""

    version: int
    facts: Facts
    variables: dict[str, Any] | None = None  # given by the API's start; none otherwise


@dataclass(frozen=True, kw_only=True)
class Text:
    """The user sent text."""

    text: str


@dataclass(frozen=True, kw_only=True)
class Photo:
    """The user sent a photo (its largest size)."""

    file_id: str
    file_unique_id: str


@dataclass(frozen=True, kw_only=True)
class Location:
    """The user shared a location."""

    latitude: float
    longitude: float


@dataclass(frozen=True, kw_only=True)
class Contact:
    """The user shared a contact (their own or another's)."""

    phone_number: str
    first_name: str
    last_name: str | None = None
    user_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class Button:
    """The user pressed an inline button the conversation sent: its callback data."""

    data: str


@dataclass(frozen=True, kw_only=True)
class CallSucceeded:
    """The team's app answered the call step's request with this JSON value."""

    step: str  # the call step the answer is for
    answer: Any


@dataclass(frozen=True, kw_only=True)
class CallFailed:
    """An attempt of the call step's request failed."""

    step: str
    reason: str  # e.g. "HTTP 503", "timed out after 10 s", "circuit open"
    deadline_passed: bool  # true: no more retries; the step's on_failure is taken


@dataclass(frozen=True, kw_only=True)
class IdleTimeout:
    """The idle timer fired (it is checked against last_input_at: a late timer is ignored)."""


@dataclass(frozen=True, kw_only=True)
class Cancel:
    """/cancel, or the API ended the conversation."""


Answer = Text | Photo | Location | Contact | Button  # what a user sends
Input = Start | Answer | CallSucceeded | CallFailed | IdleTimeout | Cancel


# --- the events' data (events.catalog will declare these types with these shapes) -------


class ConversationStartedData(_Record):
    """conversation.started."""

    flow: str
    version: int
    chat_id: int
    user_id: int


class ConversationCompletedData(_Record):
    """conversation.completed: the variables in full, sensitive ones included (the team's
    app needs them; only the history masks them)."""

    flow: str
    version: int
    chat_id: int
    user_id: int
    variables: dict[str, Any]


class ConversationAbandonedData(_Record):
    """conversation.abandoned."""

    flow: str
    version: int
    chat_id: int
    user_id: int
    reason: AbandonReason
    step: str  # where it stopped


class ConversationStepFailedData(_Record):
    """conversation.step_failed: invalid answers ran out, or a call failed (first failure,
    then again when its deadline passed), or the app's answer was unusable."""

    flow: str
    version: int
    chat_id: int
    user_id: int
    step: str
    reason: str  # never the user's answer


EventData = (
    ConversationStartedData
    | ConversationCompletedData
    | ConversationAbandonedData
    | ConversationStepFailedData
)
