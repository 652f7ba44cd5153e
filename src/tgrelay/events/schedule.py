"""What an attempt's outcome means for its delivery and its endpoint, as pure functions.

The retry schedule follows Svix and the Standard Webhooks guidance: at once, then 5 s, 5 min,
30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h (configurable), each delay jittered, and never
sooner than the endpoint's own Retry-After.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_RETRY_AFTER_SECONDS = 86400.0  # an endpoint cannot push its retry further than a day


@dataclass(frozen=True, kw_only=True)
class Schedule:
    delays: tuple[float, ...]  # seconds before attempt 1, 2, …; its length is the attempt count
    jitter: float = 0.1  # each delay moves by up to ± this fraction of itself
    disable_after: timedelta = timedelta(days=5)  # failing this long without success ⇒ disable

    def __post_init__(self) -> None:
        if not self.delays or any(delay < 0 for delay in self.delays):
            raise ValueError("a schedule needs at least one delay, none negative")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a fraction in [0, 1)")


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"  # 2xx
    GONE = "gone"  # 410: the receiver asks us to stop; the endpoint is disabled
    FAILED = "failed"  # anything else: 3xx (redirects are not followed), 4xx, 5xx, no answer


def classify(status_code: int | None) -> Outcome:
    """A 2xx delivers; 410 disables; every other answer, or none, is a failure."""
    if status_code is not None and 200 <= status_code < 300:
        return Outcome.DELIVERED
    if status_code == 410:
        return Outcome.GONE
    return Outcome.FAILED


def next_attempt_at(
    schedule: Schedule,
    *,
    attempts_done: int,
    now: datetime,
    retry_after: float | None,
    rand: float,
) -> datetime | None:
    """When to try again after the `attempts_done`-th failed attempt of this run, or None.

    `rand` in [0, 1) picks the jitter. Retry-After is honoured as a floor, capped at a day.
    """
    if attempts_done >= len(schedule.delays):
        return None
    delay = schedule.delays[attempts_done] * (1 + schedule.jitter * (2 * rand - 1))
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_SECONDS))
    return now + timedelta(seconds=delay)


def failing_too_long(schedule: Schedule, *, failing_since: datetime | None, now: datetime) -> bool:
    """An endpoint that has not succeeded once in `disable_after` is disabled."""
    return failing_since is not None and now - failing_since >= schedule.disable_after
