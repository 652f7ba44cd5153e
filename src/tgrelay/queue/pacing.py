"""How often a worker looks for jobs nobody told it about: often right after work, seldom
after a long quiet, as a pure function of when the lane went quiet and the clock.

Jobs enqueued in the worker's own process wake it at once (`Worker.notify`); looking is the
fallback for jobs another process wrote, and for jobs that became due while it waited.
Each pause is a share of the quiet so far, so the looks thin out geometrically and a job
written by another process after `q` seconds of quiet waits at most about `share × q`
(never more than `idle_seconds`). Looking 50 times a second forever cost an idle `serve`
~10 % of a core (bench/idle.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Pacing:
    """The pauses between an idle worker's looks: from `busy_seconds` up to `idle_seconds`."""

    busy_seconds: float  # the pause right after work or a wake
    idle_seconds: float  # the longest pause, reached after idle_seconds / share of quiet
    share: float = 0.25  # each pause as a share of the quiet so far

    def __post_init__(self) -> None:
        if not 0 < self.busy_seconds <= self.idle_seconds:
            raise ValueError("pauses need 0 < busy_seconds <= idle_seconds")
        if not 0 <= self.share <= 1:
            raise ValueError("share is a fraction in [0, 1]")

    @classmethod
    def steady(cls, seconds: float) -> Pacing:
        """The same pause whatever the quiet (tests, and lanes that must stay prompt)."""
        return cls(busy_seconds=seconds, idle_seconds=seconds, share=0)


# The main lane's: a busy lane looks every 50 ms; a quiet one once every 2 s, after 8 s.
DEFAULT_PACING = Pacing(busy_seconds=0.05, idle_seconds=2.0)


def pause(pacing: Pacing, *, quiet_since: float, now: float) -> float:
    """Seconds to wait before looking again, when nothing was found or woke the worker since
    `quiet_since` (both instants on the same monotonic clock, in seconds)."""
    quiet = max(now - quiet_since, 0.0)
    return min(pacing.idle_seconds, max(pacing.busy_seconds, pacing.share * quiet))


# A worker that notifications wake (PostgreSQL, its process LISTENing: db/notifications.py)
# looks only for what no notification announced: a job freed by a predecessor that another
# process finished or killed, a timer another process wrote. Once a second right after work
# instead of every 20–50 ms; the idle cap stays, so such a timer is still seen within 2 s.
LISTENING_BUSY_SECONDS = 1.0


def listening(pacing: Pacing) -> Pacing:
    """`pacing` for while notifications wake the worker: busy looks no more often than once
    a second; slower pacings (tests') stay as they are."""
    busy = max(pacing.busy_seconds, LISTENING_BUSY_SECONDS)
    return Pacing(
        busy_seconds=busy, idle_seconds=max(pacing.idle_seconds, busy), share=pacing.share
    )
