"""How the pages show times and statuses: relative times with the exact one on hover, and
status badges with a colour and words. Pure functions, registered as Jinja filters."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

MINUTE = 60
HOUR = 60 * MINUTE
DAY = 24 * HOUR


class Tone(StrEnum):
    GOOD = "good"  # works as it should
    WAITING = "waiting"  # in progress; nothing is wrong yet
    BAD = "bad"  # needs someone to act
    WARN = "warn"  # works partly, or will be retried
    OFF = "off"  # switched off on purpose


# Every status value the pages show, from each domain's enums; an unknown one reads as OFF.
TONES: dict[str, Tone] = {
    "healthy": Tone.GOOD,
    "processed": Tone.GOOD,
    "sent": Tone.GOOD,
    "active": Tone.GOOD,
    "enabled": Tone.GOOD,
    "delivered": Tone.GOOD,
    "connected": Tone.GOOD,
    "closed": Tone.GOOD,  # a breaker letting deliveries through; a ticket done for good
    "resolved": Tone.GOOD,  # a ticket done (its customer may still reopen it)
    "completed": Tone.GOOD,  # a conversation that reached its end
    "pending": Tone.WAITING,
    "queued": Tone.WAITING,
    "waiting_private": Tone.WAITING,
    "waiting_group": Tone.WAITING,
    "calling": Tone.WAITING,  # a conversation waiting for the team's app
    "webhook_conflict": Tone.WARN,
    "half_open": Tone.WARN,
    "token_revoked": Tone.BAD,
    "failed": Tone.BAD,
    "dead": Tone.BAD,
    "dead_letter": Tone.BAD,
    "bot_removed": Tone.BAD,
    "expired": Tone.BAD,
    "abandoned": Tone.WARN,  # a conversation stopped: timeout, cancel or failure
    "open": Tone.BAD,  # a breaker holding deliveries back; a ticket the team owes a move
    "new": Tone.BAD,  # a ticket nobody has answered yet
    "disconnected": Tone.OFF,
    "disabled": Tone.OFF,
    "cancelled": Tone.OFF,
}


def tone(status: str) -> str:
    """The badge colour of a status value (Jinja filter `tone`)."""
    return TONES.get(str(status), Tone.OFF).value


def words(status: str) -> str:
    """A status value as words: `dead_letter` reads "dead letter" (Jinja filter `words`)."""
    return str(status).replace("_", " ")


def exact(moment: datetime) -> str:
    """An instant in UTC to the second, as the hover text shows it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(moment: datetime) -> str:
    """An instant for `<time datetime=…>`."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _span(seconds: float) -> str:
    whole = int(seconds)
    if whole < MINUTE:
        return f"{whole} s"
    if whole < HOUR:
        return f"{whole // MINUTE} min"
    if whole < DAY:
        return f"{whole // HOUR} h"
    days = whole // DAY
    return f"{days} day" if days == 1 else f"{days} days"


def relative(moment: datetime, now: datetime) -> str:
    """How long ago (or how soon) an instant is, in the largest whole unit."""
    delta = (moment - now).total_seconds()
    if abs(delta) < 1:
        return "just now"
    return f"in {_span(delta)}" if delta > 0 else f"{_span(-delta)} ago"


def time_left(until: datetime, now: datetime) -> str:
    """What is left of a deadline, to the second under an hour; "expired" once it passed."""
    left = until - now
    if left <= timedelta():
        return "expired"
    seconds = int(left.total_seconds())
    if seconds < HOUR:
        minutes, rest = divmod(seconds, MINUTE)
        return f"{minutes} min {rest:02d} s left" if minutes else f"{rest} s left"
    return f"{_span(seconds)} left"


def as_json(value: Mapping[str, Any]) -> str:
    """A record's detail as readable JSON: keys sorted, non-ASCII kept (autoescaped by Jinja)."""
    return json.dumps(dict(value), ensure_ascii=False, sort_keys=True, default=str)
