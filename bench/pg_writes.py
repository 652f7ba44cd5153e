"""Our process's CPU per update row for three ways asyncpg can write a batch of updates.

Chose the PostgreSQL intake's statement shape (inbox/postgres_writer.py): each way inserts
the same rows into `updates` (ON CONFLICT DO NOTHING), batch after batch, in a transaction
each, and what is measured is this process's CPU time (time.process_time), not the
server's. Only `unnest` and COPY tell which rows were new, which the intake needs.

    uv run python bench/pg_writes.py --batch 40 --batches 500
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg

from servers import recreate_postgres_database
from tgrelay.db import migrate
from tgrelay.db.asyncpg_connections import connect_arguments
from tgrelay.db.engine import Database
from tgrelay.settings import async_database_url

# Statements built from these constants only, never from input (hence the S608 waivers).
COLUMNS = "bot_id, update_id, kind, chat_id, source, payload, received_at, trace_id"
Row = tuple[int, int, str, int, str, str, datetime, str]

EXECUTEMANY = (
    f"INSERT INTO updates ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"  # noqa: S608
    " ON CONFLICT (bot_id, update_id) DO NOTHING"
)
UNNEST = (
    f"INSERT INTO updates ({COLUMNS}) SELECT * FROM unnest($1::bigint[], $2::bigint[],"  # noqa: S608
    " $3::text[], $4::bigint[], $5::text[], $6::text[], $7::timestamptz[], $8::text[])"
    " ON CONFLICT (bot_id, update_id) DO NOTHING RETURNING id, bot_id, update_id"
)
UNNEST_QUIET = UNNEST.removesuffix(" RETURNING id, bot_id, update_id")
FROM_STAGING = (
    f"INSERT INTO updates ({COLUMNS}) SELECT {COLUMNS} FROM staging"  # noqa: S608
    " ON CONFLICT (bot_id, update_id) DO NOTHING RETURNING id, bot_id, update_id"
)


def batch(first: int, size: int) -> list[Row]:
    now = datetime.now(UTC)
    payload = '{"update_id":%d,"message":{"message_id":1,"chat":{"id":7,"type":"private"},"text":"hello"}}'
    return [
        (1, first + i, "message", 7, "webhook", payload % (first + i), now, f"{first + i:032x}")
        for i in range(size)
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=40)
    parser.add_argument("--batches", type=int, default=500)
    args = parser.parse_args()
    url = await recreate_postgres_database("tgrelay_bench_writes")
    db = Database(async_database_url(url))
    await migrate.upgrade_if_behind(db)
    await db.dispose()
    connect_args, connect_kwargs = connect_arguments(async_database_url(url), timeout=10)
    conn = await asyncpg.connect(*connect_args, **connect_kwargs)
    await conn.execute(
        "CREATE TEMP TABLE staging (LIKE updates INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    many = await conn.prepare(EXECUTEMANY)
    unnest = await conn.prepare(UNNEST)
    unnest_quiet = await conn.prepare(UNNEST_QUIET)
    staged = await conn.prepare(FROM_STAGING)
    columns = COLUMNS.split(", ")

    # Rows for executemany and COPY, columns for unnest: each as the intake would build it,
    # before the clock starts, so that only the driver's work is measured.
    async def by_executemany(rows: list[Row], _: list[list[object]]) -> None:
        await many.executemany(rows)

    async def by_unnest(_: list[Row], columns_: list[list[object]]) -> None:
        await unnest.fetch(*columns_)

    async def by_unnest_quiet(_: list[Row], columns_: list[list[object]]) -> None:
        await unnest_quiet.fetch(*columns_)

    async def by_copy(rows: list[Row], _: list[list[object]]) -> None:
        await conn.copy_records_to_table("staging", records=rows, columns=columns)
        await staged.fetch()

    ways: dict[str, Callable[[list[Row], list[list[object]]], Awaitable[None]]] = {
        "executemany (no RETURNING)": by_executemany,
        "unnest arrays (no RETURNING)": by_unnest_quiet,
        "unnest arrays, RETURNING": by_unnest,
        "COPY to a temp table, INSERT … SELECT RETURNING": by_copy,
    }
    first = 0
    for rounds in range(2):  # the first round warms up
        for name, way in ways.items():
            batches = []
            for _ in range(args.batches):
                rows = batch(first, args.batch)
                first += args.batch
                batches.append((rows, [list(column) for column in zip(*rows, strict=True)]))
            started = time.process_time()
            for rows, by_column in batches:
                async with conn.transaction():
                    await way(rows, by_column)
            used = time.process_time() - started
            if rounds:
                print(f"{name:50} {used / (args.batches * args.batch) * 1e6:6.1f} µs per update")
    await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
