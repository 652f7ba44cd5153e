"""The serving process's handle on its webhooks lane child (lanes/child.py).

The child starts when deliveries are to be expected (an endpoint exists, or webhooks jobs
wait: looked up at start and then as often as the in-process lane would look for work
written by another process, such as the CLI), or at the first wake of its queue: a hub
without endpoints never pays for a second interpreter (issue 15's idle memory). It is woken through its stdin when this process
enqueues webhooks jobs, wakes this process's workers when it enqueues theirs, and is started
again, after a pause that grows while it keeps dying, if it exits on its own. Its jobs in
flight when it died are rescued by lease like any worker's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import pickle
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from tgrelay.events import service as events_service
from tgrelay.lanes import frames
from tgrelay.queue.worker import TRANSIENT_ERRORS
from tgrelay.settings import Settings

log = structlog.get_logger(__name__)

CHILD_MODULE = "tgrelay.lanes.child"
READY_TIMEOUT_SECONDS = 60.0  # imports and migrations check: seconds on a slow machine
SCRAPE_TIMEOUT_SECONDS = 1.0
FIRST_RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
# A child that ran this long before it died starts the restart delays over.
STEADY_RUN_SECONDS = 60.0


# Sent after every commit that enqueued deliveries: framed once.
_WAKE = frames.frame(frames.Wake(events_service.WEBHOOKS_QUEUE))


class LaneProcess:
    """serve's webhooks lane child: started when wanted, woken, scraped, restarted, stopped."""

    def __init__(
        self,
        settings: Settings,
        *,
        expected: Callable[[], Awaitable[bool]],
        on_wake: Callable[[str], None],
        look_seconds: float,
    ) -> None:
        self._settings = settings
        self._expected = expected  # whether the lane will have work (a read)
        self._look_seconds = look_seconds  # how often to ask, until it does
        self._on_wake = on_wake  # a queue the child enqueued for, to wake here
        self._wanted = asyncio.Event()
        self._stopping = False
        self._process: asyncio.subprocess.Process | None = None
        self._numbers = itertools.count()
        self._scrapes: dict[int, asyncio.Future[list[Any]]] = {}

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    def notify(self) -> None:
        """Jobs of the webhooks queue were enqueued: wake the child, or have it started."""
        self._wanted.set()
        self._send(_WAKE)

    async def run(self) -> None:
        """Start the child once wanted, and again whenever it exits, until `stop()`."""
        delay = FIRST_RESTART_DELAY
        loop = asyncio.get_running_loop()
        while not self._stopping:
            await self._until_wanted()
            if self._stopping:
                return
            started = loop.time()
            try:
                await self._run_child()
            except (OSError, TimeoutError, pickle.UnpicklingError) as exc:
                log.error("lane.failed", error=repr(exc))
            if self._stopping:
                return
            delay = FIRST_RESTART_DELAY if loop.time() - started > STEADY_RUN_SECONDS else delay
            log.error("lane.exited", restart_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY)

    async def _until_wanted(self) -> None:
        while not self._wanted.is_set():
            try:
                if await self._expected():
                    return
            except TRANSIENT_ERRORS as exc:  # the database away for a moment: ask again later
                log.warning("lane.look_failed", error=repr(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._look_seconds):
                    await self._wanted.wait()

    async def stop(self, timeout: float = 15) -> None:
        """Close the child's stdin (it finishes what it holds), then wait; kill if it won't."""
        self._stopping = True
        self._wanted.set()
        process = self._process
        if process is None or process.returncode is not None:
            return
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), timeout)
        except TimeoutError:
            log.warning("lane.killed", pid=process.pid, after_seconds=timeout)
            process.kill()
            await process.wait()

    async def samples(self) -> list[Any]:
        """The child's metric families (prometheus_client Metric objects); none when it
        does not run or does not answer in time."""
        if self.pid is None:
            return []
        number = next(self._numbers)
        answer: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._scrapes[number] = answer
        try:
            self._send(frames.frame(frames.Scrape(number)))
            async with asyncio.timeout(SCRAPE_TIMEOUT_SECONDS):
                return await answer
        except TimeoutError:
            log.warning("lane.scrape_timeout")
            return []
        finally:
            self._scrapes.pop(number, None)

    async def _run_child(self) -> None:
        process = self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            CHILD_MODULE,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        self._send(frames.frame(frames.Start(self._settings)))
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            ready = await frames.read(process.stdout)
        if not isinstance(ready, frames.Ready):
            await process.wait()
            raise OSError(f"the webhooks lane exited before it was ready ({process.returncode})")
        log.info("lane.ready", pid=process.pid)
        while (message := await frames.read(process.stdout)) is not None:
            if isinstance(message, frames.Wake):
                self._on_wake(message.queue)
            elif isinstance(message, frames.Samples):
                waiting = self._scrapes.get(message.number)
                if waiting is not None and not waiting.done():
                    waiting.set_result(message.families)
        await process.wait()
        if not self._stopping:
            log.error("lane.died", pid=process.pid, returncode=process.returncode)

    def _send(self, framed: bytes) -> None:
        process = self._process
        if process is None or process.returncode is not None or process.stdin is None:
            return  # not started yet: a new child claims at once anyway
        if process.stdin.is_closing():
            return
        with contextlib.suppress(ConnectionError):
            process.stdin.write(framed)
