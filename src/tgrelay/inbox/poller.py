"""Long polling for bots without a public webhook URL.

The offset moves only past updates the group-commit writer has committed, so a crash
between getUpdates and the commit makes Telegram send the same updates again (absorbed as
duplicates). One poller per bot across processes, by lease. An update the intake would
refuse (a number beyond 64 bits) is skipped with an audit row; the rest of its batch is
stored and the offset passes it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from dataclasses import dataclass
from datetime import datetime

import orjson
import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from tgrelay import audit, errors
from tgrelay.bots import service as bots_service
from tgrelay.bots.models import BotStatus
from tgrelay.db import leases, tables
from tgrelay.inbox import receiver
from tgrelay.inbox.models import IncomingUpdate, UpdateSource
from tgrelay.inbox.writer import GroupCommitWriter
from tgrelay.runtime import Runtime
from tgrelay.telegram import updates as update_facts

log = structlog.get_logger(__name__)

# A poller renews its bot's lease every RENEW_SECONDS while it polls, whatever the long poll
# is doing; a process that dies stops renewing, and another's supervisor (which looks every
# SCAN_INTERVAL_SECONDS) takes the bot over within LEASE_SECONDS + SCAN_INTERVAL_SECONDS of
# the last renewal: 8 s, inside issue 22's 10 s. Three renewals fit in a lease, so one slow
# write (SQLite's lock, a PostgreSQL failover) does not hand the bot over.
LEASE_SECONDS = 6.0
RENEW_SECONDS = 2.0
SCAN_INTERVAL_SECONDS = 2.0
BATCH_LIMIT = 100  # getUpdates' maximum


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Exponential backoff with full jitter for poll errors (409s, network failures)."""

    base: float = 1.0
    cap: float = 60.0

    def delay(self, failures: int, rand: float) -> float:
        return rand * min(self.cap, self.base * 2.0 ** max(failures - 1, 0))


class Poller:
    """Polls one bot until stopped, its lease is lost, or its token is revoked."""

    def __init__(
        self, rt: Runtime, writer: GroupCommitWriter, bot: bots_service.PollingBot, *, holder: str
    ) -> None:
        self._rt = rt
        self._writer = writer
        self.bot = bot
        self._holder = holder
        self._lease = f"poller:{bot.bot_id}"
        self._backoff = Backoff()

    async def run(self) -> None:
        """Poll while this process holds the bot's lease; return once another holds it."""
        if not await self._acquire():
            return
        polling = asyncio.create_task(self._poll(), name=f"poll-{self.bot.bot_id}")
        renewing = asyncio.create_task(self._renew(), name=f"lease-{self.bot.bot_id}")
        try:
            # The lease lost (renewing ends) stops the poll mid-request: an update fetched
            # but not yet stored was not confirmed to Telegram either (the next getUpdates'
            # offset confirms), so the new holder fetches it again.
            await asyncio.wait({polling, renewing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (polling, renewing):
                task.cancel()
            for task in (polling, renewing):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(Exception):
                await leases.release(self._rt.db, self._lease, holder=self._holder)

    async def _acquire(self) -> bool:
        return await leases.acquire(
            self._rt.db, self._lease, holder=self._holder, now=self._rt.clock(), ttl=LEASE_SECONDS
        )

    async def _renew(self) -> None:
        """Returns when the lease could not be renewed: another process holds it now."""
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                if not await self._acquire():
                    log.warning("poller.lease_lost", bot_id=self.bot.bot_id)
                    return
            except (SQLAlchemyError, OSError) as exc:  # try again; the lease has time left
                log.warning("poller.lease_renewal_failed", bot_id=self.bot.bot_id, error=str(exc))

    async def _poll(self) -> None:
        rt, bot_id = self._rt, self.bot.bot_id
        client = rt.telegram.for_token(self.bot.token)
        offset = await self._committed_offset()
        failures = 0
        while True:
            try:
                raw_updates = await client.get_updates(
                    offset=offset,
                    timeout=rt.settings.poll_timeout_seconds,
                    limit=BATCH_LIMIT,
                    allowed_updates=update_facts.ALLOWED_UPDATES,
                )
                if raw_updates:
                    await self._commit(raw_updates)
                    offset = max(u["update_id"] for u in raw_updates) + 1
                failures = 0
            except errors.TelegramUnauthorized:
                await bots_service.record_status(
                    rt, bot_id, BotStatus.TOKEN_REVOKED, reason="getUpdates answered 401"
                )
                return
            except (errors.TelegramError, errors.StorageUnavailable) as exc:
                failures += 1
                delay = self._backoff.delay(failures, random.random())
                log.warning("poller.backoff", bot_id=bot_id, error=str(exc), delay=delay)
                await asyncio.sleep(delay)

    async def _committed_offset(self) -> int | None:
        """One past the newest stored update: Telegram forgets everything below it."""
        async with self._rt.db.engine.connect() as conn:
            newest = await conn.scalar(
                select(func.max(tables.updates.c.update_id)).where(
                    tables.updates.c.bot_id == self.bot.bot_id
                )
            )
        return None if newest is None else int(newest) + 1

    async def _commit(self, raw_updates: list[dict[str, object]]) -> None:
        now = self._rt.clock()
        incoming = []
        for raw in raw_updates:
            kind = update_facts.classify(raw)
            update_id = raw["update_id"]
            assert isinstance(update_id, int)
            if self._skipped(raw, update_id, now):
                continue
            incoming.append(
                IncomingUpdate(
                    bot_id=self.bot.bot_id,
                    update_id=update_id,
                    kind=kind.value,
                    chat_id=update_facts.chat_id_of(raw, kind),
                    source=UpdateSource.POLLING,
                    payload=orjson.dumps(raw).decode(),
                    received_at=now,
                )
            )
        created = await self._writer.store_many(incoming)
        metrics = self._rt.metrics
        for was_new in created:
            metrics.updates_received.labels("polling", "stored" if was_new else "duplicate").inc()
        dates = [d for raw in raw_updates if isinstance(d := _event_date(raw), int)]
        if dates:
            lag = max(0.0, now.timestamp() - max(dates))
            metrics.poller_lag.labels(str(self.bot.bot_id)).set(lag)

    def _skipped(self, raw: dict[str, object], update_id: int, now: datetime) -> bool:
        """True for an update no column can hold (a number beyond 64 bits), then audited.

        Storing it would fail the whole batch's commit on every poll, and the webhook intake
        refuses the same body with 400; here Telegram has no answer to be told, so it is
        skipped, with an audit row saying which update and why.
        """
        where = update_facts.huge_number_at(raw)
        if where is None:
            return False
        bot_id = self.bot.bot_id
        log.warning("poller.update_skipped", bot_id=bot_id, update_id=update_id, at=where[:200])
        self._rt.metrics.updates_received.labels("polling", "skipped").inc()
        in_range = update_facts.INT64_MIN <= update_id <= update_facts.INT64_MAX
        self._writer.record_audit(
            audit.Entry(
                action="intake.skipped",
                actor=audit.TELEGRAM,
                at=now,
                bot_id=bot_id,
                detail={
                    "reason": receiver.HUGE_NUMBER,
                    "update_id": update_id if in_range else str(update_id),
                    "at": where[:200],
                },
                remote_addr=None,
            )
        )
        return True


def _event_date(raw: dict[str, object]) -> object:
    for value in raw.values():
        if isinstance(value, dict) and "date" in value:
            return value["date"]
    return None


class PollerSupervisor:
    """Keeps a poller running for every polling-mode bot whose lease this process can take."""

    def __init__(self, rt: Runtime, writer: GroupCommitWriter) -> None:
        self._rt = rt
        self._writer = writer
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"
        self._running: dict[int, tuple[str, asyncio.Task[None]]] = {}
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._reconcile()
            except Exception as exc:  # a scan failure must not end polling for good
                log.warning("poller.scan_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), SCAN_INTERVAL_SECONDS)

    async def _reconcile(self) -> None:
        wanted = {bot.bot_id: bot for bot in await bots_service.polling_bots(self._rt)}
        for bot_id, (token, task) in list(self._running.items()):
            bot = wanted.get(bot_id)
            if task.done() or bot is None or bot.token != token:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                del self._running[bot_id]
        for bot_id, bot in wanted.items():
            if bot_id not in self._running:
                poller = Poller(self._rt, self._writer, bot, holder=self._holder)
                task = asyncio.create_task(poller.run(), name=f"poller-{bot_id}")
                self._running[bot_id] = (bot.token, task)

    async def stop(self) -> None:
        self._stopping.set()
        tasks = [task for _, task in self._running.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._running.clear()
