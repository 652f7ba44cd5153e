"""Wake-ups across processes on PostgreSQL: NOTIFY where jobs are written, LISTEN in workers.

The listeners here take another origin than this process's, so that the notifications this
test process sends count as another process's (a process skips its own).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy import text, update

from tests.listening import Heard, listening
from tgrelay.clock import utcnow
from tgrelay.db import notifications, tables
from tgrelay.db.engine import Database
from tgrelay.queue import pacing, store
from tgrelay.queue.models import Job, NewJob
from tgrelay.queue.worker import Registry, Worker, wait_for

WAIT_LIMIT = 20.0


# --- pure parts ------------------------------------------------------------------------------


def test_a_payload_reads_back_as_its_queue_and_this_process() -> None:
    """A notification's text carries the queue (which may contain spaces) and the sender."""
    assert notifications.parse(notifications.payload("webhooks")) == (
        "webhooks",
        notifications.ORIGIN,
    )
    assert notifications.parse("a queue x1") == ("a queue", "x1")


@pytest.mark.parametrize("text_", ["", "webhooks", " x1", "webhooks "])
def test_a_payload_not_ours_is_refused(text_: str) -> None:
    """Text another sender wrote on the channel is no queue."""
    assert notifications.parse(text_) is None


@pytest.mark.parametrize(
    ("failures", "seconds"), [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 30.0), (50, 30.0)]
)
def test_reconnecting_waits_double_up_to_a_cap(failures: int, seconds: float) -> None:
    """Each failed connection doubles the wait, from half a second to 30 s."""
    assert notifications.reconnect_delay(failures) == seconds


def test_due_queues_leave_out_jobs_for_later() -> None:
    """Only jobs due now are announced; a timer waits for its worker's own clock."""
    now = utcnow()
    jobs = [
        NewJob(kind="k", payload={}, queue="a"),
        NewJob(kind="k", payload={}, queue="b", run_at=now),
        NewJob(kind="k", payload={}, queue="c", run_at=now + timedelta(seconds=1)),
        NewJob(kind="k", payload={}, queue="b", run_at=now - timedelta(seconds=1)),
    ]
    assert store.due_queues(jobs, now=now) == {"a", "b"}


@pytest.mark.parametrize(
    ("own", "expected"),
    [
        (pacing.Pacing(busy_seconds=0.02, idle_seconds=2.0), (1.0, 2.0, 0.25)),
        (pacing.Pacing(busy_seconds=0.05, idle_seconds=0.5), (1.0, 1.0, 0.25)),
        (pacing.Pacing.steady(60), (60.0, 60.0, 0.0)),
    ],
)
def test_a_listening_worker_looks_at_most_once_a_second_when_busy(
    own: pacing.Pacing, expected: tuple[float, float, float]
) -> None:
    """Notifications make busy looks rare; slower pacings are kept."""
    listening = pacing.listening(own)
    assert (listening.busy_seconds, listening.idle_seconds, listening.share) == expected


# --- on PostgreSQL ---------------------------------------------------------------------------


async def enqueue(db: Database, *jobs: NewJob) -> list[int]:
    async with db.transaction() as conn:
        return await store.enqueue(conn, jobs, now=utcnow(), default_max_attempts=3)


@pytest.mark.postgres
async def test_a_job_enqueued_elsewhere_wakes_a_worker_that_looks_once_a_minute(
    postgres_database: Database,
) -> None:
    """A job written through one engine runs at once on a worker of another engine that
    would not look for a minute: the notification woke it."""
    ran: asyncio.Queue[int] = asyncio.Queue()

    async def record(job: Job) -> None:
        await ran.put(job.id)

    registry = Registry()
    registry.register("record", record, transactional=False)
    sleeping = asyncio.Event()

    async def wait(event: asyncio.Event, seconds: float) -> bool:
        assert seconds >= 59  # nothing but a wake would end this sleep within the test
        sleeping.set()
        return await wait_for(event, seconds)

    workers_db = Database(postgres_database.url)
    worker = Worker(
        workers_db,
        registry,
        queue="slow",
        pacing=pacing.Pacing.steady(60),
        rescue_interval=60,  # no maintenance round ends the sleep either
        lease_seconds=300,
        wait=wait,
    )
    heard = Heard()
    task = asyncio.create_task(worker.run())
    try:
        wake = lambda queue: worker.notify() if queue == "slow" else None  # noqa: E731
        async with listening(workers_db, heard, on_queue=wake):
            async with asyncio.timeout(WAIT_LIMIT):
                await sleeping.wait()  # its first look found nothing; the next is a minute away
            [job_id] = await enqueue(
                postgres_database, NewJob(kind="record", payload={}, queue="slow")
            )
            async with asyncio.timeout(WAIT_LIMIT):
                assert await ran.get() == job_id
    finally:
        await worker.stop(timeout=5)
        await task
        await workers_db.dispose()


@pytest.mark.postgres
async def test_only_committed_jobs_due_now_are_announced_once_per_queue(
    postgres_database: Database,
) -> None:
    """A transaction announces each queue of its due jobs once, at commit; a rolled-back one
    and one that writes only a timer announce nothing (notifications arrive in commit order,
    so the last one heard proves the earlier ones were never sent)."""
    heard = Heard()
    async with listening(postgres_database, heard):
        later = utcnow() + timedelta(hours=1)
        await enqueue(postgres_database, NewJob(kind="k", payload={}, queue="timers", run_at=later))

        async def enqueue_and_roll_back() -> None:
            async with postgres_database.transaction() as conn:
                await store.enqueue(
                    conn,
                    [NewJob(kind="k", payload={}, queue="rolled")],
                    now=utcnow(),
                    default_max_attempts=3,
                )
                raise RuntimeError("roll back")

        with pytest.raises(RuntimeError):
            await enqueue_and_roll_back()
        await enqueue(
            postgres_database,
            NewJob(kind="k", payload={}, queue="a"),
            NewJob(kind="k", payload={}, queue="b"),
            NewJob(kind="k", payload={}, queue="a"),
        )
        async with postgres_database.transaction() as conn:  # two enqueues, one transaction
            await store.enqueue(
                conn,
                [NewJob(kind="k", payload={}, queue="c")],
                now=utcnow(),
                default_max_attempts=3,
            )
            await store.enqueue(
                conn,
                [NewJob(kind="k", payload={}, queue="c")],
                now=utcnow(),
                default_max_attempts=3,
            )
        await heard.until(lambda: "c" in heard.queues)
    assert heard.queues == ["a", "b", "c"]


@pytest.mark.postgres
async def test_released_and_rescued_jobs_are_announced(postgres_database: Database) -> None:
    """Jobs a stopping worker hands back, and jobs rescued from a vanished worker, wake the
    workers of other processes."""
    heard = Heard()
    [released, rescued] = await enqueue(
        postgres_database,
        NewJob(kind="k", payload={}, queue="released"),
        NewJob(kind="k", payload={}, queue="rescued"),
    )
    jobs = tables.jobs
    async with postgres_database.transaction() as conn:
        await conn.execute(
            update(jobs)
            .where(jobs.c.id.in_([released, rescued]))
            .values(state="running", locked_by="gone", lease_expires_at=utcnow())
        )
    async with listening(postgres_database, heard):
        assert await store.release(postgres_database, [released], worker_id="gone") == 1
        await heard.until(lambda: heard.queues == ["released"])
        now = utcnow() + timedelta(seconds=1)
        assert await store.rescue_expired(postgres_database, now=now) == 1
        await heard.until(lambda: heard.queues == ["released", "rescued"])


@pytest.mark.postgres
async def test_a_listener_whose_connection_is_terminated_listens_again(
    postgres_database: Database,
) -> None:
    """pg_terminate_backend on the listener's connection: it says it stopped listening,
    connects again by itself, says so, and hears the next job."""
    heard = Heard()
    async with listening(postgres_database, heard) as listener:
        assert listener.connection is not None
        pid = listener.connection.get_server_pid()
        async with postgres_database.engine.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        await heard.until(lambda: heard.states == [True, False, True])
        assert listener.connection is not None
        assert listener.connection.get_server_pid() != pid
        await enqueue(postgres_database, NewJob(kind="k", payload={}, queue="after"))
        await heard.until(lambda: heard.queues == ["after"])
    assert heard.states == [True, False, True, False]


@pytest.mark.postgres
async def test_a_listener_skips_what_its_own_process_sent(postgres_database: Database) -> None:
    """This process's own enqueues woke its workers already: its listener passes them over."""
    heard = Heard()
    listener = notifications.Listener(
        notifications.connector(postgres_database.engine),
        on_queue=heard.queue,
        on_listening=heard.listening,
    )
    task = asyncio.create_task(listener.run())
    try:
        await heard.until(lambda: heard.states == [True])
        await enqueue(postgres_database, NewJob(kind="k", payload={}, queue="own"))
        # A notification of another origin, sent after ours, arrives after it.
        async with postgres_database.transaction() as conn:
            await conn.execute(
                text("SELECT pg_notify(:channel, :text)"),
                {"channel": notifications.CHANNEL, "text": "theirs elsewhere"},
            )
        await heard.until(lambda: heard.queues != [])
        assert heard.queues == ["theirs"]
    finally:
        await listener.stop()
        await task


@pytest.mark.postgres
async def test_a_listener_that_cannot_connect_tries_again_with_growing_waits(
    postgres_database: Database,
) -> None:
    """While connecting fails (PostgreSQL down), the listener waits longer after each failure
    and listens once the server answers; the idle looks cover the meantime."""
    real = notifications.connector(postgres_database.engine)
    attempts = 0

    async def connect() -> asyncpg.Connection:
        nonlocal attempts
        attempts += 1
        if attempts <= 3:
            raise ConnectionRefusedError("PostgreSQL is restarting")
        return await real()

    waits: list[int] = []

    def delay(failures: int) -> float:
        waits.append(failures)
        return 0.0

    heard = Heard()
    listener = notifications.Listener(
        connect, on_queue=heard.queue, on_listening=heard.listening, delay=delay
    )
    task = asyncio.create_task(listener.run())
    try:
        await heard.until(lambda: heard.states == [True])
    finally:
        await listener.stop()
        await task
    assert (attempts, waits) == (4, [1, 2, 3])
