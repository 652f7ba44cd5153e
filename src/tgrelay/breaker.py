"""A circuit breaker as pure functions over a frozen record, with the clock passed in.

After `failure_threshold` consecutive failures the breaker opens: callers wait instead of
hammering a dead peer. When the cool-off ends one caller goes as the probe (half-open); its
success closes the breaker, its failure re-opens it for twice as long (capped). The record
is plain data (an enum, two counts, two instants), so it lives in a dict for Telegram's
per-bot breakers or in database columns for endpoints, and every process reads it alike.

    CLOSED     ─ failure_threshold consecutive failures ─▶ OPEN for open_seconds
    OPEN       ─ retry_at passed: the next caller probes ─▶ HALF_OPEN
    HALF_OPEN  ─ the probe fails ─▶ OPEN, the cool-off doubled (up to max_open_seconds)
    HALF_OPEN  ─ the probe is overdue (probe_timeout_seconds) ─▶ the next caller probes
    any state  ─ a success ─▶ CLOSED
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

# A caller that finds a probe in flight asks again this soon (at most): the probe's answer
# usually comes within one call's timeout, and then every waiting caller may go.
PROBE_WAIT_SECONDS = 5.0


class BreakerState(StrEnum):
    CLOSED = "closed"  # calls go through; failures are counted
    OPEN = "open"  # calls wait until retry_at
    HALF_OPEN = "half_open"  # one probe is in flight; the others wait for its answer


@dataclass(frozen=True, kw_only=True)
class BreakerPolicy:
    """When a breaker opens and how long it stays open."""

    failure_threshold: int = 5  # consecutive failures that open it
    open_seconds: float = 30.0  # the first cool-off
    max_open_seconds: float = 600.0  # the cool-off doubles per failed probe, capped here
    # A probe unanswered for this long is taken as lost (its process died) and another goes.
    probe_timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if self.open_seconds <= 0 or self.probe_timeout_seconds <= 0:
            raise ValueError("open_seconds and probe_timeout_seconds must be positive")
        if self.max_open_seconds < self.open_seconds:
            raise ValueError("max_open_seconds cannot be shorter than open_seconds")


DEFAULT_POLICY = BreakerPolicy()


@dataclass(frozen=True, kw_only=True)
class Breaker:
    """One breaker's state; the default is a closed breaker that has seen no failure."""

    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0  # since the last success
    open_count: int = 0  # openings since the breaker last closed: the cool-off's doubling
    opened_at: datetime | None = None  # when it last opened
    # OPEN: when a probe may go. HALF_OPEN: when the probe in flight is given up for lost.
    retry_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class Admission:
    """Whether a call may go now."""

    allowed: bool
    probe: bool = False  # the half-open probe: record its outcome, or release it
    wait_seconds: float = 0.0  # when refused: how long until asking again is worthwhile


def admit(policy: BreakerPolicy, breaker: Breaker, *, now: datetime) -> tuple[Admission, Breaker]:
    """Let a call through, make it the probe, or refuse it with the wait; and the new state."""
    if breaker.state is BreakerState.CLOSED:
        return Admission(allowed=True), breaker
    wait = _seconds_until(breaker.retry_at, now)
    if wait > 0:
        if breaker.state is BreakerState.HALF_OPEN:
            wait = min(wait, PROBE_WAIT_SECONDS, policy.open_seconds)
        return Admission(allowed=False, wait_seconds=wait), breaker
    # The cool-off is over (OPEN), or the probe in flight is overdue (HALF_OPEN): probe now.
    probing = replace(
        breaker,
        state=BreakerState.HALF_OPEN,
        retry_at=now + timedelta(seconds=policy.probe_timeout_seconds),
    )
    return Admission(allowed=True, probe=True), probing


def record_success(breaker: Breaker) -> Breaker:
    """The peer answered: the breaker closes and forgets its failures, whatever its state.

    Any answer counts, the probe's or a call's admitted before the breaker opened: either
    proves the peer is reachable now.
    """
    return Breaker()


def record_failure(policy: BreakerPolicy, breaker: Breaker, *, now: datetime) -> Breaker:
    """The peer could not be reached: count it, open at the threshold, re-open on a failed probe.

    While OPEN a failure (of a call admitted before it opened) only counts: the cool-off
    neither restarts nor doubles.
    """
    failures = breaker.consecutive_failures + 1
    match breaker.state:
        case BreakerState.CLOSED if failures >= policy.failure_threshold:
            return _opened(policy, failures=failures, open_count=1, now=now)
        case BreakerState.HALF_OPEN:
            return _opened(policy, failures=failures, open_count=breaker.open_count + 1, now=now)
        case _:
            return replace(breaker, consecutive_failures=failures)


def release_probe(breaker: Breaker, *, now: datetime) -> Breaker:
    """The probe ended without an answer (cancelled): the next caller may probe at once."""
    if breaker.state is not BreakerState.HALF_OPEN:
        return breaker
    return replace(breaker, state=BreakerState.OPEN, retry_at=now)


def cool_off_seconds(policy: BreakerPolicy, open_count: int) -> float:
    """How long the `open_count`-th consecutive opening lasts: doubling, capped."""
    exponent = max(open_count - 1, 0)
    # 2**64 × any positive open_seconds is past every sensible cap; the min avoids overflow.
    return min(policy.open_seconds * 2.0 ** min(exponent, 64), policy.max_open_seconds)


def _opened(policy: BreakerPolicy, *, failures: int, open_count: int, now: datetime) -> Breaker:
    return Breaker(
        state=BreakerState.OPEN,
        consecutive_failures=failures,
        open_count=open_count,
        opened_at=now,
        retry_at=now + timedelta(seconds=cool_off_seconds(policy, open_count)),
    )


def _seconds_until(moment: datetime | None, now: datetime) -> float:
    return 0.0 if moment is None else max((moment - now).total_seconds(), 0.0)
