"""The intake's tally of rejected requests: one audit entry per key and minute, bounded."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from tgrelay import audit
from tgrelay.inbox import rejections
from tgrelay.inbox.rejections import RejectionTally

T0 = datetime(2026, 11, 21, 12, 0, 5, tzinfo=UTC)
REASON = "unknown bot or wrong secret token"


def _add(
    tally: RejectionTally,
    *,
    now: datetime = T0,
    bot_id: int | None = 7,
    workspace_id: str | None = "ws_a",
    addr: str | None = "203.0.113.7",
    status: int = 401,
    reason: str = REASON,
    forged: bool = True,
) -> int:
    return tally.add(
        now=now,
        bot_id=bot_id,
        workspace_id=workspace_id,
        status=status,
        reason=reason,
        remote_addr=addr,
        forged=forged,
    )


def _summary(entries: list[audit.Entry]) -> list[tuple[object, ...]]:
    return [
        (e.at, e.bot_id, e.workspace_id, e.remote_addr, dict(e.detail), e.count) for e in entries
    ]


def test_rejections_of_one_key_and_minute_become_one_entry_with_their_count() -> None:
    """Requests of the same bot, reason and address within a minute are one entry; another address, reason or minute is another."""
    tally = RejectionTally()
    for _ in range(3):
        _add(tally)
    _add(tally, addr="198.51.100.1")
    _add(tally, status=400, reason="body is not valid JSON", forged=False)
    _add(tally, now=T0 + timedelta(minutes=1))
    minute = T0.replace(second=0)
    forged = {"status": 401, "reason": REASON}
    assert _summary(tally.drain()) == [
        (minute, 7, "ws_a", "203.0.113.7", forged, 3),
        (minute, 7, "ws_a", "198.51.100.1", forged, 1),
        (minute, 7, "ws_a", "203.0.113.7", {"status": 400, "reason": "body is not valid JSON"}, 1),
        (minute + timedelta(minutes=1), 7, "ws_a", "203.0.113.7", forged, 1),
    ]
    assert tally.drain() == []


def test_a_later_flush_of_the_same_key_carries_the_same_aggregate_key() -> None:
    """Each flush holds only the new count, under the key of the row it adds to."""
    tally = RejectionTally()
    _add(tally)
    [first] = tally.drain()
    _add(tally, now=T0 + timedelta(seconds=30))
    _add(tally, now=T0 + timedelta(seconds=31))
    [second] = tally.drain()
    assert (first.count, second.count) == (1, 2)
    assert first.aggregate_key == second.aggregate_key
    assert first.aggregate_key is not None
    assert len(first.aggregate_key) == 32


def test_distinct_keys_beyond_the_minutes_bound_fold_into_one_entry() -> None:
    """Past max_rows_per_minute distinct keys in a minute, further ones count in one row without bot or address."""
    tally = RejectionTally(max_rows_per_minute=2)
    for addr in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.1"):
        _add(tally, addr=addr)
    minute = T0.replace(second=0)
    forged = {"status": 401, "reason": REASON}
    assert _summary(tally.drain()) == [
        (minute, 7, "ws_a", "10.0.0.1", forged, 2),
        (minute, 7, "ws_a", "10.0.0.2", forged, 1),
        (minute, None, None, None, forged, 2),
    ]


def test_forged_requests_are_counted_per_bot_and_minute() -> None:
    """The count returned is the bot's forged requests this minute; other rejections return 0."""
    tally = RejectionTally()
    counts = [
        _add(tally),
        _add(tally, addr="198.51.100.1"),
        _add(tally, bot_id=8),
        _add(tally, status=400, reason="body is not valid JSON", forged=False),
        _add(tally, now=T0 + timedelta(minutes=1)),
    ]
    assert counts == [1, 2, 1, 0, 1]


async def test_flush_periodically_hands_over_what_was_counted() -> None:
    """Each interval, the entries counted since the last one go to `record`; nothing when there are none."""
    tally = RejectionTally()
    recorded: list[list[audit.Entry]] = []
    sleeps = 0

    async def sleep(seconds: float) -> None:
        nonlocal sleeps
        sleeps += 1
        if sleeps == 2:
            _add(tally)
        if sleeps == 4:
            raise _Stop

    class _Stop(Exception):
        pass

    with contextlib.suppress(_Stop):
        await rejections.flush_periodically(tally, recorded.append, sleep=sleep, interval=2)
    assert [[e.count for e in batch] for batch in recorded] == [[1]]
