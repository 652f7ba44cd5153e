"""Benchmark SLA timers: 10,000 open tickets, each with its support_sla_check timer, breaching
over a window of seconds (issue 20: "breaches fire within 1 s of their due time, and claims
are not slower").

In one process, with tgrelay's own code and no server (as bench/kb.py): the runtime `serve`
opens (`runtime.open_runtime`, which migrates a SQLite file or PostgreSQL with --db postgres),
one workspace, a desk with a 24/7 policy of first_response FIRST_RESPONSE seconds and no
ladder. Then:

1. Claims without timers: bench/claims.py's measurement (its `due` scenario at 1,000 jobs:
   claim up to 32, complete them, enqueue as many), then its jobs are deleted.
2. T tickets written (500 per transaction) through `support.sla_timer.plan`, as a ticket's
   change plans its timer: each gets its support_sla_check job at its due time, the due times
   spread at random over --window seconds starting --lead seconds after the fill began.
3. Claims with the T timers pending (all due later than the claims' clock): the same as 1.
4. A worker built as `serve` builds its default-queue worker (its concurrency and lease from
   Settings, the real clock), running the real support_sla_check handler. Each breach
   re-renders the ticket's topic header, a telegram_send job: Telegram is not in this
   bench, so those run a stand-in that completes them at once (on a real desk they go to
   Telegram in their own jobs and do not hold up the timers).

It waits until every ticket's breach is recorded (or --drain seconds after the last due) and
reports, per ticket, how late the breach was seen (ticket_sla_breaches.recorded_at, the
handler's clock, minus due_at; breached_at is due_at by definition) and how late its job
had committed (jobs.finished_at minus run_at): p50/p99/max, and how many within 1 s.

    .venv/bin/python bench/sla_timers.py                    # 10,000 tickets over 30 s, SQLite
    .venv/bin/python bench/sla_timers.py --db postgres
    .venv/bin/python bench/sla_timers.py --tickets 1000 --window 10

Not part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

import claims
from servers import recreate_postgres_database
from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.inbox.models import PROCESS_UPDATE
from tgrelay.queue.models import Job
from tgrelay.queue.worker import Registry, Worker
from tgrelay.runtime import Runtime, open_runtime
from tgrelay.settings import Settings
from tgrelay.support import sla_escalation, sla_store, sla_timer, store, ticket_store
from tgrelay.support.models import Assignment, Customer, TicketStatus
from tgrelay.support.sla_policy import PolicySpec
from tgrelay.telegram.outbox import jobs as outbox
from tgrelay.workspaces import service as workspaces

POSTGRES_DATABASE = "tgrelay_bench_sla_timers"
FIRST_RESPONSE = 300  # seconds: each ticket opened five minutes before its due time
BATCH = 500  # tickets per transaction
BOT_ID = 1
FORUM_CHAT_ID = -1001
FIRST_CUSTOMER_ID = 300_001
CLAIM_JOBS = 1_000  # bench/claims.py's `due` scenario at its smallest size
TARGET_SECONDS = 1.0
SEED = 20


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def setup(rt: Runtime) -> tuple[str, str]:
    """A workspace and its desk with a 24/7 first-response policy; their ids."""
    now = rt.clock()
    workspace, _ = await workspaces.create_workspace(rt.db, "bench", now=now)
    desk_id = "dsk_bench"
    async with rt.db.transaction() as conn:
        await store.add_desk(
            conn,
            {
                "id": desk_id,
                "workspace_id": workspace.id,
                "bot_id": BOT_ID,
                "connection_id": "conn_bench",
                "name": "Bench desk",
                "assignment": Assignment.MANUAL.value,
                "reopen_window_seconds": 0,
                "created_at": now,
                "updated_at": now,
            },
        )
        spec = PolicySpec(first_response=FIRST_RESPONSE)
        await sla_store.put_policy(conn, workspace.id, desk_id, spec, now)
    return workspace.id, desk_id


async def open_tickets(rt: Runtime, workspace_id: str, desk_id: str, due: list[datetime]) -> None:
    """A new ticket due at each of `due`, its timer planned in the ticket's transaction."""
    for first in range(0, len(due), BATCH):
        async with rt.db.transaction() as conn:
            for n in range(first, min(len(due), first + BATCH)):
                await _open(conn, rt, workspace_id, desk_id, n, due[n])
        _progress(f"  tickets: {min(len(due), first + BATCH):,} / {len(due):,}")


async def _open(
    conn: AsyncConnection, rt: Runtime, workspace_id: str, desk_id: str, n: int, due: datetime
) -> None:
    opened = due - timedelta(seconds=FIRST_RESPONSE)
    customer_id = FIRST_CUSTOMER_ID + n
    ticket_id = f"tkt_{n:016x}"
    customer = Customer(
        id=customer_id, first_name=f"C{n}", last_name=None, username=None, language_code="en"
    )
    await ticket_store.add_ticket(
        conn,
        {
            "id": ticket_id,
            "workspace_id": workspace_id,
            "number": n + 1,
            "desk_id": desk_id,
            "bot_id": BOT_ID,
            "customer_chat_id": customer_id,
            "customer_id": customer_id,
            "customer": ticket_store.customer_json(customer),
            "subject": f"Question {n}",
            "status": TicketStatus.NEW.value,
            "topic_chat_id": FORUM_CHAT_ID,
            "topic_thread_id": 1_000 + n,
            "header_message_id": 2_000_000 + n,
            "created_at": opened,
            "updated_at": opened,
        },
    )
    ticket = await ticket_store.ticket(conn, ticket_id)
    assert ticket is not None
    wake = await sla_timer.plan(conn, rt, ticket)
    assert wake == due, (wake, due)


async def time_claims(db: Database, args: argparse.Namespace) -> list[float]:
    """bench/claims.py's measurement of the `due` scenario; its jobs deleted after."""
    keys = await claims.fill(db, "due", CLAIM_JOBS)
    seconds, _ = await claims.measure(db, keys, claims=args.claims, warmup=10, limit=32)
    async with db.transaction() as conn:
        await conn.execute(delete(tables.jobs).where(tables.jobs.c.kind == PROCESS_UPDATE))
    return sorted(seconds)


def sla_worker(rt: Runtime) -> Worker:
    """The default queue's worker as `serve` builds it, with the SLA timer's handler and a
    stand-in for Telegram's sends."""
    registry = Registry()
    sla_escalation.register(registry, rt)

    async def sent(_conn: AsyncConnection, _job: Job) -> None:
        """Telegram answered at once."""

    registry.register(outbox.SEND, sent)
    return Worker(
        rt.db,
        registry,
        concurrency=rt.settings.worker_concurrency,
        lease_seconds=rt.settings.job_lease_seconds,
        clock=rt.clock,
        metrics=rt.metrics,
    )


async def breaches(db: Database) -> int:
    async with db.engine.connect() as conn:
        found = await conn.scalar(select(func.count()).select_from(tables.ticket_sla_breaches))
    return int(found or 0)


async def lateness(db: Database) -> tuple[list[float], list[float]]:
    """Per breach, recorded_at - due_at; per timer job done, finished_at - run_at (seconds)."""
    b, j = tables.ticket_sla_breaches, tables.jobs
    async with db.engine.connect() as conn:
        seen = (await conn.execute(select(b.c.due_at, b.c.recorded_at))).all()
        done = (
            await conn.execute(
                select(j.c.run_at, j.c.finished_at).where(
                    j.c.kind == sla_timer.SLA_CHECK, j.c.finished_at.is_not(None)
                )
            )
        ).all()
    return (
        sorted((row.recorded_at - row.due_at).total_seconds() for row in seen),
        sorted((row.finished_at - row.run_at).total_seconds() for row in done),
    )


def handler_seconds(rt: Runtime) -> dict[str, tuple[int, float]]:
    """Per job kind: runs done and their mean seconds (tgrelay_job_run_seconds)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for family in rt.metrics.job_runs.collect():
        for sample in family.samples:
            if sample.labels.get("outcome") != "done":
                continue
            kind = sample.labels["kind"]
            if sample.name.endswith("_sum"):
                sums[kind] = sample.value
            elif sample.name.endswith("_count"):
                counts[kind] = int(sample.value)
    return {kind: (counts[kind], sums[kind] / counts[kind]) for kind in counts if counts[kind]}


def _q(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _claims_line(label: str, ordered: list[float]) -> str:
    return (
        f"claims {label}: p50 {1000 * _q(ordered, 0.5):.2f} ms  "
        f"p99 {1000 * _q(ordered, 0.99):.2f} ms  max {1000 * ordered[-1]:.2f} ms"
    )


def _late_line(label: str, ordered: list[float], total: int) -> str:
    if not ordered:
        return f"{label}: none"
    within = sum(1 for s in ordered if s <= TARGET_SECONDS)
    return (
        f"{label}: {len(ordered):,} of {total:,}; p50 {_q(ordered, 0.5):.3f} s  "
        f"p99 {_q(ordered, 0.99):.3f} s  max {ordered[-1]:.3f} s  "
        f"mean {statistics.fmean(ordered):.3f} s; within {TARGET_SECONDS:g} s: {within:,}"
    )


async def run(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    async with open_runtime(settings) as rt:
        workspace_id, desk_id = await setup(rt)
        _progress("claims without timers")
        without = await time_claims(rt.db, args)
        began = rt.clock()
        rng = random.Random(SEED)
        first_due = began + timedelta(seconds=args.lead)
        due = sorted(
            first_due + timedelta(seconds=rng.uniform(0, args.window)) for _ in range(args.tickets)
        )
        _progress(f"opening {args.tickets:,} tickets, due from {first_due:%H:%M:%S} UTC")
        started = time.perf_counter()
        await open_tickets(rt, workspace_id, desk_id, due)
        filled = time.perf_counter() - started
        _progress(f"claims with {args.tickets:,} timers pending")
        with_timers = await time_claims(rt.db, args)
        if rt.clock() >= first_due:
            raise SystemExit(
                f"the fill and the claims ended after the first due time: raise --lead "
                f"above {(rt.clock() - began).total_seconds():.0f} s"
            )
        worker = sla_worker(rt)
        running = asyncio.create_task(worker.run())
        deadline = due[-1] + timedelta(seconds=args.drain)
        while await breaches(rt.db) < args.tickets and rt.clock() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.5)  # the rows are the signal: they come from the worker
        await worker.stop()
        await running
        seen, done = await lateness(rt.db)
        handlers = handler_seconds(rt)
    return {
        "handlers": handlers,
        "filled": filled,
        "without": without,
        "with_timers": with_timers,
        "seen": seen,
        "done": done,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=30.0, help="seconds the due times span")
    parser.add_argument(
        "--lead", type=float, default=90.0, help="seconds from the fill's start to the first due"
    )
    parser.add_argument(
        "--drain", type=float, default=600.0, help="seconds after the last due to wait at most"
    )
    parser.add_argument("--claims", type=int, default=300, help="measured claims per run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tgrelay-sla-") as tmp:
        url = (
            asyncio.run(recreate_postgres_database(POSTGRES_DATABASE))
            if args.db == "postgres"
            else f"sqlite:///{Path(tmp) / 'tgrelay.db'}"
        )
        settings = Settings.model_validate(
            {
                "data_dir": tmp,
                "database_url": url,
                "secret_keys": (SecretStr(Fernet.generate_key().decode()),),
            }
        )
        try:
            found = asyncio.run(run(settings, args))
        finally:
            if args.db == "postgres":
                asyncio.run(recreate_postgres_database(POSTGRES_DATABASE, drop_only=True))
    print(
        f"{args.db}, in-process: {args.tickets:,} tickets due over {args.window:g} s "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)"
    )
    print(f"tickets and timers written in {found['filled']:.1f} s")
    print(_late_line("breaches recorded, late by", found["seen"], args.tickets))
    print(_late_line("timer jobs committed, late by", found["done"], args.tickets))
    fired = len(found["seen"])
    last = max(found["seen"], default=0.0)
    print(
        f"breaches per second: {fired / max(last + args.window, 1e-9):.0f} "
        f"(fired / (window + the last one's lateness)); due per second: "
        f"{args.tickets / args.window:.0f}"
    )
    for kind, (runs, mean) in sorted(found["handlers"].items()):
        print(f"handler {kind}: {runs:,} runs, mean {1000 * mean:.1f} ms")
    print(_claims_line("without timers", found["without"]))
    print(_claims_line(f"with {args.tickets:,} timers pending", found["with_timers"]))


if __name__ == "__main__":
    main()
