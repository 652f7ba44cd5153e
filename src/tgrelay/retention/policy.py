"""How long finished rows are kept, and from which instant back a row is past its age.

Pure: the settings become a `Policy`; `cutoffs(policy, now)` gives, per kind of row that is
pruned at all, the instant before which a finished row of that kind may go. What counts as
finished is `prune`'s part, in SQL, because it must hold at the moment of the delete.
`windows_cutoff(policy, now)` is the same for chat windows, which have no age to choose:
one is worth nothing once it has ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from tgrelay.settings import Settings


class Kind(StrEnum):
    """What retention prunes; each kind has its own age and can be kept forever."""

    UPDATES = "updates"  # stored updates whose process_update job is done, dead or gone
    JOBS = "jobs"  # jobs that are done
    DEAD_JOBS = "dead_jobs"  # jobs that gave up: kept longer, to be seen and re-run
    EVENTS = "events"  # events, and their deliveries (delivered or dead-lettered) and attempts
    AUDIT = "audit"  # audit rows, whatever they record


@dataclass(frozen=True, kw_only=True)
class Policy:
    """The age past which each kind of finished row goes; None keeps that kind forever."""

    updates: timedelta | None = timedelta(days=30)
    jobs: timedelta | None = timedelta(days=7)
    dead_jobs: timedelta | None = timedelta(days=30)
    events: timedelta | None = timedelta(days=30)
    audit: timedelta | None = timedelta(days=365)
    # TGRELAY_INBOUND_CHAT_LIMIT's window: a chat_windows row has ended this long after it
    # started. None when the limit is off: every row left from when it was on has ended.
    chat_window: timedelta | None = None

    def __post_init__(self) -> None:
        for kind, age in self.ages().items():
            if age is not None and age <= timedelta():
                raise ValueError(f"the age of {kind} must be positive (None keeps it forever)")
        if self.chat_window is not None and self.chat_window <= timedelta():
            raise ValueError("the chat window must be positive (None when the limit is off)")

    def ages(self) -> dict[Kind, timedelta | None]:
        return {
            Kind.UPDATES: self.updates,
            Kind.JOBS: self.jobs,
            Kind.DEAD_JOBS: self.dead_jobs,
            Kind.EVENTS: self.events,
            Kind.AUDIT: self.audit,
        }

    @property
    def prunes_anything(self) -> bool:
        """Whether a pruner runs at all. With the chat limit on, it must, for its windows,
        even when every kind is kept forever; with it off no window is written any more."""
        return self.chat_window is not None or any(age is not None for age in self.ages().values())


KEEP_FOREVER = Policy(updates=None, jobs=None, dead_jobs=None, events=None, audit=None)


def days(value: float) -> timedelta | None:
    """A `TGRELAY_RETAIN_*_DAYS` value as an age: 0 means keep forever."""
    if value < 0:
        raise ValueError("a retention in days cannot be negative")
    return None if value == 0 else timedelta(days=value)


def from_settings(settings: Settings) -> Policy:
    return Policy(
        updates=days(settings.retain_updates_days),
        jobs=days(settings.retain_jobs_days),
        dead_jobs=days(settings.retain_dead_jobs_days),
        events=days(settings.retain_events_days),
        audit=days(settings.retain_audit_days),
        chat_window=(
            None
            if settings.inbound_chat_limit is None
            else timedelta(seconds=settings.inbound_chat_limit[1])
        ),
    )


def cutoffs(policy: Policy, now: datetime) -> dict[Kind, datetime]:
    """Per kind that is pruned, the instant before which its finished rows are past their age.

    A row exactly as old as its age stays: only rows strictly before the cutoff go.
    """
    _check_aware(now)
    return {kind: now - age for kind, age in policy.ages().items() if age is not None}


def windows_cutoff(policy: Policy, now: datetime) -> datetime:
    """The instant at or before which a chat window started has ended at `now`.

    `chat_limit.admit` opens a new window for an update received at or after `started_at +
    window`, so a window started exactly one window ago has ended and may go.
    """
    _check_aware(now)
    return now if policy.chat_window is None else now - policy.chat_window


def _check_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
