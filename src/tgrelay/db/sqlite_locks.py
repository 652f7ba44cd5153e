"""Waiting for another SQLite connection's lock: often, on the thread that runs the statement.

SQLite's own busy handler looks again after 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100 ms…:
a process whose write transactions follow each other within a millisecond (a busy producer
of events, a worker committing) kept the lock for seconds while another process's writer
slept. Connections that use `patiently` set busy_timeout to 0 and look every half
millisecond instead, which finds the gaps between the other's transactions. It runs on the
database thread (aiosqlite's, or the intake writer's), never on the event loop.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

BUSY_TIMEOUT_SECONDS = 30.0
BUSY_POLL_SECONDS = 0.0005
_SQLITE_BUSY = 5  # the plain code; BUSY_SNAPSHOT and the like cannot be waited out


def patiently(execute: Callable[..., Any], *args: Any) -> Any:
    """Run `execute`, trying again while another connection holds the lock it needs."""
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    while True:
        try:
            return execute(*args)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != _SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(BUSY_POLL_SECONDS)
