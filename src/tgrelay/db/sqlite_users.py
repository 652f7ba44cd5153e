"""Who uses a SQLite database: every process that opens it holds a shared lock on a file
beside it, so `tgrelay restore` can tell that none does by taking that lock exclusively.

flock(2), not a pid file: the kernel drops a process's locks when it ends, SIGKILL and
crashes included, so nothing stale can claim a server runs (or hide one that does). Advisory
only: a tgrelay from before this lock existed is not seen.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tgrelay import errors

SUFFIX = ".inuse"  # not ".lock": SQLite's unix-dotfile VFS uses that name itself


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + SUFFIX)


def hold(database: Path) -> int:
    """Take the shared lock for as long as the returned descriptor stays open."""
    fd = os.open(lock_path(database), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise errors.ConfigurationError(
            f"{database} is being restored (tgrelay restore); start again once it has finished"
        ) from None
    return fd


@contextmanager
def alone(database: Path) -> Iterator[None]:
    """Hold the lock exclusively, so no tgrelay process opens the database meanwhile;
    Conflict when one has it open (serve, worker, or any other command)."""
    fd = os.open(lock_path(database), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise errors.Conflict(
                f"a tgrelay process has {database} open (serve, worker or another command): "
                "stop it first"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock
