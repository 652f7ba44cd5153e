"""When a failed job runs again: exponential backoff with jitter, as a pure function.

Handlers steer this with two exceptions: `Reschedule` (try later, not a failure, e.g. a
429 from Telegram) and `PermanentFailure` (retrying cannot help, e.g. a malformed payload).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from tgrelay.queue.models import Finish


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Exponential backoff: base_delay × factor^(failures − 1), capped, then jittered."""

    base_delay: float = 1.0  # seconds before the first retry
    factor: float = 2.0
    # Seconds; the cap applies before jitter, so jobs failing at the cap still spread out.
    max_delay: float = 3600.0
    jitter: float = 0.1  # the delay moves by up to ± this fraction of itself

    def __post_init__(self) -> None:
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays cannot be negative")
        if self.factor < 1:
            raise ValueError("factor must be at least 1, or delays would shrink")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a fraction in [0, 1)")


DEFAULT_POLICY = RetryPolicy()


def delay_seconds(policy: RetryPolicy, *, attempts: int, rand: float) -> float:
    """The pause after the `attempts`-th failed attempt; `rand` in [0, 1) picks the jitter."""
    exponent = max(attempts - 1, 0)
    try:
        raw = policy.base_delay * policy.factor**exponent
    except OverflowError:
        raw = policy.max_delay
    capped = min(raw, policy.max_delay)
    return capped * (1 + policy.jitter * (2 * rand - 1))


def next_run_at(
    policy: RetryPolicy, *, attempts: int, max_attempts: int, now: datetime, rand: float
) -> datetime | None:
    """When to try again after a failure, or None when the job has used its last attempt."""
    if attempts >= max_attempts:
        return None
    return now + timedelta(seconds=delay_seconds(policy, attempts=attempts, rand=rand))


class Reschedule(Exception):
    """Run this job again later without counting the attempt as a failure (e.g. rate limits)."""

    def __init__(
        self,
        delay: float,
        reason: str,
        *,
        payload: Mapping[str, Any] | None = None,
        record: Finish | None = None,
    ) -> None:
        self.delay = max(delay, 0.0)  # seconds from now
        self.reason = reason
        # Replaces the job's payload when given: what this run learnt for the next one
        # (e.g. the send slot it reserved).
        self.payload = payload
        # Written in the transaction that reschedules the job, and only if this worker still
        # held it: a record the payload refers to commits with it, and costs no transaction.
        self.record = record
        super().__init__(f"rescheduled in {self.delay:g}s: {reason}")


class PermanentFailure(Exception):
    """Retrying cannot help: the job goes straight to dead, whatever attempts remain."""

    def __init__(self, reason: str, *, record: Finish | None = None) -> None:
        # Written in the transaction that marks the job dead, and only if this worker still
        # held it: whoever asked for the job hears why it gave up, exactly once.
        self.record = record
        super().__init__(reason)
