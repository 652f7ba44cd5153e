"""TGRELAY_INBOUND_CHAT_LIMIT's rule: count per window, throttle beyond it, announce once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tgrelay.inbox.chat_limit import ChatLimit, Verdict, Window, admit

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LIMIT = ChatLimit(count=2, window=timedelta(seconds=60))


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("window", "received", "expected"),
    [
        # A chat's first update opens its window.
        (None, at(0), (Window(started_at=at(0), count=1, announced=False), Verdict.ADMITTED)),
        # Within the limit.
        (
            Window(started_at=at(0), count=1, announced=False),
            at(59.9),
            (Window(started_at=at(0), count=2, announced=False), Verdict.ADMITTED),
        ),
        # The first one beyond the limit is throttled and announced.
        (
            Window(started_at=at(0), count=2, announced=False),
            at(30),
            (Window(started_at=at(0), count=3, announced=True), Verdict.THROTTLED_FIRST),
        ),
        # Later ones of the same window are throttled without a second announcement.
        (
            Window(started_at=at(0), count=3, announced=True),
            at(31),
            (Window(started_at=at(0), count=4, announced=True), Verdict.THROTTLED),
        ),
        # The window's end opens a new one, however many came before.
        (
            Window(started_at=at(0), count=9, announced=True),
            at(60),
            (Window(started_at=at(60), count=1, announced=False), Verdict.ADMITTED),
        ),
        # An update stamped before the window's start (two intakes' clocks) counts in it.
        (
            Window(started_at=at(10), count=2, announced=False),
            at(9),
            (Window(started_at=at(10), count=3, announced=True), Verdict.THROTTLED_FIRST),
        ),
    ],
)
def test_admit(window: Window | None, received: datetime, expected: tuple[Window, Verdict]) -> None:
    """Each case: the chat's window and the verdict after one more update."""
    assert admit(LIMIT, window, at=received) == expected
