"""Benchmark `tgrelay keys rotate`'s endpoint batches on SQLite: how long one batch holds the
write lock, and how long its re-encryption takes (outside the lock).

Fills a fresh database with endpoints whose three secrets (current, previous, one earlier)
are under an old key, then writes them under a new primary key batch by batch with
`keyring.write_batch`, timing the write transaction (BEGIN IMMEDIATE's return to COMMIT's)
and the re-encryption of the same rows. `keyring.BATCH_SIZE` was chosen from these figures.

    .venv/bin/python bench/keys.py --rows 2500 --batch 500
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import orjson
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import keyring
from tgrelay.clock import utcnow
from tgrelay.crypto import TokenCipher
from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.runtime import Runtime


class TimedDatabase(Database):
    """A Database that notes how long each write transaction held the lock, in ms."""

    held: list[float]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        async with super().transaction() as conn:
            began = time.perf_counter()
            yield conn
        self.held.append((time.perf_counter() - began) * 1000)


async def fill(db: Database, old: TokenCipher, rows: int) -> None:
    now = utcnow()
    earlier = orjson.dumps([[old.encrypt("whsec_" + "c" * 32), now.isoformat()]]).decode()
    async with db.transaction() as conn:
        await conn.run_sync(tables.metadata.create_all)
        await conn.execute(insert(tables.workspaces).values(id="ws_1", name="x", created_at=now))
        await conn.execute(
            insert(tables.endpoints),
            [
                {
                    "id": f"ep_{n:08}",
                    "workspace_id": "ws_1",
                    "url": "https://example.com/hook",
                    "status": "enabled",
                    "secret_ciphertext": old.encrypt("whsec_" + "a" * 32),
                    "previous_secret_ciphertext": old.encrypt("whsec_" + "b" * 32),
                    "earlier_secrets": earlier,
                    "breaker_state": "closed",
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(rows)
            ],
        )


async def main(rows: int, batch: int) -> None:
    old_key, new_key = (SecretStr(Fernet.generate_key().decode()) for _ in range(2))
    old, new = TokenCipher([old_key]), TokenCipher([new_key, old_key])
    with tempfile.TemporaryDirectory() as directory:
        db = TimedDatabase(f"sqlite+aiosqlite:///{Path(directory) / 'keys.db'}")
        db.held = []
        await fill(db, old, rows)
        db.held.clear()
        # write_batch reads rt.db and rt.cipher only.
        rt = cast(Runtime, type("Bench", (), {"db": db, "cipher": new})())
        crypto_ms: list[float] = []
        after: Any = None
        while found := await keyring.read_batch(db, keyring.ENDPOINTS, after=after, limit=batch):
            began = time.perf_counter()
            for row in found:
                keyring.reencrypted(new, keyring.ENDPOINTS, row)
            crypto_ms.append((time.perf_counter() - began) * 1000)
            await keyring.write_batch(rt, keyring.ENDPOINTS, found, keyring.Rotation())
            after = found[-1]["id"]
        await db.dispose()
    for name, figures in (("write lock held", db.held), ("re-encryption", crypto_ms)):
        print(
            f"{name} per batch of {batch} (ms): p50 {statistics.median(figures):.1f} "
            f"max {max(figures):.1f} over {len(figures)} batches"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2500)
    parser.add_argument("--batch", type=int, default=keyring.BATCH_SIZE)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rows, arguments.batch))
