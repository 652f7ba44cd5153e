"""Unit tests for `tgrelay.breaker`: every transition of the pure circuit breaker."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tgrelay import breaker
from tgrelay.breaker import Admission, Breaker, BreakerPolicy, BreakerState

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
POLICY = BreakerPolicy(
    failure_threshold=3, open_seconds=30.0, max_open_seconds=200.0, probe_timeout_seconds=60.0
)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def opened(*, failures: int = 3, open_count: int = 1, since: float = -10, retry: float) -> Breaker:
    return Breaker(
        state=BreakerState.OPEN,
        consecutive_failures=failures,
        open_count=open_count,
        opened_at=at(since),
        retry_at=at(retry),
    )


def probing(
    *, failures: int = 3, open_count: int = 1, since: float = -40, deadline: float
) -> Breaker:
    return Breaker(
        state=BreakerState.HALF_OPEN,
        consecutive_failures=failures,
        open_count=open_count,
        opened_at=at(since),
        retry_at=at(deadline),
    )


@pytest.mark.parametrize(
    ("policy", "before", "expected"),
    [
        pytest.param(POLICY, Breaker(), (Admission(allowed=True), Breaker()), id="closed"),
        pytest.param(
            POLICY,
            Breaker(consecutive_failures=2),
            (Admission(allowed=True), Breaker(consecutive_failures=2)),
            id="closed-with-failures-below-threshold",
        ),
        pytest.param(
            POLICY,
            opened(retry=12),
            (Admission(allowed=False, wait_seconds=12.0), opened(retry=12)),
            id="open-during-cool-off",
        ),
        pytest.param(
            POLICY,
            opened(retry=0),
            (Admission(allowed=True, probe=True), probing(since=-10, deadline=60)),
            id="open-at-retry-at-becomes-probe",
        ),
        pytest.param(
            POLICY,
            opened(retry=-500, open_count=2),
            (Admission(allowed=True, probe=True), probing(since=-10, deadline=60, open_count=2)),
            id="open-long-after-retry-at-becomes-probe",
        ),
        pytest.param(
            POLICY,
            probing(deadline=50),
            (
                Admission(allowed=False, wait_seconds=breaker.PROBE_WAIT_SECONDS),
                probing(deadline=50),
            ),
            id="half-open-probe-in-flight",
        ),
        pytest.param(
            POLICY,
            probing(deadline=2),
            (Admission(allowed=False, wait_seconds=2.0), probing(deadline=2)),
            id="half-open-probe-nearly-overdue",
        ),
        pytest.param(
            BreakerPolicy(open_seconds=1.0),
            probing(deadline=50),
            (Admission(allowed=False, wait_seconds=1.0), probing(deadline=50)),
            id="half-open-wait-no-longer-than-open-seconds",
        ),
        pytest.param(
            POLICY,
            probing(deadline=0),
            (Admission(allowed=True, probe=True), probing(deadline=60)),
            id="half-open-probe-overdue-a-new-probe-goes",
        ),
    ],
)
def test_admit(policy: BreakerPolicy, before: Breaker, expected: tuple[Admission, Breaker]) -> None:
    """A closed breaker admits, an open one refuses until retry_at and then admits one probe,
    and a probe in flight holds the others back until it answers or is overdue."""
    assert breaker.admit(policy, before, now=NOW) == expected


@pytest.mark.parametrize(
    ("policy", "before", "expected"),
    [
        pytest.param(
            POLICY, Breaker(), Breaker(consecutive_failures=1), id="closed-counts-a-failure"
        ),
        pytest.param(
            POLICY,
            Breaker(consecutive_failures=1),
            Breaker(consecutive_failures=2),
            id="closed-below-threshold-stays-closed",
        ),
        pytest.param(
            POLICY,
            Breaker(consecutive_failures=2),
            opened(failures=3, since=0, retry=30),
            id="closed-at-threshold-opens",
        ),
        pytest.param(
            BreakerPolicy(failure_threshold=1),
            Breaker(),
            opened(failures=1, since=0, retry=30),
            id="threshold-one-opens-on-first-failure",
        ),
        pytest.param(
            POLICY,
            opened(retry=20),
            opened(failures=4, retry=20),
            id="open-counts-a-late-failure-cool-off-unchanged",
        ),
        pytest.param(
            POLICY,
            probing(deadline=60),
            opened(failures=4, open_count=2, since=0, retry=60),
            id="failed-probe-reopens-doubled",
        ),
        pytest.param(
            POLICY,
            probing(deadline=60, open_count=2),
            opened(failures=4, open_count=3, since=0, retry=120),
            id="second-failed-probe-doubles-again",
        ),
        pytest.param(
            POLICY,
            probing(deadline=60, open_count=3),
            opened(failures=4, open_count=4, since=0, retry=200),
            id="failed-probe-cool-off-capped",
        ),
    ],
)
def test_record_failure(policy: BreakerPolicy, before: Breaker, expected: Breaker) -> None:
    """Failures count; the threshold opens the breaker for open_seconds, a failed probe re-opens
    it for twice the last cool-off up to max_open_seconds, and a failure while open only counts."""
    assert breaker.record_failure(policy, before, now=NOW) == expected


@pytest.mark.parametrize(
    "before",
    [
        pytest.param(Breaker(), id="closed"),
        pytest.param(Breaker(consecutive_failures=2), id="closed-with-failures"),
        pytest.param(opened(retry=20), id="open"),
        pytest.param(probing(deadline=60, open_count=4), id="half-open"),
    ],
)
def test_record_success_closes(before: Breaker) -> None:
    """A success closes the breaker from any state and forgets failures and openings."""
    assert breaker.record_success(before) == Breaker()


@pytest.mark.parametrize(
    ("before", "expected"),
    [
        pytest.param(
            probing(deadline=60, open_count=2),
            opened(open_count=2, since=-40, retry=0),
            id="half-open-reopens-due-now",
        ),
        pytest.param(opened(retry=20), opened(retry=20), id="open-unchanged"),
        pytest.param(Breaker(), Breaker(), id="closed-unchanged"),
    ],
)
def test_release_probe(before: Breaker, expected: Breaker) -> None:
    """A probe that ended without an answer hands the probe to the next caller at once."""
    assert breaker.release_probe(before, now=NOW) == expected


@pytest.mark.parametrize(
    ("open_count", "expected"),
    [(0, 30.0), (1, 30.0), (2, 60.0), (3, 120.0), (4, 200.0), (10_000, 200.0)],
)
def test_cool_off_doubles_up_to_the_cap(open_count: int, expected: float) -> None:
    """The n-th opening in a row lasts open_seconds × 2^(n−1), never past max_open_seconds."""
    assert breaker.cool_off_seconds(POLICY, open_count) == expected


def test_an_outage_and_its_recovery() -> None:
    """Three failures open it, callers wait, a failed probe doubles the wait, a lost probe is
    replaced after its timeout, and the successful probe closes it."""
    state = Breaker()
    for _ in range(3):
        assert breaker.admit(POLICY, state, now=NOW)[0] == Admission(allowed=True)
        state = breaker.record_failure(POLICY, state, now=NOW)
    refused, state = breaker.admit(POLICY, state, now=at(10))
    probe, state = breaker.admit(POLICY, state, now=at(30))
    state = breaker.record_failure(POLICY, state, now=at(31))
    early, state = breaker.admit(POLICY, state, now=at(90))
    lost_probe, state = breaker.admit(POLICY, state, now=at(91))
    behind_probe, state = breaker.admit(POLICY, state, now=at(92))
    replacement, state = breaker.admit(POLICY, state, now=at(151))
    state = breaker.record_success(state)
    after, state = breaker.admit(POLICY, state, now=at(152))
    assert (refused, probe, early, lost_probe, behind_probe, replacement, after, state) == (
        Admission(allowed=False, wait_seconds=20.0),
        Admission(allowed=True, probe=True),
        Admission(allowed=False, wait_seconds=1.0),
        Admission(allowed=True, probe=True),
        Admission(allowed=False, wait_seconds=breaker.PROBE_WAIT_SECONDS),
        Admission(allowed=True, probe=True),
        Admission(allowed=True),
        Breaker(),
    )


def test_the_record_is_plain_data() -> None:
    """A breaker survives a round trip through plain values, as in database columns."""
    state = opened(failures=7, open_count=2, retry=45)
    row: dict[str, Any] = {**dataclasses.asdict(state), "state": str(state.state)}
    assert row == {
        "state": "open",
        "consecutive_failures": 7,
        "open_count": 2,
        "opened_at": at(-10),
        "retry_at": at(45),
    }
    assert Breaker(**{**row, "state": BreakerState(row["state"])}) == state


@pytest.mark.parametrize(
    "fields",
    [
        {"failure_threshold": 0},
        {"open_seconds": 0.0},
        {"probe_timeout_seconds": -1.0},
        {"open_seconds": 60.0, "max_open_seconds": 30.0},
    ],
)
def test_policy_rejects_settings_that_cannot_work(fields: dict[str, Any]) -> None:
    """A policy that could never open, never cool off, or caps below its first cool-off is refused."""
    with pytest.raises(ValueError):  # noqa: PT011 (each case has its own message)
        BreakerPolicy(**fields)
