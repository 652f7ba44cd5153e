"""Benchmark group alerts: how close tgrelay's sends come to Telegram's limits, without a 429.

Starts the emulator and `tgrelay serve` (webhook mode, worker included) as subprocesses on
loopback, with the SAME send limits on both sides, connects a bot, links M groups in two
phases (private `/start <token>`, then adding the bot to the group), and POSTs N alerts
round-robin over the M connections. Measures from the first POST until the emulator holds all
N alerts, and compares the achieved rate with the most the limits allow:
min(per_bot, M x min(per_chat, per_group)). Not part of the test suite.

    uv run python bench/alerts.py                       # 600 alerts, 60 groups, Telegram's limits
    uv run python bench/alerts.py --alerts 300 --groups 10 --per-chat 1/0.25 --per-group 20/4 \
        --per-bot 100/1
    uv run python bench/alerts.py --db postgres
    uv run python bench/alerts.py --groups 120 --latency 0.1/0.12   # a long, jittery path

Each side has its own process, as with real Telegram: the emulator stamps a send when its
handler runs, so sharing tgrelay's event loop would shift arrivals by tgrelay's own congestion
and its strict sliding windows would refuse sends that left tgrelay correctly spaced.
tgrelay spaces sends with GCRA at a burst of one (each interval stretched by
`send_limit_safety`), so a run measures the steady rate; the first send on each key is free.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

from servers import create_workspace, free_port, process, recreate_postgres_database, wait_http

POSTGRES_DATABASE = "tgrelay_bench_alerts"
# Each group is linked by its own admin. The bot answers each private /start in that admin's
# chat, at most once a second per chat: with one admin for all groups, 120 answers still
# trickled out through the run and took slots of the bot's 30/s from the alerts.
FIRST_ADMIN_ID = 5001
# How long a process's start, linking a group, or the last alert's arrival may take before
# the run gives up.
STEP_TIMEOUT_SECONDS = 30.0
RUN_TIMEOUT_SECONDS = 600.0
# Alerts POSTed at once. A client that fires hundreds at once gets them queued just the same,
# but the API's transactions then crowd the worker's on the one SQLite writer.
POSTERS = 8
# Polling the emulator for arrivals costs it a request each time; this is the run's resolution.
ARRIVAL_POLL_SECONDS = 0.05


@dataclass(frozen=True, kw_only=True)
class Limit:
    """At most `count` sends in any `seconds`, as given on the command line (`COUNT/SECONDS`)."""

    count: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def pair(self) -> list[float]:
        """`[count, seconds]`, as the emulator's flood API and tgrelay's settings take it."""
        return [self.count, self.seconds]

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds:g}"


@dataclass(frozen=True, kw_only=True)
class Limits:
    per_chat: Limit
    per_group: Limit
    per_bot: Limit


@dataclass(frozen=True, kw_only=True)
class Result:
    elapsed: float
    posting: float  # of which the N POSTs took this long
    delivered_while_posting: int  # alerts that had arrived when the last POST was answered
    rejected: int  # 429s the emulator answered during the run
    in_order: bool  # every group got exactly its alerts, in the order they were posted
    sustained: float | None  # the groups' own send rates, summed (None: no group sent twice)


@dataclass(frozen=True, kw_only=True)
class Latency:
    """How long each Bot API request takes to reach the emulator: at random, in between."""

    least: float
    most: float

    def __str__(self) -> str:
        return f"{self.least:g}/{self.most:g} s"


def latency_range(value: str) -> Latency:
    least, _, most = value.partition("/")
    try:
        parsed = Latency(least=float(least), most=float(most or least))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN/MAX seconds, got {value!r}") from None
    if not 0 <= parsed.least <= parsed.most <= 5:
        raise argparse.ArgumentTypeError("a latency needs 0 <= MIN <= MAX <= 5")
    return parsed


def limit(value: str) -> Limit:
    count, _, seconds = value.partition("/")
    try:
        parsed = Limit(count=int(count), seconds=float(seconds))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected COUNT/SECONDS, got {value!r}") from None
    if parsed.count < 1 or not parsed.seconds > 0:
        raise argparse.ArgumentTypeError("a limit needs COUNT >= 1 and SECONDS > 0")
    return parsed


def settling_seconds(limits: Limits) -> float:
    """How long after a group's last send its next may go: its slowest limit's spacing,
    stretched by tgrelay's largest safety margin (5 %)."""
    spacing = max(limit.seconds / limit.count for limit in (limits.per_chat, limits.per_group))
    return spacing * 1.05


def sustained_rate(sent_at: list[tuple[int, float]]) -> float | None:
    """The groups' own send rates, summed: each group's sends after its first, over the time
    from its first to its last, from the emulator's arrival times.

    The steady pace the limiter holds while a group has alerts queued, whatever the groups'
    phases: a window over all groups at once (as this measured before) counted the idle part
    of the 3 s group cycle once the groups' sends were packed one bot interval apart. None
    when no group got two sends.
    """
    by_chat: dict[int, list[float]] = {}
    for chat_id, at in sent_at:
        by_chat.setdefault(chat_id, []).append(at)
    rates = [
        (len(times) - 1) / (max(times) - min(times))
        for times in by_chat.values()
        if len(times) > 1 and max(times) > min(times)
    ]
    return sum(rates) if rates else None


def allowed_rate(groups: int, limits: Limits) -> float:
    """Alerts/s the limits allow over `groups` supergroups, all sent by one bot."""
    return min(limits.per_bot.rate, groups * min(limits.per_chat.rate, limits.per_group.rate))


async def until(
    check: Callable[[], Awaitable[bool]],
    what: str,
    timeout: float = STEP_TIMEOUT_SECONDS,
    every: float = 0.02,
) -> None:
    """Poll the async `check` until it holds; exit with `what` when it never does."""
    try:
        async with asyncio.timeout(timeout):
            while not await check():  # noqa: ASYNC110 - the state polled has no event to wait on
                await asyncio.sleep(every)
    except TimeoutError:
        raise SystemExit(f"timed out after {timeout:g}s waiting for {what}") from None


async def call(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    """One request that must succeed; its JSON body."""
    response = await client.request(method, path, **kwargs)
    if response.is_error:
        raise SystemExit(f"{method} {path} answered {response.status_code}: {response.text}")
    return response.json()


async def sent_to(emulator: httpx.AsyncClient, chat_ids: list[int]) -> int:
    """Messages the emulator accepted in these chats so far."""
    sent = (await call(emulator, "GET", "/_emulator/flood"))["sent_by_chat"]
    return sum(sent.get(str(chat_id), 0) for chat_id in chat_ids)


async def sent_texts(emulator: httpx.AsyncClient, chat_id: int) -> list[str]:
    """What bots sent to this chat, in order."""
    messages = await call(emulator, "GET", f"/_emulator/chats/{chat_id}/messages")
    return [m["text"] for m in messages]


def admin(index: int) -> dict[str, Any]:
    """The Telegram user who links group `index`; their private chat has the same id."""
    user_id = FIRST_ADMIN_ID + index
    return {"id": user_id, "is_bot": False, "first_name": "Admin", "username": f"admin{user_id}"}


async def link_group(
    api: httpx.AsyncClient,
    emulator: httpx.AsyncClient,
    bot_id: int,
    index: int,
    *,
    forum: bool = False,
) -> dict[str, Any]:
    """Both phases of linking a new supergroup; the connection once tgrelay confirms it.
    A `forum` gets the bot as an administrator (a support desk's group)."""
    session = await call(api, "POST", "/v1/connect-sessions", json={"bot_id": bot_id})

    async def state() -> dict[str, Any]:
        found: dict[str, Any] = await call(api, "GET", f"/v1/connect-sessions/{session['id']}")
        return found

    await call(
        emulator,
        "POST",
        "/_emulator/updates",
        json={"bot_id": bot_id, "from": admin(index), "text": f"/start {session['token']}"},
    )

    async def verified() -> bool:
        return bool((await state())["state"] == "waiting_group")

    await until(verified, f"group {index}'s private /start")
    chat = await call(
        emulator,
        "POST",
        "/_emulator/chats",
        json={"type": "supergroup", "title": f"Bench {index}", "is_forum": forum},
    )
    await call(
        emulator,
        "POST",
        f"/_emulator/chats/{chat['id']}/members",
        json={
            "bot_id": bot_id,
            "by": admin(index),
            "status": "administrator" if forum else "member",
        },
    )

    async def connected() -> bool:
        return bool((await state())["state"] == "connected")

    await until(connected, f"group {index}'s connection")
    connection: dict[str, Any] = (await state())["connection"]
    return connection


async def drive(
    api: httpx.AsyncClient,
    emulator: httpx.AsyncClient,
    *,
    alerts: int,
    groups: int,
    limits: Limits,
    latency: Latency,
) -> Result:
    """Connect a bot and the groups, switch flood control on, post the alerts, await them."""
    # Bot API requests take as long to arrive as the path asked for, from the first: a path
    # that only grew long during the run would be one tgrelay had not measured yet.
    await call(
        emulator,
        "PUT",
        "/_emulator/latency",
        json={"min_seconds": latency.least, "max_seconds": latency.most},
    )
    bot = await call(emulator, "POST", "/_emulator/bots", json={"username": "bench_bot"})
    await call(api, "POST", "/v1/bots", json={"token": bot["token"]})
    connections = [await link_group(api, emulator, bot["id"], index) for index in range(groups)]
    chat_ids = [c["chat_id"] for c in connections]

    admin_chats = [admin(index)["id"] for index in range(groups)]

    async def confirmed() -> bool:
        """Every group got its confirmation and every admin the answer to their /start."""
        return await sent_to(emulator, chat_ids + admin_chats) >= 2 * groups

    await until(confirmed, "the groups' confirmations and the admins' answers")
    # A confirmation is a send like any other: the limits space the group's next message from
    # it. Start once the last one no longer holds its group back, so the run measures alerts.
    await asyncio.sleep(settling_seconds(limits))
    # From here on the emulator refuses what Telegram would, with the same limits.
    await call(
        emulator,
        "PUT",
        "/_emulator/flood",
        json={
            "enabled": True,
            "per_chat": limits.per_chat.pair(),
            "per_group": limits.per_group.pair(),
            "per_bot": limits.per_bot.pair(),
        },
    )
    rejected_before = (await call(emulator, "GET", "/_emulator/flood"))["rejected"]
    expected: dict[int, list[str]] = {c: [] for c in chat_ids}

    async def post(n: int) -> None:
        connection = connections[n % groups]
        response = await api.post(
            "/v1/notifications",
            json={"connection_id": connection["id"], "text": f"alert {n:05d}"},
        )
        if response.status_code != 202:
            raise SystemExit(f"alert {n} refused: {response.text}")

    # Counting the emulator's sends is cheap; reading the messages copies them all.
    before = await sent_to(emulator, chat_ids)
    started = time.monotonic()
    # A few posters take the alerts in numbered order. Alert n and n + M go to the same group;
    # when a poster takes n + M, the other posters hold alerts above n + M - POSTERS, so n
    # (with POSTERS <= M) has been answered: each group's alerts are queued in order.
    numbers = iter(range(alerts))

    async def poster() -> None:
        for n in numbers:
            await post(n)

    await asyncio.gather(*(poster() for _ in range(min(POSTERS, groups))))
    for n in range(alerts):
        expected[chat_ids[n % groups]].append(f"alert {n:05d}")
    posting = time.monotonic() - started
    delivered_while_posting = await sent_to(emulator, chat_ids) - before

    async def all_arrived() -> bool:
        return await sent_to(emulator, chat_ids) - before >= alerts

    await until(
        all_arrived, f"{alerts} alerts", timeout=RUN_TIMEOUT_SECONDS, every=ARRIVAL_POLL_SECONDS
    )
    elapsed = time.monotonic() - started
    # Each group's first message is tgrelay's confirmation, sent before the run.
    arrived = {c: (await sent_texts(emulator, c))[1:] for c in chat_ids}
    report = await call(emulator, "GET", "/_emulator/flood")
    groups_sent_at = [(chat, at) for chat, at in report["sent_at"] if chat in expected]
    return Result(
        sustained=sustained_rate(groups_sent_at),
        elapsed=elapsed,
        posting=posting,
        delivered_while_posting=delivered_while_posting,
        rejected=report["rejected"] - rejected_before,
        in_order=arrived == expected,
    )


async def drive_over_http(
    api_url: str,
    api_key: str,
    emulator_url: str,
    *,
    alerts: int,
    groups: int,
    limits: Limits,
    latency: Latency,
) -> Result:
    async with (
        httpx.AsyncClient(
            base_url=api_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        ) as api,
        httpx.AsyncClient(base_url=emulator_url, timeout=30) as emulator,
    ):
        return await drive(
            api, emulator, alerts=alerts, groups=groups, limits=limits, latency=latency
        )


def run_in(
    workdir: Path,
    database_url: str | None,
    *,
    alerts: int,
    groups: int,
    limits: Limits,
    latency: Latency,
) -> Result:
    """Start both processes, run the bench against them, stop them."""
    tgrelay = [sys.executable, "-m", "tgrelay"]
    emulator_port, app_port = free_port(), free_port()
    emulator_url, api_url = f"http://127.0.0.1:{emulator_port}", f"http://127.0.0.1:{app_port}"
    data_dir = workdir / "data"
    data_dir.mkdir()
    env = {
        **os.environ,
        "TGRELAY_DATA_DIR": str(data_dir),
        "TGRELAY_SECRET_KEYS": Fernet.generate_key().decode(),
        "TGRELAY_TELEGRAM_API_URL": emulator_url,
        "TGRELAY_PUBLIC_URL": api_url,
        "TGRELAY_PORT": str(app_port),
        "TGRELAY_LOG_LEVEL": "WARNING",
        "TGRELAY_HEALTH_INTERVAL_SECONDS": "3600",
        "TGRELAY_WORKER_CONCURRENCY": "16",
        "TGRELAY_SEND_LIMIT_PER_CHAT": json.dumps(limits.per_chat.pair()),
        "TGRELAY_SEND_LIMIT_PER_GROUP": json.dumps(limits.per_group.pair()),
        "TGRELAY_SEND_LIMIT_PER_BOT": json.dumps(limits.per_bot.pair()),
    }
    if database_url is not None:
        env["TGRELAY_DATABASE_URL"] = database_url
    with process(
        [*tgrelay, "emulator", "--port", str(emulator_port)], env, workdir / "emulator.log"
    ):
        wait_http(f"{emulator_url}/_emulator/flood", timeout=STEP_TIMEOUT_SECONDS)
        api_key = create_workspace(tgrelay, env)
        with process([*tgrelay, "serve"], env, workdir / "serve.log"):
            wait_http(f"{api_url}/healthz", timeout=STEP_TIMEOUT_SECONDS)
            return asyncio.run(
                drive_over_http(
                    api_url,
                    api_key,
                    emulator_url,
                    alerts=alerts,
                    groups=groups,
                    limits=limits,
                    latency=latency,
                )
            )


def run(*, alerts: int, groups: int, limits: Limits, latency: Latency, db: str) -> Result:
    with tempfile.TemporaryDirectory(prefix="tgrelay-bench-") as tmp:
        database_url = (
            asyncio.run(recreate_postgres_database(POSTGRES_DATABASE)) if db == "postgres" else None
        )
        try:
            return run_in(
                Path(tmp),
                database_url,
                alerts=alerts,
                groups=groups,
                limits=limits,
                latency=latency,
            )
        finally:
            if database_url is not None:
                asyncio.run(recreate_postgres_database(POSTGRES_DATABASE, drop_only=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=600)
    parser.add_argument("--groups", type=int, default=60)
    # Telegram's: 1 message/s in a chat, 20/min in a group, 30/s for a bot overall.
    parser.add_argument("--per-chat", type=limit, default=limit("1/1"), metavar="COUNT/SECONDS")
    parser.add_argument("--per-group", type=limit, default=limit("20/60"), metavar="COUNT/SECONDS")
    parser.add_argument("--per-bot", type=limit, default=limit("30/1"), metavar="COUNT/SECONDS")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--latency",
        type=latency_range,
        default=Latency(least=0.0, most=0.0),
        metavar="MIN/MAX",
        help="seconds each Bot API request takes to reach the emulator, at random in between",
    )
    args = parser.parse_args()
    if args.alerts < 1 or args.groups < 1:
        parser.error("--alerts and --groups must be at least 1")
    limits = Limits(per_chat=args.per_chat, per_group=args.per_group, per_bot=args.per_bot)
    result = run(
        alerts=args.alerts, groups=args.groups, limits=limits, latency=args.latency, db=args.db
    )
    allowed = allowed_rate(args.groups, limits)
    achieved = args.alerts / result.elapsed
    # Once the API burst is over the process only sends: the rate the limiter sustains.
    after_posts = (args.alerts - result.delivered_while_posting) / max(
        result.elapsed - result.posting, 1e-9
    )
    sustained = (
        "n/a (no group got two alerts)"
        if result.sustained is None
        else f"{result.sustained:.1f}/s ({result.sustained / allowed:.1%})"
    )
    print(
        f"{args.db:8} {args.alerts} alerts to {args.groups} groups "
        f"(per-chat {args.per_chat}, per-group {args.per_group}, per-bot {args.per_bot}"
        f"{'' if args.latency.most == 0 else f', latency {args.latency}'}): "
        f"{result.elapsed:.2f} s (POSTs {result.posting:.2f} s, ideal {args.alerts / allowed:.2f} s), "
        f"{achieved:.1f} alerts/s of {allowed:.1f} allowed ({achieved / allowed:.0%}; "
        f"after the POSTs {after_posts:.1f}/s, {after_posts / allowed:.0%}); "
        f"sustained {sustained}; "
        f"{result.rejected} 429s, in order: {'yes' if result.in_order else 'NO'}"
    )


if __name__ == "__main__":
    main()
