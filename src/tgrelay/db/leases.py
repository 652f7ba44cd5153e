"""Named leases: at most one holder across processes, expiring unless renewed.

Used to keep one poller per bot in a cluster: a process that dies stops renewing, and
another takes over once the lease has expired.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError

from tgrelay.db import dialects, tables
from tgrelay.db.engine import Database


async def acquire(db: Database, name: str, *, holder: str, now: datetime, ttl: float) -> bool:
    """Take or renew the lease; True when `holder` holds it until now + ttl."""
    expires_at = now + timedelta(seconds=ttl)
    leases = tables.leases
    async with db.transaction() as conn:
        renewed = await conn.execute(
            update(leases)
            .where(
                leases.c.name == name,
                or_(leases.c.holder == holder, leases.c.expires_at < now),
            )
            .values(holder=holder, expires_at=expires_at)
        )
        if renewed.rowcount:
            return True
        try:
            inserted = await conn.execute(
                dialects.upsert(db.dialect, leases)
                .values(name=name, holder=holder, expires_at=expires_at)
                .on_conflict_do_nothing(index_elements=["name"])
            )
        except IntegrityError:
            return False
        return bool(inserted.rowcount)


async def release(db: Database, name: str, *, holder: str) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            delete(tables.leases).where(
                tables.leases.c.name == name, tables.leases.c.holder == holder
            )
        )
