"""A desk's SLA policy as the API takes and stores it (JSON), validated with clear errors,
and its reading for the calculator (support.sla). Pure."""

from __future__ import annotations

import enum
import itertools
import re
from datetime import date
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tgrelay.support import sla
from tgrelay.support.models import TicketStatus

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")
MAX_TARGET_SECONDS = 365 * 24 * 3600
MAX_STEPS = 20
MAX_USERS = 20
# Statuses a policy may pause in; resolved and closed always stop the clocks.
PAUSABLE = (TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING)

Seconds = Annotated[int, Field(ge=1, le=MAX_TARGET_SECONDS)]
Text = Annotated[str, Field(min_length=1, max_length=1000)]


class Action(enum.StrEnum):
    MENTION = "mention"  # users mentioned in the ticket's topic
    MESSAGE_USER = "message_user"  # a private message to a Telegram user from the desk's bot
    POST_TO_CONNECTION = "post_to_connection"  # a message in a group connection
    REASSIGN = "reassign"  # to an agent, or the next in rotation
    EMIT = "emit"  # ticket.escalated


class Step(BaseModel):
    """One rung of the ladder: when (`after_seconds` past the breach, or
    `warn_before_seconds` ahead of the due time), for which metrics, and what it does."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after_seconds: Annotated[int, Field(ge=0, le=MAX_TARGET_SECONDS)] | None = None
    warn_before_seconds: Seconds | None = None
    metrics: list[sla.Metric] | None = None  # null: every tracked metric
    action: Action
    # mention: Telegram user ids or @usernames
    users: list[int | Annotated[str, Field(pattern=r"^@?[A-Za-z0-9_]{5,32}$")]] | None = None
    user_id: int | None = None  # message_user: who gets it
    connection_id: str | None = Field(default=None, max_length=40)  # post_to_connection
    to: int | Literal["round_robin"] | None = None  # reassign: an agent's telegram_user_id
    text: Text | None = None  # the message's text (a default says which ticket and why)

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if (self.after_seconds is None) == (self.warn_before_seconds is None):
            raise ValueError("a step needs exactly one of after_seconds or warn_before_seconds")
        needs = {
            Action.MENTION: ("users", self.users),
            Action.MESSAGE_USER: ("user_id", self.user_id),
            Action.POST_TO_CONNECTION: ("connection_id", self.connection_id),
            Action.REASSIGN: ("to", self.to),
        }
        if self.action in needs:
            name, value = needs[self.action]
            if not value:
                raise ValueError(f"a {self.action} step needs `{name}`")
        if self.users is not None and len(self.users) > MAX_USERS:
            raise ValueError(f"a mention step names at most {MAX_USERS} users")
        return self

    def applies_to(self, metric: sla.Metric) -> bool:
        return self.metrics is None or metric in self.metrics


class Hours(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = Field(min_length=1, max_length=64)
    weekly: dict[str, list[tuple[str, str]]]
    holidays: list[date] = Field(default_factory=list, max_length=1000)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {name!r}: use an IANA name such as Europe/Berlin"
            ) from None
        return name

    @field_validator("weekly")
    @classmethod
    def _ranges(cls, weekly: dict[str, list[tuple[str, str]]]) -> dict[str, list[tuple[str, str]]]:
        for day, ranges in weekly.items():
            if day not in WEEKDAYS:
                raise ValueError(f"unknown weekday {day!r}: use one of {', '.join(WEEKDAYS)}")
            minutes: list[tuple[int, int, str]] = []
            for start, end in ranges:
                for value in (start, end):
                    if not TIME.match(value):
                        raise ValueError(f"{day}: {value!r} is no time of day (HH:MM, to 24:00)")
                if _minutes(start) >= _minutes(end):
                    raise ValueError(f"{day}: {start}–{end} ends before it starts")
                minutes.append((_minutes(start), _minutes(end), f"{start}–{end}"))
            minutes.sort()
            for earlier, later in itertools.pairwise(minutes):
                if later[0] < earlier[1]:
                    raise ValueError(f"{day}: {earlier[2]} and {later[2]} overlap")
        if not any(weekly.values()):
            raise ValueError("business hours need at least one opening range")
        return weekly

    def calculator(self) -> sla.BusinessHours:
        return sla.BusinessHours(
            timezone=self.timezone,
            weekly={
                WEEKDAYS.index(day): tuple(
                    sorted((_minutes(start), _minutes(end)) for start, end in ranges)
                )
                for day, ranges in self.weekly.items()
            },
            holidays=frozenset(self.holidays),
        )


class PolicySpec(BaseModel):
    """PUT /v1/support/desks/{id}/sla: targets in seconds of business time (each optional),
    business hours (null: 24/7), the statuses that pause the clocks, the escalation ladder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first_response: Seconds | None = None
    next_response: Seconds | None = None
    resolution: Seconds | None = None
    business_hours: Hours | None = None
    pause_statuses: list[TicketStatus] = Field(default_factory=lambda: [TicketStatus.PENDING])
    escalation: list[Step] = Field(default_factory=list, max_length=MAX_STEPS)

    @field_validator("pause_statuses")
    @classmethod
    def _pausable(cls, statuses: list[TicketStatus]) -> list[TicketStatus]:
        for status in statuses:
            if status not in PAUSABLE:
                raise ValueError(f"{status} cannot pause: resolved and closed stop every clock")
        return statuses

    def calculator(self) -> sla.Policy:
        return sla.Policy(
            first_response=self.first_response,
            next_response=self.next_response,
            resolution=self.resolution,
            hours=None if self.business_hours is None else self.business_hours.calculator(),
            pause_statuses=frozenset(self.pause_statuses),
        )


def _minutes(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)
