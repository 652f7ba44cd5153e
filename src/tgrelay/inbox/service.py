"""Use cases over stored updates: list them with their processing status, re-run dead ones;
the users a bot has seen in them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import errors
from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.inbox.models import (
    PROCESS_UPDATE,
    Disposition,
    StoredUpdate,
    UpdateSource,
    UpdateStatus,
)
from tgrelay.queue import store as job_store
from tgrelay.queue.models import JobState
from tgrelay.telegram.essentials import UserSeen


def status_of(job_state: str | None, attempts: int, disposition: str | None = None) -> UpdateStatus:
    """An update's status, derived from its process_update job (never stored twice).

    A pending job that has already run failed and waits for its retry; a dead job that is
    re-run starts again from zero attempts, so it is plain pending. An update kept from the
    domain handlers (inbox/screening.py) was marked in its job's final transaction.
    """
    if disposition is not None:
        return UpdateStatus(disposition)
    match job_state:
        case JobState.DONE | None:
            # No job left means it finished and was pruned.
            return UpdateStatus.PROCESSED
        case JobState.DEAD:
            return UpdateStatus.DEAD
        case JobState.PENDING if attempts > 0:
            return UpdateStatus.FAILED
        case _:  # pending for its first run, or running
            return UpdateStatus.PENDING


_STATUS_FILTERS = {
    UpdateStatus.PROCESSED: and_(
        tables.jobs.c.state == JobState.DONE, tables.updates.c.disposition.is_(None)
    ),
    UpdateStatus.THROTTLED: tables.updates.c.disposition == Disposition.THROTTLED,
    UpdateStatus.DUPLICATE: tables.updates.c.disposition == Disposition.DUPLICATE,
    UpdateStatus.DEAD: tables.jobs.c.state == JobState.DEAD,
    UpdateStatus.FAILED: and_(tables.jobs.c.state == JobState.PENDING, tables.jobs.c.attempts > 0),
    UpdateStatus.PENDING: or_(
        tables.jobs.c.state == JobState.RUNNING,
        and_(tables.jobs.c.state == JobState.PENDING, tables.jobs.c.attempts == 0),
    ),
}


def _query() -> Select[tuple[object, ...]]:
    u, j = tables.updates, tables.jobs
    return select(
        u.c.bot_id,
        u.c.update_id,
        u.c.kind,
        u.c.chat_id,
        u.c.source,
        u.c.received_at,
        u.c.disposition,
        j.c.id.label("job_id"),
        j.c.state,
        j.c.attempts,
        j.c.last_error,
    ).select_from(u.outerjoin(j, and_(j.c.kind == PROCESS_UPDATE, j.c.subject_id == u.c.id)))


def _stored(row: object) -> StoredUpdate:
    r = row._mapping  # type: ignore[attr-defined]
    return StoredUpdate(
        bot_id=r["bot_id"],
        update_id=r["update_id"],
        kind=r["kind"],
        chat_id=r["chat_id"],
        source=UpdateSource(r["source"]),
        received_at=r["received_at"],
        status=status_of(r["state"], r["attempts"] or 0, r["disposition"]),
        last_error=r["last_error"],
    )


async def list_updates(
    db: Database,
    bot_id: int,
    *,
    after: int | None,
    limit: int,
    status: UpdateStatus | None,
    since: datetime,
    before: int | None = None,
    newest_first: bool = False,
) -> list[StoredUpdate]:
    """A bot's updates with update_ids in (after, before), oldest or newest first.

    Only those received at or after `since` (the bot's `connected_since`): earlier ones
    belong to a workspace that held the bot before the caller's.
    """
    update_id = tables.updates.c.update_id
    query = _query().where(tables.updates.c.bot_id == bot_id, tables.updates.c.received_at >= since)
    if after is not None:
        query = query.where(update_id > after)
    if before is not None:
        query = query.where(update_id < before)
    if status is not None:
        query = query.where(_STATUS_FILTERS[status])
    query = query.order_by(update_id.desc() if newest_first else update_id).limit(limit)
    async with db.engine.connect() as conn:
        return [_stored(row) for row in await conn.execute(query)]


async def _get(
    conn: AsyncConnection, bot_id: int, update_id: int, since: datetime
) -> tuple[StoredUpdate, int | None] | None:
    row = (
        await conn.execute(
            _query().where(
                tables.updates.c.bot_id == bot_id,
                tables.updates.c.update_id == update_id,
                tables.updates.c.received_at >= since,
            )
        )
    ).first()
    return None if row is None else (_stored(row), row.job_id)


async def retry_dead(
    db: Database, bot_id: int, update_id: int, *, since: datetime, now: datetime
) -> StoredUpdate | None:
    """Put a dead update's job back in the queue; Conflict unless the update is dead. One
    received before `since` is as absent as a missing one (see `list_updates`)."""
    async with db.transaction() as conn:
        found = await _get(conn, bot_id, update_id, since)
        if found is None:
            return None
        stored, job_id = found
        if stored.status is not UpdateStatus.DEAD or job_id is None:
            raise errors.Conflict(f"update {update_id} is {stored.status}, only dead ones re-run")
        await job_store.rerun(conn, job_id, now=now)
        again = await _get(conn, bot_id, update_id, since)
    assert again is not None
    return again[0]


async def user_seen(conn: AsyncConnection, bot_id: int, user_id: int) -> UserSeen | None:
    """The user as the bot's updates last showed them (telegram_users); None if never seen."""
    users = tables.telegram_users
    row = (
        await conn.execute(
            select(users).where(users.c.bot_id == bot_id, users.c.user_id == user_id)
        )
    ).first()
    if row is None:
        return None
    return UserSeen(
        id=row.user_id,
        is_bot=row.is_bot,
        first_name=row.first_name,
        last_name=row.last_name,
        username=row.username,
        language_code=row.language_code,
    )
