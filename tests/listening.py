"""A PostgreSQL notifications listener for tests, as another process's, and what it heard."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from tgrelay.db import notifications
from tgrelay.db.engine import Database

WAIT_LIMIT = 20.0
# The listeners here take another origin than this process's, so that the notifications the
# test process sends count as another process's (a process skips its own).
ANOTHER_PROCESS = "another-process"


class Heard:
    """What a listener reported: the queues, and each time it started or stopped listening."""

    def __init__(self) -> None:
        self.queues: list[str] = []
        self.states: list[bool] = []
        self.changed = asyncio.Event()

    def queue(self, queue: str) -> None:
        self.queues.append(queue)
        self.changed.set()

    def listening(self, listening: bool) -> None:
        self.states.append(listening)
        self.changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT_LIMIT):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


@asynccontextmanager
async def listening(
    db: Database, heard: Heard, *, on_queue: Callable[[str], None] | None = None
) -> AsyncIterator[notifications.Listener]:
    """A listener on `db`'s server, started and listening, as another process's."""

    def on_queue_heard(queue: str) -> None:
        heard.queue(queue)
        if on_queue is not None:
            on_queue(queue)

    listener = notifications.Listener(
        notifications.connector(db.engine),
        on_queue=on_queue_heard,
        on_listening=heard.listening,
        origin=ANOTHER_PROCESS,
    )
    task = asyncio.create_task(listener.run())
    try:
        await heard.until(lambda: heard.states == [True])
        yield listener
    finally:
        await listener.stop()
        await task
