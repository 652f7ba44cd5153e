"""Time as a dependency: code that decides by time takes a `Clock`, tests pass their own."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The real clock: an aware UTC datetime."""
    return datetime.now(UTC)
