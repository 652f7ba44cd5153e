"""The retry schedule's pure rules: what an answer means, when to try again, when to give up."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import pytest

from tgrelay.events import schedule
from tgrelay.events.schedule import Outcome
from tgrelay.settings import Settings

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
ALMOST_ONE = math.nextafter(1.0, 0.0)  # the largest `rand` random.random() can give

# The schedule the module docstring promises: at once, then 5 s, 5 min, 30 min, 2 h, 5 h,
# 10 h, 14 h, 20 h and 24 h; position n is the wait after the n-th failed attempt.
DOCUMENTED = [0, 5, 5 * MINUTE, 30 * MINUTE, 2 * HOUR, 5 * HOUR, 10 * HOUR, 14 * HOUR]
DOCUMENTED += [20 * HOUR, 24 * HOUR]
RETRIES = list(enumerate(DOCUMENTED))[1:]


@pytest.fixture
def default(monkeypatch: pytest.MonkeyPatch) -> schedule.Schedule:
    """The schedule a worker builds from the default settings (no TGRELAY_* overrides)."""
    for name in ("RETRY_SCHEDULE", "RETRY_JITTER", "DISABLE_AFTER_SECONDS"):
        monkeypatch.delenv(f"TGRELAY_WEBHOOKS_{name}", raising=False)
    settings = Settings(_env_file=None)
    return schedule.Schedule(
        delays=settings.webhooks_retry_schedule,
        jitter=settings.webhooks_retry_jitter,
        disable_after=timedelta(seconds=settings.webhooks_disable_after_seconds),
    )


def wait(when: datetime | None) -> float | None:
    return None if when is None else (when - NOW).total_seconds()


@pytest.mark.parametrize(
    ("status_code", "expected"),
    [
        (200, Outcome.DELIVERED),
        (201, Outcome.DELIVERED),
        (204, Outcome.DELIVERED),
        (299, Outcome.DELIVERED),
        (100, Outcome.FAILED),
        (199, Outcome.FAILED),
        (300, Outcome.FAILED),  # redirects are not followed
        (301, Outcome.FAILED),
        (308, Outcome.FAILED),
        (400, Outcome.FAILED),
        (401, Outcome.FAILED),
        (404, Outcome.FAILED),
        (409, Outcome.FAILED),
        (429, Outcome.FAILED),
        (410, Outcome.GONE),  # the receiver asks us to stop
        (500, Outcome.FAILED),
        (502, Outcome.FAILED),
        (503, Outcome.FAILED),
        (599, Outcome.FAILED),
        (None, Outcome.FAILED),  # no answer: timeout, refused, TLS error
    ],
)
def test_classify(status_code: int | None, expected: Outcome) -> None:
    """A 2xx delivers, 410 disables the endpoint, anything else (or no answer) fails."""
    assert schedule.classify(status_code) is expected


def test_default_settings_are_the_documented_schedule(default: schedule.Schedule) -> None:
    """Unconfigured, a delivery gets ten attempts with ±10 % jitter, and 5 days of failure disable."""
    assert (default.delays, default.jitter, default.disable_after) == (
        tuple(DOCUMENTED),
        0.1,
        timedelta(days=5),
    )


@pytest.mark.parametrize(("attempts_done", "delay"), RETRIES)
@pytest.mark.parametrize(("rand", "factor"), [(0.0, 0.9), (0.5, 1.0), (ALMOST_ONE, 1.1)])
def test_next_attempt_waits_the_jittered_delay_of_its_position(
    default: schedule.Schedule, attempts_done: int, delay: float, rand: float, factor: float
) -> None:
    """After the n-th failure the wait is delay n moved by the jitter: -10 % at 0, +10 % near 1."""
    when = schedule.next_attempt_at(
        default, attempts_done=attempts_done, now=NOW, retry_after=None, rand=rand
    )
    assert wait(when) == pytest.approx(delay * factor, abs=1e-6)


@pytest.mark.parametrize(("attempts_done", "delay"), RETRIES)
def test_jitter_never_leaves_its_bounds(
    default: schedule.Schedule, attempts_done: int, delay: float
) -> None:
    """Whatever `rand` in [0, 1) is, the wait stays within ±10 % of the position's delay."""
    waits = [
        wait(
            schedule.next_attempt_at(
                default, attempts_done=attempts_done, now=NOW, retry_after=None, rand=rand
            )
        )
        for rand in (0.0, 0.25, 0.5, 0.75, ALMOST_ONE)
    ]
    assert all(w is not None and delay * 0.9 <= w <= delay * 1.1 for w in waits), waits


@pytest.mark.parametrize(
    ("attempts_done", "rand", "retry_after", "expected"),
    [
        (1, 0.5, 120.0, 120.0),  # longer than the 5 s delay: the endpoint's wish wins
        (1, 0.5, 2.0, 5.0),  # shorter: the schedule's delay stays
        (1, 0.0, 4.8, 4.8),  # a floor above the jittered 4.5 s
        (1, 0.5, 0.0, 5.0),
        (3, 0.5, HOUR, HOUR),  # above the 30 min delay
        (1, 0.5, DAY, DAY),  # exactly the cap
        (1, 0.5, 3 * DAY, DAY),  # capped at a day
        (1, 0.5, math.inf, DAY),
        (9, ALMOST_ONE, 3 * DAY, 1.1 * DAY),  # the cap bounds Retry-After, not the schedule
    ],
)
def test_retry_after_is_a_floor_capped_at_a_day(
    default: schedule.Schedule,
    attempts_done: int,
    rand: float,
    retry_after: float,
    expected: float,
) -> None:
    """Retry-After pushes the next attempt later, never sooner, and never beyond 24 h."""
    when = schedule.next_attempt_at(
        default, attempts_done=attempts_done, now=NOW, retry_after=retry_after, rand=rand
    )
    assert wait(when) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(
    ("delays", "attempts_done", "retry_after", "expected"),
    [
        (tuple(DOCUMENTED), 9, None, 24 * HOUR),  # the last retry
        (tuple(DOCUMENTED), 10, None, None),  # ten attempts made: a dead letter
        (tuple(DOCUMENTED), 10, 60.0, None),  # Retry-After does not add an attempt
        (tuple(DOCUMENTED), 11, None, None),
        ((0.0,), 1, None, None),  # one attempt only
        ((0.0, 30.0), 1, None, 30.0),
        ((0.0, 30.0), 2, None, None),
    ],
)
def test_exhausted_schedule_gives_no_next_attempt(
    delays: tuple[float, ...], attempts_done: int, retry_after: float | None, expected: float | None
) -> None:
    """Once every delay is used, there is no next attempt, whatever the endpoint asks."""
    rules = schedule.Schedule(delays=delays, jitter=0.0)
    when = schedule.next_attempt_at(
        rules, attempts_done=attempts_done, now=NOW, retry_after=retry_after, rand=0.5
    )
    assert wait(when) == expected


@pytest.mark.parametrize(
    ("failing_for", "expected"),
    [
        (None, False),  # not failing
        (timedelta(0), False),
        (timedelta(days=5) - timedelta(seconds=1), False),
        (timedelta(days=5), True),
        (timedelta(days=9), True),
        (-timedelta(minutes=1), False),  # another worker's clock runs ahead
    ],
)
def test_failing_too_long(
    default: schedule.Schedule, failing_for: timedelta | None, expected: bool
) -> None:
    """An endpoint failing without one success for the whole disable_after is disabled."""
    failing_since = None if failing_for is None else NOW - failing_for
    assert schedule.failing_too_long(default, failing_since=failing_since, now=NOW) is expected


NO_DELAYS = "a schedule needs at least one delay, none negative"
BAD_JITTER = "jitter is a fraction in [0, 1)"


@pytest.mark.parametrize(
    ("delays", "jitter", "message"),
    [
        ((), 0.1, NO_DELAYS),
        ((0.0, -5.0), 0.1, NO_DELAYS),
        ((0.0,), 1.0, BAD_JITTER),
        ((0.0,), -0.1, BAD_JITTER),
    ],
)
def test_impossible_schedules_are_refused(
    delays: tuple[float, ...], jitter: float, message: str
) -> None:
    """A schedule needs a delay, none negative, and a jitter fraction in [0, 1)."""
    with pytest.raises(ValueError, match=re.escape(message)):
        schedule.Schedule(delays=delays, jitter=jitter)
