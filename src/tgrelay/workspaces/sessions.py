"""Web UI sessions: a random id in the browser's cookie, its hash and a CSRF token stored here.

A session ends on sign-out, when its key is revoked, after IDLE of no use, and ABSOLUTE
after sign-in whatever the use. `last_seen_at` is refreshed at most once a minute, so idle
expiry is exact to the minute and browsing costs no write per page.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, or_, select, update

from tgrelay import crypto
from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.workspaces.models import ApiKey, KeyScope, Principal

IDLE = timedelta(hours=12)
ABSOLUTE = timedelta(days=7)
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True, kw_only=True)
class UiSession:
    id_hash: str  # sha256 hex of the cookie's id; the id itself is never stored
    workspace_id: str
    api_key_id: str
    scope: KeyScope  # the key's scope: a read key's session changes nothing
    csrf_token: str  # every state-changing form carries it
    created_at: datetime
    last_seen_at: datetime

    @property
    def principal(self) -> Principal:
        return Principal(
            workspace_id=self.workspace_id, actor=f"api_key:{self.api_key_id}", scope=self.scope
        )


def expired(session: UiSession, now: datetime) -> bool:
    """Whether the session has ended by time: idle too long, or signed in too long ago."""
    return now - session.last_seen_at >= IDLE or now - session.created_at >= ABSOLUTE


async def start(db: Database, key: ApiKey, *, now: datetime) -> tuple[str, UiSession]:
    """A new session for a verified key: the cookie's id (shown to the browser only) and it."""
    raw_id = secrets.token_urlsafe(32)
    session = UiSession(
        id_hash=crypto.hash_secret(raw_id),
        workspace_id=key.workspace_id,
        api_key_id=key.id,
        scope=key.scope,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
    )
    sessions = tables.ui_sessions
    async with db.transaction() as conn:
        # Sessions of this key that timed out without a sign-out go now, so rows stay few.
        await conn.execute(
            delete(sessions).where(
                sessions.c.api_key_id == key.id,
                or_(sessions.c.last_seen_at <= now - IDLE, sessions.c.created_at <= now - ABSOLUTE),
            )
        )
        await conn.execute(
            insert(sessions).values(
                id_hash=session.id_hash,
                workspace_id=session.workspace_id,
                api_key_id=session.api_key_id,
                csrf_token=session.csrf_token,
                created_at=now,
                last_seen_at=now,
            )
        )
    return raw_id, session


async def find(db: Database, raw_id: str, *, now: datetime) -> UiSession | None:
    """The live session of a cookie's id, seen now; None when unknown, ended or expired."""
    sessions, keys = tables.ui_sessions, tables.api_keys
    id_hash = crypto.hash_secret(raw_id)
    async with db.engine.connect() as conn:
        row = (
            await conn.execute(
                select(sessions, keys.c.scope)
                .join(keys, keys.c.id == sessions.c.api_key_id)
                .where(sessions.c.id_hash == id_hash, keys.c.revoked_at.is_(None))
            )
        ).first()
    if row is None:
        return None
    session = UiSession(
        id_hash=row.id_hash,
        workspace_id=row.workspace_id,
        api_key_id=row.api_key_id,
        scope=KeyScope(row.scope),
        csrf_token=row.csrf_token,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
    )
    if expired(session, now):
        await end(db, raw_id)
        return None
    if now - session.last_seen_at >= TOUCH_EVERY:
        async with db.transaction() as conn:
            await conn.execute(
                update(sessions).where(sessions.c.id_hash == id_hash).values(last_seen_at=now)
            )
    return session


async def end(db: Database, raw_id: str) -> None:
    """Sign out: the cookie's id no longer names a session."""
    async with db.transaction() as conn:
        await conn.execute(
            delete(tables.ui_sessions).where(
                tables.ui_sessions.c.id_hash == crypto.hash_secret(raw_id)
            )
        )
