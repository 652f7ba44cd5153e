"""The queue's records: a job as it is asked for (`NewJob`) and as it is stored (`Job`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

# Column widths of `tables.jobs`; checked here so SQLite (which ignores them) and PostgreSQL
# (which refuses longer values) accept the same jobs.
MAX_KIND_LENGTH = 64
MAX_QUEUE_LENGTH = 32
MAX_ORDERING_KEY_LENGTH = 128

# The queue of jobs that name none. Workers serve one queue each: a separate queue keeps slow
# network work (webhook deliveries) from taking the slots that updates and sends need.
DEFAULT_QUEUE = "default"

# Writes a handler leaves for the transaction that records its job's outcome (completion, or
# a reschedule), so both commit together or not at all.
Finish = Callable[[AsyncConnection], Awaitable[None]]


class JobState(StrEnum):
    """Where a job is in its life: pending → running → done, or dead after its last try."""

    PENDING = "pending"  # waiting for run_at, or for an older job with its ordering key
    RUNNING = "running"  # claimed by a worker whose lease has not expired
    DONE = "done"  # the handler succeeded; kept for inspection until retention removes it
    DEAD = "dead"  # gave up (attempts exhausted or a permanent failure); rerun revives it


@dataclass(frozen=True, kw_only=True)
class NewJob:
    """A job to enqueue, in the transaction that makes it necessary."""

    kind: str  # the handler's registered name, e.g. "process_update"
    payload: Mapping[str, Any]  # JSON-serialisable arguments for the handler
    queue: str = DEFAULT_QUEUE  # which workers claim it
    # Jobs with the same key run one at a time, oldest first (e.g. "bot:123:chat:-100…").
    ordering_key: str | None = None
    subject_id: int | None = None  # the row this job is about, e.g. updates.id
    run_at: datetime | None = None  # None: as soon as possible
    max_attempts: int | None = None  # None: the queue's default
    # The update's trace it belongs to; None: the current one (tracing.current_trace_id).
    trace_id: str | None = None

    def __post_init__(self) -> None:
        if not 0 < len(self.kind) <= MAX_KIND_LENGTH:
            raise ValueError(f"job kind must be 1–{MAX_KIND_LENGTH} characters: {self.kind!r}")
        if not 0 < len(self.queue) <= MAX_QUEUE_LENGTH:
            raise ValueError(f"queue must be 1–{MAX_QUEUE_LENGTH} characters: {self.queue!r}")
        if self.ordering_key is not None and not (
            0 < len(self.ordering_key) <= MAX_ORDERING_KEY_LENGTH
        ):
            raise ValueError(f"ordering_key must be 1–{MAX_ORDERING_KEY_LENGTH} characters")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


@dataclass(frozen=True, kw_only=True)
class Job:
    """A stored job, as a worker or an operator sees it."""

    id: int
    kind: str
    queue: str
    payload: dict[str, Any]
    ordering_key: str | None
    after_id: int | None  # the job of the same key enqueued just before, which runs first
    subject_id: int | None
    state: JobState
    attempts: int  # claims so far, the running one included; releases give one back
    max_attempts: int
    run_at: datetime  # not claimable before this instant
    locked_by: str | None  # the lease holder while running; the last runner once done or dead
    lease_expires_at: datetime | None  # after this a running job is rescued
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None  # when it became done or dead
    trace_id: str | None = None  # the trace of the update that caused it, if one did
