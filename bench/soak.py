"""Soak: a steady intake for minutes with a short retention, watching the database and the backlog.

Issue 16's target: private text updates paced at 1,000/s over 1,000 chats for 10 minutes into
the default `tgrelay serve` (the worker in the process), every retention set to 60 s: the
database file stops growing after the first minutes (it grows ≤ 10 % over the last half),
processing keeps up (the backlog of the last half peaks no higher than that of the first,
or stays under 2 s of updates throughout it, and is under 2 s of updates at the end), and
the intake acks with p99 ≤ 10 ms. (The "or": a worker that keeps up leaves a backlog of a
few dozen jobs whose peaks are noise; the peaks alone failed a run at 69 and 122 jobs.)

bench/e2e.py's pieces do the work: the emulator connects the bot (nothing calls the real
Telegram), `tgrelay serve` runs with TGRELAY_RETAIN_{UPDATES,JOBS,EVENTS,AUDIT}_DAYS at
--retain-seconds and the pruner every --retention-interval seconds, and its pacer POSTs the
updates on a fixed schedule over keep-alive connections (each built when its slot comes, not
in advance). No endpoint is subscribed. Every --sample seconds the script prints the size of
the database (SQLite: the file plus its -wal; PostgreSQL: pg_database_size), the backlog
(process_update jobs pending or running, read over a separate read-only connection), the
rows in `updates` (retention at work), and the acks of that interval (count, failures,
p50/p99). Then a summary, with PASS/FAIL per target, and how long the backlog took to
drain. Rows start going only after --retain-seconds plus a pruning interval, so a run
shorter than a few times that cannot meet the growth target. Not part of the test suite.

    uv run python bench/soak.py                                # SQLite: 1,000 updates/s for 10 min
    uv run python bench/soak.py --db postgres                  # PostgreSQL on 127.0.0.1:5432
    uv run python bench/soak.py --rate 300 --duration 60       # a short run
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import uvloop
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import e2e
from servers import process_cpu_seconds, write_lock_holds
from tgrelay.settings import async_database_url

POSTGRES_DATABASE = "tgrelay_bench_soak"
DAY_SECONDS = 86_400
# Targets of issue 16, point 6.
TARGET_GROWTH_PERCENT = 10.0  # the database's growth over the last half of the run
TARGET_BACKLOG_SECONDS = 2.0  # the backlog at the end, in seconds of updates
TARGET_ACK_P99_MS = 10.0
DRAIN_SECONDS = 60.0  # after the last update, how long to wait for the backlog to empty
BACKLOG = (
    "SELECT count(*) FROM jobs WHERE kind = 'process_update' AND state IN ('pending', 'running')"
)
UPDATES = "SELECT count(*) FROM updates"


# --- what is watched ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Reading:
    database_bytes: int
    backlog: int  # process_update jobs pending or running
    updates: int  # rows in `updates`
    seconds: float  # how long reading took


class Gauge(Protocol):
    async def read(self) -> Reading: ...


class SqliteGauge:
    """Reads the SQLite file from a thread, over a read-only connection opened per reading
    (no snapshot is held between readings, so checkpoints are not held back)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def read(self) -> Reading:
        return await asyncio.to_thread(self._read)

    def _read(self) -> Reading:
        began = time.monotonic()
        size = sum(
            file.stat().st_size
            for file in (self.path, self.path.with_name(self.path.name + "-wal"))
            if file.exists()
        )
        with closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)) as conn:
            backlog = conn.execute(BACKLOG).fetchone()[0]
            updates = conn.execute(UPDATES).fetchone()[0]
        return Reading(
            database_bytes=size,
            backlog=backlog,
            updates=updates,
            seconds=time.monotonic() - began,
        )


class PostgresGauge:
    def __init__(self, url: str) -> None:
        self.engine: AsyncEngine = create_async_engine(async_database_url(url), pool_size=1)

    async def read(self) -> Reading:
        began = time.monotonic()
        async with self.engine.connect() as conn:
            size = await conn.scalar(text("SELECT pg_database_size(current_database())"))
            backlog = await conn.scalar(text(BACKLOG))
            updates = await conn.scalar(text(UPDATES))
        return Reading(
            database_bytes=int(size or 0),
            backlog=int(backlog or 0),
            updates=int(updates or 0),
            seconds=time.monotonic() - began,
        )


def gauge_of(env: dict[str, str]) -> Gauge:
    url = env.get("TGRELAY_DATABASE_URL")
    if url is not None:
        return PostgresGauge(url)
    return SqliteGauge(Path(env["TGRELAY_DATA_DIR"]) / "tgrelay.db")  # Settings' default


# --- the acks, by interval ------------------------------------------------------------------


@dataclass(kw_only=True)
class Acks:
    """The pacer's answers since the last `take` (e2e.Answered)."""

    answered: int = 0  # since the start
    latencies_ms: list[float] = field(default_factory=list)  # 2xx answers of the interval
    failed: int = 0  # of the interval: connection failed or not 2xx

    def __call__(self, sent: float, acked: float, status: int) -> None:
        self.answered += 1
        if 200 <= status < 300:
            self.latencies_ms.append((acked - sent) * 1000)
        else:
            self.failed += 1

    def take(self) -> tuple[list[float], int]:
        taken = self.latencies_ms, self.failed
        self.latencies_ms, self.failed = [], 0
        return taken


@dataclass(frozen=True, kw_only=True)
class Sample:
    at: float  # when it was due, seconds since pacing began: n·--sample, or the end
    late: float  # seconds after `at` that it was taken
    answered: int  # updates answered so far
    reading: Reading
    acks: int  # 2xx answers in the interval
    failed: int  # failed answers in the interval
    ack_p50_ms: float
    ack_p99_ms: float


def megabytes(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"


def line(sample: Sample) -> str:
    r = sample.reading
    return (
        f"  {sample.at:6.0f} s  answered {sample.answered:>9,}  db {megabytes(r.database_bytes):>10}"
        f"  backlog {r.backlog:>7,}  updates {r.updates:>9,} rows"
        f"  | acks {sample.acks:>6,} ({sample.failed:,} failed) p50 {sample.ack_p50_ms:5.1f} ms"
        f" p99 {sample.ack_p99_ms:6.1f} ms  (read in {r.seconds * 1000:.0f} ms"
        + (f", taken {sample.late:.1f} s late)" if sample.late > 0.1 else ")")
    )


async def take_sample(gauge: Gauge, acks: Acks, start: float, at: float) -> Sample:
    latencies, failed = acks.take()
    late = time.monotonic() - start - at
    quantiles = e2e.percentiles(latencies)
    return Sample(
        at=at,
        late=late,
        answered=acks.answered,
        reading=await gauge.read(),
        acks=len(latencies),
        failed=failed,
        ack_p50_ms=quantiles[49],
        ack_p99_ms=quantiles[98],
    )


async def sample_every(
    seconds: float, gauge: Gauge, acks: Acks, start: float, samples: list[Sample]
) -> None:
    """A sample at start + n·seconds, n = 1, 2, …, until cancelled."""
    n = 1
    while True:
        await asyncio.sleep(max(0.0, start + n * seconds - time.monotonic()))
        samples.append(await take_sample(gauge, acks, start, n * seconds))
        print(line(samples[-1]), flush=True)
        n += 1


# --- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """Update k's request built when the pacer asks for it: 600,000 built in advance would
    hold ~0.5 GB."""

    request: Callable[[int], bytes]
    count: int

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, k: int, /) -> bytes:
        return self.request(k)


async def drained(gauge: Gauge, timeout: float) -> float | None:
    """Seconds until the backlog is empty, or None if it is not within `timeout`."""
    began = time.monotonic()
    while (await gauge.read()).backlog > 0:
        if time.monotonic() - began > timeout:
            return None
        await asyncio.sleep(0.25)
    return time.monotonic() - began


async def run(args: argparse.Namespace, env: dict[str, str], workdir: Path) -> None:
    gauge = gauge_of(env)
    async with e2e.served(env, workdir) as relay:
        request = relay.request(args.chats)
        # One update through the intake and the worker first: a broken setup fails here.
        probe = await e2e.pace(relay.app_port, [request(-1)], rate=1, connections=1)
        if probe.status != [200] or await drained(gauge, 30) is None:
            log = (workdir / "serve.log").read_text()[-3000:]
            raise SystemExit(f"the probe update was not processed; serve's log:\n{log}")

        app = f"http://127.0.0.1:{relay.app_port}"
        sqlite = args.db == "sqlite"
        holds_before = await asyncio.to_thread(write_lock_holds, app) if sqlite else None
        cpu_before = await asyncio.to_thread(process_cpu_seconds, app)
        acks, samples = Acks(), list[Sample]()
        start = time.monotonic()
        sampler = asyncio.create_task(sample_every(args.sample, gauge, acks, start, samples))
        paced = await e2e.pace(
            relay.app_port,
            Stream(request, round(args.rate * args.duration)),
            rate=args.rate,
            connections=args.connections,
            answered=acks,
        )
        sampler.cancel()
        cpu = await asyncio.to_thread(process_cpu_seconds, app) - cpu_before
        print(
            f"  serve's CPU (its intake writer's not counted): {cpu:.1f} s, "
            f"{cpu / len(paced.sent) * 1e6:,.0f} µs per update",
            flush=True,
        )
        if holds_before is not None:
            holds = (await asyncio.to_thread(write_lock_holds, app)).since(holds_before)
            print(f"  SQLite's write lock: {holds.describe(paced.seconds)}", flush=True)
        samples.append(await take_sample(gauge, acks, start, time.monotonic() - start))
        print(line(samples[-1]) + "  (end)", flush=True)
        drain = await drained(gauge, DRAIN_SECONDS)
    if isinstance(gauge, PostgresGauge):
        await gauge.engine.dispose()
    report(args, paced, samples, drain)


def report(
    args: argparse.Namespace, paced: e2e.Paced, samples: list[Sample], drain: float | None
) -> None:
    total = len(paced.sent)
    ok = [k for k in range(total) if 200 <= paced.status[k] < 300]
    ack = e2e.percentiles([(paced.acked[k] - paced.sent[k]) * 1000 for k in ok])
    late = [s for s in paced.lateness if s > e2e.LATE_SECONDS]
    print(
        f"  pacer: {total:,} updates in {paced.seconds:.1f} s "
        f"({total / paced.seconds:,.0f}/s of {args.rate:g}/s asked); "
        + (
            f"kept the schedule (latest {max(paced.lateness) * 1000:.1f} ms after its slot)"
            if not late
            else f"FELL BEHIND: {len(late):,} sent > {e2e.LATE_SECONDS * 1000:g} ms after their "
            f"slot, the latest {max(late) * 1000:,.0f} ms"
        )
        + f"; at most {paced.busiest} of {args.connections} connections awaited an answer at once"
    )
    print(
        f"  intake: {len(ok):,} of {total:,} acked 2xx ({total - len(ok):,} failed or non-2xx); "
        f"ack p50 {ack[49]:.1f} ms, p99 {ack[98]:.1f} ms"
    )
    half_time = args.duration / 2
    first = [s for s in samples if s.at <= half_time]
    last = [s for s in samples if s.at > half_time]
    if not first or not last:
        print("  too few samples to judge the halves: lower --sample or raise --duration")
        return
    half, end = first[-1].reading, samples[-1].reading
    growth = (end.database_bytes - half.database_bytes) / half.database_bytes * 100
    print(
        f"  database: {megabytes(half.database_bytes)} at {first[-1].at:.0f} s (half), "
        f"{megabytes(end.database_bytes)} at the end: {growth:+.1f} % over the last half; "
        f"peak {megabytes(max(s.reading.database_bytes for s in samples))}; "
        f"{end.updates:,} rows in updates at the end ({len(ok):,} acked)"
    )
    first_max = max(s.reading.backlog for s in first)
    last_max = max(s.reading.backlog for s in last)
    print(
        f"  backlog: max {first_max:,} in the first half, {last_max:,} in the last, "
        f"{end.backlog:,} at the end; "
        + (
            f"empty {drain:.1f} s after the last update"
            if drain is not None
            else f"NOT EMPTY {DRAIN_SECONDS:g} s after the last update"
        )
    )
    small = TARGET_BACKLOG_SECONDS * args.rate
    bounded = (last_max <= first_max or last_max < small) and end.backlog < small
    print(
        f"  targets: last-half growth ≤ {TARGET_GROWTH_PERCENT:g} % "
        f"{pass_fail(growth <= TARGET_GROWTH_PERCENT)}; backlog bounded (last-half max ≤ "
        f"first-half max or < {TARGET_BACKLOG_SECONDS:g} s of updates, and < "
        f"{TARGET_BACKLOG_SECONDS:g} s of updates at the end) "
        f"{pass_fail(bounded)}; intake p99 ≤ {TARGET_ACK_P99_MS:g} ms "
        f"{pass_fail(ack[98] <= TARGET_ACK_P99_MS)}; paced at {args.rate:g}/s "
        f"{pass_fail(not late)}"
    )


def pass_fail(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rate", type=float, default=1000, help="updates/s")
    parser.add_argument(
        "--chats", type=int, default=1000, help="private chats the updates come from"
    )
    parser.add_argument("--duration", type=float, default=600, help="seconds of updates")
    parser.add_argument("--sample", type=float, default=10, help="seconds between samples")
    parser.add_argument(
        "--retain-seconds", type=float, default=60, help="age of finished rows kept, every kind"
    )
    parser.add_argument(
        "--retention-interval", type=float, default=10, help="seconds between pruning rounds"
    )
    parser.add_argument(
        "--connections", type=int, default=64, help="keep-alive connections to the intake"
    )
    args = parser.parse_args()
    if min(args.rate, args.duration, args.sample, args.retain_seconds) <= 0:
        parser.error("--rate, --duration, --sample and --retain-seconds must be positive")
    if args.chats < 1 or args.connections < 1 or args.retention_interval <= 0:
        parser.error("--chats, --connections and --retention-interval must be positive")
    print(
        f"{args.db}: {args.rate:g} updates/s over {args.chats:,} chats for {args.duration:g} s "
        f"into `tgrelay serve`, finished rows kept {args.retain_seconds:g} s, pruned every "
        f"{args.retention_interval:g} s ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)"
    )
    with e2e.environment(args.db, POSTGRES_DATABASE) as (env, workdir):
        retain_days = str(args.retain_seconds / DAY_SECONDS)
        for kind in ("UPDATES", "JOBS", "EVENTS", "AUDIT"):
            env[f"TGRELAY_RETAIN_{kind}_DAYS"] = retain_days
        env["TGRELAY_RETENTION_INTERVAL_SECONDS"] = str(args.retention_interval)
        uvloop.run(run(args, env, workdir))


if __name__ == "__main__":
    main()
