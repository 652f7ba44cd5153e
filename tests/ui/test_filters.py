"""How the pages word times and statuses: relative times, time left, badge tones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tgrelay.conversations.models import Status
from tgrelay.ui import filters

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (timedelta(), "just now"),
        (timedelta(milliseconds=-400), "just now"),
        (timedelta(seconds=-59), "59 s ago"),
        (timedelta(minutes=-1), "1 min ago"),
        (timedelta(minutes=-59, seconds=-59), "59 min ago"),
        (timedelta(hours=-5), "5 h ago"),
        (timedelta(days=-1), "1 day ago"),
        (timedelta(days=-40), "40 days ago"),
        (timedelta(seconds=30), "in 30 s"),
        (timedelta(minutes=2, seconds=5), "in 2 min"),
    ],
)
def test_relative(offset: timedelta, expected: str) -> None:
    """An instant reads as its distance from now in the largest whole unit, past or future."""
    assert filters.relative(NOW + offset, NOW) == expected


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        (timedelta(minutes=30), "30 min 00 s left"),
        (timedelta(minutes=29, seconds=5), "29 min 05 s left"),
        (timedelta(seconds=42), "42 s left"),
        (timedelta(hours=3, minutes=10), "3 h left"),
        (timedelta(), "expired"),
        (timedelta(seconds=-1), "expired"),
    ],
)
def test_time_left(offset: timedelta, expected: str) -> None:
    """A deadline reads as what is left of it, to the second under an hour, and expired once reached."""
    assert filters.time_left(NOW + offset, NOW) == expected


def test_badges_have_a_tone_and_words() -> None:
    """Statuses that need action are bad, those in progress waiting, unknown ones off; underscores read as spaces."""
    assert [
        (filters.tone(s), filters.words(s))
        for s in ("healthy", "queued", "webhook_conflict", "dead_letter", "disabled", "mystery")
    ] == [
        ("good", "healthy"),
        ("waiting", "queued"),
        ("warn", "webhook conflict"),
        ("bad", "dead letter"),
        ("off", "disabled"),
        ("off", "mystery"),
    ]


def test_exact_times_are_utc_to_the_second() -> None:
    """The hover text and the datetime attribute name the same instant in UTC."""
    moment = datetime(2026, 1, 1, 14, 30, 5, 123456, tzinfo=UTC)
    assert (filters.exact(moment), filters.iso(moment)) == (
        "2026-01-01 14:30:05 UTC",
        "2026-01-01T14:30:05+00:00",
    )


def test_conversation_statuses_have_their_badge_tones() -> None:
    """A conversation waiting on the user reads good, one waiting on the team's app
    waiting, a finished one good and a stopped one a warning."""
    assert {status.value: filters.tone(status.value) for status in Status} == {
        "active": "good",
        "calling": "waiting",
        "completed": "good",
        "abandoned": "warn",
    }
