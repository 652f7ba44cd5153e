"""SLA clocks: business-time arithmetic and each metric's due, met and breached times, as a
pure function of a ticket's history, the desk's policy and the clock.

Business time is real elapsed time inside the weekly opening ranges of the policy's
timezone, holidays excepted: a range's local ends are turned into instants with zoneinfo,
so a 00:00–24:00 range lasts 23 h on a spring-forward day and 25 h on a fall-back one.
A clock runs only in business time and outside paused statuses; resolved and closed
tickets stop every clock.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from tgrelay.support.models import Direction, TicketStatus

DAY_MINUTES = 24 * 60
# How far ahead the arithmetic looks for business time before it gives up (a schedule of
# a quarter hour a week still reaches two business days).
HORIZON_DAYS = 10 * 366
STOPPED = frozenset({TicketStatus.RESOLVED, TicketStatus.CLOSED})


class Metric(enum.StrEnum):
    FIRST_RESPONSE = "first_response"
    NEXT_RESPONSE = "next_response"
    RESOLUTION = "resolution"


class NoOpening(ValueError):
    """The schedule has no business time within HORIZON_DAYS of an instant."""


@dataclass(frozen=True, kw_only=True)
class BusinessHours:
    """Opening ranges per weekday (0 = Monday) in minutes from local midnight, [start, end),
    end ≤ 1440; local dates that are holidays have none."""

    timezone: str
    weekly: Mapping[int, tuple[tuple[int, int], ...]]
    holidays: frozenset[date] = frozenset()


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Targets in business seconds (None: the metric is not tracked)."""

    first_response: int | None = None
    next_response: int | None = None
    resolution: int | None = None
    hours: BusinessHours | None = None  # None: 24/7
    pause_statuses: frozenset[TicketStatus] = frozenset({TicketStatus.PENDING})

    def target(self, metric: Metric) -> int | None:
        seconds: int | None = getattr(self, metric.value)
        return seconds


@dataclass(frozen=True, kw_only=True)
class History:
    """What the clocks are computed from: every status a ticket took (its first, `new`, at
    creation) and its messages' directions, each at its time, oldest first."""

    created_at: datetime
    statuses: tuple[tuple[datetime, TicketStatus], ...]
    messages: tuple[tuple[datetime, Direction], ...]


@dataclass(frozen=True, kw_only=True)
class Clock:
    """One run of a metric: `due_at` None while it is not running (paused, stopped before it
    fell due); `breached_at` is the due time once it passed unmet."""

    metric: Metric
    started_at: datetime
    due_at: datetime | None
    paused: bool
    met_at: datetime | None
    breached_at: datetime | None


# --- business-time arithmetic -----------------------------------------------------------------


def openings(hours: BusinessHours, since: datetime) -> Iterator[tuple[datetime, datetime]]:
    """The opening intervals (UTC, ascending) that end after `since`."""
    zone = ZoneInfo(hours.timezone)
    day = since.astimezone(zone).date() - timedelta(days=1)
    for _ in range(HORIZON_DAYS):
        if day not in hours.holidays:
            for start, end in hours.weekly.get(day.weekday(), ()):
                opens, closes = _instant(day, start, zone), _instant(day, end, zone)
                if closes > since and closes > opens:
                    yield opens, closes
        day += timedelta(days=1)


def add_business(at: datetime, seconds: float, hours: BusinessHours | None) -> datetime:
    """The instant `seconds` of business time after `at` (from the next opening when `at`
    is outside hours)."""
    if hours is None:
        return at + timedelta(seconds=seconds)
    remaining = timedelta(seconds=seconds)
    for opens, closes in openings(hours, at):
        start = max(opens, at)
        if remaining <= closes - start:
            return start + remaining
        remaining -= closes - start
    raise NoOpening(f"no business time within {HORIZON_DAYS} days of {at.isoformat()}")


def business_between(start: datetime, end: datetime, hours: BusinessHours | None) -> float:
    """Business seconds in [start, end) (0 when end ≤ start)."""
    if end <= start:
        return 0.0
    if hours is None:
        return (end - start).total_seconds()
    total = timedelta()
    for opens, closes in openings(hours, start):
        if opens >= end:
            break
        total += min(closes, end) - max(opens, start)
    return total.total_seconds()


def _instant(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """A local wall time as UTC (24:00 is the next midnight; a time in a spring-forward gap
    reads with the offset before the change, i.e. the hour after it)."""
    if minutes >= DAY_MINUTES:
        day, minutes = day + timedelta(days=1), minutes - DAY_MINUTES
    local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone)
    return local.astimezone(UTC)


# --- clocks -----------------------------------------------------------------------------------


def clocks(history: History, policy: Policy, now: datetime) -> list[Clock]:
    """Each tracked metric's latest run (next_response: the one after the latest customer
    message that waited for an answer), in Metric order."""
    latest: dict[Metric, Clock] = {}
    for clock in runs(history, policy, now):
        latest[clock.metric] = clock
    return [latest[m] for m in Metric if m in latest]


def runs(history: History, policy: Policy, now: datetime) -> list[Clock]:
    """Every run of every tracked metric (a ticket has one first_response and resolution
    run, and a next_response run per customer message that waited for an answer)."""
    found: list[Clock] = []
    stops = _stops(history, policy.pause_statuses, now)
    current = history.statuses[-1][1] if history.statuses else TicketStatus.NEW
    paused_now = current in policy.pause_statuses
    agent_times = [at for at, d in history.messages if d is Direction.AGENT]
    for metric, started, met in _spans(history, agent_times, current):
        target = policy.target(metric)
        if target is not None:
            # A met run's due time ignores the stops from its meeting on (resolving is one).
            considered = stops if met is None else [s for s in stops if s[0] < met]
            due = _due(started, target, policy.hours, considered)
            breached = None
            if due is not None and due <= (met or now):
                breached = due
            running = met is None and current not in STOPPED
            found.append(
                Clock(
                    metric=metric,
                    started_at=started,
                    due_at=due if met is not None or running or breached else None,
                    paused=running and paused_now,
                    met_at=met,
                    breached_at=breached,
                )
            )
    return found


def _spans(
    history: History, agent_times: Sequence[datetime], current: TicketStatus
) -> Iterator[tuple[Metric, datetime, datetime | None]]:
    """(metric, started_at, met_at) of each run."""
    first_reply = agent_times[0] if agent_times else None
    yield Metric.FIRST_RESPONSE, history.created_at, first_reply
    # In the messages' order, not by time: a reply in the same instant still follows.
    answered, waiting_since = False, None
    for at, direction in history.messages:
        if direction is Direction.AGENT:
            if waiting_since is not None:
                yield Metric.NEXT_RESPONSE, waiting_since, at
            answered, waiting_since = True, None
        elif direction is Direction.CUSTOMER and answered and waiting_since is None:
            waiting_since = at
    if waiting_since is not None:
        yield Metric.NEXT_RESPONSE, waiting_since, None
    resolved = None
    if current in STOPPED:  # since the first of the stopped statuses it is in now
        for at, status in reversed(history.statuses):
            if status not in STOPPED:
                break
            resolved = at
    yield Metric.RESOLUTION, history.created_at, resolved


def _stops(
    history: History, pause: frozenset[TicketStatus], now: datetime
) -> list[tuple[datetime, datetime | None]]:
    """The intervals in which clocks do not run (a paused or stopped status), merged; the
    last one open-ended when the ticket is in such a status now."""
    intervals: list[tuple[datetime, datetime | None]] = []
    halted = pause | STOPPED
    since: datetime | None = None
    for at, status in history.statuses:
        if status in halted and since is None:
            since = at
        elif status not in halted and since is not None:
            intervals.append((since, at))
            since = None
    if since is not None:
        intervals.append((since, None))
    return intervals


def _due(
    started: datetime,
    target: int,
    hours: BusinessHours | None,
    stops: Sequence[tuple[datetime, datetime | None]],
) -> datetime | None:
    """When `target` business seconds will have run from `started`, skipping the stops
    (None: the clock is halted now, before it fell due)."""
    cursor, remaining = started, float(target)
    for stop_from, stop_to in stops:
        if stop_to is not None and stop_to <= cursor:
            continue
        if stop_from > cursor:
            due = add_business(cursor, remaining, hours)
            if due <= stop_from:
                return due
            remaining -= business_between(cursor, stop_from, hours)
        if stop_to is None:
            return None
        cursor = max(cursor, stop_to)
    return add_business(cursor, remaining, hours)
