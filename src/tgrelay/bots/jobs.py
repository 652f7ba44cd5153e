"""Background health checks: a job per check, and the periodic task that schedules them.

Checks run as jobs rather than inside the scheduler so that, in a cluster, any worker takes
them, each bot is checked by one worker at a time (ordering key), and a crash retries. The
scheduler is the periodic task "health-checks": one process runs its rounds, by lease.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import errors
from tgrelay.bots import service, store
from tgrelay.queue import models as queue_models
from tgrelay.queue import periodic, retry, worker
from tgrelay.queue import store as job_store
from tgrelay.runtime import Runtime

log = structlog.get_logger(__name__)

CHECK_BOT_HEALTH = "check_bot_health"
# The scheduler looks for due bots at least this often, so a short interval is honoured.
MAX_TICK_SECONDS = 30.0
# A failed check is not worth many retries: the scheduler enqueues a fresh one next round.
CHECK_MAX_ATTEMPTS = 3
# Subject ids per IN (…) list when looking for queued checks.
_CHUNK = 100


def register(registry: worker.Registry, rt: Runtime) -> None:
    """Register the bots domain's job kinds."""

    async def check_bot_health(job: queue_models.Job) -> None:
        bot_id = job.payload.get("bot_id")
        if not isinstance(bot_id, int) or isinstance(bot_id, bool):
            raise retry.PermanentFailure(f"{CHECK_BOT_HEALTH} needs an integer bot_id")
        try:
            await service.check_health(rt, bot_id)
        except errors.NotFound:
            log.warning("bot.health_check_unknown_bot", bot_id=bot_id)

    # Not transactional: the check waits on Telegram and must not hold SQLite's write lock.
    registry.register(CHECK_BOT_HEALTH, check_bot_health, transactional=False)


HEALTH_CHECKS = "health-checks"  # the periodic task, and its lease


def health_scheduler(rt: Runtime, *, holder: str | None = None) -> periodic.Periodic:
    """The periodic task that enqueues due health checks; `run()` it, cancel it to stop. A
    database outage is logged and waited out, so the task outlives it."""

    async def enqueue_due(_lease: periodic.HeldLease) -> None:
        await enqueue_due_health_checks(rt)

    return periodic.Periodic(
        rt.db,
        HEALTH_CHECKS,
        enqueue_due,
        interval_seconds=min(MAX_TICK_SECONDS, rt.settings.health_interval_seconds),
        clock=rt.clock,
        holder=holder,
    )


async def enqueue_due_health_checks(rt: Runtime) -> list[int]:
    """One round of the scheduler: a check for every connected bot not checked for
    `health_interval_seconds` that has none queued yet. Returns the bot ids enqueued."""
    now = rt.clock()
    checked_before = now - timedelta(seconds=rt.settings.health_interval_seconds)
    async with rt.db.transaction() as conn:
        due = await store.due_for_check(conn, checked_before)
        queued = await _queued_checks(
            conn, due, states=(queue_models.JobState.PENDING, queue_models.JobState.RUNNING)
        )
        bot_ids = [bot_id for bot_id in due if bot_id not in queued]
        await _enqueue(rt, conn, bot_ids, now=now)
    if bot_ids:
        rt.notify_queue(queue_models.DEFAULT_QUEUE)
        log.info("bot.health_checks_scheduled", count=len(bot_ids))
    return bot_ids


async def enqueue_health_check(rt: Runtime, bot_id: int) -> None:
    """Check one bot as soon as a worker is free, unless a check is already waiting.

    A running check does not count: it may have read the bot before what prompted this one.
    """
    async with rt.db.transaction() as conn:
        if await _queued_checks(conn, [bot_id], states=(queue_models.JobState.PENDING,)):
            return
        await _enqueue(rt, conn, [bot_id], now=rt.clock())
    rt.notify_queue(queue_models.DEFAULT_QUEUE)


async def _queued_checks(
    conn: AsyncConnection, bot_ids: list[int], *, states: Iterable[queue_models.JobState]
) -> set[int]:
    """The bots among `bot_ids` with a check job in one of `states`."""
    found: set[int] = set()
    for start in range(0, len(bot_ids), _CHUNK):
        chunk = bot_ids[start : start + _CHUNK]
        for state in states:
            after_id: int | None = None
            while True:
                page = await job_store.list_jobs(
                    conn,
                    state=state,
                    kinds=[CHECK_BOT_HEALTH],
                    subject_ids=chunk,
                    limit=_CHUNK,
                    after_id=after_id,
                )
                found.update(job.subject_id for job in page if job.subject_id is not None)
                if len(page) < _CHUNK:
                    break
                after_id = page[-1].id
    return found


async def _enqueue(
    rt: Runtime, conn: AsyncConnection, bot_ids: list[int], *, now: datetime
) -> None:
    await job_store.enqueue(
        conn,
        [
            queue_models.NewJob(
                kind=CHECK_BOT_HEALTH,
                payload={"bot_id": bot_id},
                ordering_key=f"bot-health:{bot_id}",
                subject_id=bot_id,
                max_attempts=CHECK_MAX_ATTEMPTS,
            )
            for bot_id in bot_ids
        ],
        now=now,
        default_max_attempts=rt.settings.job_max_attempts,
    )
