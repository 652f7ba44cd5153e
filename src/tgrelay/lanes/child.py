"""`python -m tgrelay.lanes.child`: the webhooks lane, started by `tgrelay serve`.

Reads a Start (the settings) on stdin, runs the webhooks queue's worker until stdin closes
(the parent stopping, or killed: either way the lane finishes what it holds and exits), and
answers on the pipe it was given as stdout. Anything else this process prints goes to stderr,
the serving process's log, so nothing stray lands between frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable

import structlog
import uvloop

from tgrelay import collector, wiring
from tgrelay.events import service as events_service
from tgrelay.lanes import frames
from tgrelay.lanes import webhooks as webhooks_lane
from tgrelay.observability import configure_logging
from tgrelay.runtime import open_runtime
from tgrelay.settings import Settings

log = structlog.get_logger(__name__)

Answer = Callable[[bytes], object]  # writes a frame to the parent


async def main(stdin: int, answers: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(stdin, "rb", buffering=0)
    )
    transport, _ = await loop.connect_write_pipe(
        asyncio.Protocol, os.fdopen(answers, "wb", buffering=0)
    )
    start = await frames.read(reader)
    if not isinstance(start, frames.Start):
        raise SystemExit("tgrelay.lanes.child: expected the settings first")
    await run(start.settings, reader, transport.write)


def notifier(wake_lane: Callable[[], None], answer: Answer) -> Callable[[str], None]:
    """The child's `rt.notify_queue`: its own queue wakes its worker; any other (the outbox,
    timers: they run in the serving process) is told to the parent."""

    def notify(queue: str) -> None:
        if queue == events_service.WEBHOOKS_QUEUE:
            wake_lane()
        else:
            answer(frames.frame(frames.Wake(queue)))

    return notify


async def run(settings: Settings, reader: asyncio.StreamReader, answer: Answer) -> None:
    configure_logging(settings.log_level)
    async with open_runtime(settings) as rt:
        wiring.install(rt)
        client = webhooks_lane.client(rt)
        worker = webhooks_lane.worker(rt, client)

        rt.notify_queue = notifier(worker.notify, answer)
        running = asyncio.create_task(worker.run(), name="webhook-worker")
        collector.freeze_after_start_up()
        answer(frames.frame(frames.Ready()))
        log.info("lane.started", queue=events_service.WEBHOOKS_QUEUE, pid=os.getpid())
        try:
            while (message := await frames.read(reader)) is not None:
                if isinstance(message, frames.Wake):
                    worker.notify()
                elif isinstance(message, frames.Scrape):
                    families = list(rt.metrics.registry.collect())
                    answer(frames.frame(frames.Samples(message.number, families)))
        finally:
            await worker.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await client.aclose()
    log.info("lane.stopped", pid=os.getpid())


if __name__ == "__main__":
    # Its life is serve's: Ctrl-C in a terminal (or a service manager's SIGTERM to the group)
    # reaches serve, which closes this child's stdin once its own work is done.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    # The frames go out on the stdout the parent gave; fd 1 itself then points at stderr.
    answers = os.dup(sys.stdout.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    uvloop.run(main(sys.stdin.fileno(), answers))
