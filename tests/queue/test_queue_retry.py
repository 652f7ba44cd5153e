"""Unit tests for the pure retry rules in `tgrelay.queue.retry`."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tgrelay.queue import retry

NOW = datetime(2030, 1, 1, tzinfo=UTC)
EXACT = retry.RetryPolicy(jitter=0)


@pytest.mark.parametrize(
    ("policy", "attempts", "max_attempts", "rand", "expected"),
    [
        (EXACT, 1, 5, 0.5, 1.0),
        (EXACT, 2, 5, 0.5, 2.0),
        (EXACT, 4, 5, 0.5, 8.0),
        (EXACT, 5, 5, 0.5, None),
        (EXACT, 9, 5, 0.5, None),
        (EXACT, 0, 5, 0.5, 1.0),  # never claimed yet: treated as the first failure
        (retry.RetryPolicy(jitter=0, max_delay=10), 6, 99, 0.5, 10.0),
        (retry.RetryPolicy(jitter=0, base_delay=3, factor=3), 3, 9, 0.0, 27.0),
        (retry.RetryPolicy(jitter=0, factor=1), 7, 9, 0.5, 1.0),
        (retry.DEFAULT_POLICY, 1, 5, 0.0, 0.9),
        (retry.DEFAULT_POLICY, 1, 5, 0.5, 1.0),
        (retry.DEFAULT_POLICY, 1, 5, 1.0, 1.1),
        (retry.DEFAULT_POLICY, 20, 99, 0.5, 3600.0),
        (retry.DEFAULT_POLICY, 20, 99, 0.0, 3240.0),  # jitter applies after the cap
        (retry.DEFAULT_POLICY, 5000, 9999, 0.5, 3600.0),  # factor**4999 overflows a float
        (EXACT, 1, 1, 0.5, None),
    ],
)
def test_next_run_at(
    policy: retry.RetryPolicy, attempts: int, max_attempts: int, rand: float, expected: float | None
) -> None:
    """The next run is `expected` seconds away, or None once attempts are used up."""
    result = retry.next_run_at(
        policy, attempts=attempts, max_attempts=max_attempts, now=NOW, rand=rand
    )
    if expected is None:
        assert result is None
    else:
        assert result is not None
        assert (result - NOW).total_seconds() == pytest.approx(expected)


@given(
    attempts=st.integers(min_value=1, max_value=200),
    rand=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_delays_grow_and_stay_within_the_jittered_cap(attempts: int, rand: float) -> None:
    """With the same jitter draw, a later failure never waits less, nor more than cap + jitter."""
    policy = retry.DEFAULT_POLICY
    delay = retry.delay_seconds(policy, attempts=attempts, rand=rand)
    following = retry.delay_seconds(policy, attempts=attempts + 1, rand=rand)
    assert 0 < delay <= following <= policy.max_delay * (1 + policy.jitter)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"base_delay": -1}, "negative"),
        ({"max_delay": -1}, "negative"),
        ({"factor": 0.5}, "factor"),
        ({"jitter": 1.0}, "jitter"),
        ({"jitter": -0.1}, "jitter"),
    ],
)
def test_policy_refuses_settings_that_cannot_work(options: dict[str, float], message: str) -> None:
    """Negative delays, shrinking factors and jitter outside [0, 1) are refused at once."""
    with pytest.raises(ValueError, match=message):
        retry.RetryPolicy(**options)


def test_reschedule_carries_its_delay_and_reason() -> None:
    """Reschedule keeps the delay (never negative) and the reason for the job's record."""
    exc = retry.Reschedule(-3, "429: retry after 0")
    assert (exc.delay, exc.reason, str(exc)) == (
        0.0,
        "429: retry after 0",
        "rescheduled in 0s: 429: retry after 0",
    )
