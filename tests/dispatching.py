"""Process updates in-process, as the process_update job does, and see what they produced.

Domain handlers get fast tests with it: no HTTP server, no worker, no waiting. `process`
stores the updates, runs process_update's own registered handler on them in one
transaction (holders, inbound limits, chats and senders, dispatch, inbound events), and
returns the jobs and events that transaction wrote. While the handlers run, the runtime's
database refuses a second connection or transaction: everything a job does must run on the
job's connection, and a handler that forgets fails here at once.

The bots are real: connected through `bots.service` against the emulator (on loopback), so
a handler that sends or reads a bot sees what production would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import orjson
import pytest
from sqlalchemy import func, insert, literal_column, select

from tests.databases import at_head
from tgrelay import app, wiring
from tgrelay.bots import service as bots_service
from tgrelay.clock import Clock, utcnow
from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.inbox import jobs as inbox_jobs
from tgrelay.inbox.models import PROCESS_UPDATE, Handler, UpdateSource
from tgrelay.inbox.writer import UPDATES_QUEUE
from tgrelay.queue.models import Job, JobState
from tgrelay.queue.worker import Batched, Registry
from tgrelay.runtime import Runtime, open_runtime
from tgrelay.settings import Settings
from tgrelay.telegram import updates as telegram_updates
from tgrelay.testing.emulator import BotRecord
from tgrelay.testing.emulator_server import RunningEmulator
from tgrelay.workspaces import service as workspaces
from tgrelay.workspaces.models import Principal


@dataclass(frozen=True, kw_only=True)
class ProducedJob:
    """A job the transaction enqueued (a send, a delivery)."""

    kind: str
    queue: str
    payload: dict[str, Any]
    ordering_key: str | None


@dataclass(frozen=True, kw_only=True)
class ProducedEvent:
    """An event the transaction emitted."""

    type: str
    workspace_id: str
    data: dict[str, Any]  # the event's `data`, as JSON would carry it


@dataclass(frozen=True, kw_only=True)
class Produced:
    jobs: list[ProducedJob]
    events: list[ProducedEvent]

    def of_kind(self, kind: str) -> list[ProducedJob]:
        return [job for job in self.jobs if job.kind == kind]


class SecondConnection(AssertionError):
    """A handler opened another connection or transaction inside the job's transaction."""


@dataclass(kw_only=True)
class Dispatching:
    """A runtime with one workspace, and process_update run in-process on demand."""

    rt: Runtime
    emulator: RunningEmulator
    principal: Principal
    handlers: Sequence[Handler]
    _seen: set[tuple[int, int]] = field(default_factory=set)  # (bot_id, update_id) stored

    async def connect_bot(self, username: str) -> BotRecord:
        """A new emulator bot, connected to the workspace through bots.service."""
        bot = self.emulator.emulator.create_bot(username)
        await bots_service.connect(self.rt, self.principal, bot.token)
        return bot

    async def process_pending(self, bot_id: int) -> Produced:
        """Process the bot's updates the emulator queued since the last call, in order."""
        pending = self.emulator.emulator.pending_updates(bot_id)
        return await self.process(
            bot_id, [u for u in pending if (bot_id, u["update_id"]) not in self._seen]
        )

    async def process(self, bot_id: int, updates: Sequence[Mapping[str, Any]]) -> Produced:
        """Store the updates as the intake would, run one process_update batch on them, and
        return the jobs and events it wrote."""
        row_ids = await self._store(bot_id, updates)
        registration = self._registration()
        jobs = [self._job(row_id) for row_id in row_ids]
        prepared = await registration.prepare(jobs)
        db = self.rt.db
        async with db.engine.connect() as conn:
            last_job = await conn.scalar(select(func.coalesce(func.max(tables.jobs.c.id), 0)))
            before = set((await conn.scalars(select(tables.events.c.id))).all())
        async with db.transaction() as conn:
            with _one_connection(db):
                await registration.handler(conn, jobs, prepared)
        return await self._produced(after_job=int(last_job or 0), events_before=before)

    async def _store(self, bot_id: int, updates: Sequence[Mapping[str, Any]]) -> list[int]:
        now = self.rt.clock()
        row_ids = []
        async with self.rt.db.transaction() as conn:
            for update in updates:
                raw = dict(update)
                kind = telegram_updates.classify(raw)
                row_id = await conn.scalar(
                    insert(tables.updates)
                    .values(
                        bot_id=bot_id,
                        update_id=raw["update_id"],
                        kind=kind.value,
                        chat_id=telegram_updates.chat_id_of(raw, kind),
                        source=UpdateSource.POLLING.value,
                        payload=orjson.dumps(raw).decode(),
                        received_at=now,
                    )
                    .returning(tables.updates.c.id)
                )
                assert row_id is not None
                row_ids.append(int(row_id))
                self._seen.add((bot_id, raw["update_id"]))
        return row_ids

    def _registration(self) -> Batched:
        registry = Registry()
        inbox_jobs.register(registry, self.rt, handlers=self.handlers)
        registration = registry.lookup(PROCESS_UPDATE)
        assert isinstance(registration, Batched)
        return registration

    def _job(self, row_id: int) -> Job:
        now = self.rt.clock()
        return Job(
            id=0,  # never stored: the handler reads only the subject
            kind=PROCESS_UPDATE,
            queue=UPDATES_QUEUE,
            payload={},
            ordering_key=None,
            after_id=None,
            subject_id=row_id,
            state=JobState.RUNNING,
            attempts=1,
            max_attempts=1,
            run_at=now,
            locked_by=None,
            lease_expires_at=None,
            last_error=None,
            created_at=now,
            finished_at=None,
        )

    async def _produced(self, *, after_job: int, events_before: set[str]) -> Produced:
        jobs, events = tables.jobs, tables.events
        async with self.rt.db.engine.connect() as conn:
            job_rows = await conn.execute(
                select(jobs.c.kind, jobs.c.queue, jobs.c.payload, jobs.c.ordering_key)
                .where(jobs.c.id > after_job)
                .order_by(jobs.c.id)
            )
            # SQLite's rowid is the insertion order (event ids are random).
            event_rows = await conn.execute(
                select(events.c.id, events.c.type, events.c.workspace_id, events.c.body).order_by(
                    literal_column("rowid")
                )
            )
            return Produced(
                jobs=[
                    ProducedJob(
                        kind=row.kind,
                        queue=row.queue,
                        payload=orjson.loads(row.payload),
                        ordering_key=row.ordering_key,
                    )
                    for row in job_rows
                ],
                events=[
                    ProducedEvent(
                        type=row.type,
                        workspace_id=row.workspace_id,
                        data=orjson.loads(row.body)["data"],
                    )
                    for row in event_rows
                    if row.id not in events_before
                ],
            )


@asynccontextmanager
async def dispatching(
    emulator: RunningEmulator,
    data_dir: Path,
    *,
    handlers: Sequence[Handler] | None = None,
    clock: Clock = utcnow,
    **settings: Any,
) -> AsyncIterator[Dispatching]:
    """A fresh SQLite runtime wired as the app wires it, one workspace, and the app's update
    handlers (or `handlers`); `settings` override Settings fields."""
    found = Settings.model_validate(
        {"data_dir": data_dir, "telegram_api_url": emulator.base_url, **settings}
    )
    await at_head(found)
    async with open_runtime(found, clock=clock) as rt:
        wiring.install(rt)
        workspace, _ = await workspaces.create_workspace(rt.db, "dispatching", now=rt.clock())
        yield Dispatching(
            rt=rt,
            emulator=emulator,
            principal=Principal(workspace_id=workspace.id, actor="test"),
            handlers=app.update_handlers(rt) if handlers is None else handlers,
        )


@contextmanager
def _one_connection(db: Database) -> Iterator[None]:
    """While inside, `db` refuses to open another connection or transaction."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(db, "transaction", _refuse)
        patch.setattr(db, "engine", _RefusingEngine())
        yield


def _refuse(*_args: Any, **_kwargs: Any) -> NoReturn:
    raise SecondConnection(
        "a handler opened another connection inside the job's transaction: "
        "pass it the job's connection instead"
    )


class _RefusingEngine:
    """Stands in for the engine while a job's transaction runs: any use is a second one."""

    def __getattr__(self, name: str) -> Any:
        _refuse()
