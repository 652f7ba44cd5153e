"""Wake-ups across processes on PostgreSQL: NOTIFY where jobs are written, LISTEN where they run.

A transaction that writes jobs due now calls `announce` with their queues; PostgreSQL delivers
the notification at commit (never on rollback) and sends equal ones of a transaction once.
Each process that runs workers keeps a `Listener`: one dedicated asyncpg connection, outside
the engine's pool, that LISTENs and calls back with the queue. A notification is a hint, like
an in-process wake: the idle looks of queue/pacing.py stay the fallback while the listener is
down (PostgreSQL restarting, the network gone), and a listener that (re)connects wakes every
queue once, for what it may have missed. SQLite has no NOTIFY: there `announce` does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import asyncpg
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tgrelay.db import asyncpg_connections

log = structlog.get_logger(__name__)

CHANNEL = "tgrelay_jobs"
# This process, in each payload: a worker process's own enqueues already woke its workers
# after commit (`db.engine.after_commit`), and a second wake per transaction would cost each
# an empty claim (a write). Random rather than the pid, which repeats across hosts.
ORIGIN = secrets.token_hex(6)
_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', :payload)")

# Reconnection waits: doubling from the first to the most, so a restarting PostgreSQL is
# found again within seconds and a long outage costs a connection attempt every 30 s.
FIRST_RECONNECT_SECONDS = 0.5
MOST_RECONNECT_SECONDS = 30.0
# A connection that fails quietly (a half-open TCP connection: a host gone, a NAT that
# forgot it) delivers nothing and says nothing; a trivial query this often finds out.
CHECK_SECONDS = 30.0
CONNECT_TIMEOUT_SECONDS = 10.0

# What a lost or refused connection raises, from asyncpg or the socket beneath it.
CONNECTION_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def payload(queue: str) -> str:
    """The notification's text for `queue`, sent by this process."""
    return f"{queue} {ORIGIN}"


def parse(text_: str) -> tuple[str, str] | None:
    """(queue, origin) of a notification's text; None for a text not written by `payload`."""
    queue, _, origin = text_.rpartition(" ")
    if not queue or not origin:
        return None
    return queue, origin


async def announce(conn: AsyncConnection, queues: Iterable[str]) -> None:
    """In the caller's transaction: tell other processes that jobs of `queues` are due
    (delivered when it commits). Nothing on SQLite."""
    if conn.dialect.name != "postgresql":
        return
    for queue in sorted(set(queues)):  # mostly one: a statement per queue
        await conn.execute(_NOTIFY, {"payload": payload(queue)})


def reconnect_delay(failures: int) -> float:
    """Seconds to wait before connecting again after `failures` failures in a row (≥ 1)."""
    return float(min(MOST_RECONNECT_SECONDS, FIRST_RECONNECT_SECONDS * 2 ** max(failures - 1, 0)))


Connect = Callable[[], Awaitable[asyncpg.Connection]]


def connector(engine: AsyncEngine) -> Connect:
    """Opens an asyncpg connection as the engine's own connections are opened."""
    args, kwargs = asyncpg_connections.connect_arguments(
        engine.url, timeout=CONNECT_TIMEOUT_SECONDS
    )

    async def connect() -> asyncpg.Connection:
        return await asyncpg.connect(*args, **kwargs)

    return connect


class Listener:
    """LISTENs on CHANNEL over a connection of its own, reconnecting by itself; calls
    `on_queue(queue)` for each notification another process sent, and `on_listening(bool)`
    when it starts and stops listening (after a connect it should wake every queue)."""

    def __init__(
        self,
        connect: Connect,
        *,
        on_queue: Callable[[str], None],
        on_listening: Callable[[bool], None],
        check_seconds: float = CHECK_SECONDS,
        delay: Callable[[int], float] = reconnect_delay,
        origin: str = ORIGIN,
    ) -> None:
        self._connect = connect
        self._origin = origin  # notifications of this origin are skipped (tests: another)
        self._on_queue = on_queue
        self._on_listening = on_listening
        self._check_seconds = check_seconds
        self._delay = delay
        self._interrupted = asyncio.Event()  # the connection was lost, or stop() was called
        self._stopping = False
        self.connection: asyncpg.Connection | None = None  # while listening (tests end it)

    async def run(self) -> None:
        """Listen until `stop()`, connecting again after each loss."""
        failures = 0
        while not self._stopping:
            self._interrupted.clear()
            try:
                conn = await self._connect()
            except CONNECTION_ERRORS as exc:
                failures += 1
                delay = self._delay(failures)
                log.warning("notifications.connect_failed", error=str(exc), retry_in=delay)
                await self._pause(delay)
                continue
            failures = 0
            await self._listen(conn)
            if self._stopping:
                break
            # Lost: PostgreSQL restarting or a connection ended; the first wait is short.
            delay = self._delay(1)
            log.warning("notifications.lost", retry_in=delay)
            self._interrupted.clear()
            await self._pause(delay)

    async def stop(self) -> None:
        self._stopping = True
        self._interrupted.set()

    async def _listen(self, conn: asyncpg.Connection) -> None:
        conn.add_termination_listener(lambda _conn: self._interrupted.set())
        listening = False
        try:
            await conn.add_listener(CHANNEL, self._received)
            self.connection, listening = conn, True
            log.info("notifications.listening", channel=CHANNEL)
            self._on_listening(True)
            while not self._stopping and not conn.is_closed():
                if await self._pause(self._check_seconds):
                    break
                await conn.execute("SELECT 1", timeout=self._check_seconds)
        except CONNECTION_ERRORS as exc:
            log.warning("notifications.check_failed", error=str(exc))
        finally:
            self.connection = None
            if listening:
                self._on_listening(False)
            if not conn.is_closed():
                with contextlib.suppress(*CONNECTION_ERRORS):
                    await conn.close(timeout=CONNECT_TIMEOUT_SECONDS)
                conn.terminate()  # a no-op once closed; ends a connection close could not

    def _received(self, _conn: Any, _pid: int, _channel: str, text_: str) -> None:
        parsed = parse(text_)
        if parsed is None:
            log.warning("notifications.unknown_payload", payload=text_[:100])
            return
        queue, origin = parsed
        if origin != self._origin:
            self._on_queue(queue)

    async def _pause(self, seconds: float) -> bool:
        """Wait `seconds` or until interrupted; True when interrupted."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._interrupted.wait(), seconds)
            return True
        return False
