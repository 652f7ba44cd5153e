"""Unit tests for the pure pacing rule in `tgrelay.queue.pacing`."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tgrelay.queue import pacing

PACING = pacing.Pacing(busy_seconds=0.05, idle_seconds=2.0, share=0.25)


@pytest.mark.parametrize(
    ("rules", "quiet_since", "now", "expected"),
    [
        (PACING, 100.0, 100.0, 0.05),  # right after work: the busy pause
        (PACING, 100.0, 100.1, 0.05),  # a quarter of 0.1 s is below the busy pause
        (PACING, 100.0, 100.2, 0.05),  # where the share meets the busy pause
        (PACING, 100.0, 101.0, 0.25),  # a quarter of the quiet so far
        (PACING, 100.0, 104.0, 1.0),
        (PACING, 100.0, 108.0, 2.0),  # where the share meets the idle pause
        (PACING, 100.0, 10_000.0, 2.0),  # capped, however long the quiet
        (PACING, 100.0, 99.0, 0.05),  # a clock read before the quiet began counts as none
        (pacing.Pacing.steady(0.01), 0.0, 3600.0, 0.01),
        (pacing.Pacing(busy_seconds=0.02, idle_seconds=5.0, share=1.0), 0.0, 3.0, 3.0),
        (pacing.DEFAULT_PACING, 0.0, 0.0, 0.05),
        (pacing.DEFAULT_PACING, 0.0, 60.0, 2.0),
    ],
)
def test_pause(rules: pacing.Pacing, quiet_since: float, now: float, expected: float) -> None:
    """The pause is the quiet's share, but never below the busy pause nor above the idle one."""
    assert pacing.pause(rules, quiet_since=quiet_since, now=now) == pytest.approx(expected)


@given(
    quiet=st.floats(min_value=0, max_value=1e6),
    more=st.floats(min_value=0, max_value=1e6),
)
def test_pauses_only_grow_with_the_quiet(quiet: float, more: float) -> None:
    """A longer quiet never gives a shorter pause, and every pause lies within the bounds."""
    shorter = pacing.pause(PACING, quiet_since=0.0, now=quiet)
    longer = pacing.pause(PACING, quiet_since=0.0, now=quiet + more)
    assert PACING.busy_seconds <= shorter <= longer <= PACING.idle_seconds


@pytest.mark.parametrize(
    ("busy", "idle", "share"),
    [(0.0, 1.0, 0.25), (-1.0, 1.0, 0.25), (2.0, 1.0, 0.25), (0.1, 1.0, -0.1), (0.1, 1.0, 1.5)],
)
def test_pacing_refuses_nonsense(busy: float, idle: float, share: float) -> None:
    """Pauses must be positive with busy <= idle, and the share a fraction."""
    with pytest.raises(ValueError, match=r"busy_seconds|share"):
        pacing.Pacing(busy_seconds=busy, idle_seconds=idle, share=share)
