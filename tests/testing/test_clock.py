"""The movable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tgrelay.testing.clock import Clock

START = datetime(2025, 11, 21, 4, 48, 20, tzinfo=UTC)


def test_started_clock_stands_still_until_advanced() -> None:
    """A clock with a start keeps that time and moves only by `advance`."""
    clock = Clock(start=START)
    before = clock.now()
    after = clock.advance(24 * 3600)
    assert (before, after, clock(), clock.timestamp()) == (
        START,
        START + timedelta(days=1),
        START + timedelta(days=1),
        int(START.timestamp()) + 86400,
    )


def test_real_time_clock_adds_the_offset() -> None:
    """A clock without a start follows real time plus everything advanced so far."""
    clock = Clock()
    clock.advance(1800)
    lag = clock.now() - datetime.now(UTC)
    assert (clock.now().tzinfo, timedelta(minutes=29) < lag <= timedelta(minutes=30)) == (
        UTC,
        True,
    )


def test_start_in_another_zone_is_converted_to_utc() -> None:
    """A start given in another time zone is the same instant in UTC."""
    clock = Clock(start=START.astimezone(timezone(timedelta(hours=3))))
    assert (clock.now(), clock.now().tzinfo) == (START, UTC)


@pytest.mark.parametrize(
    ("start", "seconds"), [(datetime(2025, 1, 1), 0.0), (START, -1.0)], ids=["naive", "backwards"]
)
def test_refuses_naive_starts_and_going_back(start: datetime, seconds: float) -> None:
    """Naive datetimes and negative advances are refused."""
    with pytest.raises(ValueError):  # noqa: PT011
        Clock(start=start).advance(seconds)
