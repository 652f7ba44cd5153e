"""The pure retention policy: ages from settings, and the cutoff per kind at a given instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tgrelay.inbox import chat_limit
from tgrelay.retention import policy
from tgrelay.retention.policy import Kind, Policy
from tgrelay.settings import Settings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_defaults_match_the_documented_ages() -> None:
    """Unset settings keep updates 30 days, done jobs 7, dead jobs 30, events 30, audit 365."""
    assert policy.from_settings(Settings()) == Policy(
        updates=timedelta(days=30),
        jobs=timedelta(days=7),
        dead_jobs=timedelta(days=30),
        events=timedelta(days=30),
        audit=timedelta(days=365),
    )


@pytest.mark.parametrize(
    ("value", "age"),
    [(0, None), (0.5, timedelta(hours=12)), (30, timedelta(days=30))],
)
def test_days_setting_becomes_an_age_and_zero_keeps_forever(
    value: float, age: timedelta | None
) -> None:
    """A RETAIN_*_DAYS value is an age in days, fractions allowed, and 0 means keep forever."""
    assert policy.days(value) == age


def test_negative_days_are_refused() -> None:
    """A negative retention is a mistake, not 'keep forever', and says so."""
    with pytest.raises(ValueError, match="negative"):
        policy.days(-1)


def test_cutoffs_are_now_minus_each_age_for_the_kinds_pruned() -> None:
    """Each pruned kind's cutoff is `now` minus its age; kinds kept forever have none."""
    chosen = Policy(
        updates=timedelta(days=30),
        jobs=None,
        dead_jobs=timedelta(days=30),
        events=timedelta(minutes=1),
        audit=None,
    )
    assert policy.cutoffs(chosen, NOW) == {
        Kind.UPDATES: NOW - timedelta(days=30),
        Kind.DEAD_JOBS: NOW - timedelta(days=30),
        Kind.EVENTS: NOW - timedelta(minutes=1),
    }


def test_keeping_everything_forever_prunes_nothing() -> None:
    """With every kind turned off there is no cutoff at all and nothing to run."""
    assert (policy.cutoffs(policy.KEEP_FOREVER, NOW), policy.KEEP_FOREVER.prunes_anything) == (
        {},
        False,
    )


def test_settings_turn_one_kind_off() -> None:
    """TGRELAY_RETAIN_UPDATES_DAYS=0 keeps updates forever and leaves the other kinds alone."""
    chosen = policy.from_settings(Settings(retain_updates_days=0, retain_audit_days=90))
    assert policy.cutoffs(chosen, NOW) == {
        Kind.JOBS: NOW - timedelta(days=7),
        Kind.DEAD_JOBS: NOW - timedelta(days=30),
        Kind.EVENTS: NOW - timedelta(days=30),
        Kind.AUDIT: NOW - timedelta(days=90),
    }


def test_a_naive_now_is_refused() -> None:
    """Ages are measured from an aware UTC instant; a naive one is ambiguous."""
    with pytest.raises(ValueError, match="timezone-aware"):
        policy.cutoffs(Policy(), NOW.replace(tzinfo=None))


def test_a_zero_age_in_a_policy_is_refused() -> None:
    """A Policy spells 'forever' as None, so a zero or negative age is an error."""
    with pytest.raises(ValueError, match="positive"):
        Policy(jobs=timedelta())


def test_the_chat_window_comes_from_the_chat_limit_setting() -> None:
    """TGRELAY_INBOUND_CHAT_LIMIT's seconds are the window's length; unset, there is none."""
    assert (
        policy.from_settings(Settings(inbound_chat_limit=(5, 90))).chat_window,
        policy.from_settings(Settings()).chat_window,
    ) == (timedelta(seconds=90), None)


def test_windows_cutoff_is_now_minus_the_window_or_now_when_the_limit_is_off() -> None:
    """A window started one window ago or earlier has ended; with the limit off, every one has."""
    assert (
        policy.windows_cutoff(Policy(chat_window=timedelta(seconds=60)), NOW),
        policy.windows_cutoff(Policy(), NOW),
        policy.windows_cutoff(policy.KEEP_FOREVER, NOW),
    ) == (NOW - timedelta(seconds=60), NOW, NOW)


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_a_window_at_the_cutoff_is_one_chat_limit_would_replace(offset: int) -> None:
    """Ended by the cutoff exactly when `chat_limit.admit` would open a new window at `now`."""
    limit = chat_limit.ChatLimit(count=3, window=timedelta(seconds=60))
    started = NOW - limit.window + timedelta(microseconds=offset)
    window = chat_limit.Window(started_at=started, count=9, announced=True)

    renewed, _ = chat_limit.admit(limit, window, at=NOW)

    ended = started <= policy.windows_cutoff(Policy(chat_window=limit.window), NOW)
    assert (ended, renewed.started_at == NOW) == (offset <= 0, offset <= 0)


def test_a_zero_chat_window_is_refused() -> None:
    """A Policy spells 'limit off' as None, so a zero window is an error."""
    with pytest.raises(ValueError, match="chat window"):
        Policy(chat_window=timedelta())


def test_the_chat_limit_alone_makes_a_pruner_run() -> None:
    """Every kind kept forever but the chat limit on: its windows still need pruning."""
    assert policy.from_settings(
        Settings(
            retain_updates_days=0,
            retain_jobs_days=0,
            retain_dead_jobs_days=0,
            retain_events_days=0,
            retain_audit_days=0,
            inbound_chat_limit=(5, 60),
        )
    ).prunes_anything
