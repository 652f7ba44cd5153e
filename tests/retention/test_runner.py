"""The pruner's lease: one runner across runtimes sharing a database, another after it stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from tests.e2e.harness import eventually
from tgrelay.clock import utcnow
from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.retention import prune
from tgrelay.retention.policy import Policy
from tgrelay.retention.runner import Pruner, Round
from tgrelay.testing.clock import Clock

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def two_runtimes(database_url: str) -> AsyncIterator[tuple[Database, Database]]:
    """Two database handles on one database, as two processes would hold them."""
    first, second = Database(database_url), Database(database_url)
    yield first, second
    await first.dispose()
    await second.dispose()


async def no_wait(_: float) -> None:
    await asyncio.sleep(0)


async def test_a_second_pruner_waits_until_the_lease_expires(
    two_runtimes: tuple[Database, Database],
) -> None:
    """While one pruner holds the lease the other runs no round; once it expires, it takes over."""
    first_db, second_db = two_runtimes
    clock = Clock(start=T0)
    first, second = (
        Pruner(db, Policy(), clock=clock, sleep=no_wait, interval_seconds=60, holder=name)
        for db, name in ((first_db, "a"), (second_db, "b"))
    )

    rounds = [await first.run_once(), await second.run_once()]
    clock.advance(first.lease_seconds - 1)
    rounds += [await second.run_once()]
    clock.advance(2)  # the first stopped renewing: it died
    rounds += [await second.run_once(), await first.run_once()]

    assert [r.holder if r else None for r in rounds] == ["a", None, None, "b", None]


async def test_one_runner_across_two_runtimes_and_a_takeover(
    two_runtimes: tuple[Database, Database],
) -> None:
    """Two pruners looping on one database run every round from one holder until it stops."""
    first_db, second_db = two_runtimes
    async with first_db.transaction() as conn:
        await conn.execute(
            insert(tables.audit_log).values(
                action="intake.rejected", actor="telegram", detail="{}", created_at=T0
            )
        )
    seen: list[Round] = []
    writers: list[str] = []  # SQLite's write transactions, by writer (the lock's metric)
    for db in two_runtimes:
        db.on_write_lock_held = lambda writer, _seconds: writers.append(writer)
    pruners = {
        name: Pruner(
            db,
            Policy(audit=timedelta(days=1)),
            clock=utcnow,
            sleep=asyncio.sleep,
            interval_seconds=0.01,
            holder=name,
            on_round=seen.append,
        )
        for db, name in ((first_db, "a"), (second_db, "b"))
    }
    tasks = {name: asyncio.create_task(p.run()) for name, p in pruners.items()}
    try:

        async def rounds_seen(count: int) -> bool:
            return len(seen) >= count

        await eventually(lambda: rounds_seen(10))
        first_holders = {r.holder for r in seen}
        assert len(first_holders) == 1, f"rounds by more than one holder: {first_holders}"
        holder = first_holders.pop()
        other = "b" if holder == "a" else "a"
        tasks[holder].cancel()  # stopping releases the lease
        await asyncio.gather(tasks[holder], return_exceptions=True)

        async def taken_over() -> bool:
            return any(r.holder == other for r in seen)

        await eventually(taken_over)
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    async with first_db.engine.connect() as conn:
        audit_rows = list(await conn.scalars(select(tables.audit_log.c.id)))
        lease_rows = list(await conn.scalars(select(tables.leases.c.name)))
    assert [dict(r.deleted) for r in seen if r.deleted] == [{"audit_log": 1}]
    assert (audit_rows, lease_rows) == ([], [])
    if first_db.is_sqlite:  # its rounds' writes, its lease's included, are the pruner's
        assert set(writers) == {"retention"}


async def test_the_pruner_leaves_the_lock_to_others_between_batches(
    two_runtimes: tuple[Database, Database],
) -> None:
    """A pause between any two batches of a round, never shorter than pause_seconds."""
    db, _ = two_runtimes
    async with db.transaction() as conn:
        await conn.execute(
            insert(tables.audit_log),
            [
                {"action": "intake.rejected", "actor": "telegram", "detail": "{}", "created_at": T0}
                for _ in range(5)
            ],
        )
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    pruner = Pruner(
        db,
        Policy(audit=timedelta(days=1)),
        clock=Clock(start=T0 + timedelta(days=2)),
        sleep=sleep,
        interval_seconds=60,
        batch_size=2,
        pause_seconds=0.002,
    )
    done = await pruner.run_once()

    assert done is not None
    assert dict(done.deleted) == {"audit_log": 5}
    assert len(pauses) >= 2  # three batches or more, a pause between each two
    assert min(pauses) >= 0.002
    assert set(pruner._sizes) == {"audit_log"}  # kept for the next round's batches


@pytest.mark.parametrize(("held", "pause"), [(0.004, 0.012), (0.0001, 0.002), (0.0, 0.002)])
def test_the_pause_after_a_batch_is_three_times_its_hold(held: float, pause: float) -> None:
    pruner = Pruner(
        None,  # type: ignore[arg-type]  # pause_after reads no database
        Policy(),
        clock=Clock(start=T0),
        sleep=asyncio.sleep,
        interval_seconds=60,
        pause_seconds=0.002,
    )
    batch = prune.Batch(table="updates", size=100, deleted={"updates": 100}, seconds=held)

    assert pruner.pause_after(batch) == pytest.approx(pause)
