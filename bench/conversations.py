"""Benchmark conversations: many users walk the shipped billing-address flow at once.

Starts the emulator, the default `tgrelay serve` (webhooks, worker in the process, SQLite
unless --db postgres) and examples/flow_app.py (the team's app: it validates and saves the
addresses the flow's two `call` steps post) as subprocesses on loopback. Registers the app's
/events as an endpoint (its secret signs the calls), posts examples/flows/billing_address.json
through `POST /v1/flows` (its URLs pointed at the app's port) and connects a bot. Then N users
start the flow at --rate a second (`/billing`), and each answers every question --think
seconds after its reply arrived (street, postal code, city, the country button, Save): 5 steps
after the start, two of which wait for the app (country → validate → confirm; Save → save →
"Saved."). With the defaults all 1,000 conversations are live at once for about a minute.

Step latency is stored → sent: the answer's `updates.received_at` (tgrelay's clock, read from
the database after the run) to the bot's reply as the emulator recorded it (its monotonic
clock, mapped to wall time at the PUT /_emulator/flood that starts its send log; that
request's round trip bounds the error). At the end it checks that every chat got exactly the
six expected messages, that `GET /v1/conversations?status=completed` lists all N and that the
app saved N addresses. The serve process's RSS (its writer child included) is sampled every
second from /proc; "memory flat" compares the first and the last minute of the run.

    .venv/bin/python bench/conversations.py                    # 1,000 users, 3.33 starts/s, think 60 s
    .venv/bin/python bench/conversations.py --conversations 200 --think 0
    .venv/bin/python bench/conversations.py --db postgres

Telegram's limits are lifted on both sides (30 sends a second per bot would bind far below
1,000 conversations); the figure is tgrelay's own latency. Not part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from alerts import call, until
from servers import (
    cpu_seconds,
    create_workspace,
    free_port,
    process,
    recreate_postgres_database,
    serve_env,
    wait_http,
)
from tgrelay.db import tables
from tgrelay.settings import async_database_url

ROOT = Path(__file__).parents[1]
FLOW = ROOT / "examples" / "flows" / "billing_address.json"
APP = ROOT / "examples" / "flow_app.py"
SHIPPED_ORIGIN = "http://127.0.0.1:8765"
POSTGRES_DATABASE = "tgrelay_bench_conversations"
FIRST_USER_ID = 500_001
UNBOUND = [100_000, 1.0]
STEP_TIMEOUT_SECONDS = 120.0
RUN_TIMEOUT_SECONDS = 1800.0
# Six messages a conversation: 3.33 starts a second are 20 answers a second, about what one
# SQLite serve took with its asks' p99 near 200 ms on the shared 2-core machine (2026-12-06);
# users who think 60 s keep a conversation 5 minutes, as long as the starts take: all 1,000
# are live at once in the middle of the run.
DEFAULT_RATE = 3.33
DEFAULT_THINK = 60.0
SEND_LOG_LENGTH = 10_000  # the emulator's log of send times (GET /_emulator/flood's sent_at)
POLL_SECONDS = 0.1  # how often the users look for their replies (GET /_emulator/flood)
REQUESTS_AT_ONCE = 32  # the users' requests to the emulator in flight
# What moved the conversation before each of the bot's six messages, in order.
STEPS = ("/billing", "street", "zip", "city", "country → validate", "Save → save")


def user(index: int) -> dict[str, Any]:
    return {
        "id": FIRST_USER_ID + index,
        "is_bot": False,
        "first_name": f"User{index}",
        "language_code": "en",
    }


def expected_texts(index: int) -> list[str]:
    street = f"{index} Bench Street"
    formatted = f"{street}\n10115 Berlin\nGermany"
    return [
        f"Hi User{index}! What is the street and house number of your billing address?",
        "The postal code?",
        "The city?",
        "And the country?",
        f"Save this billing address?\n\n{formatted}",
        f"Saved. Thank you, User{index}!",
    ]


@dataclass(frozen=True, kw_only=True)
class Options:
    conversations: int
    rate: float  # conversations started a second
    think: float  # seconds a user takes to answer once the reply arrived
    db: str  # sqlite | postgres


@dataclass(frozen=True, kw_only=True)
class Result:
    duration: float  # from the first /billing until the last "Saved."
    peak_live: int  # conversations started and not yet answered "Saved.", at most at once
    steps: int  # latencies measured
    latency: dict[str, float]  # all steps: p50, p90, p99, max (seconds)
    by_step: dict[str, dict[str, float]]
    wrong_chats: int  # chats whose messages are not exactly the six expected
    completed: int  # GET /v1/conversations?status=completed
    saved: int  # addresses the app saved
    rss_first_minute: float  # MB, mean
    rss_last_minute: float
    rss_peak: float
    rss_by_minute: list[float]  # MB, the mean of each minute of the run
    clock_error: float  # half the round trip of the PUT that maps the emulator's clock
    cpu_per_step: float  # serve's CPU seconds (its writer child's included) per step


# --- memory ---------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the SQLite writer), in MB."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    total_kb = 0
    for each in [pid, *map(int, children)]:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


class Sampler:
    """RSS every second on a thread, as (monotonic seconds, MB)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.monotonic(), rss_mb(self.pid)))
            except (FileNotFoundError, ProcessLookupError):
                return
            self._stop.wait(1.0)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> list[float]:
        return [mb for at, mb in self.samples if start <= at <= end]


# --- the users ------------------------------------------------------------------------------


class Users:
    """N users, each answering its bot's k-th message with its k-th answer."""

    def __init__(self, emulator: httpx.AsyncClient, bot_id: int, options: Options) -> None:
        self.emulator, self.bot_id, self.options = emulator, bot_id, options
        self.seen = [0] * options.conversations  # the bot's messages each user has seen
        self.started: list[float | None] = [None] * options.conversations
        self.finished: list[float | None] = [None] * options.conversations
        self.gate = asyncio.Semaphore(REQUESTS_AT_ONCE)
        self.tasks: set[asyncio.Task[None]] = set()
        self.failures: list[BaseException] = []

    async def _write(self, index: int, text: str) -> None:
        async with self.gate:
            await call(
                self.emulator,
                "POST",
                "/_emulator/updates",
                json={"bot_id": self.bot_id, "from": user(index), "text": text},
            )

    async def _press(self, index: int, data: str) -> None:
        chat_id = user(index)["id"]
        async with self.gate:
            messages = await call(
                self.emulator,
                "GET",
                f"/_emulator/chats/{chat_id}/messages",
                params={"bot_id": self.bot_id},
            )
            await call(
                self.emulator,
                "POST",
                f"/_emulator/chats/{chat_id}/messages/{messages[-1]['message_id']}/press",
                json={"bot_id": self.bot_id, "from": user(index), "data": data},
            )

    async def _answer(self, index: int, seen: int) -> None:
        await asyncio.sleep(self.options.think)
        if seen == 1:
            await self._write(index, f"{index} Bench Street")
        elif seen == 2:
            await self._write(index, "10115")
        elif seen == 3:
            await self._write(index, "Berlin")
        elif seen == 4:
            await self._press(index, "cv:country:DE")
        elif seen == 5:
            await self._press(index, "cv:confirm:yes")

    async def start_all(self) -> None:
        """`/billing` from user i at i / rate."""
        start = time.monotonic()
        for index in range(self.options.conversations):
            await asyncio.sleep(max(0.0, start + index / self.options.rate - time.monotonic()))
            self.started[index] = time.monotonic()
            self._spawn(self._write(index, "/billing"))

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.failures.append(task.exception())  # type: ignore[arg-type]

    async def watch(self) -> None:
        """Look at every chat's count of the bot's messages; answer each new one once."""
        while True:
            sent = (await call(self.emulator, "GET", "/_emulator/flood"))["sent_by_chat"]
            now = time.monotonic()
            for index in range(self.options.conversations):
                count = sent.get(str(user(index)["id"]), 0)
                if count > self.seen[index]:
                    self.seen[index] = count
                    if count >= len(STEPS):
                        self.finished[index] = self.finished[index] or now
                    else:
                        self._spawn(self._answer(index, count))
            if self.failures:
                raise self.failures[0]
            if all(f is not None for f in self.finished):
                return
            await asyncio.sleep(POLL_SECONDS)

    def peak_live(self) -> int:
        moments = sorted(
            [(s, 1) for s in self.started if s is not None]
            + [(f, -1) for f in self.finished if f is not None]
        )
        live = peak = 0
        for _, change in moments:
            live += change
            peak = max(peak, live)
        return peak


# --- the figures ----------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": ordered[-1]}


async def stored_at(database_url: str, bot_id: int) -> dict[int, list[float]]:
    """Each chat's updates' received_at (unix seconds), oldest first."""
    engine = create_async_engine(async_database_url(database_url))
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(tables.updates.c.chat_id, tables.updates.c.received_at)
                    .where(tables.updates.c.bot_id == bot_id)
                    .order_by(tables.updates.c.received_at, tables.updates.c.id)
                )
            ).all()
    finally:
        await engine.dispose()
    by_chat: dict[int, list[float]] = {}
    for chat_id, received_at in rows:
        at: datetime = received_at
        by_chat.setdefault(int(chat_id), []).append(at.timestamp())
    return by_chat


async def completed_count(api: httpx.AsyncClient) -> int:
    count, params = 0, {"status": "completed", "limit": 200}
    while True:
        page = await call(api, "GET", "/v1/conversations", params=params)
        count += len(page["conversations"])
        if page["next_before"] is None:
            return count
        params["before"] = page["next_before"]


# --- the run --------------------------------------------------------------------------------


async def drive(
    api: httpx.AsyncClient,
    emulator: httpx.AsyncClient,
    app: httpx.AsyncClient,
    sampler_pid: int,
    database_url: str,
    options: Options,
) -> Result:
    bot = await call(emulator, "POST", "/_emulator/bots", json={"username": "billing_bench_bot"})
    await call(api, "POST", "/v1/bots", json={"token": bot["token"]})
    before = time.time()
    await call(emulator, "PUT", "/_emulator/flood", json={"enabled": False})
    after = time.time()
    log_start, clock_error = (before + after) / 2, (after - before) / 2

    users = Users(emulator, bot["id"], options)
    cpu_before = sum(cpu_seconds(sampler_pid).values())
    with Sampler(sampler_pid) as sampler:
        began = time.monotonic()
        watching = asyncio.create_task(users.watch())
        await users.start_all()
        async with asyncio.timeout(RUN_TIMEOUT_SECONDS):
            await watching
        ended = time.monotonic()
        cpu = sum(cpu_seconds(sampler_pid).values()) - cpu_before
        await asyncio.sleep(1.5)  # one more sample at rest

    flood = await call(emulator, "GET", "/_emulator/flood")
    sent_at: dict[int, list[float]] = {}
    for chat_id, seconds in flood["sent_at"]:
        sent_at.setdefault(int(chat_id), []).append(log_start + seconds)
    stored = await stored_at(database_url, bot["id"])
    every: list[float] = []
    by_step: dict[str, list[float]] = {step: [] for step in STEPS}
    wrong = 0
    for index in range(options.conversations):
        chat_id = user(index)["id"]
        texts = [
            m["text"]
            for m in await call(
                emulator,
                "GET",
                f"/_emulator/chats/{chat_id}/messages",
                params={"bot_id": bot["id"]},
            )
        ]
        if texts != expected_texts(index):
            wrong += 1
            continue
        for step, received, replied in zip(
            STEPS, stored.get(chat_id, []), sent_at.get(chat_id, []), strict=False
        ):
            by_step[step].append(replied - received)
            every.append(replied - received)

    async def all_completed() -> bool:
        return await completed_count(api) >= options.conversations - wrong

    await until(all_completed, "every conversation completed", timeout=STEP_TIMEOUT_SECONDS)
    first = sampler.between(began, began + 60)
    last = sampler.between(ended - 60, ended)
    return Result(
        duration=ended - began,
        peak_live=users.peak_live(),
        steps=len(every),
        latency=summary(every),
        by_step={step: summary(values) for step, values in by_step.items()},
        wrong_chats=wrong,
        completed=await completed_count(api),
        saved=len(await call(app, "GET", "/addresses")),
        rss_first_minute=statistics.fmean(first) if first else 0.0,
        rss_last_minute=statistics.fmean(last) if last else 0.0,
        rss_peak=max((mb for _, mb in sampler.samples), default=0.0),
        rss_by_minute=[
            statistics.fmean(minute)
            for start in range(0, int(ended - began), 60)
            if (minute := sampler.between(began + start, min(began + start + 60, ended)))
        ],
        clock_error=clock_error,
        cpu_per_step=cpu / (options.conversations * len(STEPS)),
    )


@contextmanager
def database(db: str, data_dir: Path) -> Iterator[str]:
    if db != "postgres":
        yield f"sqlite:///{data_dir / 'tgrelay.db'}"
        return
    url = asyncio.run(recreate_postgres_database(POSTGRES_DATABASE))
    try:
        yield url
    finally:
        asyncio.run(recreate_postgres_database(POSTGRES_DATABASE, drop_only=True))


async def prepare(api_url: str, api_key: str, app_port: int) -> str:
    """The app's endpoint (its secret, which signs the calls) and the flow, pointed at it."""
    origin = f"http://127.0.0.1:{app_port}"
    async with httpx.AsyncClient(
        base_url=api_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60
    ) as api:
        endpoint = await call(
            api,
            "POST",
            "/v1/endpoints",
            json={"url": f"{origin}/events", "event_types": ["conversation.*"]},
        )
        document = FLOW.read_text().replace(SHIPPED_ORIGIN, origin)
        await call(
            api,
            "POST",
            "/v1/flows",
            content=document,
            headers={"Content-Type": "application/json"},
        )
    secret: str = endpoint["secret"]
    return secret


def run(options: Options) -> Result:
    with tempfile.TemporaryDirectory(prefix="tgrelay-bench-") as tmp:
        workdir = Path(tmp)
        data_dir = workdir / "data"
        data_dir.mkdir()
        with database(options.db, data_dir) as database_url:
            emulator_port, api_port, app_port = free_port(), free_port(), free_port()
            env = serve_env(
                data_dir,
                emulator_port=emulator_port,
                app_port=api_port,
                database_url=None if options.db == "sqlite" else database_url,
                webhooks_to_loopback=True,
            )
            env["TGRELAY_HEALTH_INTERVAL_SECONDS"] = "3600"
            for limit in ("PER_CHAT", "PER_GROUP", "PER_BOT"):
                env[f"TGRELAY_SEND_LIMIT_{limit}"] = json.dumps(UNBOUND)
            tgrelay = [sys.executable, "-m", "tgrelay"]
            emulator_url = f"http://127.0.0.1:{emulator_port}"
            api_url = f"http://127.0.0.1:{api_port}"
            app_url = f"http://127.0.0.1:{app_port}"
            with process(
                [*tgrelay, "emulator", "--port", str(emulator_port)], env, workdir / "emulator.log"
            ):
                wait_http(f"{emulator_url}/_emulator/flood", timeout=STEP_TIMEOUT_SECONDS)
                api_key = create_workspace(tgrelay, env)
                with process([*tgrelay, "serve"], env, workdir / "serve.log") as serve:
                    wait_http(f"{api_url}/readyz", timeout=STEP_TIMEOUT_SECONDS)
                    secret = asyncio.run(prepare(api_url, api_key, app_port))
                    app_args = [sys.executable, str(APP), "--port", str(app_port)]
                    with process([*app_args, "--secret", secret], env, workdir / "app.log"):
                        wait_http(f"{app_url}/addresses", timeout=STEP_TIMEOUT_SECONDS)
                        return asyncio.run(
                            drive_over_http(
                                api_url,
                                api_key,
                                emulator_url,
                                app_url,
                                serve.pid,
                                database_url,
                                options,
                            )
                        )


async def drive_over_http(
    api_url: str,
    api_key: str,
    emulator_url: str,
    app_url: str,
    serve_pid: int,
    database_url: str,
    options: Options,
) -> Result:
    limits = httpx.Limits(max_connections=REQUESTS_AT_ONCE + 4)
    async with (
        httpx.AsyncClient(
            base_url=api_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=60
        ) as api,
        httpx.AsyncClient(base_url=emulator_url, timeout=60, limits=limits) as emulator,
        httpx.AsyncClient(base_url=app_url, timeout=60) as app,
    ):
        return await drive(api, emulator, app, serve_pid, database_url, options)


def milliseconds(figures: dict[str, float]) -> str:
    return ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in figures.items()) or "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversations", type=int, default=1000)
    parser.add_argument(
        "--rate", type=float, default=DEFAULT_RATE, help="conversations started a second"
    )
    parser.add_argument(
        "--think", type=float, default=DEFAULT_THINK, help="seconds each user takes to answer"
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    if args.conversations < 1 or args.rate <= 0 or args.think < 0:
        parser.error("--conversations ≥ 1, --rate > 0 and --think ≥ 0, please")
    if args.conversations * len(STEPS) > SEND_LOG_LENGTH:
        parser.error(f"the emulator times its last {SEND_LOG_LENGTH:,} sends: 1,666 at most")
    options = Options(
        conversations=args.conversations, rate=args.rate, think=args.think, db=args.db
    )
    result = run(options)
    print(
        f"{args.db:8} {args.conversations} conversations started at {args.rate:g}/s, think "
        f"{args.think:g} s: done in {result.duration:.0f} s, at most {result.peak_live} live at "
        f"once; step latency (stored → sent, {result.steps} steps, clock ±"
        f"{result.clock_error * 1000:.1f} ms) {milliseconds(result.latency)}; "
        f"chats not exactly as expected {result.wrong_chats}; completed {result.completed}; "
        f"addresses saved {result.saved}; serve RSS first minute {result.rss_first_minute:.0f} "
        f"MB, last minute {result.rss_last_minute:.0f} MB, peak {result.rss_peak:.0f} MB; "
        f"serve's CPU {result.cpu_per_step * 1000:.1f} ms a step"
    )
    for step, figures in result.by_step.items():
        print(f"  {step:20} {milliseconds(figures)}")
    print("  serve RSS by minute:", ", ".join(f"{mb:.0f}" for mb in result.rss_by_minute), "MB")


if __name__ == "__main__":
    main()
