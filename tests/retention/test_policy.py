"""The pure retention policy: ages from settings, and the cutoff per kind at a given instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

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
