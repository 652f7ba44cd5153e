"""Benchmark processing: how fast the default `serve` works off a backlog of stored updates.

Issue 16's goals (SQLite, 2 cores): a backlog of 30,000 message updates is processed at
≥ 5,000 updates/s spread over 1,000 chats and ≥ 2,000/s from one chat (a chat's updates run
in order, one at a time); with an endpoint subscribed to message.received, the events are
emitted at the same rate, and the deliveries follow at the webhook lane's own rate.

1. The backlog: the emulator and `tgrelay serve --no-worker` (webhook mode) start, a bot is
   connected, and N private text messages (tests/fixtures/telegram/update_private_text.json,
   each with its own update_id, chat and sender) are POSTed to `/telegram/{bot_id}` by
   --clients concurrent requests; the server stops, and the database must hold N updates and
   N pending process_update jobs. With --endpoint, a fast receiver (bench/deliveries.py's)
   runs and an endpoint subscribed to message.received is created first.
2. The run: `tgrelay serve` as the README starts it (worker in the process) opens the same
   database. From when /healthz answers, the database is read every 100 ms (a read-only
   connection on SQLite) for the done process_update jobs, the events written and, with
   --endpoint, the delivered deliveries. A rate is N / (the read that saw all − the read that
   saw the first); the rows' own timestamps (finished_at, created_at, delivered_at) give a
   second figure; the time to the first includes the main lane's start (aiogram's load).
   The CPU is serve's and its children's (not PostgreSQL's). A dead job, no progress for
   --stall seconds, --timeout, or other than N message.received events (delivered, with
   --endpoint, and all seen by the receiver) fails the run.

Not part of the test suite. --profile needs py-spy (`pip install py-spy`).

    uv run python bench/process.py                          # SQLite, 30,000 updates, 1,000 chats
    uv run python bench/process.py --chats 1                # the one-chat goal
    uv run python bench/process.py --endpoint               # events delivered to a receiver
    uv run python bench/process.py --db postgres            # PostgreSQL on 127.0.0.1:5432
    uv run python bench/process.py --updates 3000 --profile /tmp/process.svg
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import uvloop
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import deliveries
from servers import (
    cpu_seconds,
    create_workspace,
    free_port,
    process,
    profiled,
    reader_url,
    recreate_postgres_database,
    serve_env,
    wait_http,
    write_lock_holds,
)
from tgrelay.db import tables

HERE = Path(__file__).parent
TGRELAY = [str(Path(sys.executable).parent / "tgrelay")]
TEMPLATE = orjson.loads(
    (HERE.parent / "tests/fixtures/telegram/update_private_text.json").read_bytes()
)
POSTGRES_DATABASE = "tgrelay_bench_process"
PROCESS_UPDATE = "process_update"
MESSAGE_RECEIVED = "message.received"
POLL_SECONDS = 0.1
FIRST_CHAT = 7_000_000_000  # the backlog's private chats: each the id of its sender
# Issue 16, point 2, on SQLite: updates/s over 1,000 chats, and from one chat.
TARGETS = {1000: 5000.0, 1: 2000.0}


def update(n: int, chats: int) -> bytes:
    """The n-th update of the backlog: a private text message in chat n % chats."""
    chat_id = FIRST_CHAT + n % chats
    body: dict[str, Any] = orjson.loads(orjson.dumps(TEMPLATE))
    message = body["message"]
    body["update_id"] = n + 1
    message["message_id"] = n // chats + 1
    message["from"]["id"] = message["chat"]["id"] = chat_id
    message["text"] = f"order #{n} is ready"
    return orjson.dumps(body)


async def post_backlog(
    url: str, path: str, secret: str, *, count: int, chats: int, clients: int
) -> float:
    """POST `count` updates with `clients` requests in flight; the seconds it took.

    aiohttp rather than httpx: httpx spent ~5 ms of CPU a request here with 32 in flight,
    which made the client, not the intake, the slow side."""
    headers = {"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": secret}
    numbers = iter(range(count))
    failures: list[str] = []

    async def client(http: aiohttp.ClientSession) -> None:
        for n in numbers:  # shared: each number goes to one client
            async with http.post(path, data=update(n, chats), headers=headers) as answer:
                if answer.status != 200:
                    failures.append(f"update {n + 1}: {answer.status} {await answer.text()}")

    started = time.monotonic()
    async with aiohttp.ClientSession(
        base_url=url, connector=aiohttp.TCPConnector(limit=clients)
    ) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    took = time.monotonic() - started
    if failures:
        raise SystemExit(f"{len(failures)} updates refused, the first: {failures[0]}")
    return took


@dataclass(frozen=True, kw_only=True)
class Counts:
    """What one read of the database found."""

    jobs: dict[str, int]  # process_update jobs by state
    events: int  # every events row (see `watch` for why not only message.received)
    delivered: int  # deliveries delivered to the bench's endpoint


async def read_counts(engine: AsyncEngine, endpoint_id: str | None) -> Counts:
    jobs, events, deliveries_ = tables.jobs, tables.events, tables.deliveries
    async with engine.connect() as conn:
        states = await conn.execute(
            select(jobs.c.state, func.count())
            .where(jobs.c.kind == PROCESS_UPDATE)
            .group_by(jobs.c.state)
        )
        # count(*) of all events walks an index; a count by type would read every body.
        event_count = await conn.scalar(select(func.count()).select_from(events))
        delivered = (
            await conn.scalar(
                select(func.count())
                .select_from(deliveries_)
                .where(
                    deliveries_.c.endpoint_id == endpoint_id,
                    deliveries_.c.status == "delivered",
                )
            )
            if endpoint_id is not None
            else 0
        )
    return Counts(
        jobs={str(state): int(n) for state, n in states},
        events=int(event_count or 0),
        delivered=int(delivered or 0),
    )


async def stored_updates(engine: AsyncEngine, bot_id: int) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count())
            .select_from(tables.updates)
            .where(tables.updates.c.bot_id == bot_id)
        )
    return int(count or 0)


@dataclass(frozen=True, kw_only=True)
class Span:
    """When one count was first seen above zero and at its total (time.time() of the reads),
    and the first and last of the rows' own timestamps."""

    first_seen: float
    all_seen: float
    first_stamp: float
    last_stamp: float


async def row_stamps(engine: AsyncEngine, endpoint_id: str | None) -> list[tuple[float, float]]:
    """(first, last) finished_at of the done process_update jobs, created_at of the
    message.received events and, with an endpoint, delivered_at of its deliveries."""
    jobs, events, deliveries_ = tables.jobs, tables.events, tables.deliveries
    queries = [
        select(func.min(jobs.c.finished_at), func.max(jobs.c.finished_at)).where(
            jobs.c.kind == PROCESS_UPDATE, jobs.c.state == "done"
        ),
        select(func.min(events.c.created_at), func.max(events.c.created_at)).where(
            events.c.type == MESSAGE_RECEIVED
        ),
    ]
    if endpoint_id is not None:
        queries.append(
            select(
                func.min(deliveries_.c.delivered_at), func.max(deliveries_.c.delivered_at)
            ).where(deliveries_.c.endpoint_id == endpoint_id)
        )
    stamps = []
    async with engine.connect() as conn:
        for query in queries:
            first, last = (await conn.execute(query)).one()
            stamps.append((_epoch(first), _epoch(last)))
    return stamps


def _epoch(value: datetime | str | None) -> float:
    """A min()/max() of a Timestamp column: SQLite returns its text, PostgreSQL a datetime."""
    if value is None:
        return float("nan")
    if isinstance(value, str):
        value = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.timestamp()


async def watch(
    engine: AsyncEngine,
    *,
    count: int,
    events_before: int,
    endpoint_id: str | None,
    stall: float,
    timeout: float,
) -> list[Span]:
    """Read the counts every POLL_SECONDS until all `count` jobs are done, their events
    written and (with an endpoint) delivered; each count's Span.

    Events are counted all together, less the ones written before the run (bot.connected):
    a count by type would read every event's body at each look. Only the backlog's
    message.received events are expected meanwhile, and a count by type checks it at the end.
    """
    tracked = 3 if endpoint_id is not None else 2  # jobs done, events, deliveries delivered
    first_seen: list[float | None] = [None] * tracked
    all_seen: list[float | None] = [None] * tracked
    started = progressed = time.monotonic()
    last: tuple[int, ...] = ()
    while True:
        now = time.time()
        counts = await read_counts(engine, endpoint_id)
        progress: tuple[int, ...] = (
            counts.jobs.get("done", 0),
            counts.events - events_before,
            counts.delivered,
        )[:tracked]
        for i, seen in enumerate(progress):
            if seen > 0 and first_seen[i] is None:
                first_seen[i] = now
            if seen >= count and all_seen[i] is None:
                all_seen[i] = now
        where = f"{progress[0]:,} of {count:,} jobs done {counts.jobs}, {progress[1]:,} events" + (
            f", {progress[2]:,} delivered" if endpoint_id is not None else ""
        )
        if counts.jobs.get("dead", 0):
            raise SystemExit(f"process_update jobs died: {where}")
        if None not in all_seen:
            break
        if progress != last:
            last, progressed = progress, time.monotonic()
        elif time.monotonic() - progressed > stall:
            raise SystemExit(f"no progress for {stall:g} s: {where}")
        if time.monotonic() - started > timeout:
            raise SystemExit(f"not all done within {timeout:g} s: {where}")
        await asyncio.sleep(max(0.0, now + POLL_SECONDS - time.time()))
    if progress[1] != count or (await message_events(engine)) != count:
        raise SystemExit(f"expected {count:,} {MESSAGE_RECEIVED} events and no other: {where}")
    stamps = await row_stamps(engine, endpoint_id)
    return [
        Span(first_seen=first, all_seen=full, first_stamp=stamp[0], last_stamp=stamp[1])
        for first, full, stamp in zip(first_seen, all_seen, stamps, strict=True)
        if first is not None and full is not None
    ]


async def message_events(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count())
            .select_from(tables.events)
            .where(tables.events.c.type == MESSAGE_RECEIVED)
        )
    return int(count or 0)


@dataclass(frozen=True, kw_only=True)
class Result:
    posted_seconds: float
    healthz_seconds: float  # from spawning `serve` to /healthz answering
    healthz_at: float  # time.time() then
    spans: list[Span]  # jobs done, events, deliveries (with an endpoint)
    cpu: float  # seconds of serve and its children, from /healthz to the end
    lock_seconds: float | None  # SQLite's write lock held by serve's transactions (SQLite only)


def bench_env(
    workdir: Path, database_url: str, emulator_port: int, app_port: int
) -> dict[str, str]:
    return serve_env(
        workdir / "data",
        emulator_port=emulator_port,
        app_port=app_port,
        database_url=database_url,
        webhooks_to_loopback=True,
    )


@contextmanager
def receiver(enabled: bool, workdir: Path, env: dict[str, str]) -> Iterator[str | None]:
    """bench/deliveries.py's fast receiver in its own process (with --endpoint); its URL."""
    if not enabled:
        yield None
        return
    port = free_port()
    command = [sys.executable, __file__, "--serve-receiver", str(port)]
    with process(command, env, workdir / "receiver.log"):
        wait_http(f"http://127.0.0.1:{port}/_count", timeout=30)
        yield f"http://127.0.0.1:{port}"


def run(args: argparse.Namespace, workdir: Path, database_url: str) -> Result:
    emulator_port, app_port = free_port(), free_port()
    env = bench_env(workdir, database_url, emulator_port, app_port)
    (workdir / "data").mkdir(parents=True, exist_ok=True)
    app = f"http://127.0.0.1:{app_port}"
    emulator = [*TGRELAY, "emulator", "--port", str(emulator_port)]
    with (
        process(emulator, env, workdir / "emulator.log"),
        receiver(args.endpoint, workdir, env) as hook,
    ):
        wait_http(f"http://127.0.0.1:{emulator_port}/_emulator/bots/1")
        api_key = create_workspace(TGRELAY, env)
        auth = {"Authorization": f"Bearer {api_key}"}
        bot = httpx.post(
            f"http://127.0.0.1:{emulator_port}/_emulator/bots", json={"username": "bench_bot"}
        ).json()
        with process([*TGRELAY, "serve", "--no-worker"], env, workdir / "intake.log"):
            wait_http(f"{app}/healthz")
            httpx.post(
                f"{app}/v1/bots", json={"token": bot["token"]}, headers=auth, timeout=30
            ).raise_for_status()
            endpoint_id = None
            if hook is not None:
                created = httpx.post(
                    f"{app}/v1/endpoints",
                    json={"url": hook + deliveries.HOOK_PATH, "event_types": [MESSAGE_RECEIVED]},
                    headers=auth,
                    timeout=30,
                )
                created.raise_for_status()
                endpoint_id = created.json()["id"]
            webhook = httpx.get(
                f"http://127.0.0.1:{emulator_port}/_emulator/bots/{bot['id']}"
            ).json()
            posted = asyncio.run(
                post_backlog(
                    app,
                    f"/telegram/{bot['id']}",
                    webhook["webhook"]["secret_token"],
                    count=args.updates,
                    chats=args.chats,
                    clients=args.clients,
                )
            )
        result = asyncio.run(
            measure(
                args,
                env,
                database_url,
                app,
                workdir,
                bot_id=bot["id"],
                endpoint_id=endpoint_id,
                posted=posted,
            )
        )
        if hook is not None and (arrived := httpx.get(f"{hook}/_count").json()) < args.updates:
            raise SystemExit(f"the receiver saw {arrived:,} of {args.updates:,} deliveries")
        return result


async def measure(
    args: argparse.Namespace,
    env: dict[str, str],
    database_url: str,
    app: str,
    workdir: Path,
    *,
    bot_id: int,
    endpoint_id: str | None,
    posted: float,
) -> Result:
    """Check the backlog, then run `serve` until it is worked off."""
    engine = create_async_engine(reader_url(database_url))
    try:
        stored = await stored_updates(engine, bot_id)
        before = await read_counts(engine, endpoint_id)
        if stored != args.updates or before.jobs != {"pending": args.updates}:
            raise SystemExit(
                f"the backlog is not {args.updates:,} updates with a pending job each: "
                f"{stored:,} updates, process_update jobs {before.jobs}"
            )
        spawned = time.monotonic()
        with process([*TGRELAY, "serve"], env, workdir / "serve.log") as serve:
            await asyncio.to_thread(wait_http, f"{app}/healthz")
            healthz_at, healthz_seconds = time.time(), time.monotonic() - spawned
            cpu_before = cpu_seconds(serve.pid)
            with profiled(serve.pid, args.profile, subprocesses=True):
                spans = await watch(
                    engine,
                    count=args.updates,
                    events_before=before.events,
                    endpoint_id=endpoint_id,
                    stall=args.stall,
                    timeout=args.timeout,
                )
            cpu_after = cpu_seconds(serve.pid)
            lock = (
                (await asyncio.to_thread(write_lock_holds, app)).seconds
                if args.db == "sqlite"
                else None
            )
    finally:
        await engine.dispose()
    return Result(
        posted_seconds=posted,
        healthz_seconds=healthz_seconds,
        healthz_at=healthz_at,
        spans=spans,
        cpu=sum(cpu_after.values()) - sum(cpu_before.values()),
        # Every writer of serve's but the intake's writer child: the workers, the lane, the API.
        lock_seconds=(
            None
            if lock is None
            else sum(seconds for writer, seconds in lock.items() if writer != "intake")
        ),
    )


def report(args: argparse.Namespace, result: Result) -> None:
    n = args.updates
    print(
        f"  backlog: {n:,} updates POSTed in {result.posted_seconds:.1f} s "
        f"({n / result.posted_seconds:,.0f}/s, {args.clients} clients); "
        f"serve answered /healthz {result.healthz_seconds:.2f} s after its start"
    )
    print(
        f"  {'':22} {'first':>8} {'all':>8}  {'first→all':>10} {'/healthz→all':>13} "
        f"{'row timestamps':>15}"
    )
    names = ["jobs done", f"{MESSAGE_RECEIVED} events", "deliveries delivered"]
    for name, span in zip(names, result.spans, strict=False):
        first = span.first_seen - result.healthz_at
        full = span.all_seen - result.healthz_at
        window = span.all_seen - span.first_seen
        stamped = span.last_stamp - span.first_stamp
        print(
            f"  {name:22} {first:7.2f}s {full:7.2f}s  {_rate(n, window):>8}/s "
            f"{_rate(n, full):>11}/s {_rate(n, stamped):>13}/s"
        )
    processed = result.spans[0]
    print(
        f"  CPU from /healthz to the end (serve and its children): {result.cpu:.1f} s = "
        f"{result.cpu / n * 1e6:,.0f} µs per update, "
        f"{result.cpu / (processed.all_seen - result.healthz_at):.0%} of a core"
    )
    if result.lock_seconds is not None:
        print(
            f"  SQLite write lock held by serve's transactions (worker and lane): "
            f"{result.lock_seconds:.1f} s = {result.lock_seconds / n * 1e6:,.0f} µs per update"
        )
    target = TARGETS.get(args.chats)
    if target is None or args.db != "sqlite":
        return
    rate = n / (processed.all_seen - processed.first_seen)
    verdict = "met" if rate >= target else "NOT MET"
    print(
        f"  target ≥ {target:,.0f} updates/s over {args.chats:,} chat(s) on SQLite: "
        f"{rate:,.0f}/s, {verdict} ({rate / target:.0%})"
    )


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}" if seconds > 0 else "-"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--updates", type=int, default=30_000, help="the backlog's size")
    parser.add_argument("--chats", type=int, default=1000, help="chats the backlog is spread over")
    parser.add_argument("--clients", type=int, default=32, help="requests in flight, phase 1")
    parser.add_argument(
        "--endpoint", action="store_true", help="subscribe a fast receiver to message.received"
    )
    parser.add_argument("--stall", type=float, default=60, help="seconds without progress: fail")
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds phase 2 may take in all"
    )
    parser.add_argument("--profile", type=Path, help="py-spy of serve (and its children)")
    parser.add_argument("--serve-receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver is not None:
        uvloop.run(deliveries.serve_receiver(args.serve_receiver))
        return
    if args.updates < 1 or args.chats < 1 or args.clients < 1:
        parser.error("--updates, --chats and --clients must be positive")
    print(
        f"{args.db}: {args.updates:,} updates over {args.chats:,} chat(s), "
        f"{'an endpoint subscribed' if args.endpoint else 'no endpoint'} "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)"
    )
    with tempfile.TemporaryDirectory(prefix="tgrelay-bench-") as tmp:
        workdir = Path(tmp)
        if args.db == "postgres":
            database_url = asyncio.run(recreate_postgres_database(POSTGRES_DATABASE))
        else:
            database_url = f"sqlite:///{workdir / 'data' / 'tgrelay.db'}"
        try:
            result = run(args, workdir, database_url)
        except BaseException:
            for log in sorted(workdir.glob("*.log")):
                shutil.copy(log, Path(tempfile.gettempdir()) / f"tgrelay-bench-process-{log.name}")
            print(f"logs kept as {tempfile.gettempdir()}/tgrelay-bench-process-*.log")
            raise
        finally:
            if args.db == "postgres":
                asyncio.run(recreate_postgres_database(POSTGRES_DATABASE, drop_only=True))
    report(args, result)


if __name__ == "__main__":
    main()
