"""Which rotated-out endpoint secrets still sign: each until its own overlap ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tgrelay.events import service, store

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (
            store.SecretCiphertexts(current="c", previous=None, previous_expires_at=None),
            [],
        ),
        (
            store.SecretCiphertexts(current="c", previous="p", previous_expires_at=NOW + HOUR),
            [("p", NOW + HOUR)],
        ),
        (
            store.SecretCiphertexts(current="c", previous="p", previous_expires_at=NOW),
            [],
        ),
        (
            store.SecretCiphertexts(
                current="c",
                previous="p",
                previous_expires_at=NOW + 2 * HOUR,
                earlier=(("e1", NOW + HOUR), ("e2", NOW - HOUR), ("e3", NOW + HOUR / 2)),
            ),
            [("p", NOW + 2 * HOUR), ("e1", NOW + HOUR), ("e3", NOW + HOUR / 2)],
        ),
        (
            store.SecretCiphertexts(
                current="c",
                previous="p",
                previous_expires_at=NOW - HOUR,
                earlier=(("e1", NOW + HOUR),),
            ),
            [("e1", NOW + HOUR)],
        ),
    ],
)
def test_still_overlapping(
    stored: store.SecretCiphertexts, expected: list[tuple[str, datetime]]
) -> None:
    """The previous secret and every earlier one sign until their own overlap ends, no longer."""
    assert service.still_overlapping(stored, now=NOW) == expected


def test_earlier_secrets_round_trip_through_the_column() -> None:
    """The earlier_secrets column gives back the pairs it was written from."""
    pairs = [("e1", NOW + HOUR), ("e2", NOW + HOUR / 2)]
    value = store.earlier_secrets_value(pairs)
    assert (value, store.earlier_secrets_value([])) == (
        '[["e1","2026-12-06T13:00:00+00:00"],["e2","2026-12-06T12:30:00+00:00"]]',
        None,
    )
    read = store.SecretCiphertexts(
        current="c", previous=None, previous_expires_at=None, earlier=store.earlier_of(value)
    )
    assert service.still_overlapping(read, now=NOW) == pairs
