"""Benchmark retention on SQLite: write-lock time per prune batch, and database size per update.

`batches`: fills a fresh database with old, finished rows as the hub writes them (updates
of ~0.5 KB with their done process_update jobs, message.received events each delivered to
one endpoint with one attempt, audit rows), then prunes them with each batch size and prints
the time each write transaction took (p50/p99/max per table), and with `timed` the pruner's
own sizing (batches aimed at BATCH_SECONDS of the lock, at most BATCH_SIZE rows). BATCH_SIZE
in `tgrelay.retention.prune` was chosen from these figures.

`size`: writes N updates the same way (with and without a subscribed endpoint) and prints
the file's size per million updates, then prunes them all and writes N again, to show that
freed pages are reused rather than the file growing.

    .venv/bin/python bench/retention.py batches --rows 20000 --sizes 250,500,1000,2000,timed
    .venv/bin/python bench/retention.py size --rows 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import tempfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from tgrelay.db import migrate, tables
from tgrelay.db.engine import Database
from tgrelay.inbox.models import PROCESS_UPDATE
from tgrelay.retention import policy, prune

HERE = Path(__file__).parent
FIXTURE = HERE.parent / "tests" / "fixtures" / "telegram" / "update_private_text.json"
WORKSPACE = "ws_bench"
ENDPOINT = "ep_bench"
CHUNK = 2_000  # rows per INSERT transaction while filling
TIMED = "timed"


def _update_payload(update_id: int, chat_id: int) -> str:
    raw: dict[str, Any] = json.loads(FIXTURE.read_text())
    raw["update_id"] = update_id
    raw["message"]["chat"]["id"] = chat_id
    raw["message"]["from"]["id"] = chat_id
    raw["message"]["text"] = f"Hello, message number {update_id} in a chat of a thousand"
    return json.dumps(raw, separators=(",", ":"))


async def fill(db: Database, *, rows: int, start: int, at: datetime, endpoint: bool) -> None:
    """`rows` updates as the intake and the worker leave them once processed."""
    for first in range(start, start + rows, CHUNK):
        ids = range(first, min(first + CHUNK, start + rows))
        updates, jobs, events, deliveries, attempts, audit = [], [], [], [], [], []
        for n in ids:
            chat = 10_000 + n % 1000
            payload = _update_payload(n, chat)
            updates.append(
                {
                    "id": n,
                    "bot_id": 1,
                    "update_id": n,
                    "kind": "message",
                    "chat_id": chat,
                    "source": "webhook",
                    "payload": payload,
                    "received_at": at,
                }
            )
            jobs.append(_job(PROCESS_UPDATE, {"update_id": n}, f"1:{chat}", n, at))
            event_id = f"evt_{secrets.token_hex(12)}"
            body = json.dumps(
                {
                    "id": event_id,
                    "type": "message.received",
                    "timestamp": at.isoformat(),
                    "workspace_id": WORKSPACE,
                    "data": {"bot_id": 1, "update": json.loads(payload), "consumed_by": None},
                }
            )
            events.append(
                {
                    "id": event_id,
                    "workspace_id": WORKSPACE,
                    "type": "message.received",
                    "body": body,
                    "created_at": at,
                }
            )
            if endpoint:
                deliveries.append(
                    {
                        "id": n,
                        "workspace_id": WORKSPACE,
                        "endpoint_id": ENDPOINT,
                        "event_id": event_id,
                        "event_type": "message.received",
                        "status": "delivered",
                        "attempts": 1,
                        "schedule_attempts": 1,
                        "last_status_code": 200,
                        "created_at": at,
                        "updated_at": at,
                        "delivered_at": at,
                    }
                )
                jobs.append(_job("deliver_event", {"delivery_id": n}, None, n, at))
                attempts.append(
                    {
                        "delivery_id": n,
                        "started_at": at,
                        "duration_ms": 3,
                        "status_code": 200,
                        "response_body": '{"ok":true}',
                        "succeeded": True,
                    }
                )
            if n % 100 == 0:
                audit.append(
                    {
                        "workspace_id": WORKSPACE,
                        "action": "intake.rejected",
                        "actor": "telegram",
                        "detail": '{"reason":"bad secret"}',
                        "remote_addr": "203.0.113.7",
                        "created_at": at,
                    }
                )
        async with db.transaction() as conn:
            for table, values in (
                (tables.updates, updates),
                (tables.jobs, jobs),
                (tables.events, events),
                (tables.deliveries, deliveries),
                (tables.delivery_attempts, attempts),
                (tables.audit_log, audit),
            ):
                if values:
                    await conn.execute(insert(table), values)


def _job(
    kind: str, payload: dict[str, int], key: str | None, subject: int, at: datetime
) -> dict[str, Any]:
    return {
        "kind": kind,
        "payload": json.dumps(payload),
        "ordering_key": key,
        "subject_id": subject,
        "state": "done",
        "attempts": 1,
        "max_attempts": 8,
        "run_at": at,
        "locked_by": "bench",
        "created_at": at,
        "finished_at": at,
    }


async def fresh(path: Path) -> Database:
    url = f"sqlite+aiosqlite:///{path}"
    await migrate.upgrade(url)
    db = Database(url, sqlite_synchronous="FULL")
    async with db.transaction() as conn:
        await conn.execute(
            insert(tables.workspaces).values(id=WORKSPACE, name="bench", created_at=T0)
        )
    return db


T0 = datetime(2026, 1, 1, tzinfo=UTC)
PRUNE_ALL = policy.Policy(
    updates=timedelta(days=1),
    jobs=timedelta(days=1),
    dead_jobs=timedelta(days=1),
    events=timedelta(days=1),
    audit=timedelta(days=1),
)


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def batches(rows: int, sizes: list[str], workdir: Path) -> None:
    print(f"{rows} old updates (+ jobs, events, deliveries, attempts, audit rows) per run")
    print("batch size | table | batches | write lock p50 / p99 / max (ms) | rows/s | mean size")
    for size in sizes:
        # "timed": the pruner's own sizing (up to BATCH_SIZE rows, aimed at BATCH_SECONDS).
        timed = size == TIMED
        db = await fresh(workdir / f"batches-{size}.db")
        await fill(db, rows=rows, start=1, at=T0, endpoint=True)
        seen: dict[str, list[float]] = defaultdict(list)
        counts: dict[str, int] = defaultdict(int)

        def observe(batch: prune.Batch, seen: Any = seen, counts: Any = counts) -> None:
            seen[batch.table].append(batch.seconds)
            counts[batch.table] += batch.deleted.get(batch.table, 0)

        await prune.prune(
            db,
            PRUNE_ALL,
            now=T0 + timedelta(days=2),
            batch_size=prune.BATCH_SIZE if timed else int(size),
            batch_seconds=prune.BATCH_SECONDS if timed else None,
            observe=observe,
        )
        for table, seconds in seen.items():
            rate = counts[table] / sum(seconds)
            print(
                f"{size} | {table} | {len(seconds)} | {_ms(seconds, 0.5):.1f} / "
                f"{_ms(seconds, 0.99):.1f} / {1000 * max(seconds):.1f} | {rate:,.0f} | "
                f"{counts[table] / len(seconds):,.0f}"
            )
        await db.dispose()


def _file_size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def size(rows: int, workdir: Path) -> None:
    for endpoint in (False, True):
        path = workdir / f"size-{endpoint}.db"
        db = await fresh(path)
        empty = await _checkpointed_size(db, path)
        await fill(db, rows=rows, start=1, at=T0, endpoint=endpoint)
        full = await _checkpointed_size(db, path)
        per_million = (full - empty) * 1_000_000 / rows
        deleted = await prune.prune(db, PRUNE_ALL, now=T0 + timedelta(days=2))
        await fill(db, rows=rows, start=rows + 1, at=T0 + timedelta(days=3), endpoint=endpoint)
        again = await _checkpointed_size(db, path)
        label = "one endpoint subscribed" if endpoint else "no endpoint"
        print(
            f"{label}: {rows} updates grow the file by {(full - empty) / 1e6:.1f} MB "
            f"= {per_million / 1e9:.2f} GB per million updates; pruned {deleted}; "
            f"{rows} more after the prune: {again / 1e6:.1f} MB "
            f"({100 * (again - full) / full:+.1f} %)"
        )
        await db.dispose()


async def _checkpointed_size(db: Database, path: Path) -> int:
    async with db.engine.connect() as conn:
        await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return _file_size(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["batches", "size"])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument(
        "--sizes", default=f"250,500,1000,2000,{TIMED}", help=f"rows per batch, or {TIMED!r}"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tgrelay-retention-") as tmp:
        if args.mode == "batches":
            sizes = args.sizes.split(",")
            if any(part != TIMED and not part.isdigit() for part in sizes):
                parser.error(f"--sizes: whole numbers or {TIMED!r}, separated by commas")
            asyncio.run(batches(args.rows, sizes, Path(tmp)))
        else:
            asyncio.run(size(args.rows, Path(tmp)))


if __name__ == "__main__":
    main()
