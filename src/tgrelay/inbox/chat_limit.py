"""TGRELAY_INBOUND_CHAT_LIMIT as a pure rule: is one more update of a chat within its limit?

A chat's window opens with its first update and lasts `seconds`; the first `count` updates
in it are admitted, the rest throttled, and only the first throttled one of a window says
so (`announce`: one chat.throttled event per window). The instant is the update's
`received_at`, not the processing clock, so a backlog drained late is judged as it arrived.

    no window ──update──▶ window(count=1)
    window, at < started_at + seconds:  count += 1; admitted while count <= limit
    window, at >= started_at + seconds: a new window(count=1) opens at `at`
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


@dataclass(frozen=True, kw_only=True)
class ChatLimit:
    count: int  # updates admitted per window
    window: timedelta


@dataclass(frozen=True, kw_only=True)
class Window:
    """A chat's current window (a chat_windows row)."""

    started_at: datetime
    count: int  # updates received in it, throttled ones included
    announced: bool  # its chat.throttled event is written


class Verdict(StrEnum):
    ADMITTED = "admitted"  # within the limit: handled as usual
    THROTTLED = "throttled"  # over the limit: stored, not handled
    THROTTLED_FIRST = "throttled_first"  # the window's first over the limit: also announce it


def admit(limit: ChatLimit, window: Window | None, *, at: datetime) -> tuple[Window, Verdict]:
    """The chat's window after one more update received at `at`, and that update's verdict."""
    if window is None or at >= window.started_at + limit.window:
        return Window(started_at=at, count=1, announced=False), _verdict(limit, 1, False)
    # An update received before the window's start (clocks of two intake processes apart)
    # counts in the current window rather than reopening an older one.
    count = window.count + 1
    verdict = _verdict(limit, count, window.announced)
    announced = window.announced or verdict is Verdict.THROTTLED_FIRST
    return Window(started_at=window.started_at, count=count, announced=announced), verdict


def _verdict(limit: ChatLimit, count: int, announced: bool) -> Verdict:
    if count <= limit.count:
        return Verdict.ADMITTED
    return Verdict.THROTTLED if announced else Verdict.THROTTLED_FIRST
