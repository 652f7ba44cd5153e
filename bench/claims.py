"""Benchmark claims: how long `queue.store.claim` takes as the jobs table grows (issue 16, point 1).

Target: p99 at 1M jobs within 2× of p99 at 1k jobs, and at most 5 ms. For each scenario and
size N, a fresh database is filled, then a worker's cycle runs M times: claim up to L jobs
(timed alone, `time.perf_counter` around `store.claim`), complete them with
`store.complete_many` in a transaction of their own, and enqueue as many new due jobs in an
intake transaction, so the due backlog keeps its size while it is measured.

- `due`: N pending jobs due now, kind process_update, ordering keys spread over 10,000 chats.
- `future`: min(N, 1000) due jobs as above plus N jobs due in an hour, spread the same way
  over another bot's 10,000 chats (on the due jobs' keys they would hold back every due job
  enqueued after them, and the claims would find nothing).
- `finished`: min(N, 1000) due jobs plus N done jobs of the due jobs' chats.

Pending jobs are written with `store.enqueue` (5,000 per transaction), done ones with plain
INSERTs. After the fill, SQLite's WAL is checkpointed; PostgreSQL's jobs table gets the
VACUUM ANALYZE that autovacuum would give it within a minute of such a load. The claims'
clock is virtual: it starts at the fill's time and steps 1 ms per cycle. The cycles leave
(warm-up + claims) × limit done jobs behind, 9,920 by default, in every scenario.

    .venv/bin/python bench/claims.py --sizes 1000,20000                 # SQLite, a quick look
    .venv/bin/python bench/claims.py                                    # 1k, 100k and 1M jobs
    .venv/bin/python bench/claims.py --db postgres --scenarios due      # PostgreSQL on :5432
    .venv/bin/python bench/claims.py --sizes 1000,100000 --json > claims.json
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text

from servers import recreate_postgres_database
from tgrelay.db import migrate, tables
from tgrelay.db.engine import Database
from tgrelay.inbox.models import PROCESS_UPDATE
from tgrelay.queue import store
from tgrelay.queue.models import JobState, NewJob
from tgrelay.settings import async_database_url

POSTGRES_DATABASE = "tgrelay_bench_claims"
SCENARIOS = ("due", "future", "finished")
KEYS = 10_000  # chats the jobs' ordering keys are spread over
BACKGROUND_DUE = 1_000  # due jobs in the `future` and `finished` scenarios
ENQUEUE_CHUNK = 5_000  # pending jobs per enqueue transaction
INSERT_CHUNK = 10_000  # done jobs per INSERT transaction
MAX_ATTEMPTS = 8  # the default of TGRELAY_JOB_MAX_ATTEMPTS
WORKER = "bench"
LEASE_SECONDS = 60
TARGET_RATIO = 2.0  # p99 at the largest size / p99 at the smallest
TARGET_P99_MS = 5.0
T0 = datetime(2026, 1, 1, tzinfo=UTC)  # the fill's time; claims start here
STEP = timedelta(milliseconds=1)  # the claims' clock, per cycle


@dataclass(frozen=True, kw_only=True)
class Result:
    scenario: str
    size: int
    fill_seconds: float
    claims: int
    jobs_per_claim: float  # below --limit: the claims ran short of claimable jobs
    p50_ms: float
    p99_ms: float
    max_ms: float


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Keys:
    """Ordering keys in turn over KEYS chats of one bot, so consecutive jobs differ in key."""

    def __init__(self, bot: int) -> None:
        self._bot = bot
        self._seq = itertools.count()

    def take(self, count: int) -> Iterator[str]:
        for n in itertools.islice(self._seq, count):
            yield f"bot:{self._bot}:chat:{n % KEYS}"


def _new_jobs(keys: Keys, count: int, run_at: datetime | None = None) -> list[NewJob]:
    return [
        NewJob(kind=PROCESS_UPDATE, payload={"update_id": 1}, ordering_key=key, run_at=run_at)
        for key in keys.take(count)
    ]


async def enqueue(
    db: Database, keys: Keys, count: int, *, now: datetime, run_at: datetime | None, label: str
) -> None:
    for done in range(0, count, ENQUEUE_CHUNK):
        batch = _new_jobs(keys, min(ENQUEUE_CHUNK, count - done), run_at)
        async with db.transaction() as conn:
            await store.enqueue(conn, batch, now=now, default_max_attempts=MAX_ATTEMPTS)
        _report_fill(label, done + len(batch), len(batch), count)


async def insert_finished(db: Database, keys: Keys, count: int, *, at: datetime) -> None:
    for done in range(0, count, INSERT_CHUNK):
        rows = [
            {
                "kind": PROCESS_UPDATE,
                "payload": '{"update_id":1}',
                "ordering_key": key,
                "subject_id": None,
                "state": JobState.DONE.value,
                "attempts": 1,
                "max_attempts": MAX_ATTEMPTS,
                "run_at": at,
                "locked_by": WORKER,
                "created_at": at,
                "finished_at": at,
            }
            for key in keys.take(min(INSERT_CHUNK, count - done))
        ]
        async with db.transaction() as conn:
            await conn.execute(insert(tables.jobs), rows)
        _report_fill("done", done + len(rows), len(rows), count)


def _report_fill(label: str, done: int, batch: int, total: int) -> None:
    """Every 100,000 jobs, and at the end."""
    if done == total or done // 100_000 > (done - batch) // 100_000:
        _progress(f"  {label}: {done:,} / {total:,}")


async def fill(db: Database, scenario: str, size: int) -> Keys:
    """The scenario's jobs as of T0: done ones first (history), then due, then future.

    Returns the due jobs' key rotation, which the jobs enqueued between claims carry on.
    """
    due_keys = Keys(bot=1)
    before = T0 - timedelta(minutes=1)
    if scenario == "finished":
        await insert_finished(db, Keys(bot=1), size, at=T0 - timedelta(days=1))
    due = size if scenario == "due" else min(size, BACKGROUND_DUE)
    await enqueue(db, due_keys, due, now=before, run_at=None, label="due")
    if scenario == "future":
        later = T0 + timedelta(hours=1)
        await enqueue(db, Keys(bot=2), size, now=before, run_at=later, label="future")
    return due_keys


async def settle(db: Database) -> None:
    """What a database left alone after the load would do by itself."""
    async with db.engine.connect() as conn:
        if db.is_sqlite:
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            await conn.execute(text("VACUUM ANALYZE jobs"))


async def measure(
    db: Database, keys: Keys, *, claims: int, warmup: int, limit: int
) -> tuple[list[float], int]:
    """Claim/complete/enqueue cycles; each measured claim's seconds, and the jobs claimed."""
    seconds: list[float] = []
    claimed = 0
    for cycle in range(warmup + claims):
        now = T0 + cycle * STEP
        started = time.perf_counter()
        jobs = await store.claim(
            db, worker_id=WORKER, limit=limit, now=now, lease_seconds=LEASE_SECONDS
        )
        elapsed = time.perf_counter() - started
        if cycle >= warmup:
            seconds.append(elapsed)
            claimed += len(jobs)
        async with db.transaction() as conn:
            await store.complete_many(conn, [job.id for job in jobs], worker_id=WORKER, now=now)
        async with db.transaction() as conn:
            await store.enqueue(
                conn, _new_jobs(keys, len(jobs)), now=now, default_max_attempts=MAX_ATTEMPTS
            )
    return seconds, claimed


def _ms(ordered: list[float], q: float) -> float:
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_one(args: argparse.Namespace, scenario: str, size: int, url: str) -> Result:
    """Fill an empty database at `url` for the scenario, then time its claims."""
    await migrate.upgrade(url)
    db = Database(url, sqlite_synchronous="FULL")
    try:
        _progress(f"{scenario}, {size:,} jobs: filling")
        started = time.perf_counter()
        keys = await fill(db, scenario, size)
        await settle(db)
        fill_seconds = time.perf_counter() - started
        _progress(f"{scenario}, {size:,} jobs: filled in {fill_seconds:.1f} s; claiming")
        seconds, claimed = await measure(
            db, keys, claims=args.claims, warmup=args.warmup, limit=args.limit
        )
    finally:
        await db.dispose()
    ordered = sorted(seconds)
    return Result(
        scenario=scenario,
        size=size,
        fill_seconds=round(fill_seconds, 1),
        claims=len(seconds),
        jobs_per_claim=round(claimed / len(seconds), 1),
        p50_ms=round(_ms(ordered, 0.5), 3),
        p99_ms=round(_ms(ordered, 0.99), 3),
        max_ms=round(1000 * ordered[-1], 3),
    )


def verdicts(results: list[Result]) -> dict[str, dict[str, Any]]:
    """Per scenario: p99 at the largest size against p99 at the smallest, and the verdict."""
    judged = {}
    for scenario in dict.fromkeys(result.scenario for result in results):
        rows = sorted((r for r in results if r.scenario == scenario), key=lambda r: r.size)
        smallest, largest = rows[0], rows[-1]
        ratio = largest.p99_ms / smallest.p99_ms
        passed = ratio <= TARGET_RATIO and largest.p99_ms <= TARGET_P99_MS
        judged[scenario] = {
            "sizes": [smallest.size, largest.size],
            "p99_ratio": round(ratio, 2),
            "pass": passed,
        }
    return judged


def _row(r: Result) -> str:
    return (
        f"{r.scenario} | {r.size:,} | {r.fill_seconds:.1f} | {r.jobs_per_claim:.1f} | "
        f"{r.p50_ms:.2f} / {r.p99_ms:.2f} / {r.max_ms:.2f}"
    )


def print_table(args: argparse.Namespace, results: list[Result]) -> None:
    print(
        f"{args.db}: claims of up to {args.limit} jobs, {args.claims} measured after "
        f"{args.warmup} warm-up ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)"
    )
    print("scenario | jobs | fill (s) | jobs/claim | claim p50 / p99 / max (ms)")
    for result in results:
        print(_row(result))
    for scenario, verdict in verdicts(results).items():
        smallest, largest = verdict["sizes"]
        print(
            f"{scenario}: p99 at {largest:,} / p99 at {smallest:,} = {verdict['p99_ratio']:.2f}: "
            f"{'PASS' if verdict['pass'] else 'FAIL'} "
            f"(target ≤ {TARGET_RATIO:g}× and ≤ {TARGET_P99_MS:g} ms)"
        )


def run_all(args: argparse.Namespace) -> list[Result]:
    """Each scenario at each size, in a database of its own."""
    results = []
    try:
        for scenario in args.scenarios:
            for size in args.sizes:
                with tempfile.TemporaryDirectory(prefix="tgrelay-claims-") as tmp:
                    url = (
                        asyncio.run(recreate_postgres_database(POSTGRES_DATABASE))
                        if args.db == "postgres"
                        else f"sqlite:///{tmp}/tgrelay.db"
                    )
                    result = asyncio.run(run_one(args, scenario, size, async_database_url(url)))
                _progress(f"  {_row(result)}")
                results.append(result)
    finally:
        if args.db == "postgres":
            asyncio.run(recreate_postgres_database(POSTGRES_DATABASE, drop_only=True))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--sizes", default="1000,100000,1000000", help="jobs, comma-separated")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--limit", type=int, default=32, help="jobs per claim")
    parser.add_argument("--claims", type=int, default=300, help="measured claims per run")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured claims first")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    args.sizes = [int(part) for part in args.sizes.split(",")]
    args.scenarios = args.scenarios.split(",")
    if unknown := set(args.scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if min(args.sizes) < 1 or args.limit < 1 or args.claims < 1 or args.warmup < 0:
        parser.error("--sizes, --limit and --claims must be positive, --warmup not negative")
    results = run_all(args)
    if args.json:
        document = {
            "db": args.db,
            "limit": args.limit,
            "results": [asdict(result) for result in results],
            "verdicts": verdicts(results),
        }
        print(json.dumps(document, indent=2))
    else:
        print_table(args, results)


if __name__ == "__main__":
    main()
