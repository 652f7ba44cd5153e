"""Pruning on SQLite and PostgreSQL: only finished rows past their age go, in bounded batches."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Table, insert, select, update

from tests.e2e.harness import eventually
from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.inbox import chat_limit
from tgrelay.inbox.models import PROCESS_UPDATE, IncomingUpdate, UpdateSource
from tgrelay.retention import policy, prune
from tgrelay.retention.policy import Policy
from tgrelay.settings import Settings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
WORKSPACE = "ws_retention"


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    async with database.transaction() as conn:
        await conn.execute(
            insert(tables.workspaces).values(id=WORKSPACE, name="retention", created_at=ago(500))
        )
    yield database
    await database.dispose()


async def add(db: Database, table: Table, rows: list[dict[str, Any]]) -> None:
    async with db.transaction() as conn:
        await conn.execute(insert(table), rows)


def update_row(row_id: int, received: datetime) -> dict[str, Any]:
    return {
        "id": row_id,
        "bot_id": 1,
        "update_id": row_id,
        "kind": "message",
        "chat_id": 7,
        "source": "webhook",
        "payload": "{}",
        "received_at": received,
    }


def job_row(
    row_id: int,
    state: str,
    *,
    created: datetime,
    finished: datetime | None = None,
    subject_id: int | None = None,
    kind: str = PROCESS_UPDATE,
    run_at: datetime | None = None,
) -> dict[str, Any]:
    return {
        "id": row_id,
        "kind": kind,
        "payload": "{}",
        "ordering_key": "1:7",
        "subject_id": subject_id,
        "state": state,
        "attempts": 1,
        "max_attempts": 8,
        "run_at": run_at or created,
        "created_at": created,
        "finished_at": finished,
    }


def event_row(event_id: str, created: datetime) -> dict[str, Any]:
    return {
        "id": event_id,
        "workspace_id": WORKSPACE,
        "type": "message.received",
        "body": "{}",
        "created_at": created,
    }


def delivery_row(
    row_id: int, event_id: str, status: str, *, created: datetime, updated: datetime
) -> dict[str, Any]:
    return {
        "id": row_id,
        "workspace_id": WORKSPACE,
        "endpoint_id": f"ep_{row_id}",
        "event_id": event_id,
        "event_type": "message.received",
        "status": status,
        "created_at": created,
        "updated_at": updated,
    }


def attempt_row(row_id: int, delivery_id: int, started: datetime) -> dict[str, Any]:
    return {
        "id": row_id,
        "delivery_id": delivery_id,
        "started_at": started,
        "duration_ms": 5,
        "status_code": 200,
        "succeeded": True,
    }


def audit_row(row_id: int, created: datetime) -> dict[str, Any]:
    return {
        "id": row_id,
        "workspace_id": WORKSPACE,
        "action": "intake.rejected",
        "actor": "telegram",
        "detail": "{}",
        "created_at": created,
    }


async def ids(db: Database, table: Table) -> list[Any]:
    async with db.engine.connect() as conn:
        return list(await conn.scalars(select(table.c.id).order_by(table.c.id)))


async def remaining(db: Database) -> dict[str, list[Any]]:
    return {
        table.name: await ids(db, table)
        for table in (
            tables.updates,
            tables.jobs,
            tables.events,
            tables.deliveries,
            tables.delivery_attempts,
            tables.audit_log,
        )
    }


async def seed_one_of_each_case(db: Database) -> None:
    """Rows on both sides of every rule under the default policy at NOW, ids in time order."""
    await add(
        db,
        tables.updates,
        [
            update_row(1, ago(40)),  # job done long ago: goes
            update_row(2, ago(40)),  # job pending (waiting for a retry): stays
            update_row(3, ago(40)),  # job running: stays
            update_row(4, ago(40)),  # job dead long ago: goes, with its job
            update_row(5, ago(40)),  # its job already pruned: goes
            update_row(6, ago(20)),  # younger than 30 days: stays (its done job goes)
        ],
    )
    await add(
        db,
        tables.jobs,
        [
            job_row(1, "done", created=ago(40), finished=ago(40), subject_id=1),
            job_row(2, "pending", created=ago(40), subject_id=2, run_at=NOW),
            job_row(3, "running", created=ago(40), subject_id=3),
            job_row(4, "dead", created=ago(40), finished=ago(40), subject_id=4),
            # Created long ago and due long after: still pending, stays.
            job_row(5, "pending", created=ago(40), kind="sla_timer", run_at=NOW + timedelta(1)),
            job_row(6, "done", created=ago(20), finished=ago(20), subject_id=6),
            # Dead 10 days ago: dead jobs are kept 30 days, stays.
            job_row(7, "dead", created=ago(12), finished=ago(10), kind="send_notification"),
            # Done 3 days ago: younger than 7 days, stays.
            job_row(8, "done", created=ago(3), finished=ago(3), kind="check_bot_health"),
        ],
    )
    await add(
        db,
        tables.events,
        [
            event_row("evt_delivered", ago(40)),  # goes, with its delivery and attempts
            event_row("evt_pending", ago(40)),  # its delivery is pending: all stay
            event_row("evt_replayed", ago(40)),  # dead-lettered again 2 days ago: all stay
            event_row("evt_unsubscribed", ago(40)),  # no delivery at all: goes
            event_row("evt_half", ago(40)),  # one delivery done, one pending: the event stays
            event_row("evt_young", ago(10)),  # younger than 30 days: all stay
        ],
    )
    await add(
        db,
        tables.deliveries,
        [
            delivery_row(1, "evt_delivered", "delivered", created=ago(40), updated=ago(40)),
            delivery_row(2, "evt_pending", "pending", created=ago(40), updated=ago(40)),
            delivery_row(3, "evt_replayed", "dead_letter", created=ago(40), updated=ago(2)),
            delivery_row(4, "evt_half", "dead_letter", created=ago(40), updated=ago(39)),
            delivery_row(5, "evt_half", "pending", created=ago(40), updated=ago(40)),
            delivery_row(6, "evt_young", "delivered", created=ago(10), updated=ago(10)),
        ],
    )
    await add(
        db,
        tables.delivery_attempts,
        [
            attempt_row(1, 1, ago(40)),
            attempt_row(2, 1, ago(40)),
            attempt_row(3, 2, ago(40)),
            attempt_row(4, 3, ago(2)),
            attempt_row(5, 6, ago(10)),
            attempt_row(6, 4, ago(39)),
            attempt_row(7, 5, ago(40)),
        ],
    )
    await add(db, tables.audit_log, [audit_row(1, ago(400)), audit_row(2, ago(300))])


async def test_only_finished_rows_past_their_age_go(db: Database) -> None:
    """Under the default policy, exactly the finished rows older than their kind's age are deleted."""
    await seed_one_of_each_case(db)

    deleted = await prune.prune(db, Policy(), now=NOW)

    assert deleted == {
        "jobs": 3,
        "updates": 3,
        "delivery_attempts": 3,
        "deliveries": 2,
        "events": 2,
        "audit_log": 1,
    }
    assert await remaining(db) == {
        "updates": [2, 3, 6],
        "jobs": [2, 3, 5, 7, 8],
        "events": ["evt_half", "evt_pending", "evt_replayed", "evt_young"],
        "deliveries": [2, 3, 5, 6],
        "delivery_attempts": [3, 4, 5, 7],
        "audit_log": [2],
    }


async def test_a_second_round_finds_nothing_more(db: Database) -> None:
    """Pruning is idempotent: a second round at the same instant deletes nothing."""
    await seed_one_of_each_case(db)
    await prune.prune(db, Policy(), now=NOW)
    before = await remaining(db)

    again = await prune.prune(db, Policy(), now=NOW)

    assert (again, await remaining(db)) == ({}, before)


async def test_an_update_goes_once_its_job_finishes(db: Database) -> None:
    """An old update kept for its pending job goes in the first round after the job is done."""
    await add(db, tables.updates, [update_row(1, ago(40))])
    await add(db, tables.jobs, [job_row(1, "pending", created=ago(40), subject_id=1)])
    first = await prune.prune(db, Policy(), now=NOW)
    async with db.transaction() as conn:
        await conn.execute(
            tables.jobs.update().values(state="done", finished_at=NOW - timedelta(seconds=1))
        )

    second = await prune.prune(db, Policy(), now=NOW)

    assert (first, second, await ids(db, tables.updates), await ids(db, tables.jobs)) == (
        {},
        {"updates": 1},
        [],
        [1],
    )


async def test_a_kind_turned_off_is_kept(db: Database) -> None:
    """With TGRELAY_RETAIN_UPDATES_DAYS=0, old updates stay while the other kinds are pruned."""
    await seed_one_of_each_case(db)
    chosen = policy.from_settings(Settings(retain_updates_days=0))

    deleted = await prune.prune(db, chosen, now=NOW)

    assert deleted == {
        "jobs": 3,
        "delivery_attempts": 3,
        "deliveries": 2,
        "events": 2,
        "audit_log": 1,
    }
    assert await ids(db, tables.updates) == [1, 2, 3, 4, 5, 6]


async def test_everything_off_deletes_nothing(db: Database) -> None:
    """A policy that keeps every kind forever leaves every table as it was."""
    await seed_one_of_each_case(db)
    before = await remaining(db)

    deleted = await prune.prune(db, policy.KEEP_FOREVER, now=NOW)

    assert (deleted, await remaining(db)) == ({}, before)


async def test_batches_are_bounded_and_paced(db: Database) -> None:
    """Each write transaction deletes at most batch_size rows, with `between` awaited between two."""
    await add(db, tables.updates, [update_row(n, ago(40)) for n in range(1, 8)])
    await add(db, tables.audit_log, [audit_row(n, ago(400)) for n in range(1, 6)])
    await add(
        db,
        tables.deliveries,
        [
            delivery_row(n, f"evt_{n}", "delivered", created=ago(40), updated=ago(40))
            for n in range(1, 5)
        ],
    )
    await add(db, tables.delivery_attempts, [attempt_row(n, n, ago(40)) for n in range(1, 5)])
    await add(db, tables.events, [event_row(f"evt_{n}", ago(40)) for n in range(1, 5)])
    batches: list[tuple[str, dict[str, int]]] = []
    pauses: list[int] = []

    async def between(last: prune.Batch) -> bool:
        assert last.table == batches[-1][0]  # the batch just written
        pauses.append(len(batches))
        return True

    deleted = await prune.prune(
        db,
        Policy(),
        now=NOW,
        batch_size=3,
        batch_seconds=None,
        between=between,
        observe=lambda batch: batches.append((batch.table, dict(batch.deleted))),
    )

    assert batches == [
        ("updates", {"updates": 3}),
        ("updates", {"updates": 3}),
        ("updates", {"updates": 1}),
        ("deliveries", {"delivery_attempts": 3, "deliveries": 3}),
        ("deliveries", {"delivery_attempts": 1, "deliveries": 1}),
        ("events", {"events": 3}),
        ("events", {"events": 1}),
        ("audit_log", {"audit_log": 3}),
        ("audit_log", {"audit_log": 2}),
    ]
    assert pauses == [1, 2, 3, 4, 5, 6, 7, 8]
    assert deleted == {
        "updates": 7,
        "delivery_attempts": 4,
        "deliveries": 4,
        "events": 4,
        "audit_log": 5,
    }


def batches_holding(holds: Iterator[float]) -> Callable[[], float]:
    """A clock for `prune`, read at each batch's start and end: each batch holds the lock for
    the next of `holds`."""
    readings: list[float] = []

    def clock() -> float:
        now = readings[-1] if readings else 0.0
        readings.append(now if len(readings) % 2 == 0 else now + next(holds))
        return readings[-1]

    return clock


async def test_batches_are_sized_by_how_long_the_last_one_held_the_lock(db: Database) -> None:
    """Two batches twice as long as the aim halve the size, quick ones double it back, never
    past batch_size (here the batches' times come from a clock the test moves)."""
    await add(db, tables.audit_log, [audit_row(n, ago(400)) for n in range(1, 31)])
    batches: list[tuple[int, int]] = []
    deleted = await prune.prune(
        db,
        Policy(),
        now=NOW,
        batch_size=8,
        batch_seconds=0.004,
        clock=batches_holding(iter([0.008, 0.008, 0.001, 0.001, 0.001, 0.001])),
        observe=lambda batch: batches.append((batch.size, batch.deleted["audit_log"])),
    )

    assert batches == [(8, 8), (4, 4), (2, 2), (4, 4), (8, 8), (8, 4)]
    assert (deleted, await ids(db, tables.audit_log)) == ({"audit_log": 30}, [])


async def test_sizes_carry_over_to_the_next_round(db: Database) -> None:
    """Given the sizes a round left, the next round's first batch starts at them."""
    sizes: dict[str, int] = {}
    seen: list[int] = []
    for rows in (range(1, 9), range(9, 13)):  # 8 rows, then 4
        await add(db, tables.audit_log, [audit_row(n, ago(400)) for n in rows])
        await prune.prune(
            db,
            Policy(),
            now=NOW,
            batch_size=8,
            batch_seconds=0.004,
            clock=batches_holding(itertools.repeat(0.008)),  # each twice the aim
            observe=lambda batch: seen.append(batch.size),
            sizes=sizes,
        )

    assert seen == [8, 4]  # without them the second round would have started at 8 again
    assert sizes == {"audit_log": 2}


async def test_a_batch_is_timed_from_when_it_holds_the_lock(db: Database) -> None:
    """Waiting for another writer's turn is not the batch's time: sizes follow the hold."""
    if not db.is_sqlite:
        pytest.skip("the wait for this process's write turn is SQLite's")
    await add(db, tables.audit_log, [audit_row(n, ago(400)) for n in range(1, 4)])
    now = [0.0]
    holding, release = asyncio.Event(), asyncio.Event()

    async def other_writer() -> None:
        async with db.transaction():
            holding.set()
            await release.wait()
            now[0] += 1.0  # a second passes while the pruner waits for its turn

    writer = asyncio.create_task(other_writer())
    await holding.wait()
    batches: list[prune.Batch] = []
    pruning = asyncio.create_task(
        prune.prune(db, Policy(), now=NOW, clock=lambda: now[0], observe=batches.append)
    )

    async def pruner_waits() -> bool:  # queued for the turn (write_turns has no public count)
        return bool(db._sqlite_writers._waiting[False])

    await eventually(pruner_waits)
    release.set()
    deleted = await pruning
    await writer

    assert deleted == {"audit_log": 3}
    assert [batch.seconds for batch in batches] == [0.0]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"batch_seconds": 0.0}, "batch_seconds must be positive"),
    ],
)
async def test_batches_of_nothing_are_refused(
    db: Database, arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await prune.prune(db, Policy(), now=NOW, **arguments)


@pytest.mark.parametrize(
    ("size", "seconds", "expected"),
    [
        (100, 0.005, 100),  # on the aim: kept
        (100, 0.004, 125),  # a little quick: a little more
        (100, 0.001, 200),  # far quicker: at most doubled
        (400, 0.001, 500),  # never past batch_size
        (100, 0.0, 200),  # too quick to time: doubled
        (100, 0.006, 83),  # a little slow: a little less
        (100, 0.050, 50),  # far slower: at most halved
        (60, 0.050, 50),  # never below a tenth of batch_size
    ],
)
def test_the_next_batch_size_aims_at_the_batch_time(
    size: int, seconds: float, expected: int
) -> None:
    assert prune.next_batch_size(size, seconds, target=0.005, most=500) == expected


async def test_a_job_retried_after_its_window_was_read_is_kept(db: Database) -> None:
    """A batch's delete re-checks its condition: a dead job made pending again (a retry)
    between the read of its window and the batch stays."""
    await add(
        db,
        tables.jobs,
        [
            job_row(1, "done", created=ago(40), finished=ago(40)),
            job_row(2, "dead", created=ago(40), finished=ago(40)),
        ],
    )

    async def retry_meanwhile(_: prune.Batch) -> bool:  # job 2's window is read by now
        async with db.transaction() as conn:
            await conn.execute(
                update(tables.jobs).where(tables.jobs.c.id == 2).values(state="pending")
            )
        return True

    deleted = await prune.prune(
        db, Policy(), now=NOW, batch_size=1, batch_seconds=None, between=retry_meanwhile
    )

    assert (deleted, await ids(db, tables.jobs)) == ({"jobs": 1}, [2])


async def test_an_event_replayed_after_its_window_was_read_is_kept(db: Database) -> None:
    """The events' delete re-checks its condition: an event that got a delivery again (a
    replay) between the read of its window and the batch stays; the rest of the batch goes."""
    await add(db, tables.events, [event_row(f"evt_{n}", ago(40)) for n in ("old", "replayed")])
    await add(
        db,
        tables.deliveries,
        [delivery_row(1, "evt_old", "delivered", created=ago(40), updated=ago(40))],
    )

    async def replay_meanwhile(last: prune.Batch) -> bool:
        if last.table == "deliveries":  # the events' window is read, their batch is next
            await add(
                db,
                tables.deliveries,
                [delivery_row(2, "evt_replayed", "pending", created=NOW, updated=NOW)],
            )
        return True

    deleted = await prune.prune(db, Policy(), now=NOW, between=replay_meanwhile)

    assert deleted == {"deliveries": 1, "events": 1}
    assert (await ids(db, tables.events), await ids(db, tables.deliveries)) == (
        ["evt_replayed"],
        [2],
    )


async def test_between_saying_no_ends_the_round(db: Database) -> None:
    """When `between` answers False (the lease was lost) no further batch is written."""
    await add(db, tables.audit_log, [audit_row(n, ago(400)) for n in range(1, 8)])

    async def lease_lost(_: prune.Batch) -> bool:
        return False

    deleted = await prune.prune(
        db, Policy(), now=NOW, batch_size=3, batch_seconds=None, between=lease_lost
    )

    assert (deleted, await ids(db, tables.audit_log)) == ({"audit_log": 3}, [4, 5, 6, 7])


async def test_the_walk_stops_at_the_first_young_row(db: Database) -> None:
    """Rows are walked in id order up to the first one younger than the cutoff; none past it goes."""
    # Id 3 was written after id 4's instant (skew between writers): it goes next round.
    await add(
        db,
        tables.audit_log,
        [
            audit_row(1, ago(400)),
            audit_row(2, ago(400)),
            audit_row(3, ago(10)),
            audit_row(4, ago(400)),
        ],
    )

    first = await prune.prune(db, Policy(), now=NOW)
    later = await prune.prune(db, Policy(), now=NOW + timedelta(days=356))

    assert (first, later, await ids(db, tables.audit_log)) == (
        {"audit_log": 2},
        {"audit_log": 2},
        [],
    )


# TGRELAY_INBOUND_CHAT_LIMIT=[3, 60] for the chat window tests.
LIMIT = chat_limit.ChatLimit(count=3, window=timedelta(seconds=60))
WINDOWED = Policy(chat_window=LIMIT.window)


def window_row(
    bot_id: int, chat_id: int, started: datetime, *, count: int = 1, announced: bool = False
) -> dict[str, Any]:
    return {
        "bot_id": bot_id,
        "chat_id": chat_id,
        "started_at": started,
        "count": count,
        "announced": announced,
    }


async def windows(db: Database) -> list[tuple[int, int, int, bool]]:
    """Every chat window left: (bot_id, chat_id, count, announced)."""
    table = tables.chat_windows
    query = select(table.c.bot_id, table.c.chat_id, table.c.count, table.c.announced)
    async with db.engine.connect() as conn:
        rows = await conn.execute(query.order_by(table.c.bot_id, table.c.chat_id))
        return [(bot, chat, count, announced) for bot, chat, count, announced in rows]


async def newest_job_of_chat(db: Database, bot_id: int, chat_id: int, job: dict[str, Any]) -> None:
    """`job` becomes the chat's newest process_update job, under the key the intake gives."""
    key = IncomingUpdate(
        bot_id=bot_id,
        update_id=job["id"],
        kind="message",
        chat_id=chat_id,
        source=UpdateSource.WEBHOOK,
        payload="{}",
        received_at=job["created_at"],
    ).ordering_key
    await add(db, tables.jobs, [{**job, "ordering_key": key}])
    await add(db, tables.job_keys, [{"ordering_key": key, "last_job_id": job["id"]}])


async def test_ended_windows_go_and_an_open_one_keeps_its_count(db: Database) -> None:
    """Windows whose end has passed go; an open one stays as it was, so its chat stays throttled."""
    seconds = timedelta(seconds=1)
    await add(
        db,
        tables.chat_windows,
        [
            window_row(1, 10, NOW - 2 * LIMIT.window, count=9, announced=True),  # ended: goes
            window_row(1, -100_20, NOW - LIMIT.window),  # ends exactly now: goes
            window_row(1, 30, NOW - LIMIT.window + seconds, count=8, announced=True),  # open
            window_row(2, 10, NOW - LIMIT.window - seconds),  # ended, its job done: goes
        ],
    )
    await newest_job_of_chat(
        db, 2, 10, job_row(1, "done", created=NOW - 2 * seconds, finished=NOW - seconds)
    )

    deleted = await prune.prune(db, WINDOWED, now=NOW)

    assert (deleted, await windows(db)) == ({"chat_windows": 3}, [(1, 30, 8, True)])
    kept = chat_limit.Window(started_at=NOW - LIMIT.window + seconds, count=8, announced=True)
    assert chat_limit.admit(LIMIT, kept, at=NOW) == (
        chat_limit.Window(started_at=kept.started_at, count=9, announced=True),
        chat_limit.Verdict.THROTTLED,
    )


@pytest.mark.parametrize("state", ["pending", "running"])
async def test_an_ended_window_stays_while_its_chat_has_updates_to_process(
    db: Database, state: str
) -> None:
    """A backlog is judged by arrival time, so an ended window goes only once the chat's jobs end."""
    await add(db, tables.chat_windows, [window_row(1, 10, ago(1), count=7, announced=True)])
    await newest_job_of_chat(db, 1, 10, job_row(1, state, created=ago(1)))
    first = await prune.prune(db, WINDOWED, now=NOW)
    kept = await windows(db)
    async with db.transaction() as conn:
        await conn.execute(tables.jobs.update().values(state="done", finished_at=NOW))

    second = await prune.prune(db, WINDOWED, now=NOW)

    assert (first, kept, second, await windows(db)) == (
        {},
        [(1, 10, 7, True)],
        {"chat_windows": 1},
        [],
    )


async def test_with_the_chat_limit_off_every_window_goes_in_bounded_batches(
    db: Database,
) -> None:
    """With TGRELAY_INBOUND_CHAT_LIMIT unset every window has ended, however recent; batches hold."""
    await add(
        db,
        tables.chat_windows,
        [window_row(1, chat, ago(3)) for chat in (1, 2, 3)]
        + [window_row(2, chat, NOW) for chat in (1, 2)],
    )
    batches: list[dict[str, int]] = []

    deleted = await prune.prune(
        db,
        policy.from_settings(Settings(inbound_chat_limit=None)),
        now=NOW,
        batch_size=2,
        batch_seconds=None,
        observe=lambda batch: batches.append(dict(batch.deleted)),
    )

    assert (deleted, batches, await windows(db)) == (
        {"chat_windows": 5},
        [{"chat_windows": 2}, {"chat_windows": 2}, {"chat_windows": 1}],
        [],
    )
