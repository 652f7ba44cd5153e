"""Periodic tasks: one runner across processes by lease, renewed by long rounds, released
on stop so another takes over at once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import select

from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.queue import periodic
from tgrelay.queue.periodic import HeldLease, Periodic
from tgrelay.testing.clock import Clock

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
WAIT_LIMIT = 10.0


def task(database: Database, clock: Clock, holder: str, rounds: list[str]) -> Periodic:
    async def work(_lease: HeldLease) -> None:
        rounds.append(holder)

    return Periodic(database, "test-task", work, interval_seconds=60, clock=clock, holder=holder)


async def test_one_holder_runs_the_rounds_until_its_lease_expires(database: Database) -> None:
    """Two processes' tasks (two holders): only the lease holder runs rounds; once it stops
    renewing (it died), the other takes over after the lease's time, not before."""
    clock, rounds = Clock(start=T0), list[str]()
    first, second = (task(database, clock, name, rounds) for name in ("a", "b"))
    assert first.lease_seconds == max(periodic.MIN_LEASE_SECONDS, 3 * 60)

    held = [await first.run_once(), await second.run_once(), await first.run_once()]
    clock.advance(first.lease_seconds - 1)
    held.append(await second.run_once())
    clock.advance(2)
    held += [await second.run_once(), await first.run_once()]

    assert [lease is not None for lease in held] == [True, False, True, False, True, False]
    assert rounds == ["a", "a", "b"]


async def test_a_long_round_renews_its_lease_and_learns_when_it_lost_it(
    database: Database,
) -> None:
    """A round that asks `still_held` after a third of the lease renews it, so another
    process cannot take it when it would have expired; a round whose lease another took
    hears so and stops."""
    clock = Clock(start=T0)
    other = task(database, clock, "b", [])
    answers: list[bool] = []

    async def long_round(lease: HeldLease) -> None:
        clock.advance(first.lease_seconds * 0.4)
        answers.append(await lease.still_held())  # renewed here
        clock.advance(first.lease_seconds * 0.7)  # past the first expiry, not the renewed one
        answers.append(await other.run_once() is None)
        clock.advance(first.lease_seconds * 0.4)  # now past the renewed expiry too
        answers.append(await other.run_once() is not None)  # another process takes it
        answers.append(await lease.still_held())

    first = Periodic(
        database, "test-task", long_round, interval_seconds=60, clock=clock, holder="a"
    )
    lease = await first.run_once()
    assert lease is not None
    assert answers == [True, True, True, False]
    assert lease.lost


async def test_stopping_releases_the_lease_for_another_at_once(database: Database) -> None:
    """A cancelled task releases its lease: another process's task runs its next round
    without waiting for the lease to expire."""
    clock, rounds = Clock(start=T0), list[str]()
    first = task(database, clock, "a", rounds)
    running = asyncio.create_task(first.run())
    async with asyncio.timeout(WAIT_LIMIT):
        while rounds != ["a"]:
            await asyncio.sleep(0.01)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    async with database.engine.connect() as conn:
        holders = list(await conn.scalars(select(tables.leases.c.holder)))
    assert holders == []
    assert await task(database, clock, "b", rounds).run_once() is not None
    assert rounds == ["a", "b"]
