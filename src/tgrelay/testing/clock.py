"""A clock tests can move: real time (or a fixed start) plus an offset that only grows.

An instance is callable, so it fits wherever `tgrelay.clock.Clock` is expected.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """UTC time that `advance` moves forward; 24-hour expiries become testable in a second."""

    def __init__(self, *, start: datetime | None = None) -> None:
        # With a start the clock stands still except for `advance`; without, it follows real time.
        if start is not None and start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self._start = start.astimezone(UTC) if start is not None else None
        self._offset = timedelta()

    def now(self) -> datetime:
        """The current time: aware, in UTC."""
        base = self._start if self._start is not None else datetime.now(UTC)
        return base + self._offset

    def __call__(self) -> datetime:
        return self.now()

    def timestamp(self) -> int:
        """The current time as Telegram writes dates: whole seconds since the epoch."""
        return int(self.now().timestamp())

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward and return the new time; time never runs backwards."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._offset += timedelta(seconds=seconds)
        return self.now()
