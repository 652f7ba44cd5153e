"""Waiting for another SQLite connection's lock: often, on the thread that runs the statement.

SQLite's own busy handler looks again after 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 ms…:
a process whose write transactions follow each other within a millisecond (a busy producer
of events, a worker committing) kept the lock for seconds while another process's writer
slept. Connections that use `patiently` set busy_timeout to 0 and look every half
millisecond instead, which finds the gaps between the other's transactions. It runs on the
database thread (aiosqlite's, or the intake writer's), never on the event loop.

`patiently_in_place` is the same wait for a call made on the event loop's thread (BEGIN
IMMEDIATE, aiosqlite_one_hop): each look runs there, at once, and between looks the loop is
free. The lock is then taken only when the loop can use it at once: taken on aiosqlite's
thread, it was held idle until the loop came round to the statements after BEGIN (in serve
under bench/intake.py, p50 2 ms and p99 16 ms from BEGIN's call to the first statement,
against 0.4 and 2 ms in place), while the intake's writer waited for it. Looking every
millisecond from the loop against the writer's half millisecond on its thread, the intake
also wins most ties.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from typing import Any

BUSY_TIMEOUT_SECONDS = 30.0
BUSY_POLL_SECONDS = 0.0005
# From the event loop: uvloop's timers count whole milliseconds (a shorter sleep is no sleep,
# and the loop would spin while another process holds the lock).
IN_PLACE_POLL_SECONDS = 0.001
_SQLITE_BUSY = 5  # the plain code; BUSY_SNAPSHOT and the like cannot be waited out


_LOCKED = object()  # what `_once` returns while another connection holds the lock


def _once(execute: Callable[..., Any], args: tuple[Any, ...], deadline: float) -> Any:
    """`execute(*args)`, or _LOCKED while another connection holds the lock it needs and
    `deadline` (time.monotonic) has not passed."""
    try:
        return execute(*args)
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode != _SQLITE_BUSY or time.monotonic() >= deadline:
            raise
        return _LOCKED


def patiently(execute: Callable[..., Any], *args: Any) -> Any:
    """Run `execute`, trying again while another connection holds the lock it needs."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while (result := _once(execute, args, deadline)) is _LOCKED:
        time.sleep(BUSY_POLL_SECONDS)
    return result


async def patiently_in_place(execute: Callable[..., Any], *args: Any) -> Any:
    """`patiently` on the event loop's thread: `execute` runs there, and the loop sleeps
    between its tries while another connection holds the lock."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    # Polling is the only way: another process's lock has no event to wait on.
    while (result := _once(execute, args, deadline)) is _LOCKED:  # noqa: ASYNC110
        await asyncio.sleep(IN_PLACE_POLL_SECONDS)
    return result
