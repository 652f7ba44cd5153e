"""Health check jobs: which bots get one, and a worker running them against the emulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from tgrelay.bots import jobs, service
from tgrelay.bots.models import BotStatus
from tgrelay.queue import pacing, store, worker
from tgrelay.queue.models import JobState, NewJob

from .bench import HEALTH_INTERVAL_SECONDS, Bench, BenchFactory


async def queued(bench: Bench) -> list[tuple[Any, ...]]:
    """(state, payload, ordering key, subject) of every health check job, oldest first."""
    async with bench.rt.db.engine.connect() as conn:
        found = await store.list_jobs(conn, state=None, kinds=[jobs.CHECK_BOT_HEALTH])
    return [(job.state, job.payload, job.ordering_key, job.subject_id) for job in found]


def pending(bot_id: int) -> tuple[Any, ...]:
    return (JobState.PENDING, {"bot_id": bot_id}, f"bot-health:{bot_id}", bot_id)


def count_wakeups(bench: Bench) -> list[str]:
    """The queues woken, in order."""
    woken: list[str] = []
    bench.rt.notify_queue = woken.append
    return woken


@asynccontextmanager
async def running_worker(bench: Bench) -> AsyncIterator[worker.Worker]:
    registry = worker.Registry()
    jobs.register(registry, bench.rt)
    runner = worker.Worker(
        bench.rt.db, registry, clock=bench.clock, pacing=pacing.Pacing.steady(0.02)
    )
    task = asyncio.create_task(runner.run())
    try:
        yield runner
    finally:
        await runner.stop()
        await task


async def wait_for(condition: Callable[[], Awaitable[bool]]) -> None:
    """Wait up to ten seconds (a loaded machine is slow) for a condition to hold."""
    async with asyncio.timeout(10):
        while not await condition():
            await asyncio.sleep(0.01)


async def test_due_bots_get_one_check_each(polling: Bench) -> None:
    """Unchecked and long-unchecked connected bots get one queued check; the others none."""
    tenant = await polling.tenant("Acme")
    fresh, checked, gone = [await polling.new_bot(f"bot{n}_bot") for n in range(3)]
    for bot in (fresh, checked, gone):
        await service.connect(polling.rt, tenant.principal, bot["token"])
    await service.check_health(polling.rt, checked["id"])
    await service.disconnect(polling.rt, tenant.principal, gone["id"])
    wakeups = count_wakeups(polling)

    first = await jobs.enqueue_due_health_checks(polling.rt)
    second = await jobs.enqueue_due_health_checks(polling.rt)
    polling.clock.advance(HEALTH_INTERVAL_SECONDS + 1)
    third = await jobs.enqueue_due_health_checks(polling.rt)

    assert (first, second, third) == ([fresh["id"]], [], [checked["id"]])
    assert await queued(polling) == [pending(fresh["id"]), pending(checked["id"])]
    assert wakeups == ["default", "default"]


async def test_an_immediate_check_is_not_queued_twice(polling: Bench) -> None:
    """enqueue_health_check adds a check unless one is already waiting, and wakes the worker."""
    tenant = await polling.tenant("Acme")
    bot = await polling.new_bot("acme_bot")
    await service.connect(polling.rt, tenant.principal, bot["token"])
    wakeups = count_wakeups(polling)

    await jobs.enqueue_health_check(polling.rt, bot["id"])
    await jobs.enqueue_health_check(polling.rt, bot["id"])

    assert await queued(polling) == [pending(bot["id"])]
    assert wakeups == ["default"]


async def test_a_worker_runs_the_health_check(polling: Bench) -> None:
    """A worker running check_bot_health finds the revoked token and records it."""
    tenant = await polling.tenant("Acme")
    bot = await polling.new_bot("acme_bot")
    await service.connect(polling.rt, tenant.principal, bot["token"])
    await polling.revoke(bot["id"])

    async def revoked() -> bool:
        found = await service.get_bot(polling.rt, tenant.workspace_id, bot["id"])
        return found.status is BotStatus.TOKEN_REVOKED

    async def finished() -> bool:
        return [state for state, *_ in await queued(polling)] == [JobState.DONE]

    async with running_worker(polling):
        await jobs.enqueue_health_check(polling.rt, bot["id"])
        await wait_for(revoked)
        await wait_for(finished)

    assert [row.action for row in await polling.audit_rows(bot["id"])] == [
        "bot.connected",
        "bot.status_changed",
        "bot.status_changed",
    ]


async def test_a_check_without_a_bot_id_is_dead_at_once(polling: Bench) -> None:
    """A malformed check job fails permanently instead of being retried."""
    async with polling.rt.db.transaction() as conn:
        await store.enqueue(
            conn,
            [NewJob(kind=jobs.CHECK_BOT_HEALTH, payload={"bot": "x"})],
            now=polling.clock(),
            default_max_attempts=5,
        )

    async def dead() -> bool:
        return [state for state, *_ in await queued(polling)] == [JobState.DEAD]

    async with running_worker(polling):
        await wait_for(dead)


async def test_the_scheduler_loop_enqueues_and_wakes_the_worker(make_bench: BenchFactory) -> None:
    """The health scheduler keeps enqueuing due checks until cancelled."""
    bench = await make_bench(public_url=None, health_interval_seconds=0.01)
    tenant = await bench.tenant("Acme")
    bot = await bench.new_bot("acme_bot")
    await service.connect(bench.rt, tenant.principal, bot["token"])
    wakeups = count_wakeups(bench)

    async def scheduled() -> bool:
        return await queued(bench) == [pending(bot["id"])] and wakeups == ["default"]

    loop = asyncio.create_task(jobs.health_scheduler(bench.rt).run())
    try:
        await wait_for(scheduled)
        await asyncio.sleep(0.05)  # a few more rounds: the pending check is not duplicated
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)

    assert await queued(bench) == [pending(bot["id"])]


async def test_one_process_schedules_health_checks_by_lease(make_bench: BenchFactory) -> None:
    """Two processes' schedulers (two holders of one database): only the lease holder
    enqueues; the other's round does not run at all."""
    bench = await make_bench(public_url=None, health_interval_seconds=0.01)
    tenant = await bench.tenant("Acme")
    bot = await bench.new_bot("acme_bot")
    await service.connect(bench.rt, tenant.principal, bot["token"])
    first = jobs.health_scheduler(bench.rt, holder="a")
    second = jobs.health_scheduler(bench.rt, holder="b")

    assert await second.run_once() is not None  # b holds the lease now
    assert await queued(bench) == [pending(bot["id"])]
    assert await first.run_once() is None
    assert first.name == second.name == jobs.HEALTH_CHECKS
