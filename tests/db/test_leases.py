"""Named leases on both databases: one holder at a time, taken over only after expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tgrelay.db import leases
from tgrelay.db.engine import Database

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


async def test_one_holder_until_expiry(db: Database) -> None:
    """A second holder is refused while the lease lives, and takes it once it has expired."""
    taken = await leases.acquire(db, "poller:1", holder="a", now=T0, ttl=30)
    refused = await leases.acquire(
        db, "poller:1", holder="b", now=T0 + timedelta(seconds=10), ttl=30
    )
    renewed = await leases.acquire(
        db, "poller:1", holder="a", now=T0 + timedelta(seconds=20), ttl=30
    )
    still_refused = await leases.acquire(
        db, "poller:1", holder="b", now=T0 + timedelta(seconds=40), ttl=30
    )
    taken_over = await leases.acquire(
        db, "poller:1", holder="b", now=T0 + timedelta(seconds=51), ttl=30
    )
    lost = await leases.acquire(db, "poller:1", holder="a", now=T0 + timedelta(seconds=52), ttl=30)
    assert [taken, refused, renewed, still_refused, taken_over, lost] == [
        True,
        False,
        True,
        False,
        True,
        False,
    ]


async def test_release_frees_the_lease_for_others_only_by_its_holder(db: Database) -> None:
    """Only the holder's release frees a lease; someone else's release changes nothing."""
    await leases.acquire(db, "poller:2", holder="a", now=T0, ttl=30)
    await leases.release(db, "poller:2", holder="b")
    refused = await leases.acquire(db, "poller:2", holder="b", now=T0, ttl=30)
    await leases.release(db, "poller:2", holder="a")
    taken = await leases.acquire(db, "poller:2", holder="b", now=T0, ttl=30)
    assert (refused, taken) == (False, True)
